//! ListKeys filters and pages; CreateKey is idempotent by request_id.

use std::collections::HashSet;

use keysmith::grpc::pb::{self, KeyState};
use tonic::Code;

use crate::helpers::{Backend, assert_status, spawn};

async fn list_pages_through_every_key_once(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let mut made = HashSet::new();
    for i in 0..7 {
        let owner = if i % 2 == 0 { "acct_even" } else { "acct_odd" };
        let req = pb::CreateKeyRequest {
            owner_id: owner.into(),
            ..Default::default()
        };
        made.insert(
            admin
                .create_key(req)
                .await
                .expect("create")
                .into_inner()
                .key
                .expect("key")
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::ListKeysRequest {
            page_size: 3,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = admin.list_keys(req).await.expect("list").into_inner();
        assert!(page.keys.len() <= 3);
        seen.extend(page.keys.into_iter().map(|k| k.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 7, "no key twice");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), made);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ordered by id, i.e. by creation");

    let req = pb::ListKeysRequest {
        owner_id: "acct_even".into(),
        ..Default::default()
    };
    let even = admin.list_keys(req).await.expect("list").into_inner().keys;
    assert_eq!(even.len(), 4);
    assert!(even.iter().all(|k| k.owner_id == "acct_even"));
}

async fn list_filters_by_state(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let active = app.create_with_scopes(&[]).await.key.expect("key").id;
    let revoked = app.create_with_scopes(&[]).await.key.expect("key").id;
    let disabled = app.create_with_scopes(&[]).await.key.expect("key").id;
    let rotated = app.create_with_scopes(&[]).await.key.expect("key").id;
    admin
        .revoke_key(pb::RevokeKeyRequest {
            id: revoked.clone(),
            reason: String::new(),
            ..Default::default()
        })
        .await
        .expect("revoke");
    admin
        .disable_key(pb::DisableKeyRequest {
            id: disabled.clone(),
            reason: String::new(),
        })
        .await
        .expect("disable");
    let successor = admin
        .rotate_key(pb::RotateKeyRequest {
            id: rotated.clone(),
            grace_period: Some(Default::default()),
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner()
        .key
        .expect("key")
        .id;
    let ids = |state: KeyState| {
        let mut admin = admin.clone();
        async move {
            let req = pb::ListKeysRequest {
                state: state.into(),
                ..Default::default()
            };
            let keys = admin.list_keys(req).await.expect("list").into_inner().keys;
            assert!(keys.iter().all(|k| k.state() == state));
            keys.into_iter().map(|k| k.id).collect::<HashSet<_>>()
        }
    };
    assert_eq!(
        ids(KeyState::Active).await,
        HashSet::from([active, successor])
    );
    assert_eq!(ids(KeyState::Revoked).await, HashSet::from([revoked]));
    assert_eq!(ids(KeyState::Disabled).await, HashSet::from([disabled]));
    assert_eq!(ids(KeyState::Expired).await, HashSet::from([rotated]));
}

async fn create_with_same_request_id_returns_the_same_key(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let req = pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        scopes: vec!["a:read".into()],
        request_id: "req-7f3a".into(),
        ..Default::default()
    };
    let first = admin
        .create_key(req.clone())
        .await
        .expect("first")
        .into_inner();
    let retries = (0..4).map(|_| {
        let mut admin = admin.clone();
        let req = req.clone();
        async move { admin.create_key(req).await.expect("retry").into_inner() }
    });
    for retry in futures::future::join_all(retries).await {
        assert!(retry.replayed);
        assert!(retry.secret.is_empty(), "the secret is shown once");
        assert_eq!(
            retry.key.expect("key").id,
            first.key.as_ref().expect("key").id
        );
    }
    assert!(!first.replayed);
    let listed = admin
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.keys.len(), 1, "never two keys");

    let different = pb::CreateKeyRequest {
        scopes: vec!["a:write".into()],
        ..req
    };
    assert_status(
        admin.create_key(different).await,
        Code::AlreadyExists,
        "request_id",
    );
}

crate::backend_tests!(
    list_pages_through_every_key_once,
    list_filters_by_state,
    create_with_same_request_id_returns_the_same_key,
);
