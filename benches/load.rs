//! Load bench: unary Verify against a release `keysmith serve` (SQLite), next
//! to the cheapest unary RPC the server has (health Check) in the same run.
//!
//! `scripts/bench load`. KEYSMITH_BIN points it at another server binary, to
//! compare a change against its baseline under the same load. Knobs: LOAD_SECONDS per phase (2), LOAD_ROUNDS (5),
//! LOAD_CONNECTIONS (16), LOAD_INFLIGHT per connection (16), LOAD_KEYS (1000).

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use tokio::task::JoinSet;
use tonic::{Request, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &std::path::Path) -> (Server, String, String, String) {
    // KEYSMITH_BIN runs another build (e.g. a baseline) under the same load.
    let bin =
        std::env::var("KEYSMITH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_keysmith").to_owned());
    let mut child = Command::new(bin)
        .args([
            "serve",
            "--verify-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn,keysmith::app=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn keysmith");
    let token = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
        .find(|l| l.trim_start().starts_with("ksa_"))
        .expect("bootstrap token")
        .trim()
        .to_owned();
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let fields = loop {
        let line = lines.next().expect("log").expect("read log");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "keysmith listening" {
            break v["fields"].clone();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    let addr = |k: &str| fields[k].as_str().expect("addr").to_owned();
    (
        Server(child),
        addr("verify_addr"),
        addr("admin_addr"),
        token,
    )
}

async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
}

/// Runs `op` from `conns × inflight` tasks for `secs`; returns (rps, stats).
async fn drive<F, Fut>(channels: &[Channel], inflight: u64, secs: u64, op: F) -> (f64, Stats)
where
    F: Fn(Channel, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = JoinSet::new();
    for (c, ch) in channels.iter().enumerate() {
        for t in 0..inflight {
            let (ch, op) = (ch.clone(), op.clone());
            let seed = c * 1000 + t as usize;
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(100_000);
                let mut n = seed;
                while Instant::now() < deadline {
                    let start = Instant::now();
                    op(ch.clone(), n).await;
                    lat.push(start.elapsed());
                    n = n.wrapping_add(7919);
                }
                lat
            });
        }
    }
    let mut stats = Stats::default();
    while let Some(lat) = tasks.join_next().await {
        stats.latencies.extend(lat.expect("task"));
    }
    let rps = stats.latencies.len() as f64 / secs as f64;
    (rps, stats)
}

fn report(name: &str, rps: f64, mut s: Stats) {
    s.latencies.sort();
    let at =
        |p: f64| s.latencies[((s.latencies.len() as f64 * p) as usize).min(s.latencies.len() - 1)];
    println!(
        "{name:<22} {rps:>10.0} rps   p50={:>9.2?} p99={:>9.2?} p99.9={:>9.2?}",
        at(0.5),
        at(0.99),
        at(0.999)
    );
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let (secs, rounds, conns, inflight, keys) = (
        knob("LOAD_SECONDS", 2),
        knob("LOAD_ROUNDS", 5),
        knob("LOAD_CONNECTIONS", 16),
        knob("LOAD_INFLIGHT", 16),
        knob("LOAD_KEYS", 1000),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, verify_addr, admin_addr, token) = start(dir.path());
    let mut admin = KeyAdminClient::new(channel(&admin_addr).await);
    let mut secrets = Vec::new();
    for _ in 0..keys {
        let mut req = Request::new(pb::CreateKeyRequest {
            owner_id: "acct_load".into(),
            scopes: vec!["invoices:*".into()],
            ..Default::default()
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        secrets.push(
            admin
                .create_key(req)
                .await
                .expect("create")
                .into_inner()
                .secret,
        );
    }
    let secrets = Arc::new(secrets);
    let mut channels = Vec::new();
    for _ in 0..conns {
        channels.push(channel(&verify_addr).await);
    }
    println!(
        "load: {conns} connections x {inflight} in flight, {rounds} interleaved rounds of {secs}s per RPC, {keys} keys"
    );
    // The machine is shared: interleave short phases of both RPCs and take
    // medians, so a neighbour's burst does not land on one side only.
    let (mut empty_runs, mut verify_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut empty_lat, mut verify_lat) = (Stats::default(), Stats::default());
    for _ in 0..rounds {
        let (empty, s) = drive(&channels, inflight, secs, |ch, _| async move {
            let req = HealthCheckRequest {
                service: String::new(),
            };
            HealthClient::new(ch).check(req).await.expect("health");
        })
        .await;
        empty_lat.latencies.extend(s.latencies);
        let verify_secrets = secrets.clone();
        let (verify, s) = drive(&channels, inflight, secs, move |ch, n| {
            let key = verify_secrets[n % verify_secrets.len()].clone();
            async move {
                let req = pb::VerifyRequest {
                    key,
                    required_scopes: vec!["invoices:read".into()],
                    ..Default::default()
                };
                let resp = KeyVerifyClient::new(ch)
                    .verify(req)
                    .await
                    .expect("verify")
                    .into_inner();
                assert!(resp.valid);
            }
        })
        .await;
        verify_lat.latencies.extend(s.latencies);
        ratios.push(verify / empty);
        empty_runs.push(empty);
        verify_runs.push(verify);
    }
    report("empty RPC (health)", median(empty_runs), empty_lat);
    report("Verify", median(verify_runs), verify_lat);
    println!(
        "Verify / empty RPC, median of rounds = {:.3}",
        median(ratios)
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
