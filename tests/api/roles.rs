//! Roles: named sets of scopes per keyspace that keys hold; what they grant
//! reaches Verify, and bad input is refused naming its field.

use keysmith::grpc::pb::{self, VerifyCode};
use tonic::Code;

use crate::{
    admin_audit::{acting_admin, audited},
    helpers::{Admin, Backend, TestApp, assert_status, spawn},
};

pub(crate) const DEFAULT_KS: &str = "ks_default";

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn role_request(ks: &str, name: &str, scopes: &[&str]) -> pb::CreateRoleRequest {
    pb::CreateRoleRequest {
        role: Some(pb::Role {
            keyspace: ks.into(),
            name: name.into(),
            description: format!("the {name} role"),
            scopes: strings(scopes),
            ..Default::default()
        }),
    }
}

pub(crate) async fn create_role(admin: &Admin, ks: &str, name: &str, scopes: &[&str]) -> pb::Role {
    admin
        .clone()
        .create_role(role_request(ks, name, scopes))
        .await
        .expect("create role")
        .into_inner()
}

pub(crate) fn key_request(ks: &str, roles: &[&str], scopes: &[&str]) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        environment: pb::Environment::Live.into(),
        keyspace: ks.into(),
        roles: strings(roles),
        scopes: strings(scopes),
        ..Default::default()
    }
}

pub(crate) fn scopes_update(ks: &str, name: &str, scopes: &[&str]) -> pb::UpdateRoleRequest {
    pb::UpdateRoleRequest {
        role: Some(pb::Role {
            keyspace: ks.into(),
            name: name.into(),
            scopes: strings(scopes),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["scopes".into()],
        }),
    }
}

async fn verify(app: &TestApp, key: &str, all: &[&str], any: &[&[&str]]) -> pb::VerifyResponse {
    let req = pb::VerifyRequest {
        key: key.into(),
        required_scopes: strings(all),
        required_any: any
            .iter()
            .map(|g| pb::ScopeAlternatives { scopes: strings(g) })
            .collect(),
        ..Default::default()
    };
    app.verify
        .clone()
        .verify(req)
        .await
        .expect("verify")
        .into_inner()
}

async fn a_role_grants_its_scopes_to_verify(backend: Backend) {
    let app = spawn(backend).await;
    create_role(
        &app.admin,
        DEFAULT_KS,
        "billing-reader",
        &["invoices:read", "customers:*"],
    )
    .await;
    let holder = app
        .create(key_request(
            DEFAULT_KS,
            &["billing-reader"],
            &["refunds:read"],
        ))
        .await;
    let plain = app
        .create(key_request(DEFAULT_KS, &[], &["refunds:read"]))
        .await;
    let id = holder.key.as_ref().expect("key").id.clone();
    assert_eq!(holder.key.as_ref().expect("key").roles, ["billing-reader"]);
    assert_eq!(app.get(&id).await.roles, ["billing-reader"]);
    assert_eq!(
        app.get(&id).await.scopes,
        ["refunds:read"],
        "its own scopes"
    );

    let v = verify(
        &app,
        &holder.secret,
        &["invoices:read", "refunds:read"],
        &[],
    )
    .await;
    assert_eq!(v.code(), VerifyCode::Valid, "{v:?}");
    assert_eq!(v.scopes, ["refunds:read", "invoices:read", "customers:*"]);
    // Through a role's wildcard, and in an any-of group.
    let v = verify(&app, &holder.secret, &[], &[&["x:y", "customers:write"]]).await;
    assert_eq!(v.code(), VerifyCode::Valid);
    // A key without the role is not granted what it holds.
    let v = verify(&app, &plain.secret, &["invoices:read"], &[]).await;
    assert_eq!(v.code(), VerifyCode::InsufficientScope);
    assert_eq!(v.missing_scope, "invoices:read");

    // UpdateKey takes the role away, and Verify follows at once.
    let update = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: id.clone(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["roles".into()],
        }),
    };
    let key = app.admin.clone().update_key(update).await.expect("update");
    assert!(key.into_inner().key.expect("key").roles.is_empty());
    let v = verify(&app, &holder.secret, &["invoices:read"], &[]).await;
    assert_eq!(v.code(), VerifyCode::InsufficientScope);
}

