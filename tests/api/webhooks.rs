//! Webhooks against a real HTTP receiver on loopback: signatures, retries,
//! stable event ids, the delivery log, redelivery, and an outbox that
//! survives a restart.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use keysmith::{domain::webhook::SigningSecret, grpc::pb};
use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_status, eventually, spawn_configured, spawn_with};

#[derive(Clone, Debug)]
struct Received {
    event_id: String,
    event_type: String,
    signature: String,
    body: Vec<u8>,
}

/// An HTTP receiver on 127.0.0.1 that fails the first `failures` requests
/// with 500 and records every request.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

async fn receiver(failures: usize) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned()
                        };
                        let (event_id, event_type, signature) = (
                            header("keysmith-event-id"),
                            header("keysmith-event-type"),
                            header("keysmith-signature"),
                        );
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes().to_vec())
                            .unwrap_or_default();
                        let n = {
                            let mut seen = seen.lock().expect("lock");
                            seen.push(Received {
                                event_id,
                                event_type,
                                signature,
                                body,
                            });
                            seen.len()
                        };
                        let status = if n <= failures { 500 } else { 200 };
                        let resp = Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Receiver { url, got }
}

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
    let endpoint = subscribe(&app, &rx.url, &["key.revoked"]).await;
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
        got.iter().all(|r| r.event_id == got[0].event_id),
        "one stable event id"
    );
    assert!(got.iter().all(|r| r.event_type == "key.revoked"));
    for r in &got {
        assert!(
            signature_holds(&endpoint.signing_secret, &r.signature, &r.body),
            "{r:?}"
        );
        assert!(!signature_holds("whsec_wrong", &r.signature, &r.body));
    }
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).expect("json");
    assert_eq!(body["type"], "key.revoked");
    assert_eq!(body["id"], got[0].event_id.as_str());
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
    assert_eq!(d.event_id, got[0].event_id);

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
    assert_eq!(rx.got.lock().expect("lock")[3].event_id, d.event_id);
}

async fn outbox_survives_a_restart(backend: Backend) {
    let rx = receiver(0).await;
    // First life: events are recorded but not sent.
    let app = spawn_with(backend, |c| {
        fast_webhooks(c);
        c.webhooks.send = false;
    })
    .await;
    subscribe(&app, &rx.url, &["*"]).await;
    let id = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&id).await;
    let (db, token) = app.stop().await;
    assert!(rx.got.lock().expect("lock").is_empty());

    // Second life: the outbox drains.
    let app = spawn_configured(db, Some(token), fast_webhooks).await;
    eventually("both events to arrive", || async {
        rx.got.lock().expect("lock").len() == 2
    })
    .await;
    // Deliveries run in parallel: no order is promised, every event is.
    let mut types: Vec<String> = rx
        .got
        .lock()
        .expect("lock")
        .iter()
        .map(|r| r.event_type.clone())
        .collect();
    types.sort();
    assert_eq!(types, ["key.created", "key.revoked"]);
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
