use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Actor, Keys, audit_event};
use crate::{
    domain::{
        ApiKey, DEFAULT_KEYSPACE, Environment, KeyName, KeyRecord, KeyType, Metadata, OwnerId,
        RequestId, Restrictions, Scope, Timestamp, check_type_policy,
    },
    error::{Error, Result},
    store::{ChangeKind, Idempotency, NewChange, WriteBatch, WriteOutcome},
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
    pub key_type: KeyType,
    pub environment: Environment,
    pub scopes: Vec<Scope>,
    pub expiry: Option<Expiry>,
    pub metadata: Metadata,
    pub request_id: Option<RequestId>,
    pub restrictions: Restrictions,
    pub rotation: Option<crate::domain::KeyRotation>,
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
        let canonical = json!([
            self.owner_id.as_str(),
            self.name.as_str(),
            self.key_type.as_str(),
            self.environment.as_str(),
            self.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            expiry,
            self.metadata.as_map(),
            self.restrictions.to_json(),
            self.rotation.map(|r| r.to_json()),
        ]);
        Sha256::digest(canonical.to_string().as_bytes()).into()
    }
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
        // Every key goes into the default keyspace until keys carry their own.
        if !actor.limits().admits_keyspace(DEFAULT_KEYSPACE) {
            return Err(Error::NotFound(format!("keyspace {DEFAULT_KEYSPACE}")));
        }
        check_type_policy(req.key_type, &req.scopes, &req.restrictions)
            .map_err(|v| Error::invalid(v.field, v.reason))?;
        let now = self.config.clock.now();
        let expires_at = match req.expiry {
            None => None,
            Some(Expiry::At(at)) if at <= now => {
                return Err(Error::invalid("expire_time", "must be in the future"));
            }
            Some(Expiry::At(at)) => Some(at),
            Some(Expiry::After(ttl)) if ttl.is_zero() || ttl > MAX_TTL => {
                return Err(Error::invalid(
                    "ttl",
                    "must be positive and at most 10 years",
                ));
            }
            Some(Expiry::After(ttl)) => Some(now.saturating_add(ttl)),
        };
        let secret = ApiKey::generate(req.key_type, req.environment)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let idempotency = req.request_id.clone().map(|request_id| Idempotency {
            request_id,
            fingerprint: req.fingerprint(),
        });
        let key = KeyRecord {
            metadata: req.metadata,
            expires_at,
            lineage_expires_at: expires_at,
            restrictions: req.restrictions,
            rotation: req.rotation,
            ..KeyRecord::new(&secret, req.owner_id, req.name, req.scopes, now)
        };
        let changes = json!({
            "scopes": key.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
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
