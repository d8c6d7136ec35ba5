//! Spawns a real keysmith server on port 0 against a fresh database and
//! hands out generated tonic clients.

use std::{future::Future, path::PathBuf, time::Duration};

use keysmith::{
    App, Config,
    config::DbConfig,
    grpc::pb::{self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient},
};
use sqlx::{Connection, PgConnection};
use tokio::{sync::oneshot, task::JoinHandle};
use tonic::{
    metadata::MetadataValue,
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where a test's data lives; kept across restarts of the server.
pub struct TestDb {
    pub backend: Backend,
    pub config: DbConfig,
    /// Holds the SQLite directory until the test ends.
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_pg_database().await),
        };
        Self {
            backend,
            config: DbConfig {
                database_url,
                data_dir: dir.path().join("keysmith-data"),
            },
            dir,
        }
    }

    pub fn sqlite_file(&self) -> PathBuf {
        self.config.data_dir.join("keysmith.db")
    }
}

/// Creates an empty database on the server named by `DATABASE_URL`.
pub async fn fresh_pg_database() -> String {
    let base = std::env::var("DATABASE_URL").expect(
        "DATABASE_URL must name a PostgreSQL server for the postgres tests; \
         run scripts/test, which starts one",
    );
    let name = format!(
        "keysmith_test_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut conn = PgConnection::connect(&base)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let mut url = url_without_db(&base);
    url.push('/');
    url.push_str(&name);
    url
}

/// `postgres://u@h:p/db?x` → `postgres://u@h:p` (query dropped).
fn url_without_db(url: &str) -> String {
    let no_query = url.split('?').next().unwrap_or(url);
    let scheme_end = no_query.find("://").map_or(0, |i| i + 3);
    match no_query[scheme_end..].find('/') {
        Some(i) => no_query[..scheme_end + i].to_owned(),
        None => no_query.to_owned(),
    }
}

/// Adds the admin bearer token to every call.
#[derive(Clone)]
pub struct Bearer(pub MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

pub type Admin = KeyAdminClient<InterceptedService<Channel, Bearer>>;

/// A running server and clients for it.
pub struct TestApp {
    pub db: TestDb,
    pub admin: Admin,
    pub verify: KeyVerifyClient<Channel>,
    pub admin_channel: Channel,
    pub verify_channel: Channel,
    pub token: String,
    verify_addr: std::net::SocketAddr,
    admin_addr: std::net::SocketAddr,
    /// The public listener's, when the configuration turned it on.
    pub public_addr: Option<std::net::SocketAddr>,
    /// Dropping the sender (with the `TestApp`) also stops the server.
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_on(TestDb::new(backend).await, None).await
}

/// Starts a server with a configuration adjusted by `configure`.
pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    spawn_configured(TestDb::new(backend).await, None, configure).await
}

/// Starts a server on `db`, minting an admin token unless one is given.
pub async fn spawn_on(db: TestDb, token: Option<String>) -> TestApp {
    spawn_configured(db, token, |_| {}).await
}

pub async fn spawn_configured(
    db: TestDb,
    token: Option<String>,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config {
        verify_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        db: db.config.clone(),
        ..Config::default()
    };
    configure(&mut config);
    let app = App::build(&config).await.expect("build app");
    let token = match token {
        Some(t) => t,
        None => {
            let (t, _) = app.auth().mint("test").await.expect("mint token");
            t.expose_secret().to_owned()
        }
    };
    let (verify_addr, admin_addr) = (app.verify_addr(), app.admin_addr());
    let public_addr = app.public_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run(async {
            let _ = stopped.await;
        })
        .await
        .expect("server run");
    });
    let verify_channel = connect(verify_addr).await;
    let admin_channel = connect(admin_addr).await;
    let bearer = Bearer(format!("Bearer {token}").parse().expect("ascii token"));
    let test = TestApp {
        admin: KeyAdminClient::with_interceptor(admin_channel.clone(), bearer),
        verify: KeyVerifyClient::new(verify_channel.clone()),
        admin_channel,
        verify_channel,
        db,
        token,
        verify_addr,
        admin_addr,
        public_addr,
        stop: Some(stop),
        server: Some(server),
    };
    test.wait_until_serving().await;
    test
}

