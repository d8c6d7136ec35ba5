//! Real `keysmith serve` processes, for multi-replica tests.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use keysmith::grpc::pb::{key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient};
use tonic::transport::Channel;

use crate::helpers::{Admin, Bearer};

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

/// Mints an admin token directly in the database at `url`.
pub async fn mint_token(url: &str) -> String {
    let db = keysmith::config::DbConfig {
        database_url: Some(url.to_owned()),
        data_dir: std::env::temp_dir(),
    };
    let store = keysmith::app::open_store(&db, true)
        .await
        .expect("open store");
    let (token, _) = keysmith::auth::AdminAuth::new(store, Default::default())
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
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
