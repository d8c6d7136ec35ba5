//! TLS on both listeners, and mTLS on the verify listener: handshakes succeed
//! with the right certificates and fail with wrong or missing ones.

use std::path::Path;

use keysmith::{config::TlsConfig, grpc::pb};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::helpers::{Backend, TestDb};

struct Pki {
    ca_pem: String,
    /// (certificate, key) PEMs.
    server: (String, String),
    client: (String, String),
}

fn ca() -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let pem = params.self_signed(&key).expect("self-signed").pem();
    (params, key, pem)
}

fn leaf(names: &[&str], issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    (
        params.signed_by(&key, issuer).expect("sign").pem(),
        key.serialize_pem(),
    )
}

fn pki() -> Pki {
    let (params, key, ca_pem) = ca();
    let issuer = Issuer::new(params, key);
    Pki {
        ca_pem,
        server: leaf(&["localhost"], &issuer),
        client: leaf(&["gateway.internal"], &issuer),
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write pem");
    path
}

async fn channel(addr: &str, tls: ClientTlsConfig) -> Result<Channel, tonic::transport::Error> {
    Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)?
        .connect()
        .await
}

async fn verify_works(ch: Channel) -> bool {
    let req = pb::VerifyRequest {
        key: "sk_live_x".into(),
        ..Default::default()
    };
    pb::key_verify_client::KeyVerifyClient::new(ch)
        .verify(req)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mtls_handshakes() {
    let pki = pki();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = db.dir.path().to_owned();
    let tls = TlsConfig {
        cert: write(&dir, "server.pem", &pki.server.0),
        key: write(&dir, "server.key", &pki.server.1),
        verify_client_ca: Some(write(&dir, "ca.pem", &pki.ca_pem)),
    };
    // The helper's plaintext clients cannot connect, so build the app by hand.
    let mut config = keysmith::Config {
        verify_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        db: db.config.clone(),
        ..Default::default()
    };
    config.tls = Some(tls);
    let app = keysmith::App::build(&config).await.expect("build");
    let (verify_addr, admin_addr) = (app.verify_addr().to_string(), app.admin_addr().to_string());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let trust = || {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&pki.ca_pem))
            .domain_name("localhost")
    };
    let with_client_cert = trust().identity(Identity::from_pem(&pki.client.0, &pki.client.1));

    // mTLS on verify: a client certificate from the CA gets in.
    let ch = channel(&verify_addr, with_client_cert.clone())
        .await
        .expect("mTLS handshake");
    crate::helpers::eventually("verify over mTLS", || verify_works(ch.clone())).await;

    // Without a client certificate, the verify listener refuses.
    let no_cert = match channel(&verify_addr, trust()).await {
        Ok(ch) => verify_works(ch).await,
        Err(_) => false,
    };
    assert!(!no_cert, "mTLS must require a client certificate");

    // A client that does not trust the server's CA refuses the handshake.
    let (_, _, other_ca) = ca();
    let wrong = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(other_ca))
        .domain_name("localhost");
    let wrong_ca = match channel(&admin_addr, wrong).await {
        Ok(ch) => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
        }
        Err(_) => false,
    };
    assert!(!wrong_ca, "a server the client does not trust is refused");

    // The admin listener is TLS without client certificates.
    let admin = channel(&admin_addr, trust()).await.expect("TLS handshake");
    let mut health = tonic_health::pb::health_client::HealthClient::new(admin);
    assert!(
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    );
    // JSON over TLS on HTTP/1.1 as well as HTTP/2: ALPN offers both, so
    // a client that speaks only HTTP/1.1 (Node's fetch) gets in too.
    let addr: std::net::SocketAddr = admin_addr.parse().expect("addr");
    for http1 in [true, false] {
        let mut client = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"),
            )
            .resolve("localhost", addr);
        client = if http1 {
            client.http1_only()
        } else {
            client.http2_prior_knowledge()
        };
        let resp = client
            .build()
            .expect("client")
            .post(format!(
                "https://localhost:{}/keysmith.v1.KeyAdmin/ListKeys",
                addr.port()
            ))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("JSON over TLS");
        let version = if http1 {
            reqwest::Version::HTTP_11
        } else {
            reqwest::Version::HTTP_2
        };
        assert_eq!(resp.version(), version);
        assert_eq!(resp.status(), reqwest::StatusCode::UNAUTHORIZED);
        let body = resp.text().await.expect("body");
        assert!(body.contains(r#""code":"unauthenticated""#), "{body}");
    }

    // And plaintext does not get an answer.
    let plain = Channel::from_shared(format!("http://{admin_addr}"))
        .expect("uri")
        .connect()
        .await;
    let plain_ok = match plain {
        Ok(ch) => tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_ok);

    let _ = stop.send(());
    server.await.expect("join").expect("clean shutdown");
}

/// The public listener speaks TLS with the same certificate, and nothing
/// in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_speaks_tls() {
    let pki = pki();
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = db.dir.path().to_owned();
    let mut config = keysmith::Config {
        verify_addr: "127.0.0.1:0".into(),
        admin_addr: "127.0.0.1:0".into(),
        db: db.config.clone(),
        ..Default::default()
    };
    config.tls = Some(TlsConfig {
        cert: write(&dir, "server.pem", &pki.server.0),
        key: write(&dir, "server.key", &pki.server.1),
        verify_client_ca: None,
    });
    crate::scanner::with_public(&mut config, "http://127.0.0.1:9/unused");
    let app = keysmith::App::build(&config).await.expect("build");
    let public = app.public_addr().expect("public listener");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("ca"))
        .resolve("localhost", public)
        .build()
        .expect("client");
    let url = format!("https://localhost:{}/v1/keys/revoke", public.port());
    let resp = client
        .post(&url)
        .body(r#"{"key": "not a key"}"#)
        .send()
        .await
        .expect("an answer over TLS");
    assert_eq!(resp.status(), 400, "the route answered over TLS");
    let plain = reqwest::Client::new()
        .post(format!("http://{public}/v1/keys/revoke"))
        .body(r#"{"key": "not a key"}"#)
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 400),
        "plaintext must not reach the route"
    );

    let _ = stop.send(());
    server.await.expect("join").expect("clean shutdown");
}
