use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use super::Recorder;
use crate::{
    domain::{Clock, verdict::Code},
    metrics::Metrics,
    store::Store,
};

/// Writes usage counters to the store every `interval`, and once more at
/// shutdown. A failed write puts the counts back for the next round.
pub struct UsageFlusher {
    pub store: Arc<dyn Store>,
    pub recorder: Arc<Recorder>,
    pub interval: Duration,
    pub clock: Clock,
    pub metrics: Metrics,
}

impl UsageFlusher {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.flush().await,
            }
        }
        // Verify has stopped by now (the servers drained first).
        self.flush().await;
    }

    #[tracing::instrument(name = "usage_flush", skip_all)]
    pub async fn flush(&self) {
        let (deltas, unknown) = self.recorder.drain();
        if deltas.is_empty() && unknown.is_empty() {
            return;
        }
        for code in Code::ALL {
            let n = match code {
                Code::Malformed => unknown.malformed,
                Code::NotFound => unknown.not_found,
                _ => deltas.iter().map(|d| d.count(code)).sum(),
            };
            self.metrics.count_calls(code, n);
        }
        let started = std::time::Instant::now();
        let now = self.clock.now();
        let writes: Vec<_> = deltas.iter().map(super::UsageDelta::to_write).collect();
        let unknown_counts = (
            i64::try_from(unknown.malformed).unwrap_or(i64::MAX),
            i64::try_from(unknown.not_found).unwrap_or(i64::MAX),
        );
        match self.store.flush_usage(now, &writes, unknown_counts).await {
            Ok(()) => {
                self.metrics
                    .flush_duration
                    .record(started.elapsed().as_secs_f64(), &[]);
                tracing::debug!(
                    keys = deltas.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "usage flushed"
                )
            }
            Err(e) => {
                tracing::warn!(error = %e, keys = deltas.len(), "usage flush failed; will retry");
                self.recorder.restore(deltas, unknown);
            }
        }
    }
}
