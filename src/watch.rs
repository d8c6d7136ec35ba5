//! WatchRevocations: the change log's backlog after a cursor, then live
//! events, with a bounded buffer per subscriber.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast::error::RecvError, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::{
    domain::{Environment, KeyspaceId, OwnerId, TokenLimits},
    error::{Error, Result},
    index::FeedHandle,
    store::{Change, Store},
};

/// What a subscriber asked for.
#[derive(Clone, Debug, Default)]
pub struct WatchRequest {
    pub after: Option<i64>,
    pub owner_id: Option<OwnerId>,
    pub environment: Option<Environment>,
    pub all_changes: bool,
    /// Only keys of this keyspace.
    pub keyspace_id: Option<KeyspaceId>,
    /// The subscriber's credential's limits: changes to keys outside them
    /// are never sent.
    pub within: TokenLimits,
}

impl WatchRequest {
    fn wants(&self, c: &Change) -> bool {
        (self.all_changes || c.kind.is_restrictive())
            && self.owner_id.as_ref().is_none_or(|o| *o == c.owner_id)
            && self.environment.is_none_or(|e| e == c.environment)
            && self
                .keyspace_id
                .as_ref()
                .is_none_or(|k| *k == c.keyspace_id)
            && self
                .within
                .admits(c.keyspace_id.as_str(), c.owner_id.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// Events queued per subscriber before it counts as slow.
    pub subscriber_buffer: usize,
    /// How long a full subscriber may stall before it is cut off.
    pub slow_subscriber_timeout: Duration,
    pub max_subscribers: usize,
}

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            subscriber_buffer: 256,
            slow_subscriber_timeout: Duration::from_secs(5),
            max_subscribers: 1000,
        }
    }
}

/// An event stream item: a change, or the error that ends the stream.
pub type WatchItem = Result<Arc<Change>>;

/// Events, then at most one final error.
pub type WatchStream = std::pin::Pin<Box<dyn Stream<Item = WatchItem> + Send>>;

#[derive(Clone)]
pub struct Watcher {
    store: Arc<dyn Store>,
    feed: FeedHandle,
    config: WatchConfig,
    active: Arc<AtomicUsize>,
    shutdown: CancellationToken,
}

const BACKLOG_BATCH: u32 = 500;

impl Watcher {
    pub fn new(
        store: Arc<dyn Store>,
        feed: FeedHandle,
        config: WatchConfig,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            feed,
            config,
            active: Arc::new(AtomicUsize::new(0)),
            shutdown,
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Starts a subscription. Fails fast on a cursor outside the log or too
    /// many subscribers; later failures end the stream with an error item.
    pub async fn watch(&self, req: WatchRequest) -> Result<WatchStream> {
        if self.active.fetch_add(1, Ordering::AcqRel) >= self.config.max_subscribers {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::ResourceExhausted(
                "too many revocation subscribers".into(),
            ));
        }
        let guard = ActiveGuard(self.active.clone());
        // Subscribe before reading the backlog, so nothing committed in
        // between is missed; overlap is skipped by cursor.
        let live = self.feed.subscribe();
        let resets = self.feed.resets();
        let bounds = self.store.log_bounds().await?;
        let cursor = match req.after {
            None => bounds.head,
            Some(c) if c < bounds.pruned_through => {
                return Err(Error::OutOfRange(format!(
                    "cursor {c} is older than the change-log retention (oldest resumable: {}); resync",
                    bounds.pruned_through
                )));
            }
            Some(c) if c > bounds.head => {
                return Err(Error::OutOfRange(format!(
                    "cursor {c} is ahead of the change log (head: {})",
                    bounds.head
                )));
            }
            Some(c) => c,
        };
        let (tx, rx) = mpsc::channel(self.config.subscriber_buffer.max(1));
        // The final error travels apart from the (maybe full) event buffer,
        // so a stalled subscriber still learns why it was cut off once it
        // reads again.
        let (end_tx, end_rx) = oneshot::channel::<Error>();
        let task = Subscription {
            store: self.store.clone(),
            req,
            cursor,
            head: bounds.head,
            resets,
            tx,
            timeout: self.config.slow_subscriber_timeout,
            _guard: guard,
        };
        let shutdown = self.shutdown.clone();
        // Ends on its own when the client leaves, falls behind, or at shutdown.
        tokio::spawn(async move {
            let end = tokio::select! {
                end = task.run(live) => end,
                () = shutdown.cancelled() => Some(Error::Unavailable("server shutting down; resume with the last cursor")),
            };
            if let Some(e) = end {
                let _ = end_tx.send(e);
            }
        });
        let end = futures::stream::once(end_rx).filter_map(|r| async move { r.ok().map(Err) });
        Ok(Box::pin(ReceiverStream::new(rx).chain(end)))
    }
}

struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Subscription {
    store: Arc<dyn Store>,
    req: WatchRequest,
    /// The last sequence delivered or skipped.
    cursor: i64,
    /// The log's head when the stream started: the backlog must reach it,
    /// since live events start at or below it.
    head: i64,
    /// Bumped when the feed reloads from a snapshot: the cursor is void.
    resets: watch::Receiver<u64>,
    tx: mpsc::Sender<WatchItem>,
    timeout: Duration,
    _guard: ActiveGuard,
}

impl Subscription {
    /// Delivers until the client leaves (`None`) or the stream must end with
    /// an error.
    async fn run(
        mut self,
        mut live: tokio::sync::broadcast::Receiver<Arc<Change>>,
    ) -> Option<Error> {
        let result: Result<(), Error> = async {
            self.backlog().await?;
            loop {
                let received = tokio::select! {
                    // A client that leaves frees its slot now, not at the
                    // next event.
                    () = self.tx.closed() => return Ok(()),
                    Ok(()) = self.resets.changed() => return Err(self.resync()),
                    r = live.recv() => r,
                };
                // The feed bumps `resets` before it broadcasts anything
                // after a reload, so this sees it first.
                self.check_lineage()?;
                match received {
                    Ok(c) if c.seq <= self.cursor => {}
                    Ok(c) if c.seq != self.cursor + 1 => return Err(self.gap()),
                    Ok(c) => self.deliver(c).await?,
                    Err(RecvError::Lagged(_)) => return Err(self.too_slow()),
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        }
        .await;
        match result {
            Ok(()) => None,
            Err(_) if self.tx.is_closed() => None,
            Err(e) => Some(e),
        }
    }

    fn too_slow(&self) -> Error {
        Error::Aborted(format!(
            "subscriber too slow; resume with after_cursor={}",
            self.cursor
        ))
    }

    /// Rows after the cursor are missing (pruned while the stream read
    /// them): resuming cannot fill the hole.
    fn gap(&self) -> Error {
        Error::OutOfRange(format!(
            "change-log rows after cursor {} were pruned; the cursor is too old: resync",
            self.cursor
        ))
    }

    fn check_lineage(&self) -> Result<(), Error> {
        if self.resets.has_changed().unwrap_or(false) {
            return Err(self.resync());
        }
        Ok(())
    }

    /// The feed reloaded from a snapshot: the log went back, changed
    /// lineage, or lost rows it never read, so no cursor continues it.
    fn resync(&self) -> Error {
        Error::DataLoss(format!(
            "the change log went back or was replaced (a restore or a failover); \
             cursor {} is void: resync, then watch without a cursor",
            self.cursor
        ))
    }

    /// The log from the cursor to the head seen at the start, checked as the
    /// feed checks it: the first row is `cursor + 1`, rows are contiguous,
    /// and they reach that head. A prune racing the read shows as a gap.
    async fn backlog(&mut self) -> Result<(), Error> {
        loop {
            let batch = self.store.changes_after(self.cursor, BACKLOG_BATCH).await?;
            self.check_lineage()?;
            let done = batch.len() < BACKLOG_BATCH as usize;
            for c in batch {
                if c.seq != self.cursor + 1 {
                    return Err(self.gap());
                }
                self.deliver(Arc::new(c)).await?;
            }
            if done {
                return if self.cursor < self.head {
                    Err(self.gap())
                } else {
                    Ok(())
                };
            }
        }
    }

    async fn deliver(&mut self, c: Arc<Change>) -> Result<(), Error> {
        let seq = c.seq;
        if self.req.wants(&c) && self.tx.send_timeout(Ok(c), self.timeout).await.is_err() {
            return Err(self.too_slow());
        }
        self.cursor = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{KeyHash, KeyId, Timestamp},
        store::ChangeKind,
    };

    fn change(keyspace: &str) -> Change {
        Change {
            seq: 1,
            kind: ChangeKind::Revoked,
            key_id: KeyId::generate(),
            key_hash: KeyHash::from_bytes([7; 32]),
            owner_id: OwnerId::parse("acct_1").unwrap(),
            environment: Environment::Live,
            keyspace_id: keyspace.parse().unwrap(),
            expires_at: None,
            at: Timestamp::from_millis(0),
            key_version: Some(2),
        }
    }

    #[test]
    fn a_bound_stream_sees_only_its_keyspaces() {
        let within = TokenLimits::parse(Some(vec!["ks_a".into(), "ks_b".into()]), None).unwrap();
        let bound = WatchRequest {
            within: within.clone(),
            ..WatchRequest::default()
        };
        assert!(bound.wants(&change("ks_a")) && bound.wants(&change("ks_b")));
        assert!(!bound.wants(&change("ks_default")));
        let narrowed = WatchRequest {
            keyspace_id: Some("ks_b".parse().unwrap()),
            within,
            ..WatchRequest::default()
        };
        assert!(!narrowed.wants(&change("ks_a")) && narrowed.wants(&change("ks_b")));
        assert!(WatchRequest::default().wants(&change("ks_default")));
    }
}
