//! RotateSelf cannot be turned against a key's holder: publishable keys
//! cannot, the key's own IP restriction binds the caller, the grace period
//! has a floor, the limit is per lineage, and no successor outlives the key
//! it replaced.

use std::sync::atomic::{AtomicI64, Ordering};

use keysmith::grpc::pb::{self, RestrictionMode, VerifyCode, key_admin_client::KeyAdminClient};
use tonic::{Code, Request};

use crate::{
    helpers::{Backend, TestApp, assert_status, spawn_with},
    usage::{DAY_MS, manual_clock},
};

pub const HOUR: i64 = 3600;

pub fn secs(seconds: i64) -> keysmith::grpc::wkt::Duration {
    keysmith::grpc::wkt::Duration { seconds, nanos: 0 }
}

fn millis(t: &keysmith::grpc::wkt::Timestamp) -> i64 {
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// RotateSelf authenticated by `key` itself, with extra metadata.
async fn rotate_self_with(
    app: &TestApp,
    key: &str,
    grace_s: Option<i64>,
    extra: &[(&'static str, &str)],
) -> Result<pb::RotateKeyResponse, tonic::Status> {
    let mut req = Request::new(pb::RotateSelfRequest {
        grace_period: grace_s.map(secs),
    });
    let auth = format!("Bearer {key}").parse().expect("ascii");
    req.metadata_mut().insert("authorization", auth);
    for (k, v) in extra {
        req.metadata_mut().insert(*k, v.parse().expect("ascii"));
    }
    let mut admin = KeyAdminClient::new(app.admin_channel.clone());
    admin.rotate_self(req).await.map(|r| r.into_inner())
}

pub async fn rotate_self(
    app: &TestApp,
    key: &str,
    grace_s: Option<i64>,
) -> Result<pb::RotateKeyResponse, tonic::Status> {
    rotate_self_with(app, key, grace_s, &[]).await
}

fn ip_only(allow: &str, mode: RestrictionMode) -> pb::Restrictions {
    pb::Restrictions {
        ip: Some(pb::IpRestriction {
            allow: vec![allow.into()],
            mode: mode.into(),
        }),
        ..Default::default()
    }
}

pub async fn create(app: &TestApp, req: pb::CreateKeyRequest) -> (String, String) {
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_rot".into(),
            ..req
        })
        .await;
    (created.key.expect("key").id, created.secret)
}

pub async fn secret_key(app: &TestApp) -> (String, String) {
    create(app, Default::default()).await
}

/// The key is untouched: still valid from `ip`, and not rotated.
async fn untouched(app: &TestApp, id: &str, secret: &str, ip: &str) {
    let v = app.verify_from(secret, &[], ip, "", "").await;
    assert_eq!(v.code(), VerifyCode::Valid, "{v:?}");
    assert_eq!(app.get(id).await.rotated_to, "", "no successor");
}

pub async fn clocked(backend: Backend) -> (TestApp, std::sync::Arc<AtomicI64>) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| c.clock = clock).await;
    (app, now)
}

async fn publishable_keys_cannot_rotate_themselves(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    // Bound to the test's own address, so only the type can be the reason.
    let pk = pb::CreateKeyRequest {
        r#type: pb::KeyType::Publishable.into(),
        scopes: vec!["catalog:read".into()],
        restrictions: Some(ip_only("127.0.0.0/8", RestrictionMode::Enforce)),
        ..Default::default()
    };
    let (id, secret) = create(&app, pk.clone()).await;
    for grace in [Some(0), Some(2 * HOUR), None] {
        let denied = rotate_self(&app, &secret, grace)
            .await
            .expect_err("refused");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert_eq!(
            denied.message(),
            "publishable keys cannot rotate themselves"
        );
    }
    untouched(&app, &id, &secret, "127.0.0.1").await;
    // A revoked publishable key gets the very same answer: the refusal says
    // nothing about whether the key exists or lives.
    let (gone, gone_secret) = create(&app, pk).await;
    app.revoke(&gone).await;
    let denied = rotate_self(&app, &gone_secret, None)
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        denied.message(),
        "publishable keys cannot rotate themselves"
    );
}

