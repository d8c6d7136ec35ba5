//! Create, rotate, revoke, disable and update, as Verify sees them.

use keysmith::grpc::pb::{self, KeyState, VerifyCode};
use tonic::Code;

use crate::helpers::{Backend, assert_status, spawn};

async fn created_key_verifies_with_its_details(backend: Backend) {
    let app = spawn(backend).await;
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_123".into(),
            name: "billing".into(),
            r#type: pb::KeyType::Publishable.into(),
            environment: pb::Environment::Test.into(),
            scopes: vec!["invoices:read".into()],
            metadata: [("team".to_string(), "billing".to_string())].into(),
            restrictions: Some(pb::Restrictions {
                referrer: Some(pb::ReferrerRestriction {
                    allow: vec!["shop.example.com".into()],
                    mode: pb::RestrictionMode::Enforce.into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    assert!(created.secret.starts_with("pk_test_"));
    let key = created.key.expect("key");
    assert_eq!(key.state(), KeyState::Active);
    assert_eq!(
        key.hint,
        format!("pk_test_…{}", &created.secret[created.secret.len() - 4..])
    );

    let req = pb::VerifyRequest {
        key: created.secret.clone(),
        required_scopes: vec!["invoices:read".into()],
        referrer: "https://shop.example.com/cart".into(),
        ..Default::default()
    };
    let v = app
        .verify
        .clone()
        .verify(req)
        .await
        .expect("verify")
        .into_inner();
    assert!(v.valid);
    assert_eq!(v.code(), VerifyCode::Valid);
    assert_eq!(v.key_id, key.id);
    assert_eq!(v.owner_id, "acct_123");
    assert_eq!(v.scopes, vec!["invoices:read"]);
    assert_eq!(v.environment(), pb::Environment::Test);
    assert_eq!(v.r#type(), pb::KeyType::Publishable);
    assert_eq!(v.metadata.get("team").map(String::as_str), Some("billing"));
}

async fn rotation_overlaps_then_links_both_keys(backend: Backend) {
    let app = spawn(backend).await;
    let old = app.create_with_scopes(&["invoices:*"]).await;
    let old_id = old.key.expect("key").id;
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: old_id.clone(),
            grace_period: Some(keysmith::grpc::wkt::Duration {
                seconds: 3600,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let new_key = rotated.key.expect("new key");
    let previous = rotated.previous.expect("previous");
    assert_ne!(rotated.secret, old.secret);
    assert_eq!(new_key.rotated_from, old_id);
    assert_eq!(previous.rotated_to, new_key.id);
    assert_eq!(new_key.scopes, vec!["invoices:*"]);
    assert_eq!(new_key.owner_id, previous.owner_id);

    // The old key's expiry is now + grace: within the hour from the rotation.
    let expire = previous.expire_time.expect("old key expires").seconds;
    let rotated_at = new_key.create_time.expect("create time").seconds;
    assert!(
        (3599..=3601).contains(&(expire - rotated_at)),
        "grace end {expire} vs {rotated_at}"
    );

    // Both keys work during the overlap.
    assert_eq!(app.verify_code(&old.secret).await, VerifyCode::Valid);
    assert_eq!(
        app.verify_scopes(&rotated.secret, &["invoices:read"])
            .await
            .code(),
        VerifyCode::Valid
    );

    // GetKey shows the link from both sides.
    assert_eq!(app.get(&old_id).await.rotated_to, new_key.id);
    assert_eq!(app.get(&new_key.id).await.rotated_from, old_id);

    // A key rotates once; the successor is the one to rotate next.
    let again = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: old_id,
            grace_period: None,
            ..Default::default()
        })
        .await;
    assert_status(again, Code::FailedPrecondition, &new_key.id);
}

async fn zero_grace_expires_the_old_key_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let old = app.create_with_scopes(&[]).await;
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: old.key.expect("key").id,
            grace_period: Some(keysmith::grpc::wkt::Duration::default()),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    assert_eq!(app.verify_code(&old.secret).await, VerifyCode::Expired);
    assert_eq!(app.verify_code(&rotated.secret).await, VerifyCode::Valid);
}

async fn default_grace_is_48_hours(backend: Backend) {
    let app = spawn(backend).await;
    let old = app.create_with_scopes(&[]).await;
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: old.key.expect("key").id,
            grace_period: None,
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let prev = rotated.previous.expect("previous");
    let grace =
        prev.expire_time.expect("expiry").seconds - prev.update_time.expect("update").seconds;
    assert!(
        (48 * 3600 - 1..=48 * 3600).contains(&grace),
        "grace {grace}"
    );
}

async fn revoked_key_is_rejected_at_once(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&[]).await;
    let id = created.key.expect("key").id;
    let revoked = app
        .admin
        .clone()
        .revoke_key(pb::RevokeKeyRequest {
            id: id.clone(),
            reason: "leaked in a log".into(),
            ..Default::default()
        })
        .await
        .expect("revoke")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(revoked.state(), KeyState::Revoked);
    assert_eq!(revoked.revoke_reason, "leaked in a log");
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Revoked);

    // Revoking again is a no-op, and a revoked key cannot come back.
    let again = app
        .admin
        .clone()
        .revoke_key(pb::RevokeKeyRequest {
            id: id.clone(),
            reason: "again".into(),
            ..Default::default()
        })
        .await
        .expect("second revoke")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(again.version, revoked.version);
    assert_eq!(again.revoke_reason, "leaked in a log");
    let enable = app
        .admin
        .clone()
        .enable_key(pb::EnableKeyRequest { id: id.clone() })
        .await;
    assert_status(enable, Code::FailedPrecondition, "revoked");
    let rotate = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id,
            grace_period: None,
            ..Default::default()
        })
        .await;
    assert_status(rotate, Code::FailedPrecondition, "revoked");
}

