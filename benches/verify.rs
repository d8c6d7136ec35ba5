//! The Verify path in process: key parse + checksum, SHA-256, index lookup
//! at 1M keys, and the whole decision. `scripts/bench verify`.
//!
//! With keyspaces and roles in use: every key is in keyspace `ks_bench`
//! (prefix `bench`, so keys read `bench_sk_live_…`), every other key draws
//! its scopes from a role, and the decision binds the call to that keyspace
//! and asks one scope of all-of and an any-of group.

use std::{
    hint::black_box,
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use keysmith::{
    config::DbConfig,
    domain::{
        ApiKey, Environment, KeyName, KeyPrefix, KeyRecord, KeyType, KeyspaceId, OwnerId, RoleName,
        Scope, Timestamp, api_key, mono_nanos,
    },
    domain::{
        Clock,
        quota::{LimitName, Limits, NamedLimit, Subject},
        restriction::RateLimit,
    },
    index::KeyIndex,
    limits::{Charge, Charges, Costs, Limiter, OwnerQuota, Round},
    store::{NewAuditEvent, NewBalance, Owner},
    usage::Recorder,
    verify::{self, Request},
};
use sha2::{Digest, Sha256};

/// 1M keys under `cargo bench`; a few under `cargo test --all-targets`,
/// which runs each benchmark once to check that it works.
fn key_count() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        2048
    }
}

const KEYSPACE: &str = "ks_bench";

/// A key of `ks_bench`: its own scopes, or (`from_role`) the same scopes
/// through role `billing-reader`.
fn record(key: &ApiKey, from_role: bool) -> KeyRecord {
    let scopes = vec![
        Scope::parse("invoices:*").expect("scope"),
        Scope::parse("customers:read").expect("scope"),
    ];
    let owner = OwnerId::parse("acct_bench").expect("owner");
    let name = KeyName::parse("bench").expect("name");
    let base = KeyRecord::new(key, owner, name, Vec::new(), Timestamp::now());
    let keyspace_id = KEYSPACE.parse::<KeyspaceId>().expect("keyspace id");
    if from_role {
        KeyRecord {
            keyspace_id,
            roles: vec![RoleName::parse("billing-reader").expect("role")],
            role_scopes: scopes,
            ..base
        }
    } else {
        KeyRecord {
            keyspace_id,
            scopes,
            ..base
        }
    }
}

fn benches(c: &mut Criterion) {
    let index = KeyIndex::default();
    let mut probes = Vec::new();
    let keys = key_count();
    let prefix = KeyPrefix::parse("bench").expect("prefix");
    for i in 0..keys {
        let key =
            ApiKey::generate_in(Some(prefix), KeyType::Secret, Environment::Live).expect("rng");
        index.upsert(&record(&key, i % 2 == 1));
        if i % (keys / 1024) == 0 {
            probes.push(key);
        }
    }
    index.mark_ready();
    let secrets: Vec<String> = probes
        .iter()
        .map(|k| k.expose_secret().to_owned())
        .collect();
    let hashes: Vec<_> = probes.iter().map(ApiKey::hash).collect();
    let required = vec!["customers:read".to_owned()];
    let any_of = vec![vec![
        "invoices:read".to_owned(),
        "invoices:admin".to_owned(),
    ]];
    let now = Timestamp::now();
    let usage = Recorder::default();

    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % 1024;
        i
    };
    c.bench_function("parse+checksum+hash (63-byte keyspace key)", |b| {
        b.iter(|| api_key::parse(black_box(&secrets[next()])))
    });
    // What is hashed: the key without its 6-character checksum. A bare key
    // hashes 51 bytes (one SHA-256 block); a `bench_` key 57 (two blocks).
    let hashed = secrets[0].len() - 6;
    c.bench_function("sha256 51 bytes (bare key, one block)", |b| {
        b.iter(|| Sha256::digest(black_box(&secrets[0].as_bytes()[hashed - 51..hashed])))
    });
    c.bench_function("sha256 57 bytes (bench_ key, two blocks)", |b| {
        b.iter(|| Sha256::digest(black_box(&secrets[0].as_bytes()[..hashed])))
    });
    c.bench_function("keyspace scope lookup", |b| {
        b.iter(|| index.keyspace_scope(black_box(KEYSPACE)))
    });
    c.bench_function("decide only (any-of, roles)", |b| {
        let entries: Vec<_> = hashes
            .iter()
            .map(|h| index.get(h).expect("entry"))
            .collect();
        let mut j = 0usize;
        b.iter(|| {
            j = (j + 1) % entries.len();
            let req = Request {
                required_scopes: &required,
                required_any: &any_of,
                ..Default::default()
            };
            verify::decide(black_box(&entries[j]), &req, now).code
        })
    });
    c.bench_function("index lookup, 1M keys", |b| {
        b.iter(|| index.get(black_box(&hashes[next()])))
    });
    c.bench_function(
        "full decision: keyspace, parse, lookup, decide (roles, any-of)",
        |b| {
            b.iter(|| {
                let req = Request {
                    required_scopes: &required,
                    required_any: &any_of,
                    keyspaces: index.keyspace_scope(black_box(KEYSPACE)),
                    ..Default::default()
                };
                let key = black_box(&secrets[next()]);
                verify::verify(&index, &usage, key, &req, now, mono_nanos)
                    .decision
                    .code
            })
        },
    );
}