/// UpdateRole answers once this replica's index has the keys it changed:
/// the next Verify here sees the role's new scopes, every time, as after a
/// key write (other replicas follow through their feeds).
async fn the_next_verify_here_sees_an_updated_role(backend: Backend) {
    let app = spawn(backend).await;
    create_role(&app.admin, DEFAULT_KS, "flip", &["a:read", "b:read"]).await;
    let holder = app.create(key_request(DEFAULT_KS, &["flip"], &[])).await;
    let mut admin = app.admin.clone();
    for round in 0..10 {
        let narrowed = admin
            .update_role(scopes_update(DEFAULT_KS, "flip", &["a:read"]))
            .await
            .expect("narrow")
            .into_inner();
        assert_eq!(narrowed.keys_changed, 1);
        let v = verify(&app, &holder.secret, &["b:read"], &[]).await;
        assert_eq!(
            v.code(),
            VerifyCode::InsufficientScope,
            "round {round}: {v:?}"
        );
        admin
            .update_role(scopes_update(DEFAULT_KS, "flip", &["a:read", "b:read"]))
            .await
            .expect("widen");
        let v = verify(&app, &holder.secret, &[], &[&["b:read", "c:read"]]).await;
        assert_eq!(v.code(), VerifyCode::Valid, "round {round}: {v:?}");
    }
}

async fn role_changes_are_audited_with_the_token(backend: Backend) {
    let app = spawn(backend).await;
    let (admin, actor) = acting_admin(&app).await;
    create_role(&admin, DEFAULT_KS, "support", &["tickets:read"]).await;
    let c = audited(&admin, "role.created", &actor).await;
    assert_eq!(c["name"], "support");
    assert_eq!(c["scopes"], serde_json::json!(["tickets:read"]));

    app.create(key_request(DEFAULT_KS, &["support"], &[])).await;
    let req = scopes_update(DEFAULT_KS, "support", &["tickets:read", "tickets:write"]);
    let resp = admin.clone().update_role(req).await.expect("update");
    assert_eq!(resp.into_inner().keys_changed, 1);
    let c = audited(&admin, "role.updated", &actor).await;
    assert_eq!(
        c["scopes"]["new"],
        serde_json::json!(["tickets:read", "tickets:write"])
    );

    create_role(&admin, DEFAULT_KS, "unused", &["a:b"]).await;
    let del = pb::DeleteRoleRequest {
        keyspace: DEFAULT_KS.into(),
        name: "unused".into(),
    };
    admin.clone().delete_role(del).await.expect("delete");
    let c = audited(&admin, "role.deleted", &actor).await;
    assert_eq!(c["name"], "unused");
}

async fn a_role_is_not_deleted_while_live_keys_hold_it(backend: Backend) {
    let app = spawn(backend).await;
    create_role(&app.admin, DEFAULT_KS, "ops", &["servers:read"]).await;
    let key = app.create(key_request(DEFAULT_KS, &["ops"], &[])).await;
    let id = key.key.expect("key").id;
    let del = || pb::DeleteRoleRequest {
        keyspace: DEFAULT_KS.into(),
        name: "ops".into(),
    };
    let mut admin = app.admin.clone();
    assert_status(
        admin.delete_role(del()).await,
        Code::FailedPrecondition,
        &id,
    );
    // Once revoked, the key no longer counts: revocation is final.
    app.revoke(&id).await;
    admin.delete_role(del()).await.expect("delete");
    let get = pb::GetRoleRequest {
        keyspace: DEFAULT_KS.into(),
        name: "ops".into(),
    };
    assert_status(admin.get_role(get).await, Code::NotFound, "ops");
    assert_status(admin.delete_role(del()).await, Code::NotFound, "ops");
    assert_eq!(app.verify_code(&key.secret).await, VerifyCode::Revoked);
}

async fn roles_list_by_name_and_tokens_stay_in_their_keyspace(backend: Backend) {
    let app = spawn(backend).await;
    let other = crate::keyspaces::keyspace(&app, "other", Default::default()).await;
    for name in ["c-role", "a-role", "b-role"] {
        create_role(&app.admin, DEFAULT_KS, name, &["x:read"]).await;
    }
    create_role(&app.admin, &other.id, "z-role", &["x:read"]).await;
    let list = |ks: &str, token: String| pb::ListRolesRequest {
        keyspace: ks.into(),
        page_size: 2,
        page_token: token,
    };
    let mut admin = app.admin.clone();
    let first = admin
        .list_roles(list(DEFAULT_KS, String::new()))
        .await
        .expect("list")
        .into_inner();
    let names: Vec<_> = first.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a-role", "b-role"]);
    let second = admin
        .list_roles(list(DEFAULT_KS, first.next_page_token.clone()))
        .await
        .expect("list")
        .into_inner();
    let names: Vec<_> = second.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["c-role"]);
    assert!(second.next_page_token.is_empty());
    // A token of one keyspace's list does not page another's.
    assert_status(
        admin
            .list_roles(list(&other.id, first.next_page_token))
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        admin.list_roles(list("ks_nosuch", String::new())).await,
        Code::NotFound,
        "keyspace",
    );
}

