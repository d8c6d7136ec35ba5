//! Load bench: unary Verify and VerifyStream against a release
//! `keysmith serve`, next to the cheapest unary RPC the server has (health
//! Check), in the same run, from the same client, the same way.
//!
//! `scripts/bench load`. It starts a server on PostgreSQL when DATABASE_URL
//! is set (scripts/bench starts one), bulk-seeding LOAD_KEYS keys (100,000),
//! or on SQLite otherwise, seeding through CreateKey. LOAD_VERIFY_ADDR,
//! LOAD_ADMIN_ADDR and LOAD_TOKEN target a running server instead.
//! KEYSMITH_BIN starts another build, to compare a change with its baseline.
//!
//! The unary phases use `common::wire`, a light client on raw h2 that sends
//! pre-encoded bodies and checks every answer (grpc-status 0, and for
//! Verify `valid` with VERIFY_CODE_VALID). Verify walks LOAD_PROBES distinct
//! keys (100,000, or all keys when fewer), one after another, so the index
//! lookups are spread over the whole table. One wrong answer aborts the run
//! before any figure is printed.
//!
//! Phases, interleaved for LOAD_ROUNDS rounds of LOAD_SECONDS each, so a
//! neighbour's burst on this shared machine does not land on one side only:
//! 1. empty RPC: LOAD_CONNECTIONS × LOAD_INFLIGHT closed-loop callers;
//! 2. unary Verify: the same callers;
//! 3. VerifyStream (tonic client): one stream per connection, LOAD_WINDOW
//!    requests in flight on each.
//!
//! Then unary Verify open loop at half of the measured maximum (see
//! `open_loop`), which reports the rate achieved, the share of calls that
//! left late, and latency from each call's intended send time.
//!
//! At the end the goals are checked; a missed goal exits non-zero after the
//! figures are printed.

mod common;

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{
    Percentiles, Server, authed, benching, channel, knob,
    wire::{Bodies, Conn, closed_loop, verify_request, wrong_answer},
};
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use tokio::{sync::Semaphore, task::JoinSet};
use tonic::transport::Channel;

/// The brief's goals for this bench.
const MIN_RATIO: f64 = 0.90;
const MAX_HALF_LOAD_P99: Duration = Duration::from_millis(1);
const MIN_STREAM_RATE: f64 = 300_000.0;

struct Settings {
    secs: u64,
    rounds: u64,
    conns: usize,
    inflight: usize,
    window: usize,
    keys: usize,
    probes: usize,
}

struct Target {
    _server: Option<Server>,
    verify_addr: String,
    /// The keyspace the secrets are in, which every Verify names.
    keyspace: String,
    secrets: Arc<Vec<String>>,
}

