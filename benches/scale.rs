//! Scale: cold start to SERVING, resident memory per key, and unary
//! throughput, with N keys (SCALE_KEYS, default 1,000,000) in PostgreSQL.
//!
//! 1. N keys are bulk-inserted once with `UNNEST` (keys generated here, like
//!    CreateKey would: OS CSPRNG, SHA-256 of the first 51 characters).
//! 2. For each variant (below), a `keysmith serve` on an empty database;
//!    its RSS once SERVING is the baseline.
//! 3. A fresh `keysmith serve` on the N keys: the bench times spawn →
//!    health SERVING and reads its RSS: (RSS − baseline) ÷ N is the index's
//!    cost per key.
//! 4. SCALE_TOUCH keys (default 100,000) are verified once each, which
//!    gives each its usage counters; the RSS growth ÷ SCALE_TOUCH is the
//!    extra cost of a key in use (with the usage flush held off, since its
//!    transient memory would blur the figure).
//! 5. Throughput in the same process: SCALE_ROUNDS (3) interleaved rounds
//!    of SCALE_SECONDS (2) of the empty RPC and of unary Verify over the
//!    touched keys, from the checked raw-h2 client of the load bench
//!    (16 connections × 16 in flight); then RSS again, after that load.
//!
//! Variants compare builds or allocator settings in one run, on the same
//! seeded database: SCALE_VARIANTS is a `;`-separated list, each a
//! whitespace-separated list of NAME=VALUE environment settings for the
//! server, where KEYSMITH_BIN=path picks another binary. An empty entry is
//! this build as is. Example:
//!   SCALE_VARIANTS='; MIMALLOC_PURGE_DELAY=0; KEYSMITH_BIN=/tmp/sys/keysmith'
//!
//! Budgets, checked for every variant after all are printed (non-zero exit
//! when one is missed): RSS per key loaded ≤ SCALE_MAX_BYTES_PER_KEY (250),
//! extra per key in use ≤ SCALE_MAX_BYTES_PER_KEY_IN_USE (400), cold start
//! ≤ SCALE_MAX_COLD_START_SECS (10).
//!
//! `scripts/bench scale` (starts a throwaway PostgreSQL).

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{
    Server, benching, fresh_database, knob,
    wire::{Bodies, Conn, closed_loop},
};
use tokio::task::JoinSet;

/// One server configuration to measure.
struct Variant {
    label: String,
    bin: Option<String>,
    env: Vec<(String, String)>,
}

fn variants() -> Vec<Variant> {
    let spec = std::env::var("SCALE_VARIANTS").unwrap_or_default();
    spec.split(';')
        .map(|v| {
            let mut variant = Variant {
                label: if v.trim().is_empty() {
                    "this build".into()
                } else {
                    v.trim().into()
                },
                bin: None,
                env: Vec::new(),
            };
            for setting in v.split_whitespace() {
                let (k, val) = setting
                    .split_once('=')
                    .unwrap_or_else(|| panic!("SCALE_VARIANTS: `{setting}` is not NAME=VALUE"));
                if k == "KEYSMITH_BIN" {
                    variant.bin = Some(val.into());
                } else {
                    variant.env.push((k.into(), val.into()));
                }
            }
            variant
        })
        .collect()
}

impl Variant {
    fn start(&self, args: &[&str]) -> Server {
        let env: Vec<_> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Server::start_bin(self.bin.as_deref(), args, &env)
    }
}

/// What one variant measured.
struct Figures {
    cold_start: Duration,
    baseline: u64,
    loaded: u64,
    touched: u64,
    after_load: u64,
    per_key: f64,
    per_used: f64,
    empty_rps: f64,
    verify_rps: f64,
    ratio: f64,
}

