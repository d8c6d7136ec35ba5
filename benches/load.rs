//! Load bench: unary Verify and VerifyStream against a release
//! `keysmith serve`, next to the cheapest unary RPC the server has (health
//! Check), in the same run and the same way.
//!
//! `scripts/bench load`. It starts a server on PostgreSQL when DATABASE_URL
//! is set (scripts/bench starts one), bulk-seeding LOAD_KEYS keys, or on
//! SQLite otherwise, seeding through CreateKey. LOAD_VERIFY_ADDR,
//! LOAD_ADMIN_ADDR and LOAD_TOKEN target a running server instead.
//! KEYSMITH_BIN starts another build, to compare a change with its baseline.
//!
//! Phases, interleaved for LOAD_ROUNDS rounds of LOAD_SECONDS each, so a
//! neighbour's burst on this shared machine does not land on one side only:
//! 1. empty RPC: LOAD_CONNECTIONS × LOAD_INFLIGHT closed-loop callers;
//! 2. unary Verify: the same callers;
//! 3. VerifyStream: one stream per connection, LOAD_WINDOW requests in flight
//!    on each.
//!
//! Then unary Verify at half of the measured maximum, open loop: calls
//! leave on a fixed schedule, so a stall is not hidden by the callers
//! waiting it out.
//!
//! When `h2load` (nghttp2) is installed, the unary phases run again with it
//! as the client: c16 m16 as in the anchor figures, then `--rps` at half of
//! its maximum. h2load is C and far lighter than a tonic client, so on a
//! 2-core machine more of the CPU goes to the server, and its per-request
//! log gives the latency percentiles.

mod common;

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Percentiles, Server, authed, benching, channel, knob};
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use tokio::{sync::Semaphore, task::JoinSet};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

struct Settings {
    secs: u64,
    rounds: u64,
    conns: usize,
    inflight: usize,
    window: usize,
    keys: usize,
}

struct Target {
    _server: Option<Server>,
    verify_addr: String,
    secrets: Arc<Vec<String>>,
}

/// How many secrets the bench keeps to drive Verify with.
const PROBES: usize = 100_000;

async fn target(keys: usize) -> Target {
    if let Ok(verify_addr) = std::env::var("LOAD_VERIFY_ADDR") {
        let admin = std::env::var("LOAD_ADMIN_ADDR").expect("LOAD_ADMIN_ADDR");
        let token = std::env::var("LOAD_TOKEN").expect("LOAD_TOKEN");
        let secrets = seed_api(&admin, &token, keys).await;
        return Target {
            _server: None,
            verify_addr,
            secrets: Arc::new(secrets),
        };
    }
    if let Ok(base) = std::env::var("DATABASE_URL") {
        let url = common::fresh_database(&base).await;
        let db = ["--database-url", url.as_str()];
        // The first start migrates the database.
        Server::start(&db, &[])
            .wait_serving(Duration::from_secs(30))
            .await;
        let secrets = common::seed_postgres(&url, keys, PROBES).await;
        let server = Server::start(&db, &[]);
        server.wait_serving(Duration::from_secs(600)).await;
        return Target {
            verify_addr: server.verify_addr.clone(),
            _server: Some(server),
            secrets: Arc::new(secrets),
        };
    }
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let data_dir = dir.to_str().expect("utf-8 path");
    let server = Server::start(&["--data-dir", data_dir], &[]);
    server.wait_serving(Duration::from_secs(30)).await;
    let token = server.token.clone().expect("bootstrap token");
    let secrets = seed_api(&server.admin_addr, &token, keys).await;
    Target {
        verify_addr: server.verify_addr.clone(),
        _server: Some(server),
        secrets: Arc::new(secrets),
    }
}

/// Creates `n` keys through CreateKey, 32 at a time.
async fn seed_api(admin_addr: &str, token: &str, n: usize) -> Vec<String> {
    let admin = KeyAdminClient::new(channel(admin_addr).await);
    let mut tasks = JoinSet::new();
    for w in 0..32 {
        let (mut admin, token) = (admin.clone(), token.to_owned());
        tasks.spawn(async move {
            let mut secrets = Vec::new();
            for _ in (w..n).step_by(32) {
                let req = pb::CreateKeyRequest {
                    owner_id: "acct_load".into(),
                    scopes: vec!["invoices:*".into(), "customers:read".into()],
                    ..Default::default()
                };
                let resp = admin.create_key(authed(&token, req)).await.expect("create");
                if secrets.len() < PROBES / 32 + 1 {
                    secrets.push(resp.into_inner().secret);
                }
            }
            secrets
        });
    }
    let mut all = Vec::with_capacity(n.min(PROBES));
    while let Some(s) = tasks.join_next().await {
        all.extend(s.expect("seed task"));
    }
    all
}

fn verify_request(secrets: &[String], n: usize) -> pb::VerifyRequest {
    pb::VerifyRequest {
        key: secrets[n % secrets.len()].clone(),
        required_scopes: vec!["invoices:read".into()],
        ..Default::default()
    }
}

