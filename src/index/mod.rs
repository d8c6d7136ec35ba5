//! The in-memory index Verify answers from.
//!
//! **Invariant:** the index holds every key that exists, including revoked
//! and expired ones, so a miss is authoritative (NOT_FOUND) and a hit gives a
//! precise answer (REVOKED, EXPIRED) without touching the database.

mod entry;
mod feed;
mod hasher;
mod keyspaces;
mod legacy;
mod lineage;
mod replica;
mod retention;
mod runtime;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicI64, Ordering},
    },
};

use dashmap::{DashMap, mapref::entry::Entry as MapEntry};

use crate::domain::{KeyHash, KeyRecord, Scope};
pub use entry::Entry;
pub use feed::{ChangeFeed, FeedConfig, FeedHandle};
use hasher::BuildKeyHashHasher;
use keyspaces::KeyspaceSlots;
pub use keyspaces::{KeyspaceScope, KeyspaceSlot};
pub use legacy::{FormatCounts, FormatUse, Legacy};
pub use replica::{ReplicaState, Stuck};
pub use retention::Pruner;
pub use runtime::{KeyCounters, KeyRuntime};

/// Key hash → entry. Written by the local admin path right after a commit
/// and by the change feed; read by every Verify.
pub struct KeyIndex {
    keys: DashMap<KeyHash, Arc<Entry>, BuildKeyHashHasher>,
    /// Highest change-log sequence whose effect the index reflects.
    applied_seq: AtomicI64,
    /// Set once the index has caught up after startup; Verify refuses before that.
    ready: AtomicBool,
    /// Owner ids and scope sets, one copy each however many keys share them.
    /// Only grows: bounded by the distinct values ever loaded.
    interned: Mutex<Interned>,
    /// Keyspace ids and their slots, read by Verify without a lock of its
    /// own (a map shard's, as for the keys). Only grows.
    keyspaces: KeyspaceSlots,
    /// The keyspaces' legacy formats.
    legacy: legacy::Shared,
    /// While a reload runs: what this replica's own writes installed
    /// meanwhile. The snapshot may predate them (a revoke committed while
    /// it was read), and the log rows that would bring them again may be
    /// pruned before the feed reads them, so the reload keeps them.
    written_during_reload: Mutex<Option<HashMap<KeyHash, Arc<Entry>>>>,
}

#[derive(Default)]
struct Interned {
    owners: HashSet<Arc<str>>,
    scope_sets: HashSet<Arc<[Scope]>>,
}

impl Interned {
    fn entry(&mut self, record: &KeyRecord, keyspaces: &KeyspaceSlots) -> Entry {
        let owner = intern(&mut self.owners, record.owner_id.as_str());
        // Own scopes and the roles': what Verify decides on.
        let scopes = intern(&mut self.scope_sets, &*record.granted_scopes());
        Entry::new(record, owner, scopes, keyspaces.intern(&record.keyspace_id))
    }
}

/// The shared copy of `value`, made on first sight.
fn intern<T>(set: &mut HashSet<Arc<T>>, value: &T) -> Arc<T>
where
    T: ?Sized + Eq + std::hash::Hash,
    for<'a> Arc<T>: From<&'a T>,
{
    if let Some(shared) = set.get(value) {
        return Arc::clone(shared);
    }
    let shared = Arc::<T>::from(value);
    set.insert(Arc::clone(&shared));
    shared
}

/// A reload in progress: each record [`put`](Reload::put) replaces what is
/// held whatever its version (a restored database can hold older versions
/// than the index), and [`finish`](Reload::finish) drops the keys the
/// snapshot did not hold. What this replica's own writes make during the
/// reload is neither replaced by an older snapshot row nor dropped: those
/// writes went to the database the snapshot is read from, so their versions
/// compare with its rows, and where theirs is newer the reload installs
/// them whatever the index held before (a failover may have lost those
/// versions). Lock order: the local writes, then `interned`, then a map
/// shard. Entries are swapped one at a time under the shard locks Verify
/// already takes, so Verify never waits for a reload. Dropped without
/// `finish` (the snapshot failed), it leaves every key in place.
pub struct Reload<'a> {
    index: &'a KeyIndex,
    seen: HashSet<KeyHash>,
}

impl Reload<'_> {
    pub fn put(&mut self, record: &KeyRecord) {
        self.seen.insert(record.hash);
        // Held across the look and the swap: a local write cannot land
        // between them and be replaced by this older row.
        let written = self.index.local_writes();
        let newer_local = written
            .as_ref()
            .and_then(|w| w.get(&record.hash))
            .filter(|local| local.version >= record.version);
        match newer_local {
            Some(local) => self.index.install(record.hash, Arc::clone(local), |_| true),
            None => self.index.replace(record),
        }
    }

    /// Returns how many keys were dropped.
    pub fn finish(self) -> usize {
        // Held across the sweep, so a key created meanwhile is either in
        // the map (and kept) or lands after it; from then on a local write
        // is an ordinary versioned upsert.
        let mut written = self.index.local_writes();
        let local = written.take().unwrap_or_default();
        // Written after the snapshot was read: the newest this replica knows.
        for (hash, entry) in local.iter().filter(|(h, _)| !self.seen.contains(*h)) {
            self.index.install(*hash, Arc::clone(entry), |_| true);
        }
        let before = self.index.keys.len();
        self.index
            .keys
            .retain(|hash, _| self.seen.contains(hash) || local.contains_key(hash));
        before - self.index.keys.len()
    }
}

