//! Usage limits hold across three real replica processes on one
//! PostgreSQL, driven round-robin: a named limit admits no more than its
//! rate (within 5 %), a balance is never overspent, and a replica killed
//! with SIGKILL strands nothing once its lease expires.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keysmith::grpc::pb::{self, VerifyCode};

use crate::{
    helpers::{eventually_within, fresh_pg_database},
    process::{Replica, mint_token},
    quotas::{credits, limit, quota_key},
};

async fn create(r: &Replica, req: pb::CreateKeyRequest) -> (String, String) {
    let resp = r
        .admin
        .clone()
        .create_key(req)
        .await
        .expect("create")
        .into_inner();
    (resp.key.expect("key").id, resp.secret)
}

async fn balance(r: &Replica, id: &str) -> pb::Credits {
    let req = pb::GetCreditsRequest {
        subject: Some(pb::get_credits_request::Subject::KeyId(id.into())),
    };
    r.admin
        .clone()
        .get_credits(req)
        .await
        .expect("credits")
        .into_inner()
}

/// Calls from `workers` tasks, round-robin over `replicas`, until `until`;
/// returns the calls admitted.
async fn load(
    replicas: &[pb::key_verify_client::KeyVerifyClient<tonic::transport::Channel>],
    key: &str,
    until: Instant,
) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..6 {
        let clients = replicas.to_vec();
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
                // A replica that was killed refuses; the others go on.
                if let Ok(r) = c.verify(req).await
                    && r.into_inner().code() == VerifyCode::Valid
                {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    admitted.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_three_replicas() {
    let url = fresh_pg_database().await;
    let token = mint_token(&url).await;
    let rs = [
        Replica::start(&url, &token, &[]).await,
        Replica::start(&url, &token, &[]).await,
        Replica::start(&url, &token, &[]).await,
    ];
    let clients: Vec<_> = rs.iter().map(|r| r.verify.clone()).collect();

    // A named limit: 50 a second, burst 50, over 3 seconds.
    let (_, rated) = create(
        &rs[0],
        quota_key("acct_1", vec![limit("requests", 50, 1)], None),
    )
    .await;
    let started = Instant::now();
    let admitted = load(&clients, &rated, started + Duration::from_secs(3)).await;
    let secs = started.elapsed().as_secs_f64();
    let allowed = 50.0 * secs + 50.0;
    assert!(
        (admitted as f64) <= allowed * 1.05,
        "admitted {admitted}, allowed {allowed:.0} in {secs:.2} s"
    );
    assert!(
        admitted as f64 >= allowed * 0.5,
        "the limit still admits: {admitted} of {allowed:.0}"
    );

    // A balance of 200 under concurrent load from all three: never a credit more.
    let (id, paid) = create(&rs[1], quota_key("acct_1", vec![], Some(credits(200)))).await;
    let admitted = load(&clients, &paid, Instant::now() + Duration::from_secs(2)).await;
    assert_eq!(admitted, 200, "every credit spent once, none twice");
    eventually_within(
        Duration::from_secs(10),
        "idle replicas to give back",
        || async {
            let b = balance(&rs[2], &id).await;
            b.held == 0 && b.remaining == 0 && b.forfeited == 0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_holding_credits_strands_nothing() {
    let url = fresh_pg_database().await;
    let token = mint_token(&url).await;
    let mut victim = Replica::start(&url, &token, &[]).await;
    let rs = [
        Replica::start(&url, &token, &[]).await,
        Replica::start(&url, &token, &[]).await,
    ];
    let (id, key) = create(&rs[0], quota_key("acct_1", vec![], Some(credits(100_000)))).await;
    let mut clients: Vec<_> = rs.iter().map(|r| r.verify.clone()).collect();
    clients.push(victim.verify.clone());
    // Load on all three; the victim is killed as soon as the database shows
    // it holding credits, mid-load.
    let loading = {
        let (clients, key) = (clients.clone(), key.clone());
        tokio::spawn(
            async move { load(&clients, &key, Instant::now() + Duration::from_secs(3)).await },
        )
    };
    let db = sqlx::PgPool::connect(&url).await.expect("connect");
    let holds = Arc::new(AtomicU64::new(0));
    eventually_within(Duration::from_secs(3), "the victim to hold a lease", || {
        let (db, victim_id, holds) = (db.clone(), victim.id.clone(), holds.clone());
        async move {
            let (held,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) FROM credit_leases WHERE replica = $1",
            )
            .bind(victim_id)
            .fetch_one(&db)
            .await
            .expect("leases");
            holds.store(held.max(0) as u64, Ordering::Relaxed);
            held > 0
        }
    })
    .await;
    victim.kill_hard();
    let admitted = loading.await.expect("load");
    // Within the lease's lifetime (10 s) and a sweep, nothing is held.
    eventually_within(
        Duration::from_secs(30),
        "the dead replica's lease to expire",
        || async { balance(&rs[1], &id).await.held == 0 },
    )
    .await;
    let b = balance(&rs[1], &id).await;
    assert!(
        b.remaining + admitted as i64 <= 100_000,
        "overspent: {admitted} admitted, {} left",
        b.remaining
    );
    assert!(
        b.remaining + admitted as i64 + b.forfeited >= 100_000,
        "credits lost beyond the forfeit: {b:?}, {admitted} admitted"
    );
    let holds = holds.load(Ordering::Relaxed);
    assert!(
        b.forfeited > 0,
        "the victim died holding {holds} credits: {b:?}"
    );
}
