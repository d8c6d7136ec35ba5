//! A change of restrictions reaches the default WatchRevocations stream as
//! RESTRICTIONS_CHANGED, so a gateway that caches keys checks them again.

use std::time::Duration;

use keysmith::grpc::pb::{self, KeyEventKind, RestrictionMode};
use tonic::Streaming;

use crate::helpers::{Backend, TestApp, spawn};

async fn next(stream: &mut Streaming<pb::KeyEvent>) -> pb::KeyEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within the deadline")
        .expect("stream ok")
        .expect("stream open")
}

async fn set_restrictions(app: &TestApp, id: &str, r: pb::Restrictions) {
    let req = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: id.into(),
            restrictions: Some(r),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["restrictions".into()],
        }),
    };
    app.admin.clone().update_key(req).await.expect("update");
}

/// Asserts the next event is `kind` for `id`. A revocation of a sentinel
/// key follows each change, so a change that is not announced shows as the
/// sentinel's event arriving first, not as a wait.
async fn announced(
    app: &TestApp,
    events: &mut Streaming<pb::KeyEvent>,
    id: &str,
    kind: KeyEventKind,
) {
    let sentinel = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&sentinel).await;
    let e = next(events).await;
    assert_eq!((e.key_id.as_str(), e.kind()), (id, kind), "{e:?}");
    let e = next(events).await;
    assert_eq!((e.kind(), e.key_id), (KeyEventKind::Revoked, sentinel));
}

async fn restrictions_changes_reach_the_default_stream(backend: Backend) {
    let app = spawn(backend).await;
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;
    let mut events = app
        .verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();

    let ip = pb::IpRestriction {
        allow: vec!["10.0.0.0/8".into()],
        mode: RestrictionMode::Enforce.into(),
    };
    let with_ip = pb::Restrictions {
        ip: Some(ip.clone()),
        ..Default::default()
    };
    set_restrictions(&app, &id, with_ip).await;
    announced(&app, &mut events, &id, KeyEventKind::RestrictionsChanged).await;

    let rate = pb::RateLimit {
        requests: 10,
        period: Some(keysmith::grpc::wkt::Duration {
            seconds: 60,
            nanos: 0,
        }),
        burst: 10,
        mode: RestrictionMode::Enforce.into(),
    };
    let with_rate = pb::Restrictions {
        ip: Some(ip),
        rate_limit: Some(rate),
        ..Default::default()
    };
    set_restrictions(&app, &id, with_rate).await;
    announced(&app, &mut events, &id, KeyEventKind::RestrictionsChanged).await;

    // Loosening is announced too: what a gateway cached is no longer true.
    set_restrictions(&app, &id, pb::Restrictions::default()).await;
    announced(&app, &mut events, &id, KeyEventKind::RestrictionsChanged).await;
}

crate::backend_tests!(restrictions_changes_reach_the_default_stream);
