//! A million random, well-formed keys at full rate, through VerifyStream,
//! with the database stopped: if any Verify needed it, the answers would
//! fail. Malformed keys are answered the same way. Unknown-key counting
//! stays two global counters however many keys arrive.

use std::time::Instant;

use keysmith::{
    config::DbConfig,
    grpc::pb::{self, VerifyCode},
};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::{Backend, TestDb, eventually, spawn_configured};

const KEYS: u64 = 1_000_000;
const STREAMS: u64 = 4;
const WINDOW: usize = 512;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A random key in the published format (README, "Key format"): prefix, 43
/// base62 characters, and the base62 CRC-32 of the 51 characters before it.
/// Random bodies from a seeded xorshift: well-formed, and never issued.
fn random_key(state: &mut u64) -> String {
    let mut s = String::with_capacity(57);
    s.push_str("sk_live_");
    for _ in 0..43 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        s.push(char::from(ALPHABET[(*state % 62) as usize]));
    }
    let mut crc = crc32fast::hash(s.as_bytes());
    let mut digits = [0u8; 6];
    for d in digits.iter_mut().rev() {
        *d = ALPHABET[(crc % 62) as usize];
        crc /= 62;
    }
    s.extend(digits.iter().map(|&b| char::from(b)));
    s
}

/// Sends `count` random keys on one stream, `WINDOW` in flight, and checks
/// that every answer is NOT_FOUND.
async fn flood(
    verify: pb::key_verify_client::KeyVerifyClient<tonic::transport::Channel>,
    seed: u64,
    count: u64,
) -> u64 {
    let (tx, rx) = tokio::sync::mpsc::channel(WINDOW);
    let sender = tokio::spawn(async move {
        let mut state = seed;
        for id in 0..count {
            let request = pb::VerifyRequest {
                key: random_key(&mut state),
                ..Default::default()
            };
            let msg = pb::VerifyStreamRequest {
                id,
                request: Some(request),
            };
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut answers = verify
        .clone()
        .verify_stream(ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();
    let mut seen = 0;
    while let Some(a) = answers.message().await.expect("answer") {
        assert_eq!(a.id, seen, "in order");
        match a.result {
            Some(pb::verify_stream_response::Result::Response(r)) => {
                assert_eq!(r.code(), VerifyCode::NotFound)
            }
            other => panic!("answer {seen}: {other:?}"),
        }
        seen += 1;
    }
    sender.await.expect("sender");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_random_keys_are_answered_without_the_database() {
    let pg = crate::pg_cluster::PgCluster::start_new();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = TestDb {
        backend: Backend::Postgres,
        config: DbConfig {
            database_url: Some(pg.url()),
            data_dir: dir.path().to_owned(),
        },
        dir,
    };
    let app = spawn_configured(db, None, |_| {}).await;
    let real = app.create_with_scopes(&[]).await.secret;

    pg.stop();
    let started = Instant::now();
    let mut floods = JoinSet::new();
    for s in 0..STREAMS {
        floods.spawn(flood(
            app.verify.clone(),
            0x9E37_79B9_7F4A_7C15 ^ (s + 1),
            KEYS / STREAMS,
        ));
    }
    let mut answered = 0;
    while let Some(n) = floods.join_next().await {
        answered += n.expect("flood");
    }
    assert_eq!(answered, KEYS);
    eprintln!(
        "flood: {KEYS} random keys answered in {:.1?} with the database down",
        started.elapsed()
    );
    // The real key still verifies, and junk is still told apart, all from
    // memory.
    assert!(app.verify_scopes(&real, &[]).await.valid);
    let mut flipped = real.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let junk = [
        String::new(),
        "\0".repeat(57),
        "🔑".repeat(14) + "x",
        String::from_utf8(flipped).expect("ascii"),
    ];
    for junk in &junk {
        assert_eq!(
            app.verify_code(junk).await,
            VerifyCode::Malformed,
            "{junk:?}"
        );
    }

    // Back up: the server is healthy again, and the unknown-key counts
    // arrive whole, in hourly buckets.
    pg.start();
    app.wait_until_serving().await;
    let stats = || async {
        app.admin
            .clone()
            .get_unknown_key_stats(pb::GetUnknownKeyStatsRequest::default())
            .await
            .map(|r| r.into_inner())
    };
    eventually("the flood's counts to be flushed", || async {
        stats().await.is_ok_and(|s| s.not_found == KEYS as i64)
    })
    .await;
    let s = stats().await.expect("stats");
    assert_eq!(s.malformed, junk.len() as i64);
    assert!(
        s.buckets.len() <= 2,
        "hourly buckets, not per key: {}",
        s.buckets.len()
    );
}
