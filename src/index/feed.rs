//! The change feed: keeps this replica's index equal to the change log.
//!
//! NOTIFY (PostgreSQL) and local writes are only wake-ups. On every wake-up,
//! on every poll tick, and after the listener is rebuilt, the feed reads the
//! change log from its applied sequence and applies the rows in order. So a
//! lost notification (sqlx's `PgListener` drops those sent while it was
//! disconnected) delays a change by at most one poll interval, and loses
//! nothing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::KeyIndex;
use crate::{
    domain::{KeyId, Timestamp},
    store::{Change, ReplicaRow, Store, StoreError},
};

/// How many change rows one catch-up query reads.
const BATCH: u32 = 1000;

#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// Catch up at least this often, whatever the wake-ups do.
    pub poll_interval: Duration,
    /// Capacity of the ring that fans applied changes out to streams.
    pub event_buffer: usize,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            event_buffer: 4096,
        }
    }
}

/// What this replica knows of its own freshness. Written by the feed, read
/// by health, GetReplicaStatus and Verify's fail-closed check.
#[derive(Debug)]
pub struct ReplicaState {
    pub id: String,
    pub started_at: Timestamp,
    /// When the feed last read the change log successfully (unix ms); 0 before.
    last_contact: AtomicI64,
}

impl ReplicaState {
    pub fn new() -> Self {
        Self {
            id: format!("rep_{}", ulid::Ulid::new().to_string().to_lowercase()),
            started_at: Timestamp::now(),
            last_contact: AtomicI64::new(0),
        }
    }

    pub fn last_contact(&self) -> Option<Timestamp> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    fn touch(&self) {
        self.last_contact
            .store(Timestamp::now().as_millis(), Ordering::Release);
    }

    /// Whether Verify must refuse under `--fail-closed-after bound`: the
    /// change log was last read longer ago (or never). Judged by the system
    /// clock, like `last_contact`.
    pub fn fail_closed(&self, bound: Option<Duration>) -> bool {
        bound.is_some_and(|b| self.staleness(Timestamp::now()).is_none_or(|s| s > b))
    }

    /// How long since the last successful read of the change log.
    pub fn staleness(&self, now: Timestamp) -> Option<Duration> {
        let last = self.last_contact()?;
        Some(Duration::from_millis(
            (now.as_millis() - last.as_millis()).max(0) as u64,
        ))
    }
}

impl Default for ReplicaState {
    fn default() -> Self {
        Self::new()
    }
}

/// Handles shared between the feed and its readers.
#[derive(Clone)]
pub struct FeedHandle {
    wake: Arc<Notify>,
    events: broadcast::Sender<Arc<Change>>,
    pub replica: Arc<ReplicaState>,
}

impl FeedHandle {
    pub fn new(config: &FeedConfig) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            events: broadcast::channel(config.event_buffer.max(1)).0,
            replica: Arc::new(ReplicaState::new()),
        }
    }

    /// Asks the feed to catch up now (after a local write).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Changes applied from now on, in sequence order. A receiver that falls
    /// more than the buffer behind gets `Lagged`.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.events.subscribe()
    }

    pub fn subscribers(&self) -> usize {
        self.events.receiver_count()
    }
}

/// The background task that applies the change log to the index.
pub struct ChangeFeed {
    store: Arc<dyn Store>,
    index: Arc<KeyIndex>,
    handle: FeedHandle,
    config: FeedConfig,
}

impl ChangeFeed {
    pub fn new(
        store: Arc<dyn Store>,
        index: Arc<KeyIndex>,
        handle: FeedHandle,
        config: FeedConfig,
    ) -> Self {
        Self {
            store,
            index,
            handle,
            config,
        }
    }

