//! Lifecycle automation with an injected clock: expiry notices, scheduled
//! rotation, self-rotation, the unused-key policy, and jobs that run once
//! across replicas.

use std::{
    sync::atomic::{AtomicI64, Ordering},
    time::Duration,
};

use keysmith::{
    domain::KeyRotation,
    domain::StalePolicy,
    grpc::pb::{self, VerifyCode},
};
use tonic::{Code, Request};

use crate::{
    helpers::{Backend, TestApp, eventually, spawn_with},
    usage::{DAY_MS, manual_clock},
};

const DAY: Duration = Duration::from_secs(86_400);

async fn actions(app: &TestApp, key_id: &str) -> Vec<String> {
    let events = events_of(app, key_id, "").await;
    events.into_iter().rev().map(|e| e.action).collect()
}

/// Audit events of `key_id` (with `action`, unless empty), newest first.
pub(crate) async fn events_of(app: &TestApp, key_id: &str, action: &str) -> Vec<pb::AuditEvent> {
    let req = pb::ListAuditEventsRequest {
        key_id: key_id.into(),
        action: action.into(),
        ..Default::default()
    };
    app.admin
        .clone()
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events
}

async fn wait_for(app: &TestApp, key_id: &str, expected: &[&str]) {
    eventually(&format!("audit actions {expected:?}"), || async {
        actions(app, key_id).await == expected
    })
    .await;
}

fn advance(now: &AtomicI64, days: i64) {
    now.fetch_add(days * DAY_MS + 1, Ordering::SeqCst);
}

async fn expiry_notices_fire_once_at_each_lead(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = Duration::from_millis(20);
    })
    .await;
    let req = pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        ttl: Some(keysmith::grpc::wkt::Duration {
            seconds: 20 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    let key = app.create(req).await.key.expect("key").id;
    advance(&now, 6);
    wait_for(&app, &key, &["key.created", "key.expiring"]).await;
    advance(&now, 7);
    wait_for(&app, &key, &["key.created", "key.expiring", "key.expiring"]).await;
    advance(&now, 6);
    wait_for(
        &app,
        &key,
        &[
            "key.created",
            "key.expiring",
            "key.expiring",
            "key.expiring",
        ],
    )
    .await;
    advance(&now, 1);
    wait_for(
        &app,
        &key,
        &[
            "key.created",
            "key.expiring",
            "key.expiring",
            "key.expiring",
            "key.expired",
        ],
    )
    .await;
    let events = events_of(&app, &key, "key.expiring").await;
    let leads: Vec<serde_json::Value> = events
        .iter()
        .rev()
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.changes_json).expect("json")["notice_days"]
                .clone()
        })
        .collect();
    assert_eq!(leads, [14, 7, 1]);
    assert!(events.iter().all(|e| e.actor == "system:scheduler"));
}

async fn rotation_policy_warns_then_expires_at_due_plus_grace(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = Duration::from_millis(20);
        c.jobs.default_rotation = Some(KeyRotation::every(30 * DAY, true).expect("policy"));
        c.jobs.rotation_grace = 2 * DAY;
    })
    .await;
    let created = app.create_with_scopes(&[]).await;
    let key = created.key.expect("key").id;
    advance(&now, 16);
    wait_for(&app, &key, &["key.created", "key.rotation_due"]).await;
    advance(&now, 7);
    wait_for(
        &app,
        &key,
        &["key.created", "key.rotation_due", "key.rotation_due"],
    )
    .await;
    advance(&now, 6);
    wait_for(
        &app,
        &key,
        &[
            "key.created",
            "key.rotation_due",
            "key.rotation_due",
            "key.rotation_due",
        ],
    )
    .await;
    advance(&now, 1);
    let due = [
        "key.created",
        "key.rotation_due",
        "key.rotation_due",
        "key.rotation_due",
        "key.rotation_due",
    ];
    // The due action sets an expiry (which soon earns a key.expiring too).
    eventually("the due action", || async {
        actions(&app, &key)
            .await
            .starts_with(&due.map(String::from))
    })
    .await;
    // The due action set an expiry at due + grace: still valid inside it.
    let expires = app.get(&key).await.expire_time.expect("expiry now set");
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Valid);
    let grace_end_ms = expires.seconds * 1000 + i64::from(expires.nanos) / 1_000_000;
    now.store(grace_end_ms, Ordering::SeqCst);
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Expired);
    // Inside the grace the key also got its expiry notice; the last word is
    // key.expired.
    eventually("key.expired", || async {
        actions(&app, &key).await.last().map(String::as_str) == Some("key.expired")
    })
    .await;
    let all = actions(&app, &key).await;
    assert_eq!(&all[..5], due);
    assert_eq!(all.iter().filter(|a| *a == "key.expired").count(), 1);
}

