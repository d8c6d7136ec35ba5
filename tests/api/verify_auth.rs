//! `--verify-auth required`: Verify, VerifyStream, ext_authz's Check and
//! WatchRevocations need an admin token with `verify` or `watch`;
//! UNAUTHENTICATED without one, PERMISSION_DENIED without the permission.
//! A token limited to owners sees only their keys there too.

use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use keysmith::{auth::VerifyAuth, grpc::pb};
use tonic::{Code, Request};

use crate::{
    ext_authz::{check_request, summary},
    helpers::{Backend, TestApp, spawn_with},
    token_support::{mint, names, with_permissions},
};

/// `msg` with `authorization: Bearer <token>`, when there is one.
fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("ascii");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

async fn verify(
    app: &TestApp,
    key: &str,
    token: Option<&str>,
) -> Result<pb::VerifyResponse, tonic::Status> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    app.verify
        .clone()
        .verify(with_token(req, token))
        .await
        .map(|r| r.into_inner())
}

fn code<T: std::fmt::Debug>(r: Result<T, tonic::Status>) -> (Code, String) {
    let s = r.expect_err("refused");
    (s.code(), s.message().to_owned())
}

/// The owner of a stream's next event.
async fn next_owner(s: &mut tonic::Streaming<pb::KeyEvent>) -> String {
    let e = tokio::time::timeout(Duration::from_secs(10), s.message()).await;
    e.expect("an event in time")
        .expect("ok")
        .expect("open")
        .owner_id
}

async fn key_of(app: &TestApp, owner: &str) -> String {
    let req = pb::CreateKeyRequest {
        owner_id: owner.into(),
        ..Default::default()
    };
    app.create(req).await.secret
}

async fn the_verify_listener_requires_a_token_with_the_permission(backend: Backend) {
    let app = spawn_with(backend, |c| c.verify_auth = VerifyAuth::Required).await;
    let key = key_of(&app, "acct_a").await;
    let theirs = key_of(&app, "acct_b").await;
    let gateway = mint(
        &app,
        &app.admin,
        with_permissions("gateway", names(&["verify"])),
    )
    .await;
    let reader = mint(
        &app,
        &app.admin,
        with_permissions("reader", names(&["keys.read"])),
    )
    .await;
    let watcher = mint(
        &app,
        &app.admin,
        with_permissions("watcher", names(&["watch"])),
    )
    .await;
    let req = pb::CreateAdminTokenRequest {
        owners: names(&["acct_a"]),
        ..with_permissions("a's gateway", names(&["verify", "watch"]))
    };
    let a_only = mint(&app, &app.admin, req).await;

    // Verify.
    let unauthenticated = code(verify(&app, &key, None).await);
    assert_eq!(unauthenticated.0, Code::Unauthenticated);
    assert_eq!(
        code(verify(&app, &key, Some("ksa_nonsense")).await),
        unauthenticated
    );
    let stranger = keysmith::domain::admin_token::AdminToken::generate().expect("rng");
    assert_eq!(
        code(verify(&app, &key, Some(stranger.expose_secret())).await),
        unauthenticated
    );
    assert_eq!(
        code(verify(&app, &key, Some(&reader.secret)).await),
        (Code::PermissionDenied, "this token lacks verify".to_owned())
    );
    assert!(
        verify(&app, &key, Some(&gateway.secret))
            .await
            .expect("verify")
            .valid
    );
    // A key outside the token's owners does not exist for it.
    assert!(
        verify(&app, &key, Some(&a_only.secret))
            .await
            .expect("mine")
            .valid
    );
    let outside = verify(&app, &theirs, Some(&a_only.secret))
        .await
        .expect("theirs");
    assert_eq!(
        (outside.valid, outside.code()),
        (false, pb::VerifyCode::NotFound)
    );
    assert!(
        outside.key_id.is_empty(),
        "nothing about the key: {outside:?}"
    );

    // VerifyStream: checked once, when it opens.
    let item = |id: u64, key: &str| pb::VerifyStreamRequest {
        id,
        request: Some(pb::VerifyRequest {
            key: key.into(),
            ..Default::default()
        }),
    };
    let open = |token: Option<&str>, items: Vec<pb::VerifyStreamRequest>| {
        let req = with_token(futures::stream::iter(items), token);
        let mut v = app.verify.clone();
        async move { v.verify_stream(req).await }
    };
    assert_eq!(
        code(open(None, vec![item(1, &key)]).await).0,
        Code::Unauthenticated
    );
    assert_eq!(
        code(open(Some(&watcher.secret), vec![item(1, &key)]).await).0,
        Code::PermissionDenied
    );
    let mut answers = open(Some(&gateway.secret), vec![item(1, &key), item(2, &theirs)])
        .await
        .expect("stream")
        .into_inner();
    for id in [1, 2] {
        let answer = answers.message().await.expect("ok").expect("an answer");
        assert_eq!(answer.id, id);
        let Some(pb::verify_stream_response::Result::Response(r)) = answer.result else {
            panic!("{answer:?}");
        };
        assert!(r.valid);
    }

    // ext_authz: the token rides on the gRPC call, the key in the HTTP headers.
    let check = |token: Option<&str>| {
        let bearer = format!("Bearer {key}");
        let req = check_request(&[("authorization", bearer.as_str())], "10.0.0.1", "/x", "");
        let mut c = AuthorizationClient::new(app.verify_channel.clone());
        let req = with_token(req, token);
        async move { c.check(req).await.map(|r| r.into_inner()) }
    };
    assert_eq!(code(check(None).await).0, Code::Unauthenticated);
    assert_eq!(
        code(check(Some(&watcher.secret)).await).0,
        Code::PermissionDenied
    );
    assert_eq!(
        summary(&check(Some(&gateway.secret)).await.expect("check")).1,
        200
    );

    // WatchRevocations needs `watch`, and sends only what the token may see.
    let watch = |token: Option<&str>| {
        let req = pb::WatchRevocationsRequest {
            all_changes: true,
            ..Default::default()
        };
        let mut v = app.verify.clone();
        let req = with_token(req, token);
        async move { v.watch_revocations(req).await }
    };
    assert_eq!(code(watch(None).await).0, Code::Unauthenticated);
    assert_eq!(
        code(watch(Some(&gateway.secret)).await),
        (Code::PermissionDenied, "this token lacks watch".to_owned())
    );
    let mut all = watch(Some(&watcher.secret))
        .await
        .expect("watch")
        .into_inner();
    let mut mine = watch(Some(&a_only.secret))
        .await
        .expect("watch")
        .into_inner();
    key_of(&app, "acct_b").await;
    key_of(&app, "acct_a").await;
    assert_eq!(next_owner(&mut all).await, "acct_b");
    assert_eq!(next_owner(&mut all).await, "acct_a");
    assert_eq!(
        next_owner(&mut mine).await,
        "acct_a",
        "acct_b's key was never sent"
    );

    // A token revoked mid-stream ends its stream at the next event.
    let req = pb::RevokeAdminTokenRequest {
        id: watcher.id.clone(),
        reason: String::new(),
        ..Default::default()
    };
    app.admin
        .clone()
        .revoke_admin_token(req)
        .await
        .expect("revoke");
    key_of(&app, "acct_a").await;
    let ended = tokio::time::timeout(Duration::from_secs(10), all.message())
        .await
        .expect("in time");
    assert_eq!(ended.expect_err("ended").code(), Code::Unauthenticated);
    assert_eq!(
        code(verify(&app, &key, Some(&watcher.secret)).await).0,
        Code::Unauthenticated
    );
}

crate::backend_tests!(the_verify_listener_requires_a_token_with_the_permission);
