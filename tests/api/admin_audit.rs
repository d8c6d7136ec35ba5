//! The admin plane beyond keys (webhook endpoints, redelivery, owner stale
//! policies) is audited like key changes: the acting token's id, a
//! hash-chained event, and no secret in it.

use keysmith::grpc::pb;
use tonic::Code;

use crate::helpers::{Admin, Backend, Bearer, TestApp, assert_status, spawn_with};

/// A second admin token, minted straight in the database, and a client
/// that acts with it: the audit events must name this token's id.
pub(crate) async fn acting_admin(app: &TestApp) -> (Admin, String) {
    let store = keysmith::app::open_store(&app.db.config, false)
        .await
        .expect("open store");
    let (token, info) =
        keysmith::auth::AdminAuth::new(store, Default::default(), Default::default())
            .mint("auditor")
            .await
            .expect("mint");
    let bearer = Bearer(
        format!("Bearer {}", token.expose_secret())
            .parse()
            .expect("ascii"),
    );
    let admin =
        pb::key_admin_client::KeyAdminClient::with_interceptor(app.admin_channel.clone(), bearer);
    (admin, format!("admin:{}", info.id))
}

async fn events(admin: &Admin, action: &str) -> Vec<pb::AuditEvent> {
    let req = pb::ListAuditEventsRequest {
        action: action.into(),
        ..Default::default()
    };
    admin
        .clone()
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events
}

/// The newest event of `action`: by `actor`, over an intact chain.
pub(crate) async fn audited(admin: &Admin, action: &str, actor: &str) -> serde_json::Value {
    let found = events(admin, action).await;
    let e = found.first().unwrap_or_else(|| panic!("no {action} event"));
    assert_eq!(e.actor, actor, "{action} names the acting token");
    let chain = admin
        .clone()
        .verify_audit_chain(pb::VerifyAuditChainRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(
        chain.intact && chain.events_checked > 0,
        "chain after {action}: {chain:?}"
    );
    serde_json::from_str(&e.changes_json).expect("changes json")
}

async fn total_events(admin: &Admin) -> usize {
    events(admin, "").await.len()
}

async fn webhook_admin_changes_are_audited_with_the_token(backend: Backend) {
    // Nothing is sent: the deliveries only need to exist.
    let app = spawn_with(backend, |c| c.webhooks.send = false).await;
    let (mut admin, actor) = acting_admin(&app).await;
    let url = "https://Hooks.Example.org/services/T0/B0/PATHSECRET?token=QUERYSECRET";

    let created = admin
        .create_webhook_endpoint(pb::CreateWebhookEndpointRequest {
            url: url.into(),
            events: vec!["*".into()],
            description: "pager".into(),
        })
        .await
        .expect("create")
        .into_inner();
    let id = created.endpoint.expect("endpoint").id;
    let c = audited(&admin, "webhook_endpoint.created", &actor).await;
    assert_eq!(c["endpoint_id"], id.as_str());
    assert_eq!(c["url"]["new"], "https://hooks.example.org");
    assert_eq!(c["url_sha256"]["new"].as_str().map(str::len), Some(64));
    assert_eq!(c["events"]["new"], serde_json::json!(["*"]));
    assert_eq!(c["description"]["new"], "pager");

    let update = pb::UpdateWebhookEndpointRequest {
        endpoint: Some(pb::WebhookEndpoint {
            id: id.clone(),
            url: "https://other.example.net:8443/x?sig=QUERYSECRET2".into(),
            events: vec!["key.revoked".into()],
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["url".into(), "events".into()],
        }),
    };
    admin.update_webhook_endpoint(update).await.expect("update");
    let c = audited(&admin, "webhook_endpoint.updated", &actor).await;
    assert_eq!(c["endpoint_id"], id.as_str());
    assert_eq!(c["url"]["old"], "https://hooks.example.org");
    assert_eq!(c["url"]["new"], "https://other.example.net:8443");
    assert_ne!(c["url_sha256"]["old"], c["url_sha256"]["new"]);
    assert_eq!(c["events"]["old"], serde_json::json!(["*"]));
    assert_eq!(c["events"]["new"], serde_json::json!(["key.revoked"]));
    assert!(c.get("description").is_none(), "only masked fields: {c}");

    // The '*' endpoint was sent its own creation event: redeliver that.
    let delivery = admin
        .list_webhook_deliveries(pb::ListWebhookDeliveriesRequest {
            endpoint_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
        .pop()
        .expect("a delivery of the creation event");
    admin
        .redeliver_webhook(pb::RedeliverWebhookRequest {
            id: delivery.id.clone(),
        })
        .await
        .expect("redeliver");
    let c = audited(&admin, "webhook_delivery.redelivered", &actor).await;
    assert_eq!(c["delivery_id"], delivery.id.as_str());
    assert_eq!(c["endpoint_id"], id.as_str());
    assert_eq!(c["event_id"], delivery.event_id.as_str());

    admin
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: id.clone() })
        .await
        .expect("delete");
    let c = audited(&admin, "webhook_endpoint.deleted", &actor).await;
    assert_eq!(c["endpoint_id"], id.as_str());
    assert_eq!(c["url"]["old"], "https://other.example.net:8443");

    // Calls that change nothing write nothing.
    let before = total_events(&admin).await;
    assert_status(
        admin
            .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: id.clone() })
            .await,
        Code::NotFound,
        "whe_",
    );
    assert_status(
        admin
            .redeliver_webhook(pb::RedeliverWebhookRequest {
                id: "evt_999:whe_x".into(),
            })
            .await,
        Code::NotFound,
        "evt_999",
    );
    assert_eq!(total_events(&admin).await, before);

    // No event, and no delivery of one, holds a secret.
    let all = events(&admin, "").await;
    for secret in [
        created.signing_secret.as_str(),
        "PATHSECRET",
        "QUERYSECRET",
        "/services/",
        &app.token,
    ] {
        for e in &all {
            assert!(
                !e.changes_json.contains(secret) && !e.reason.contains(secret),
                "{secret} in {e:?}"
            );
        }
    }
}