async fn self_rotation_by_proof_of_possession(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let created = app.create_with_scopes(&["deploy:write"]).await;
    let id = created.key.expect("key").id;
    let rotate_with = |key: String| {
        let mut admin =
            keysmith::grpc::pb::key_admin_client::KeyAdminClient::new(app.admin_channel.clone());
        async move {
            let mut req = Request::new(pb::RotateSelfRequest { grace_period: None });
            req.metadata_mut().insert(
                "authorization",
                format!("Bearer {key}").parse().expect("ascii"),
            );
            admin.rotate_self(req).await
        }
    };
    let rotated = rotate_with(created.secret.clone())
        .await
        .expect("self rotation")
        .into_inner();
    assert_eq!(rotated.previous.expect("previous").id, id);
    assert_eq!(rotated.key.as_ref().expect("key").scopes, ["deploy:write"]);
    assert_eq!(app.verify_code(&rotated.secret).await, VerifyCode::Valid);
    let events = events_of(&app, &id, "key.rotated").await;
    assert_eq!(events[0].actor, format!("key:{id}"));

    // Once a minute per lineage: the successor cannot rotate itself at once
    // (tests/api/rotate_self.rs covers the limit in full).
    let again = rotate_with(rotated.secret.clone())
        .await
        .expect_err("rate limited");
    assert_eq!(again.code(), Code::ResourceExhausted);
    // Revoked, unknown and malformed keys cannot.
    let newest = rotated.key.expect("key").id;
    app.revoke(&newest).await;
    assert_eq!(
        rotate_with(rotated.secret)
            .await
            .expect_err("revoked")
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        rotate_with("sk_live_nope".into())
            .await
            .expect_err("malformed")
            .code(),
        Code::Unauthenticated
    );
}

async fn stale_stages_act_or_only_report(backend: Backend) {
    for dry_run in [true, false] {
        let (clock, now) = manual_clock();
        let app = spawn_with(backend, |c| {
            c.clock = clock;
            c.jobs.interval = Duration::from_millis(20);
            c.jobs.stale = StalePolicy {
                flag_after: 90 * DAY,
                disable_after: Some(120 * DAY),
                revoke_after: Some(200 * DAY),
                dry_run,
            };
        })
        .await;
        let created = app.create_with_scopes(&[]).await;
        let key = created.key.expect("key").id;
        advance(&now, 100);
        wait_for(&app, &key, &["key.created", "key.stale"]).await;
        advance(&now, 30);
        if dry_run {
            wait_for(&app, &key, &["key.created", "key.stale", "key.stale"]).await;
            assert_eq!(
                app.verify_code(&created.secret).await,
                VerifyCode::Valid,
                "dry run only reports"
            );
        } else {
            wait_for(&app, &key, &["key.created", "key.stale", "key.disabled"]).await;
            // The job's commit is audited before its replica's index takes
            // the new version (microseconds later): wait on the index.
            eventually("the disabled key to be refused", || async {
                app.verify_code(&created.secret).await == VerifyCode::Disabled
            })
            .await;
            advance(&now, 80);
            wait_for(
                &app,
                &key,
                &["key.created", "key.stale", "key.disabled", "key.revoked"],
            )
            .await;
            eventually("the revoked key to be refused", || async {
                app.verify_code(&created.secret).await == VerifyCode::Revoked
            })
            .await;
        }
    }
}

