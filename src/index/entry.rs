//! The compact form of a key that the index holds: what Verify decides on
//! and answers with, and nothing else.
//!
//! At a million keys, every byte here is a megabyte. So the entry keeps the
//! id as its 16-byte ULID, shares owner ids and scope sets between keys
//! (interned by the index), puts restrictions and metadata behind one
//! optional box, and allocates a key's usage counters only when it is first
//! verified. Everything else about a key (name, hint, history, policies) is
//! read from the store by the admin path and the background jobs.

use std::sync::{Arc, OnceLock};

use super::{KeyRuntime, KeyspaceSlot};
use crate::domain::{
    Environment, KeyId, KeyRecord, KeyState, KeyType, Metadata, PackedKeyId, Restrictions, Scope,
    Timestamp,
};

static NO_RESTRICTIONS: Restrictions = Restrictions::NONE;
static NO_METADATA: Metadata = Metadata::EMPTY;

/// Restrictions and metadata: rare, so boxed and absent when both are empty.
#[derive(Debug, PartialEq, Eq)]
struct Extras {
    restrictions: Restrictions,
    metadata: Metadata,
    /// The pools of the key's usage limits, made on its first charge.
    pools: crate::limits::Pools,
}

/// One indexed key.
#[derive(Debug)]
pub struct Entry {
    pub version: i64,
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
    pub disabled: bool,
    pub key_type: KeyType,
    pub environment: Environment,
    /// The key's keyspace, interned by the index: 4 bytes, in what was
    /// padding.
    keyspace: KeyspaceSlot,
    id: PackedKeyId,
    owner_id: Arc<str>,
    scopes: Arc<[Scope]>,
    extras: Option<Box<Extras>>,
    /// Usage counters and rate-limit bucket; made on first use, and handed
    /// on to the next version of the record by [`super::KeyIndex::upsert`].
    runtime: OnceLock<Arc<KeyRuntime>>,
}

impl Entry {
    /// The entry for `record`, sharing `owner_id` and `scopes` (what the
    /// key grants: its own and its roles' scopes) with other keys;
    /// `keyspace` is the slot of its keyspace.
    pub fn new(
        record: &KeyRecord,
        owner_id: Arc<str>,
        scopes: Arc<[Scope]>,
        keyspace: KeyspaceSlot,
    ) -> Self {
        let extras = (!record.restrictions.is_empty() || !record.metadata.is_empty()).then(|| {
            Box::new(Extras {
                restrictions: record.restrictions.clone(),
                metadata: record.metadata.clone(),
                pools: Default::default(),
            })
        });
        Self {
            version: record.version,
            expires_at: record.expires_at,
            revoked: record.revoked_at.is_some(),
            disabled: record.disabled_at.is_some(),
            key_type: record.key_type,
            environment: record.environment,
            keyspace,
            id: record.id.pack(),
            owner_id,
            scopes,
            extras,
            runtime: OnceLock::new(),
        }
    }

    pub fn key_id(&self) -> KeyId {
        self.id.unpack()
    }

    pub fn packed_id(&self) -> PackedKeyId {
        self.id
    }

    #[inline]
    pub fn keyspace(&self) -> KeyspaceSlot {
        self.keyspace
    }

    pub fn owner_id(&self) -> &str {
        &self.owner_id
    }

    /// The owner id, shared: for naming the owner's limits without copying it.
    pub fn owner_arc(&self) -> Arc<str> {
        Arc::clone(&self.owner_id)
    }

    pub fn scopes(&self) -> &[Scope] {
        &self.scopes
    }

    pub fn restrictions(&self) -> &Restrictions {
        self.extras
            .as_ref()
            .map_or(&NO_RESTRICTIONS, |e| &e.restrictions)
    }

    /// The cache of the key's usage-limit pools (keys without extras have
    /// no limits, and no cache).
    pub fn pools(&self) -> Option<&crate::limits::Pools> {
        self.extras.as_ref().map(|e| &e.pools)
    }

    pub fn metadata(&self) -> &Metadata {
        self.extras.as_ref().map_or(&NO_METADATA, |e| &e.metadata)
    }

    pub fn state(&self, now: Timestamp) -> KeyState {
        KeyState::of(self.revoked, self.disabled, self.expires_at, now)
    }

    /// This key's live state on this replica, made on first use.
    #[inline]
    pub fn runtime(&self) -> &Arc<KeyRuntime> {
        self.runtime
            .get_or_init(|| Arc::new(KeyRuntime::new(self.id)))
    }

    /// Hands this entry's runtime, if it has one, to `next`, its successor.
    pub(super) fn pass_runtime_to(&self, next: &Entry) {
        if let Some(rt) = self.runtime.get() {
            let _ = next.runtime.set(Arc::clone(rt));
        }
    }
}

/// An entry without interning, for tests and one-off decisions. Its
/// keyspace slot is the default keyspace's whatever the record's: only an
/// index interns keyspaces.
impl From<&KeyRecord> for Entry {
    fn from(record: &KeyRecord) -> Self {
        Self::new(
            record,
            record.owner_id.as_str().into(),
            (&*record.granted_scopes()).into(),
            KeyspaceSlot::DEFAULT,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_small() {
        // The index's memory per key is this, plus the Arc's 16-byte header
        // (together 128 bytes, one allocator size class), plus the map's
        // slot (hash and pointer). See BENCHMARKS.md before growing it.
        let size = std::mem::size_of::<Entry>();
        assert!(size <= 112, "Entry grew to {size} bytes");
    }
}
