//! Usage limits across three real replicas on one PostgreSQL.
//!
//! `scripts/bench limits` (starts a throwaway PostgreSQL). Three release
//! `keysmith serve` processes share one database; the load is round-robin
//! over them, LIMITS_WORKERS callers (24) in closed loop.
//!
//! 1. **Rate.** A named limit of LIMITS_RATE a second (2,000), burst equal,
//!    under more demand than that for LIMITS_SECONDS (10): admitted against
//!    allowed (`rate × elapsed + burst`), and the writes per second the
//!    limit cost the store (rows of `rate_buckets`, from PostgreSQL's own
//!    statistics: one per lease or give-back).
//! 2. **Credits.** A balance of LIMITS_CREDITS (20,000) under the same load
//!    until it is spent: admitted must equal the balance exactly; the
//!    writes per second on `credit_balances` and `credit_leases`.
//! 3. **Verify cost.** Unary Verify on one replica, raw h2 closed loop
//!    (`common::wire`), of a key with credits and two named limits (set
//!    high enough never to deny) against a key without: the ratio,
//!    interleaved for LIMITS_ROUNDS (3) rounds.
//!
//! Goals, checked at the end (a miss exits non-zero): overspend 0, rate
//! error ≤ 5 %, Verify with limits ≥ 0.90 of Verify without.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Server, authed, benching, channel, knob,
    wire::{Bodies, Conn, closed_loop},
};
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use sqlx::Connection;
use tonic::transport::Channel;

const MAX_RATE_ERROR: f64 = 0.05;
const MIN_RATIO: f64 = 0.90;

fn limit(name: &str, requests: u32, secs: i64) -> pb::NamedLimit {
    pb::NamedLimit {
        name: name.into(),
        requests,
        period: Some(keysmith::grpc::wkt::Duration {
            seconds: secs,
            nanos: 0,
        }),
        burst: 0,
    }
}

async fn create(
    admin: &KeyAdminClient<Channel>,
    token: &str,
    limits: Vec<pb::NamedLimit>,
    credits: Option<i64>,
) -> String {
    let req = pb::CreateKeyRequest {
        owner_id: "acct_bench".into(),
        scopes: vec!["customers:read".into(), "invoices:*".into()],
        restrictions: Some(pb::Restrictions {
            limits,
            credits: credits.map(|n| pb::CreditSettings {
                remaining: n,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    admin
        .clone()
        .create_key(authed(token, req))
        .await
        .expect("create key")
        .into_inner()
        .secret
}

/// Rows written to `tables` so far, by PostgreSQL's statistics.
async fn writes(url: &str, tables: &[&str]) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut conn)
        .await
        .expect("clear");
    let (n,): (i64,) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) AS BIGINT) \
         FROM pg_stat_user_tables WHERE relname = ANY($1)",
    )
    .bind(tables.iter().map(|t| t.to_string()).collect::<Vec<_>>())
    .fetch_one(&mut conn)
    .await
    .expect("stats");
    n
}

