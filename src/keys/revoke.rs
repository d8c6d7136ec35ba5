//! RevokeKey: one key, or a key and every successor rotated from it.

use serde_json::json;

use super::{Actor, Keys, Mutation, audit_event, diff};
use crate::{
    domain::{KeyId, KeyRecord, Reason, Timestamp},
    error::{Error, Result},
    store::{ChangeKind, NewChange, StoreError, WriteBatch, WriteOutcome},
};

/// Most keys one lineage revocation walks. A lineage grows by one key per
/// rotation, and self-rotation by at most one a minute.
pub const MAX_LINEAGE: usize = 1000;

/// What a revocation ended.
#[derive(Debug)]
pub struct Revocation {
    /// The key named, as it is now.
    pub key: KeyRecord,
    /// With `include_successors`: every key rotated from it, oldest first,
    /// as they are now (revoked by this call or before).
    pub successors: Vec<KeyRecord>,
    /// The change-log sequence a revocation receipt waits for: the last
    /// of this call's changes, or the log head when nothing changed.
    pub seq: i64,
}

fn revoked(key: &KeyRecord, reason: &Reason, now: Timestamp) -> KeyRecord {
    let mut next = key.clone();
    next.revoked_at = Some(now);
    next.revoke_reason = Some(reason.clone());
    next
}

impl Keys {
    /// Revokes key `id`, and with `include_successors` every key rotated
    /// from it, so a leaked key that a thief rotated can be ended whole.
    pub async fn revoke(
        &self,
        id: &KeyId,
        reason: Reason,
        include_successors: bool,
        actor: &Actor,
    ) -> Result<Revocation> {
        if include_successors {
            return self.revoke_lineage(id, &reason, actor).await;
        }
        let revoked = self
            .mutate(id, actor, |key, now| {
                if key.revoked_at.is_some() {
                    return Ok(None);
                }
                Ok(Some(Mutation {
                    next: revoked(key, &reason, now),
                    kind: ChangeKind::Revoked,
                    action: "key.revoked",
                    reason: Some(reason.as_str().to_owned()),
                    changes: json!({ "revoked_at": diff(None::<i64>, now.as_millis()) }),
                    notice: None,
                }))
            })
            .await?;
        let (key, seq) = match revoked {
            (key, Some(seq)) => (key, seq),
            // Already revoked earlier: anything at the log head has applied it.
            (key, None) => (key, self.store.log_bounds().await?.head),
        };
        Ok(Revocation {
            key,
            successors: vec![],
            seq,
        })
    }

    /// The key and its successors are revoked in one transaction: every
    /// replica applies them together, and a rotation racing this call
    /// either lands first (and its successor is revoked too, on a retry) or
    /// finds its key revoked.
    async fn revoke_lineage(
        &self,
        id: &KeyId,
        reason: &Reason,
        actor: &Actor,
    ) -> Result<Revocation> {
        for _ in 0..super::CONFLICT_RETRIES {
            let chain = self.lineage(id, actor).await?;
            let now = self.config.clock.now();
            let mut batch = WriteBatch::default();
            let mut after = Vec::with_capacity(chain.len());
            for key in &chain {
                if key.revoked_at.is_some() {
                    after.push(key.clone());
                    continue;
                }
                let mut next = revoked(key, reason, now);
                next.version += 1;
                next.updated_at = now;
                let mut changes = json!({ "revoked_at": diff(None::<i64>, now.as_millis()) });
                if key.id != *id {
                    changes["successor_of"] = json!(id.as_str());
                }
                let why = Some(reason.as_str().to_owned());
                batch.audit.push(audit_event(
                    now,
                    actor,
                    "key.revoked",
                    &next,
                    why,
                    changes,
                    None,
                ));
                batch
                    .changes
                    .push(NewChange::of(ChangeKind::Revoked, &next));
                batch.update.push(next.clone());
                after.push(next);
            }
            let seq = if batch.update.is_empty() {
                self.store.log_bounds().await?.head
            } else {
                let updated = batch.update.clone();
                match self.commit(batch, updated).await {
                    Ok(WriteOutcome::Committed { last_seq }) => last_seq,
                    Ok(_) => return Err(Error::Internal("a revocation was not committed".into())),
                    Err(Error::Store(StoreError::Conflict)) => continue,
                    Err(e) => return Err(e),
                }
            };
            let mut after = after.into_iter();
            let key = after
                .next()
                .ok_or_else(|| Error::Internal("empty lineage".into()))?;
            return Ok(Revocation {
                key,
                successors: after.collect(),
                seq,
            });
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }

    /// Key `id` and every key rotated from it, oldest first. Successors
    /// keep their key's owner, so `actor` sees them all or none.
    async fn lineage(&self, id: &KeyId, actor: &Actor) -> Result<Vec<KeyRecord>> {
        let mut chain = vec![self.get_visible(id, actor).await?];
        while let Some(next) = chain.last().and_then(|k| k.rotated_to.clone()) {
            if chain.len() > MAX_LINEAGE {
                return Err(Error::FailedPrecondition(format!(
                    "key {id} has more than {MAX_LINEAGE} successors; revoke a later one with \
                     include_successors first"
                )));
            }
            chain.push(self.get(&next).await?);
        }
        Ok(chain)
    }
}
