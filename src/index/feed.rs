//! The change feed: keeps this replica's index equal to the change log.
//!
//! NOTIFY (PostgreSQL) and local writes are only wake-ups. On every wake-up,
//! on every poll tick, and after the listener is rebuilt, the feed reads the
//! change log from its applied sequence and applies the rows in order. So a
//! lost notification (sqlx's `PgListener` drops those sent while it was
//! disconnected) delays a change by at most one poll interval, and loses
//! nothing.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::{KeyIndex, ReplicaState, Stuck, lineage::Lineage};
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

/// Handles shared between the feed and its readers.
#[derive(Clone)]
pub struct FeedHandle {
    wake: Arc<Notify>,
    events: broadcast::Sender<Arc<Change>>,
    /// Bumped by every reload, before any change after it is broadcast:
    /// a subscriber's cursor from before means nothing after it.
    resets: Arc<watch::Sender<u64>>,
    pub replica: Arc<ReplicaState>,
}

impl FeedHandle {
    pub fn new(config: &FeedConfig) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            events: broadcast::channel(config.event_buffer.max(1)).0,
            resets: Arc::new(watch::Sender::new(0)),
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

    /// Changes when the feed reloads its index from a snapshot (the log went
    /// back, changed lineage or lost rows): events before and after do not
    /// form one sequence, so a stream must end and its client resync.
    pub fn resets(&self) -> watch::Receiver<u64> {
        self.resets.subscribe()
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
    /// What the applied sequence refers to; only the feed task touches it.
    lineage: Lineage,
    /// The keyspaces' generation the index's legacy formats were read at.
    formats_generation: Option<i64>,
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
            lineage: Lineage::default(),
            formats_generation: None,
        }
    }

    /// Loads the index without a gap, reports `true` on `caught_up` once it
    /// matches the change log, then follows the log until `shutdown`.
    ///
    /// Order matters: LISTEN first, then the snapshot, then the changes after
    /// the snapshot's sequence. A change committed in between is either in
    /// the snapshot or after its sequence, and its NOTIFY is not missed.
    pub async fn run(mut self, caught_up: watch::Sender<bool>, shutdown: CancellationToken) {
        let replica = self.handle.replica.id.clone();
        let mut listener = self.listen(&replica).await;
        let mut backoff = Backoff::default();
        loop {
            match self.load().await {
                Ok(()) => break,
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
            if let Err(e) = self.refresh_formats().await {
                tracing::debug!(error = %e, "legacy formats not reloaded");
            }
            match self.catch_up().await {
                Ok(()) => {
                    if !self.index.is_ready() {
                        self.index.mark_ready();
                        caught_up.send_replace(true);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "change feed did not catch up"),
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

    /// The first load. The epoch is read before the snapshot: if the
    /// database is swapped in between, the next catch-up sees another epoch
    /// and reloads.
    async fn load(&mut self) -> Result<(), StoreError> {
        let epoch = self.store.log_bounds().await?.epoch;
        // Before any key: a replica that answers knows every keyspace's
        // legacy formats.
        self.refresh_formats().await?;
        let mut count = 0usize;
        let mut load = |record: crate::domain::KeyRecord| {
            self.index.upsert(&record);
            count += 1;
        };
        let seq = self.store.snapshot(&mut load).await?;
        self.index.advance_to(seq);
        self.lineage = Lineage {
            epoch: Some(epoch),
            anchor: None,
        };
        tracing::info!(keys = count, seq, epoch, "index loaded from snapshot");
        Ok(())
    }

    /// Reloads the keyspaces' legacy formats when a keyspace changed: one
    /// cheap read when none did. A keyspace's writer sends a wake-up.
    async fn refresh_formats(&mut self) -> Result<(), StoreError> {
        let generation = self.store.keyspaces_generation().await?;
        if Some(generation) == self.formats_generation {
            return Ok(());
        }
        let (generation, keyspaces) = self.store.legacy_keyspaces().await?;
        self.index.set_legacy_formats(generation, &keyspaces);
        self.formats_generation = Some(generation);
        Ok(())
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

    /// Applies every change after the index's sequence, in order. Contact
    /// is stamped only when a batch is fully applied (or nothing is left):
    /// a row the feed cannot apply leaves the replica ageing, so health and
    /// `--fail-closed-after` see a stuck feed as stale.
    #[tracing::instrument(name = "feed_catch_up", skip_all)]
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        loop {
            let from = self.index.applied_seq();
            let result = self.step(from).await;
            match result {
                Ok(Step::More) => {}
                Ok(Step::Done(applied)) => {
                    self.handle.replica.applied();
                    return self.report(applied).await;
                }
                Err((stuck, e)) => {
                    if self.handle.replica.stuck_at(stuck.clone()) {
                        tracing::warn!(
                            seq = stuck.seq,
                            key_id = stuck.key_id.as_deref().unwrap_or(""),
                            reason = %stuck.reason,
                            "change feed is stuck: cannot apply this change"
                        );
                    }
                    // Report what was applied before the stuck row, so
                    // receipts count only what this replica really has.
                    let _ = self.report(self.index.applied_seq()).await;
                    return Err(e);
                }
            }
        }
    }

    /// Reads and applies one batch after `from`.
    async fn step(&mut self, from: i64) -> Result<Step, (Stuck, StoreError)> {
        let stuck = |key_id: Option<&KeyId>, e: &StoreError| Stuck {
            seq: from + 1,
            key_id: key_id.map(|k| k.as_str().to_owned()),
            reason: e.to_string(),
        };
        let at = |e: StoreError| (stuck(None, &e), e);
        let bounds = self.store.log_bounds().await.map_err(at)?;
        if let Some(why) = self.lineage.moved(&bounds, from) {
            self.reload(why).await.map_err(at)?;
            return Ok(Step::More);
        }
        // Read the anchor (the last change applied) again with the batch:
        // if it is not the same row, the log was replaced under us even
        // though its head is past our sequence.
        let check = from > 0 && self.lineage.anchor.as_ref().is_none_or(|a| a.seq == from);
        let read_from = if check { from - 1 } else { from };
        let mut changes = self
            .store
            .changes_after(read_from, BATCH)
            .await
            .map_err(at)?;
        if check {
            if changes.first().is_some_and(|c| c.seq == from) {
                let row = changes.remove(0);
                match &self.lineage.anchor {
                    Some(anchor) if *anchor != row => {
                        self.reload("the change at the applied sequence is not the one applied")
                            .await
                            .map_err(at)?;
                        return Ok(Step::More);
                    }
                    _ => self.lineage.anchor = Some(row),
                }
            } else if self.lineage.anchor.is_some()
                && self.store.log_bounds().await.map_err(at)?.pruned_through < from
            {
                // Gone, and not by retention.
                self.reload("the change at the applied sequence is gone")
                    .await
                    .map_err(at)?;
                return Ok(Step::More);
            }
        }
        let Some(first) = changes.first().map(|c| c.seq) else {
            return Ok(Step::Done(from));
        };
        if first != from + 1 {
            // Rows we never saw were pruned (we were away longer than the
            // retention): a fresh snapshot covers them.
            tracing::warn!(from, first, "change log gap");
            self.reload("change-log rows after the applied sequence were pruned")
                .await
                .map_err(at)?;
            return Ok(Step::More);
        }
        let full = changes.len() == BATCH as usize;
        // Every key the batch names, read in a few statements (an import
        // brings a thousand a batch), then applied in the log's order.
        let mut ids: Vec<KeyId> = Vec::with_capacity(changes.len());
        let mut named = std::collections::HashSet::with_capacity(changes.len());
        for c in &changes {
            if !self.holds(c) && named.insert(&c.key_id) {
                ids.push(c.key_id.clone());
            }
        }
        let (mut records, mut failed) = match self.store.get_keys(&ids).await {
            Ok(found) => (
                found
                    .into_iter()
                    .map(|r| (r.id.clone(), r))
                    .collect::<std::collections::HashMap<_, _>>(),
                None,
            ),
            Err(e) => (Default::default(), Some(e)),
        };
        let mut applied = 0;
        if failed.is_none() {
            for c in &changes {
                if named.remove(&c.key_id) {
                    match records.remove(&c.key_id) {
                        Some(record) => self.index.upsert(&record),
                        None => {
                            failed = Some(StoreError::Corrupt(format!(
                                "change {} names key {}, which does not exist",
                                c.seq, c.key_id
                            )));
                            break;
                        }
                    }
                }
                applied += 1;
            }
        }
        let failed_on = failed.as_ref().map(|_| changes[applied].key_id.clone());
        changes.truncate(applied);
        if let Some(last) = changes.last() {
            self.index.advance_to(last.seq);
            self.lineage.anchor = Some(last.clone());
        }
        for c in changes {
            // No receivers is fine: nobody is watching.
            let _ = self.handle.events.send(Arc::new(c));
        }
        match failed {
            Some(e) => {
                let mut s = stuck(failed_on.as_ref(), &e);
                s.seq = self.index.applied_seq() + 1;
                Err((s, e))
            }
            None if full => Ok(Step::More),
            None => Ok(Step::Done(self.index.applied_seq())),
        }
    }

    /// Whether the index already holds the version `change` wrote: this
    /// replica made the change and installed it (an import's thousand keys
    /// a batch), so there is nothing to read again.
    fn holds(&self, change: &Change) -> bool {
        change.key_version.is_some_and(|v| {
            self.index
                .get(&change.key_hash)
                .is_some_and(|held| held.version >= v)
        })
    }

    /// Makes the index equal to a fresh snapshot, resets the applied
    /// sequence to it (also backwards) and ends every stream subscriber.
    async fn reload(&mut self, why: &'static str) -> Result<(), StoreError> {
        let epoch = self.store.log_bounds().await?.epoch;
        // Another database: its keyspaces' generation says nothing about
        // the one before, so the formats are read again whatever it is.
        self.index.forget_legacy_generation();
        self.formats_generation = None;
        self.refresh_formats().await?;
        let mut reload = self.index.begin_reload();
        let mut count = 0usize;
        let seq = self
            .store
            .snapshot(&mut |r| {
                reload.put(&r);
                count += 1;
            })
            .await?;
        let dropped = reload.finish();
        let was = self.index.applied_seq();
        self.index.reset_to(seq);
        self.lineage = Lineage {
            epoch: Some(epoch),
            anchor: None,
        };
        self.handle.resets.send_modify(|g| *g += 1);
        tracing::warn!(
            why,
            was,
            seq,
            epoch,
            keys = count,
            dropped,
            "index reloaded from snapshot; stream subscribers told to resync"
        );
        Ok(())
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

enum Step {
    /// A full batch was applied; read on.
    More,
    /// Caught up through this sequence.
    Done(i64),
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
