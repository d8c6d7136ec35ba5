//! RevokeAdminToken with `include_minted`: a leaked token's revocation also
//! ends every token minted from it, directly or through others, in one
//! transaction, each audited; tokens minted elsewhere keep working.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Backend, spawn},
    token_support::{mint, names, with_permissions},
};

async fn revoking_with_minted_ends_what_a_leaked_token_minted(backend: Backend) {
    let app = spawn(backend).await;
    let managing = || names(&["tokens.manage", "keys.read"]);
    let leaked = mint(&app, &app.admin, with_permissions("leaked", managing())).await;
    let child = mint(&app, &leaked.admin, with_permissions("child", managing())).await;
    let grandchild = mint(
        &app,
        &child.admin,
        with_permissions("grandchild", names(&["keys.read"])),
    )
    .await;
    let bystander = mint(
        &app,
        &app.admin,
        with_permissions("bystander", names(&["keys.read"])),
    )
    .await;
    let lists = |mut a: crate::helpers::Admin| async move {
        a.list_keys(pb::ListKeysRequest::default()).await.map(drop)
    };
    for t in [&leaked, &child, &grandchild, &bystander] {
        lists(t.admin.clone()).await.expect("works before");
    }

    let revoke = pb::RevokeAdminTokenRequest {
        id: leaked.id.clone(),
        reason: "leaked in a CI log".into(),
        include_minted: true,
    };
    let done = app
        .admin
        .clone()
        .revoke_admin_token(revoke.clone())
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(done.minted_revoked, 2, "child and grandchild");
    for t in [&leaked, &child, &grandchild] {
        let refused = lists(t.admin.clone()).await.expect_err("revoked");
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    lists(bystander.admin.clone())
        .await
        .expect("minted elsewhere, untouched");

    let events = app
        .admin
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest {
            action: "admin_token.revoked".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let mut revoked: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let c: serde_json::Value = serde_json::from_str(&e.changes_json).expect("json");
            let id = c["token_id"].as_str().expect("token_id").to_owned();
            (id, e.reason.clone())
        })
        .collect();
    revoked.sort();
    let mut expected: Vec<(String, String)> = [&leaked.id, &child.id, &grandchild.id]
        .into_iter()
        .map(|id| (id.clone(), "leaked in a CI log".to_owned()))
        .collect();
    expected.sort();
    assert_eq!(revoked, expected);

    // Nothing is left to revoke the second time.
    let again = app.admin.clone().revoke_admin_token(revoke).await;
    assert_eq!(again.expect("again").into_inner().minted_revoked, 0);
}

crate::backend_tests!(revoking_with_minted_ends_what_a_leaked_token_minted);
