//! Embedded SQLite, the zero-setup default for a single node: its pool,
//! its migrations and its commit settings. The queries are the shared ones
//! of `SqlStore` (`sql.rs`), which `store::open` makes from this pool.

use std::{path::Path, str::FromStr, time::Duration};

use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

use super::{Durability, StoreError};

/// Opens (creating if needed) `keysmith.db` in `dir`.
pub(super) async fn open_in(dir: &Path) -> Result<SqlitePool, StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StoreError::Database(sqlx::Error::Configuration(
            format!("cannot create data dir {}: {e}", dir.display()).into(),
        ))
    })?;
    connect_with(SqliteConnectOptions::new().filename(dir.join("keysmith.db"))).await
}

/// Opens the database a `sqlite:` URL names.
pub(super) async fn connect_url(url: &str) -> Result<SqlitePool, StoreError> {
    connect_with(SqliteConnectOptions::from_str(url)?).await
}

async fn connect_with(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
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
    Ok(pool)
}

pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations/sqlite").run(pool).await?;
    Ok(())
}

/// Both pragmas read on one pooled connection.
pub(super) async fn durability(pool: &SqlitePool) -> Result<Durability, StoreError> {
    let mut conn = pool.acquire().await?;
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Durability::Sqlite {
        journal_mode,
        synchronous,
    })
}
