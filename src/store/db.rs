//! The one door to the database for both backends: a pool ([`Db`]), a
//! transaction ([`Tx`]) and a statement ([`Sql`]) whose values are bound
//! from a small set of column types ([`Value`]).
//!
//! The SQL itself lives in plain functions (`keys_sql.rs`, `log_sql.rs`, …)
//! that take `&Db` or `&mut Tx`, written once for both backends: they accept
//! the same SQL (`$n` parameters, `RETURNING`, `ON CONFLICT`, JSON as text or
//! JSONB). The backend is a `match` in this file and nowhere else, so the
//! rest is ordinary code that rust-analyzer follows and whose errors point at
//! the line that is wrong.
//!
//! Why not the alternatives:
//! - Functions generic over `sqlx::Database` need a page of bounds each
//!   (`for<'c> &'c mut DB::Connection: Executor<'c>`, `i64: Encode<'_, DB>`,
//!   `String: Type<DB>`, …): Rust does not carry such `where` clauses through
//!   a helper trait (rust-lang/rust#20671), so every function repeats them.
//! - sqlx's `Any` driver binds JSON as text, which PostgreSQL's JSONB columns
//!   refuse; it has no LISTEN/NOTIFY; and it would hide the backend in a
//!   runtime URL scheme instead of an enum the compiler checks.

use std::borrow::Cow;

use futures::TryStreamExt;
use sqlx::{
    AssertSqlSafe, FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction, postgres::PgRow,
    sqlite::SqliteRow, types::Json,
};

use super::StoreError;

/// The channel every PostgreSQL replica LISTENs on, which each key write
/// NOTIFYs with its commit. The payload is the newest change sequence; it
/// is only a wake-up, the change log is the truth.
pub const CHANGE_CHANNEL: &str = "keysmith_changes";

/// A row type both backends decode: `#[derive(sqlx::FromRow)]` structs and
/// tuples of ordinary column types.
pub(crate) trait Record:
    for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin
{
}

/// A connection pool on one backend.
#[derive(Clone)]
pub(crate) enum Db {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// An open transaction. Dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

/// Where a statement runs: on a pooled connection, or inside a transaction.
pub(crate) enum On<'a> {
    Pool(&'a Db),
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Db> for On<'a> {
    fn from(db: &'a Db) -> Self {
        Self::Pool(db)
    }
}

impl<'a> From<&'a mut Tx> for On<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Self::Tx(tx)
    }
}

impl Db {
    /// `"postgres"` or `"sqlite"`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// A transaction that will write. On SQLite, `BEGIN IMMEDIATE` takes the
    /// write lock up front, so a transaction that reads and then writes waits
    /// on `busy_timeout` instead of failing.
    pub(crate) async fn begin_write(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Postgres(p) => Tx::Postgres(p.begin().await?),
            Self::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// A read-only transaction that sees one consistent snapshot (SQLite's
    /// WAL mode gives every read transaction one).
    pub(crate) async fn begin_snapshot(&self) -> Result<Tx, StoreError> {
        Ok(match self {
            Self::Postgres(p) => Tx::Postgres(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ),
            Self::Sqlite(p) => Tx::Sqlite(p.begin().await?),
        })
    }
}

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        match self {
            Self::Postgres(t) => t.commit().await?,
            Self::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }

    /// Wakes the other replicas' feeds once this transaction commits
    /// (PostgreSQL's NOTIFY, delivered at commit). SQLite has one process,
    /// whose feed the writer wakes itself.
    pub(crate) async fn notify(&mut self, channel: &str, seq: i64) -> Result<(), StoreError> {
        if let Self::Postgres(_) = self {
            sql("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(seq.to_string())
                .execute(self)
                .await?;
        }
        Ok(())
    }
}

/// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose writer already
/// holds the database.
pub(crate) fn for_update(tx: &Tx) -> &'static str {
    match tx {
        Tx::Postgres(_) => " FOR UPDATE",
        Tx::Sqlite(_) => "",
    }
}

/// A value bound to a statement parameter. `None` binds SQL `NULL`.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Int(Option<i64>),
    Bool(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    /// JSONB on PostgreSQL, text on SQLite.
    Json(Option<serde_json::Value>),
}

macro_rules! value_from {
    ($($t:ty => $variant:ident($conv:expr)),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(v: $t) -> Self {
                #[allow(clippy::redundant_closure_call)]
                Self::$variant(($conv)(v))
            }
        })*
    };
}

