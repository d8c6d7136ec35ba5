//! The in-memory index Verify answers from.
//!
//! **Invariant:** the index holds every key that exists, including revoked
//! and expired ones, so a miss is authoritative (NOT_FOUND) and a hit gives a
//! precise answer (REVOKED, EXPIRED) without touching the database.

mod feed;
mod hasher;
mod retention;
mod runtime;

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicI64, Ordering},
};

use dashmap::{DashMap, mapref::entry::Entry as MapEntry};

use crate::domain::{KeyHash, KeyRecord};
pub use feed::{ChangeFeed, FeedConfig, FeedHandle, ReplicaState};
use hasher::BuildKeyHashHasher;
pub use retention::Pruner;
pub use runtime::KeyRuntime;

/// One indexed key: its immutable record and its live state.
#[derive(Debug)]
pub struct Entry {
    pub record: KeyRecord,
    pub runtime: Arc<KeyRuntime>,
}

/// Key hash → entry. Written by the local admin path right after a commit
/// and by the change feed; read by every Verify.
pub struct KeyIndex {
    keys: DashMap<KeyHash, Arc<Entry>, BuildKeyHashHasher>,
    /// Highest change-log sequence whose effect the index reflects.
    applied_seq: AtomicI64,
    /// Set once the index has caught up after startup; Verify refuses before that.
    ready: AtomicBool,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            keys: DashMap::with_hasher(BuildKeyHashHasher),
            applied_seq: AtomicI64::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl KeyIndex {
    /// The entry for `hash`, if the key exists. Clones an `Arc`, never a record.
    #[inline]
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<Entry>> {
        self.keys.get(hash).map(|r| Arc::clone(r.value()))
    }

    /// Inserts or replaces a record, unless the index already holds a newer
    /// version of it. Writers race (local commit vs change feed); versions
    /// make the outcome independent of their order.
    pub fn upsert(&self, record: KeyRecord) {
        match self.keys.entry(record.hash) {
            MapEntry::Occupied(mut held) => {
                if held.get().record.version < record.version {
                    let runtime = Arc::clone(&held.get().runtime);
                    held.insert(Arc::new(Entry { record, runtime }));
                }
            }
            MapEntry::Vacant(slot) => {
                let runtime = Arc::new(KeyRuntime::new(record.id.clone()));
                slot.insert(Arc::new(Entry { record, runtime }));
            }
        }
    }

    /// Merges a snapshot taken at change sequence `seq`.
    pub fn load(&self, records: Vec<KeyRecord>, seq: i64) {
        for record in records {
            self.upsert(record);
        }
        self.advance_to(seq);
    }

    /// Lets Verify answer: called once the index has caught up with the log.
    pub fn mark_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Records that every change up to `seq` is applied.
    pub fn advance_to(&self, seq: i64) {
        self.applied_seq.fetch_max(seq, Ordering::AcqRel);
    }

    pub fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::Acquire)
    }

    #[inline]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Clones of every record `keep` accepts. For background jobs: it visits
    /// every shard, briefly read-locking each.
    pub fn records(&self, keep: impl Fn(&KeyRecord) -> bool) -> Vec<KeyRecord> {
        self.keys
            .iter()
            .filter(|e| keep(&e.value().record))
            .map(|e| e.value().record.clone())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
