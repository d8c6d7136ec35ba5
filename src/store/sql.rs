//! [`SqlStore`], the one implementation of the store traits for both
//! backends. The SQL lives in plain functions over [`Db`] and [`Tx`]
//! (`keys_sql.rs`, `audit_sql.rs`, `log_sql.rs`, `usage_sql.rs`,
//! `webhook_sql.rs`, `policy.rs`); `postgres.rs` and `sqlite.rs` only open a
//! pool, run their migrations and read their commit settings. Why a small
//! enum door rather than generics or sqlx's `Any` driver: see `db.rs`.
//!
//! [`Tx`]: super::db::Tx

use async_trait::async_trait;

use super::{
    AuditEvent, AuditFilter, Durability, ImportBatch, KeyFilter, LiveKeys, PgWakeups, Store,
    StoreError, WriteBatch, WriteOutcome, audit_sql,
    db::{Db, sql},
    import_sql, keys_sql, postgres, sqlite,
};
use crate::domain::{KeyHash, KeyId, KeyRecord, Timestamp};

/// A store on PostgreSQL or SQLite: made by `store::open` from the pool
/// that `postgres.rs` or `sqlite.rs` opens.
#[derive(Clone)]
pub struct SqlStore {
    pub(super) db: Db,
    /// Where NOTIFY wake-ups come from: PostgreSQL's LISTEN connections;
    /// `None` on SQLite, whose one process wakes its feed itself.
    wakeups: Option<PgWakeups>,
}

impl SqlStore {
    pub(super) fn new(db: Db, wakeups: Option<PgWakeups>) -> Self {
        Self { db, wakeups }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => postgres::migrate(pool).await,
            Db::Sqlite(pool) => sqlite::migrate(pool).await,
        }
    }

    async fn write(&self, batch: WriteBatch) -> Result<WriteOutcome, StoreError> {
        keys_sql::write(&self.db, batch).await
    }

    async fn get_key(&self, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
        keys_sql::get_key(&self.db, id).await
    }

    async fn keys_by_hash_or_id(
        &self,
        hashes: &[KeyHash],
        ids: &[KeyId],
    ) -> Result<Vec<KeyRecord>, StoreError> {
        import_sql::keys_by_hash_or_id(&self.db, hashes, ids).await
    }

    async fn get_keys(&self, ids: &[KeyId]) -> Result<Vec<KeyRecord>, StoreError> {
        import_sql::get_keys(&self.db, ids).await
    }

    async fn import(&self, batch: ImportBatch) -> Result<i64, StoreError> {
        import_sql::import(&self.db, batch).await
    }

    async fn list_keys(&self, filter: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
        keys_sql::list_keys(&self.db, filter).await
    }

    async fn list_audit_events(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>, StoreError> {
        audit_sql::list_audit_events(&self.db, filter).await
    }

    async fn audit_chain(&self, after: i64, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        audit_sql::audit_chain(&self.db, after, limit).await
    }

    async fn snapshot(&self, sink: &mut (dyn FnMut(KeyRecord) + Send)) -> Result<i64, StoreError> {
        keys_sql::snapshot(&self.db, sink).await
    }

    async fn live_keys(&self, which: LiveKeys) -> Result<Vec<KeyRecord>, StoreError> {
        keys_sql::live_keys(&self.db, which).await
    }

    async fn count_admin_tokens(&self) -> Result<i64, StoreError> {
        sql("SELECT COUNT(*) FROM admin_tokens WHERE revoked_at IS NULL")
            .fetch_scalar(&self.db)
            .await
    }

    async fn page_token_key(
        &self,
        candidate: &[u8; 32],
        at: Timestamp,
    ) -> Result<[u8; 32], StoreError> {
        // Two replicas starting at once both insert; one wins, and both
        // read the winner's key.
        sql(
            "INSERT INTO installation_secrets (name, secret, created_at) \
             VALUES ('page_token', $1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(candidate.as_slice())
        .bind(at.as_millis())
        .execute(&self.db)
        .await?;
        let key: Vec<u8> = sql("SELECT secret FROM installation_secrets WHERE name = 'page_token'")
            .fetch_scalar(&self.db)
            .await?;
        <[u8; 32]>::try_from(key.as_slice())
            .map_err(|_| StoreError::Corrupt(format!("page token key of {} bytes", key.len())))
    }

    fn wakeups(&self) -> Option<PgWakeups> {
        self.wakeups.clone()
    }

    fn backend(&self) -> &'static str {
        self.db.backend()
    }

    async fn durability(&self) -> Result<Durability, StoreError> {
        match &self.db {
            Db::Postgres(pool) => postgres::durability(pool).await,
            Db::Sqlite(pool) => sqlite::durability(pool).await,
        }
    }
}