/// A key write built on what a role granted before it changed is refused
/// in its transaction, so no index ever holds a key with a role's old
/// scopes under a version the feed would not replace.
async fn a_key_write_on_stale_role_scopes_conflicts(backend: Backend) {
    use keysmith::store::{StoreError, WriteBatch};
    let app = spawn(backend).await;
    create_role(&app.admin, DEFAULT_KS, "team", &["a:read", "b:read"]).await;
    let key = app.create(key_request(DEFAULT_KS, &["team"], &[])).await;
    let store = keysmith::app::open_store(&app.db.config, false)
        .await
        .expect("store");
    let id = key.key.expect("key").id.parse().expect("id");
    let read = store.get_key(&id).await.expect("get").expect("key");
    assert_eq!(read.role_scopes.len(), 2, "a read resolves the roles");
    let write = |mut next: keysmith::domain::KeyRecord| {
        next.version += 1;
        store.write(WriteBatch {
            update: vec![next],
            ..Default::default()
        })
    };
    let mut stale = read.clone();
    stale.role_scopes.pop();
    assert!(matches!(write(stale).await, Err(StoreError::Conflict)));
    let mut gone = read.clone();
    gone.roles = vec![keysmith::domain::RoleName::parse("no-such-role").expect("name")];
    assert!(matches!(write(gone).await, Err(StoreError::Conflict)));
    write(read).await.expect("the record as read commits");
}

/// A role reaches keys of every owner in its keyspace, so a token limited
/// to some owners may read roles but change none.
async fn a_token_limited_to_owners_changes_no_role(backend: Backend) {
    use crate::token_support::{mint, names, with_permissions};
    let app = spawn(backend).await;
    create_role(&app.admin, DEFAULT_KS, "team", &["a:read"]).await;
    // Keys of every owner in a keyspace may hold its roles, so a token
    // limited to some owners cannot be given the permission to change them.
    let mut admin = app.admin.clone();
    let stronger = pb::CreateAdminTokenRequest {
        owners: names(&["acct_1"]),
        ..with_permissions(
            "acct_1 roles",
            names(&["keyspaces.read", "keyspaces.manage"]),
        )
    };
    let err = admin
        .create_admin_token(stronger)
        .await
        .expect_err("keyspaces.manage under an owner limit");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().starts_with("permissions") && err.message().contains("keyspaces.manage"),
        "{err:?}"
    );
    let perms = ["keyspaces.read", "keys.read", "keys.write"];
    let req = pb::CreateAdminTokenRequest {
        owners: names(&["acct_1"]),
        ..with_permissions("acct_1 only", names(&perms))
    };
    let mut limited = mint(&app, &app.admin, req).await.admin;
    let get = pb::GetRoleRequest {
        keyspace: DEFAULT_KS.into(),
        name: "team".into(),
    };
    limited.get_role(get).await.expect("reading is fine");
    assert_status(
        limited
            .update_role(scopes_update(DEFAULT_KS, "team", &["a:read", "b:read"]))
            .await,
        Code::PermissionDenied,
        "keyspaces.manage",
    );
    // Its own owner's keys may still hold the role.
    let key = limited
        .create_key(key_request(DEFAULT_KS, &["team"], &[]))
        .await
        .expect("a key of its owner, with the role")
        .into_inner();
    assert_eq!(key.key.expect("key").roles, ["team"]);
}

crate::backend_tests!(
    a_token_limited_to_owners_changes_no_role,
    a_key_write_on_stale_role_scopes_conflicts,
    a_role_grants_its_scopes_to_verify,
    the_next_verify_here_sees_an_updated_role,
    role_changes_are_audited_with_the_token,
    a_role_is_not_deleted_while_live_keys_hold_it,
    roles_list_by_name_and_tokens_stay_in_their_keyspace,
);
