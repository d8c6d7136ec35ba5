//! The audit hash chain: each event's hash covers the previous event's hash
//! and the event's own fields, so editing, deleting or reordering a stored
//! event breaks every link after it.
//!
//! `hash = SHA-256(prev_hash ‖ canonical JSON of [at, actor, action, key_id,
//! owner_id, reason, changes, request_id])`. The JSON has sorted keys, so it
//! survives PostgreSQL's JSONB normalisation. The first event's previous
//! hash is 32 zero bytes.

use sha2::{Digest, Sha256};

use super::{AuditEvent, Store, StoreError};
use crate::domain::Timestamp;

pub const GENESIS: [u8; 32] = [0; 32];

/// The fields an audit hash covers.
pub struct Fields<'a> {
    pub at: Timestamp,
    pub actor: &'a str,
    pub action: &'a str,
    pub key_id: Option<&'a str>,
    pub owner_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub changes: &'a serde_json::Value,
    pub request_id: Option<&'a str>,
}

pub fn link(prev: &[u8], f: &Fields<'_>) -> [u8; 32] {
    let canonical = serde_json::json!([
        f.at.as_millis(),
        f.actor,
        f.action,
        f.key_id,
        f.owner_id,
        f.reason,
        f.changes,
        f.request_id,
    ]);
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.to_string().as_bytes());
    h.finalize().into()
}

/// Where a walk of the chain found it broken.
#[derive(Debug, PartialEq, Eq)]
pub struct BrokenLink {
    /// The first event whose stored hashes do not match.
    pub event_id: i64,
    pub reason: &'static str,
}

/// Walks events in id order from the first, carrying the expected previous
/// hash; the last hash when every link holds.
pub fn verify<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    mut prev: [u8; 32],
) -> Result<[u8; 32], BrokenLink> {
    for e in events {
        let broken = |reason| BrokenLink {
            event_id: e.id,
            reason,
        };
        let (Some(stored_prev), Some(stored)) = (&e.prev_hash, &e.hash) else {
            return Err(broken("the event has no hash"));
        };
        if stored_prev.as_slice() != prev {
            return Err(broken(
                "the event does not follow the one before it (deleted or reordered)",
            ));
        }
        let fields = Fields {
            at: e.at,
            actor: &e.actor,
            action: &e.action,
            key_id: e.key_id.as_deref(),
            owner_id: e.owner_id.as_deref(),
            reason: e.reason.as_deref(),
            changes: &e.changes,
            request_id: e.request_id.as_deref(),
        };
        let expected = link(&prev, &fields);
        if stored.as_slice() != expected {
            return Err(broken(
                "the event's content does not match its hash (edited)",
            ));
        }
        prev = expected;
    }
    Ok(prev)
}

/// Walks every audit event in `store`, oldest first, in batches; the number
/// of events when the chain is intact.
pub async fn verify_store(store: &dyn Store) -> Result<Result<u64, BrokenLink>, StoreError> {
    let (mut after, mut prev, mut count) = (0, GENESIS, 0u64);
    loop {
        let events = store.audit_chain(after, 1000).await?;
        let Some(last) = events.last() else {
            return Ok(Ok(count));
        };
        after = last.id;
        match verify(&events, prev) {
            Ok(next) => prev = next,
            Err(broken) => return Ok(Err(broken)),
        }
        count += events.len() as u64;
    }
}
