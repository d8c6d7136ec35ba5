//! PostgreSQL, for several replicas sharing one database: its pool, its
//! migrations, its commit settings and its LISTEN connections. The queries
//! are the shared ones of `SqlStore` (`sql.rs`), which `store::open` makes
//! from this pool.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};

use super::{Durability, StoreError, db::CHANGE_CHANNEL};

/// Connects to the PostgreSQL database at `url`: its pool, and where its
/// LISTEN connections come from.
pub(super) async fn connect(url: &str) -> Result<(PgPool, PgWakeups), StoreError> {
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
    Ok((pool, PgWakeups { options }))
}

pub(super) async fn migrate(pool: &PgPool) -> Result<(), StoreError> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}

/// Both settings read on one pooled connection: the session's own.
pub(super) async fn durability(pool: &PgPool) -> Result<Durability, StoreError> {
    let mut conn = pool.acquire().await?;
    let synchronous_commit: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut *conn)
        .await?;
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(&mut *conn)
        .await?;
    Ok(Durability::Postgres {
        synchronous_commit,
        fsync,
    })
}

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
