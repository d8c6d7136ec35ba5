//! Keyspaces: their keys carry the prefix (and the checksum covers it),
//! take the keyspace's defaults and limits, and answer only in their own
//! keyspace. The prefix is final once the keyspace holds a key.

use std::time::Duration;

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    admin_audit::{acting_admin, audited},
    helpers::{Backend, TestApp, assert_status, spawn, spawn_with},
};

pub(crate) async fn keyspace(
    app: &TestApp,
    prefix: &str,
    defaults: pb::KeyspaceDefaults,
) -> pb::Keyspace {
    app.admin
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: format!("{prefix} API"),
            prefix: prefix.into(),
            defaults: Some(defaults),
            scopes: vec![],
            leak_response: None,
            legacy_formats: vec![],
        })
        .await
        .expect("create keyspace")
        .into_inner()
}

pub(crate) async fn key_in(app: &TestApp, keyspace: &str) -> pb::CreateKeyResponse {
    app.create(pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        environment: pb::Environment::Live.into(),
        keyspace: keyspace.into(),
        ..Default::default()
    })
    .await
}

pub(crate) fn secs(s: i64) -> keysmith::grpc::wkt::Duration {
    keysmith::grpc::wkt::Duration {
        seconds: s,
        nanos: 0,
    }
}

async fn verify_in(app: &TestApp, key: &str, keyspace: &str) -> pb::VerifyResponse {
    let req = pb::VerifyRequest {
        key: key.into(),
        keyspace: keyspace.into(),
        ..Default::default()
    };
    app.verify
        .clone()
        .verify(req)
        .await
        .expect("verify")
        .into_inner()
}

