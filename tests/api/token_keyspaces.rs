//! A token limited to some keyspaces sees nothing outside them: keys,
//! their audit events, the keyspaces themselves and their roles are
//! NOT_FOUND or absent from lists, on the admin and the verify listener.

use keysmith::{auth::VerifyAuth, grpc::pb};
use tonic::{Code, Request};

use crate::{
    helpers::{Backend, assert_status, spawn, spawn_with},
    keyspaces::{key_in, keyspace, secs},
    roles::role_request,
    token_support::{mint, names, with_permissions},
};

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    let status = r.expect_err(what);
    assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
}

async fn a_token_limited_to_a_keyspace_sees_nothing_outside_it(backend: Backend) {
    let app = spawn_with(backend, |c| c.verify_auth = VerifyAuth::Required).await;
    let acme = keyspace(&app, "acme", pb::KeyspaceDefaults::default())
        .await
        .id;
    let ours = key_in(&app, &acme).await;
    let theirs = key_in(&app, "ks_default").await;
    let (ours_id, theirs_id) = (ours.key.expect("key").id, theirs.key.expect("key").id);
    let perms = [
        "keys.read",
        "keys.write",
        "audit.read",
        "keyspaces.read",
        "keyspaces.manage",
        "verify",
    ];
    let req = pb::CreateAdminTokenRequest {
        keyspaces: vec![acme.clone()],
        ..with_permissions("acme team", names(&perms))
    };
    let token = mint(&app, &app.admin, req).await;
    let mut a = token.admin.clone();

    a.get_key(pb::GetKeyRequest {
        id: ours_id.clone(),
    })
    .await
    .expect("its keyspace's key");
    not_found(
        "get",
        a.get_key(pb::GetKeyRequest {
            id: theirs_id.clone(),
        })
        .await,
    );
    let keys = a
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner()
        .keys;
    assert_eq!(
        keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        [ours_id.as_str()]
    );
    let events = a.list_audit_events(pb::ListAuditEventsRequest::default());
    let events = events.await.expect("audit").into_inner().events;
    assert!(
        !events.is_empty() && events.iter().all(|e| e.key_id == ours_id),
        "{events:?}"
    );

    // Keyspaces and their roles.
    let ks = |id: &str| pb::GetKeyspaceRequest { id: id.into() };
    a.get_keyspace(ks(&acme)).await.expect("its keyspace");
    not_found("keyspace", a.get_keyspace(ks("ks_default")).await);
    let listed = a
        .list_keyspaces(pb::ListKeyspacesRequest::default())
        .await
        .expect("list");
    let listed: Vec<String> = listed
        .into_inner()
        .keyspaces
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(listed, std::slice::from_ref(&acme));
    let role = |keyspace: &str| pb::CreateRoleRequest {
        role: Some(pb::Role {
            keyspace: keyspace.into(),
            name: "reader".into(),
            scopes: vec!["a:read".into()],
            ..Default::default()
        }),
    };
    a.create_role(role(&acme))
        .await
        .expect("a role in its keyspace");
    not_found("role", a.create_role(role("ks_default")).await);
    let roles = pb::ListRolesRequest {
        keyspace: "ks_default".into(),
        ..Default::default()
    };
    not_found("roles", a.list_roles(roles).await);
    let create = pb::CreateKeyspaceRequest {
        name: "other".into(),
        prefix: "other".into(),
        ..Default::default()
    };
    assert_status(
        a.create_keyspace(create).await,
        Code::PermissionDenied,
        "limited",
    );

    // It creates keys in its keyspace only.
    let key = |keyspace: &str| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        keyspace: keyspace.into(),
        ..Default::default()
    };
    a.create_key(key(&acme)).await.expect("in its keyspace");
    not_found("create", a.create_key(key("ks_default")).await);

    // On the verify listener, a key of another keyspace is an unknown key.
    let verify = |secret: &str| {
        let mut req = Request::new(pb::VerifyRequest {
            key: secret.into(),
            ..Default::default()
        });
        let bearer = format!("Bearer {}", token.secret).parse().expect("ascii");
        req.metadata_mut().insert("authorization", bearer);
        let mut v = app.verify.clone();
        async move { v.verify(req).await.expect("verify").into_inner() }
    };
    assert!(verify(&ours.secret).await.valid);
    let outside = verify(&theirs.secret).await;
    assert_eq!(outside.code(), pb::VerifyCode::NotFound);
    assert!(outside.key_id.is_empty(), "{outside:?}");
}

