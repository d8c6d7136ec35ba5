//! Revocation propagation between two real replicas on one PostgreSQL.
//!
//! Replica A revokes 1,000 keys one after another. For each, the bench
//! measures, from the moment A acknowledged the revocation:
//! - until replica B's Verify answers REVOKED (B is polled in a loop);
//! - until a WatchRevocations subscriber on B receives the event.
//!
//! Run with `scripts/bench propagation` (starts a throwaway PostgreSQL), or
//! with DATABASE_URL set to a server where it may create a database.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use sqlx::Connection;
use tonic::{Request, transport::Channel};

const KEYS: usize = 1000;

struct Replica {
    child: Child,
    verify: KeyVerifyClient<Channel>,
    admin: KeyAdminClient<Channel>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(url: &str) -> Replica {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args([
            "serve",
            "--verify-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args(["--database-url", url])
        .env("RUST_LOG", "warn,keysmith::app=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keysmith");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let fields = loop {
        let line = lines.next().expect("replica log").expect("read log");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "keysmith listening" {
            break v["fields"].clone();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let channel = |k: &str| {
        Channel::from_shared(format!("http://{}", fields[k].as_str().expect("addr")))
            .expect("uri")
            .connect_lazy()
    };
    Replica {
        child,
        verify: KeyVerifyClient::new(channel("verify_addr")),
        admin: KeyAdminClient::new(channel("admin_addr")),
    }
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value = format!("Bearer {token}").parse().expect("ascii");
    req.metadata_mut().insert("authorization", value);
    req
}

async fn code(r: &Replica, key: &str) -> Option<pb::VerifyCode> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    Some(r.verify.clone().verify(req).await.ok()?.into_inner().code())
}

fn percentiles(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<34} n={:<5} p50={:>8.2?} p90={:>8.2?} p99={:>8.2?} max={:>8.2?}",
        samples.len(),
        at(0.50),
        at(0.90),
        at(0.99),
        samples[samples.len() - 1]
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` only checks
    // that this builds and starts.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("propagation: DATABASE_URL is not set; run scripts/bench propagation");
        return;
    };
    let name = format!(
        "keysmith_bench_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut conn = sqlx::PgConnection::connect(&base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    let url = format!(
        "{}/{name}",
        base.rsplit_once('/').expect("url with a database").0
    );

    let db = keysmith::config::DbConfig {
        database_url: Some(url.clone()),
        data_dir: std::env::temp_dir(),
    };
    let store = keysmith::app::open_store(&db, true).await.expect("store");
    let (token, _) = keysmith::auth::AdminAuth::new(store)
        .mint("bench")
        .await
        .expect("token");
    let token = token.expose_secret().to_owned();
    let a = start(&url).await;
    let b = start(&url).await;

    let mut keys = Vec::with_capacity(KEYS);
    for _ in 0..KEYS {
        let req = pb::CreateKeyRequest {
            owner_id: "acct_bench".into(),
            ..Default::default()
        };
        let resp = a
            .admin
            .clone()
            .create_key(authed(&token, req))
            .await
            .expect("create")
            .into_inner();
        keys.push((resp.key.expect("key").id, resp.secret));
    }
    let last = &keys[KEYS - 1].1;
    while code(&b, last).await != Some(pb::VerifyCode::Valid) {
        tokio::task::yield_now().await;
    }

    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut stream = b
        .verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let sink = arrivals.clone();
    let subscriber = tokio::spawn(async move {
        while let Ok(Some(e)) = stream.message().await {
            sink.lock().expect("lock").insert(e.key_id, Instant::now());
        }
    });

    let mut rpc = Vec::with_capacity(KEYS);
    let mut to_deny = Vec::with_capacity(KEYS);
    let mut acks = Vec::with_capacity(KEYS);
    for (id, secret) in &keys {
        let sent = Instant::now();
        let req = pb::RevokeKeyRequest {
            id: id.clone(),
            ..Default::default()
        };
        a.admin
            .clone()
            .revoke_key(authed(&token, req))
            .await
            .expect("revoke");
        let acked = Instant::now();
        rpc.push(acked - sent);
        while code(&b, secret).await != Some(pb::VerifyCode::Revoked) {}
        to_deny.push(acked.elapsed());
        acks.push((id.clone(), acked));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.lock().expect("lock").len() < KEYS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subscriber.abort();
    let arrivals = arrivals.lock().expect("lock");
    let to_stream: Vec<Duration> = acks
        .iter()
        .filter_map(|(id, acked)| {
            arrivals
                .get(id)
                .map(|t| t.saturating_duration_since(*acked))
        })
        .collect();
    assert_eq!(
        to_stream.len(),
        KEYS,
        "every revocation reached the subscriber"
    );

    println!("revocation propagation, 2 replicas, {KEYS} sequential revocations");
    percentiles("RevokeKey on A (request to ack)", rpc);
    percentiles("ack on A -> B denies (Verify)", to_deny);
    percentiles("ack on A -> B's stream event", to_stream);
}
