//! A keyspace's scope catalogue holds for the keys and roles already in it:
//! it narrows only while every live key and every role stays within it, and
//! the refusal names what is in the way.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Admin, Backend, assert_status, spawn},
    roles::role_request,
};

fn narrow(id: &str, scopes: &[&str]) -> pb::UpdateKeyspaceRequest {
    pb::UpdateKeyspaceRequest {
        keyspace: Some(pb::Keyspace {
            id: id.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["scopes".into()],
        }),
    }
}

async fn catalogue_of(admin: &Admin, id: &str) -> Vec<String> {
    admin
        .clone()
        .get_keyspace(pb::GetKeyspaceRequest { id: id.into() })
        .await
        .expect("get")
        .into_inner()
        .scopes
}

async fn a_catalogue_narrows_only_around_what_keys_and_roles_hold(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let ks = admin
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "billing".into(),
            prefix: "billing".into(),
            scopes: vec!["invoices:*".into(), "customers:*".into()],
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    admin
        .create_role(role_request(&ks.id, "crm", &["customers:read"]))
        .await
        .expect("role");
    let key = admin
        .create_key(pb::CreateKeyRequest {
            owner_id: "acct_1".into(),
            keyspace: ks.id.clone(),
            scopes: vec!["invoices:read".into()],
            ..Default::default()
        })
        .await
        .expect("key")
        .into_inner();
    let key_id = key.key.expect("key").id;

    // The key holds invoices:read: a catalogue without it is refused, and
    // the catalogue stays as it was.
    let refused = admin
        .update_keyspace(narrow(&ks.id, &["customers:*"]))
        .await
        .expect_err("a live key holds invoices:read");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().starts_with("scopes")
            && refused.message().contains(&key_id)
            && refused.message().contains("invoices:read"),
        "{refused:?}"
    );
    assert_eq!(
        catalogue_of(&app.admin, &ks.id).await,
        ["invoices:*", "customers:*"]
    );

    // Revoked, the key no longer counts; the role still does.
    admin
        .revoke_key(pb::RevokeKeyRequest {
            id: key_id.clone(),
            reason: "rotated away".into(),
            ..Default::default()
        })
        .await
        .expect("revoke");
    assert_status(
        admin.update_keyspace(narrow(&ks.id, &["invoices:*"])).await,
        Code::FailedPrecondition,
        "role crm grants `customers:read`",
    );
    admin
        .delete_role(pb::DeleteRoleRequest {
            keyspace: ks.id.clone(),
            name: "crm".into(),
        })
        .await
        .expect("delete role");
    admin
        .update_keyspace(narrow(&ks.id, &["invoices:*"]))
        .await
        .expect("nothing holds customers:* any more");
    assert_eq!(catalogue_of(&app.admin, &ks.id).await, ["invoices:*"]);
    assert_status(
        admin
            .create_role(role_request(&ks.id, "crm", &["customers:read"]))
            .await,
        Code::InvalidArgument,
        "role.scopes[0]",
    );
}

/// A keyspace without a catalogue admits any scope; giving it one is a
/// narrowing like any other.
async fn a_first_catalogue_is_checked_too(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    app.create(pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        scopes: vec!["anything:write".into()],
        ..Default::default()
    })
    .await;
    assert_status(
        admin
            .update_keyspace(narrow("ks_default", &["anything:read"]))
            .await,
        Code::FailedPrecondition,
        "`anything:write`",
    );
    admin
        .update_keyspace(narrow("ks_default", &["anything:*"]))
        .await
        .expect("a wildcard admits it");
}

crate::backend_tests!(
    a_catalogue_narrows_only_around_what_keys_and_roles_hold,
    a_first_catalogue_is_checked_too,
);
