//! Page tokens are opaque and sealed to the list and filter they came from:
//! another owner's list, a changed byte or a hand-made position is
//! refused, and a token outlives the server that issued it.

use std::collections::HashSet;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use keysmith::grpc::pb;
use tonic::Code;

use crate::helpers::{Admin, Backend, TestApp, assert_status, spawn, spawn_on, spawn_with};

async fn create_for(app: &TestApp, owner: &str) -> String {
    let req = pb::CreateKeyRequest {
        owner_id: owner.into(),
        ..Default::default()
    };
    app.create(req).await.key.expect("key").id
}

async fn keys_page(admin: &Admin, owner: &str, token: &str) -> pb::ListKeysResponse {
    let req = pb::ListKeysRequest {
        owner_id: owner.into(),
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    };
    admin
        .clone()
        .list_keys(req)
        .await
        .expect("list")
        .into_inner()
}

fn list_keys_with(owner: &str, token: &str) -> pb::ListKeysRequest {
    pb::ListKeysRequest {
        owner_id: owner.into(),
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    }
}

async fn page_token_of_one_owner_is_refused_for_another(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    for owner in ["acct_a", "acct_a", "acct_b", "acct_b"] {
        create_for(&app, owner).await;
    }
    let token = keys_page(&app.admin, "acct_a", "").await.next_page_token;
    assert!(!token.is_empty(), "acct_a has a second page");

    assert_status(
        admin.list_keys(list_keys_with("acct_b", &token)).await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        admin.list_keys(list_keys_with("", &token)).await,
        Code::InvalidArgument,
        "page_token",
    );
    let other_order = pb::ListKeysRequest {
        order_by: pb::KeyOrder::LastUsedDesc.into(),
        ..list_keys_with("acct_a", &token)
    };
    assert_status(
        admin.list_keys(other_order).await,
        Code::InvalidArgument,
        "page_token",
    );
    // Under its own filter it pages on, and to that owner's keys only.
    let next = keys_page(&app.admin, "acct_a", &token).await;
    assert_eq!(next.keys.len(), 1);
    assert_eq!(next.keys[0].owner_id, "acct_a");

    // Audit events: the same, per owner.
    let audit = |owner: &str, token: &str| pb::ListAuditEventsRequest {
        owner_id: owner.into(),
        page_size: 1,
        page_token: token.into(),
        ..Default::default()
    };
    let token = admin
        .list_audit_events(audit("acct_a", ""))
        .await
        .expect("audit")
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty(), "acct_a has two events");
    assert_status(
        admin.list_audit_events(audit("acct_b", &token)).await,
        Code::InvalidArgument,
        "page_token",
    );
    let next = admin
        .list_audit_events(audit("acct_a", &token))
        .await
        .expect("own filter")
        .into_inner();
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].owner_id, "acct_a");
    assert!(next.next_page_token.is_empty(), "two events in all");

    // ListKeys' tokens are not ListAuditEvents' tokens, nor the reverse.
    let key_token = keys_page(&app.admin, "acct_a", "").await.next_page_token;
    assert_status(
        admin.list_audit_events(audit("acct_a", &key_token)).await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        admin.list_keys(list_keys_with("acct_a", &token)).await,
        Code::InvalidArgument,
        "page_token",
    );
}

async fn tampered_or_forged_page_token_is_refused(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create_for(&app, "acct_a").await);
    }
    let token = keys_page(&app.admin, "acct_a", "").await.next_page_token;
    let bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64url");

    // The position, moved to skip a key: the last byte of the key id, and
    // the first byte of the seal.
    for i in [bytes.len() - 1, 0] {
        let mut forged = bytes.clone();
        forged[i] ^= 1;
        let forged = URL_SAFE_NO_PAD.encode(&forged);
        assert_status(
            admin.list_keys(list_keys_with("acct_a", &forged)).await,
            Code::InvalidArgument,
            "page_token",
        );
    }
    // A position written by hand, in the old unsealed form and in the new
    // one without the seal.
    let old = URL_SAFE_NO_PAD.encode(format!("k:0:0:{}", ids[1]));
    let bare = URL_SAFE_NO_PAD.encode(format!("0:{}", ids[1]));
    let truncated = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]);
    for forged in [old, bare, truncated, "x".repeat(4096)] {
        assert_status(
            admin.list_keys(list_keys_with("acct_a", &forged)).await,
            Code::InvalidArgument,
            "page_token",
        );
    }
    // The untouched token still works.
    assert_eq!(keys_page(&app.admin, "acct_a", &token).await.keys.len(), 1);
}

/// The key that seals tokens is the installation's, kept in the database:
/// a token from before a restart pages on after it, as it would on another
/// replica, and the walk sees every key once.
async fn paging_survives_a_restart(backend: Backend) {
    let app = spawn(backend).await;
    let mut made = HashSet::new();
    for _ in 0..4 {
        made.insert(create_for(&app, "acct_a").await);
    }
    let first = keys_page(&app.admin, "acct_a", "").await;
    let (db, token) = app.stop().await;
    let app = spawn_on(db, Some(token)).await;

    let mut seen: Vec<String> = first.keys.into_iter().map(|k| k.id).collect();
    let mut next = first.next_page_token;
    while !next.is_empty() {
        let page = keys_page(&app.admin, "acct_a", &next).await;
        seen.extend(page.keys.into_iter().map(|k| k.id));
        next = page.next_page_token;
    }
    assert_eq!(seen.len(), 4, "no key twice: {seen:?}");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), made);
}

async fn delivery_page_token_is_bound_to_its_filter(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.webhooks.allow_private_targets = true;
        // Nothing is sent: every delivery stays pending in the log.
        c.webhooks.send = false;
    })
    .await;
    let mut admin = app.admin.clone();
    let endpoint = admin
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: "http://127.0.0.1:9/hooks".into(),
            events: vec!["*".into()],
            description: String::new(),
        })
        .await
        .expect("endpoint")
        .into_inner()
        .endpoint
        .expect("endpoint")
        .id;
    for _ in 0..3 {
        create_for(&app, "acct_a").await;
    }
    let list = |status: pb::DeliveryStatus, token: &str| pb::ListWebhookDeliveriesRequest {
        endpoint_id: endpoint.clone(),
        status: status.into(),
        page_size: 1,
        page_token: token.into(),
    };
    let mut seen = HashSet::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_webhook_deliveries(list(pb::DeliveryStatus::Pending, &token))
            .await
            .expect("deliveries")
            .into_inner();
        seen.extend(page.deliveries.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
        assert_status(
            admin
                .list_webhook_deliveries(list(pb::DeliveryStatus::Failed, &token))
                .await,
            Code::InvalidArgument,
            "page_token",
        );
    }
    assert_eq!(seen.len(), 4, "the endpoint's own creation and three keys");
}

crate::backend_tests!(
    page_token_of_one_owner_is_refused_for_another,
    tampered_or_forged_page_token_is_refused,
    paging_survives_a_restart,
    delivery_page_token_is_bound_to_its_filter,
);
