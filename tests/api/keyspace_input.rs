//! Bad keyspace input gets a field-named status and changes nothing.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Backend, assert_status, spawn},
    keyspaces::keyspace,
};

fn create(prefix: &str) -> pb::CreateKeyspaceRequest {
    pb::CreateKeyspaceRequest {
        name: "an API".into(),
        prefix: prefix.into(),
        ..Default::default()
    }
}

async fn bad_keyspace_input_is_refused_naming_the_field(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let taken = keyspace(&app, "taken", Default::default()).await;
    let duration = |seconds| keysmith::grpc::wkt::Duration { seconds, nanos: 0 };
    let cases: Vec<(pb::CreateKeyspaceRequest, Code, &str)> = vec![
        (create(""), Code::InvalidArgument, "prefix"),
        (create("Acme"), Code::InvalidArgument, "prefix"),
        (create("ac_me"), Code::InvalidArgument, "prefix"),
        (create("a"), Code::InvalidArgument, "prefix"),
        (create(&"a".repeat(17)), Code::InvalidArgument, "prefix"),
        (create("taken"), Code::AlreadyExists, "prefix"),
        (
            pb::CreateKeyspaceRequest {
                name: String::new(),
                ..create("fine")
            },
            Code::InvalidArgument,
            "name",
        ),
        (
            pb::CreateKeyspaceRequest {
                name: "x".repeat(201),
                ..create("fine")
            },
            Code::InvalidArgument,
            "name",
        ),
        (
            pb::CreateKeyspaceRequest {
                scopes: (0..501).map(|i| format!("s{i}")).collect(),
                ..create("fine")
            },
            Code::InvalidArgument,
            "scopes",
        ),
        (
            pb::CreateKeyspaceRequest {
                scopes: vec!["a:read".into(), "a:read".into()],
                ..create("fine")
            },
            Code::InvalidArgument,
            "scopes[1]",
        ),
        (
            pb::CreateKeyspaceRequest {
                scopes: vec!["a:read".into()],
                defaults: Some(pb::KeyspaceDefaults {
                    scopes: vec!["b:read".into()],
                    ..Default::default()
                }),
                ..create("fine")
            },
            Code::InvalidArgument,
            "defaults.scopes[0]",
        ),
        (
            pb::CreateKeyspaceRequest {
                defaults: Some(pb::KeyspaceDefaults {
                    ttl: Some(duration(7200)),
                    max_lifetime: Some(duration(3600)),
                    ..Default::default()
                }),
                ..create("fine")
            },
            Code::InvalidArgument,
            "defaults.ttl",
        ),
        (
            pb::CreateKeyspaceRequest {
                defaults: Some(pb::KeyspaceDefaults {
                    max_lifetime: Some(duration(11 * 366 * 86_400)),
                    ..Default::default()
                }),
                ..create("fine")
            },
            Code::InvalidArgument,
            "defaults.max_lifetime",
        ),
        (
            pb::CreateKeyspaceRequest {
                defaults: Some(pb::KeyspaceDefaults {
                    environment: 9,
                    ..Default::default()
                }),
                ..create("fine")
            },
            Code::InvalidArgument,
            "defaults.environment",
        ),
    ];
    for (req, code, field) in cases {
        let what = format!("{req:?}");
        let result = admin.create_keyspace(req).await;
        assert!(result.is_err(), "{what} was accepted");
        assert_status(result, code, field);
    }
    let listed = admin
        .list_keyspaces(pb::ListKeyspacesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .keyspaces;
    let ids: Vec<_> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "only the default and `taken`: {ids:?}");
    assert!(ids.contains(&"ks_default") && ids.contains(&taken.id.as_str()));

    // Unknown and malformed keyspace ids, wherever they are named.
    let get = |id: &str| pb::GetKeyspaceRequest { id: id.into() };
    assert_status(
        admin.get_keyspace(get("ks_nosuch")).await,
        Code::NotFound,
        "ks_nosuch",
    );
    assert_status(
        admin.get_keyspace(get("nosuch")).await,
        Code::InvalidArgument,
        "id",
    );
    let key = |keyspace: &str| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        keyspace: keyspace.into(),
        ..Default::default()
    };
    assert_status(
        admin.create_key(key("ks_nosuch")).await,
        Code::NotFound,
        "keyspace",
    );
    assert_status(
        admin.create_key(key("ks_no-such")).await,
        Code::InvalidArgument,
        "keyspace",
    );
    let list = pb::ListKeysRequest {
        keyspace: "x".repeat(100),
        ..Default::default()
    };
    assert_status(
        admin.list_keys(list).await,
        Code::InvalidArgument,
        "keyspace",
    );
    let update = |id: &str, paths: &[&str]| pb::UpdateKeyspaceRequest {
        keyspace: Some(pb::Keyspace {
            id: id.into(),
            name: "n".into(),
            prefix: "Bad".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        }),
    };
    let cases = [
        (update("ks_nosuch", &["name"]), Code::NotFound, "ks_nosuch"),
        (
            update(&taken.id, &["prefix"]),
            Code::InvalidArgument,
            "keyspace.prefix",
        ),
        (
            update(&taken.id, &["id"]),
            Code::InvalidArgument,
            "update_mask.paths[0]",
        ),
        (update(&taken.id, &[]), Code::InvalidArgument, "update_mask"),
        (update("", &["name"]), Code::InvalidArgument, "keyspace.id"),
    ];
    for (req, code, field) in cases {
        assert_status(admin.update_keyspace(req).await, code, field);
    }
    let mut dup = update(&taken.id, &["prefix"]);
    if let Some(k) = dup.keyspace.as_mut() {
        k.prefix = "other".into();
    }
    keyspace(&app, "other", Default::default()).await;
    assert_status(
        admin.update_keyspace(dup).await,
        Code::AlreadyExists,
        "prefix",
    );
    let token = pb::ListKeyspacesRequest {
        page_token: "bm9wZQ".into(),
        ..Default::default()
    };
    assert_status(
        admin.list_keyspaces(token).await,
        Code::InvalidArgument,
        "page_token",
    );
}