pub async fn connect(addr: std::net::SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to server")
}

impl TestApp {
    pub fn verify_channel_addr(&self) -> String {
        self.verify_addr.to_string()
    }

    pub fn admin_channel_addr(&self) -> String {
        self.admin_addr.to_string()
    }

    /// Waits for health SERVING, i.e. the index is loaded.
    pub async fn wait_until_serving(&self) {
        wait_until_serving(&self.verify_channel).await;
    }

    /// Stops the server gracefully and returns its database for a restart.
    pub async fn stop(mut self) -> (TestDb, String) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
        let TestApp { db, token, .. } = self;
        (db, token)
    }

    pub async fn create(&self, req: pb::CreateKeyRequest) -> pb::CreateKeyResponse {
        self.admin
            .clone()
            .create_key(req)
            .await
            .expect("create key")
            .into_inner()
    }

    /// Creates a live secret key for `acct_test` with the given scopes.
    pub async fn create_with_scopes(&self, scopes: &[&str]) -> pb::CreateKeyResponse {
        self.create(pb::CreateKeyRequest {
            owner_id: "acct_test".into(),
            name: "test key".into(),
            r#type: pb::KeyType::Secret.into(),
            environment: pb::Environment::Live.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .await
    }

    pub async fn verify_scopes(&self, key: &str, scopes: &[&str]) -> pb::VerifyResponse {
        let req = pb::VerifyRequest {
            key: key.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        self.verify
            .clone()
            .verify(req)
            .await
            .expect("verify")
            .into_inner()
    }

    /// Verify with the end client's inputs, as a gateway passes them.
    pub async fn verify_from(
        &self,
        key: &str,
        scopes: &[&str],
        ip: &str,
        referrer: &str,
        resource: &str,
    ) -> pb::VerifyResponse {
        let req = pb::VerifyRequest {
            key: key.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_ip: ip.into(),
            referrer: referrer.into(),
            resource: resource.into(),
            ..Default::default()
        };
        self.verify
            .clone()
            .verify(req)
            .await
            .expect("verify")
            .into_inner()
    }

    pub async fn verify_code(&self, key: &str) -> pb::VerifyCode {
        self.verify_scopes(key, &[]).await.code()
    }

    /// Revokes key `id`, with a reason.
    pub async fn revoke(&self, id: &str) -> pb::RevokeKeyResponse {
        let req = pb::RevokeKeyRequest {
            id: id.into(),
            reason: "test".into(),
            ..Default::default()
        };
        self.admin
            .clone()
            .revoke_key(req)
            .await
            .expect("revoke")
            .into_inner()
    }

    pub async fn get(&self, id: &str) -> pb::Key {
        let req = pb::GetKeyRequest { id: id.into() };
        let resp = self.admin.clone().get_key(req).await.expect("get key");
        resp.into_inner().key.expect("key")
    }
}

const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Waits until the server behind `channel` reports SERVING.
pub async fn wait_until_serving(channel: &Channel) {
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    eventually("health SERVING", || {
        let mut health = health.clone();
        async move {
            let req = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            health.check(req).await.ok().map(|r| r.into_inner().status)
                == Some(tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
        }
    })
    .await;
}

/// Polls `condition` until it holds, failing the test after a deadline.
pub async fn eventually<F, Fut>(what: &str, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(Duration::from_secs(10), what, condition).await;
}

/// [`eventually`] with its own deadline, for work that grows with its input
/// (a job run over hundreds of keys on a loaded machine).
pub async fn eventually_within<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Asserts `result` is an error with `code` whose message names `field`.
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    let status = result.expect_err("expected an error status");
    assert_eq!(status.code(), code, "status: {status:?}");
    assert!(
        status.message().contains(field),
        "message `{}` should name `{field}`",
        status.message()
    );
}

/// Instantiates each listed test for both backends.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}
