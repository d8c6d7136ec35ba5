//! Tokens limited to some owners or keyspaces see nothing outside them,
//! and no token mints one with more power than its own.

use keysmith::grpc::pb;
use tonic::Code;

use crate::{
    helpers::{Admin, Backend, TestApp, assert_status, spawn},
    token_support::{Minted, get_token, list_tokens, mint, names, with_permissions},
};

async fn key_for(app: &TestApp, owner: &str) -> String {
    app.create(pb::CreateKeyRequest {
        owner_id: owner.into(),
        name: format!("{owner} key"),
        ..Default::default()
    })
    .await
    .key
    .expect("key")
    .id
}

fn limited(name: &str, permissions: &[&str], owners: &[&str]) -> pb::CreateAdminTokenRequest {
    pb::CreateAdminTokenRequest {
        owners: names(owners),
        ..with_permissions(name, names(permissions))
    }
}

async fn listed_owners(admin: &Admin, req: pb::ListKeysRequest) -> Vec<String> {
    let keys = admin
        .clone()
        .list_keys(req)
        .await
        .expect("list")
        .into_inner()
        .keys;
    keys.into_iter().map(|k| k.owner_id).collect()
}

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    let status = r.expect_err(what);
    assert_eq!(status.code(), Code::NotFound, "{what}: {status:?}");
}

async fn a_token_limited_to_owners_sees_nothing_of_the_others(backend: Backend) {
    let app = spawn(backend).await;
    let mine = key_for(&app, "acct_a").await;
    let theirs = key_for(&app, "acct_b").await;
    let perms = [
        "keys.read",
        "keys.write",
        "keys.revoke",
        "audit.read",
        "usage.read",
    ];
    let Minted { admin: a, .. } =
        mint(&app, &app.admin, limited("a only", &perms, &["acct_a"])).await;

    let mut c = a.clone();
    assert_eq!(
        c.get_key(pb::GetKeyRequest { id: mine.clone() })
            .await
            .expect("mine")
            .into_inner()
            .key
            .expect("key")
            .owner_id,
        "acct_a"
    );
    not_found(
        "get",
        c.get_key(pb::GetKeyRequest { id: theirs.clone() }).await,
    );
    assert_eq!(
        listed_owners(&a, pb::ListKeysRequest::default()).await,
        ["acct_a"]
    );
    let other = pb::ListKeysRequest {
        owner_id: "acct_b".into(),
        ..Default::default()
    };
    assert!(
        listed_owners(&a, other).await.is_empty(),
        "never listed, never counted"
    );
    let stale = c.list_stale_keys(pb::ListStaleKeysRequest {
        unused_for: Some(keysmith::grpc::wkt::Duration {
            seconds: 0,
            nanos: 0,
        }),
        ..Default::default()
    });
    let stale = stale.await.expect("stale").into_inner().keys;
    assert!(
        stale.iter().all(|k| k.owner_id == "acct_a") && !stale.is_empty(),
        "{stale:?}"
    );

    let update = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: theirs.clone(),
            name: "taken".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["name".into()],
        }),
    };
    not_found("update", c.update_key(update).await);
    let revoke = pb::RevokeKeyRequest {
        id: theirs.clone(),
        include_successors: true,
        ..Default::default()
    };
    not_found("revoke", c.revoke_key(revoke).await);
    let rotate = pb::RotateKeyRequest {
        id: theirs.clone(),
        ..Default::default()
    };
    not_found("rotate", c.rotate_key(rotate).await);
    let disable = pb::DisableKeyRequest {
        id: theirs.clone(),
        reason: String::new(),
    };
    not_found("disable", c.disable_key(disable).await);
    not_found(
        "enable",
        c.enable_key(pb::EnableKeyRequest { id: theirs.clone() })
            .await,
    );
    let usage = pb::GetKeyUsageRequest {
        id: theirs.clone(),
        ..Default::default()
    };
    not_found("usage", c.get_key_usage(usage).await);
    let overlap = pb::GetRotationOverlapRequest { id: theirs.clone() };
    not_found("overlap", c.get_rotation_overlap(overlap).await);

    // Their key is untouched.
    let key = app.get(&theirs).await;
    assert_eq!(
        (key.state(), key.name.as_str()),
        (pb::KeyState::Active, "acct_b key")
    );

    // Audit events about other owners, or about no owner (the minting of
    // this very token), are not this token's to see.
    let events = c.list_audit_events(pb::ListAuditEventsRequest::default());
    let events = events.await.expect("audit").into_inner().events;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.owner_id == "acct_a"), "{events:?}");
    let theirs_only = pb::ListAuditEventsRequest {
        key_id: theirs.clone(),
        ..Default::default()
    };
    let events = c
        .list_audit_events(theirs_only)
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert!(events.is_empty(), "{events:?}");

    // It acts for its owners only.
    let create = |owner: &str| pb::CreateKeyRequest {
        owner_id: owner.into(),
        ..Default::default()
    };
    assert_status(
        c.create_key(create("acct_b")).await,
        Code::PermissionDenied,
        "owner_id",
    );
    c.create_key(create("acct_a"))
        .await
        .expect("for its own owner");
    // And it cannot hold what spans every owner.
    assert_status(
        c.verify_audit_chain(pb::VerifyAuditChainRequest {}).await,
        Code::PermissionDenied,
        "limited",
    );
}

