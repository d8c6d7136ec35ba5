use std::time::Duration;

use serde_json::json;

use super::{Actor, Keys, MAX_GRACE, Mutation, audit_event, diff};
use crate::{
    domain::{
        ApiKey, KeyId, KeyName, KeyRecord, KeyState, Metadata, Reason, Restrictions, Scope,
        Timestamp, check_type_policy,
    },
    error::{Error, Result},
    store::{ChangeKind, NewChange, StoreError, WriteBatch},
};

/// UpdateKey's changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct KeyPatch {
    pub name: Option<KeyName>,
    pub scopes: Option<Vec<Scope>>,
    pub metadata: Option<Metadata>,
    /// `Some(None)` removes the expiry.
    pub expires_at: Option<Option<Timestamp>>,
    /// Replaces all restrictions.
    pub restrictions: Option<Restrictions>,
    /// `Some(None)` follows the server's default again.
    pub rotation: Option<Option<crate::domain::KeyRotation>>,
}

#[derive(Debug)]
pub struct Rotated {
    pub key: KeyRecord,
    pub secret: ApiKey,
    pub previous: KeyRecord,
}

fn scope_strs(scopes: &[Scope]) -> Vec<&str> {
    scopes.iter().map(Scope::as_str).collect()
}

/// Refuses changes to a revoked key: revocation is final.
fn not_revoked(key: &KeyRecord) -> Result<()> {
    match key.revoked_at {
        Some(_) => Err(Error::FailedPrecondition(format!(
            "key {} is revoked",
            key.id
        ))),
        None => Ok(()),
    }
}

impl Keys {
    pub async fn update(&self, id: &KeyId, patch: KeyPatch, actor: &Actor) -> Result<KeyRecord> {
        if let Some(Some(at)) = patch.expires_at
            && at <= self.config.clock.now()
        {
            return Err(Error::invalid("key.expire_time", "must be in the future"));
        }
        self.mutate(id, actor, |key, _now| {
            not_revoked(key)?;
            let mut next = key.clone();
            let mut changes = serde_json::Map::new();
            if let Some(name) = &patch.name
                && *name != key.name
            {
                changes.insert("name".into(), diff(key.name.as_str(), name.as_str()));
                next.name = name.clone();
            }
            if let Some(scopes) = &patch.scopes
                && *scopes != key.scopes
            {
                let d = diff(scope_strs(&key.scopes), scope_strs(scopes));
                changes.insert("scopes".into(), d);
                next.scopes = scopes.clone();
            }
            if let Some(metadata) = &patch.metadata
                && *metadata != key.metadata
            {
                let d = diff(key.metadata.as_map(), metadata.as_map());
                changes.insert("metadata".into(), d);
                next.metadata = metadata.clone();
            }
            if let Some(expires_at) = patch.expires_at
                && expires_at != key.expires_at
            {
                let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
                changes.insert(
                    "expires_at".into(),
                    diff(ms(key.expires_at), ms(expires_at)),
                );
                next.expires_at = expires_at;
            }
            if let Some(restrictions) = &patch.restrictions
                && *restrictions != key.restrictions
            {
                let d = diff(key.restrictions.to_json(), restrictions.to_json());
                changes.insert("restrictions".into(), d);
                next.restrictions = restrictions.clone();
            }
            if let Some(rotation) = patch.rotation
                && rotation != key.rotation
            {
                let json = |r: Option<crate::domain::KeyRotation>| r.map(|r| r.to_json());
                changes.insert(
                    "rotation_policy".into(),
                    diff(json(key.rotation), json(rotation)),
                );
                next.rotation = rotation;
            }
            if changes.is_empty() {
                return Ok(None);
            }
            check_type_policy(next.key_type, &next.scopes, &next.restrictions)
                .map_err(|v| Error::invalid(format!("key.{}", v.field), v.reason))?;
            let kind = if key.scopes.iter().any(|s| !next.scopes.contains(s)) {
                ChangeKind::ScopesNarrowed
            } else if next
                .expires_at
                .is_some_and(|n| key.expires_at.is_none_or(|o| n < o))
            {
                ChangeKind::ExpiryShortened
            } else {
                ChangeKind::Updated
            };
            Ok(Some(Mutation {
                next,
                kind,
                action: "key.updated",
                reason: None,
                changes: changes.into(),
                notice: None,
            }))
        })
        .await
        .map(|(key, _)| key)
    }

    /// Revokes key `id`; also returns the change-log sequence that a
    /// revocation receipt waits for.
    pub async fn revoke(
        &self,
        id: &KeyId,
        reason: Reason,
        actor: &Actor,
    ) -> Result<(KeyRecord, i64)> {
        let revoked = self
            .mutate(id, actor, |key, now| {
                if key.revoked_at.is_some() {
                    return Ok(None);
                }
                let mut next = key.clone();
                next.revoked_at = Some(now);
                next.revoke_reason = Some(reason.clone());
                Ok(Some(Mutation {
                    next,
                    kind: ChangeKind::Revoked,
                    action: "key.revoked",
                    reason: Some(reason.as_str().to_owned()),
                    changes: json!({ "revoked_at": diff(None::<i64>, now.as_millis()) }),
                    notice: None,
                }))
            })
            .await?;
        match revoked {
            (key, Some(seq)) => Ok((key, seq)),
            // Already revoked earlier: anything at the log head has applied it.
            (key, None) => Ok((key, self.store.log_bounds().await?.head)),
        }
    }

