//! Scale: cold start to SERVING and resident memory per key, with N keys
//! (SCALE_KEYS, default 1,000,000) in PostgreSQL.
//!
//! 1. A `keysmith serve` on an empty database migrates it; its RSS once
//!    SERVING is the baseline.
//! 2. N keys are bulk-inserted with `UNNEST` (keys generated here, like
//!    CreateKey would: OS CSPRNG, SHA-256 of the first 51 characters).
//! 3. A fresh `keysmith serve` starts; the bench times spawn → health SERVING
//!    and reads its RSS: (RSS − baseline) ÷ N is the index's cost per key.
//! 4. SCALE_TOUCH keys (default 100,000) are verified once each, which
//!    gives each its usage counters; the RSS growth ÷ SCALE_TOUCH is the
//!    extra cost of a key in use (with the usage flush held off, since its
//!    transient memory would blur the figure).
//!
//! `scripts/bench scale` (starts a throwaway PostgreSQL).

mod common;

use std::time::{Duration, Instant};

use common::{Server, benching, channel, fresh_database, knob};
use keysmith::grpc::pb::{self, key_verify_client::KeyVerifyClient};
use tokio::task::JoinSet;

/// Verifies each secret once, 16 connections × 16 in flight; all must be valid.
async fn touch(addr: &str, secrets: Vec<String>) {
    let secrets = std::sync::Arc::new(secrets);
    let mut tasks = JoinSet::new();
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(channel(addr).await);
    }
    for w in 0..256usize {
        let ch = conns[w % 16].clone();
        let secrets = secrets.clone();
        tasks.spawn(async move {
            let mut client = KeyVerifyClient::new(ch);
            for key in secrets.iter().skip(w).step_by(256) {
                let req = pb::VerifyRequest {
                    key: key.clone(),
                    ..Default::default()
                };
                let resp = client.verify(req).await.expect("verify").into_inner();
                assert!(resp.valid, "a seeded key verifies");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("touch task");
    }
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("scale: DATABASE_URL is not set; run scripts/bench scale");
        return;
    };
    let n = knob("SCALE_KEYS", 1_000_000) as usize;
    let keep = (knob("SCALE_TOUCH", 100_000) as usize).min(n);
    let url = fresh_database(&base).await;
    let db = ["--database-url", url.as_str()];

    let empty = Server::start(&db, &[]);
    empty.wait_serving(Duration::from_secs(30)).await;
    let baseline = empty.rss_bytes();
    drop(empty);

    let started = Instant::now();
    let secrets = common::seed_postgres(&url, n, keep).await;
    println!("seeded {n} keys in {:.1?}", started.elapsed());

    let spawned = Instant::now();
    // No usage flush during the measurement: a flush of 100,000 keys'
    // counts holds tens of MiB for a moment, which the allocator may keep.
    let server = Server::start(&[db[0], db[1], "--usage-flush-interval", "1h"], &[]);
    server.wait_serving(Duration::from_secs(600)).await;
    let cold_start = spawned.elapsed();
    let loaded = server.rss_bytes();
    let per_key = (loaded.saturating_sub(baseline)) as f64 / n as f64;

    touch(&server.verify_addr, secrets).await;
    let touched = server.rss_bytes();
    let per_used = (touched.saturating_sub(loaded)) as f64 / keep.max(1) as f64;

    println!("scale: {n} keys in PostgreSQL");
    println!("cold start, spawn -> SERVING     {cold_start:>10.2?}");
    println!(
        "RSS, empty index                 {:>10.1} MiB",
        mib(baseline)
    );
    println!("RSS, {n} keys loaded       {:>10.1} MiB", mib(loaded));
    println!("RSS per key, loaded              {per_key:>10.0} bytes");
    println!("RSS after verifying {keep} keys {:>10.1} MiB", mib(touched));
    println!("RSS per key in use, extra        {per_used:>10.0} bytes");
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
