//! What a `kill -9` may cost, beyond acknowledged writes (`crash.rs`): at
//! most the last flush interval of usage counts, and no scheduled notice
//! lost or sent twice when a job run is cut off halfway.

use std::collections::HashMap;

use keysmith::{
    domain::{KeyId, Timestamp},
    grpc::pb::{self, VerifyCode},
    store::{AuditFilter, Store},
};

use crate::{
    helpers::{Admin, Backend, TestDb, eventually, eventually_within},
    process::{Replica, database_url, mint_token, store_at},
};

/// Valid verifications of `id` the database holds.
async fn flushed_valid(store: &dyn Store, id: &KeyId) -> i64 {
    let far = Timestamp::from_millis(Timestamp::now().as_millis() + 3_600_000);
    let rows = store
        .key_usage(id, Timestamp::from_millis(0), far)
        .await
        .expect("usage");
    rows.iter().map(|r| r.counts.valid).sum()
}

async fn verify_n(replica: &Replica, secret: &str, n: usize) {
    for _ in 0..n {
        let req = pb::VerifyRequest {
            key: secret.to_owned(),
            ..Default::default()
        };
        let reply = replica.verify.clone().verify(req).await.expect("verify");
        assert_eq!(reply.into_inner().code(), VerifyCode::Valid);
    }
}

async fn kill_9_loses_at_most_the_unflushed_usage(backend: Backend) {
    const BATCH: usize = 20;
    let db = TestDb::new(backend).await;
    let url = database_url(&db);
    let token = mint_token(&url).await;
    let flags = ["--usage-flush-interval", "100ms"];
    let mut replica = Replica::start(&url, &token, &flags).await;
    let store = store_at(&url).await;
    let req = pb::CreateKeyRequest {
        owner_id: "acct_usage".into(),
        ..Default::default()
    };
    let created = replica.admin.create_key(req).await.expect("create");
    let created = created.into_inner();
    let id: KeyId = created.key.expect("key").id.parse().expect("id");

    // Flushed once, and again: each interval writes what came since.
    for round in 1..=2 {
        verify_n(&replica, &created.secret, BATCH).await;
        let want = (round * BATCH) as i64;
        eventually(&format!("{want} flushed calls"), || async {
            flushed_valid(store.as_ref(), &id).await == want
        })
        .await;
    }
    // The last batch may not have been flushed when the process dies.
    verify_n(&replica, &created.secret, BATCH).await;
    replica.kill_hard();
    let survived = flushed_valid(store.as_ref(), &id).await;
    let flushed_before = (2 * BATCH) as i64;
    assert!(
        (flushed_before..=flushed_before + BATCH as i64).contains(&survived),
        "{survived} counted: every flushed call survives, and nothing is counted twice"
    );
    let key = store.get_key(&id).await.expect("get").expect("key");
    assert!(key.last_used_at.is_some(), "the flushed last use survives");

    // A restarted replica adds to what survived, it does not start over.
    let restarted = Replica::start(&url, &token, &flags).await;
    verify_n(&restarted, &created.secret, 1).await;
    eventually("the restarted replica's call on top", || async {
        flushed_valid(store.as_ref(), &id).await == survived + 1
    })
    .await;
}

/// Enough notices that the job run outlasts the poll that sees its first
/// one and the kill after it: with 300, a fast SQLite run once finished
/// all of them before the kill landed.
const NOTICED_KEYS: usize = 1000;

/// `key.expiring` events per key id.
async fn expiring_notices(store: &dyn Store) -> HashMap<String, usize> {
    let mut per_key = HashMap::new();
    let mut before = None;
    loop {
        let filter = AuditFilter {
            key_id: None,
            owner_id: None,
            owned_only: false,
            owners: None,
            keyspaces: None,
            action: Some("key.expiring".into()),
            from: None,
            to: None,
            before,
            limit: 500,
        };
        let page = store.list_audit_events(&filter).await.expect("audit");
        let Some(last) = page.last() else {
            return per_key;
        };
        before = Some(last.id);
        for event in &page {
            *per_key
                .entry(event.key_id.clone().expect("about a key"))
                .or_default() += 1;
        }
    }
}

async fn create_expiring(admin: &Admin) -> String {
    let req = pb::CreateKeyRequest {
        owner_id: "acct_notices".into(),
        ttl: Some(keysmith::grpc::wkt::Duration {
            seconds: 10 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    let created = admin.clone().create_key(req).await.expect("create");
    created.into_inner().key.expect("key").id
}

async fn kill_9_mid_job_run_neither_repeats_nor_loses_a_notice(backend: Backend) {
    let db = TestDb::new(backend).await;
    let url = database_url(&db);
    let token = mint_token(&url).await;
    // Keys ten days from expiry, made by a replica that only sends one-day
    // notices; its short job lease lapses as soon as it is gone.
    let mut maker = Replica::start(
        &url,
        &token,
        &["--expiry-notice", "1d", "--jobs-interval", "50ms"],
    )
    .await;
    let mut keys = Vec::new();
    for _ in 0..NOTICED_KEYS / 10 {
        let batch = (0..10).map(|_| create_expiring(&maker.admin));
        keys.extend(futures::future::join_all(batch).await);
    }
    maker.kill_hard();
    let store = store_at(&url).await;
    assert!(expiring_notices(store.as_ref()).await.is_empty());

    // This one sends the 14-day notice to every key, in one job run.
    let jobs = ["--jobs-interval", "200ms"];
    let mut runner = Replica::start(&url, &token, &jobs).await;
    eventually("the job run to be under way", || async {
        !expiring_notices(store.as_ref()).await.is_empty()
    })
    .await;
    runner.kill_hard();
    let at_kill = expiring_notices(store.as_ref()).await.len();
    assert!(
        at_kill < NOTICED_KEYS,
        "killed mid-run: {at_kill} of {NOTICED_KEYS} notices sent"
    );

    eprintln!("crash: {at_kill} of {NOTICED_KEYS} notices sent at kill -9");
    let restarted = Replica::start(&url, &token, &jobs).await;
    let started = std::time::Instant::now();
    let run = std::time::Duration::from_secs(60);
    eventually_within(run, "every key's notice", || async {
        expiring_notices(store.as_ref()).await.len() == NOTICED_KEYS
    })
    .await;
    // Jobs scan keys by id, so the round that notices a newer key has
    // looked at every earlier one again: a repeat would show now.
    let newest = create_expiring(&restarted.admin).await;
    eventually_within(run, "the newest key's notice", || async {
        expiring_notices(store.as_ref()).await.contains_key(&newest)
    })
    .await;
    keys.push(newest);
    eprintln!("crash: the rest sent in {:?}", started.elapsed());
    let notices = expiring_notices(store.as_ref()).await;
    for id in &keys {
        assert_eq!(notices.get(id), Some(&1), "{id}: exactly one key.expiring");
    }
    assert_eq!(notices.len(), keys.len(), "no notice for another key");
}

crate::backend_tests!(
    kill_9_loses_at_most_the_unflushed_usage,
    kill_9_mid_job_run_neither_repeats_nor_loses_a_notice,
);
