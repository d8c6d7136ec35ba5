//! Revocation propagation between two real replicas on one PostgreSQL.
//!
//! Replica A revokes 1,000 keys one after another. For each, the bench
//! measures, from the moment A acknowledged the revocation:
//! - until replica B's Verify answers REVOKED (B is polled in a loop);
//! - until a WatchRevocations subscriber on B receives the event.
//!
//! Run with `scripts/bench propagation` (starts a throwaway PostgreSQL), or
//! with DATABASE_URL set to a server where it may create a database.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{Percentiles, Server, authed, benching};
use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use tonic::transport::Channel;

const KEYS: usize = 1000;

struct Replica {
    _server: Server,
    verify: KeyVerifyClient<Channel>,
    admin: KeyAdminClient<Channel>,
}

async fn start(url: &str) -> Replica {
    let server = Server::start(&["--database-url", url], &[]);
    Replica {
        verify: KeyVerifyClient::new(common::channel(&server.verify_addr).await),
        admin: KeyAdminClient::new(common::channel(&server.admin_addr).await),
        _server: server,
    }
}

async fn code(r: &Replica, key: &str) -> Option<pb::VerifyCode> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    Some(r.verify.clone().verify(req).await.ok()?.into_inner().code())
}

fn percentiles(name: &str, samples: Vec<Duration>) {
    let p = Percentiles::new(samples);
    println!("{name:<34} n={:<5} {}", p.len(), p.line());
}

#[tokio::main]
async fn main() {
    if !benching() {
        return;
    }
    let Ok(base) = std::env::var("DATABASE_URL") else {
        eprintln!("propagation: DATABASE_URL is not set; run scripts/bench propagation");
        return;
    };
    let (url, token) = common::migrated_database(&base).await;
    let a = start(&url).await;
    let b = start(&url).await;

    let mut keys = Vec::with_capacity(KEYS);
    for _ in 0..KEYS {
        let req = pb::CreateKeyRequest {
            owner_id: "acct_bench".into(),
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
    let last = &keys[KEYS - 1].1;
    while code(&b, last).await != Some(pb::VerifyCode::Valid) {
        tokio::task::yield_now().await;
    }

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
            sink.lock().expect("lock").insert(e.key_id, Instant::now());
        }
    });

    let mut rpc = Vec::with_capacity(KEYS);
    let mut to_deny = Vec::with_capacity(KEYS);
    let mut acks = Vec::with_capacity(KEYS);
    for (id, secret) in &keys {
        let sent = Instant::now();
        let req = pb::RevokeKeyRequest {
            id: id.clone(),
            ..Default::default()
        };
        a.admin
            .clone()
            .revoke_key(authed(&token, req))
            .await
            .expect("revoke");
        let acked = Instant::now();
        rpc.push(acked - sent);
        while code(&b, secret).await != Some(pb::VerifyCode::Revoked) {}
        to_deny.push(acked.elapsed());
        acks.push((id.clone(), acked));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrivals.lock().expect("lock").len() < KEYS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    subscriber.abort();
    let arrivals = arrivals.lock().expect("lock");
    let to_stream: Vec<Duration> = acks
        .iter()
        .filter_map(|(id, acked)| {
            arrivals
                .get(id)
                .map(|t| t.saturating_duration_since(*acked))
        })
        .collect();
    assert_eq!(
        to_stream.len(),
        KEYS,
        "every revocation reached the subscriber"
    );

    println!("revocation propagation, 2 replicas, {KEYS} sequential revocations");
    percentiles("RevokeKey on A (request to ack)", rpc);
    percentiles("ack on A -> B denies (Verify)", to_deny);
    percentiles("ack on A -> B's stream event", to_stream);
}