value_from! {
    i64 => Int(Some),
    Option<i64> => Int(|v| v),
    bool => Bool(Some),
    Option<bool> => Bool(|v| v),
    String => Text(Some),
    &str => Text(|v: &str| Some(v.to_owned())),
    Option<String> => Text(|v| v),
    Option<&str> => Text(|v: Option<&str>| v.map(str::to_owned)),
    Vec<u8> => Bytes(Some),
    &[u8] => Bytes(|v: &[u8]| Some(v.to_vec())),
    Option<Vec<u8>> => Bytes(|v| v),
    serde_json::Value => Json(Some),
    Option<serde_json::Value> => Json(|v| v),
    Json<serde_json::Value> => Json(|v: Json<serde_json::Value>| Some(v.0)),
}

/// A statement and its values, in parameter order (`$1`, `$2`, …).
#[must_use = "a statement does nothing until it is executed or fetched"]
pub(crate) struct Sql {
    text: Cow<'static, str>,
    values: Vec<Value>,
    /// Kept as a prepared statement on its connection (the default).
    persistent: bool,
}

/// Starts a statement. Its text is written in the source or assembled from
/// fixed fragments, never from input: every input is a bound value.
pub(crate) fn sql(text: impl Into<Cow<'static, str>>) -> Sql {
    Sql {
        text: text.into(),
        values: Vec::new(),
        persistent: true,
    }
}

/// Binds every value into a sqlx query of one backend.
macro_rules! bound {
    ($make:path, $db:ty, $sql:expr) => {{
        let Sql {
            text,
            values,
            persistent,
        } = $sql;
        let mut q = $make(AssertSqlSafe(text)).persistent(persistent);
        for v in values {
            q = match v {
                Value::Int(v) => q.bind(v),
                Value::Bool(v) => q.bind(v),
                Value::Text(v) => q.bind(v),
                Value::Bytes(v) => q.bind(v),
                Value::Json(v) => q.bind(v.map(Json)),
            };
        }
        q
    }};
}

impl Sql {
    /// Binds the next parameter.
    pub(crate) fn bind(mut self, v: impl Into<Value>) -> Self {
        self.values.push(v.into());
        self
    }

    /// Plans the statement for its values each time it runs, instead of
    /// keeping it prepared: for a list whose length varies (`IN ($1, …)`).
    /// Each length would be another cached statement, and PostgreSQL's
    /// generic plan for one, made while a table was small, stays a
    /// sequential scan on that connection however large the table grows.
    pub(crate) fn unprepared(mut self) -> Self {
        self.persistent = false;
        self
    }

    /// Binds each value in turn: the parameters of a list such as
    /// `IN ($9, $10, …)`.
    pub(crate) fn bind_all<V: Into<Value>>(self, values: impl IntoIterator<Item = V>) -> Self {
        values.into_iter().fold(self, Self::bind)
    }

