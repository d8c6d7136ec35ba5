//! Change-log retention: old rows are deleted so the log stays bounded.
//! Streams resuming from a pruned cursor get OUT_OF_RANGE.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{domain::Timestamp, store::Store};

pub struct Pruner {
    pub store: Arc<dyn Store>,
    pub retention: Duration,
    pub interval: Duration,
}

impl Pruner {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.prune().await;
        }
    }

    #[tracing::instrument(name = "prune_change_log", skip_all)]
    async fn prune(&self) {
        let keep = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let before = Timestamp::from_millis(Timestamp::now().as_millis().saturating_sub(keep));
        match self.store.prune_changes(before).await {
            Ok(b) => tracing::debug!(
                pruned_through = b.pruned_through,
                head = b.head,
                "change log pruned"
            ),
            Err(e) => tracing::warn!(error = %e, "change log pruning failed"),
        }
    }
}