    /// Loads the index without a gap, reports `true` on `caught_up` once it
    /// matches the change log, then follows the log until `shutdown`.
    ///
    /// Order matters: LISTEN first, then the snapshot, then the changes after
    /// the snapshot's sequence. A change committed in between is either in
    /// the snapshot or after its sequence, and its NOTIFY is not missed.
    pub async fn run(self, caught_up: watch::Sender<bool>, shutdown: CancellationToken) {
        let replica = self.handle.replica.id.clone();
        let mut listener = self.listen(&replica).await;
        let mut backoff = Backoff::default();
        loop {
            let mut count = 0usize;
            let mut load = |record: crate::domain::KeyRecord| {
                self.index.upsert(&record);
                count += 1;
            };
            match self.store.snapshot(&mut load).await {
                Ok(seq) => {
                    self.index.advance_to(seq);
                    tracing::info!(keys = count, seq, "index loaded from snapshot");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "snapshot failed; retrying");
                    if backoff.wait(&shutdown).await.is_err() {
                        return;
                    }
                }
            }
        }
        let mut tick = tokio::time::interval(self.config.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            match self.catch_up().await {
                Ok(()) => {
                    if !self.index.is_ready() {
                        self.index.mark_ready();
                        caught_up.send_replace(true);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "change feed cannot read the change log"),
            }
            if listener.is_none() && self.store.wakeups().is_some() {
                listener = self.listen(&replica).await;
                if listener.is_some() {
                    // Notifications sent while it was down are gone: catch up.
                    continue;
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {}
                () = self.handle.wake.notified() => {}
                lost = recv(&mut listener) => if lost {
                    tracing::warn!("change listener lost its connection; rebuilding");
                    listener = None;
                }
            }
        }
        if let Err(e) = self.store.remove_replica(&replica).await {
            tracing::debug!(error = %e, "could not deregister replica");
        }
    }

    async fn listen(&self, replica: &str) -> Option<PgListener> {
        let wakeups = self.store.wakeups()?;
        match wakeups.listen(replica).await {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN for changes; polling meanwhile");
                None
            }
        }
    }

    /// Applies every change after the index's sequence, in order.
    #[tracing::instrument(name = "feed_catch_up", skip_all)]
    async fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let from = self.index.applied_seq();
            let changes = self.store.changes_after(from, BATCH).await?;
            self.handle.replica.touch();
            let Some(last) = changes.last().map(|c| c.seq) else {
                return self.report(from).await;
            };
            if changes[0].seq != from + 1 {
                // Rows we never saw were pruned (we were away longer than the
                // retention): a fresh snapshot covers them.
                tracing::warn!(
                    from,
                    first = changes[0].seq,
                    "change log gap; reloading snapshot"
                );
                let seq = self.store.snapshot(&mut |r| self.index.upsert(&r)).await?;
                self.index.advance_to(seq);
                continue;
            }
            let mut seen: Vec<&KeyId> = Vec::with_capacity(changes.len());
            for c in &changes {
                if seen.contains(&&c.key_id) {
                    continue;
                }
                seen.push(&c.key_id);
                if let Some(record) = self.store.get_key(&c.key_id).await? {
                    self.index.upsert(&record);
                }
            }
            self.index.advance_to(last);
            for c in changes {
                // No receivers is fine: nobody is watching.
                let _ = self.handle.events.send(Arc::new(c));
            }
            if last - from < i64::from(BATCH) {
                return self.report(last).await;
            }
        }
    }

    async fn report(&self, applied_seq: i64) -> Result<(), StoreError> {
        let r = &self.handle.replica;
        self.store
            .report_replica(&ReplicaRow {
                id: r.id.clone(),
                applied_seq,
                heartbeat_at: Timestamp::now(),
                started_at: r.started_at,
            })
            .await
    }
}

/// Waits for a notification; `true` when the listener lost its connection.
/// Without a listener it never resolves.
async fn recv(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => !matches!(l.try_recv().await, Ok(Some(_))),
        None => std::future::pending().await,
    }
}

/// Exponential backoff between 50 ms and 2 s.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    async fn wait(&mut self, shutdown: &CancellationToken) -> Result<(), ()> {
        let delay = Duration::from_millis(50u64 << self.0.min(5)).min(Duration::from_secs(2));
        self.0 += 1;
        tokio::select! {
            () = shutdown.cancelled() => Err(()),
            () = tokio::time::sleep(delay) => Ok(()),
        }
    }
}