    pub async fn disable(&self, id: &KeyId, reason: Reason, actor: &Actor) -> Result<KeyRecord> {
        self.mutate(id, actor, |key, now| {
            not_revoked(key)?;
            if key.disabled_at.is_some() {
                return Ok(None);
            }
            let mut next = key.clone();
            next.disabled_at = Some(now);
            next.disable_reason = Some(reason.clone());
            Ok(Some(Mutation {
                next,
                kind: ChangeKind::Disabled,
                action: "key.disabled",
                reason: Some(reason.as_str().to_owned()),
                changes: json!({ "disabled_at": diff(None::<i64>, now.as_millis()) }),
                notice: None,
            }))
        })
        .await
        .map(|(key, _)| key)
    }

    pub async fn enable(&self, id: &KeyId, actor: &Actor) -> Result<KeyRecord> {
        self.mutate(id, actor, |key, _now| {
            not_revoked(key)?;
            let Some(was) = key.disabled_at else {
                return Ok(None);
            };
            let mut next = key.clone();
            next.disabled_at = None;
            next.disable_reason = None;
            Ok(Some(Mutation {
                next,
                kind: ChangeKind::Enabled,
                action: "key.enabled",
                reason: None,
                changes: json!({ "disabled_at": diff(was.as_millis(), None::<i64>) }),
                notice: None,
            }))
        })
        .await
        .map(|(key, _)| key)
    }

    /// Issues a successor to key `id`. The old key keeps working until
    /// `now + grace` (never later than its own expiry); the new key inherits
    /// everything but the secret, and a key with a lifetime gets the same
    /// lifetime again from now.
    pub async fn rotate(
        &self,
        id: &KeyId,
        grace: Option<Duration>,
        end_grace_when_idle: Option<Duration>,
        actor: &Actor,
    ) -> Result<Rotated> {
        let grace = grace.unwrap_or(self.config.rotation_grace);
        if grace > MAX_GRACE {
            return Err(Error::invalid("grace_period", "must be at most 30 days"));
        }
        for _ in 0..super::CONFLICT_RETRIES {
            let old = self.get(id).await?;
            let now = self.config.clock.now();
            match old.state(now) {
                KeyState::Active => {}
                state => {
                    return Err(Error::FailedPrecondition(format!(
                        "key {id} is {}; only an active key can be rotated",
                        state.as_str()
                    )));
                }
            }
            if let Some(next) = &old.rotated_to {
                return Err(Error::FailedPrecondition(format!(
                    "key {id} was already rotated to {next}; rotate that key instead"
                )));
            }
            let secret = ApiKey::generate(old.key_type, old.environment)
                .map_err(|e| Error::Internal(e.to_string()))?;
            let lifetime = old.expires_at.map(|e| {
                Duration::from_millis((e.as_millis() - old.created_at.as_millis()).max(0) as u64)
            });
            let new = KeyRecord {
                id: KeyId::generate(),
                hash: secret.hash(),
                hint: secret.hint(),
                created_at: now,
                updated_at: now,
                expires_at: lifetime.map(|l| now.saturating_add(l)),
                rotated_from: Some(old.id.clone()),
                rotated_to: None,
                version: 1,
                ..old.clone()
            };
            let grace_end = now.saturating_add(grace);
            let mut previous = old.clone();
            previous.expires_at = Some(old.expires_at.map_or(grace_end, |e| e.min(grace_end)));
            previous.rotated_to = Some(new.id.clone());
            previous.end_grace_when_idle = end_grace_when_idle;
            previous.version += 1;
            previous.updated_at = now;
            let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
            let rotated = json!({
                "rotated_to": diff(None::<&str>, new.id.as_str()),
                "expires_at": diff(ms(old.expires_at), ms(previous.expires_at)),
            });
            let created = json!({ "rotated_from": diff(None::<&str>, old.id.as_str()) });
            let batch = WriteBatch {
                insert: Some((new.clone(), None)),
                update: vec![previous.clone()],
                audit: vec![
                    audit_event(now, actor, "key.rotated", &previous, None, rotated, None),
                    audit_event(now, actor, "key.created", &new, None, created, None),
                ],
                changes: vec![
                    NewChange::of(ChangeKind::Created, &new),
                    NewChange::of(ChangeKind::Rotated, &previous),
                ],
                notice: None,
            };
            match self
                .commit(batch, vec![new.clone(), previous.clone()])
                .await
            {
                Ok(_) => {
                    return Ok(Rotated {
                        key: new,
                        secret,
                        previous,
                    });
                }
                Err(Error::Store(StoreError::Conflict)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }
}
