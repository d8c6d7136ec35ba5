//! Durable storage: one [`Store`] trait, two backends.
//!
//! Both backends run the same SQL, written once in plain functions over the
//! small door in `db.rs` (`Db`, `Tx`, `sql(…)`), one file per table or
//! concern; `SqlStore` (`sql.rs`) implements every store trait with them.
//! The schemas differ only in column types (`migrations/postgres`,
//! `migrations/sqlite`).
//!
//! **Invariant:** every write goes through [`Store::write`], which commits the
//! key rows, their audit events and their change-log rows in one transaction.

pub mod audit_chain;
mod audit_sql;
mod balance_sql;
mod catalogue_sql;
mod db;
mod durability;
mod import_sql;
mod key_roles_sql;
mod keys_sql;
mod keyspace_sql;
mod limits_sql;
mod log_sql;
pub(crate) mod policy;
mod postgres;
mod quota_sql;
mod role_sql;
mod rows;
mod scan_sql;
mod sql;
mod sqlite;
mod token_sql;
mod usage;
mod usage_sql;
mod webhook;
mod webhook_sql;

use std::{path::Path, sync::Arc};

use async_trait::async_trait;
use db::Db;
use sql::SqlStore;

use crate::domain::{
    Environment, KeyHash, KeyId, KeyRecord, KeyState, KeyspaceId, OwnerId, RequestId, Timestamp,
};

pub use balance_sql::NewBalance;
pub use durability::Durability;
pub use import_sql::ImportBatch;
pub use keys_sql::MintedPrefix;
pub use keyspace_sql::{KeyspaceStore, KeyspaceUpdate};
pub use policy::PolicyStore;
pub use postgres::PgWakeups;
pub use quota_sql::{
    Balance, CreditChange, CreditGrant, CreditOutcome, Owner, QuotaStore, TokenGrant,
};
pub use role_sql::{RoleDelete, RoleStore, RoleUpdate};
pub use scan_sql::ScanStore;
pub use token_sql::{TOKEN_CHANNEL, TokenFilter, TokenStore};
pub use usage::{UnknownRow, UsageCounts, UsageRow, UsageStore, UsageWrite, hour_of};
pub use webhook::{
    AttemptOutcome, Claimed, DeliveryRow, DeliveryStatus, EndpointPatch, EndpointRow, WebhookStore,
    event_payload,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key was changed by someone else since it was read (version check).
    #[error("the key changed concurrently")]
    Conflict,
    #[error("a unique value already exists")]
    Duplicate,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
    }
}

/// What changed about a key, as the change log records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    /// A change that takes nothing away (a rename, wider scopes, a later expiry).
    Updated,
    /// The key got a successor; its expiry moved to the end of the grace period.
    Rotated,
    Revoked,
    Disabled,
    Enabled,
    /// Its scopes lost at least one entry.
    ScopesNarrowed,
    /// Its expiry moved earlier (or it got one).
    ExpiryShortened,
    /// Its IP, referrer, resource or rate restrictions changed.
    RestrictionsChanged,
    /// Found leaked, and revoked or disabled by its keyspace's leak policy.
    Leaked,
}

impl ChangeKind {
    const ALL: [Self; 10] = [
        Self::Created,
        Self::Updated,
        Self::Rotated,
        Self::Revoked,
        Self::Disabled,
        Self::Enabled,
        Self::ScopesNarrowed,
        Self::ExpiryShortened,
        Self::RestrictionsChanged,
        Self::Leaked,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Rotated => "rotated",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
            Self::Enabled => "enabled",
            Self::ScopesNarrowed => "scopes_narrowed",
            Self::ExpiryShortened => "expiry_shortened",
            Self::RestrictionsChanged => "restrictions_changed",
            Self::Leaked => "leaked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether the change takes something away from a key: what a gateway
    /// caching verify answers must hear about.
    pub const fn is_restrictive(self) -> bool {
        matches!(
            self,
            Self::Rotated
                | Self::Revoked
                | Self::Disabled
                | Self::ScopesNarrowed
                | Self::ExpiryShortened
                | Self::RestrictionsChanged
                | Self::Leaked
        )
    }
}

/// An audit event about to be written.
#[derive(Clone, Debug)]
pub struct NewAuditEvent {
    pub at: Timestamp,
    pub actor: String,
    pub action: &'static str,
    /// The key the event is about; `None` for events about no key, such
    /// as a failed admin authentication.
    pub key_id: Option<KeyId>,
    pub owner_id: Option<OwnerId>,
    pub reason: Option<String>,
    /// Field -> {"old": …, "new": …}.
    pub changes: serde_json::Value,
    pub request_id: Option<String>,
}

/// An audit event as stored.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub key_id: Option<String>,
    pub owner_id: Option<String>,
    pub reason: Option<String>,
    pub changes: serde_json::Value,
    pub request_id: Option<String>,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

/// One row of the change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub kind: ChangeKind,
    pub key_id: KeyId,
    pub key_hash: KeyHash,
    pub owner_id: OwnerId,
    pub environment: Environment,
    pub keyspace_id: KeyspaceId,
    /// The key's expiry after the change.
    pub expires_at: Option<Timestamp>,
    pub at: Timestamp,
    /// The key's version the change wrote; `None` on rows older than the
    /// column.
    pub key_version: Option<i64>,
}

