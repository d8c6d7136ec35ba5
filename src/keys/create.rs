use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Actor, Keys, audit_event};
use crate::{
    domain::quota::Subject,
    domain::{
        ApiKey, Environment, KeyName, KeyRecord, KeyType, KeyspaceDefaults, KeyspaceId, Metadata,
        OwnerId, RequestId, Restrictions, RoleName, Scope, Timestamp, check_type_policy,
    },
    error::{Error, Result},
    store::{
        ChangeKind, Idempotency, MintedPrefix, NewBalance, NewChange, StoreError, WriteBatch,
        WriteOutcome,
    },
};

/// Longest lifetime a key may be given at creation.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

/// When a new key expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    At(Timestamp),
    After(Duration),
}

/// A parsed CreateKey request.
#[derive(Clone, Debug)]
pub struct CreateKey {
    pub owner_id: OwnerId,
    pub name: KeyName,
    /// `None`: the default keyspace.
    pub keyspace_id: Option<KeyspaceId>,
    pub key_type: KeyType,
    /// `None`: the keyspace's default, then test.
    pub environment: Option<Environment>,
    pub scopes: Vec<Scope>,
    pub expiry: Option<Expiry>,
    pub metadata: Metadata,
    pub request_id: Option<RequestId>,
    pub restrictions: Restrictions,
    pub rotation: Option<crate::domain::KeyRotation>,
    /// Roles of the key's keyspace, by name, none repeated.
    pub roles: Vec<RoleName>,
    /// The key's starting balance, when it spends credits.
    pub credits: Option<NewCredits>,
}

/// A balance to start: its credits and how it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewCredits {
    pub remaining: i64,
    pub policy: crate::domain::quota::CreditPolicy,
}

/// The outcome of CreateKey. `secret` is `None` for a replayed request: the
/// secret was shown once, to the first call.
#[derive(Debug)]
pub struct Created {
    pub key: KeyRecord,
    pub secret: Option<ApiKey>,
}

impl CreateKey {
    /// A digest of everything but the request id, so a retry can be told
    /// apart from a reuse of the id for a different key.
    fn fingerprint(&self) -> [u8; 32] {
        let expiry = match self.expiry {
            None => json!(null),
            Some(Expiry::At(t)) => json!({ "at": t.as_millis() }),
            Some(Expiry::After(d)) => json!({ "after_ms": d.as_millis() as u64 }),
        };
        // A request naming no keyspace digests as it did before keyspaces
        // (its unset environment was test then, as it is in the default
        // keyspace), so a retry across the upgrade still replays.
        let environment = self.environment.unwrap_or(Environment::Test);
        let mut canonical = json!([
            self.owner_id.as_str(),
            self.name.as_str(),
            self.key_type.as_str(),
            environment.as_str(),
            self.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            expiry,
            self.metadata.as_map(),
            self.restrictions.to_json(),
            self.rotation.map(|r| r.to_json()),
        ]);
        // Likewise a request without roles digests as it did before roles.
        if let (false, Some(list)) = (self.roles.is_empty(), canonical.as_array_mut()) {
            let mut roles: Vec<&str> = self.roles.iter().map(RoleName::as_str).collect();
            roles.sort_unstable();
            list.push(json!({ "roles": roles }));
        }
        if let (Some(c), Some(list)) = (self.credits, canonical.as_array_mut()) {
            list.push(json!({ "credits": c.remaining }));
        }
        if let (Some(ks), Some(list)) = (&self.keyspace_id, canonical.as_array_mut()) {
            list.push(json!({
                "keyspace": ks.as_str(),
                "environment_set": self.environment.is_some(),
            }));
        }
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }
}

/// When a key created at `now` expires, from its request and its
/// keyspace's defaults; a request beyond the keyspace's maximum lifetime is
/// refused, naming the field that asked.
fn expiry(req: Option<Expiry>, d: &KeyspaceDefaults, now: Timestamp) -> Result<Option<Timestamp>> {
    let (field, at) = match req.or(d.ttl.map(Expiry::After)) {
        None => return Ok(d.max_lifetime.map(|max| now.saturating_add(max))),
        Some(Expiry::At(at)) if at <= now => {
            return Err(Error::invalid("expire_time", "must be in the future"));
        }
        Some(Expiry::At(at)) => ("expire_time", at),
        Some(Expiry::After(ttl)) if ttl.is_zero() || ttl > MAX_TTL => {
            return Err(Error::invalid(
                "ttl",
                "must be positive and at most 10 years",
            ));
        }
        Some(Expiry::After(ttl)) => ("ttl", now.saturating_add(ttl)),
    };
    if let Some(max) = d.max_lifetime
        && at > now.saturating_add(max)
    {
        return Err(Error::invalid(
            field,
            format!("exceeds the keyspace's max_lifetime of {}s", max.as_secs()),
        ));
    }
    Ok(Some(at))
}

