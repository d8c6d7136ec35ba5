//! A gateway for one keyspace: ext_authz takes the keyspace from the
//! route's context extensions, and WatchRevocations filters by it.

use std::time::Duration;

use keysmith::grpc::pb::{self, KeyEventKind};

use crate::{
    ext_authz::{check, check_request, summary},
    helpers::{Backend, TestApp, spawn},
    keyspaces::{key_in, keyspace},
};

fn for_keyspace(
    key: &str,
    keyspace: Option<&str>,
) -> envoy_types::pb::envoy::service::auth::v3::CheckRequest {
    let mut req = check_request(&[("x-api-key", key)], "203.0.113.9", "/x", "");
    if let (Some(ks), Some(attrs)) = (keyspace, req.attributes.as_mut()) {
        attrs
            .context_extensions
            .insert("keysmith_keyspace".into(), ks.into());
    }
    req
}

async fn ext_authz_accepts_only_the_routes_keyspace(backend: Backend) {
    let app = spawn(backend).await;
    let (public, partner) = (
        keyspace(&app, "public", Default::default()).await,
        keyspace(&app, "partner", Default::default()).await,
    );
    let key = key_in(&app, &public.id).await.secret;
    let allowed = |r: &envoy_types::pb::envoy::service::auth::v3::CheckResponse| summary(r).1;
    let on = |ks: Option<&'static str>| check(&app, for_keyspace(&key, ks));
    assert_eq!(allowed(&on(None).await), 200, "a route naming no keyspace");
    let own = check(&app, for_keyspace(&key, Some(&public.id))).await;
    assert_eq!(allowed(&own), 200);
    assert!(summary(&own).2.contains_key("x-keysmith-key-id"));

    // Another keyspace's route: refused exactly as a key never issued is.
    let unknown = keysmith::domain::ApiKey::generate_in(
        keysmith::domain::KeyPrefix::parse("public").ok(),
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("rng");
    let never_issued = check(
        &app,
        for_keyspace(unknown.expose_secret(), Some(&partner.id)),
    )
    .await;
    let outside = check(&app, for_keyspace(&key, Some(&partner.id))).await;
    assert_eq!(summary(&outside).1, 401);
    assert_eq!(outside, never_issued, "nothing tells the two apart");
    let nowhere = check(&app, for_keyspace(&key, Some("ks_nosuchkeyspace"))).await;
    assert_eq!(nowhere, never_issued);
    // A route whose keyspace is not an id is misconfigured: fail closed.
    let broken = check(&app, for_keyspace(&key, Some("public"))).await;
    assert_eq!(summary(&broken).1, 500);
}

async fn next(stream: &mut tonic::Streaming<pb::KeyEvent>) -> pb::KeyEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within the deadline")
        .expect("stream ok")
        .expect("stream open")
}

async fn watch(app: &TestApp, keyspace: &str) -> tonic::Streaming<pb::KeyEvent> {
    let req = pb::WatchRevocationsRequest {
        keyspace: keyspace.into(),
        ..Default::default()
    };
    app.verify
        .clone()
        .watch_revocations(req)
        .await
        .expect("watch")
        .into_inner()
}

async fn revocation_streams_carry_and_filter_by_keyspace(backend: Backend) {
    let app = spawn(backend).await;
    let (a, b) = (
        keyspace(&app, "alpha", Default::default()).await,
        keyspace(&app, "beta", Default::default()).await,
    );
    let mut only_a = watch(&app, &a.id).await;
    let mut all = watch(&app, "").await;
    let in_b = key_in(&app, &b.id).await.key.expect("key").id;
    let in_a = key_in(&app, &a.id).await.key.expect("key").id;
    app.revoke(&in_b).await;
    app.revoke(&in_a).await;
    let first = next(&mut only_a).await;
    assert_eq!(
        (first.key_id.as_str(), first.kind()),
        (in_a.as_str(), KeyEventKind::Revoked)
    );
    assert_eq!(first.keyspace, a.id);
    let e = next(&mut all).await;
    assert_eq!(
        (e.key_id.as_str(), e.keyspace.as_str()),
        (in_b.as_str(), b.id.as_str())
    );
    // The backlog is filtered as the live events are.
    let resumed = pb::WatchRevocationsRequest {
        after_cursor: Some(0),
        keyspace: b.id.clone(),
        all_changes: true,
        ..Default::default()
    };
    let mut backlog = app
        .verify
        .clone()
        .watch_revocations(resumed)
        .await
        .expect("watch")
        .into_inner();
    let created = next(&mut backlog).await;
    assert_eq!(
        (created.key_id.as_str(), created.kind()),
        (in_b.as_str(), KeyEventKind::Created)
    );
    let revoked = next(&mut backlog).await;
    assert_eq!(
        (revoked.key_id.as_str(), revoked.kind()),
        (in_b.as_str(), KeyEventKind::Revoked)
    );
    assert!(revoked.keyspace == b.id);
    // A malformed keyspace is refused before the stream starts.
    let bad = pb::WatchRevocationsRequest {
        keyspace: "beta".into(),
        ..Default::default()
    };
    crate::helpers::assert_status(
        app.verify.clone().watch_revocations(bad).await,
        tonic::Code::InvalidArgument,
        "keyspace",
    );
}

crate::backend_tests!(
    ext_authz_accepts_only_the_routes_keyspace,
    revocation_streams_carry_and_filter_by_keyspace,
);
