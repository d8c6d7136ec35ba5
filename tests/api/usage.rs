//! Usage counters reach the store, survive a graceful shutdown, and power
//! the stale-key query.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use keysmith::{
    domain::{Clock, Timestamp},
    grpc::pb,
};

use crate::helpers::{Backend, TestApp, eventually, spawn_on, spawn_with};

async fn verify_from(app: &TestApp, key: &str, scopes: &[&str], ip: &str) -> pb::VerifyResponse {
    app.verify_from(key, scopes, ip, "", "").await
}

async fn usage(app: &TestApp, id: &str) -> pb::GetKeyUsageResponse {
    let req = pb::GetKeyUsageRequest {
        id: id.into(),
        ..Default::default()
    };
    app.admin
        .clone()
        .get_key_usage(req)
        .await
        .expect("usage")
        .into_inner()
}

async fn counters_reach_the_store_after_a_flush(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.usage_flush_interval = Duration::from_millis(50)
    })
    .await;
    let created = app.create_with_scopes(&["a:read"]).await;
    let id = created.key.expect("key").id;
    for _ in 0..3 {
        assert!(
            verify_from(&app, &created.secret, &["a:read"], "203.0.113.7")
                .await
                .valid
        );
    }
    for _ in 0..2 {
        assert!(
            !verify_from(&app, &created.secret, &["a:write"], "")
                .await
                .valid
        );
    }
    verify_from(&app, "sk_live_nonsense", &[], "").await;
    verify_from(&app, "", &[], "").await;
    let unknown = keysmith::domain::ApiKey::generate(
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("rng");
    verify_from(&app, unknown.expose_secret(), &[], "").await;

    eventually("usage to be flushed", || async {
        usage(&app, &id).await.totals.is_some_and(|t| t.total == 5)
    })
    .await;
    let u = usage(&app, &id).await;
    let totals = u.totals.expect("totals");
    assert_eq!(
        (totals.valid, totals.insufficient_scope, totals.revoked),
        (3, 2, 0)
    );
    assert_eq!(u.buckets.len(), 1, "one hour");
    assert_eq!(u.last_client_ip, "203.0.113.7");
    assert!(u.last_used_time.is_some());
    let key = app.get(&id).await;
    assert_eq!(key.last_used_time, u.last_used_time);

    let stats = || async {
        let req = pb::GetUnknownKeyStatsRequest::default();
        app.admin
            .clone()
            .get_unknown_key_stats(req)
            .await
            .expect("stats")
            .into_inner()
    };
    eventually("unknown-key attempts to be flushed", || async {
        stats().await.not_found == 1
    })
    .await;
    assert_eq!(stats().await.malformed, 2);
}

async fn counters_are_flushed_on_graceful_shutdown(backend: Backend) {
    // A flush interval far beyond the test: only the shutdown flush can write.
    let app = spawn_with(backend, |c| {
        c.usage_flush_interval = Duration::from_secs(3600)
    })
    .await;
    let created = app.create_with_scopes(&[]).await;
    let id = created.key.expect("key").id;
    for _ in 0..4 {
        assert!(verify_from(&app, &created.secret, &[], "").await.valid);
    }
    let (db, token) = app.stop().await;
    let app = spawn_on(db, Some(token)).await;
    let totals = usage(&app, &id).await.totals.expect("totals");
    assert_eq!((totals.total, totals.valid), (4, 4));
}

/// A clock the test moves by hand.
pub fn manual_clock() -> (Clock, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(Timestamp::now().as_millis()));
    let read = now.clone();
    (
        Clock::from_fn(move || Timestamp::from_millis(read.load(Ordering::SeqCst))),
        now,
    )
}

pub const DAY_MS: i64 = 24 * 3600 * 1000;