/// A change-log row about to be written, taken from the key's new version.
#[derive(Clone, Debug)]
pub struct NewChange {
    pub kind: ChangeKind,
    pub key_id: KeyId,
    pub key_hash: KeyHash,
    pub owner_id: OwnerId,
    pub environment: Environment,
    pub keyspace_id: KeyspaceId,
    pub expires_at: Option<Timestamp>,
    pub key_version: i64,
}

impl NewChange {
    pub fn of(kind: ChangeKind, key: &KeyRecord) -> Self {
        Self {
            kind,
            key_id: key.id.clone(),
            key_hash: key.hash,
            owner_id: key.owner_id.clone(),
            environment: key.environment,
            keyspace_id: key.keyspace_id.clone(),
            expires_at: key.expires_at,
            key_version: key.version,
        }
    }
}

/// Which live keys a background job reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LiveKeys {
    All,
    /// Rotated keys whose overlap ends when they fall idle.
    InIdleGrace,
    /// Keys with an expiry at or before this time.
    ExpiringBy(Timestamp),
    /// Keys with a rotation policy of their own.
    WithRotationPolicy,
}

/// Which part of the change log exists: cursors in `pruned_through..=head`
/// can be resumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogBounds {
    pub pruned_through: i64,
    pub head: i64,
    /// The log's lineage (`log_lineage`): changes when the database is
    /// replaced by one with another history, so sequences cannot be compared.
    pub epoch: i64,
}

/// A replica's last report of its progress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaRow {
    pub id: String,
    pub applied_seq: i64,
    pub heartbeat_at: Timestamp,
    pub started_at: Timestamp,
}

/// A CreateKey's idempotency key, and a fingerprint of its request so a reuse
/// with different parameters can be told apart from a retry.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub request_id: RequestId,
    pub fingerprint: [u8; 32],
}

/// One atomic write: new keys, changed keys (each checked against the
/// version it was read at), their audit events and change-log rows.
#[derive(Debug, Default)]
pub struct WriteBatch {
    pub insert: Option<(KeyRecord, Option<Idempotency>)>,
    /// Each record's `version` must be exactly one more than the stored one.
    pub update: Vec<KeyRecord>,
    pub audit: Vec<NewAuditEvent>,
    pub changes: Vec<NewChange>,
    /// A scheduled notice this batch sends, as (key, notice). If that notice
    /// was already sent, nothing is written.
    pub notice: Option<(KeyId, String)>,
    /// For an insert: the keyspace prefix its key was minted with, checked
    /// under the change_seq lock (`Conflict` when it changed meanwhile).
    pub minted: Option<MintedPrefix>,
    /// Credit balances made with the batch's keys.
    pub balances: Vec<NewBalance>,
}

#[derive(Debug)]
pub enum WriteOutcome {
    /// The batch's notice was sent before; nothing was written.
    AlreadyNoticed,
    /// Committed; `last_seq` is the change-log sequence of the last change.
    Committed { last_seq: i64 },
    /// The batch's idempotency key was used before; nothing was written.
    Replayed {
        existing: Box<KeyRecord>,
        fingerprint: Option<Vec<u8>>,
    },
}

/// How ListKeys orders keys. Never-used keys count as used before any
/// other; ties go by id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyOrder {
    /// By id, i.e. by creation.
    #[default]
    Id,
    LastUsedAsc,
    LastUsedDesc,
}

impl KeyOrder {
    /// The factor the SQL multiplies `COALESCE(last_used_at, -1)` by, so one
    /// statement serves every order.
    pub(crate) fn factor(self) -> i64 {
        match self {
            Self::Id => 0,
            Self::LastUsedAsc => 1,
            Self::LastUsedDesc => -1,
        }
    }

    /// The sort key of `key` under this order.
    pub fn sort_key(self, key: &KeyRecord) -> i64 {
        self.factor() * key.last_used_at.map_or(-1, Timestamp::as_millis)
    }
}

#[derive(Clone, Debug)]
pub struct KeyFilter {
    pub owner_id: Option<OwnerId>,
    pub keyspace_id: Option<KeyspaceId>,
    /// The caller's owner limit: only keys of these owners. `None`: any.
    pub owners: Option<Vec<OwnerId>>,
    /// The caller's keyspace limit: only keys of these keyspaces. `None`: any.
    pub keyspaces: Option<Vec<String>>,
    pub state: Option<KeyState>,
    /// Only keys last used (or, never used, created) before this instant.
    pub unused_before: Option<Timestamp>,
    pub order: KeyOrder,
    /// Keyset pagination: only keys after this (sort key, id).
    pub after: Option<(i64, KeyId)>,
    pub limit: u32,
    /// The instant against which expiry is judged for `state`.
    pub now: Timestamp,
}