async fn target(keys: usize, probes: usize) -> Target {
    if let Ok(verify_addr) = std::env::var("LOAD_VERIFY_ADDR") {
        let admin = std::env::var("LOAD_ADMIN_ADDR").expect("LOAD_ADMIN_ADDR");
        let token = std::env::var("LOAD_TOKEN").expect("LOAD_TOKEN");
        let (keyspace, secrets) = seed_api(&admin, &token, keys, probes).await;
        return Target {
            _server: None,
            verify_addr,
            keyspace,
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
        let secrets = common::seed_postgres(&url, keys, probes).await;
        let server = Server::start(&db, &[]);
        server.wait_serving(Duration::from_secs(600)).await;
        return Target {
            verify_addr: server.verify_addr.clone(),
            _server: Some(server),
            keyspace: common::KEYSPACE.to_owned(),
            secrets: Arc::new(secrets),
        };
    }
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let data_dir = dir.to_str().expect("utf-8 path");
    let server = Server::start(&["--data-dir", data_dir], &[]);
    server.wait_serving(Duration::from_secs(30)).await;
    let token = server.token.clone().expect("bootstrap token");
    let (keyspace, secrets) = seed_api(&server.admin_addr, &token, keys, probes).await;
    Target {
        verify_addr: server.verify_addr.clone(),
        _server: Some(server),
        keyspace,
        secrets: Arc::new(secrets),
    }
}

/// Creates a keyspace (prefix `bench` and a number, free on a running
/// server), its role `billing-reader`, and `n` keys in it through
/// CreateKey, 32 at a time, every tenth (up to a role's cap) holding the
/// role in place of its own scopes. (keyspace id, `probes` secrets).
async fn seed_api(admin_addr: &str, token: &str, n: usize, probes: usize) -> (String, Vec<String>) {
    let mut admin = KeyAdminClient::new(channel(admin_addr).await);
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_micros();
    let keyspace = admin
        .create_keyspace(authed(
            token,
            pb::CreateKeyspaceRequest {
                name: "bench".into(),
                prefix: format!("bench{nonce}"),
                ..Default::default()
            },
        ))
        .await
        .expect("create keyspace")
        .into_inner()
        .id;
    let scopes = || vec!["invoices:*".to_owned(), "customers:read".to_owned()];
    admin
        .create_role(authed(
            token,
            pb::CreateRoleRequest {
                role: Some(pb::Role {
                    keyspace: keyspace.clone(),
                    name: common::ROLE.into(),
                    scopes: scopes(),
                    ..Default::default()
                }),
            },
        ))
        .await
        .expect("create role");
    let mut tasks = JoinSet::new();
    for w in 0..32 {
        let (mut admin, token, keyspace) = (admin.clone(), token.to_owned(), keyspace.clone());
        tasks.spawn(async move {
            let mut secrets = Vec::new();
            for i in (w..n).step_by(32) {
                let from_role = i % 10 == 0 && i / 10 < common::ROLE_HOLDERS;
                let req = pb::CreateKeyRequest {
                    owner_id: "acct_load".into(),
                    keyspace: keyspace.clone(),
                    scopes: if from_role { Vec::new() } else { scopes() },
                    roles: if from_role {
                        vec![common::ROLE.into()]
                    } else {
                        Vec::new()
                    },
                    ..Default::default()
                };
                let resp = admin.create_key(authed(&token, req)).await.expect("create");
                if secrets.len() < probes / 32 + 1 {
                    secrets.push(resp.into_inner().secret);
                }
            }
            secrets
        });
    }
    let mut all = Vec::with_capacity(n.min(probes));
    while let Some(s) = tasks.join_next().await {
        all.extend(s.expect("seed task"));
    }
    all.truncate(probes);
    (keyspace, all)
}

/// One VerifyStream per channel, `window` requests in flight on each.
async fn streams(
    channels: &[Channel],
    window: usize,
    secs: u64,
    keyspace: String,
    secrets: Arc<Vec<String>>,
) -> (f64, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = JoinSet::new();
    for (c, ch) in channels.iter().enumerate() {
        let (ch, secrets, keyspace) = (ch.clone(), secrets.clone(), keyspace.clone());
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
                            request: Some(verify_request(&secrets[n % secrets.len()], &keyspace)),
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
                .map_err(|e| format!("open stream: {e}"))?
                .into_inner();
            let mut lat = Vec::with_capacity(65_536);
            while let Some(a) = answers.message().await.map_err(|e| format!("{e}"))? {
                let at = sent.lock().expect("lock").pop_front().expect("in order");
                lat.push(at.elapsed());
                match a.result {
                    Some(pb::verify_stream_response::Result::Response(ref r))
                        if r.valid && r.code() == pb::VerifyCode::Valid => {}
                    other => return Err(format!("answer {}: {other:?}", a.id)),
                }
                credit.add_permits(1);
                if Instant::now() >= deadline {
                    break;
                }
            }
            sender.abort();
            Ok::<_, String>(lat)
        });
    }
    let mut all = Vec::new();
    while let Some(lat) = tasks.join_next().await {
        match lat.expect("stream") {
            Ok(lat) => all.extend(lat),
            Err(e) => wrong_answer("load: VerifyStream", &e),
        }
    }
    (all.len() as f64 / secs as f64, all)
}

