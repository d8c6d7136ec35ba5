//! Leak response between two real replicas on one PostgreSQL: from a
//! signed GitHub secret-scanning report to the key denied everywhere.
//!
//! Replica A runs the public listener, with GitHub's key document served
//! by a loopback HTTP server of the bench's own (a real P-256 key). For each
//! of 300 live keys, one after another, the bench POSTs a signed report of
//! it to A and measures, from the moment the POST is sent (so the figures
//! include the HTTP exchange and the signature check):
//! - until A answers 200 with the feedback;
//! - until replica B's Verify answers REVOKED (B is polled in a loop);
//! - until a WatchRevocations subscriber on B receives the LEAKED event.
//!
//! Then one report of 100 keys at once. The goal is p99 ≤ 1 s to B's
//! denial and stream event; the bench exits non-zero when it is missed.
//!
//! Run with `scripts/bench leak` (starts a throwaway PostgreSQL), or with
//! DATABASE_URL set to a server where it may create a database.

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::Engine;
use common::{Percentiles, Server, authed, benching};
use http_body_util::Full;
use hyper::{Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer},
    pkcs8::{EncodePublicKey, LineEnding},
};
use tonic::transport::Channel;

const KEYS: usize = 300;
const BATCH: usize = 100;
const GOAL: Duration = Duration::from_secs(1);

struct Replica {
    server: Server,
    verify: KeyVerifyClient<Channel>,
    admin: KeyAdminClient<Channel>,
}

async fn start(args: &[&str]) -> Replica {
    let server = Server::start(args, &[]);
    Replica {
        verify: KeyVerifyClient::new(common::channel(&server.verify_addr).await),
        admin: KeyAdminClient::new(common::channel(&server.admin_addr).await),
        server,
    }
}

async fn code(r: &Replica, key: &str) -> Option<pb::VerifyCode> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    Some(r.verify.clone().verify(req).await.ok()?.into_inner().code())
}

/// Serves `doc` at any path on 127.0.0.1; returns its URL.
async fn key_server(doc: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/keys", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let doc = doc.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_| {
                    let doc = doc.clone();
                    async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(doc)))) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn percentiles(name: &str, samples: Vec<Duration>) -> Percentiles {
    let p = Percentiles::new(samples);
    println!("{name:<40} n={:<5} {}", p.len(), p.line());
    p
}

