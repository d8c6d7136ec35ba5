//! Row shapes shared by both backends, and their conversion to domain types.

use std::collections::BTreeMap;

use sqlx::types::Json;

use super::{AuditEvent, Change, ChangeKind, StoreError};
use crate::domain::{
    KeyHash, KeyId, KeyName, KeyRecord, KeyRotation, Metadata, OwnerId, Reason, Restrictions,
    Scope, Timestamp,
};

/// The columns of `keys` that make a [`KeyRow`], in its field order.
pub(super) const KEY_COLUMNS: &str = "id, key_hash, owner_id, name, key_type, environment, \
     scopes, metadata, hint, created_at, updated_at, expires_at, revoked_at, revoke_reason, \
     disabled_at, disable_reason, rotated_from, rotated_to, version, restrictions, \
     last_used_at, last_client_ip, grace_idle_ms, rotation_policy, lineage_expires_at, \
     keyspace_id, external_id, imported_at";

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    id: String,
    key_hash: Vec<u8>,
    owner_id: String,
    name: String,
    key_type: String,
    environment: String,
    scopes: Json<Vec<String>>,
    metadata: Json<BTreeMap<String, String>>,
    hint: String,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
    disabled_at: Option<i64>,
    disable_reason: Option<String>,
    rotated_from: Option<String>,
    rotated_to: Option<String>,
    version: i64,
    restrictions: Json<serde_json::Value>,
    last_used_at: Option<i64>,
    last_client_ip: Option<String>,
    grace_idle_ms: Option<i64>,
    rotation_policy: Option<Json<serde_json::Value>>,
    lineage_expires_at: Option<i64>,
    keyspace_id: String,
    external_id: Option<String>,
    imported_at: Option<i64>,
}

fn corrupt(what: &str, id: &str) -> StoreError {
    StoreError::Corrupt(format!("{what} of key {id}"))
}

fn parse_id(s: &str) -> Result<KeyId, StoreError> {
    s.parse().map_err(|_| corrupt("id", s))
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let id = parse_id(&r.id)?;
        let bad = |what| corrupt(what, &r.id);
        let scopes = r
            .scopes
            .0
            .iter()
            .map(|s| Scope::parse(s))
            .collect::<Result<_, _>>()
            .map_err(|_| bad("scopes"))?;
        let reason = |s: Option<String>| s.map(|s| Reason::parse(&s)).transpose();
        let key_id = |s: Option<String>| s.as_deref().map(parse_id).transpose();
        let ts = |v: Option<i64>| v.map(Timestamp::from_millis);
        Ok(KeyRecord {
            hash: KeyHash::try_from(r.key_hash.as_slice()).map_err(|_| bad("hash"))?,
            keyspace_id: r.keyspace_id.parse().map_err(|_| bad("keyspace"))?,
            owner_id: OwnerId::parse(&r.owner_id).map_err(|_| bad("owner"))?,
            name: KeyName::parse(&r.name).map_err(|_| bad("name"))?,
            key_type: r.key_type.parse().map_err(|_| bad("type"))?,
            environment: r.environment.parse().map_err(|_| bad("environment"))?,
            scopes,
            // Filled by the read that resolves the key's roles.
            roles: Vec::new(),
            role_scopes: Vec::new(),
            metadata: Metadata::from_trusted(r.metadata.0),
            hint: r.hint,
            created_at: Timestamp::from_millis(r.created_at),
            updated_at: Timestamp::from_millis(r.updated_at),
            expires_at: ts(r.expires_at),
            lineage_expires_at: ts(r.lineage_expires_at),
            revoked_at: ts(r.revoked_at),
            revoke_reason: reason(r.revoke_reason).map_err(|_| bad("revoke reason"))?,
            disabled_at: ts(r.disabled_at),
            disable_reason: reason(r.disable_reason).map_err(|_| bad("disable reason"))?,
            rotated_from: key_id(r.rotated_from)?,
            rotated_to: key_id(r.rotated_to)?,
            version: r.version,
            restrictions: Restrictions::from_json(&r.restrictions.0)
                .map_err(|_| bad("restrictions"))?,
            last_used_at: ts(r.last_used_at),
            last_client_ip: r.last_client_ip,
            rotation: r
                .rotation_policy
                .map(|j| KeyRotation::from_json(&j.0))
                .transpose()
                .map_err(|_| bad("rotation policy"))?,
            end_grace_when_idle: r
                .grace_idle_ms
                .map(|ms| std::time::Duration::from_millis(ms.max(0) as u64)),
            external_id: r.external_id,
            imported_at: ts(r.imported_at),
            id,
        })
    }
}

