//! [`TokenRefresher`]: the task that keeps each replica's admin token set
//! current. It reloads the set every `interval`, and at once when another
//! replica's revocation NOTIFYs (PostgreSQL), and flushes the last uses
//! marked in memory on each tick.
//!
//! NOTIFY is only a wake-up: the table is the truth. A LISTEN connection
//! loses the notifications sent while it is down, so the refresher
//! rebuilds it and reloads right after, and the periodic reload stays as
//! the backstop.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::TokenSet;
use crate::store::{PgWakeups, TOKEN_CHANNEL};

/// Reloads the token set every `interval`, and at once when a revocation
/// on another replica NOTIFYs; flushes last uses on each tick. So a token
/// minted or revoked elsewhere takes effect within one NOTIFY round trip,
/// or within `interval` when the wake-up is lost.
pub struct TokenRefresher {
    pub tokens: Arc<TokenSet>,
    pub interval: Duration,
    /// PostgreSQL's LISTEN connections; `None` on SQLite, whose writers
    /// are all in this process.
    pub wakeups: Option<PgWakeups>,
    pub replica: String,
}

impl TokenRefresher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listener = None;
        loop {
            let woken = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => false,
                lost = recv(&mut listener) => {
                    // A lost connection loses the notifications sent while
                    // it is down: drop it, and the reload below (and the one
                    // after reconnecting) catches up from the table.
                    if lost {
                        tracing::warn!("admin token listener lost its connection; rebuilding");
                        listener = None;
                    }
                    true
                }
            };
            if listener.is_none()
                && let Some(wakeups) = &self.wakeups
            {
                let name = format!("keysmith-tokens-{}", self.replica);
                match wakeups.listen_on(TOKEN_CHANNEL, &name).await {
                    Ok(l) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "cannot listen for admin token changes"),
                }
            }
            let reload = self.tokens.reload_after(Instant::now());
            let result = tokio::select! {
                () = shutdown.cancelled() => break,
                r = reload => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot reload the admin tokens");
            }
            if !woken && let Err(e) = self.tokens.flush_uses().await {
                tracing::warn!(error = %e, "cannot record admin token uses");
            }
        }
        // The last marks of this process, unless the database is gone.
        let last = tokio::time::timeout(Duration::from_secs(2), self.tokens.flush_uses());
        if let Ok(Err(e)) = last.await {
            tracing::warn!(error = %e, "cannot record admin token uses");
        }
    }
}

/// Waits for a notification; `true` when the listener lost its connection
/// (`try_recv`, unlike `recv`, says so instead of reconnecting quietly).
/// Without a listener it never resolves.
async fn recv(listener: &mut Option<sqlx::postgres::PgListener>) -> bool {
    match listener {
        Some(l) => !matches!(l.try_recv().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}