/// Round-robin Verify of `key` from `workers` callers until `until` or
/// until `stop_after` calls were admitted; (admitted, seconds).
async fn drive(
    clients: &[KeyVerifyClient<Channel>],
    key: &str,
    workers: usize,
    until: Instant,
) -> (u64, f64) {
    let admitted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let clients = clients.to_vec();
        let (key, admitted) = (key.to_owned(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < until {
                let mut c = clients[i % clients.len()].clone();
                i += 1;
                let req = pb::VerifyRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                let r = c.verify(req).await.expect("verify").into_inner();
                match r.code() {
                    pb::VerifyCode::Valid => {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                    pb::VerifyCode::RateLimited | pb::VerifyCode::UsageExceeded => {}
                    other => panic!("a wrong answer under load: {other:?}"),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    (
        admitted.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    )
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("limits: DATABASE_URL is not set; run scripts/bench limits");
        return;
    };
    let secs = knob("LIMITS_SECONDS", 10);
    let rate = knob("LIMITS_RATE", 2000) as u32;
    let credits = knob("LIMITS_CREDITS", 20_000) as i64;
    let workers = knob("LIMITS_WORKERS", 24) as usize;
    let rounds = knob("LIMITS_ROUNDS", 3);
    let (url, token) = common::migrated_database(&base).await;
    let servers: Vec<Server> = (0..3)
        .map(|_| Server::start(&["--database-url", &url], &[]))
        .collect();
    let mut clients = Vec::new();
    for s in &servers {
        clients.push(KeyVerifyClient::new(channel(&s.verify_addr).await));
    }
    let admin = KeyAdminClient::new(channel(&servers[0].admin_addr).await);
    let mut failed = Vec::new();

    // 1. A named limit across three replicas.
    let rated = create(&admin, &token, vec![limit("requests", rate, 1)], None).await;
    let before = writes(&url, &["rate_buckets"]).await;
    let (admitted, elapsed) = drive(
        &clients,
        &rated,
        workers,
        Instant::now() + Duration::from_secs(secs),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let bucket_writes = writes(&url, &["rate_buckets"]).await - before;
    let allowed = f64::from(rate) * elapsed + f64::from(rate);
    let error = admitted as f64 / allowed - 1.0;
    println!(
        "rate limit {rate}/s, 3 replicas, {elapsed:.1} s: admitted {admitted}, allowed {allowed:.0} ({:+.2} %)",
        error * 100.0
    );
    println!(
        "  store writes for the hot key: {:.1}/s ({bucket_writes} rows of rate_buckets)",
        bucket_writes as f64 / elapsed
    );
    if !(-MAX_RATE_ERROR..=MAX_RATE_ERROR).contains(&error) {
        failed.push(format!(
            "rate error {:+.2} % (goal ±{:.0} %)",
            error * 100.0,
            MAX_RATE_ERROR * 100.0
        ));
    }

    // 2. A balance across three replicas.
    let paid = create(&admin, &token, vec![], Some(credits)).await;
    let before = writes(&url, &["credit_balances", "credit_leases"]).await;
    let (spent, elapsed) = drive(
        &clients,
        &paid,
        workers,
        Instant::now() + Duration::from_secs(secs),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let credit_writes = writes(&url, &["credit_balances", "credit_leases"]).await - before;
    println!(
        "credits {credits}, 3 replicas, {elapsed:.1} s: admitted {spent} (overspend {})",
        spent as i64 - credits
    );
    println!(
        "  store writes for the hot key: {:.1}/s ({credit_writes} rows of credit_balances and credit_leases)",
        credit_writes as f64 / elapsed
    );
    if spent as i64 > credits {
        failed.push(format!("overspent by {}", spent as i64 - credits));
    }

    // 3. What limits cost Verify, on one replica.
    let plain = create(&admin, &token, vec![], None).await;
    let limited = create(
        &admin,
        &token,
        vec![
            limit("requests", 1_000_000, 1),
            limit("tokens", 1_000_000, 1),
        ],
        Some(1_000_000_000_000),
    )
    .await;
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(Conn::connect(&servers[0].verify_addr).await);
    }
    let (without, with) = (
        Bodies::verify(std::slice::from_ref(&plain), ""),
        Bodies::verify(std::slice::from_ref(&limited), ""),
    );
    // Warm both (the limited key's first call leases).
    let _ = closed_loop(&conns, 8, 1, with.clone()).await;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(closed_loop(&conns, 8, secs.min(5), without.clone()).await.0);
        b.push(closed_loop(&conns, 8, secs.min(5), with.clone()).await.0);
    }
    let (sa, sb): (f64, f64) = (a.iter().sum(), b.iter().sum());
    let ratio = sb / sa;
    println!(
        "unary Verify, one replica: without limits {:.0}/s, with credits and two named limits {:.0}/s: ratio {ratio:.3} (rounds {:?})",
        sa / rounds as f64,
        sb / rounds as f64,
        a.iter()
            .zip(&b)
            .map(|(x, y)| format!("{:.3}", y / x))
            .collect::<Vec<_>>()
    );
    if ratio < MIN_RATIO {
        failed.push(format!(
            "Verify with limits at {ratio:.3} of without (goal ≥ {MIN_RATIO})"
        ));
    }
    drop(servers);
    if !failed.is_empty() {
        eprintln!("limits: goals missed: {}", failed.join("; "));
        std::process::exit(1);
    }
}