async fn stale_policy_changes_are_audited_with_the_token(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let (mut admin, actor) = acting_admin(&app).await;
    let days = |d: i64| keysmith::grpc::wkt::Duration {
        seconds: d * 86_400,
        nanos: 0,
    };
    let set = |flag: i64, disable: Option<i64>| pb::OwnerStalePolicy {
        owner_id: "acct_audit".into(),
        flag_after: Some(days(flag)),
        disable_after: disable.map(days),
        revoke_after: None,
        dry_run: false,
    };
    admin
        .set_owner_stale_policy(set(30, None))
        .await
        .expect("set");
    let c = audited(&admin, "owner_stale_policy.set", &actor).await;
    assert_eq!(c["flag_after_ms"]["old"], serde_json::Value::Null);
    assert_eq!(c["flag_after_ms"]["new"], 30 * 86_400_000_i64);
    let e = events(&admin, "owner_stale_policy.set").await.remove(0);
    assert_eq!(e.owner_id, "acct_audit");

    admin
        .set_owner_stale_policy(set(60, Some(90)))
        .await
        .expect("replace");
    let c = audited(&admin, "owner_stale_policy.set", &actor).await;
    assert_eq!(c["flag_after_ms"]["old"], 30 * 86_400_000_i64);
    assert_eq!(c["flag_after_ms"]["new"], 60 * 86_400_000_i64);
    assert_eq!(c["disable_after_ms"]["new"], 90 * 86_400_000_i64);
    assert_eq!(events(&admin, "owner_stale_policy.set").await.len(), 2);

    admin
        .delete_owner_stale_policy(pb::DeleteOwnerStalePolicyRequest {
            owner_id: "acct_audit".into(),
        })
        .await
        .expect("delete");
    let c = audited(&admin, "owner_stale_policy.deleted", &actor).await;
    assert_eq!(c["flag_after_ms"]["old"], 60 * 86_400_000_i64);
    assert_eq!(c["flag_after_ms"]["new"], serde_json::Value::Null);

    let before = total_events(&admin).await;
    assert_status(
        admin
            .delete_owner_stale_policy(pb::DeleteOwnerStalePolicyRequest {
                owner_id: "acct_audit".into(),
            })
            .await,
        Code::NotFound,
        "acct_audit",
    );
    assert_status(
        admin
            .set_owner_stale_policy(pb::OwnerStalePolicy {
                flag_after: None,
                ..set(1, None)
            })
            .await,
        Code::InvalidArgument,
        "flag_after",
    );
    assert_eq!(total_events(&admin).await, before);
}

/// The key calls, each through the token that acts: CreateKey, UpdateKey,
/// RotateKey, RevokeKey, DisableKey, EnableKey; RotateSelf acts as the key.
async fn key_admin_changes_are_audited_with_the_token(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let (mut admin, actor) = acting_admin(&app).await;
    let req = pb::CreateKeyRequest {
        owner_id: "acct_test".into(),
        name: "audited".into(),
        r#type: pb::KeyType::Secret.into(),
        environment: pb::Environment::Live.into(),
        scopes: vec!["a:read".into()],
        ..Default::default()
    };
    let created = admin.create_key(req).await.expect("create").into_inner();
    let id = created.key.expect("key").id;
    audited(&admin, "key.created", &actor).await;
    let update = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: id.clone(),
            name: "renamed".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["name".into()],
        }),
    };
    admin.update_key(update).await.expect("update");
    audited(&admin, "key.updated", &actor).await;
    let disable = pb::DisableKeyRequest {
        id: id.clone(),
        reason: "paused".into(),
    };
    admin.disable_key(disable).await.expect("disable");
    audited(&admin, "key.disabled", &actor).await;
    let enable = pb::EnableKeyRequest { id: id.clone() };
    admin.enable_key(enable).await.expect("enable");
    audited(&admin, "key.enabled", &actor).await;

    // RotateSelf is authenticated by the key itself, and audited as it.
    let mut by_key = pb::key_admin_client::KeyAdminClient::new(app.admin_channel.clone());
    let mut req = tonic::Request::new(pb::RotateSelfRequest { grace_period: None });
    let bearer = format!("Bearer {}", created.secret).parse().expect("ascii");
    req.metadata_mut().insert("authorization", bearer);
    let successor = by_key
        .rotate_self(req)
        .await
        .expect("rotate self")
        .into_inner()
        .key
        .expect("key")
        .id;
    audited(&admin, "key.rotated", &format!("key:{id}")).await;

    let rotate = pb::RotateKeyRequest {
        id: successor.clone(),
        ..Default::default()
    };
    admin.rotate_key(rotate).await.expect("rotate");
    audited(&admin, "key.rotated", &actor).await;
    let revoke = pb::RevokeKeyRequest {
        id: successor,
        reason: "done".into(),
        ..Default::default()
    };
    admin.revoke_key(revoke).await.expect("revoke");
    audited(&admin, "key.revoked", &actor).await;
}

crate::backend_tests!(
    key_admin_changes_are_audited_with_the_token,
    webhook_admin_changes_are_audited_with_the_token,
    stale_policy_changes_are_audited_with_the_token,
);
