//! The Verify path in process: key parse + checksum, SHA-256, index lookup
//! at 1M keys, and the whole decision. `scripts/bench verify`.
//!
//! With keyspaces and roles in use: every key is in keyspace `ks_bench`
//! (prefix `bench`, so keys read `bench_sk_live_…`), every other key draws
//! its scopes from a role, and the decision binds the call to that keyspace
//! and asks one scope of all-of and an any-of group.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keysmith::{
    domain::{
        ApiKey, Environment, KeyName, KeyPrefix, KeyRecord, KeyType, KeyspaceId, OwnerId, RoleName,
        Scope, Timestamp, api_key, mono_nanos,
    },
    index::KeyIndex,
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

criterion_group!(name = verify_path; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(verify_path);
