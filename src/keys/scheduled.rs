//! Key operations the scheduler uses.

use serde_json::json;

use super::{Actor, Keys, Mutation, audit_event};
use crate::{
    domain::{KeyRecord, KeyState, Timestamp},
    error::Result,
    store::{ChangeKind, WriteBatch, WriteOutcome},
};

/// Who scheduled changes are by, in audit events.
pub fn scheduler() -> Actor {
    Actor::system("system:scheduler")
}

impl Keys {
    /// Writes a notice event (`key.expiring`, `key.stale`, …) about `key`
    /// once: `false` when `notice` was sent before.
    pub async fn notify(
        &self,
        key: &KeyRecord,
        action: &'static str,
        reason: String,
        changes: serde_json::Value,
        notice: String,
    ) -> Result<bool> {
        let event = audit_event(
            self.now(),
            &scheduler(),
            action,
            key,
            Some(reason),
            changes,
            None,
        );
        let batch = WriteBatch {
            audit: vec![event],
            notice: Some((key.id.clone(), notice)),
            ..WriteBatch::default()
        };
        Ok(matches!(
            self.commit(batch, vec![]).await?,
            WriteOutcome::Committed { .. }
        ))
    }

    /// A scheduled change to `key`: `change` builds the next version, made
    /// once under `notice`.
    pub(crate) async fn scheduled_change(
        &self,
        key: &KeyRecord,
        notice: String,
        action: &'static str,
        kind: ChangeKind,
        reason: String,
        change: impl Fn(&mut KeyRecord, Timestamp) + Send + Sync,
    ) -> Result<bool> {
        let (_, seq) = self
            .mutate(&key.id, &scheduler(), |current, now| {
                // Revocation may follow a disable; nothing follows a revocation
                // or an expiry.
                let state = current.state(now);
                let open = state == KeyState::Active
                    || (state == KeyState::Disabled && kind == ChangeKind::Revoked);
                if !open {
                    return Ok(None);
                }
                let mut next = current.clone();
                change(&mut next, now);
                let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
                Ok(Some(Mutation {
                    changes: json!({
                        "expires_at": super::diff(ms(current.expires_at), ms(next.expires_at)),
                        "disabled_at": super::diff(ms(current.disabled_at), ms(next.disabled_at)),
                        "revoked_at": super::diff(ms(current.revoked_at), ms(next.revoked_at)),
                    }),
                    next,
                    kind,
                    action,
                    reason: Some(reason.clone()),
                    notice: Some(notice.clone()),
                }))
            })
            .await?;
        Ok(seq.is_some())
    }
}