/// Verifies each secret once, 16 connections × 16 in flight; every answer
/// is checked (valid, VERIFY_CODE_VALID), or the run aborts.
async fn touch(conns: &[Conn], bodies: &Arc<Bodies>) {
    let mut tasks = JoinSet::new();
    for w in 0..256usize {
        let (mut conn, bodies) = (conns[w % conns.len()].clone(), bodies.clone());
        tasks.spawn(async move {
            let uri = conn.uri(bodies.rpc);
            for (i, body) in bodies.bodies.iter().enumerate().skip(w).step_by(256) {
                if let Err(e) = conn.call(bodies.rpc, &uri, body.clone()).await {
                    common::wire::wrong_answer("scale: touching keys", &format!("#{i}: {e}"));
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("touch task");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn measure(
    v: &Variant,
    empty_url: &str,
    url: &str,
    n: usize,
    verify: &Arc<Bodies>,
) -> Figures {
    let empty = v.start(&["--database-url", empty_url]);
    empty.wait_serving(Duration::from_secs(30)).await;
    let baseline = empty.rss_bytes();
    drop(empty);

    let spawned = Instant::now();
    // No usage flush during the measurement: a flush of 100,000 keys'
    // counts holds tens of MiB for a moment, which the allocator may keep.
    let server = v.start(&["--database-url", url, "--usage-flush-interval", "1h"]);
    server.wait_serving(Duration::from_secs(600)).await;
    let cold_start = spawned.elapsed();
    let loaded = server.rss_bytes();

    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(Conn::connect(&server.verify_addr).await);
    }
    touch(&conns, verify).await;
    let touched = server.rss_bytes();

    let (secs, rounds) = (knob("SCALE_SECONDS", 2), knob("SCALE_ROUNDS", 3));
    let check = Bodies::check();
    let (mut empty_rps, mut verify_rps, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (e, _, _) = closed_loop(&conns, 16, secs, check.clone()).await;
        let (r, _, _) = closed_loop(&conns, 16, secs, verify.clone()).await;
        empty_rps.push(e);
        verify_rps.push(r);
        ratios.push(r / e);
    }
    let after_load = server.rss_bytes();
    let keep = verify.bodies.len().max(1);
    Figures {
        cold_start,
        baseline,
        loaded,
        touched,
        after_load,
        per_key: loaded.saturating_sub(baseline) as f64 / n as f64,
        per_used: touched.saturating_sub(loaded) as f64 / keep as f64,
        empty_rps: median(empty_rps),
        verify_rps: median(verify_rps),
        ratio: median(ratios),
    }
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("scale: DATABASE_URL is not set; run scripts/bench scale");
        std::process::exit(2);
    };
    let n = knob("SCALE_KEYS", 1_000_000) as usize;
    let keep = (knob("SCALE_TOUCH", 100_000) as usize).clamp(1, n.max(1));
    let max_per_key = knob("SCALE_MAX_BYTES_PER_KEY", 250) as f64;
    let max_per_used = knob("SCALE_MAX_BYTES_PER_KEY_IN_USE", 400) as f64;
    let max_cold = Duration::from_secs(knob("SCALE_MAX_COLD_START_SECS", 10));
    let variants = variants();

    let (empty_url, url) = (fresh_database(&base).await, fresh_database(&base).await);
    // The first start migrates each database.
    for u in [&empty_url, &url] {
        Server::start_bin(variants[0].bin.as_deref(), &["--database-url", u], &[])
            .wait_serving(Duration::from_secs(30))
            .await;
    }
    let started = Instant::now();
    let secrets = common::seed_postgres(&url, n, keep).await;
    println!("seeded {n} keys in {:.1?}", started.elapsed());
    let verify = Bodies::verify(&secrets, common::KEYSPACE);
    drop(secrets);

    let mut results = Vec::new();
    for v in &variants {
        let f = measure(v, &empty_url, &url, n, &verify).await;
        println!("scale: {n} keys in PostgreSQL, variant: {}", v.label);
        println!(
            "  cold start, spawn -> SERVING       {:>10.2?}",
            f.cold_start
        );
        println!(
            "  RSS, empty index                   {:>10.1} MiB",
            mib(f.baseline)
        );
        println!(
            "  RSS, {n} keys loaded          {:>10.1} MiB",
            mib(f.loaded)
        );
        println!(
            "  RSS per key, loaded                {:>10.0} bytes",
            f.per_key
        );
        println!(
            "  RSS after verifying {keep} keys  {:>10.1} MiB",
            mib(f.touched)
        );
        println!(
            "  RSS per key in use, extra          {:>10.0} bytes",
            f.per_used
        );
        println!(
            "  empty RPC, median of rounds        {:>10.0}/s",
            f.empty_rps
        );
        println!(
            "  unary Verify, median of rounds     {:>10.0}/s",
            f.verify_rps
        );
        println!("  unary Verify / empty RPC           {:>10.3}", f.ratio);
        println!(
            "  RSS after that load                {:>10.1} MiB",
            mib(f.after_load)
        );
        results.push((v, f));
    }

    println!();
    println!(
        "| variant | cold start | bytes/key loaded | extra bytes/key in use | RSS after load | empty RPC/s | Verify/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (v, f) in &results {
        println!(
            "| {} | {:.2} s | {:.0} | {:.0} | {:.0} MiB | {:.0} | {:.0} | {:.3} |",
            v.label,
            f.cold_start.as_secs_f64(),
            f.per_key,
            f.per_used,
            mib(f.after_load),
            f.empty_rps,
            f.verify_rps,
            f.ratio
        );
    }
    let mut missed = Vec::new();
    for (v, f) in &results {
        if f.per_key > max_per_key {
            missed.push(format!(
                "{}: {:.0} bytes per key loaded (budget {max_per_key:.0})",
                v.label, f.per_key
            ));
        }
        if f.per_used > max_per_used {
            missed.push(format!(
                "{}: {:.0} extra bytes per key in use (budget {max_per_used:.0})",
                v.label, f.per_used
            ));
        }
        if f.cold_start > max_cold {
            missed.push(format!(
                "{}: cold start {:.2?} (budget {max_cold:?})",
                v.label, f.cold_start
            ));
        }
    }
    if !missed.is_empty() {
        eprintln!("scale: BUDGET MISSED");
        for m in &missed {
            eprintln!("  {m}");
        }
        std::process::exit(1);
    }
    println!("scale: every variant within budget");
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}