async fn keys_carry_the_prefix_and_the_checksum_covers_it(backend: Backend) {
    let app = spawn(backend).await;
    let acme = keyspace(&app, "acme", Default::default()).await;
    assert!(acme.id.starts_with("ks_"), "{}", acme.id);
    assert_eq!(
        acme.scanner_regex,
        r"\bacme_(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b"
    );
    // A neighbour whose prefix is one character away.
    keyspace(&app, "acmf", Default::default()).await;

    let created = key_in(&app, &acme.id).await;
    let secret = created.secret;
    let key = created.key.expect("key");
    assert!(secret.starts_with("acme_sk_live_"), "{secret}");
    assert_eq!(secret.len(), 5 + 57);
    assert!(key.hint.starts_with("acme_sk_live_…"), "{}", key.hint);
    assert_eq!(key.keyspace, acme.id);
    assert_eq!(app.get(&key.id).await.keyspace, acme.id);
    assert_eq!(app.verify_code(&secret).await, pb::VerifyCode::Valid);
    assert!(verify_in(&app, &secret, &acme.id).await.valid);

    // One character of the prefix changed (into another keyspace's prefix),
    // the prefix dropped, or a bare key's checksum under a prefix: all
    // caught by the checksum, before any lookup.
    for forged in [
        format!("acmf{}", &secret[4..]),
        secret[5..].to_owned(),
        format!("acme_{}", app.create_with_scopes(&[]).await.secret),
    ] {
        let v = app.verify_scopes(&forged, &[]).await;
        assert_eq!(v.code(), pb::VerifyCode::Malformed, "{forged}");
        assert_eq!(v.detail, "checksum mismatch");
    }
    let v = app
        .verify_scopes(&format!("Acme{}", &secret[4..]), &[])
        .await;
    assert_eq!(
        (v.code(), v.detail.as_str()),
        (pb::VerifyCode::Malformed, "unknown prefix")
    );

    // ListKeys filters by keyspace; a rotation stays in it, with its prefix.
    let listed = |ks: &str| {
        let req = pb::ListKeysRequest {
            keyspace: ks.into(),
            ..Default::default()
        };
        let admin = app.admin.clone();
        async move {
            let mut admin = admin;
            let keys = admin.list_keys(req).await.expect("list").into_inner().keys;
            keys.into_iter().map(|k| k.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(&acme.id).await, vec![key.id.clone()]);
    assert!(!listed("ks_default").await.contains(&key.id));
    let rotated = app
        .admin
        .clone()
        .rotate_key(pb::RotateKeyRequest {
            id: key.id.clone(),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner();
    let successor = rotated.key.expect("successor");
    assert_eq!(successor.keyspace, acme.id);
    assert!(rotated.secret.starts_with("acme_sk_live_"));
    assert!(verify_in(&app, &rotated.secret, &acme.id).await.valid);
}

async fn a_key_of_another_keyspace_answers_as_an_unknown_key(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.usage_flush_interval = Duration::from_millis(50);
    })
    .await;
    let (a, b) = (
        keyspace(&app, "alpha", Default::default()).await,
        keyspace(&app, "beta", Default::default()).await,
    );
    let created = key_in(&app, &a.id).await;
    let id = created.key.expect("key").id;
    let unknown = keysmith::domain::ApiKey::generate_in(
        keysmith::domain::KeyPrefix::parse("alpha").ok(),
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("rng");
    let never_issued = verify_in(&app, unknown.expose_secret(), &b.id).await;
    assert_eq!(never_issued.code(), pb::VerifyCode::NotFound);
    for other in [b.id.as_str(), "ks_default", "ks_nosuchkeyspace"] {
        // The whole answer, not only its code: no key id, no detail of its own.
        let outside = verify_in(&app, &created.secret, other).await;
        assert_eq!(outside, never_issued, "keyspace {other}");
    }
    // VerifyStream answers the same way.
    let item = pb::VerifyStreamRequest {
        id: 7,
        request: Some(pb::VerifyRequest {
            key: created.secret.clone(),
            keyspace: b.id.clone(),
            ..Default::default()
        }),
    };
    let mut answers = app
        .verify
        .clone()
        .verify_stream(futures::stream::iter([item]))
        .await
        .expect("stream")
        .into_inner();
    let first = answers.message().await.expect("answer").expect("one");
    assert_eq!(
        first.result,
        Some(pb::verify_stream_response::Result::Response(
            never_issued.clone()
        ))
    );
    // Counted as unknown keys (4 above, 1 on the stream), and not as uses
    // of the key; its one valid call in its own keyspace is.
    assert!(verify_in(&app, &created.secret, &a.id).await.valid);
    let usage = || async {
        let req = pb::GetKeyUsageRequest {
            id: id.clone(),
            ..Default::default()
        };
        let u = app
            .admin
            .clone()
            .get_key_usage(req)
            .await
            .expect("usage")
            .into_inner();
        u.totals.map_or(0, |t| t.total)
    };
    let not_found = || async {
        let req = pb::GetUnknownKeyStatsRequest::default();
        let s = app
            .admin
            .clone()
            .get_unknown_key_stats(req)
            .await
            .expect("stats");
        s.into_inner().not_found
    };
    crate::helpers::eventually("usage to be flushed", || async {
        usage().await == 1 && not_found().await == 5
    })
    .await;
    // A keyspace id that is not one is the caller's mistake.
    let req = pb::VerifyRequest {
        key: created.secret.clone(),
        keyspace: "alpha".into(),
        ..Default::default()
    };
    assert_status(
        app.verify.clone().verify(req).await,
        Code::InvalidArgument,
        "keyspace",
    );
}

async fn the_prefix_is_final_once_the_keyspace_holds_keys(backend: Backend) {
    let app = spawn(backend).await;
    let (auditor, actor) = acting_admin(&app).await;
    let ks = keyspace(&app, "draft", Default::default()).await;
    let update = |prefix: &str, paths: &[&str]| pb::UpdateKeyspaceRequest {
        keyspace: Some(pb::Keyspace {
            id: ks.id.clone(),
            name: "renamed".into(),
            prefix: prefix.into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    // Empty: the prefix may still change, and the change is audited.
    let changed = auditor
        .clone()
        .update_keyspace(update("final", &["prefix"]))
        .await
        .expect("prefix of an empty keyspace")
        .into_inner();
    assert_eq!(changed.prefix, "final");
    let changes = audited(&auditor, "keyspace.updated", &actor).await;
    assert_eq!(changes["prefix"]["new"], "final");
    assert_eq!(changes["keyspace_id"], ks.id.as_str());

    let created = key_in(&app, &ks.id).await;
    assert!(created.secret.starts_with("final_sk_live_"));
    assert_status(
        app.admin
            .clone()
            .update_keyspace(update("other", &["prefix"]))
            .await,
        Code::FailedPrecondition,
        "prefix",
    );
    // Everything else may still change, and the key still verifies.
    let renamed = app
        .admin
        .clone()
        .update_keyspace(update("", &["name"]))
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.prefix.as_str()),
        ("renamed", "final")
    );
    assert_eq!(
        app.verify_code(&created.secret).await,
        pb::VerifyCode::Valid
    );
    // The default keyspace's keys are bare, and stay so.
    let default = pb::UpdateKeyspaceRequest {
        keyspace: Some(pb::Keyspace {
            id: "ks_default".into(),
            prefix: "dflt".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["prefix".into()],
        }),
    };
    assert_status(
        app.admin.clone().update_keyspace(default).await,
        Code::FailedPrecondition,
        "prefix",
    );
    // The creation was audited too, with the acting token.
    auditor
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "audited".into(),
            prefix: "audited".into(),
            ..Default::default()
        })
        .await
        .expect("create");
    let changes = audited(&auditor, "keyspace.created", &actor).await;
    assert_eq!(changes["prefix"], "audited");
}

crate::backend_tests!(
    keys_carry_the_prefix_and_the_checksum_covers_it,
    a_key_of_another_keyspace_answers_as_an_unknown_key,
    the_prefix_is_final_once_the_keyspace_holds_keys,
);
