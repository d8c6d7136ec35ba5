use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    Sqlite, SqlitePool, Transaction,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{
    StoreError,
    db::{Db, SqlBackend},
    sql::impl_sql_store,
};

/// Embedded SQLite, the zero-setup default for a single node.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    db: Db,
}

impl SqliteStore {
    /// Opens (creating if needed) `keysmith.db` in `dir`.
    pub async fn open_in(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Database(sqlx::Error::Configuration(
                format!("cannot create data dir {}: {e}", dir.display()).into(),
            ))
        })?;
        Self::connect_with(SqliteConnectOptions::new().filename(dir.join("keysmith.db"))).await
    }

    pub async fn connect_url(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(SqliteConnectOptions::from_str(url)?).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        // WAL lets readers run beside the writer; FULL syncs the WAL on every
        // commit, so an acknowledged write survives power loss.
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self {
            db: Db::Sqlite(pool.clone()),
            pool,
        })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    /// `BEGIN IMMEDIATE` takes the write lock up front, so a transaction that
    /// reads and then writes waits on `busy_timeout` instead of failing.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// In WAL mode a read transaction sees one consistent snapshot.
    async fn begin_snapshot(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    async fn read_durability(&self) -> Result<super::Durability, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        Ok(super::Durability::Sqlite {
            journal_mode,
            synchronous,
        })
    }

    fn pg_wakeups(&self) -> Option<super::PgWakeups> {
        None
    }

    /// SQLite has no NOTIFY; the in-process feed is woken by the writer.
    async fn notify(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _seq: i64,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

impl SqlBackend for SqliteStore {
    fn db(&self) -> &Db {
        &self.db
    }
}

super::log_sql::impl_log_sql!(SqliteStore, Sqlite);
super::usage_sql::impl_usage_sql!(SqliteStore, Sqlite);
super::audit_sql::impl_audit_sql!(SqliteStore, Sqlite);
super::webhook_sql::impl_webhook_sql!(SqliteStore, Sqlite);
impl_sql_store!(SqliteStore, Sqlite, "sqlite");