crate::backend_tests!(
    expiry_notices_fire_once_at_each_lead,
    rotation_policy_warns_then_expires_at_due_plus_grace,
    self_rotation_by_proof_of_possession,
    stale_stages_act_or_only_report,
    a_job_lease_has_one_holder_at_a_time,
    a_keys_own_rotation_policy_wins,
    an_owners_stale_thresholds_replace_the_servers,
);

async fn a_job_lease_has_one_holder_at_a_time(backend: Backend) {
    let app = spawn_with(backend, |c| c.jobs.interval = Duration::from_secs(3600)).await;
    let store = keysmith::app::open_store(&app.db.config, false)
        .await
        .expect("store");
    let t = keysmith::domain::Timestamp::from_millis(1_000_000);
    let until = keysmith::domain::Timestamp::from_millis(1_060_000);
    assert!(
        store
            .take_job_lease("probe", "replica-a", t, until)
            .await
            .expect("lease")
    );
    assert!(
        !store
            .take_job_lease("probe", "replica-b", t, until)
            .await
            .expect("lease"),
        "held by a"
    );
    assert!(
        store
            .take_job_lease("probe", "replica-a", t, until)
            .await
            .expect("lease"),
        "a renews its own"
    );
    let later = keysmith::domain::Timestamp::from_millis(1_060_000);
    let next = keysmith::domain::Timestamp::from_millis(1_120_000);
    assert!(
        store
            .take_job_lease("probe", "replica-b", later, next)
            .await
            .expect("lease"),
        "expired: b takes it"
    );
    assert!(
        !store
            .take_job_lease("probe", "replica-a", later, next)
            .await
            .expect("lease")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_send_each_notice_once() {
    let (clock, now) = manual_clock();
    let db = crate::helpers::TestDb::new(Backend::Postgres).await;
    let config = db.config.clone();
    let fast = move |c: &mut keysmith::Config| {
        c.clock = clock.clone();
        c.jobs.interval = Duration::from_millis(10);
    };
    let a = crate::helpers::spawn_configured(db, None, fast.clone()).await;
    let other = crate::helpers::TestDb {
        backend: Backend::Postgres,
        config,
        dir: tempfile::tempdir().expect("dir"),
    };
    let b = crate::helpers::spawn_configured(other, Some(a.token.clone()), fast).await;
    let create = |days: i64| {
        let a = &a;
        async move {
            let req = pb::CreateKeyRequest {
                owner_id: "acct_1".into(),
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: days * 86_400,
                    nanos: 0,
                }),
                ..Default::default()
            };
            a.create(req).await.key.expect("key").id
        }
    };
    let mut keys = Vec::new();
    for _ in 0..5 {
        keys.push(create(20).await);
    }
    advance(&now, 7);
    for key in &keys {
        wait_for(&b, key, &["key.created", "key.expiring"]).await;
    }
    // More rounds on both replicas: a later key gets its notice too...
    let later = create(10).await;
    wait_for(&a, &later, &["key.created", "key.expiring"]).await;
    // ...and still each earlier key has exactly one.
    for key in &keys {
        assert_eq!(
            actions(&a, key).await,
            ["key.created", "key.expiring"],
            "exactly one notice"
        );
    }
}