/// Column values of a record in the form both backends bind.
pub(super) struct KeyValues {
    pub id: String,
    pub hash: Vec<u8>,
    pub owner_id: String,
    pub name: String,
    pub key_type: &'static str,
    pub environment: &'static str,
    /// JSON, as are `metadata`, `restrictions` and `rotation_policy`.
    pub scopes: serde_json::Value,
    pub metadata: serde_json::Value,
    pub hint: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    pub disabled_at: Option<i64>,
    pub disable_reason: Option<String>,
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    pub version: i64,
    pub restrictions: serde_json::Value,
    pub grace_idle_ms: Option<i64>,
    pub rotation_policy: Option<serde_json::Value>,
    pub lineage_expires_at: Option<i64>,
    pub keyspace_id: String,
    pub external_id: Option<String>,
    pub imported_at: Option<i64>,
}

impl From<&KeyRecord> for KeyValues {
    fn from(k: &KeyRecord) -> Self {
        let ts = |t: Option<Timestamp>| t.map(Timestamp::as_millis);
        let text = |r: &Option<Reason>| r.as_ref().map(|r| r.as_str().to_owned());
        let id = |i: &Option<KeyId>| i.as_ref().map(|i| i.as_str().to_owned());
        Self {
            id: k.id.as_str().to_owned(),
            hash: k.hash.as_bytes().to_vec(),
            owner_id: k.owner_id.as_str().to_owned(),
            name: k.name.as_str().to_owned(),
            key_type: k.key_type.as_str(),
            environment: k.environment.as_str(),
            scopes: k.scopes.iter().map(|s| s.as_str()).collect(),
            metadata: k
                .metadata
                .as_map()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect(),
            hint: k.hint.clone(),
            created_at: k.created_at.as_millis(),
            updated_at: k.updated_at.as_millis(),
            expires_at: ts(k.expires_at),
            revoked_at: ts(k.revoked_at),
            revoke_reason: text(&k.revoke_reason),
            disabled_at: ts(k.disabled_at),
            disable_reason: text(&k.disable_reason),
            rotated_from: id(&k.rotated_from),
            rotated_to: id(&k.rotated_to),
            version: k.version,
            restrictions: k.restrictions.to_json(),
            grace_idle_ms: k.end_grace_when_idle.map(|d| d.as_millis() as i64),
            rotation_policy: k.rotation.map(|r| r.to_json()),
            lineage_expires_at: ts(k.lineage_expires_at),
            keyspace_id: k.keyspace_id.as_str().to_owned(),
            external_id: k.external_id.clone(),
            imported_at: ts(k.imported_at),
        }
    }
}

/// The columns of `audit_events` that make an [`AuditRow`].
pub(super) const AUDIT_COLUMNS: &str =
    "id, at, actor, action, key_id, owner_id, reason, changes, request_id, prev_hash, hash";

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    key_id: Option<String>,
    owner_id: Option<String>,
    reason: Option<String>,
    changes: Json<serde_json::Value>,
    request_id: Option<String>,
    prev_hash: Option<Vec<u8>>,
    hash: Option<Vec<u8>>,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            at: Timestamp::from_millis(r.at),
            actor: r.actor,
            action: r.action,
            key_id: r.key_id,
            owner_id: r.owner_id,
            reason: r.reason,
            changes: r.changes.0,
            request_id: r.request_id,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ChangeRow {
    seq: i64,
    key_id: String,
    key_hash: Vec<u8>,
    kind: String,
    owner_id: String,
    environment: String,
    keyspace_id: String,
    expires_at: Option<i64>,
    at: i64,
    key_version: Option<i64>,
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;

    fn try_from(r: ChangeRow) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt(format!("change {}", r.seq));
        Ok(Change {
            seq: r.seq,
            key_id: r.key_id.parse().map_err(|_| bad())?,
            key_hash: KeyHash::try_from(r.key_hash.as_slice()).map_err(|_| bad())?,
            kind: ChangeKind::parse(&r.kind).ok_or_else(bad)?,
            owner_id: OwnerId::parse(&r.owner_id).map_err(|_| bad())?,
            environment: r.environment.parse().map_err(|_| bad())?,
            keyspace_id: r.keyspace_id.parse().map_err(|_| bad())?,
            expires_at: r.expires_at.map(Timestamp::from_millis),
            at: Timestamp::from_millis(r.at),
            key_version: r.key_version,
        })
    }
}

/// The columns of `webhook_deliveries` that make a [`DeliverySqlRow`].
pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, event_type, payload, \
     status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at";

#[derive(sqlx::FromRow)]
pub(super) struct DeliverySqlRow {
    id: String,
    event_id: String,
    endpoint_id: String,
    event_type: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<DeliverySqlRow> for super::DeliveryRow {
    type Error = StoreError;

    fn try_from(r: DeliverySqlRow) -> Result<Self, StoreError> {
        Ok(Self {
            status: super::DeliveryStatus::parse(&r.status)
                .ok_or_else(|| StoreError::Corrupt(format!("status of delivery {}", r.id)))?,
            id: r.id,
            event_id: r.event_id,
            endpoint_id: r.endpoint_id,
            event_type: r.event_type,
            payload: r.payload,
            attempts: r.attempts,
            next_attempt_at: Timestamp::from_millis(r.next_attempt_at),
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: Timestamp::from_millis(r.created_at),
            delivered_at: r.delivered_at.map(Timestamp::from_millis),
        })
    }
}