/// What an open-loop phase measured.
struct OpenLoop {
    target: f64,
    achieved: f64,
    calls: usize,
    /// Calls that left more than 1 ms / 100 µs after their intended time.
    late_1ms: usize,
    late_100us: usize,
    /// From each call's intended send time to its checked answer.
    lat: Vec<Duration>,
}

/// Unary Verify at `rate` calls/s for `secs`, open loop. Calls have an
/// intended send time on a fixed schedule; a pacer thread (an OS thread,
/// with the kernel's fine-grained sleep rather than tokio's millisecond
/// timer) hands each one to the runtime when its time comes, round-robin
/// over the connections. Latency runs from the intended time, so a stall,
/// in the server or in the generator, counts against every call it
/// delayed (no coordinated omission). The achieved rate is calls answered
/// ÷ (last answer − first intended send).
async fn open_loop(conns: &[Conn], rate: f64, secs: u64, bodies: Arc<Bodies>) -> OpenLoop {
    let calls = (rate * secs as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let handle = tokio::runtime::Handle::current();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let conns = conns.to_vec();
    let uris: Vec<_> = conns.iter().map(|c| c.uri(bodies.rpc)).collect();
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::spawn(move || {
        for i in 0..calls {
            let at = start + interval.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let (mut conn, uri) = (
                conns[i % conns.len()].clone(),
                uris[i % conns.len()].clone(),
            );
            let (bodies, tx) = (bodies.clone(), tx.clone());
            handle.spawn(async move {
                let left = Instant::now();
                let body = bodies.bodies[i % bodies.bodies.len()].clone();
                let r = conn.call(bodies.rpc, &uri, body).await;
                let _ = tx.send((
                    at,
                    left,
                    Instant::now(),
                    r.map_err(|e| format!("#{i}: {e}")),
                ));
            });
        }
    });
    let (mut lat, mut late_1ms, mut late_100us) = (Vec::with_capacity(calls), 0, 0);
    let mut last = start;
    while let Some((at, left, done, r)) = rx.recv().await {
        if let Err(e) = r {
            wrong_answer("load: unary Verify, open loop", &e);
        }
        let late = left.saturating_duration_since(at);
        late_1ms += usize::from(late > Duration::from_millis(1));
        late_100us += usize::from(late > Duration::from_micros(100));
        lat.push(done - at);
        last = last.max(done);
        if lat.len() == calls {
            break;
        }
    }
    pacer.join().expect("pacer");
    OpenLoop {
        target: rate,
        achieved: calls as f64 / (last - start).as_secs_f64(),
        calls,
        late_1ms,
        late_100us,
        lat,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(name: &str, rps: f64, lat: Vec<Duration>) {
    println!("{name:<28} {rps:>10.0}/s  {}", Percentiles::new(lat).line());
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let keys = knob("LOAD_KEYS", 100_000) as usize;
    let s = Settings {
        secs: knob("LOAD_SECONDS", 2),
        rounds: knob("LOAD_ROUNDS", 5),
        conns: knob("LOAD_CONNECTIONS", 16) as usize,
        inflight: knob("LOAD_INFLIGHT", 16) as usize,
        window: knob("LOAD_WINDOW", 64) as usize,
        keys,
        probes: (knob("LOAD_PROBES", 100_000) as usize).clamp(1, keys.max(1)),
    };
    let seeding = Instant::now();
    let t = target(s.keys, s.probes).await;
    println!("seeded {} keys in {:.1?}", s.keys, seeding.elapsed());
    let (mut conns, mut channels) = (Vec::new(), Vec::new());
    for _ in 0..s.conns {
        conns.push(Conn::connect(&t.verify_addr).await);
        channels.push(channel(&t.verify_addr).await);
    }
    let (check, verify) = (Bodies::check(), Bodies::verify(&t.secrets, &t.keyspace));
    println!(
        "load: {} connections x {} in flight (streams: {} in flight each), \
         {} interleaved rounds of {}s per phase, {} keys, Verify over {} of them",
        s.conns,
        s.inflight,
        s.window,
        s.rounds,
        s.secs,
        s.keys,
        verify.bodies.len()
    );
    let (mut empty_rps, mut verify_rps, mut stream_rps, mut ratios) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut empty_lat, mut verify_lat, mut stream_lat) = (Vec::new(), Vec::new(), Vec::new());
    let mut distinct = 0;
    for _ in 0..s.rounds {
        let (e, lat, _) = closed_loop(&conns, s.inflight, s.secs, check.clone()).await;
        empty_lat.extend(lat);
        let (v, lat, d) = closed_loop(&conns, s.inflight, s.secs, verify.clone()).await;
        verify_lat.extend(lat);
        distinct = distinct.max(d);
        let (st, lat) = streams(
            &channels,
            s.window,
            s.secs,
            t.keyspace.clone(),
            t.secrets.clone(),
        )
        .await;
        stream_lat.extend(lat);
        ratios.push(v / e);
        empty_rps.push(e);
        verify_rps.push(v);
        stream_rps.push(st);
    }
    println!("every answer checked: grpc-status 0, SERVING / valid with VERIFY_CODE_VALID");
    let max = median(verify_rps.clone());
    let stream = median(stream_rps);
    report("empty RPC (health Check)", median(empty_rps), empty_lat);
    report("unary Verify", max, verify_lat);
    report("VerifyStream", stream, stream_lat);
    println!("unary Verify sent {distinct} distinct keys in a round");
    let ratio = median(ratios.clone());
    let rounds: Vec<_> = ratios.iter().map(|r| format!("{r:.3}")).collect();
    println!(
        "unary Verify / empty RPC, median of rounds = {ratio:.3}  (rounds: {})",
        rounds.join(" ")
    );

    let half = open_loop(&conns, max / 2.0, s.secs * 2, verify.clone()).await;
    let half_p99 = Percentiles::new(half.lat.clone()).at(0.99);
    println!(
        "unary Verify at half max, open loop: target {:.0}/s, achieved {:.0}/s, \
         {} calls; left late: {:.1} % over 100 µs, {:.2} % over 1 ms",
        half.target,
        half.achieved,
        half.calls,
        100.0 * half.late_100us as f64 / half.calls as f64,
        100.0 * half.late_1ms as f64 / half.calls as f64,
    );
    report("  from intended send time", half.achieved, half.lat.clone());

    let goals = [
        (
            "unary Verify / empty RPC",
            ratio >= MIN_RATIO,
            format!("{ratio:.3} (goal >= {MIN_RATIO})"),
        ),
        (
            "half-load p99",
            half_p99 <= MAX_HALF_LOAD_P99 && half.achieved >= 0.95 * half.target,
            format!(
                "{half_p99:.2?} at {:.0}/s of {:.0}/s (goal <= {MAX_HALF_LOAD_P99:?}, rate met)",
                half.achieved, half.target
            ),
        ),
        (
            "VerifyStream rate",
            stream >= MIN_STREAM_RATE,
            format!("{stream:.0}/s (goal >= {MIN_STREAM_RATE:.0})"),
        ),
    ];
    let mut missed = 0;
    for (name, met, detail) in &goals {
        println!(
            "goal {name:<26} {}  {detail}",
            if *met { "met   " } else { "MISSED" }
        );
        missed += usize::from(!met);
    }
    if missed > 0 {
        // exit skips destructors: stop the server first.
        drop((conns, channels, t));
        eprintln!("load: {missed} goal(s) missed (figures above)");
        std::process::exit(1);
    }
}