async fn ip_restriction_binds_self_rotation(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let outside = pb::CreateKeyRequest {
        restrictions: Some(ip_only("10.20.0.0/16", RestrictionMode::Enforce)),
        ..Default::default()
    };
    let (id, secret) = create(&app, outside).await;
    // The caller is 127.0.0.1; what it claims in metadata does not count.
    let claims = [
        &[][..],
        &[("x-forwarded-for", "10.20.0.5")][..],
        &[("x-real-ip", "10.20.0.5"), ("forwarded", "for=10.20.0.5")][..],
    ];
    for extra in claims {
        let denied = rotate_self_with(&app, &secret, Some(2 * HOUR), extra)
            .await
            .expect_err("outside the key's range");
        assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
        assert!(
            !denied.message().contains("10.20"),
            "the refusal names no allowlist: {}",
            denied.message()
        );
    }
    untouched(&app, &id, &secret, "10.20.1.1").await;
    // Nor does it learn the key's history: once rotated, still only this.
    let req = pb::RotateKeyRequest {
        id: id.clone(),
        ..Default::default()
    };
    app.admin.clone().rotate_key(req).await.expect("admin");
    let denied = rotate_self(&app, &secret, Some(2 * HOUR))
        .await
        .expect_err("outside, and rotated");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    // Inside its range (IPv4 written as a block), the key may rotate.
    let inside = pb::CreateKeyRequest {
        restrictions: Some(ip_only("127.0.0.0/8", RestrictionMode::Enforce)),
        ..Default::default()
    };
    let (_, secret) = create(&app, inside).await;
    let rotated = rotate_self(&app, &secret, Some(2 * HOUR))
        .await
        .expect("inside the range");
    let kept = rotated
        .key
        .expect("key")
        .restrictions
        .expect("restrictions");
    assert_eq!(kept.ip.expect("ip").allow, ["127.0.0.0/8"], "inherited");

    // A report-only rule never denies, here as on Verify.
    let report = pb::CreateKeyRequest {
        restrictions: Some(ip_only("10.20.0.0/16", RestrictionMode::ReportOnly)),
        ..Default::default()
    };
    let (_, secret) = create(&app, report).await;
    rotate_self(&app, &secret, Some(2 * HOUR))
        .await
        .expect("report-only does not deny");
}

async fn grace_period_has_a_floor(backend: Backend) {
    let (app, now) = clocked(backend).await;
    let (id, secret) = secret_key(&app).await;
    for short in [0, 1, HOUR - 1] {
        let refused = rotate_self(&app, &secret, Some(short)).await;
        assert_status(refused, Code::InvalidArgument, "grace_period");
    }
    untouched(&app, &id, &secret, "").await;
    // An admin still may end a key at once.
    let (admin_id, admin_secret) = secret_key(&app).await;
    let req = pb::RotateKeyRequest {
        id: admin_id,
        grace_period: Some(secs(0)),
        ..Default::default()
    };
    app.admin
        .clone()
        .rotate_key(req)
        .await
        .expect("admin, zero grace");
    assert_eq!(app.verify_code(&admin_secret).await, VerifyCode::Expired);

    let at = now.load(Ordering::SeqCst);
    let rotated = rotate_self(&app, &secret, Some(HOUR)).await.expect("1h");
    let previous = rotated.previous.expect("previous");
    let end = millis(&previous.expire_time.expect("grace end"));
    assert_eq!(end, at + HOUR * 1000);
    assert_eq!(app.verify_code(&secret).await, VerifyCode::Valid);
}

async fn self_rotation_is_limited_per_lineage(backend: Backend) {
    let (app, now) = clocked(backend).await;
    let (a_id, a) = secret_key(&app).await;
    let b = rotate_self(&app, &a, None).await.expect("first rotation");
    // Twenty chained attempts by the successor, at once: all refused.
    for _ in 0..20 {
        let refused = rotate_self(&app, &b.secret, None)
            .await
            .expect_err("chained");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    }
    // The old key (in its grace period) cannot fork the lineage either.
    let forked = rotate_self(&app, &a, None)
        .await
        .expect_err("already rotated");
    assert_eq!(forked.code(), Code::FailedPrecondition, "{forked:?}");
    let b_id = b.key.as_ref().expect("key").id.clone();
    assert!(!forked.message().contains(&b_id), "names no successor");
    assert_eq!(app.get(&a_id).await.rotated_to, b_id);
    assert_eq!(app.get(&b_id).await.rotated_to, "");

    now.fetch_add(59_999, Ordering::SeqCst);
    let refused = rotate_self(&app, &b.secret, None)
        .await
        .expect_err("59.999 s");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    now.fetch_add(1, Ordering::SeqCst);
    let c = rotate_self(&app, &b.secret, None)
        .await
        .expect("a minute on");
    let refused = rotate_self(&app, &c.secret, None).await.expect_err("again");
    assert_eq!(refused.code(), Code::ResourceExhausted);

    // An admin's rotation starts the lineage's minute too.
    now.fetch_add(60_000, Ordering::SeqCst);
    let req = pb::RotateKeyRequest {
        id: c.key.expect("key").id,
        ..Default::default()
    };
    let d = app.admin.clone().rotate_key(req).await.expect("admin");
    let refused = rotate_self(&app, &d.into_inner().secret, None)
        .await
        .expect_err("right after the admin's rotation");
    assert_eq!(refused.code(), Code::ResourceExhausted);
}

