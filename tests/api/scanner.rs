//! A stand-in for GitHub's secret scanning: P-256 keys of the test's own,
//! a loopback HTTP server for the key document (which can serve, break or
//! hang on demand), and a client that signs reports as GitHub does.

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use keysmith::{
    Config,
    public::{KeysConfig, PublicConfig},
};
use p256::{
    ecdsa::{Signature, SigningKey, signature::Signer as _},
    pkcs8::{EncodePublicKey, LineEnding},
};
use sha2::{Digest, Sha256};

/// What the key server does with a request.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Serves this document.
    Serve(String),
    /// Answers 200 with a body that is no key document.
    Garbage,
    /// Accepts and never answers.
    Hang,
}

pub struct KeyServer {
    pub url: String,
    pub mode: Arc<Mutex<Mode>>,
    pub fetches: Arc<AtomicUsize>,
}

impl KeyServer {
    pub fn set(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

pub async fn key_server(mode: Mode) -> KeyServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!(
        "http://{}/meta/public_keys/secret_scanning",
        listener.local_addr().expect("addr")
    );
    let mode = Arc::new(Mutex::new(mode));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (m, f) = (mode.clone(), fetches.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (m, f) = (m.clone(), f.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let (m, f) = (m.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        let mode = m.lock().expect("lock").clone();
                        let body = match mode {
                            Mode::Serve(doc) => doc,
                            Mode::Garbage => "<html>not a key document</html>".into(),
                            Mode::Hang => {
                                std::future::pending::<()>().await;
                                unreachable!()
                            }
                        };
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    KeyServer { url, mode, fetches }
}

/// One of the test's signing keys, with its identifier.
pub struct Signer {
    pub id: String,
    key: SigningKey,
}

impl Signer {
    /// A fresh random key (from the OS), named `id`.
    pub fn new(id: &str) -> Self {
        loop {
            let mut seed = [0u8; 32];
            getrandom(&mut seed);
            if let Ok(key) = SigningKey::from_slice(&seed) {
                return Self { id: id.into(), key };
            }
        }
    }

    /// Base64 of the DER signature over `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        let sig: Signature = self.key.sign(body);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .expect("urandom");
}

/// GitHub's key document for `signers`.
pub fn document(signers: &[&Signer]) -> String {
    let keys: Vec<_> = signers
        .iter()
        .map(|s| {
            serde_json::json!({
                "key_identifier": s.id,
                "key": s.key.verifying_key().to_public_key_pem(LineEnding::LF).expect("pem"),
                "is_current": true,
            })
        })
        .collect();
    serde_json::json!({ "public_keys": keys }).to_string()
}

/// A configuration with the public listener on port 0, reading keys from
/// `keys_url`, refetching on any unknown identifier at once.
pub fn with_public(c: &mut Config, keys_url: &str) {
    c.public = Some(PublicConfig {
        addr: "127.0.0.1:0".into(),
        github_keys: KeysConfig {
            url: keys_url.into(),
            fetch_timeout: Duration::from_millis(500),
            refetch_interval: Duration::ZERO,
            refresh_interval: Duration::from_secs(3600),
        },
        ..PublicConfig::default()
    });
}

/// A POST's status and JSON body (`Null` when it is not JSON).
pub struct Reply {
    pub status: u16,
    pub json: serde_json::Value,
}

pub async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client
        .post(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("the public listener answers");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    Reply {
        status,
        json: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

/// POSTs `body` to the GitHub route, signed by `signer`.
pub async fn report(addr: std::net::SocketAddr, signer: &Signer, body: &[u8]) -> Reply {
    let sig = signer.sign(body);
    post(
        addr,
        "/v1/secret-scanning/github",
        &[
            ("Github-Public-Key-Identifier", &signer.id),
            ("Github-Public-Key-Signature", &sig),
        ],
        body.to_vec(),
    )
    .await
}

/// A report body of `tokens`, as GitHub sends them.
pub fn matches(tokens: &[&str]) -> Vec<u8> {
    let items: Vec<_> = tokens
        .iter()
        .map(|t| {
            serde_json::json!({
                "token": t,
                "type": "keysmith_api_key",
                "url": "https://github.com/octo/app/blob/abc123/config.yml",
                "source": "content",
            })
        })
        .collect();
    serde_json::to_vec(&items).expect("json")
}

pub fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}
