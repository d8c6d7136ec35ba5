//! The admin API refuses calls without a valid bearer token.

use keysmith::grpc::pb::{self, key_admin_client::KeyAdminClient};
use tonic::{Code, Request};

use crate::helpers::{Backend, spawn};

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

crate::backend_tests!(admin_calls_need_a_valid_token, verify_needs_no_admin_token);
