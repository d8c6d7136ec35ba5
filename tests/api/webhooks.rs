//! Webhooks against a real HTTP receiver on loopback: signatures, retries,
//! stable event ids, the delivery log, redelivery, and an outbox that
//! survives a restart.

use keysmith::{domain::webhook::SigningSecret, grpc::pb};
use std::time::Duration;
use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_status, eventually, spawn_configured, spawn_with};
use crate::receiver::receiver;

fn fast_webhooks(c: &mut keysmith::Config) {
    c.webhooks.allow_private_targets = true;
    c.webhooks.retry_base = Duration::from_millis(50);
    c.webhooks.poll_interval = Duration::from_millis(50);
}

async fn subscribe(app: &TestApp, url: &str, events: &[&str]) -> pb::CreateWebhookEndpointResponse {
    let req = pb::CreateWebhookEndpointRequest {
        url: url.into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        description: "test receiver".into(),
    };
    app.admin
        .clone()
        .create_webhook_endpoint(req)
        .await
        .expect("create endpoint")
        .into_inner()
}

/// Checks a `Keysmith-Signature` the way the README tells receivers to.
fn signature_holds(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else {
        return false;
    };
    let Ok(t) = t.parse::<i64>() else {
        return false;
    };
    let expected = SigningSecret::from_stored(secret.to_owned()).sign(t, body);
    expected.ends_with(v1) && v1.len() == 64
}

async fn deliveries_are_signed_retried_and_logged(backend: Backend) {
    let rx = receiver(2).await;
    let app = spawn_with(backend, fast_webhooks).await;
    let endpoint = subscribe(&app, &format!("{}/hooks", rx.base), &["key.revoked"]).await;
    assert!(endpoint.signing_secret.starts_with("whsec_"));
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&id).await;

    eventually("the third attempt to succeed", || async {
        rx.got.lock().expect("lock").len() >= 3
    })
    .await;
    let got = rx.got.lock().expect("lock").clone();
    assert_eq!(
        got.len(),
        3,
        "two failures, one success, nothing after: {got:?}"
    );
    assert!(
        got.iter()
            .all(|r| r.header("keysmith-event-id") == got[0].header("keysmith-event-id")),
        "one stable event id"
    );
    assert!(
        got.iter()
            .all(|r| r.header("keysmith-event-type") == "key.revoked")
    );
    for r in &got {
        assert!(
            signature_holds(
                &endpoint.signing_secret,
                r.header("keysmith-signature"),
                &r.body
            ),
            "{r:?}"
        );
        assert!(!signature_holds(
            "whsec_wrong",
            r.header("keysmith-signature"),
            &r.body
        ));
    }
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["type"], "key.revoked");
    assert_eq!(body["id"], got[0].header("keysmith-event-id"));
    assert_eq!(body["data"]["key_id"], id.as_str());

    let log = || async {
        let req = pb::ListWebhookDeliveriesRequest::default();
        app.admin
            .clone()
            .list_webhook_deliveries(req)
            .await
            .expect("log")
            .into_inner()
            .deliveries
    };
    eventually("the log to say delivered", || async {
        log()
            .await
            .first()
            .is_some_and(|d| d.status() == pb::DeliveryStatus::Delivered)
    })
    .await;
    let d = log().await.remove(0);
    assert_eq!((d.attempts, d.last_status_code), (3, Some(200)));
    assert_eq!(d.event_id, got[0].header("keysmith-event-id"));

    // Redelivery sends the same event again, with the same id.
    let again = app
        .admin
        .clone()
        .redeliver_webhook(pb::RedeliverWebhookRequest { id: d.id.clone() })
        .await
        .expect("redeliver")
        .into_inner();
    assert_eq!(again.status(), pb::DeliveryStatus::Pending);
    eventually("the redelivery", || async {
        rx.got.lock().expect("lock").len() == 4
    })
    .await;
    assert_eq!(
        rx.got.lock().expect("lock")[3]
            .header("keysmith-event-id")
            .to_owned(),
        d.event_id
    );
}

async fn outbox_survives_a_restart(backend: Backend) {
    let rx = receiver(0).await;
    // First life: events are recorded but not sent.
    let app = spawn_with(backend, |c| {
        fast_webhooks(c);
        c.webhooks.send = false;
    })
    .await;
    subscribe(&app, &format!("{}/hooks", rx.base), &["*"]).await;
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&id).await;
    let (db, token) = app.stop().await;
    assert!(rx.got.lock().expect("lock").is_empty());

    // Second life: the outbox drains.
    let app = spawn_configured(db, Some(token), fast_webhooks).await;
    // A `*` endpoint also hears of its own creation (an audited admin change).
    eventually("the three events to arrive", || async {
        rx.got.lock().expect("lock").len() == 3
    })
    .await;
    // Deliveries run in parallel: no order is promised, every event is.
    let mut types: Vec<String> = rx
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.header("keysmith-event-type").to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        ["key.created", "key.revoked", "webhook_endpoint.created"]
    );
    drop(app);
}

async fn private_targets_and_bad_events_are_refused(backend: Backend) {
    let app = crate::helpers::spawn(backend).await;
    let mut admin = app.admin.clone();
    let req = |url: &str, events: &[&str]| pb::CreateWebhookEndpointRequest {
        url: url.into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        description: String::new(),
    };
    for url in [
        "http://127.0.0.1:9/x",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://localhost/",
    ] {
        assert_status(
            admin.create_webhook_endpoint(req(url, &["*"])).await,
            Code::InvalidArgument,
            "url",
        );
    }
    assert_status(
        admin
            .create_webhook_endpoint(req("ftp://x.org/", &["*"]))
            .await,
        Code::InvalidArgument,
        "url",
    );
    assert_status(
        admin
            .create_webhook_endpoint(req("https://hooks.example.org/", &["key.nope"]))
            .await,
        Code::InvalidArgument,
        "events[0]",
    );
    assert_status(
        admin
            .create_webhook_endpoint(req("https://hooks.example.org/", &[]))
            .await,
        Code::InvalidArgument,
        "events",
    );
    let ok = admin
        .create_webhook_endpoint(req(
            "https://hooks.example.org/k",
            &["key.revoked", "key.revoked"],
        ))
        .await;
    let e = ok
        .expect("public target")
        .into_inner()
        .endpoint
        .expect("endpoint");
    assert_eq!(e.events, ["key.revoked"]);
    let listed = admin
        .list_webhook_endpoints(pb::ListWebhookEndpointsRequest {})
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.endpoints.len(), 1);
    admin
        .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: e.id.clone() })
        .await
        .expect("delete");
    assert_status(
        admin
            .delete_webhook_endpoint(pb::DeleteWebhookEndpointRequest { id: e.id })
            .await,
        Code::NotFound,
        "whe_",
    );
}

crate::backend_tests!(
    deliveries_are_signed_retried_and_logged,
    outbox_survives_a_restart,
    private_targets_and_bad_events_are_refused,
);
