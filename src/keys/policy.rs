//! Per-owner stale policies: set, delete, list. Each change is audited
//! with the thresholds before and after, in the transaction that makes it.

use std::time::Duration;

use super::{Actor, Keys};
use crate::{
    domain::{OwnerId, StalePolicy, Timestamp},
    error::{Error, Result},
    store::NewAuditEvent,
};

impl Keys {
    /// Sets `owner`'s thresholds; audited as `owner_stale_policy.set`, with
    /// the thresholds it replaces, if any.
    pub async fn set_owner_policy(
        &self,
        owner: &OwnerId,
        policy: &StalePolicy,
        actor: &Actor,
    ) -> Result<()> {
        let old = self.owner_policy(owner).await?;
        let now = self.now();
        let changes = policy_diff(old.as_ref(), Some(policy));
        let event = policy_event(now, actor, "owner_stale_policy.set", owner, changes);
        Ok(self
            .store
            .set_owner_policy(owner, policy, now, &event)
            .await?)
    }

    pub async fn delete_owner_policy(&self, owner: &OwnerId, actor: &Actor) -> Result<()> {
        let old = self.owner_policy(owner).await?;
        let changes = policy_diff(old.as_ref(), None);
        let event = policy_event(
            self.now(),
            actor,
            "owner_stale_policy.deleted",
            owner,
            changes,
        );
        match self.store.delete_owner_policy(owner, &event).await? {
            true => Ok(()),
            false => Err(Error::NotFound(format!("stale policy of owner {owner}"))),
        }
    }

    pub async fn owner_policies(&self) -> Result<Vec<(OwnerId, StalePolicy)>> {
        Ok(self.store.owner_policies().await?)
    }

    pub async fn owner_policy(&self, owner: &OwnerId) -> Result<Option<StalePolicy>> {
        let all = self.store.owner_policies().await?;
        Ok(all.into_iter().find(|(o, _)| o == owner).map(|(_, p)| p))
    }
}

/// `{"flag_after_ms": {"old": …, "new": …}, …}`; a missing side is null.
fn policy_diff(old: Option<&StalePolicy>, new: Option<&StalePolicy>) -> serde_json::Value {
    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
    fn side(p: Option<&StalePolicy>) -> [serde_json::Value; 4] {
        use serde_json::json;
        match p {
            None => [json!(null), json!(null), json!(null), json!(null)],
            Some(p) => [
                json!(ms(p.flag_after)),
                json!(p.disable_after.map(ms)),
                json!(p.revoke_after.map(ms)),
                json!(p.dry_run),
            ],
        }
    }
    let names = [
        "flag_after_ms",
        "disable_after_ms",
        "revoke_after_ms",
        "dry_run",
    ];
    let fields = names
        .into_iter()
        .zip(side(old).into_iter().zip(side(new)))
        .map(|(name, (old, new))| {
            (
                name.to_owned(),
                serde_json::json!({ "old": old, "new": new }),
            )
        });
    serde_json::Value::Object(fields.collect())
}

fn policy_event(
    at: Timestamp,
    actor: &Actor,
    action: &'static str,
    owner: &OwnerId,
    changes: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        at,
        actor: actor.name().to_owned(),
        action,
        key_id: None,
        owner_id: Some(owner.clone()),
        reason: None,
        changes,
        request_id: None,
    }
}
