//! The admin API refuses calls without a valid bearer token.

use keysmith::grpc::pb::{self, key_admin_client::KeyAdminClient};
use tonic::{Code, Request};

use crate::helpers::{Backend, spawn, spawn_with};

async fn admin_calls_need_a_valid_token(backend: Backend) {
    let app = spawn(backend).await;
    let mut bare = KeyAdminClient::new(app.admin_channel.clone());
    let list = || pb::ListKeysRequest::default();

    let missing = bare.list_keys(list()).await.expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);

    for header in [
        "Bearer ksa_not_a_real_token",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        &app.token,
    ] {
        let mut req = Request::new(list());
        req.metadata_mut()
            .insert("authorization", header.parse().expect("ascii"));
        let status = bare.list_keys(req).await.expect_err("bad token");
        assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
    }

    let mut req = Request::new(list());
    let good = format!("bearer {}", app.token);
    req.metadata_mut()
        .insert("authorization", good.parse().expect("ascii"));
    bare.list_keys(req)
        .await
        .expect("a valid token, scheme in any case");
}

async fn verify_needs_no_admin_token(backend: Backend) {
    let app = spawn(backend).await;
    let key = app.create_with_scopes(&[]).await.secret;
    // `app.verify` carries no authorization header.
    assert!(app.verify_scopes(&key, &[]).await.valid);
}

/// Guessing tokens from one address stops after the limit: later calls from
/// it are refused without a lookup, even with the right token, and the
/// first failure and the block are in the audit log.
async fn failed_authentications_are_limited_per_peer_and_audited(backend: Backend) {
    let app = spawn_with(backend, |c| c.auth_limits.max_failures = 5).await;
    let mut bare = KeyAdminClient::new(app.admin_channel.clone());
    for i in 0..5 {
        // Well-formed, so each one is looked up; the last is malformed.
        let guess = if i < 4 {
            let t = keysmith::domain::admin_token::AdminToken::generate().expect("rng");
            format!("Bearer {}", t.expose_secret())
        } else {
            "Bearer ksa_' OR 1=1 --".to_owned()
        };
        let mut req = Request::new(pb::ListKeysRequest::default());
        req.metadata_mut()
            .insert("authorization", guess.parse().expect("ascii"));
        let status = bare.list_keys(req).await.expect_err("wrong token");
        assert_eq!(status.code(), Code::Unauthenticated, "guess {i}");
    }
    let blocked = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect_err("this address is blocked");
    assert_eq!(blocked.code(), Code::ResourceExhausted, "{blocked:?}");
    assert!(blocked.message().contains("retry in"), "{blocked:?}");

    let store = keysmith::app::open_store(&app.db.config, false)
        .await
        .expect("store");
    let events = store.audit_chain(0, 1000).await.expect("audit events");
    let auth: Vec<_> = events
        .iter()
        .filter(|e| e.action.starts_with("admin.auth"))
        .map(|e| (e.action.as_str(), e.actor.as_str(), e.reason.as_deref()))
        .collect();
    assert_eq!(
        auth,
        [
            ("admin.auth_failed", "peer:127.0.0.1", Some("unknown token")),
            (
                "admin.auth_blocked",
                "peer:127.0.0.1",
                Some("malformed token")
            ),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.key_id.is_none() || !e.action.starts_with("admin"))
    );
}

crate::backend_tests!(
    admin_calls_need_a_valid_token,
    verify_needs_no_admin_token,
    failed_authentications_are_limited_per_peer_and_audited,
);
