//! Revocation receipts: wait until every live replica has applied a change.

use std::time::{Duration, Instant};

use super::Keys;
use crate::{domain::Timestamp, error::Result};

pub const MAX_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

/// How far a change has spread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Propagation {
    pub seq: i64,
    pub confirmed: usize,
    pub live: usize,
    pub elapsed: Duration,
}

impl Propagation {
    pub fn complete(&self) -> bool {
        self.confirmed == self.live
    }
}

impl Keys {
    /// Polls the replicas table until every replica with a recent heartbeat
    /// reports `seq <= applied_seq <= head`, or `timeout` passes. Replicas
    /// report right after applying, so this usually returns within one
    /// NOTIFY round trip. A replica whose applied sequence is past the head
    /// applied a log that has since gone back (a restore or a failover) and
    /// has not reloaded yet: it does not confirm anything.
    pub async fn await_propagation(
        &self,
        seq: i64,
        timeout: Option<Duration>,
    ) -> Result<Propagation> {
        let timeout = timeout.unwrap_or(DEFAULT_PROPAGATION_TIMEOUT);
        let started = Instant::now();
        loop {
            let window = self.config.replica_live_window;
            let since =
                Timestamp::from_millis(Timestamp::now().as_millis() - window.as_millis() as i64);
            let replicas = self.store.live_replicas(since).await?;
            let head = self.store.log_bounds().await?.head;
            let confirmed = replicas
                .iter()
                .filter(|r| (seq..=head).contains(&r.applied_seq))
                .count();
            let p = Propagation {
                seq,
                confirmed,
                live: replicas.len(),
                elapsed: started.elapsed(),
            };
            if p.complete() || p.elapsed >= timeout {
                return Ok(p);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// This replica's freshness and every live replica's progress.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub replica_id: String,
    pub applied_seq: i64,
    pub head_seq: i64,
    pub last_contact: Option<Timestamp>,
    pub staleness: Option<Duration>,
    pub index_size: usize,
    pub replicas: Vec<crate::store::ReplicaRow>,
    /// The change this replica's feed cannot apply, if it is stuck.
    pub stuck: Option<crate::index::Stuck>,
}

impl Keys {
    pub async fn replica_status(&self) -> Result<StatusReport> {
        let replica = &self.feed.replica;
        let window = self.config.replica_live_window;
        let since =
            Timestamp::from_millis(Timestamp::now().as_millis() - window.as_millis() as i64);
        let replicas = self.store.live_replicas(since).await?;
        let head_seq = self.store.log_bounds().await?.head;
        Ok(StatusReport {
            replica_id: replica.id.clone(),
            applied_seq: self.index.applied_seq(),
            head_seq,
            last_contact: replica.last_contact(),
            staleness: replica.staleness(Timestamp::now()),
            index_size: self.index.len(),
            replicas,
            stuck: replica.stuck(),
        })
    }
}
