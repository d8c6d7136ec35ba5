//! What this replica knows of its own freshness.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use crate::domain::Timestamp;

/// A change the feed cannot apply, so it stops there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    /// The first change-log sequence not applied.
    pub seq: i64,
    /// The key the change is about, when the row itself could be read.
    pub key_id: Option<String>,
    /// Why it cannot be applied (the store's error, which never holds a secret).
    pub reason: String,
}

/// Written by the feed; read by health, GetReplicaStatus, the metrics and
/// Verify's fail-closed check.
#[derive(Debug)]
pub struct ReplicaState {
    pub id: String,
    pub started_at: Timestamp,
    /// When the feed last had the index equal to the change log it read:
    /// a batch fully applied, or nothing left to apply (unix ms; 0 before).
    /// A read that could not be applied is not contact, so a stuck feed
    /// ages like a disconnected one.
    last_contact: AtomicI64,
    /// Set while the feed is stuck on a change; cleared once it passes it.
    stuck: Mutex<Option<Stuck>>,
}

impl ReplicaState {
    pub fn new() -> Self {
        Self {
            id: format!("rep_{}", ulid::Ulid::new().to_string().to_lowercase()),
            started_at: Timestamp::now(),
            last_contact: AtomicI64::new(0),
            stuck: Mutex::new(None),
        }
    }

    pub fn last_contact(&self) -> Option<Timestamp> {
        match self.last_contact.load(Ordering::Acquire) {
            0 => None,
            ms => Some(Timestamp::from_millis(ms)),
        }
    }

    /// The index reflects everything the feed read: it counts as contact.
    pub(super) fn applied(&self) {
        self.last_contact
            .store(Timestamp::now().as_millis(), Ordering::Release);
        *self.stuck.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Records where the feed is stuck; `true` when that is news (a new
    /// sequence or reason), so the caller logs it once, not every poll.
    pub(super) fn stuck_at(&self, stuck: Stuck) -> bool {
        let mut held = self.stuck.lock().unwrap_or_else(PoisonError::into_inner);
        let news = held.as_ref() != Some(&stuck);
        *held = Some(stuck);
        news
    }

    /// Where the feed is stuck, if it is.
    pub fn stuck(&self) -> Option<Stuck> {
        self.stuck
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether Verify must refuse under `--fail-closed-after bound`: the
    /// index last matched the change log longer ago (or never). Judged by
    /// the system clock, like `last_contact`.
    pub fn fail_closed(&self, bound: Option<Duration>) -> bool {
        bound.is_some_and(|b| self.staleness(Timestamp::now()).is_none_or(|s| s > b))
    }

    /// How long since the index last matched the change log.
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
