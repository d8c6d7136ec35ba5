//! What a denied caller learns: the key id and the code, never who owns the
//! key, what it grants or what its metadata says. On Verify, VerifyStream and
//! ext_authz alike; and ext_authz's identity headers cannot be spoofed.

use envoy_types::pb::envoy::{
    config::core::v3::header_value_option::HeaderAppendAction,
    service::auth::v3::{CheckResponse, check_response::HttpResponse},
};
use keysmith::grpc::pb::{self, VerifyCode};

use crate::{
    ext_authz::{check, check_request, summary},
    helpers::{Backend, TestApp, spawn},
};

const NOTE: &str = "internal: customer on legal hold";

/// A key with an owner, scopes and an internal note, restricted to 10/8.
async fn noted_key(app: &TestApp) -> (String, String) {
    let created = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_secretive".into(),
            name: "noted".into(),
            r#type: pb::KeyType::Secret.into(),
            environment: pb::Environment::Live.into(),
            scopes: vec!["invoices:read".into()],
            metadata: [("note".to_string(), NOTE.to_string())].into(),
            expire_time: Some(in_a_day()),
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
    (created.key.expect("key").id, created.secret)
}

fn in_a_day() -> keysmith::grpc::wkt::Timestamp {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    keysmith::grpc::wkt::Timestamp {
        seconds: now.as_secs() as i64 + 86_400,
        nanos: 0,
    }
}

