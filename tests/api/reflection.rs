//! Server reflection on the verify listener describes everything it serves,
//! Envoy's Authorization included: grpcurl calls Check with no proto files.

use std::process::Command;

use crate::helpers::{Backend, spawn};

async fn grpcurl(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("grpcurl")
            .args(&args)
            .output()
            .expect("grpcurl is needed; scripts/test installs it");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .expect("grpcurl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_calls_check_through_reflection() {
    let app = spawn(Backend::Sqlite).await;
    let addr = app.verify_channel_addr();
    let args = |rest: &[&str]| {
        ["-plaintext".to_string(), "-max-time".into(), "20".into()]
            .into_iter()
            .chain(rest.iter().map(|s| s.to_string()))
            .collect::<Vec<_>>()
    };

    let (ok, listed) = grpcurl(args(&[&addr, "list"])).await;
    assert!(ok, "{listed}");
    for service in [
        "keysmith.v1.KeyVerify",
        "envoy.service.auth.v3.Authorization",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} in {listed}"
        );
    }
    assert!(
        !listed.contains("KeyAdmin"),
        "the verify listener lists only what it serves"
    );

    let (ok, described) = grpcurl(args(&[
        &addr,
        "describe",
        "envoy.service.auth.v3.Authorization",
    ]))
    .await;
    assert!(ok, "{described}");
    assert!(described.contains("rpc Check"), "{described}");

    // Check itself, encoded from the reflected descriptors: a real key is
    // let through with its identity headers.
    let created = app.create_with_scopes(&["invoices:read"]).await;
    let id = created.key.expect("key").id;
    let body = serde_json::json!({
        "attributes": {
            "source": { "address": { "socketAddress": { "address": "203.0.113.9" } } },
            "request": { "http": {
                "method": "GET",
                "path": "/invoices",
                "headers": { "x-api-key": created.secret },
            } },
            "contextExtensions": { "keysmith_scopes": "invoices:read" },
        }
    })
    .to_string();
    let (ok, answer) = grpcurl(args(&[
        "-d",
        &body,
        &addr,
        "envoy.service.auth.v3.Authorization/Check",
    ]))
    .await;
    assert!(ok, "{answer}");
    let answer: serde_json::Value = serde_json::from_str(&answer).expect("json answer");
    let headers = answer["okResponse"]["headers"]
        .as_array()
        .expect("ok headers");
    assert!(
        headers
            .iter()
            .any(|h| h["header"]["key"] == "x-keysmith-key-id" && h["header"]["value"] == id),
        "{answer}"
    );
}
