//! TLS for the three listeners, with keysmith's own rustls acceptor.
//!
//! tonic's acceptor offers only `h2` in ALPN, so a client that offers only
//! `http/1.1` (Node's `fetch`, `curl --http1.1`) could not reach the JSON
//! API under TLS. Here the gRPC listeners offer `h2` and `http/1.1`, and
//! the public one `http/1.1`. Each handshake runs on its own task, bounded
//! in time, so a slow or silent client holds up no other connection.

use std::{sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::{net::TcpStream, sync::mpsc};
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

/// Finished handshakes waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 128;

/// The TLS settings of each listener, read from the configured PEM files.
pub(super) struct Tls {
    pub verify: TlsAcceptor,
    pub admin: TlsAcceptor,
    /// The public listener's (HTTP/1.1), from the same certificate.
    pub public: TlsAcceptor,
}

fn read_pem(path: &std::path::Path) -> Result<Vec<u8>, AppError> {
    std::fs::read(path).map_err(|source| AppError::TlsFile {
        path: path.display().to_string(),
        source,
    })
}

pub(super) fn load(config: &crate::config::TlsConfig) -> Result<Tls, AppError> {
    let (cert, key) = (read_pem(&config.cert)?, read_pem(&config.key)?);
    let client_ca = config
        .verify_client_ca
        .as_deref()
        .map(read_pem)
        .transpose()?;
    let grpc: &[&[u8]] = &[b"h2", b"http/1.1"];
    Ok(Tls {
        verify: acceptor(&cert, &key, client_ca.as_deref(), grpc)?,
        admin: acceptor(&cert, &key, None, grpc)?,
        public: acceptor(&cert, &key, None, &[b"http/1.1"])?,
    })
}

/// A rustls acceptor for the certificate and key in PEM, requiring a client
/// certificate from `client_ca` when one is given.
fn acceptor(
    cert: &[u8],
    key: &[u8],
    client_ca: Option<&[u8]>,
    alpn: &[&[u8]],
) -> Result<TlsAcceptor, AppError> {
    let bad = |e: &dyn std::fmt::Display| AppError::Tls(e.to_string());
    let certs = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(&e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&e))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca) {
                roots.add(c.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| bad(&e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| bad(&e))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connections of `incoming`, each handshake on its own task. The
/// accepting task ends when the server drops the stream.
pub(super) fn incoming(
    mut incoming: TcpIncoming,
    acceptor: TlsAcceptor,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let (tx, rx) = mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                () = tx.closed() => return,
                next = incoming.next() => match next {
                    None => return,
                    Some(Ok(tcp)) => tcp,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!("TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
