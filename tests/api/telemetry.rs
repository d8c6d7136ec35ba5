//! OTLP export from a real `keysmith serve` process to a local collector
//! stand-in: traces and metrics arrive, and the metrics keysmith promises
//! are among them.

use std::process::{Command, Stdio};

use keysmith::grpc::pb::{self, key_verify_client::KeyVerifyClient};

use crate::{helpers::eventually, receiver::receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_metrics_reach_an_otlp_collector() {
    let collector = receiver(0).await;
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let verify_addr = format!("127.0.0.1:{port}");
    let public_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let public_addr = format!("127.0.0.1:{public_port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args([
            "serve",
            "--verify-addr",
            &verify_addr,
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args(["--usage-flush-interval", "100ms"])
        .args(["--public-addr", &public_addr])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.base)
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    eventually("the server to listen", || async {
        tokio::net::TcpStream::connect(&verify_addr).await.is_ok()
    })
    .await;
    let channel = crate::helpers::connect(verify_addr.parse().expect("addr")).await;
    crate::helpers::wait_until_serving(&channel).await;
    let mut verify = KeyVerifyClient::new(channel);
    for _ in 0..5 {
        let req = pb::VerifyRequest {
            key: "sk_live_unknown".into(),
            ..Default::default()
        };
        verify.verify(req).await.expect("verify");
    }
    let refused = reqwest::Client::new()
        .post(format!("http://{public_addr}/v1/keys/revoke"))
        .body("not json")
        .send()
        .await
        .expect("public listener");
    assert_eq!(refused.status(), 400);

    let seen = |path: &str, needle: &str| {
        collector
            .requests()
            .iter()
            .any(|r| r.path == path && r.body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    };
    for metric in [
        "keysmith.verify.duration",
        "keysmith.index.keys",
        "keysmith.feed.applied_seq",
        "keysmith.verify.calls",
        "keysmith.public.requests",
    ] {
        eventually(metric, || async { seen("/v1/metrics", metric) }).await;
    }
    eventually("a span", || async { seen("/v1/traces", "feed_catch_up") }).await;
    let _ = child.kill();
    let _ = child.wait();
}
