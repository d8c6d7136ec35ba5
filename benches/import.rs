//! Adoption at scale: 1,000,000 keys imported through `keysmith key
//! import` into replica A on PostgreSQL, while unary Verify runs against
//! A, and replica B follows the change log.
//!
//! Each file holds the SHA-256 of 1M keys of a legacy format (`acme_live_`
//! and 32 hex digits), as a homemade table would. Two phases:
//! 1. the import alone: its wall time, from the CLI's start to its exit;
//! 2. another 100,000 keys while unary Verify runs flat out against A
//!    (closed loop from the bench, on native keys), against its idle
//!    throughput. A serving Verify paces imports to a fifth of the time
//!    (`--import-duty`), so this phase is slower by design.
//!
//! After each, whether B holds the keys when the CLI exits (a sample of
//! 1,000 raw keys verified on B at once), and how long until B knows the
//! last one.
//!
//! Goals: import ≤ 60 s; Verify during the import ≥ 0.8 of idle. The bench
//! exits non-zero when one is missed, and aborts on a wrong answer.
//!
//! Run with `scripts/bench import` (starts a throwaway PostgreSQL).
//! IMPORT_KEYS changes the first count, IMPORT_LOADED_KEYS the second.

mod common;

use std::{
    io::Write,
    process::Command,
    time::{Duration, Instant},
};

use common::{Server, authed, benching, knob, wire};
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use sha2::{Digest, Sha256};

const IMPORT_GOAL: Duration = Duration::from_secs(60);
const RATIO_GOAL: f64 = 0.8;
const WINDOW_SECS: u64 = 3;

fn old_key(n: u64) -> String {
    format!(
        "acme_live_{:032x}",
        u128::from(n) * 0x9e37_79b9_7f4a_7c15 + 1
    )
}