async fn an_owner_limited_token_cannot_manage_keyspaces(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let req = pb::CreateAdminTokenRequest {
        owners: names(&["acct_1"]),
        ..with_permissions("owner team", names(&["keys.read", "keyspaces.manage"]))
    };
    let refused = app.admin.clone().create_admin_token(req).await;
    assert_status(refused, Code::InvalidArgument, "keyspaces.manage");
    let req = pb::CreateAdminTokenRequest {
        keyspaces: names(&["ks_nowhere"]),
        ..with_permissions("lost", names(&["keys.read"]))
    };
    let refused = app.admin.clone().create_admin_token(req).await;
    assert_status(
        refused,
        Code::InvalidArgument,
        "`ks_nowhere` is not a keyspace",
    );
}

/// UpdateKey on a key outside the token's limits is NOT_FOUND whatever it
/// asks: no answer about the key's keyspace (its catalogue, its maximum
/// lifetime) or its roles (which exist, which fit) comes first.
async fn an_update_outside_the_limits_says_nothing_of_the_key(backend: Backend) {
    let app = spawn(backend).await;
    let acme = keyspace(&app, "acme", pb::KeyspaceDefaults::default())
        .await
        .id;
    let other = app
        .admin
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "other API".into(),
            prefix: "other".into(),
            defaults: Some(pb::KeyspaceDefaults {
                max_lifetime: Some(secs(86_400)),
                ..Default::default()
            }),
            scopes: vec!["x:read".into()],
            leak_response: None,
            legacy_formats: vec![],
        })
        .await
        .expect("keyspace")
        .into_inner()
        .id;
    app.admin
        .clone()
        .create_role(role_request(&other, "crm", &["x:read"]))
        .await
        .expect("role");
    let theirs = key_in(&app, &other).await.key.expect("key").id;
    let perms = ["keys.read", "keys.write"];
    let by_keyspace = pb::CreateAdminTokenRequest {
        keyspaces: vec![acme],
        ..with_permissions("acme team", names(&perms))
    };
    let by_owner = pb::CreateAdminTokenRequest {
        owners: names(&["acct_2"]),
        ..with_permissions("acct_2 team", names(&perms))
    };
    for req in [by_keyspace, by_owner] {
        let mut a = mint(&app, &app.admin, req).await.admin;
        let update = |paths: &[&str], key: pb::Key| pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id: theirs.clone(),
                ..key
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: names(paths),
            }),
        };
        let asks = [
            update(
                &["roles"],
                pb::Key {
                    roles: names(&["zz"]),
                    ..Default::default()
                },
            ),
            update(
                &["roles"],
                pb::Key {
                    roles: names(&["crm"]),
                    ..Default::default()
                },
            ),
            update(
                &["scopes"],
                pb::Key {
                    scopes: names(&["y:write"]),
                    ..Default::default()
                },
            ),
            update(&["expire_time"], pb::Key::default()),
            update(
                &["name"],
                pb::Key {
                    name: "mine now".into(),
                    ..Default::default()
                },
            ),
        ];
        for ask in asks {
            let what = format!("{:?}", ask.update_mask);
            not_found(&what, a.update_key(ask).await);
        }
    }
    let key = app.get(&theirs).await;
    assert!(key.roles.is_empty() && key.name.is_empty(), "{key:?}");
}

crate::backend_tests!(
    a_token_limited_to_a_keyspace_sees_nothing_outside_it,
    an_owner_limited_token_cannot_manage_keyspaces,
    an_update_outside_the_limits_says_nothing_of_the_key,
);
