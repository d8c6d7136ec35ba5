//! A keyspace's defaults fill what CreateKey leaves unset, and its maximum
//! lifetime bounds every key in it.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Backend, assert_status, spawn},
    keyspaces::{keyspace, secs},
};

async fn keyspace_defaults_fill_what_create_key_leaves_unset(backend: Backend) {
    let app = spawn(backend).await;
    let ks = keyspace(
        &app,
        "billing",
        pb::KeyspaceDefaults {
            environment: pb::Environment::Live.into(),
            scopes: vec!["invoices:read".into()],
            rotation_policy: Some(pb::RotationPolicy {
                never: true,
                ..Default::default()
            }),
            grace_period: Some(secs(7200)),
            ttl: Some(secs(86_400)),
            restrictions: Some(pb::Restrictions {
                ip: Some(pb::IpRestriction {
                    allow: vec!["10.0.0.0/8".into()],
                    mode: pb::RestrictionMode::Enforce.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            keyspace: ks.id.clone(),
            ..Default::default()
        })
        .await;
    let key = created.key.expect("key");
    let defaulted = key.id.clone();
    assert_eq!(key.environment(), pb::Environment::Live);
    assert!(created.secret.starts_with("billing_sk_live_"));
    assert_eq!(key.scopes, vec!["invoices:read"]);
    assert!(key.rotation_policy.is_some_and(|r| r.never));
    assert_eq!(
        key.restrictions.and_then(|r| r.ip).map(|ip| ip.allow),
        Some(vec!["10.0.0.0/8".to_owned()])
    );
    let (created_at, expires) = (
        key.create_time.expect("created"),
        key.expire_time.expect("ttl"),
    );
    assert_eq!(expires.seconds - created_at.seconds, 86_400);
    let from = |ip: &'static str| app.verify_from(&created.secret, &["invoices:read"], ip, "", "");
    assert!(from("10.1.2.3").await.valid);
    assert_eq!(from("192.0.2.1").await.code(), pb::VerifyCode::IpNotAllowed);

    // What the request sets wins.
    let own = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            keyspace: ks.id.clone(),
            environment: pb::Environment::Test.into(),
            scopes: vec!["customers:read".into()],
            ttl: Some(secs(3600)),
            ..Default::default()
        })
        .await;
    let own_key = own.key.expect("key");
    assert!(own.secret.starts_with("billing_sk_test_"));
    assert_eq!(own_key.scopes, vec!["customers:read"]);
    let t = own_key.expire_time.expect("expiry").seconds - own_key.create_time.expect("c").seconds;
    assert_eq!(t, 3600);

    // RotateKey without a grace period takes the keyspace's (2 h, not 48 h).
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: defaulted,
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let previous = rotated.previous.expect("previous");
    let grace = previous.expire_time.expect("grace end").seconds
        - rotated
            .key
            .expect("successor")
            .create_time
            .expect("c")
            .seconds;
    assert!((7199..=7201).contains(&grace), "grace {grace}");
}

async fn the_maximum_lifetime_is_enforced(backend: Backend) {
    let app = spawn(backend).await;
    let day = 86_400;
    let ks = keyspace(
        &app,
        "short",
        pb::KeyspaceDefaults {
            max_lifetime: Some(secs(day)),
            ..Default::default()
        },
    )
    .await;
    let req = |ttl: Option<i64>, at: Option<i64>| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        keyspace: ks.id.clone(),
        ttl: ttl.map(secs),
        expire_time: at.map(|s| keysmith::grpc::wkt::Timestamp {
            seconds: s,
            nanos: 0,
        }),
        ..Default::default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let mut admin = app.admin.clone();
    assert_status(
        admin.create_key(req(Some(2 * day), None)).await,
        Code::InvalidArgument,
        "ttl",
    );
    assert_status(
        admin.create_key(req(None, Some(now + 2 * day))).await,
        Code::InvalidArgument,
        "expire_time",
    );
    // No expiry asked: the maximum. Within it: as asked.
    let capped = admin
        .create_key(req(None, None))
        .await
        .expect("create")
        .into_inner();
    let key = capped.key.expect("key");
    let life = key.expire_time.expect("expiry").seconds - key.create_time.expect("c").seconds;
    assert_eq!(life, day);
    let hour = admin
        .create_key(req(Some(3600), None))
        .await
        .expect("within");
    assert!(hour.into_inner().key.expect("key").expire_time.is_some());
    // UpdateKey cannot lift the limit either: not beyond it, not removed.
    for expire_time in [
        Some(keysmith::grpc::wkt::Timestamp {
            seconds: now + 2 * day,
            nanos: 0,
        }),
        None,
    ] {
        let update = pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id: key.id.clone(),
                expire_time,
                ..Default::default()
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: vec!["expire_time".into()],
            }),
        };
        assert_status(
            admin.update_key(update).await,
            Code::InvalidArgument,
            "key.expire_time",
        );
    }
}

crate::backend_tests!(
    keyspace_defaults_fill_what_create_key_leaves_unset,
    the_maximum_lifetime_is_enforced,
);
