//! The legacy formats every keyspace accepts, as Verify matches them: read
//! only for a string that is not a keysmith key, under a read lock that is
//! never held across an await. Reloaded by the change feed when a keyspace's
//! formats change, and at once on the replica that changed them.

use std::sync::{
    Arc, PoisonError, RwLock,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use super::{Entry, KeyIndex, KeyspaceSlot};
use crate::domain::{
    Keyspace, Timestamp,
    legacy::{Shape, hash_whole},
};

/// What Verify made of a string that is not a keysmith key.
pub enum Legacy {
    /// It has no declared legacy shape: MALFORMED.
    NoShape,
    /// It has a declared shape, but no live key of that keyspace is it.
    Missing,
    /// Every format of its shape is retired.
    Retired,
    Found(Arc<Entry>),
}

/// Calls per format on this replica since it started.
#[derive(Debug, Default)]
pub struct FormatCounts {
    /// Keys of the format found (whatever Verify then decided).
    pub found: AtomicU64,
    /// Calls refused as FORMAT_RETIRED.
    pub retired: AtomicU64,
}

struct Format {
    shape: Shape,
    slot: KeyspaceSlot,
    /// Milliseconds; `i64::MAX` for never.
    retire_at: i64,
    keyspace: Arc<str>,
    name: Arc<str>,
    counts: Arc<FormatCounts>,
}

/// Every keyspace's legacy formats, as of a generation of the keyspaces.
#[derive(Default)]
pub(super) struct LegacyTable {
    formats: Vec<Format>,
    generation: Option<i64>,
}

/// One format's counts, as the metrics read them.
pub struct FormatUse {
    pub keyspace: Arc<str>,
    pub format: Arc<str>,
    pub counts: Arc<FormatCounts>,
}

pub(super) type Shared = RwLock<LegacyTable>;

impl KeyIndex {
    /// Replaces the legacy formats with those of `keyspaces` (all of them),
    /// read at the keyspaces' `generation`; an older read than the one in
    /// place changes nothing. A format kept by name keeps its counts.
    pub fn set_legacy_formats(&self, generation: i64, keyspaces: &[Keyspace]) {
        let mut table = self.legacy.write().unwrap_or_else(PoisonError::into_inner);
        if table.generation.is_some_and(|g| g > generation) {
            return;
        }
        table.generation = Some(generation);
        let old = std::mem::take(&mut table.formats);
        for ks in keyspaces {
            for f in &ks.legacy {
                let counts = old
                    .iter()
                    .find(|o| &*o.keyspace == ks.id.as_str() && *o.name == f.name)
                    .map_or_else(Arc::default, |o| o.counts.clone());
                table.formats.push(Format {
                    shape: Shape::of(f),
                    slot: self.keyspaces.intern(&ks.id),
                    retire_at: f.retire_at.map_or(i64::MAX, Timestamp::as_millis),
                    keyspace: ks.id.as_str().into(),
                    name: f.name.as_str().into(),
                    counts,
                });
            }
        }
    }

    /// Lets the next [`Self::set_legacy_formats`] install whatever
    /// generation it read: after the database was swapped or restored.
    pub fn forget_legacy_generation(&self) {
        let mut table = self.legacy.write().unwrap_or_else(PoisonError::into_inner);
        table.generation = None;
    }

    /// Matches `key` against the legacy formats of the keyspaces `admits`
    /// lets the caller reach; when it has one's shape, hashes it whole and
    /// looks it up. A key counts only in a keyspace whose live format it
    /// matched. When every format it matched is retired, the answer is
    /// Retired whether or not the key exists: it depends on the shape alone.
    pub fn legacy(
        &self,
        key: &str,
        now: Timestamp,
        admits: impl Fn(KeyspaceSlot) -> bool,
    ) -> Legacy {
        let table = self.legacy.read().unwrap_or_else(PoisonError::into_inner);
        let bytes = key.as_bytes();
        let now = now.as_millis();
        let mut hash = None;
        let mut retired = None;
        let mut live = false;
        for f in table
            .formats
            .iter()
            .filter(|f| admits(f.slot) && f.shape.matches(bytes))
        {
            if now >= f.retire_at {
                retired.get_or_insert(f);
                continue;
            }
            live = true;
            let hash = *hash.get_or_insert_with(|| hash_whole(key));
            if let Some(entry) = self.get(&hash).filter(|e| e.keyspace() == f.slot) {
                f.counts.found.fetch_add(1, Relaxed);
                return Legacy::Found(entry);
            }
        }
        match (live, retired) {
            (true, _) => Legacy::Missing,
            (false, None) => Legacy::NoShape,
            (false, Some(f)) => {
                f.counts.retired.fetch_add(1, Relaxed);
                Legacy::Retired
            }
        }
    }

    /// Each format's counts.
    pub fn legacy_use(&self) -> Vec<FormatUse> {
        let table = self.legacy.read().unwrap_or_else(PoisonError::into_inner);
        table
            .formats
            .iter()
            .map(|f| FormatUse {
                keyspace: f.keyspace.clone(),
                format: f.name.clone(),
                counts: f.counts.clone(),
            })
            .collect()
    }
}