async fn stale_keys_are_exactly_the_unused_ones(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.usage_flush_interval = Duration::from_millis(50);
    })
    .await;
    let used = app.create_with_scopes(&[]).await;
    let idle = app.create_with_scopes(&[]).await.key.expect("key").id;
    let idle_too = app.create_with_scopes(&[]).await.key.expect("key").id;
    let revoked = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&revoked).await;

    now.fetch_add(100 * DAY_MS, Ordering::SeqCst);
    let young = app.create_with_scopes(&[]).await.key.expect("key").id;
    let used_id = used.key.expect("key").id;
    assert!(verify_from(&app, &used.secret, &[], "").await.valid);
    eventually("the use to be flushed", || async {
        app.get(&used_id).await.last_used_time.is_some()
    })
    .await;

    let stale = |unused_for: Option<i64>| {
        let mut admin = app.admin.clone();
        async move {
            let req = pb::ListStaleKeysRequest {
                unused_for: unused_for.map(|d| keysmith::grpc::wkt::Duration {
                    seconds: d * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            };
            let keys = admin
                .list_stale_keys(req)
                .await
                .expect("stale")
                .into_inner()
                .keys;
            keys.into_iter().map(|k| k.id).collect::<Vec<_>>()
        }
    };
    let mut expected = vec![idle.clone(), idle_too.clone()];
    expected.sort();
    assert_eq!(
        stale(None).await,
        expected,
        "default 90 days; never-used keys count from creation"
    );
    assert_eq!(stale(Some(101)).await, Vec::<String>::new());
    // A moment later, with no minimum: every active key, never the revoked one.
    now.fetch_add(1, Ordering::SeqCst);
    let mut all_active = vec![used_id.clone(), idle, idle_too, young];
    all_active.sort();
    let mut got = stale(Some(0)).await;
    got.sort();
    assert_eq!(got, all_active);
    assert!(!got.contains(&revoked));

    // ListKeys sorts by last use, most recent first.
    let req = pb::ListKeysRequest {
        order_by: pb::KeyOrder::LastUsedDesc.into(),
        ..Default::default()
    };
    let keys = app
        .admin
        .clone()
        .list_keys(req)
        .await
        .expect("list")
        .into_inner()
        .keys;
    assert_eq!(keys[0].id, used_id);
    assert_eq!(keys.len(), 5);
}

/// Denied calls are counted by outcome, but only a call that passes is a
/// use: presenting a dead or restricted key does not keep it "in use".
async fn only_passing_calls_count_as_use(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.usage_flush_interval = Duration::from_millis(50)
    })
    .await;
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            scopes: vec!["a:read".into()],
            restrictions: Some(pb::Restrictions {
                ip: Some(pb::IpRestriction {
                    allow: vec!["10.0.0.0/8".into()],
                    mode: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let id = created.key.expect("key").id;
    let denied = [
        verify_from(&app, &created.secret, &["a:write"], "10.0.0.1").await,
        verify_from(&app, &created.secret, &[], "198.51.100.1").await,
    ];
    assert!(denied.iter().all(|v| !v.valid));
    eventually("denials to be flushed", || async {
        usage(&app, &id).await.totals.is_some_and(|t| t.total == 2)
    })
    .await;
    let u = usage(&app, &id).await;
    let t = u.totals.expect("totals");
    assert_eq!((t.insufficient_scope, t.ip_not_allowed), (1, 1));
    assert_eq!(u.last_used_time, None, "a denial is not a use");
    assert_eq!(u.last_client_ip, "");
    assert_eq!(app.get(&id).await.last_used_time, None);

    assert!(
        verify_from(&app, &created.secret, &["a:read"], "10.0.0.7")
            .await
            .valid
    );
    eventually("the use to be flushed", || async {
        usage(&app, &id).await.last_used_time.is_some()
    })
    .await;
    assert_eq!(usage(&app, &id).await.last_client_ip, "10.0.0.7");

    // A later denial from elsewhere moves neither.
    let before = usage(&app, &id).await.last_used_time;
    app.revoke(&id).await;
    assert!(
        !verify_from(&app, &created.secret, &[], "10.0.0.99")
            .await
            .valid
    );
    eventually("the revoked call to be counted", || async {
        usage(&app, &id)
            .await
            .totals
            .is_some_and(|t| t.revoked == 1)
    })
    .await;
    let u = usage(&app, &id).await;
    assert_eq!(u.last_used_time, before);
    assert_eq!(u.last_client_ip, "10.0.0.7");
}

/// A report-only restriction that would deny still lets the call through:
/// that call is a use.
async fn report_only_would_denials_count_as_use(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.usage_flush_interval = Duration::from_millis(50)
    })
    .await;
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            restrictions: Some(pb::Restrictions {
                ip: Some(pb::IpRestriction {
                    allow: vec!["10.0.0.0/8".into()],
                    mode: pb::RestrictionMode::ReportOnly.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let id = created.key.expect("key").id;
    let v = verify_from(&app, &created.secret, &[], "198.51.100.1").await;
    assert!(v.valid);
    let would: Vec<pb::VerifyCode> = v.would_deny().collect();
    assert_eq!(would, [pb::VerifyCode::IpNotAllowed]);
    eventually("the use to be flushed", || async {
        usage(&app, &id).await.last_used_time.is_some()
    })
    .await;
    assert_eq!(usage(&app, &id).await.last_client_ip, "198.51.100.1");
}

crate::backend_tests!(
    only_passing_calls_count_as_use,
    report_only_would_denials_count_as_use,
    counters_reach_the_store_after_a_flush,
    counters_are_flushed_on_graceful_shutdown,
    stale_keys_are_exactly_the_unused_ones,
);