impl Keys {
    /// Issues a key. A token limited to some owners acts for those only:
    /// PERMISSION_DENIED for any other. Not NOT_FOUND: an owner is not a
    /// resource that exists or not (any id may hold keys), and the caller
    /// named it, so the refusal tells it nothing it did not know.
    pub async fn create(&self, req: CreateKey, actor: &Actor) -> Result<Created> {
        if !actor.limits().admits_owner(req.owner_id.as_str()) {
            return Err(Error::PermissionDenied(
                "owner_id: this token may not act for that owner",
            ));
        }
        let keyspace = req.keyspace_id.clone().unwrap_or_default();
        if !actor.limits().admits_keyspace(keyspace.as_str()) {
            return Err(Error::NotFound(format!("keyspace {keyspace}")));
        }
        for _ in 0..super::CONFLICT_RETRIES {
            match self.create_once(&req, actor).await {
                // The keyspace's prefix changed between its read and the
                // commit: mint again with the new one.
                Err(Error::Store(StoreError::Conflict)) => continue,
                done => return done,
            }
        }
        Err(Error::Unavailable(
            "the keyspace is changing too often; retry",
        ))
    }

    async fn create_once(&self, req: &CreateKey, actor: &Actor) -> Result<Created> {
        let keyspace_id = req.keyspace_id.clone().unwrap_or_default();
        let ks = self.named_keyspace("keyspace", &keyspace_id).await?;
        let d = &ks.defaults;
        let scopes = match req.scopes.is_empty() {
            true => d.scopes.clone(),
            false => req.scopes.clone(),
        };
        if let Some((i, _)) = ks.first_undeclared(&scopes) {
            let field = match req.scopes.is_empty() {
                true => format!("keyspace: its defaults.scopes[{i}]"),
                false => format!("scopes[{i}]"),
            };
            return Err(Error::invalid(
                field,
                format!("is not in the scope catalogue of keyspace {}", ks.id),
            ));
        }
        let restrictions = match req.restrictions.is_empty() {
            true => d.restrictions.clone(),
            false => req.restrictions.clone(),
        };
        let environment = req
            .environment
            .or(d.environment)
            .unwrap_or(Environment::Test);
        check_type_policy(req.key_type, &scopes, &restrictions)
            .map_err(|v| Error::invalid(v.field, v.reason))?;
        let (roles, role_scopes) = self
            .resolve_roles("roles", &ks.id, &req.roles, |_| true)
            .await?;
        super::roles::roles_fit("roles", req.key_type, &role_scopes)?;
        let now = self.config.clock.now();
        let expires_at = expiry(req.expiry, d, now)?;
        let secret = ApiKey::generate_in(ks.prefix, req.key_type, environment)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let idempotency = req.request_id.clone().map(|request_id| Idempotency {
            request_id,
            fingerprint: req.fingerprint(),
        });
        let mut key = KeyRecord {
            keyspace_id: ks.id.clone(),
            metadata: req.metadata.clone(),
            expires_at,
            lineage_expires_at: expires_at,
            restrictions,
            rotation: req.rotation.or(d.rotation),
            roles,
            role_scopes,
            ..KeyRecord::new(&secret, req.owner_id.clone(), req.name.clone(), scopes, now)
        };
        // A key's limits draw on a pool named by its id, which its
        // successors inherit; its credits start with the request's balance.
        let id = key.id.clone();
        if let Some(q) = key.restrictions.quota.as_deref_mut() {
            q.pool = Some(id.clone());
        }
        let balances = req
            .credits
            .map(|c| NewBalance {
                subject: Subject::Key(id.pack()).to_db(),
                remaining: c.remaining,
                policy: c.policy,
            })
            .into_iter()
            .collect();
        let changes = json!({
            "keyspace_id": key.keyspace_id.as_str(),
            "scopes": key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            "roles": key.roles.iter().map(RoleName::as_str).collect::<Vec<_>>(),
            "expires_at": key.expires_at.map(Timestamp::as_millis),
            "restrictions": key.restrictions.to_json(),
        });
        let request_id = req.request_id.as_ref().map(|r| r.as_str().to_owned());
        let audit = audit_event(now, actor, "key.created", &key, None, changes, request_id);
        let batch = WriteBatch {
            insert: Some((key.clone(), idempotency.clone())),
            update: vec![],
            audit: vec![audit],
            changes: vec![NewChange::of(ChangeKind::Created, &key)],
            notice: None,
            minted: Some(MintedPrefix::new(&ks.id, ks.prefix.as_ref())),
            balances,
        };
        match self.commit(batch, vec![key.clone()]).await? {
            WriteOutcome::AlreadyNoticed => {
                Err(Error::Internal("a creation carried a notice".into()))
            }
            WriteOutcome::Committed { .. } => Ok(Created {
                key,
                secret: Some(secret),
            }),
            WriteOutcome::Replayed {
                existing,
                fingerprint,
            } => {
                let same = idempotency
                    .is_some_and(|i| fingerprint.as_deref() == Some(i.fingerprint.as_slice()));
                if same {
                    Ok(Created {
                        key: *existing,
                        secret: None,
                    })
                } else {
                    Err(Error::AlreadyExists(
                        "request_id was already used for a different CreateKey request".into(),
                    ))
                }
            }
        }
    }
}
