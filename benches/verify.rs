//! The Verify path in process: key parse + checksum, SHA-256, index lookup
//! at 1M keys, and the whole decision. `scripts/bench verify`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keysmith::{
    domain::{
        ApiKey, Environment, KeyName, KeyRecord, KeyType, OwnerId, Scope, Timestamp, api_key,
        mono_nanos,
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

fn record(key: &ApiKey) -> KeyRecord {
    let scopes = vec![
        Scope::parse("invoices:*").expect("scope"),
        Scope::parse("customers:read").expect("scope"),
    ];
    let owner = OwnerId::parse("acct_bench").expect("owner");
    let name = KeyName::parse("bench").expect("name");
    KeyRecord::new(key, owner, name, scopes, Timestamp::now())
}

fn benches(c: &mut Criterion) {
    let index = KeyIndex::default();
    let mut probes = Vec::new();
    let keys = key_count();
    for i in 0..keys {
        let key = ApiKey::generate(KeyType::Secret, Environment::Live).expect("rng");
        index.upsert(&record(&key));
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
    let required = vec!["invoices:read".to_owned()];
    let now = Timestamp::now();
    let usage = Recorder::default();

    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) % 1024;
        i
    };
    c.bench_function("parse+checksum+hash (57-byte key, 51 hashed)", |b| {
        b.iter(|| api_key::parse(black_box(&secrets[next()])))
    });
    c.bench_function("sha256 51 bytes (one block)", |b| {
        b.iter(|| Sha256::digest(black_box(&secrets[0].as_bytes()[..51])))
    });
    c.bench_function("sha256 57 bytes (two blocks)", |b| {
        b.iter(|| Sha256::digest(black_box(secrets[0].as_bytes())))
    });
    c.bench_function("index lookup, 1M keys", |b| {
        b.iter(|| index.get(black_box(&hashes[next()])))
    });
    c.bench_function("full decision: parse, lookup, decide", |b| {
        b.iter(|| {
            let req = Request {
                required_scopes: &required,
                ..Default::default()
            };
            let key = black_box(&secrets[next()]);
            verify::verify(&index, &usage, key, &req, now, mono_nanos)
                .decision
                .code
        })
    });
}

criterion_group!(name = verify_path; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(verify_path);
