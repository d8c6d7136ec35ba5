//! Bad input gets INVALID_ARGUMENT naming the field, or NOT_FOUND, and
//! changes nothing.

use keysmith::grpc::pb;
use tonic::Code;

use crate::helpers::{Backend, assert_status, spawn};

fn valid_create() -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        ..Default::default()
    }
}

async fn create_names_the_bad_field(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let cases: Vec<(pb::CreateKeyRequest, &str)> = vec![
        (
            pb::CreateKeyRequest {
                owner_id: String::new(),
                ..valid_create()
            },
            "owner_id",
        ),
        (
            pb::CreateKeyRequest {
                owner_id: "acct'; DROP TABLE keys;--".into(),
                ..valid_create()
            },
            "owner_id",
        ),
        (
            pb::CreateKeyRequest {
                scopes: vec!["Invoices:Read".into()],
                ..valid_create()
            },
            "scopes[0]",
        ),
        (
            pb::CreateKeyRequest {
                scopes: vec!["a:read".into(), "".into()],
                ..valid_create()
            },
            "scopes[1]",
        ),
        (
            pb::CreateKeyRequest {
                scopes: vec!["a:read".into(), "a:read".into()],
                ..valid_create()
            },
            "scopes[1]",
        ),
        (
            pb::CreateKeyRequest {
                scopes: (0..101).map(|i| format!("s{i}")).collect(),
                ..valid_create()
            },
            "scopes",
        ),
        (
            pb::CreateKeyRequest {
                metadata: [("note".to_string(), "x".repeat(5000))].into(),
                ..valid_create()
            },
            "metadata[note]",
        ),
        (
            pb::CreateKeyRequest {
                metadata: (0..10)
                    .map(|i| (format!("k{i}"), "x".repeat(1000)))
                    .collect(),
                ..valid_create()
            },
            "metadata",
        ),
        (
            pb::CreateKeyRequest {
                name: "a\u{0}b".into(),
                ..valid_create()
            },
            "name",
        ),
        (
            pb::CreateKeyRequest {
                r#type: 42,
                ..valid_create()
            },
            "type",
        ),
        (
            pb::CreateKeyRequest {
                environment: -3,
                ..valid_create()
            },
            "environment",
        ),
        (
            pb::CreateKeyRequest {
                expire_time: Some(keysmith::grpc::wkt::Timestamp {
                    seconds: 1_000,
                    nanos: 0,
                }),
                ..valid_create()
            },
            "expire_time",
        ),
        (
            pb::CreateKeyRequest {
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: -5,
                    nanos: 0,
                }),
                ..valid_create()
            },
            "ttl",
        ),
        (
            pb::CreateKeyRequest {
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: i64::MAX,
                    nanos: 0,
                }),
                ..valid_create()
            },
            "ttl",
        ),
        (
            pb::CreateKeyRequest {
                request_id: "has space".into(),
                ..valid_create()
            },
            "request_id",
        ),
    ];
    for (req, field) in cases {
        assert_status(admin.create_key(req).await, Code::InvalidArgument, field);
    }
    // Nothing was written by any of them.
    let listed = admin
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.keys.is_empty());
}

async fn ids_grace_and_paging_are_checked(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;

    assert_status(
        admin.get_key(pb::GetKeyRequest { id: "nope".into() }).await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        admin.get_key(pb::GetKeyRequest { id: String::new() }).await,
        Code::InvalidArgument,
        "id",
    );
    let missing = "key_01aaaaaaaaaaaaaaaaaaaaaaaa";
    assert_status(
        admin
            .get_key(pb::GetKeyRequest { id: missing.into() })
            .await,
        Code::NotFound,
        missing,
    );
    assert_status(
        admin
            .revoke_key(pb::RevokeKeyRequest {
                id: missing.into(),
                reason: String::new(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        missing,
    );

    let negative = pb::RotateKeyRequest {
        id: id.clone(),
        grace_period: Some(keysmith::grpc::wkt::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin.rotate_key(negative).await,
        Code::InvalidArgument,
        "grace_period",
    );
    let huge = pb::RotateKeyRequest {
        id: id.clone(),
        grace_period: Some(keysmith::grpc::wkt::Duration {
            seconds: 400 * 86_400,
            nanos: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin.rotate_key(huge).await,
        Code::InvalidArgument,
        "grace_period",
    );

    for page_size in [1001, -1, i32::MAX] {
        let req = pb::ListKeysRequest {
            page_size,
            ..Default::default()
        };
        assert_status(
            admin.list_keys(req).await,
            Code::InvalidArgument,
            "page_size",
        );
    }
    let req = pb::ListKeysRequest {
        page_token: "garbage!".into(),
        ..Default::default()
    };
    assert_status(
        admin.list_keys(req).await,
        Code::InvalidArgument,
        "page_token",
    );

    // The key is untouched by all of the above.
    let key = app.get(&id).await;
    assert_eq!(key.version, 1);
    assert!(key.rotated_to.is_empty());
}

async fn update_mask_is_checked(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let id = app
        .create_with_scopes(&["a:read"])
        .await
        .key
        .expect("key")
        .id;
    let update = |paths: Vec<&str>, key: pb::Key| pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: id.clone(),
            ..key
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: paths.into_iter().map(String::from).collect(),
        }),
    };
    assert_status(
        admin.update_key(update(vec![], pb::Key::default())).await,
        Code::InvalidArgument,
        "update_mask",
    );
    assert_status(
        admin
            .update_key(update(vec!["name", "owner_id"], pb::Key::default()))
            .await,
        Code::InvalidArgument,
        "update_mask.paths[1]",
    );
    assert_status(
        admin
            .update_key(update(
                vec!["scopes"],
                pb::Key {
                    scopes: vec!["BAD".into()],
                    ..Default::default()
                },
            ))
            .await,
        Code::InvalidArgument,
        "key.scopes[0]",
    );
    // Clearing the expiry is allowed and explicit.
    let cleared = admin
        .update_key(update(vec!["expire_time"], pb::Key::default()))
        .await
        .expect("clear expiry");
    assert!(cleared.into_inner().key.expect("key").expire_time.is_none());
    assert_eq!(app.get(&id).await.scopes, vec!["a:read"]);
}

crate::backend_tests!(
    create_names_the_bad_field,
    ids_grace_and_paging_are_checked,
    update_mask_is_checked
);
