//! Webhook SSRF defences, with private targets NOT allowed unless a test
//! says why: special-purpose literals in every spelling, host names that
//! resolve to loopback, stored URLs the table now refuses, redirects and
//! proxy variables. Each "private target" is a loopback listener that
//! counts connections, and the count must stay at zero.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use keysmith::{domain::webhook::is_public, grpc::pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crate::helpers::{
    Admin, Backend, TestApp, assert_status, eventually, spawn, spawn_configured, spawn_with,
};

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// A listener that counts connections and answers each request with `reply`.
struct Target {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Target {
    async fn on(ip: IpAddr, reply: String) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = conn.write_all(reply.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn fast(c: &mut keysmith::Config) {
    c.webhooks.retry_base = Duration::from_millis(50);
    c.webhooks.poll_interval = Duration::from_millis(50);
}

async fn subscribe(admin: &Admin, url: &str) -> String {
    let req = pb::CreateWebhookEndpointRequest {
        url: url.into(),
        events: vec!["*".into()],
        description: String::new(),
    };
    admin
        .clone()
        .create_webhook_endpoint(req)
        .await
        .expect("create endpoint")
        .into_inner()
        .endpoint
        .expect("endpoint")
        .id
}

async fn deliveries(app: &TestApp) -> Vec<pb::WebhookDelivery> {
    let req = pb::ListWebhookDeliveriesRequest::default();
    app.admin
        .clone()
        .list_webhook_deliveries(req)
        .await
        .expect("log")
        .into_inner()
        .deliveries
}

/// Waits until some delivery has failed `n` attempts and is still retrying.
async fn retried(app: &TestApp, n: i64) -> pb::WebhookDelivery {
    eventually("a delivery to fail and be retried", || async {
        deliveries(app).await.iter().any(|d| {
            d.attempts >= n && d.status() == pb::DeliveryStatus::Pending && !d.last_error.is_empty()
        })
    })
    .await;
    deliveries(app)
        .await
        .into_iter()
        .find(|d| d.attempts >= n)
        .expect("the retried delivery")
}

async fn special_purpose_literals_are_refused_in_every_spelling(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    for url in [
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1:8080/",
        "http://127.1/",
        "http://0xa9fea9fe/latest/meta-data",
        "http://localhost./",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b:1::a00:1]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:10.0.0.1]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "http://[fec0::1]/",
        "http://198.18.0.1/",
        "http://192.0.0.170/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
    ] {
        let req = pb::CreateWebhookEndpointRequest {
            url: url.into(),
            events: vec!["*".into()],
            description: String::new(),
        };
        assert_status(
            admin.create_webhook_endpoint(req).await,
            Code::InvalidArgument,
            "url",
        );
    }
    // An update is held to the same table.
    let id = subscribe(&admin, "https://hooks.example.org/k").await;
    let update = pb::UpdateWebhookEndpointRequest {
        endpoint: Some(pb::WebhookEndpoint {
            id,
            url: "http://[::ffff:7f00:1]/".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["url".into()],
        }),
    };
    assert_status(
        admin.update_webhook_endpoint(update).await,
        Code::InvalidArgument,
        "url",
    );
}

/// This machine's host name and what it resolves to; the test needs one
/// that resolves to private addresses only (as `/etc/hosts` usually has it).
async fn private_host_name() -> (String, Vec<IpAddr>) {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    let name = name.trim().to_owned();
    let addrs: Vec<IpAddr> = tokio::net::lookup_host((name.as_str(), 0))
        .await
        .expect("the host name resolves")
        .map(|a| a.ip())
        .collect();
    assert!(
        !addrs.is_empty() && !addrs.iter().any(|ip| is_public(*ip)),
        "{name} should resolve to private addresses only: {addrs:?}"
    );
    assert!(
        !name.eq_ignore_ascii_case("localhost"),
        "a name the URL check does not know"
    );
    (name, addrs)
}

async fn a_name_resolving_to_a_private_address_is_never_connected(backend: Backend) {
    let (name, addrs) = private_host_name().await;
    // A listener on every address the name has, so a connection to any counts.
    let mut targets = Vec::new();
    for ip in &addrs {
        targets.push(Target::on(*ip, OK.to_owned()).await);
    }
    let app = spawn_with(backend, fast).await;
    // One endpoint per listener, each on that listener's port.
    for t in &targets {
        subscribe(&app.admin, &format!("http://{name}:{}/hook", t.addr.port())).await;
    }
    app.create_with_scopes(&[]).await;

    let d = retried(&app, 2).await;
    assert!(
        d.last_error.contains("no public address"),
        "a clear reason: {d:?}"
    );
    assert_eq!(d.last_status_code, None);
    for t in &targets {
        assert_eq!(t.hits(), 0, "no connection reached {}", t.addr);
    }
}

async fn a_stored_url_the_table_refuses_is_not_sent_to(backend: Backend) {
    let target = Target::on("127.0.0.1".parse().expect("ip"), OK.to_owned()).await;
    // Written while private targets were allowed (or by an older keysmith).
    let app = spawn_with(backend, |c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.send = false;
    })
    .await;
    subscribe(&app.admin, &format!("http://{}/hook", target.addr)).await;
    app.create_with_scopes(&[]).await;
    let (db, token) = app.stop().await;