/// An owner with credits and two named limits, its pools primed with
/// blocks of a million: what a Verify of a limited key adds to the
/// decision, with no lease on the measured path.
fn limited() -> (
    tokio::runtime::Runtime,
    Arc<Limiter>,
    Arc<OwnerQuota>,
    tempfile::TempDir,
) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (limiter, quota) = rt.block_on(async {
        let db = DbConfig {
            database_url: None,
            data_dir: dir.path().to_owned(),
        };
        let store = keysmith::app::open_store(&db, true).await.expect("store");
        let rate = |n: &str| NamedLimit {
            name: LimitName::parse(n).expect("name"),
            rate: RateLimit::new(1_000_000, Duration::from_secs(1), 1_000_000).expect("rate"),
        };
        let owner = Owner {
            id: OwnerId::parse("acct_bench").expect("owner"),
            metadata: Default::default(),
            limits: Limits::new(vec![rate("requests"), rate("tokens")]).expect("limits"),
            credits: true,
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            version: 1,
        };
        let balance = NewBalance {
            subject: "owner:acct_bench".into(),
            remaining: 1_000_000_000_000,
            policy: Default::default(),
        };
        let audit = NewAuditEvent {
            at: Timestamp::now(),
            actor: "bench".into(),
            action: "owner.updated",
            key_id: None,
            owner_id: None,
            reason: None,
            changes: serde_json::Value::Null,
            request_id: None,
        };
        store
            .put_owner(&owner, Some(&balance), &audit)
            .await
            .expect("owner");
        let limiter = Arc::new(Limiter::new(store, "bench".into(), Clock::system()));
        limiter.put_owner(&owner);
        let quota = limiter.owner("acct_bench").expect("quota");
        (limiter, quota)
    });
    (rt, limiter, quota, dir)
}

/// Fills every pool the charge needs with a block of a million.
fn prime(rt: &tokio::runtime::Runtime, limiter: &Limiter, charges: &Charges<'_>) {
    loop {
        match limiter.charge(
            charges,
            &Costs::default(),
            Round::First,
            Timestamp::now().as_millis(),
        ) {
            Charge::Lease(pools) => {
                let big = pools.into_iter().map(|(p, _)| (p, 1_000_000)).collect();
                assert!(rt.block_on(limiter.lease(big)), "lease");
            }
            Charge::Paid(_) => return,
            // The bucket is spent until it earns more (a million a second):
            // wait, off the clock.
            Charge::Denied(_, _) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn limits_bench(c: &mut Criterion) {
    let (rt, limiter, quota, _dir) = limited();
    let subject = Subject::Owner("acct_bench".into());
    let pools = limiter.pools_of(&quota.pools, &subject, &quota.limits, quota.credits);
    let charges = Charges {
        key: None,
        owner: Some(pools),
    };
    prime(&rt, &limiter, &charges);
    c.bench_function("limits charge: credits and two named limits", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let now_ms = Timestamp::now().as_millis();
                let started = Instant::now();
                let mut done = 0;
                while done < left {
                    if !matches!(
                        limiter.charge(&charges, &Costs::default(), Round::First, now_ms),
                        Charge::Paid(_)
                    ) {
                        break;
                    }
                    done += 1;
                }
                spent += started.elapsed();
                left -= done;
                if left > 0 {
                    // A block ran out: lease the next one, off the clock.
                    prime(&rt, &limiter, &charges);
                }
            }
            spent
        })
    });
}

criterion_group!(name = limits_path; config = Criterion::default().sample_size(50); targets = limits_bench);
criterion_group!(name = verify_path; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(verify_path, limits_path);
