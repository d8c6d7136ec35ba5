use std::time::Duration;

use sqlx::{
    PgPool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};

use super::{
    StoreError,
    db::{Db, SqlBackend},
    sql::impl_sql_store,
};

/// The channel every replica LISTENs on. The payload is the newest change
/// sequence; it is only a wake-up, the change log is the truth.
pub const CHANGE_CHANNEL: &str = "keysmith_changes";

/// PostgreSQL, for several replicas sharing one database.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    db: Db,
    options: PgConnectOptions,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        // Commits wait for the WAL flush whatever the server's default says
        // (a tuned or test server may run with `synchronous_commit = off`,
        // which acknowledges writes a power cut then loses).
        let options = url
            .parse::<PgConnectOptions>()?
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            db: Db::Postgres(pool.clone()),
            pool,
            options,
        })
    }

    async fn read_durability(&self) -> Result<super::Durability, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *conn)
            .await?;
        let fsync: String = sqlx::query_scalar("SHOW fsync")
            .fetch_one(&mut *conn)
            .await?;
        Ok(super::Durability::Postgres {
            synchronous_commit,
            fsync,
        })
    }

    fn pg_wakeups(&self) -> Option<PgWakeups> {
        Some(PgWakeups {
            options: self.options.clone(),
        })
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations/postgres")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }

    async fn begin_snapshot(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?)
    }

    async fn notify(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        seq: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANGE_CHANNEL)
            .bind(seq.to_string())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

impl SqlBackend for PgStore {
    fn db(&self) -> &Db {
        &self.db
    }
}

super::log_sql::impl_log_sql!(PgStore, Postgres);
super::usage_sql::impl_usage_sql!(PgStore, Postgres);
super::audit_sql::impl_audit_sql!(PgStore, Postgres);
super::webhook_sql::impl_webhook_sql!(PgStore, Postgres);
impl_sql_store!(PgStore, Postgres, "postgres");

/// Opens LISTEN connections for the change feed.
#[derive(Clone)]
pub struct PgWakeups {
    options: PgConnectOptions,
}

impl PgWakeups {
    /// A connection LISTENing on [`CHANGE_CHANNEL`], named
    /// `keysmith-listener-<replica>` in `pg_stat_activity` so an operator
    /// (or a test) can find it.
    pub async fn listen(&self, replica: &str) -> Result<PgListener, StoreError> {
        let name = format!("keysmith-listener-{replica}");
        self.listen_on(CHANGE_CHANNEL, &name).await
    }

    /// A connection LISTENing on `channel`, shown as `application_name` in
    /// `pg_stat_activity`.
    pub async fn listen_on(
        &self,
        channel: &str,
        application_name: &str,
    ) -> Result<PgListener, StoreError> {
        let options = self.options.clone().application_name(application_name);
        // Fail fast while the server is down: the feed polls meanwhile and
        // retries on its next round.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy_with(options);
        let mut listener = PgListener::connect_with(&pool).await?;
        // The feed rebuilds a lost listener itself, then catches up from the
        // change log; a reconnect inside `try_recv` would only delay that.
        listener.eager_reconnect(false);
        listener.listen(channel).await?;
        Ok(listener)
    }
}
