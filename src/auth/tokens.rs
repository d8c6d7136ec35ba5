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

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

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
    /// Reads of the store so far, for tests and metrics.
    reloads: AtomicU64,
}

impl TokenSet {
    pub fn new(store: Arc<dyn Store>, min_reload_gap: Duration) -> Self {
        Self {
            store,
            loaded: watch::Sender::new(Loaded::default()),
            reloading: Mutex::new(None),
            min_reload_gap,
            reloads: AtomicU64::new(0),
        }
    }

    /// How many times the set was read from the store.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
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
        self.reloads.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::DbConfig, domain::Timestamp};

    async fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        let db = DbConfig {
            database_url: None,
            data_dir: dir.path().to_owned(),
        };
        crate::app::open_store(&db, true).await.expect("store")
    }

    /// Misses at the same moment, from any number of callers, share one
    /// read of the store, and each then sees the token minted before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn simultaneous_misses_share_one_reload() {
        let dir = tempfile::tempdir().expect("dir");
        let store = store(&dir).await;
        let set = Arc::new(TokenSet::new(store.clone(), Duration::from_millis(100)));
        let info = AdminTokenInfo {
            id: "adm_1".into(),
            name: "ops".into(),
        };
        store
            .insert_admin_token(&info, &[7; 32], Timestamp::now())
            .await
            .expect("insert");
        let asked = Instant::now();
        let misses = (0..100).map(|_| {
            let set = set.clone();
            tokio::spawn(async move { set.reload_after(asked).await })
        });
        for miss in futures::future::join_all(misses).await {
            miss.expect("join").expect("reload");
        }
        assert_eq!(set.reloads(), 1);
        assert_eq!(set.get(&[7; 32]).map(|i| i.id), Some("adm_1".to_owned()));
        assert!(set.get(&[8; 32]).is_none());
    }

    /// Misses one after another reload at most once per gap: the count is
    /// bounded by the time they took, however fast the store answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reloads_are_rate_limited_in_all() {
        let dir = tempfile::tempdir().expect("dir");
        let gap = Duration::from_millis(50);
        let set = Arc::new(TokenSet::new(store(&dir).await, gap));
        let start = Instant::now();
        let callers = (0..4).map(|_| {
            let set = set.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    set.reload_after(Instant::now()).await.expect("reload");
                }
            })
        });
        futures::future::join_all(callers).await;
        let gaps = start.elapsed().as_millis() / gap.as_millis();
        let bound = u64::try_from(gaps).expect("small") + 1;
        assert!(set.reloads() >= 5, "each caller's last miss was served");
        assert!(
            set.reloads() <= bound,
            "{} reloads > {bound}",
            set.reloads()
        );
    }
}