    let app = spawn_configured(db, Some(token), fast).await;
    let d = retried(&app, 2).await;
    assert!(
        d.last_error.starts_with("refused: url points at a private"),
        "a clear reason: {d:?}"
    );
    assert_eq!(target.hits(), 0, "no connection reached the private target");
}

async fn a_redirect_is_a_failed_attempt_and_never_followed(backend: Backend) {
    let loopback: IpAddr = "127.0.0.1".parse().expect("ip");
    let inner = Target::on(loopback, OK.to_owned()).await;
    let redirect = format!(
        "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{}/stolen\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n",
        inner.addr
    );
    let outer = Target::on(loopback, redirect).await;

    // The delivery client, as configured by default (private targets not
    // allowed), hands the 3xx back instead of following it.
    let client = keysmith::webhooks::http_client(&keysmith::webhooks::WebhookConfig::default())
        .expect("client");
    let answer = client
        .post(format!("http://{}/hook", outer.addr))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 307);
    assert_eq!(inner.hits(), 0);

    // End to end: the receiver must be reachable to answer at all, so this
    // server allows loopback targets, and still never follows the redirect.
    let app = spawn_with(backend, |c| {
        fast(c);
        c.webhooks.allow_private_targets = true;
    })
    .await;
    subscribe(&app.admin, &format!("http://{}/hook", outer.addr)).await;
    app.create_with_scopes(&[]).await;
    let d = retried(&app, 2).await;
    assert_eq!(d.last_status_code, Some(307));
    assert!(
        d.last_error.contains("redirect not followed"),
        "a clear reason: {d:?}"
    );
    assert!(outer.hits() >= 3, "the client test and two attempts");
    assert_eq!(inner.hits(), 0, "the redirect target was never reached");
}

/// Proxy variables would send deliveries through a proxy that resolves and
/// connects to the target itself, past every check. A real `keysmith serve`
/// with all of them set must connect to the receiver directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_variables_do_not_route_deliveries() {
    let proxy = Target::on(
        "127.0.0.1".parse().expect("ip"),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
    )
    .await;
    let proxy_url = format!("http://{}", proxy.addr);
    let rx = crate::receiver::receiver(0).await;
    let url = crate::helpers::fresh_pg_database().await;
    let token = crate::process::mint_token(&url).await;
    let mut cmd = crate::process::serve_command();
    for var in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env(var, &proxy_url).env(var.to_lowercase(), &proxy_url);
    }
    cmd.env_remove("NO_PROXY").env_remove("no_proxy");
    // Loopback receivers need private targets allowed; the proxy question
    // is the same for any target.
    let replica =
        crate::process::Replica::start_in(cmd, &url, &token, &["--webhook-allow-private-targets"])
            .await;
    subscribe(&replica.admin, &format!("{}/hooks", rx.base)).await;
    let req = pb::CreateKeyRequest {
        owner_id: "acct_test".into(),
        name: "proxy test".into(),
        r#type: pb::KeyType::Secret.into(),
        environment: pb::Environment::Live.into(),
        ..Default::default()
    };
    replica
        .admin
        .clone()
        .create_key(req)
        .await
        .expect("create key");
    eventually("the delivery at the receiver", || async {
        !rx.requests().is_empty()
    })
    .await;
    assert_eq!(proxy.hits(), 0, "nothing went through the proxy");
}

crate::backend_tests!(
    special_purpose_literals_are_refused_in_every_spelling,
    a_name_resolving_to_a_private_address_is_never_connected,
    a_stored_url_the_table_refuses_is_not_sent_to,
    a_redirect_is_a_failed_attempt_and_never_followed,
);