async fn a_keys_own_rotation_policy_wins(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = Duration::from_millis(20);
        c.jobs.default_rotation = Some(KeyRotation::every(30 * DAY, true).expect("policy"));
    })
    .await;
    let policy = |p: pb::RotationPolicy| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        rotation_policy: Some(p),
        ..Default::default()
    };
    let never = app
        .create(policy(pb::RotationPolicy {
            never: true,
            ..Default::default()
        }))
        .await;
    let weekly = app
        .create(policy(pb::RotationPolicy {
            every: Some(keysmith::grpc::wkt::Duration {
                seconds: 7 * 86_400,
                nanos: 0,
            }),
            action: pb::RotationAction::Notify.into(),
            never: false,
        }))
        .await;
    let default = app.create_with_scopes(&[]).await;
    let (never_id, weekly_id, default_id) = (
        never.key.expect("key").id,
        weekly.key.expect("key").id,
        default.key.expect("key").id,
    );
    assert!(
        app.get(&never_id)
            .await
            .rotation_policy
            .expect("policy")
            .never
    );

    advance(&now, 40);
    // The weekly key: the notify action; it keeps working.
    // (A 7-day notice may come first: at creation it was due in 7 days.)
    eventually("the weekly key's due notice", || async {
        let events = events_of(&app, &weekly_id, "key.rotation_due").await;
        events
            .first()
            .is_some_and(|e| e.changes_json.contains("\"action\":\"notify\""))
    })
    .await;
    // The default policy expires its key after the grace.
    eventually("the default policy to act", || async {
        app.get(&default_id).await.expire_time.is_some()
    })
    .await;
    assert_eq!(app.verify_code(&weekly.secret).await, VerifyCode::Valid);
    // The key that opted out hears nothing.
    assert_eq!(actions(&app, &never_id).await, ["key.created"]);

    // A bad policy is refused, naming the field.
    let bad = policy(pb::RotationPolicy {
        every: Some(keysmith::grpc::wkt::Duration {
            seconds: 60,
            nanos: 0,
        }),
        ..Default::default()
    });
    crate::helpers::assert_status(
        app.admin.clone().create_key(bad).await,
        Code::InvalidArgument,
        "rotation_policy.every",
    );
}

async fn an_owners_stale_thresholds_replace_the_servers(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = Duration::from_millis(20);
    })
    .await;
    let days = |d: i64| {
        Some(keysmith::grpc::wkt::Duration {
            seconds: d * 86_400,
            nanos: 0,
        })
    };
    let strict = pb::OwnerStalePolicy {
        owner_id: "acct_strict".into(),
        flag_after: days(10),
        disable_after: days(20),
        revoke_after: None,
        dry_run: false,
    };
    app.admin
        .clone()
        .set_owner_stale_policy(strict.clone())
        .await
        .expect("set policy");
    let listed = app
        .admin
        .clone()
        .list_owner_stale_policies(pb::ListOwnerStalePoliciesRequest {})
        .await
        .expect("list");
    assert_eq!(listed.into_inner().policies, std::slice::from_ref(&strict));
    let bad = pb::OwnerStalePolicy {
        disable_after: days(5),
        ..strict
    };
    crate::helpers::assert_status(
        app.admin.clone().set_owner_stale_policy(bad).await,
        Code::InvalidArgument,
        "disable_after",
    );

    let mine = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_strict".into(),
            ..Default::default()
        })
        .await;
    let other = app.create_with_scopes(&[]).await;
    let (mine_id, other_id) = (mine.key.expect("key").id, other.key.expect("key").id);
    advance(&now, 25);
    wait_for(
        &app,
        &mine_id,
        &["key.created", "key.stale", "key.disabled"],
    )
    .await;
    assert_eq!(app.verify_code(&mine.secret).await, VerifyCode::Disabled);
    // The server's 90 days still hold for everyone else.
    assert_eq!(actions(&app, &other_id).await, ["key.created"]);
    // Disable is reversible.
    app.admin
        .clone()
        .enable_key(pb::EnableKeyRequest { id: mine_id })
        .await
        .expect("enable");
    assert_eq!(app.verify_code(&mine.secret).await, VerifyCode::Valid);
}
