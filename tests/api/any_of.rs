//! Any-of scope groups: Verify's `required_any` next to `required_scopes`
//! (AND over groups of OR), on unary Verify, VerifyStream and ext_authz.

use keysmith::grpc::pb::{self, VerifyCode};
use tonic::Code;

use crate::{
    ext_authz::{check, check_request, summary},
    helpers::{Backend, TestApp, assert_status, spawn},
};

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn request(key: &str, all: &[&str], any: &[&[&str]]) -> pb::VerifyRequest {
    pb::VerifyRequest {
        key: key.into(),
        required_scopes: strings(all),
        required_any: any
            .iter()
            .map(|g| pb::ScopeAlternatives { scopes: strings(g) })
            .collect(),
        ..Default::default()
    }
}

async fn verify(app: &TestApp, req: pb::VerifyRequest) -> pb::VerifyResponse {
    app.verify
        .clone()
        .verify(req)
        .await
        .expect("verify")
        .into_inner()
}

async fn any_of_groups_combine_with_all_of(backend: Backend) {
    let app = spawn(backend).await;
    let key = app
        .create_with_scopes(&["invoices:read", "refunds:*"])
        .await
        .secret;

    // invoices:read AND (invoices:admin OR invoices:read) AND (refunds:write OR x:y)
    let v = verify(
        &app,
        request(
            &key,
            &["invoices:read"],
            &[
                &["invoices:admin", "invoices:read"],
                &["x:y", "refunds:write"],
            ],
        ),
    )
    .await;
    assert_eq!(v.code(), VerifyCode::Valid, "{v:?}");

    // A group the key grants nothing of is denied and named whole.
    let v = verify(
        &app,
        request(
            &key,
            &["invoices:read"],
            &[&["refunds:read"], &["customers:read", "customers:admin"]],
        ),
    )
    .await;
    assert_eq!(v.code(), VerifyCode::InsufficientScope);
    assert_eq!(v.missing_any, ["customers:read", "customers:admin"]);
    assert!(v.missing_scope.is_empty());
    assert!(v.scopes.is_empty(), "a denial tells nothing the key grants");

    // All-of is checked first and named as before.
    let v = verify(
        &app,
        request(&key, &["invoices:write"], &[&["customers:read"]]),
    )
    .await;
    assert_eq!(v.code(), VerifyCode::InsufficientScope);
    assert_eq!(v.missing_scope, "invoices:write");
    assert!(v.missing_any.is_empty());

    // The same on a stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = app
        .verify
        .clone()
        .verify_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    for (id, any) in [(1, ["invoices:admin", "refunds:read"]), (2, ["a:b", "c:d"])] {
        let request = Some(request(&key, &[], &[&any]));
        tx.send(pb::VerifyStreamRequest { id, request })
            .await
            .expect("send");
    }
    use pb::verify_stream_response::Result as R;
    let mut codes = Vec::new();
    for _ in 0..2 {
        match answers
            .message()
            .await
            .expect("answer")
            .expect("open")
            .result
        {
            Some(R::Response(r)) => codes.push((r.code(), r.missing_any)),
            other => panic!("expected a response, got {other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            (VerifyCode::Valid, vec![]),
            (VerifyCode::InsufficientScope, strings(&["a:b", "c:d"])),
        ]
    );
}

async fn bad_any_of_groups_are_the_callers_error(backend: Backend) {
    let app = spawn(backend).await;
    let key = app.create_with_scopes(&["*"]).await.secret;
    let mut client = app.verify.clone();
    let wide: Vec<&str> = vec!["a:b"; 17];
    let many: Vec<&[&str]> = vec![&["a:b"]; 17];
    for (any, field) in [
        (vec![&["a:b"][..], &[]], "required_any[1].scopes: "),
        (vec![&["a:b", "a:*"][..]], "required_any[0].scopes[1]: "),
        (vec![&["A"][..]], "required_any[0].scopes[0]: "),
        (vec![&wide[..]], "required_any[0].scopes: "),
        (many, "required_any: "),
    ] {
        assert_status(
            client.verify(request(&key, &[], &any)).await,
            Code::InvalidArgument,
            field,
        );
    }
    // Sixteen groups of sixteen are fine.
    let sixteen: Vec<&str> = vec!["a:b"; 16];
    let groups: Vec<&[&str]> = vec![&sixteen[..]; 16];
    let v = verify(&app, request(&key, &[], &groups)).await;
    assert_eq!(v.code(), VerifyCode::Valid);
}

async fn ext_authz_routes_take_alternatives(backend: Backend) {
    let app = spawn(backend).await;
    let both = app
        .create_with_scopes(&["invoices:read", "refunds:admin"])
        .await
        .secret;
    let one = app.create_with_scopes(&["invoices:read"]).await.secret;
    let route = "invoices:read refunds:write|refunds:admin";
    let http = |key: String, scopes: &'static str| {
        let app = &app;
        async move {
            let req = check_request(&[("x-api-key", &key)], "203.0.113.9", "/x", scopes);
            summary(&check(app, req).await).1
        }
    };
    assert_eq!(http(both.clone(), route).await, 200);
    assert_eq!(http(one.clone(), route).await, 403);
    assert_eq!(http(one.clone(), "refunds:write|invoices:read").await, 200);
    for bad in ["invoices:read|", "a||b", "a | b", "a|b:*"] {
        assert_eq!(http(both.clone(), bad).await, 500, "{bad:?}");
    }
}

crate::backend_tests!(
    any_of_groups_combine_with_all_of,
    bad_any_of_groups_are_the_callers_error,
    ext_authz_routes_take_alternatives,
);
