//! Bad role input: each refusal names its field.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Backend, assert_status, spawn},
    roles::{DEFAULT_KS, create_role, key_request, role_request, scopes_update},
};

async fn bad_role_input_is_refused_naming_the_field(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    create_role(&admin, DEFAULT_KS, "reader", &["invoices:read"]).await;

    // Keys name roles of their own keyspace.
    assert_status(
        admin
            .create_key(key_request(DEFAULT_KS, &["reader", "nope"], &[]))
            .await,
        Code::InvalidArgument,
        "roles[1]: ",
    );
    let other = crate::keyspaces::keyspace(&app, "elsewhere", Default::default()).await;
    assert_status(
        admin
            .create_key(key_request(&other.id, &["reader"], &[]))
            .await,
        Code::InvalidArgument,
        "roles[0]: ",
    );
    for (roles, field) in [
        (vec!["Reader"], "roles[0]: "),
        (vec!["reader", "reader"], "roles[1]: "),
        (vec!["r"; 11], "roles: "),
    ] {
        assert_status(
            admin.create_key(key_request(DEFAULT_KS, &roles, &[])).await,
            Code::InvalidArgument,
            field,
        );
    }
    let key = app.create(key_request(DEFAULT_KS, &[], &[])).await;
    let update = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: key.key.expect("key").id,
            roles: vec!["reader".into(), "gone".into()],
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["roles".into()],
        }),
    };
    assert_status(
        admin.update_key(update).await,
        Code::InvalidArgument,
        "key.roles[1]: ",
    );

    // A role's own fields.
    let bad = |ks: &str, name: &str, scopes: &[&str]| role_request(ks, name, scopes);
    for (req, code, field) in [
        (
            bad(DEFAULT_KS, "Bad_Name", &["a:b"]),
            Code::InvalidArgument,
            "role.name: ",
        ),
        (
            bad(DEFAULT_KS, "", &["a:b"]),
            Code::InvalidArgument,
            "role.name: ",
        ),
        (
            bad(DEFAULT_KS, "x", &["a:*:b"]),
            Code::InvalidArgument,
            "role.scopes[0]: ",
        ),
        (
            bad(DEFAULT_KS, "x", &["a:b", "a:b"]),
            Code::InvalidArgument,
            "role.scopes[1]: ",
        ),
        (
            bad("nonsense", "x", &["a:b"]),
            Code::InvalidArgument,
            "role.keyspace: ",
        ),
        (
            bad("ks_nosuch", "x", &["a:b"]),
            Code::NotFound,
            "role.keyspace",
        ),
        (
            bad(DEFAULT_KS, "reader", &["a:b"]),
            Code::AlreadyExists,
            "role.name",
        ),
    ] {
        assert_status(admin.create_role(req).await, code, field);
    }
    let mut long = bad(DEFAULT_KS, "x", &["a:b"]);
    long.role.as_mut().expect("role").description = "d".repeat(501);
    assert_status(
        admin.create_role(long).await,
        Code::InvalidArgument,
        "role.description: ",
    );
    let many: Vec<String> = (0..101).map(|i| format!("s:{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_status(
        admin.create_role(bad(DEFAULT_KS, "x", &many)).await,
        Code::InvalidArgument,
        "role.scopes: ",
    );

    // The keyspace's scope catalogue bounds its roles.
    let catalogued = admin
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "Billing".into(),
            prefix: "bill".into(),
            defaults: None,
            scopes: vec!["invoices:read".into(), "refunds:*".into()],
            leak_response: None,
            legacy_formats: vec![],
        })
        .await
        .expect("keyspace")
        .into_inner();
    create_role(
        &admin,
        &catalogued.id,
        "ok",
        &["invoices:read", "refunds:write"],
    )
    .await;
    assert_status(
        admin
            .create_role(bad(
                &catalogued.id,
                "wide",
                &["invoices:read", "invoices:*"],
            ))
            .await,
        Code::InvalidArgument,
        "role.scopes[1]: ",
    );
    assert_status(
        admin
            .update_role(scopes_update(&catalogued.id, "ok", &["customers:read"]))
            .await,
        Code::InvalidArgument,
        "role.scopes[0]: ",
    );

    // UpdateRole's mask, and roles that do not exist.
    let mut no_mask = scopes_update(DEFAULT_KS, "reader", &["a:b"]);
    no_mask.update_mask = None;
    assert_status(
        admin.update_role(no_mask).await,
        Code::InvalidArgument,
        "update_mask",
    );
    let mut rename = scopes_update(DEFAULT_KS, "reader", &["a:b"]);
    rename.update_mask = Some(keysmith::grpc::wkt::FieldMask {
        paths: vec!["name".into()],
    });
    assert_status(
        admin.update_role(rename).await,
        Code::InvalidArgument,
        "update_mask.paths[0]",
    );
    assert_status(
        admin
            .update_role(scopes_update(DEFAULT_KS, "missing", &["a:b"]))
            .await,
        Code::NotFound,
        "missing",
    );
}

/// Publishable keys hold only `…:read` scopes: a role does not get round it,
/// now or by a later change.
async fn publishable_keys_hold_only_read_roles(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    create_role(&admin, DEFAULT_KS, "viewer", &["catalog:read"]).await;
    create_role(&admin, DEFAULT_KS, "editor", &["catalog:write"]).await;
    let publishable = |roles: &[&str]| pb::CreateKeyRequest {
        r#type: pb::KeyType::Publishable.into(),
        restrictions: Some(pb::Restrictions {
            referrer: Some(pb::ReferrerRestriction {
                allow: vec!["app.example.com".into()],
                mode: pb::RestrictionMode::Enforce.into(),
            }),
            ..Default::default()
        }),
        ..key_request(DEFAULT_KS, roles, &[])
    };
    assert_status(
        admin.create_key(publishable(&["editor"])).await,
        Code::InvalidArgument,
        "roles: ",
    );
    let key = app.create(publishable(&["viewer"])).await;
    assert_eq!(key.key.expect("key").roles, ["viewer"]);
    let widen = scopes_update(DEFAULT_KS, "viewer", &["catalog:read", "catalog:write"]);
    assert_status(
        admin.update_role(widen).await,
        Code::FailedPrecondition,
        "publishable",
    );
    let get = pb::GetRoleRequest {
        keyspace: DEFAULT_KS.into(),
        name: "viewer".into(),
    };
    let role = admin.get_role(get).await.expect("get").into_inner();
    assert_eq!(
        role.scopes,
        ["catalog:read"],
        "the refused update wrote nothing"
    );
}

crate::backend_tests!(
    bad_role_input_is_refused_naming_the_field,
    publishable_keys_hold_only_read_roles,
);