impl Drop for Reload<'_> {
    fn drop(&mut self) {
        // Finished or failed, the reload no longer collects local writes.
        self.index.local_writes().take();
    }
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self {
            keys: DashMap::with_hasher(BuildKeyHashHasher),
            applied_seq: AtomicI64::new(0),
            ready: AtomicBool::new(false),
            interned: Mutex::default(),
            keyspaces: KeyspaceSlots::default(),
            legacy: legacy::Shared::default(),
            written_during_reload: Mutex::default(),
        }
    }
}

impl KeyIndex {
    /// The entry for `hash`, if the key exists. Clones an `Arc`, never a record.
    #[inline]
    pub fn get(&self, hash: &KeyHash) -> Option<Arc<Entry>> {
        self.keys.get(hash).map(|r| Arc::clone(r.value()))
    }

    /// The keyspaces a Verify that names `keyspace` accepts (empty: any).
    /// A map lookup; no allocation. A keyspace no indexed key is in admits
    /// nothing, so its keys answer as unknown keys do.
    #[inline]
    pub fn keyspace_scope(&self, keyspace: &str) -> KeyspaceScope {
        if keyspace.is_empty() {
            return KeyspaceScope::ANY;
        }
        self.keyspaces
            .get(keyspace)
            .map_or_else(KeyspaceScope::nothing, KeyspaceScope::only)
    }

    /// The slots of `ids`, made if new: for binding a caller to keyspaces
    /// once, when its credential is loaded (see [`KeyspaceScope::within`]).
    /// The slot of keyspace `id`, if any key of it was ever indexed. A map
    /// lookup by `&str`: no allocation.
    pub fn keyspace_slot(&self, id: &str) -> Option<KeyspaceSlot> {
        self.keyspaces.get(id)
    }

    /// Inserts or replaces a record, unless the index already holds a newer
    /// version of it. Writers race (local commit vs change feed); versions
    /// make the outcome independent of their order.
    ///
    /// The usage counters and rate-limit bucket pass from the old entry to
    /// the new one under the map's shard lock. A Verify that makes the old
    /// entry's runtime in the same instant keeps its counts (the recorder
    /// queues them for the flush); only a bucket so made starts over.
    ///
    /// The change feed calls it only outside a reload, so one made during a
    /// reload is this replica's own write, and the reload keeps it.
    pub fn upsert(&self, record: &KeyRecord) {
        let entry = Arc::new({
            let mut interned = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
            interned.entry(record, &self.keyspaces)
        });
        {
            let mut written = self.local_writes();
            if let Some(written) = written.as_mut() {
                // During a reload, the newest of this replica's own writes
                // is kept for the reload to install against the snapshot.
                if written
                    .get(&record.hash)
                    .is_none_or(|held| held.version < entry.version)
                {
                    written.insert(record.hash, Arc::clone(&entry));
                    self.install(record.hash, entry, |held| held.version < record.version);
                }
                return;
            }
        }
        self.install(record.hash, entry, |held| held.version < record.version);
    }

    /// Puts `entry` in place of what is held when `replaces` says so (or
    /// nothing is), passing the key's runtime on.
    fn install(&self, hash: KeyHash, entry: Arc<Entry>, replaces: impl Fn(&Entry) -> bool) {
        match self.keys.entry(hash) {
            MapEntry::Occupied(mut held) => {
                if replaces(held.get()) {
                    held.get().pass_runtime_to(&entry);
                    held.insert(entry);
                }
            }
            MapEntry::Vacant(slot) => {
                slot.insert(entry);
            }
        }
    }

    fn local_writes(&self) -> std::sync::MutexGuard<'_, Option<HashMap<KeyHash, Arc<Entry>>>> {
        self.written_during_reload
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts making the index equal to a snapshot, for a reload after the
    /// change log went back (a restore or a failover) or lost rows we never
    /// read. See [`Reload`].
    pub fn begin_reload(&self) -> Reload<'_> {
        *self.local_writes() = Some(HashMap::new());
        Reload {
            index: self,
            seen: HashSet::new(),
        }
    }

    /// Inserts `record` whatever the held version, keeping the key's runtime.
    fn replace(&self, record: &KeyRecord) {
        let entry = Arc::new({
            let mut interned = self.interned.lock().unwrap_or_else(PoisonError::into_inner);
            interned.entry(record, &self.keyspaces)
        });
        self.install(record.hash, entry, |_| true);
    }

    /// Sets the applied sequence, also backwards: only after a reload.
    pub fn reset_to(&self, seq: i64) {
        self.applied_seq.store(seq, Ordering::Release);
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

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests;