async fn successor_never_outlives_the_key_it_replaced(backend: Backend) {
    let (app, now) = clocked(backend).await;
    let t0 = now.load(Ordering::SeqCst);
    let thirty_days = pb::CreateKeyRequest {
        ttl: Some(secs(30 * 86_400)),
        ..Default::default()
    };
    let (_, secret) = create(&app, thirty_days).await;
    let end = t0 + 30 * DAY_MS;
    now.fetch_add(10 * DAY_MS, Ordering::SeqCst);
    let b = rotate_self(&app, &secret, None).await.expect("self");
    let b_key = b.key.expect("key");
    assert_eq!(millis(b_key.expire_time.as_ref().expect("expiry")), end);

    // An admin's rotation keeps the absolute end too.
    now.fetch_add(10 * DAY_MS, Ordering::SeqCst);
    let req = pb::RotateKeyRequest {
        id: b_key.id.clone(),
        ..Default::default()
    };
    let c = app.admin.clone().rotate_key(req).await.expect("admin");
    let c_key = c.into_inner().key.expect("key");
    assert_eq!(millis(c_key.expire_time.as_ref().expect("expiry")), end);

    // Only an admin's explicit expiry moves it, and successors keep that.
    let later = keysmith::grpc::wkt::Timestamp {
        seconds: (t0 + 90 * DAY_MS) / 1000,
        nanos: 0,
    };
    let req = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: c_key.id.clone(),
            expire_time: Some(later),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["expire_time".into()],
        }),
    };
    app.admin.clone().update_key(req).await.expect("extend");
    let req = pb::RotateKeyRequest {
        id: c_key.id,
        ..Default::default()
    };
    let d = app.admin.clone().rotate_key(req).await.expect("admin");
    let d_key = d.into_inner().key.expect("key");
    let d_end = millis(d_key.expire_time.as_ref().expect("expiry"));
    assert_eq!(d_end, (t0 + 90 * DAY_MS) / 1000 * 1000);

    // A key without an end gives its successors none.
    let (_, forever) = secret_key(&app).await;
    let e = rotate_self(&app, &forever, None).await.expect("self");
    assert_eq!(e.key.expect("key").expire_time, None);
}

/// A scheduled rotation's `expire` action pulls a key's expiry in so that
/// its holder rotates; the successor must not inherit that push.
async fn scheduled_expiry_is_not_passed_to_the_successor(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = std::time::Duration::from_millis(20);
        c.jobs.default_rotation = Some(
            keysmith::domain::KeyRotation::every(std::time::Duration::from_secs(30 * 86_400), true)
                .expect("policy"),
        );
    })
    .await;
    let t0 = now.load(Ordering::SeqCst);
    let year = pb::CreateKeyRequest {
        ttl: Some(secs(365 * 86_400)),
        ..Default::default()
    };
    let (id, secret) = create(&app, year).await;
    let end = t0 + 365 * DAY_MS;
    now.fetch_add(30 * DAY_MS, Ordering::SeqCst);
    crate::helpers::eventually("the due action to pull the expiry in", || async {
        app.get(&id)
            .await
            .expire_time
            .is_some_and(|t| millis(&t) < end)
    })
    .await;
    let rotated = rotate_self(&app, &secret, None).await.expect("self");
    let successor = rotated.key.expect("key").expire_time.expect("expiry");
    assert_eq!(millis(&successor), end);
}

crate::backend_tests!(
    publishable_keys_cannot_rotate_themselves,
    ip_restriction_binds_self_rotation,
    grace_period_has_a_floor,
    self_rotation_is_limited_per_lineage,
    successor_never_outlives_the_key_it_replaced,
    scheduled_expiry_is_not_passed_to_the_successor,
);