fn assert_bare_denial(v: &pb::VerifyResponse, id: &str, code: VerifyCode) {
    assert!(!v.valid);
    assert_eq!(v.code(), code);
    assert_eq!(
        v.key_id, id,
        "a denial names the key, for the gateway's log"
    );
    assert!(!v.detail.is_empty());
    assert_eq!(v.owner_id, "", "{code:?}");
    assert!(v.scopes.is_empty(), "{code:?}");
    assert!(v.metadata.is_empty(), "{code:?}");
    assert_eq!(v.environment(), pb::Environment::Unspecified, "{code:?}");
    assert_eq!(v.r#type(), pb::KeyType::Unspecified, "{code:?}");
    assert_eq!(v.expire_time, None, "{code:?}");
}

fn request(key: &str, ip: &str, scopes: &[&str]) -> pb::VerifyRequest {
    pb::VerifyRequest {
        key: key.into(),
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        client_ip: ip.into(),
        ..Default::default()
    }
}

async fn stream_answers(app: &TestApp, reqs: Vec<pb::VerifyRequest>) -> Vec<pb::VerifyResponse> {
    let items: Vec<_> = reqs
        .into_iter()
        .enumerate()
        .map(|(i, r)| pb::VerifyStreamRequest {
            id: i as u64,
            request: Some(r),
        })
        .collect();
    let mut answers = app
        .verify
        .clone()
        .verify_stream(futures::stream::iter(items))
        .await
        .expect("stream")
        .into_inner();
    let mut out = Vec::new();
    while let Some(a) = answers.message().await.expect("answer") {
        match a.result {
            Some(pb::verify_stream_response::Result::Response(r)) => out.push(r),
            other => panic!("unexpected {other:?}"),
        }
    }
    out
}

async fn denials_name_the_key_and_nothing_more(backend: Backend) {
    let app = spawn(backend).await;
    let (id, secret) = noted_key(&app).await;

    // Valid: everything a gateway acts on.
    let ok = app
        .verify_from(&secret, &["invoices:read"], "10.1.2.3", "", "")
        .await;
    assert!(ok.valid);
    assert_eq!(ok.owner_id, "acct_secretive");
    assert_eq!(ok.scopes, ["invoices:read"]);
    assert_eq!(ok.metadata["note"], NOTE);
    assert_eq!(ok.environment(), pb::Environment::Live);
    assert_eq!(ok.r#type(), pb::KeyType::Secret);
    assert!(ok.expire_time.is_some());

    let scope = app
        .verify_from(&secret, &["invoices:write"], "10.1.2.3", "", "")
        .await;
    assert_bare_denial(&scope, &id, VerifyCode::InsufficientScope);
    assert_eq!(scope.missing_scope, "invoices:write");
    let ip = app.verify_from(&secret, &[], "192.0.2.1", "", "").await;
    assert_bare_denial(&ip, &id, VerifyCode::IpNotAllowed);

    // The same on a stream.
    let streamed = stream_answers(
        &app,
        vec![
            request(&secret, "10.1.2.3", &["invoices:read"]),
            request(&secret, "192.0.2.1", &[]),
            request(&secret, "10.1.2.3", &["invoices:write"]),
        ],
    )
    .await;
    assert_eq!(streamed.len(), 3);
    assert!(streamed[0].valid);
    assert_eq!(streamed[0].metadata["note"], NOTE);
    assert_bare_denial(&streamed[1], &id, VerifyCode::IpNotAllowed);
    assert_bare_denial(&streamed[2], &id, VerifyCode::InsufficientScope);

    // Revoked: on both.
    app.revoke(&id).await;
    let revoked = app.verify_from(&secret, &[], "10.1.2.3", "", "").await;
    assert_bare_denial(&revoked, &id, VerifyCode::Revoked);
    let streamed = stream_answers(&app, vec![request(&secret, "10.1.2.3", &[])]).await;
    assert_bare_denial(&streamed[0], &id, VerifyCode::Revoked);
}

/// Everything a denied CheckResponse shows the client, as text.
fn denial_text(r: &CheckResponse) -> String {
    let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
        panic!("a denial: {r:?}")
    };
    assert!(r.dynamic_metadata.is_none(), "no metadata on a denial");
    let headers: Vec<String> = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .map(|h| format!("{}: {}", h.key, h.value))
        .collect();
    format!("{} {}", headers.join("\n"), d.body)
}

async fn ext_authz_denials_leak_no_identity(backend: Backend) {
    let app = spawn(backend).await;
    let (id, secret) = noted_key(&app).await;
    let cases = [("192.0.2.1", "", 403), ("10.1.2.3", "invoices:write", 403)];
    for (ip, scopes, http) in cases {
        let r = check(
            &app,
            check_request(&[("x-api-key", &secret)], ip, "/x", scopes),
        )
        .await;
        assert_eq!(summary(&r).1, http, "{ip} {scopes}");
        let text = denial_text(&r);
        for leak in ["acct_secretive", "invoices:read", NOTE, "x-keysmith-"] {
            assert!(!text.contains(leak), "{leak:?} in {text}");
        }
    }
    app.revoke(&id).await;
    let r = check(
        &app,
        check_request(&[("x-api-key", &secret)], "10.1.2.3", "/x", ""),
    )
    .await;
    assert_eq!(summary(&r).1, 401);
    let text = denial_text(&r);
    for leak in ["acct_secretive", "invoices:read", NOTE, "x-keysmith-"] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
}

async fn client_identity_headers_never_reach_the_upstream(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&["invoices:read"]).await;
    let id = created.key.expect("key").id;
    let r = check(
        &app,
        check_request(
            &[
                ("x-api-key", &created.secret),
                ("x-keysmith-owner-id", "acct_victim"),
                ("x-keysmith-key-id", "key_forged"),
                ("X-Keysmith-Admin", "true"),
                ("x-keysmith-tenant", "acct_victim"),
                ("x-ratelimit-remaining", "1000"),
                ("x-keysmithy", "not ours"),
                ("accept", "*/*"),
            ],
            "203.0.113.9",
            "/x",
            "",
        ),
    )
    .await;
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("allowed: {r:?}")
    };
    // Ours overwrite theirs, never append.
    let set: Vec<_> = ok
        .headers
        .iter()
        .map(|h| (h.header.as_ref().expect("h"), h.append_action))
        .collect();
    for (h, action) in &set {
        if h.key.starts_with("x-keysmith-") {
            assert_eq!(
                *action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                "{}",
                h.key
            );
        }
    }
    let value = |k: &str| {
        set.iter()
            .find(|(h, _)| h.key == k)
            .map(|(h, _)| h.value.as_str())
    };
    assert_eq!(value("x-keysmith-key-id"), Some(id.as_str()));
    assert_eq!(value("x-keysmith-owner-id"), Some("acct_test"));
    // Every other x-keysmith-* the client sent is removed, in any case.
    let mut removed: Vec<String> = ok
        .headers_to_remove
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    removed.sort();
    assert_eq!(
        removed,
        [
            "x-api-key",
            "x-keysmith-admin",
            "x-keysmith-tenant",
            "x-ratelimit-remaining"
        ],
        "ours are overwritten, not removed: Envoy removes after it sets"
    );
}

crate::backend_tests!(
    denials_name_the_key_and_nothing_more,
    ext_authz_denials_leak_no_identity,
    client_identity_headers_never_reach_the_upstream,
);