#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub key_id: Option<KeyId>,
    pub owner_id: Option<OwnerId>,
    /// Only events about an owner's key (a limited caller's view: events
    /// about no owner span all of them).
    pub owned_only: bool,
    /// The caller's owner limit: only events about these owners. `None`: any.
    pub owners: Option<Vec<OwnerId>>,
    /// The caller's keyspace limit: only events about keys of these
    /// keyspaces. `None`: any.
    pub keyspaces: Option<Vec<String>>,
    /// `key.created`, `key.revoked`, …
    pub action: Option<String>,
    /// Events at or after this instant.
    pub from: Option<Timestamp>,
    /// Events before this instant.
    pub to: Option<Timestamp>,
    /// Keyset pagination, newest first: only ids below this one.
    pub before: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait Store:
    LogStore
    + UsageStore
    + WebhookStore
    + PolicyStore
    + KeyspaceStore
    + RoleStore
    + TokenStore
    + QuotaStore
    + ScanStore
    + Send
    + Sync
    + 'static
{
    /// Applies forward-only migrations.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Commits the batch atomically, or nothing.
    async fn write(&self, batch: WriteBatch) -> Result<WriteOutcome, StoreError>;
    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError>;
    /// The stored keys among `ids` (in no order), with their roles.
    async fn get_keys(&self, ids: &[KeyId]) -> Result<Vec<KeyRecord>, StoreError>;
    /// The stored keys with one of `hashes` or one of `ids`.
    async fn keys_by_hash_or_id(
        &self,
        hashes: &[KeyHash],
        ids: &[KeyId],
    ) -> Result<Vec<KeyRecord>, StoreError>;
    /// Commits an import batch whole, or nothing; the last change's sequence.
    async fn import(&self, batch: ImportBatch) -> Result<i64, StoreError>;
    async fn list_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError>;
    async fn list_audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError>;
    /// Audit events with ids above `after`, oldest first: for walking the chain.
    async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError>;
    /// Streams every key to `sink`, read in one consistent transaction;
    /// returns the change-log sequence the
    /// set reflects.
    async fn snapshot(&self, sink: &mut (dyn FnMut(KeyRecord) + Send)) -> Result<i64, StoreError>;
    /// The keys not revoked that a background job looks at: a filter in
    /// SQL, so a job over a million keys reads only its few.
    async fn live_keys(&self, which: LiveKeys) -> Result<Vec<KeyRecord>, StoreError>;
    /// Admin tokens not revoked (the bootstrap token is minted at zero).
    async fn count_admin_tokens(&self) -> Result<i64, StoreError>;
    /// The installation's key for page tokens: the stored one, or
    /// `candidate`, stored now, when there is none yet. Every replica gets
    /// the same key, whichever stored it.
    async fn page_token_key(
        &self,
        candidate: &[u8; 32],
        at: Timestamp,
    ) -> Result<[u8; 32], StoreError>;
    /// Where NOTIFY wake-ups come from; `None` where writes are all local (SQLite).
    fn wakeups(&self) -> Option<PgWakeups>;
    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
    /// The commit settings of a connection from the store's pool.
    async fn durability(&self) -> Result<Durability, StoreError>;
}

/// The change log, replica progress and job leases.
#[async_trait]
pub trait LogStore: Send + Sync {
    async fn changes_after(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError>;
    async fn log_bounds(&self) -> Result<LogBounds, StoreError>;
    /// Deletes change-log rows written before `before`; returns the new bounds.
    async fn prune_changes(&self, before: Timestamp) -> Result<LogBounds, StoreError>;
    /// Records a replica's progress (insert or update).
    async fn report_replica(&self, replica: &ReplicaRow) -> Result<(), StoreError>;
    /// Replicas whose last heartbeat is at or after `since`.
    async fn live_replicas(&self, since: Timestamp) -> Result<Vec<ReplicaRow>, StoreError>;
    async fn remove_replica(&self, id: &str) -> Result<(), StoreError>;
    /// Takes job `job`'s lease for `owner` until `until`, if it is free or
    /// already `owner`'s at `now`. `true` when this caller may run the job.
    async fn take_job_lease(
        &self,
        job: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Opens the store named by `database_url`, or the embedded SQLite file in
/// `data_dir` when there is none.
pub async fn open(
    database_url: Option<&str>,
    data_dir: &Path,
) -> Result<Arc<dyn Store>, StoreError> {
    let store = match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let (pool, wakeups) = postgres::connect(url).await?;
            SqlStore::new(Db::Postgres(pool), Some(wakeups))
        }
        // SQLite has no NOTIFY: the writer wakes its own process's feed.
        Some(url) if url.starts_with("sqlite:") => {
            SqlStore::new(Db::Sqlite(sqlite::connect_url(url).await?), None)
        }
        Some(_) => {
            return Err(StoreError::Database(sqlx::Error::Configuration(
                "database url must start with postgres://, postgresql:// or sqlite:".into(),
            )));
        }
        None => SqlStore::new(Db::Sqlite(sqlite::open_in(data_dir).await?), None),
    };
    Ok(Arc::new(store))
}
