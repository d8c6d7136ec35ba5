//! Envoy ext_authz (`envoy.service.auth.v3.Authorization/Check`), driven by
//! a generated client the way Envoy calls it.

use std::collections::HashMap;

use envoy_types::pb::{
    envoy::{
        config::core::v3::{Address, SocketAddress, address},
        service::auth::v3::{
            AttributeContext, CheckRequest, CheckResponse, attribute_context,
            authorization_client::AuthorizationClient, check_response::HttpResponse,
        },
    },
    google::protobuf::value::Kind,
};
use keysmith::grpc::pb;

use crate::helpers::{Backend, TestApp, spawn};

pub(crate) fn check_request(
    headers: &[(&str, &str)],
    ip: &str,
    path: &str,
    scopes: &str,
) -> CheckRequest {
    let source = attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    let mut context_extensions = HashMap::new();
    if !scopes.is_empty() {
        context_extensions.insert("keysmith_scopes".to_string(), scopes.to_string());
    }
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(source),
            request: Some(attribute_context::Request {
                http: Some(http),
                ..Default::default()
            }),
            context_extensions,
            ..Default::default()
        }),
    }
}

pub(crate) async fn check(app: &TestApp, req: CheckRequest) -> CheckResponse {
    let mut client = AuthorizationClient::new(app.verify_channel.clone());
    client.check(req).await.expect("check").into_inner()
}

/// (grpc code, http status, headers) of a denial; http 200 for an allow.
pub(crate) fn summary(r: &CheckResponse) -> (i32, i32, HashMap<String, String>) {
    let code = r.status.as_ref().map_or(-1, |s| s.code);
    match &r.http_response {
        Some(HttpResponse::DeniedResponse(d)) => {
            let headers = d
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            (code, d.status.as_ref().map_or(0, |s| s.code), headers)
        }
        Some(HttpResponse::OkResponse(ok)) => {
            let headers = ok
                .headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .map(|h| (h.key.clone(), h.value.clone()))
                .collect();
            (code, 200, headers)
        }
        _ => (code, 0, HashMap::new()),
    }
}

async fn allows_valid_keys_and_passes_identity_upstream(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&["invoices:read"]).await;
    let id = created.key.expect("key").id;

    let r = check(
        &app,
        check_request(
            &[("x-api-key", &created.secret)],
            "203.0.113.9",
            "/acct_1/x",
            "invoices:read",
        ),
    )
    .await;
    let (code, http, headers) = summary(&r);
    assert_eq!((code, http), (0, 200));
    assert_eq!(headers["x-keysmith-key-id"], id);
    assert_eq!(headers["x-keysmith-owner-id"], "acct_test");
    assert_eq!(headers["x-keysmith-scopes"], "invoices:read");
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("ok response")
    };
    assert_eq!(
        ok.headers_to_remove,
        ["x-api-key"],
        "the key does not go upstream"
    );
    let metadata = r.dynamic_metadata.expect("metadata");
    assert!(matches!(&metadata.fields["key_id"].kind, Some(Kind::StringValue(v)) if *v == id));

    let bearer = format!("Bearer {}", created.secret);
    let r = check(
        &app,
        check_request(&[("authorization", &bearer)], "203.0.113.9", "/", ""),
    )
    .await;
    assert_eq!(summary(&r).1, 200);
    let Some(HttpResponse::OkResponse(ok)) = &r.http_response else {
        panic!("ok response")
    };
    assert_eq!(ok.headers_to_remove, ["authorization"]);
}

async fn denies_with_the_right_http_status(backend: Backend) {
    let app = spawn(backend).await;
    let plain = app.create_with_scopes(&["invoices:read"]).await;
    let revoked = app.create_with_scopes(&[]).await;
    app.revoke(&revoked.key.expect("key").id).await;
    let restricted = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            restrictions: Some(pb::Restrictions {
                ip: Some(pb::IpRestriction {
                    allow: vec!["10.0.0.0/8".into()],
                    mode: 0,
                }),
                rate_limit: Some(pb::RateLimit {
                    requests: 1,
                    period: Some(keysmith::grpc::wkt::Duration {
                        seconds: 3600,
                        nanos: 0,
                    }),
                    burst: 1,
                    mode: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    let unknown = keysmith::domain::ApiKey::generate(
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("rng");

    let cases: Vec<(Option<&str>, &str, &str, i32, i32)> = vec![
        (None, "10.0.0.1", "", 16, 401),
        (Some("sk_live_garbage"), "10.0.0.1", "", 16, 401),
        (Some(unknown.expose_secret()), "10.0.0.1", "", 16, 401),
        (Some(&revoked.secret), "10.0.0.1", "", 16, 401),
        (Some(&plain.secret), "10.0.0.1", "invoices:write", 7, 403),
        (Some(&restricted.secret), "192.0.2.1", "", 7, 403),
    ];
    for (key, ip, scopes, grpc, http) in cases {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let r = check(&app, check_request(&headers, ip, "/x", scopes)).await;
        let (code, status, h) = summary(&r);
        assert_eq!((code, status), (grpc, http), "{ip} {scopes}");
        if http == 401 {
            assert!(
                h["www-authenticate"].starts_with("Bearer realm=\"keysmith\""),
                "{h:?}"
            );
        }
    }
    // The rate limit: one call, then 429 with retry-after.
    let ok = check(
        &app,
        check_request(&[("x-api-key", &restricted.secret)], "10.1.1.1", "/x", ""),
    )
    .await;
    assert_eq!(summary(&ok).1, 200);
    let limited = check(
        &app,
        check_request(&[("x-api-key", &restricted.secret)], "10.1.1.1", "/x", ""),
    )
    .await;
    let (code, status, h) = summary(&limited);
    assert_eq!((code, status), (8, 429));
    let retry: u64 = h["retry-after"].parse().expect("seconds");
    assert!((3500..=3600).contains(&retry), "{retry}");
}

/// A route whose `keysmith_scopes` cannot be parsed denies everyone, even a
/// key with every scope, and says the route is at fault.
async fn malformed_scopes_extension_fails_closed(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&["*"]).await;
    let too_many = vec!["a:read"; keysmith::domain::MAX_SCOPES + 1].join(" ");
    for scopes in [
        "invoices:read bad!scope",
        "INVOICES:READ",
        "a::b",
        too_many.as_str(),
    ] {
        let r = check(
            &app,
            check_request(
                &[("x-api-key", &created.secret)],
                "203.0.113.9",
                "/x",
                scopes,
            ),
        )
        .await;
        let (code, http, _) = summary(&r);
        assert_eq!((code, http), (7, 500), "{scopes:?}");
        let Some(HttpResponse::DeniedResponse(d)) = &r.http_response else {
            panic!("a denial for {scopes:?}")
        };
        let body: serde_json::Value = serde_json::from_str(&d.body).expect("json body");
        assert_eq!(body["error"], "route_misconfigured");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("keysmith_scopes")),
            "{body}"
        );
    }
    // The same key passes on a route whose scopes parse.
    let r = check(
        &app,
        check_request(
            &[("x-api-key", &created.secret)],
            "203.0.113.9",
            "/x",
            "invoices:read, a:read",
        ),
    )
    .await;
    assert_eq!(summary(&r).1, 200);
}

crate::backend_tests!(
    allows_valid_keys_and_passes_identity_upstream,
    denies_with_the_right_http_status,
    malformed_scopes_extension_fails_closed,
);
