//! TLS for the three listeners, with keysmith's own rustls acceptor.
//!
//! tonic's acceptor offers only `h2` in ALPN, so a client that offers only
//! `http/1.1` (Node's `fetch`, `curl --http1.1`) could not reach the JSON
//! API under TLS. Here the gRPC listeners offer `h2` and `http/1.1`, and
//! the public one `http/1.1`. Each handshake runs on its own task, bounded
//! in time, so a slow or silent client holds up no other connection.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::{
    net::TcpStream,
    sync::{Semaphore, mpsc},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        self, RootCertStore,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::WebPkiClientVerifier,
    },
    server::TlsStream,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

use super::AppError;

/// The longest a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight, and finished ones waiting for the server to take
/// them, at most: past it, connections wait in the kernel's queue.
const MAX_HANDSHAKES: usize = 256;

/// The TLS settings of each listener, read from the configured PEM files.
pub(super) struct Tls {
    pub verify: TlsAcceptor,
    pub admin: TlsAcceptor,
    /// The public listener's (HTTP/1.1), from the same certificate.
    pub public: TlsAcceptor,
}

/// A PEM file's bytes, and what to call it in an error.
struct Pem {
    bytes: Vec<u8>,
    what: String,
}

impl Pem {
    fn read(what: &str, path: &std::path::Path) -> Result<Self, AppError> {
        let bytes = std::fs::read(path).map_err(|source| AppError::TlsFile {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Self {
            bytes,
            what: format!("{what} {}", path.display()),
        })
    }

    fn bad(&self, e: &dyn std::fmt::Display) -> AppError {
        AppError::Tls(format!("{}: {e}", self.what))
    }
}

pub(super) fn load(config: &crate::config::TlsConfig) -> Result<Tls, AppError> {
    let cert = Pem::read("certificate", &config.cert)?;
    let key = Pem::read("key", &config.key)?;
    let client_ca = config
        .verify_client_ca
        .as_deref()
        .map(|p| Pem::read("client CA", p))
        .transpose()?;
    let grpc: &[&[u8]] = &[b"h2", b"http/1.1"];
    Ok(Tls {
        verify: acceptor(&cert, &key, client_ca.as_ref(), grpc)?,
        admin: acceptor(&cert, &key, None, grpc)?,
        public: acceptor(&cert, &key, None, &[b"http/1.1"])?,
    })
}

/// A rustls acceptor for the certificate and key in PEM, requiring a client
/// certificate from `client_ca` when one is given.
fn acceptor(
    cert: &Pem,
    key: &Pem,
    client_ca: Option<&Pem>,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, AppError> {
    let certs = CertificateDer::pem_slice_iter(&cert.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert.bad(&e))?;
    if certs.is_empty() {
        return Err(cert.bad(&"no certificate in the file"));
    }
    let private = PrivateKeyDer::from_pem_slice(&key.bytes).map_err(|e| key.bad(&e))?;
    let bad = |e: &dyn std::fmt::Display| AppError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&ca.bytes) {
                roots
                    .add(c.map_err(|e| ca.bad(&e))?)
                    .map_err(|e| ca.bad(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ca.bad(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|e| key.bad(&e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `incoming`, each handshake on its own task, at
/// most [`MAX_HANDSHAKES`] at once. The accepting task, and any handshake
/// still running, end when the server drops the stream (at shutdown).
pub(super) fn incoming(
    mut incoming: TcpIncoming,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(MAX_HANDSHAKES);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let slot = tokio::select! {
                () = tx.closed() => return,
                slot = Arc::clone(&slots).acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let tcp = tokio::select! {
                () = tx.closed() => return,
                next = incoming.next() => match next {
                    None => return,
                    Some(Ok(tcp)) => tcp,
                    Some(Err(e)) => {
                        // Out of descriptors, most likely: wait, not spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let handshake = async {
                    let tls = acceptor.accept(tcp).await?;
                    tx.send(Ok(tls)).await.map_err(|_| {
                        std::io::Error::new(std::io::ErrorKind::BrokenPipe, "server stopped")
                    })
                };
                tokio::select! {
                    () = tx.closed() => {}
                    done = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    },
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
