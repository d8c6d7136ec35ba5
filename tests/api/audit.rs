//! Every mutation leaves an audit event, written with it.

use keysmith::grpc::pb;

use crate::helpers::{Backend, spawn};

async fn every_mutation_is_audited_with_actor_and_changes(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let created = app.create_with_scopes(&["a:read", "a:write"]).await;
    let id = created.key.expect("key").id;
    admin
        .update_key(pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id: id.clone(),
                scopes: vec!["a:read".into()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["scopes".into()],
            }),
        })
        .await
        .expect("update");
    let successor = admin
        .rotate_key(pb::RotateKeyRequest {
            id: id.clone(),
            grace_period: None,
        })
        .await
        .expect("rotate")
        .into_inner()
        .key
        .expect("key")
        .id;
    admin
        .revoke_key(pb::RevokeKeyRequest {
            id: id.clone(),
            reason: "rotated out".into(),
            ..Default::default()
        })
        .await
        .expect("revoke");

    let req = pb::ListAuditEventsRequest {
        key_id: id.clone(),
        ..Default::default()
    };
    let events = admin
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["key.revoked", "key.rotated", "key.updated", "key.created"],
        "newest first"
    );
    assert!(events.iter().all(|e| e.actor.starts_with("admin:adm_")));
    assert!(
        events
            .iter()
            .all(|e| e.key_id == id && e.owner_id == "acct_test")
    );
    assert_eq!(events[0].reason, "rotated out");

    let update: serde_json::Value = serde_json::from_str(&events[2].changes_json).expect("json");
    assert_eq!(
        update["scopes"]["old"],
        serde_json::json!(["a:read", "a:write"])
    );
    assert_eq!(update["scopes"]["new"], serde_json::json!(["a:read"]));
    let rotation: serde_json::Value = serde_json::from_str(&events[1].changes_json).expect("json");
    assert_eq!(rotation["rotated_to"]["new"], serde_json::json!(successor));

    // The successor's own history starts with its creation by rotation.
    let req = pb::ListAuditEventsRequest {
        key_id: successor,
        ..Default::default()
    };
    let events = admin
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "key.created");

    // Paging walks the whole log once.
    let mut token = String::new();
    let mut total = 0;
    loop {
        let req = pb::ListAuditEventsRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = admin
            .list_audit_events(req)
            .await
            .expect("audit")
            .into_inner();
        total += page.events.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(total, 5);
}

crate::backend_tests!(every_mutation_is_audited_with_actor_and_changes);