fn body(tokens: &[&String]) -> Vec<u8> {
    let items: Vec<_> = tokens
        .iter()
        .map(|t| {
            serde_json::json!({
                "token": t,
                "type": "keysmith_api_key",
                "url": "https://github.com/octo/app/blob/abc123/.env",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&items).expect("json")
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("leak: DATABASE_URL is not set; run scripts/bench leak");
        return;
    };
    let (url, token) = common::migrated_database(&base).await;

    let signing = SigningKey::from_slice(&[7u8; 32]).expect("a valid scalar");
    let doc = serde_json::json!({ "public_keys": [{
        "key_identifier": "bench-key",
        "key": signing.verifying_key().to_public_key_pem(LineEnding::LF).expect("pem"),
        "is_current": true,
    }]})
    .to_string();
    let keys_url = key_server(doc).await;
    let a = start(&[
        "--database-url",
        &url,
        "--public-addr",
        "127.0.0.1:0",
        "--github-keys-url",
        &keys_url,
        // The bench is one address sending as fast as it can.
        "--public-peer-rate",
        "100000",
    ])
    .await;
    let b = start(&["--database-url", &url]).await;
    let public = a.server.public_addr.clone().expect("A's public listener");
    let endpoint = format!("http://{public}/v1/secret-scanning/github");
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let sig: Signature = signing.sign(&body);
        let sig = base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes());
        http.post(&endpoint)
            .header("content-type", "application/json")
            .header("Github-Public-Key-Identifier", "bench-key")
            .header("Github-Public-Key-Signature", sig)
            .body(body)
            .send()
    };

    let mut keys = Vec::with_capacity(KEYS + BATCH);
    for _ in 0..KEYS + BATCH {
        let req = pb::CreateKeyRequest {
            owner_id: "acct_bench".into(),
            environment: pb::Environment::Live.into(),
            ..Default::default()
        };
        let resp = a
            .admin
            .clone()
            .create_key(authed(&token, req))
            .await
            .expect("create")
            .into_inner();
        keys.push((resp.key.expect("key").id, resp.secret));
    }
    let last = &keys[keys.len() - 1].1;
    while code(&b, last).await != Some(pb::VerifyCode::Valid) {
        tokio::task::yield_now().await;
    }
    // The key document is fetched at startup, in the background; the first
    // report must not measure it.
    let warm = post(body(&[&"ghp_notours".to_owned()]))
        .await
        .expect("post");
    assert_eq!(warm.status(), 200, "warm-up report");

    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut stream = b
        .verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let sink = arrivals.clone();
    let subscriber = tokio::spawn(async move {
        while let Ok(Some(e)) = stream.message().await {
            assert_eq!(e.kind(), pb::KeyEventKind::Leaked, "{e:?}");
            sink.lock().expect("lock").insert(e.key_id, Instant::now());
        }
    });

    let (mut answered, mut denied, mut sent_at) = (Vec::new(), Vec::new(), Vec::new());
    for (id, secret) in &keys[..KEYS] {
        let sent = Instant::now();
        let resp = post(body(&[secret])).await.expect("post");
        assert_eq!(resp.status(), 200);
        let feedback: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await.expect("feedback")).expect("json");
        assert_eq!(feedback[0]["label"], "true_positive");
        answered.push(sent.elapsed());
        while code(&b, secret).await != Some(pb::VerifyCode::Revoked) {}
        denied.push(sent.elapsed());
        sent_at.push((id.clone(), sent));
    }

    // One report of BATCH keys.
    let batch: Vec<&String> = keys[KEYS..].iter().map(|(_, s)| s).collect();
    let sent = Instant::now();
    let resp = post(body(&batch)).await.expect("post");
    assert_eq!(resp.status(), 200);
    let batch_answer = sent.elapsed();
    for s in &batch {
        while code(&b, s).await != Some(pb::VerifyCode::Revoked) {}
    }
    let batch_denied = sent.elapsed();
    for (id, _) in &keys[KEYS..] {
        sent_at.push((id.clone(), sent));
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.lock().expect("lock").len() < KEYS + BATCH && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subscriber.abort();
    let arrivals = arrivals.lock().expect("lock");
    let streamed: Vec<Duration> = sent_at[..KEYS]
        .iter()
        .filter_map(|(id, sent)| arrivals.get(id).map(|t| t.saturating_duration_since(*sent)))
        .collect();
    assert_eq!(streamed.len(), KEYS, "every leak reached the subscriber");
    let batch_streamed = sent_at[KEYS..]
        .iter()
        .filter_map(|(id, sent)| arrivals.get(id).map(|t| t.saturating_duration_since(*sent)))
        .max()
        .expect("the batch reached the subscriber");

    println!("leak response, 2 replicas, {KEYS} sequential one-key reports");
    percentiles("POST sent -> A answers 200", answered);
    let deny = percentiles("POST sent -> B denies (Verify)", denied);
    let stream = percentiles("POST sent -> B's stream event (LEAKED)", streamed);
    println!(
        "one report of {BATCH} keys: answered {batch_answer:?}, all denied on B {batch_denied:?}, \
         last stream event {batch_streamed:?}"
    );
    let worst = deny.at(0.99).max(stream.at(0.99)).max(batch_denied);
    if worst > GOAL {
        eprintln!("leak: p99 {worst:?} is over the goal of {GOAL:?}");
        std::process::exit(1);
    }
}