/// Runs `op` from `conns × inflight` closed-loop callers for `secs`.
async fn closed_loop<F, Fut>(
    channels: &[Channel],
    inflight: usize,
    secs: u64,
    op: F,
) -> (f64, Vec<Duration>)
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
            tasks.spawn(async move {
                let mut lat = Vec::with_capacity(200_000);
                let mut n = c * 1000 + t;
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
    let mut all = Vec::new();
    while let Some(lat) = tasks.join_next().await {
        all.extend(lat.expect("caller"));
    }
    (all.len() as f64 / secs as f64, all)
}

/// One VerifyStream per channel, `window` requests in flight on each.
async fn streams(
    channels: &[Channel],
    window: usize,
    secs: u64,
    secrets: Arc<Vec<String>>,
) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = JoinSet::new();
    for (c, ch) in channels.iter().enumerate() {
        let (ch, secrets) = (ch.clone(), secrets.clone());
        tasks.spawn(async move {
            let credit = Arc::new(Semaphore::new(window));
            let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
            let (tx, rx) = tokio::sync::mpsc::channel(window);
            let sender = {
                let (credit, sent) = (credit.clone(), sent.clone());
                tokio::spawn(async move {
                    let mut n = c * 1000;
                    while Instant::now() < deadline {
                        credit.acquire().await.expect("open").forget();
                        sent.lock().expect("lock").push_back(Instant::now());
                        let req = pb::VerifyStreamRequest {
                            id: n as u64,
                            request: Some(verify_request(&secrets, n)),
                        };
                        if tx.send(req).await.is_err() {
                            break;
                        }
                        n = n.wrapping_add(7919);
                    }
                })
            };
            let mut answers = KeyVerifyClient::new(ch)
                .verify_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .expect("open stream")
                .into_inner();
            let mut lat = Vec::with_capacity(1_000_000);
            while let Some(a) = answers.message().await.expect("answer") {
                let at = sent.lock().expect("lock").pop_front().expect("in order");
                lat.push(at.elapsed());
                assert!(matches!(
                    a.result,
                    Some(pb::verify_stream_response::Result::Response(ref r)) if r.valid
                ));
                credit.add_permits(1);
                if Instant::now() >= deadline {
                    break;
                }
            }
            sender.abort();
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(lat) = tasks.join_next().await {
        all.extend(lat.expect("stream"));
    }
    (all.len() as f64 / secs as f64, all)
}

/// Unary Verify at `rate` calls/s for `secs`, open loop, spread over the
/// channels. Latency runs from each call's send; calls the generator sent
/// over a millisecond late (tokio's timer ticks in milliseconds) are
/// counted and reported.
async fn open_loop(
    channels: &[Channel],
    rate: f64,
    secs: u64,
    secrets: Arc<Vec<String>>,
) -> Vec<Duration> {
    let per_conn = rate / channels.len() as f64;
    let interval = Duration::from_secs_f64(1.0 / per_conn);
    let late = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    let begin = Instant::now();
    for (c, ch) in channels.iter().enumerate() {
        let (ch, secrets, late) = (ch.clone(), secrets.clone(), late.clone());
        // The channels' schedules are spread evenly within one interval.
        let start = begin + interval.mul_f64(c as f64 / channels.len() as f64);
        tasks.spawn(async move {
            let calls = (per_conn * secs as f64) as usize;
            let mut inflight = JoinSet::new();
            for i in 0..calls {
                let at = start + interval.mul_f64(i as f64);
                tokio::time::sleep_until(at.into()).await;
                let sent = Instant::now();
                if sent - at > Duration::from_millis(1) {
                    late.fetch_add(1, Ordering::Relaxed);
                }
                let mut client = KeyVerifyClient::new(ch.clone());
                let req = verify_request(&secrets, c * 7919 + i);
                inflight.spawn(async move {
                    let r = client.verify(req).await.expect("verify").into_inner();
                    assert!(r.valid);
                    sent.elapsed()
                });
            }
            let mut lat = Vec::with_capacity(calls);
            while let Some(l) = inflight.join_next().await {
                lat.push(l.expect("call"));
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(lat) = tasks.join_next().await {
        all.extend(lat.expect("schedule"));
    }
    let late = late.load(Ordering::Relaxed);
    if late > 0 {
        println!("  (the load generator sent {late} calls more than 1 ms late)");
    }
    all
}

/// A gRPC message as a request body: uncompressed flag, length, bytes.
fn grpc_frame(msg: &impl prost::Message) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// Runs h2load against `path` with `body`; (requests/s, latencies), or None
/// when h2load is not installed.
fn h2load(
    addr: &str,
    path: &str,
    body: &[u8],
    (conns, inflight): (usize, usize),
    secs: u64,
    rps_per_client: Option<f64>,
) -> Option<(f64, Vec<Duration>)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (body_file, log_file) = (dir.path().join("body"), dir.path().join("log"));
    std::fs::write(&body_file, body).expect("write body");
    let mut cmd = std::process::Command::new("h2load");
    cmd.args(["-c", &conns.to_string(), "-m", &inflight.to_string()])
        .args(["-D", &secs.to_string()])
        .arg("-d")
        .arg(&body_file)
        .arg(format!("--log-file={}", log_file.display()))
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{addr}{path}"));
    if let Some(rps) = rps_per_client {
        cmd.arg(format!("--rps={}", rps.max(1.0) as u64));
    }
    let out = cmd.output().ok()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(" 0 failed, 0 errored"),
        "h2load saw failures:\n{stdout}"
    );
    let rps: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| l.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .expect("h2load summary");
    let log = std::fs::read_to_string(&log_file).expect("h2load log");
    let lat = log
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.parse().ok())
        .map(Duration::from_micros)
        .collect();
    Some((rps, lat))
}

/// The unary phases again, with h2load as the client.
fn h2load_phases(t: &Target, s: &Settings) {
    let verify = grpc_frame(&verify_request(&t.secrets, 0));
    let empty = grpc_frame(&HealthCheckRequest {
        service: String::new(),
    });
    const VERIFY: &str = "/keysmith.v1.KeyVerify/Verify";
    const CHECK: &str = "/grpc.health.v1.Health/Check";
    let shape = (s.conns, s.inflight);
    let (mut empty_rps, mut verify_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut empty_lat, mut verify_lat) = (Vec::new(), Vec::new());
    for _ in 0..s.rounds {
        let Some((e, lat)) = h2load(&t.verify_addr, CHECK, &empty, shape, s.secs, None) else {
            println!("h2load is not installed; skipping its phases");
            return;
        };
        empty_lat.extend(lat);
        let (v, lat) =
            h2load(&t.verify_addr, VERIFY, &verify, shape, s.secs, None).expect("h2load");
        verify_lat.extend(lat);
        ratios.push(v / e);
        empty_rps.push(e);
        verify_rps.push(v);
    }
    let max = median(verify_rps);
    println!("h2load, c{} m{}:", s.conns, s.inflight);
    report("empty RPC (health Check)", median(empty_rps), empty_lat);
    report("unary Verify", max, verify_lat);
    println!(
        "unary Verify / empty RPC, median of rounds = {:.3}",
        median(ratios)
    );
    // One call in flight per client: with more, h2load's --rps sends each
    // tick's calls as one burst, and the burst queues behind itself.
    let per_client = max / 2.0 / s.conns as f64;
    let (rps, lat) = h2load(
        &t.verify_addr,
        VERIFY,
        &verify,
        (s.conns, 1),
        s.secs * 2,
        Some(per_client),
    )
    .expect("h2load");
    report("unary Verify at half max, m1", rps, lat);
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, rps: f64, lat: Vec<Duration>) {
    println!("{name:<26} {rps:>10.0}/s  {}", Percentiles::new(lat).line());
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let s = Settings {
        secs: knob("LOAD_SECONDS", 2),
        rounds: knob("LOAD_ROUNDS", 5),
        conns: knob("LOAD_CONNECTIONS", 16) as usize,
        inflight: knob("LOAD_INFLIGHT", 16) as usize,
        window: knob("LOAD_WINDOW", 64) as usize,
        keys: knob("LOAD_KEYS", 100_000) as usize,
    };
    let seeding = Instant::now();
    let t = target(s.keys).await;
    println!("seeded {} keys in {:.1?}", s.keys, seeding.elapsed());
    let mut channels = Vec::new();
    for _ in 0..s.conns {
        channels.push(channel(&t.verify_addr).await);
    }
    println!(
        "load: {} connections x {} in flight (streams: {} in flight each), \
         {} interleaved rounds of {}s per phase, {} keys",
        s.conns, s.inflight, s.window, s.rounds, s.secs, s.keys
    );
    let (mut empty_rps, mut verify_rps, mut stream_rps, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut empty_lat, mut verify_lat, mut stream_lat) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..s.rounds {
        let (empty, lat) = closed_loop(&channels, s.inflight, s.secs, |ch, _| async move {
            let req = HealthCheckRequest {
                service: String::new(),
            };
            HealthClient::new(ch).check(req).await.expect("health");
        })
        .await;
        empty_lat.extend(lat);
        let secrets = t.secrets.clone();
        let (verify, lat) = closed_loop(&channels, s.inflight, s.secs, move |ch, n| {
            let req = verify_request(&secrets, n);
            async move {
                let r = KeyVerifyClient::new(ch).verify(req).await.expect("verify");
                assert!(r.into_inner().valid);
            }
        })
        .await;
        verify_lat.extend(lat);
        let (stream, lat) = streams(&channels, s.window, s.secs, t.secrets.clone()).await;
        stream_lat.extend(lat);
        ratios.push(verify / empty);
        empty_rps.push(empty);
        verify_rps.push(verify);
        stream_rps.push(stream);
    }
    let max = median(verify_rps.clone());
    report("empty RPC (health Check)", median(empty_rps), empty_lat);
    report("unary Verify", max, verify_lat);
    report("VerifyStream", median(stream_rps), stream_lat);
    println!(
        "unary Verify / empty RPC, median of rounds = {:.3}",
        median(ratios)
    );
    let half = max / 2.0;
    let lat = open_loop(&channels, half, s.secs * 2, t.secrets.clone()).await;
    report("unary Verify at half max", half, lat);
    h2load_phases(&t, &s);
}
