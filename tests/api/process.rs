//! Real `keysmith serve` processes, for multi-replica and crash tests, and
//! what SIGTERM promises: in-flight calls finish, health turns NOT_SERVING.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, mpsc},
    time::Duration,
};

use keysmith::{
    grpc::pb::{key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient},
    store::Store,
};
use tonic::transport::Channel;

use crate::helpers::{Admin, Bearer, TestDb};

/// One `keysmith serve` process; killed on drop.
pub struct Replica {
    child: Child,
    pub id: String,
    pub verify: KeyVerifyClient<Channel>,
    pub verify_channel: Channel,
    pub admin: Admin,
}

/// `keysmith serve` with both listeners on port 0.
pub fn serve_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keysmith"));
    cmd.args([
        "serve",
        "--verify-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    cmd
}

/// The `--database-url` of `db`: SQLite's file, or the PostgreSQL database.
pub fn database_url(db: &TestDb) -> String {
    match &db.config.database_url {
        Some(url) => url.clone(),
        None => {
            std::fs::create_dir_all(&db.config.data_dir).expect("data dir");
            format!("sqlite:{}", db.sqlite_file().display())
        }
    }
}

/// The store at `url`, opened (and migrated) the way `keysmith serve` does.
pub async fn store_at(url: &str) -> Arc<dyn Store> {
    let db = keysmith::config::DbConfig {
        database_url: Some(url.to_owned()),
        data_dir: std::env::temp_dir(),
    };
    keysmith::app::open_store(&db, true)
        .await
        .expect("open store")
}

/// Mints an admin token directly in the database at `url`.
pub async fn mint_token(url: &str) -> String {
    let store = store_at(url).await;
    let (token, _) = keysmith::auth::AdminAuth::new(store, Default::default(), Default::default())
        .mint("test")
        .await
        .expect("mint");
    token.expose_secret().to_owned()
}

impl Replica {
    /// Starts a replica on `url` and waits until it is SERVING.
    pub async fn start(url: &str, token: &str, extra: &[&str]) -> Self {
        Self::start_in(serve_command(), url, token, extra).await
    }

    /// [`Replica::start`] from `cmd`, which may set the environment.
    pub async fn start_in(mut cmd: Command, url: &str, token: &str, extra: &[&str]) -> Self {
        let mut child = cmd
            .args(["--database-url", url])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn keysmith serve");
        // Logs are JSON lines on stderr (not a terminal). Read them on a
        // thread for the whole life of the process, so the pipe never fills.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let listening = tokio::task::spawn_blocking(move || {
            loop {
                let line = rx
                    .recv_timeout(Duration::from_secs(20))
                    .expect("replica started in time");
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["fields"]["message"] == "keysmith listening" {
                    return v["fields"].clone();
                }
            }
        })
        .await
        .expect("join");
        let field = |k: &str| listening[k].as_str().expect("logged field").to_owned();
        let verify = crate::helpers::connect(field("verify_addr").parse().expect("addr")).await;
        let admin = crate::helpers::connect(field("admin_addr").parse().expect("addr")).await;
        let bearer = Bearer(format!("Bearer {token}").parse().expect("ascii"));
        let replica = Self {
            child,
            id: field("replica"),
            verify: KeyVerifyClient::new(verify.clone()),
            verify_channel: verify.clone(),
            admin: KeyAdminClient::with_interceptor(admin, bearer),
        };
        crate::helpers::wait_until_serving(&verify).await;
        replica
    }
}

impl Replica {
    /// SIGKILL: no shutdown hook, no flush, no goodbye.
    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as an orchestrator stops a replica; returns at once.
    pub fn terminate(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "SIGTERM sent");
    }

    /// The exit status, once the process has exited.
    pub async fn exited(&mut self) -> std::process::ExitStatus {
        let mut status = None;
        crate::helpers::eventually("the process to exit", || {
            status = self.child.try_wait().expect("try_wait");
            std::future::ready(status.is_some())
        })
        .await;
        status.expect("exited")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// SIGTERM with a call in flight: a RevokeKey that waits for a replica that
/// never confirms, so it is still running when the signal lands. The call
/// completes with its receipt, health says NOT_SERVING meanwhile (a load
/// balancer stops sending), and the process exits 0.
async fn sigterm_drains_in_flight_calls(backend: crate::helpers::Backend) {
    use keysmith::{
        domain::{KeyId, Timestamp},
        grpc::pb,
        store::ReplicaRow,
    };
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };

    let db = TestDb::new(backend).await;
    let url = database_url(&db);
    let token = mint_token(&url).await;
    let mut replica = Replica::start(&url, &token, &[]).await;
    let store = store_at(&url).await;
    let create = pb::CreateKeyRequest {
        owner_id: "acct_drain".into(),
        ..Default::default()
    };
    let key = replica.admin.create_key(create).await.expect("create");
    let id = key.into_inner().key.expect("key").id;
    // Alive (its heartbeat is in the future) but never applying anything.
    let now = Timestamp::now();
    let stuck = ReplicaRow {
        id: "stuck-replica".into(),
        applied_seq: 0,
        heartbeat_at: Timestamp::from_millis(now.as_millis() + 3_600_000),
        started_at: now,
    };
    store.report_replica(&stuck).await.expect("report");

    let mut health = HealthClient::new(replica.verify_channel.clone());
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let mut watch = health.watch(request).await.expect("watch").into_inner();
    let first = watch.message().await.expect("health").expect("a status");
    assert_eq!(first.status(), ServingStatus::Serving);

    let mut admin = replica.admin.clone();
    let revoke = pb::RevokeKeyRequest {
        id: id.clone(),
        reason: "drain test".into(),
        wait_for_propagation: true,
        propagation_timeout: Some(keysmith::grpc::wkt::Duration {
            seconds: 4,
            nanos: 0,
        }),
        include_successors: false,
    };
    let call = tokio::spawn(async move { admin.revoke_key(revoke).await });
    // Committed, so now waiting on the stuck replica.
    let key_id: KeyId = id.parse().expect("id");
    crate::helpers::eventually("the revocation to commit", || async {
        let key = store.get_key(&key_id).await.expect("get");
        key.is_some_and(|k| k.revoked_at.is_some())
    })
    .await;
    replica.terminate();
    assert!(!call.is_finished(), "the call is in flight at SIGTERM");

    let not_serving = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(update)) = watch.message().await {
            if update.status() == ServingStatus::NotServing {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(not_serving, Ok(true), "health NOT_SERVING while draining");
    drop(watch);

    let reply = call.await.expect("join");
    let reply = reply.expect("the in-flight call completes").into_inner();
    assert!(reply.key.expect("key").revoke_time.is_some());
    let receipt = reply.propagation.expect("a receipt");
    assert!(!receipt.complete, "the stuck replica never confirmed");
    assert!(
        receipt.confirmed_replicas < receipt.live_replicas,
        "{receipt:?}"
    );
    let status = replica.exited().await;
    assert!(status.success(), "exit status {status:?}");
}

crate::backend_tests!(sigterm_drains_in_flight_calls);