    /// Runs the statement; the number of rows it touched.
    pub(crate) async fn execute<'a>(self, on: impl Into<On<'a>>) -> Result<u64, StoreError> {
        Ok(match on.into() {
            On::Pool(Db::Postgres(p)) => bound!(sqlx::query::<Postgres>, Postgres, self)
                .execute(p)
                .await?
                .rows_affected(),
            On::Pool(Db::Sqlite(p)) => bound!(sqlx::query::<Sqlite>, Sqlite, self)
                .execute(p)
                .await?
                .rows_affected(),
            On::Tx(Tx::Postgres(t)) => bound!(sqlx::query::<Postgres>, Postgres, self)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            On::Tx(Tx::Sqlite(t)) => bound!(sqlx::query::<Sqlite>, Sqlite, self)
                .execute(&mut **t)
                .await?
                .rows_affected(),
        })
    }

    /// Every row the statement returns.
    pub(crate) async fn fetch_all<'a, R: Record>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Vec<R>, StoreError> {
        let mut rows = Vec::new();
        self.for_each(on, |row| {
            rows.push(row);
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// The first row, if there is one.
    pub(crate) async fn fetch_optional<'a, R: Record>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<Option<R>, StoreError> {
        Ok(match on.into() {
            On::Pool(Db::Postgres(p)) => {
                bound!(sqlx::query_as::<Postgres, R>, Postgres, self)
                    .fetch_optional(p)
                    .await?
            }
            On::Pool(Db::Sqlite(p)) => {
                bound!(sqlx::query_as::<Sqlite, R>, Sqlite, self)
                    .fetch_optional(p)
                    .await?
            }
            On::Tx(Tx::Postgres(t)) => {
                bound!(sqlx::query_as::<Postgres, R>, Postgres, self)
                    .fetch_optional(&mut **t)
                    .await?
            }
            On::Tx(Tx::Sqlite(t)) => {
                bound!(sqlx::query_as::<Sqlite, R>, Sqlite, self)
                    .fetch_optional(&mut **t)
                    .await?
            }
        })
    }

    /// Hands each row to `sink` as it arrives, without collecting them: a
    /// million rows never sit in memory at once.
    pub(crate) async fn for_each<'a, R: Record>(
        self,
        on: impl Into<On<'a>>,
        mut sink: impl FnMut(R) -> Result<(), StoreError> + Send,
    ) -> Result<(), StoreError> {
        match on.into() {
            On::Pool(Db::Postgres(p)) => {
                let mut rows = bound!(sqlx::query_as::<Postgres, R>, Postgres, self).fetch(p);
                while let Some(row) = rows.try_next().await? {
                    sink(row)?;
                }
            }
            On::Pool(Db::Sqlite(p)) => {
                let mut rows = bound!(sqlx::query_as::<Sqlite, R>, Sqlite, self).fetch(p);
                while let Some(row) = rows.try_next().await? {
                    sink(row)?;
                }
            }
            On::Tx(Tx::Postgres(t)) => {
                let mut rows =
                    bound!(sqlx::query_as::<Postgres, R>, Postgres, self).fetch(&mut **t);
                while let Some(row) = rows.try_next().await? {
                    sink(row)?;
                }
            }
            On::Tx(Tx::Sqlite(t)) => {
                let mut rows = bound!(sqlx::query_as::<Sqlite, R>, Sqlite, self).fetch(&mut **t);
                while let Some(row) = rows.try_next().await? {
                    sink(row)?;
                }
            }
        }
        Ok(())
    }

    /// Exactly one row; `RowNotFound` otherwise.
    pub(crate) async fn fetch_one<'a, R: Record>(
        self,
        on: impl Into<On<'a>>,
    ) -> Result<R, StoreError> {
        self.fetch_optional(on)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// The first column of exactly one row.
    pub(crate) async fn fetch_scalar<'a, T>(self, on: impl Into<On<'a>>) -> Result<T, StoreError>
    where
        (T,): Record,
    {
        Ok(self.fetch_one::<(T,)>(on).await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn both() -> Vec<Db> {
        let lite = SqlitePool::connect("sqlite::memory:")
            .await
            .expect("sqlite");
        let mut dbs = vec![Db::Sqlite(lite)];
        if let Ok(url) = std::env::var("DATABASE_URL") {
            dbs.push(Db::Postgres(PgPool::connect(&url).await.expect("postgres")));
        }
        dbs
    }

    #[tokio::test]
    async fn every_value_kind_round_trips_on_each_backend() {
        for db in both().await {
            let row: (i64, Option<i64>, bool, String, Option<String>, Vec<u8>) = sql(
                "SELECT CAST($1 AS BIGINT), CAST($2 AS BIGINT), $3, CAST($4 AS TEXT), \
                 CAST($5 AS TEXT), $6",
            )
            .bind(-7_i64)
            .bind(None::<i64>)
            .bind(true)
            .bind("text")
            .bind(None::<&str>)
            .bind(&[1_u8, 2, 3][..])
            .fetch_one(&db)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", db.backend()));
            assert_eq!(
                row,
                (-7, None, true, "text".into(), None, vec![1, 2, 3]),
                "{}",
                db.backend()
            );
        }
    }

    #[tokio::test]
    async fn a_transaction_dropped_without_commit_rolls_back() {
        for db in both().await {
            let table = format!("t_{}", std::process::id());
            sql(format!("CREATE TABLE IF NOT EXISTS {table} (v BIGINT)"))
                .execute(&db)
                .await
                .expect("create");
            let mut tx = db.begin_write().await.expect("begin");
            sql(format!("INSERT INTO {table} (v) VALUES ($1)"))
                .bind(1_i64)
                .execute(&mut tx)
                .await
                .expect("insert");
            drop(tx);
            let n: i64 = sql(format!("SELECT COUNT(*) FROM {table}"))
                .fetch_scalar(&db)
                .await
                .expect("count");
            sql(format!("DROP TABLE {table}"))
                .execute(&db)
                .await
                .expect("drop");
            assert_eq!(n, 0, "{}", db.backend());
        }
    }
}
