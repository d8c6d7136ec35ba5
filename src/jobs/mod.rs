//! The scheduler: periodic lifecycle jobs.
//!
//! Every replica runs the scheduler, but each job runs on one replica per
//! round: a job first takes its lease in `job_leases`. Jobs are idempotent
//! and crash-safe: each notice or scheduled change is written together with
//! a row in `key_notices`, so a rerun after a crash neither repeats a notice
//! nor loses one. Time comes from the injected clock.

mod expiry;
mod grace;
mod rotation;
mod stale;

use std::{future::Future, sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    domain::{Clock, KeyRecord, KeyRotation, StalePolicy},
    error::Result,
    keys::Keys,
    store::{LiveKeys, Store},
};

#[derive(Clone, Debug)]
pub struct JobsConfig {
    pub interval: Duration,
    /// `key.expiring` lead times.
    pub expiry_notice: Vec<Duration>,
    /// The rotation policy of keys without their own; `None`: no scheduled
    /// rotation for them.
    pub default_rotation: Option<KeyRotation>,
    /// `key.rotation_due` lead times.
    pub rotation_notice: Vec<Duration>,
    /// With the `expire` action: how long a due key keeps working.
    pub rotation_grace: Duration,
    pub stale: StalePolicy,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Default for JobsConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            expiry_notice: vec![14 * DAY, 7 * DAY, DAY],
            default_rotation: None,
            rotation_notice: vec![14 * DAY, 7 * DAY, DAY],
            rotation_grace: 2 * DAY,
            stale: StalePolicy {
                flag_after: 90 * DAY,
                disable_after: None,
                revoke_after: None,
                dry_run: false,
            },
        }
    }
}

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub clock: Clock,
    pub config: JobsConfig,
    /// This replica, as lease owner.
    pub replica: String,
}

impl Scheduler {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.round().await;
        }
    }

    /// Runs every job whose lease this replica gets.
    #[tracing::instrument(name = "scheduler_round", skip_all)]
    pub async fn round(&self) {
        self.job("expiry", expiry::run(self)).await;
        self.job("rotation", rotation::run(self)).await;
        self.job("grace", grace::run(self)).await;
        self.job("stale", stale::run(self)).await;
    }

    async fn job(&self, name: &str, work: impl Future<Output = Result<usize>>) {
        let now = self.clock.now();
        let until = now.saturating_add(self.config.interval);
        match self
            .store
            .take_job_lease(name, &self.replica, now, until)
            .await
        {
            Ok(true) => match work.await {
                Ok(0) => {}
                Ok(n) => tracing::info!(job = name, events = n, "scheduled job ran"),
                Err(e) => tracing::warn!(job = name, error = %e, "scheduled job failed"),
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(job = name, error = %e, "cannot take job lease"),
        }
    }

    /// The keys not revoked that a job looks at, from the store: the index
    /// holds only what Verify needs, and the store has every replica's
    /// flushed last use.
    async fn live_keys(&self, which: LiveKeys) -> crate::error::Result<Vec<KeyRecord>> {
        Ok(self.store.live_keys(which).await?)
    }
}

/// The notice for a key reaching expiry `expires_ms`. Shared by the expiry
/// job and the grace job, so an expiry is announced once, whichever sees it.
fn expired_notice(expires_ms: i64) -> String {
    format!("expired:{expires_ms}")
}

fn days(d: Duration) -> u64 {
    d.as_secs() / 86_400
}
