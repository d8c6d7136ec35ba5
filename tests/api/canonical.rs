//! One canonical form for resources, on Verify and ext_authz alike: never
//! decoded, so no encoding, separator or path parameter walks out of an
//! allowlisted prefix.

use keysmith::grpc::pb::{self, VerifyCode};
use tonic::Code;

use crate::{
    ext_authz::{check, check_request, summary},
    helpers::{Backend, TestApp, assert_status, spawn},
};

/// Resources that some layer downstream could read as outside `acct_123/`.
const BYPASSES: &[&str] = &[
    "acct_123/%2e%2e/acct_456/invoices",
    "acct_123/x%2F..%2F..%2Facct_456",
    "acct_123/%2E%2E/acct_456",
    "acct_123/%2e./acct_456",
    "acct_123/%252e%252e/acct_456",
    "acct_123/%252F",
    "acct_123/x%00",
    "acct_123/%c0%ae%c0%ae/acct_456",
    "acct_123/%ff",
    "acct_123/..\\acct_456",
    "acct_123\\..\\acct_456",
    "acct_123/..;/acct_456",
    "acct_123/x;/../../acct_456",
    "acct_123/x?/../../acct_456",
    "acct_123/x#/../../acct_456",
    "acct_123/../acct_456",
    "acct_123//acct_456",
    "acct_123/\u{ff0e}\u{ff0e}/acct_456",
];

async fn guarded_key(app: &TestApp) -> String {
    app.create(pb::CreateKeyRequest {
        owner_id: "acct_123".into(),
        restrictions: Some(pb::Restrictions {
            resource: Some(pb::ResourceRestriction {
                allow: vec!["acct_123/*".into()],
                mode: 0,
            }),
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .secret
}

async fn verify_refuses_every_non_canonical_resource(backend: Backend) {
    let app = spawn(backend).await;
    let key = guarded_key(&app).await;
    let code = |r: &'static str| {
        let app = &app;
        let key = &key;
        async move { app.verify_from(key, &[], "", "", r).await.code() }
    };
    assert_eq!(code("acct_123/invoices").await, VerifyCode::Valid);
    for r in BYPASSES {
        assert_eq!(code(r).await, VerifyCode::ResourceNotAllowed, "{r:?}");
    }
}

async fn ext_authz_refuses_every_non_canonical_path(backend: Backend) {
    let app = spawn(backend).await;
    let key = guarded_key(&app).await;
    let status = |path: String| {
        let app = &app;
        let key = &key;
        async move {
            let r = check(
                app,
                check_request(&[("x-api-key", key)], "203.0.113.9", &path, ""),
            )
            .await;
            summary(&r).1
        }
    };
    assert_eq!(status("/acct_123/invoices".into()).await, 200);
    // The query is not part of the resource, whatever it holds.
    assert_eq!(
        status("/acct_123/invoices?next=%2e%2e/acct_456".into()).await,
        200
    );
    // In a path, `?` starts the query, which is not judged: the rest stand.
    for r in BYPASSES.iter().filter(|r| !r.contains('?')) {
        assert_eq!(status(format!("/{r}")).await, 403, "{r:?}");
    }
    // Only one leading slash is the path's own.
    assert_eq!(status("//acct_123/invoices".into()).await, 403);
}

async fn patterns_must_be_canonical_too(backend: Backend) {
    let app = spawn(backend).await;
    for bad in [
        "acct_123/%2e%2e",
        "acct_%31/*",
        "acct_123\\x",
        "acct_123/x;v=1",
        "acct_123/x?y",
        "acct_123/x#y",
    ] {
        let req = pb::CreateKeyRequest {
            owner_id: "acct_123".into(),
            restrictions: Some(pb::Restrictions {
                resource: Some(pb::ResourceRestriction {
                    allow: vec!["acct_123/*".into(), bad.into()],
                    mode: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_status(
            app.admin.clone().create_key(req).await,
            Code::InvalidArgument,
            "restrictions.resource.allow[1]",
        );
    }
}

crate::backend_tests!(
    verify_refuses_every_non_canonical_resource,
    ext_authz_refuses_every_non_canonical_path,
    patterns_must_be_canonical_too,
);