async fn verify_rate(conns: &[wire::Conn], bodies: &std::sync::Arc<wire::Bodies>) -> f64 {
    let (rate, _, _) = wire::closed_loop(conns, 8, WINDOW_SECS, bodies.clone()).await;
    rate
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("import: DATABASE_URL is not set; run scripts/bench import");
        return;
    };
    let n = knob("IMPORT_KEYS", 1_000_000);
    // Under load the server paces imports (`--import-duty`): fewer keys.
    let m = knob("IMPORT_LOADED_KEYS", n / 10);
    let (url, token) = common::migrated_database(&base).await;
    let a = Server::start(&["--database-url", &url], &[]);
    let b = Server::start(&["--database-url", &url], &[]);
    a.wait_serving(Duration::from_secs(30)).await;
    b.wait_serving(Duration::from_secs(30)).await;
    let mut admin = KeyAdminClient::new(common::channel(&a.admin_addr).await);
    let ks = admin
        .create_keyspace(authed(
            &token,
            pb::CreateKeyspaceRequest {
                name: "Acme".into(),
                prefix: "acme".into(),
                defaults: None,
                scopes: vec![],
                leak_response: None,
                legacy_formats: vec![pb::LegacyFormat {
                    name: "v1".into(),
                    prefix: "acme_live_".into(),
                    alphabet: pb::LegacyAlphabet::Hex.into(),
                    min_length: 32,
                    max_length: 32,
                    ..Default::default()
                }],
            },
        ))
        .await
        .expect("keyspace")
        .into_inner()
        .id;

    // Native keys for the Verify load.
    let mut secrets = Vec::new();
    for i in 0..200 {
        let r = admin
            .create_key(authed(
                &token,
                pb::CreateKeyRequest {
                    owner_id: format!("acct_{i}"),
                    scopes: vec!["customers:read".into(), "invoices:*".into()],
                    ..Default::default()
                },
            ))
            .await
            .expect("create")
            .into_inner();
        secrets.push(r.secret);
    }
    let bodies = wire::Bodies::verify(&secrets, "");
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(wire::Conn::connect(&a.verify_addr).await);
    }

    let dir = tempfile::tempdir().expect("dir");
    let idle = verify_rate(&conns, &bodies).await;
    println!("unary Verify, idle                         {idle:>10.0}/s");
    let mut failed = false;
    // Phase 1: the import alone. Phase 2: more keys while Verify runs
    // flat out against the same server.
    for (phase, loaded) in [(0u64, false), (1, true)] {
        let path = dir.path().join(format!("keys-{phase}.jsonl"));
        let (from, to) = if loaded { (n, n + m) } else { (0, n) };
        let count = to - from;
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("file"));
            for i in from..to {
                let hash = hex::encode(Sha256::digest(old_key(i).as_bytes()));
                writeln!(
                    f,
                    r#"{{"hash":"{hash}","owner_id":"acct_{}","scopes":["orders:read"],"external_id":"u{i}"}}"#,
                    i % 5000
                )
                .expect("write");
            }
        }
        // Idle is measured again on each side of the loaded phase: on a
        // shared machine a neighbour's load moves both figures alike.
        let idle_before = if loaded {
            verify_rate(&conns, &bodies).await
        } else {
            idle
        };
        let started = Instant::now();
        let mut cli = Command::new(env!("CARGO_BIN_EXE_keysmith"))
            .args([
                "key",
                "import",
                path.to_str().expect("path"),
                "--keyspace",
                &ks,
            ])
            .env("KEYSMITH_ADMIN_ADDR", &a.admin_addr)
            .env("KEYSMITH_ADMIN_TOKEN", &token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("keysmith key import");
        let mut during = Vec::new();
        let status = if loaded {
            loop {
                if let Some(s) = cli.try_wait().expect("wait") {
                    break s;
                }
                during.push(verify_rate(&conns, &bodies).await);
            }
        } else {
            cli.wait().expect("wait")
        };
        let took = started.elapsed();
        let mut out = String::new();
        std::io::Read::read_to_string(cli.stdout.as_mut().expect("stdout"), &mut out)
            .expect("read");
        if !status.success() || !out.contains(&format!("imported     {count}")) {
            wire::wrong_answer("import", &out);
        }
        let what = if loaded { "under Verify load" } else { "alone" };
        println!(
            "import of {count} keys through the CLI, {what:<18} {:>6.1} s ({:.0} keys/s)",
            took.as_secs_f64(),
            count as f64 / took.as_secs_f64()
        );
        if loaded {
            let idle_after = verify_rate(&conns, &bodies).await;
            let idle = (idle_before + idle_after) / 2.0;
            let mean = during.iter().sum::<f64>() / during.len().max(1) as f64;
            let worst = during.iter().copied().fold(f64::INFINITY, f64::min);
            let ratio = mean / idle;
            println!(
                "unary Verify idle just before and after it {idle_before:>10.0}/s, {idle_after:.0}/s"
            );
            println!(
                "unary Verify during it (mean of {} windows) {mean:>10.0}/s  ({ratio:.2} of that idle; worst window {:.2})",
                during.len(),
                worst / idle
            );
            if ratio < RATIO_GOAL {
                eprintln!("import: Verify fell below {RATIO_GOAL} of idle");
                failed = true;
            }
        } else if took > IMPORT_GOAL {
            eprintln!("import: missed the goal of {} s", IMPORT_GOAL.as_secs());
            failed = true;
        }
        // B, the moment the command ended: a sample, then the last key.
        let mut on_b = KeyVerifyClient::new(common::channel(&b.verify_addr).await);
        let code = |key: String| pb::VerifyRequest {
            key,
            ..Default::default()
        };
        let step = (count as usize / 1000).max(1);
        let (mut known, mut sampled) = (0, 0);
        for i in (from..to).step_by(step) {
            let r = on_b
                .verify(code(old_key(i)))
                .await
                .expect("verify")
                .into_inner();
            known += usize::from(r.code() == pb::VerifyCode::Valid);
            sampled += 1;
        }
        let ended = Instant::now();
        loop {
            let r = on_b
                .verify(code(old_key(to - 1)))
                .await
                .expect("verify")
                .into_inner();
            if r.code() == pb::VerifyCode::Valid {
                break;
            }
            if ended.elapsed() > Duration::from_secs(120) {
                wire::wrong_answer("replica B", "never learned the last key");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!(
            "replica B when the CLI ended               {known}/{sampled} sampled keys known; the last key {} ms later",
            ended.elapsed().as_millis()
        );
    }
    drop((a, b));
    if failed {
        std::process::exit(1);
    }
}
