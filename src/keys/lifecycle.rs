use serde_json::json;

use super::{Actor, Keys, Mutation, diff};
use crate::{
    domain::{
        ApiKey, KeyId, KeyName, KeyRecord, Metadata, Reason, Restrictions, RoleName, Scope,
        Timestamp, check_type_policy,
    },
    error::{Error, Result},
    store::ChangeKind,
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
    /// Replaces the roles the key holds (names in its keyspace).
    pub roles: Option<Vec<RoleName>>,
}

#[derive(Debug)]
pub struct Rotated {
    pub key: KeyRecord,
    pub secret: ApiKey,
    pub previous: KeyRecord,
}

fn role_strs(roles: &[RoleName]) -> Vec<&str> {
    roles.iter().map(RoleName::as_str).collect()
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
    /// An update's scopes must be drawn from the key's keyspace catalogue,
    /// and its expiry within the keyspace's maximum lifetime from now. (A
    /// key never changes keyspace, so reading it before the update is safe.)
    async fn check_keyspace_rules(&self, key: &KeyRecord, patch: &KeyPatch) -> Result<()> {
        let ks = self.get_keyspace(&key.keyspace_id).await?;
        if let Some(scopes) = &patch.scopes
            && let Some((i, _)) = ks.first_undeclared(scopes)
        {
            return Err(Error::invalid(
                format!("key.scopes[{i}]"),
                format!("is not in the scope catalogue of keyspace {}", ks.id),
            ));
        }
        let (Some(expiry), Some(max)) = (patch.expires_at, ks.defaults.max_lifetime) else {
            return Ok(());
        };
        let latest = self.now().saturating_add(max);
        match expiry {
            Some(at) if at <= latest => Ok(()),
            _ => Err(Error::invalid(
                "key.expire_time",
                format!(
                    "must be set, and within the keyspace's max_lifetime of {}s from now",
                    max.as_secs()
                ),
            )),
        }
    }

    pub async fn update(&self, id: &KeyId, patch: KeyPatch, actor: &Actor) -> Result<KeyRecord> {
        if let Some(Some(at)) = patch.expires_at
            && at <= self.config.clock.now()
        {
            return Err(Error::invalid("key.expire_time", "must be in the future"));
        }
        for _ in 0..super::CONFLICT_RETRIES {
            // The key as the caller may see it, first: a key outside its
            // limits is NOT_FOUND before anything is said of its keyspace,
            // its catalogue or its roles.
            let held = self.get_visible(id, actor).await?;
            if patch.scopes.is_some() || patch.expires_at.is_some() {
                self.check_keyspace_rules(&held, &patch).await?;
            }
            // The roles asked for, resolved against this read: a role that
            // changes before the commit fails it, and the next round reads
            // it again.
            let roles = match &patch.roles {
                None => None,
                Some(names) => {
                    let added = |r: &RoleName| !held.roles.contains(r);
                    let resolved = self
                        .resolve_roles("key.roles", &held.keyspace_id, names, added)
                        .await?;
                    super::roles::roles_fit("key.roles", held.key_type, &resolved.1)?;
                    Some(resolved)
                }
            };
            let change = |key: &KeyRecord, _now| Self::patched(key, &patch, roles.as_ref());
            if let Some((key, _)) = self.mutate_once(held, actor, change).await? {
                return Ok(key);
            }
        }
        Err(Error::Unavailable("the key is changing too often; retry"))
    }

    /// The next version of `key` under `patch` (`None` when it changes
    /// nothing), with the roles `patch` asks for already resolved.
    fn patched(
        key: &KeyRecord,
        patch: &KeyPatch,
        roles: Option<&(Vec<RoleName>, Vec<Scope>)>,
    ) -> Result<Option<Mutation>> {
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
        if let Some((names, scopes)) = roles
            && *names != key.roles
        {
            changes.insert(
                "roles".into(),
                diff(role_strs(&key.roles), role_strs(names)),
            );
            next.roles = names.clone();
            next.role_scopes = scopes.clone();
        }
        if let Some(metadata) = &patch.metadata
            && *metadata != key.metadata
        {
            let d = diff(key.metadata.as_map(), metadata.as_map());
            changes.insert("metadata".into(), d);
            next.metadata = metadata.clone();
        }
        if let Some(expires_at) = patch.expires_at
            && (expires_at != key.expires_at || expires_at != key.lineage_expires_at)
        {
            let ms = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
            changes.insert(
                "expires_at".into(),
                diff(ms(key.expires_at), ms(expires_at)),
            );
            next.expires_at = expires_at;
            // An admin's explicit expiry is the key's new absolute end,
            // which its successors inherit.
            next.lineage_expires_at = expires_at;
        }
        let carried = patch.restrictions.clone().map(|mut r| {
            r.quota = crate::domain::quota::KeyQuota::carried(
                r.quota.as_deref(),
                key.restrictions.quota.as_deref(),
                &key.id,
            );
            r
        });
        if let Some(restrictions) = &carried
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
        let granted = next.effective_scopes();
        let kind = if key.effective_scopes().iter().any(|s| !granted.contains(s)) {
            ChangeKind::ScopesNarrowed
        } else if next
            .expires_at
            .is_some_and(|n| key.expires_at.is_none_or(|o| n < o))
        {
            ChangeKind::ExpiryShortened
        } else if next.restrictions != key.restrictions {
            // Any change, not only a narrowing: a gateway that cached
            // the key must check it again under its new restrictions.
            ChangeKind::RestrictionsChanged
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
}