async fn keys_draw_their_scopes_from_the_catalogue(backend: Backend) {
    let app = spawn(backend).await;
    let ks = app
        .admin
        .clone()
        .create_keyspace(pb::CreateKeyspaceRequest {
            name: "billing".into(),
            prefix: "billing".into(),
            scopes: vec!["invoices:read".into(), "customers:*".into()],
            ..Default::default()
        })
        .await
        .expect("create")
        .into_inner();
    let key = |scopes: &[&str]| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        keyspace: ks.id.clone(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let mut admin = app.admin.clone();
    let ok = admin
        .create_key(key(&["invoices:read", "customers:read"]))
        .await
        .expect("declared scopes")
        .into_inner();
    assert_status(
        admin
            .create_key(key(&["invoices:read", "invoices:write"]))
            .await,
        Code::InvalidArgument,
        "scopes[1]",
    );
    assert_status(
        admin.create_key(key(&["*"])).await,
        Code::InvalidArgument,
        "scopes[0]",
    );
    let update = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: ok.key.expect("key").id,
            scopes: vec!["admin".into()],
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["scopes".into()],
        }),
    };
    assert_status(
        admin.update_key(update).await,
        Code::InvalidArgument,
        "key.scopes[0]",
    );
    // Other keyspaces declare nothing and admit any scope.
    assert!(
        app.create_with_scopes(&["invoices:write"])
            .await
            .key
            .is_some()
    );
}

async fn keyspaces_list_in_pages(backend: Backend) {
    let app = spawn(backend).await;
    for p in ["aa", "bb", "cc", "dd"] {
        keyspace(&app, p, Default::default()).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .admin
            .clone()
            .list_keyspaces(pb::ListKeyspacesRequest {
                page_size: 2,
                page_token: token,
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.keyspaces.len() <= 2);
        seen.extend(page.keyspaces.into_iter().map(|k| k.prefix));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    seen.sort();
    assert_eq!(seen, ["", "aa", "bb", "cc", "dd"]);
}

crate::backend_tests!(
    bad_keyspace_input_is_refused_naming_the_field,
    keys_draw_their_scopes_from_the_catalogue,
    keyspaces_list_in_pages,
);
