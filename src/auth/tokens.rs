//! The admin token set, held in memory. There are a handful of tokens, so
//! authenticating answers from a map keyed by SHA-256 and never waits on
//! the database: a flood of bad tokens cannot reach it through here.
//!
//! `keysmith admin-token create` mints tokens from another process, next
//! to a live server, so the set must learn them. It is reloaded every
//! `reload_interval` by [`TokenRefresher`], and on a miss. Reloads run one
//! at a time and start at least `min_reload_gap` apart, whatever the number
//! of callers: a miss waits for a reload that started after it asked
//! (its own, or one already under way), never for more than one.

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{
    sync::{Mutex, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::store::{AdminTokenInfo, Store, StoreError};

/// What one reload read.
#[derive(Clone, Default)]
struct Loaded {
    /// When the read began: it sees every token committed before then.
    /// `None` until the first reload.
    started: Option<Instant>,
    tokens: Arc<HashMap<[u8; 32], AdminTokenInfo>>,
}

pub struct TokenSet {
    store: Arc<dyn Store>,
    /// The current set; writers are reloads, which also wake whoever waits
    /// for a reload newer than their miss.
    loaded: watch::Sender<Loaded>,
    /// Held by the reload in flight (single flight). Holds when the last
    /// reload started, for the global rate.
    reloading: Mutex<Option<Instant>>,
    min_reload_gap: Duration,
}

impl TokenSet {
    pub fn new(store: Arc<dyn Store>, min_reload_gap: Duration) -> Self {
        Self {
            store,
            loaded: watch::Sender::new(Loaded::default()),
            reloading: Mutex::new(None),
            min_reload_gap,
        }
    }

    /// The token whose SHA-256 is `hash`, from memory.
    pub fn get(&self, hash: &[u8; 32]) -> Option<AdminTokenInfo> {
        self.loaded.borrow().tokens.get(hash).cloned()
    }

    /// Returns once the set reflects a read that started at or after
    /// `asked`, reloading if no such read has happened, at the global rate.
    pub async fn reload_after(&self, asked: Instant) -> Result<(), StoreError> {
        let mut last = self.reloading.lock().await;
        if self.loaded_since(asked) {
            // The reload we queued behind started after we asked.
            return Ok(());
        }
        if let Some(last) = *last {
            tokio::time::sleep_until(last + self.min_reload_gap).await;
        }
        let started = Instant::now();
        *last = Some(started);
        let tokens = self.store.admin_tokens().await?;
        self.loaded.send_replace(Loaded {
            started: Some(started),
            tokens: Arc::new(tokens.into_iter().collect()),
        });
        Ok(())
    }

    /// Waits, at most `patience`, for a reload that started at or after
    /// `asked`, without causing one. Whether one came.
    pub async fn wait_for_reload_after(&self, asked: Instant, patience: Duration) -> bool {
        let mut loaded = self.loaded.subscribe();
        let newer = loaded.wait_for(|l| l.started.is_some_and(|s| s >= asked));
        matches!(tokio::time::timeout(patience, newer).await, Ok(Ok(_)))
    }

    fn loaded_since(&self, asked: Instant) -> bool {
        self.loaded.borrow().started.is_some_and(|s| s >= asked)
    }
}

/// Reloads the token set every `interval`, so that a token minted or
/// revoked by another process takes effect within it.
pub struct TokenRefresher {
    pub tokens: Arc<TokenSet>,
    pub interval: Duration,
}

impl TokenRefresher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let reload = self.tokens.reload_after(Instant::now());
            let result = tokio::select! {
                () = shutdown.cancelled() => return,
                r = reload => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot reload the admin tokens");
            }
        }
    }
}