async fn a_stronger_token_is_refused_on_the_field_that_asks(backend: Backend) {
    let app = spawn(backend).await;
    let in_an_hour = keysmith::grpc::wkt::Timestamp {
        seconds: keysmith::domain::Timestamp::now().as_millis() / 1000 + 3600,
        nanos: 0,
    };
    let later = keysmith::grpc::wkt::Timestamp {
        seconds: in_an_hour.seconds + 60,
        ..in_an_hour
    };
    let parent = pb::CreateAdminTokenRequest {
        expire_time: Some(in_an_hour),
        keyspaces: names(&["ks_default"]),
        ..limited(
            "parent",
            &["keys.read", "tokens.manage"],
            &["acct_a", "acct_b"],
        )
    };
    let Minted {
        admin: p,
        id: parent_id,
        ..
    } = mint(&app, &app.admin, parent).await;
    let ok = pb::CreateAdminTokenRequest {
        expire_time: Some(in_an_hour),
        keyspaces: names(&["ks_default"]),
        ..limited("child", &["keys.read"], &["acct_a"])
    };
    let cases = [
        (
            "permissions",
            pb::CreateAdminTokenRequest {
                permissions: names(&["keys.write"]),
                ..ok.clone()
            },
        ),
        (
            "owners",
            pb::CreateAdminTokenRequest {
                owners: names(&["acct_c"]),
                ..ok.clone()
            },
        ),
        (
            "owners",
            pb::CreateAdminTokenRequest {
                owners: vec![],
                ..ok.clone()
            },
        ),
        (
            "keyspaces",
            pb::CreateAdminTokenRequest {
                keyspaces: names(&["ks_other"]),
                ..ok.clone()
            },
        ),
        (
            "keyspaces",
            pb::CreateAdminTokenRequest {
                keyspaces: vec![],
                ..ok.clone()
            },
        ),
        (
            "expire_time",
            pb::CreateAdminTokenRequest {
                expire_time: None,
                ..ok.clone()
            },
        ),
        (
            "expire_time",
            pb::CreateAdminTokenRequest {
                expire_time: Some(later),
                ..ok.clone()
            },
        ),
        (
            "permissions[1]",
            pb::CreateAdminTokenRequest {
                permissions: names(&["keys.read", "keys.delete"]),
                ..ok.clone()
            },
        ),
        (
            "permissions",
            pb::CreateAdminTokenRequest {
                permissions: names(&["keys.read", "webhooks.read"]),
                ..ok.clone()
            },
        ),
        (
            "name",
            pb::CreateAdminTokenRequest {
                name: String::new(),
                ..ok.clone()
            },
        ),
    ];
    for (field, req) in cases {
        let result = p.clone().create_admin_token(req.clone()).await;
        assert_status(result, Code::InvalidArgument, field);
    }
    let unknown = pb::CreateAdminTokenRequest {
        permissions: names(&["keys.delete"]),
        ..ok.clone()
    };
    let status = p
        .clone()
        .create_admin_token(unknown)
        .await
        .expect_err("unknown");
    assert!(
        status
            .message()
            .contains("`keys.delete` is not a permission"),
        "{status:?}"
    );

    let child = mint(&app, &p, ok).await;
    // The limited parent sees itself and what it minted, nothing else.
    let mut ids: Vec<String> = list_tokens(&p).await.into_iter().map(|t| t.id).collect();
    ids.sort();
    let mut expected = vec![parent_id.clone(), child.id.clone()];
    expected.sort();
    assert_eq!(ids, expected);
    let everyone = list_tokens(&app.admin).await;
    let stranger = everyone
        .iter()
        .find(|t| !expected.contains(&t.id))
        .expect("the test's token");
    let get = pb::GetAdminTokenRequest {
        id: stranger.id.clone(),
    };
    not_found("get", p.clone().get_admin_token(get).await);
    let revoke = pb::RevokeAdminTokenRequest {
        id: stranger.id.clone(),
        reason: String::new(),
        ..Default::default()
    };
    not_found("revoke", p.clone().revoke_admin_token(revoke).await);
    let made = get_token(&p, &child.id).await.expect("its child");
    assert_eq!(
        (made.created_by.as_str(), made.owners.as_slice()),
        (parent_id.as_str(), &["acct_a".to_owned()][..])
    );
}

crate::backend_tests!(
    a_token_limited_to_owners_sees_nothing_of_the_others,
    a_stronger_token_is_refused_on_the_field_that_asks,
);