async fn disabled_key_is_refused_until_enabled(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&[]).await;
    let id = created.key.expect("key").id;
    let mut admin = app.admin.clone();
    admin
        .disable_key(pb::DisableKeyRequest {
            id: id.clone(),
            reason: "investigating".into(),
        })
        .await
        .expect("disable");
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Disabled);
    let key = admin
        .enable_key(pb::EnableKeyRequest { id })
        .await
        .expect("enable")
        .into_inner();
    assert_eq!(key.key.expect("key").state(), KeyState::Active);
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Valid);
}

async fn narrowing_scopes_takes_effect_on_next_verify(backend: Backend) {
    let app = spawn(backend).await;
    let created = app
        .create_with_scopes(&["invoices:read", "invoices:write"])
        .await;
    let id = created.key.expect("key").id;
    let updated = app
        .admin
        .clone()
        .update_key(pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id,
                name: "renamed".into(),
                scopes: vec!["invoices:read".into()],
                ..Default::default()
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: vec!["scopes".into(), "name".into()],
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.version, 2);
    let denied = app
        .verify_scopes(&created.secret, &["invoices:write"])
        .await;
    assert_eq!(denied.code(), VerifyCode::InsufficientScope);
    assert_eq!(denied.missing_scope, "invoices:write");
    assert_eq!(
        app.verify_scopes(&created.secret, &["invoices:read"])
            .await
            .code(),
        VerifyCode::Valid
    );
}

async fn expiry_is_judged_at_verify_time(backend: Backend) {
    let app = spawn(backend).await;
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            ttl: Some(keysmith::grpc::wkt::Duration {
                seconds: 1,
                nanos: 0,
            }),
            ..Default::default()
        })
        .await;
    let expires = created.key.expect("key").expire_time.expect("expiry");
    // No change event marks the expiry: the index answers EXPIRED once the
    // clock passes it.
    crate::helpers::eventually("the key to expire", || async {
        app.verify_code(&created.secret).await == VerifyCode::Expired
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(now >= expires.seconds, "expired before its time");
}

async fn concurrent_rotations_make_exactly_one_successor(backend: Backend) {
    let app = spawn(backend).await;
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;
    let attempts = (0..8).map(|_| {
        let mut admin = app.admin.clone();
        let id = id.clone();
        async move {
            admin
                .rotate_key(pb::RotateKeyRequest {
                    id,
                    grace_period: None,
                    ..Default::default()
                })
                .await
        }
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "exactly one rotation wins: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(r.code(), Code::FailedPrecondition | Code::Unavailable),
            "{r:?}"
        );
    }
    let successor = &results
        .iter()
        .find_map(|r| r.as_ref().ok())
        .expect("winner")
        .get_ref();
    let successor_id = &successor.key.as_ref().expect("key").id;
    assert_eq!(app.get(&id).await.rotated_to, *successor_id);
    // The replies say one rotation won; the store must agree: a losing
    // attempt that still wrote its new key would leave an orphan here.
    let keys = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest {
            owner_id: "acct_test".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .keys;
    let ids: Vec<&str> = keys.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(keys.len(), 2, "the key and one successor: {ids:?}");
    let successors: Vec<&str> = keys
        .iter()
        .filter(|k| k.rotated_from == id)
        .map(|k| k.id.as_str())
        .collect();
    assert_eq!(successors, [successor_id.as_str()], "{ids:?}");
}

crate::backend_tests!(
    created_key_verifies_with_its_details,
    rotation_overlaps_then_links_both_keys,
    zero_grace_expires_the_old_key_at_once,
    default_grace_is_48_hours,
    revoked_key_is_rejected_at_once,
    disabled_key_is_refused_until_enabled,
    narrowing_scopes_takes_effect_on_next_verify,
    expiry_is_judged_at_verify_time,
    concurrent_rotations_make_exactly_one_successor,
);
