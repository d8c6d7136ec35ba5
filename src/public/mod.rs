//! The public listener (`--public-addr`): the only one meant to face the
//! internet. It serves HTTP/1.1 (TLS as the other listeners), and only two
//! routes:
//!
//! - `POST /v1/secret-scanning/github`: GitHub's secret-scanning partner
//!   reports, signed by GitHub ([`github`]);
//! - `POST /v1/keys/revoke`: anyone holding a key may revoke it by
//!   presenting it ([`revoke`]).
//!
//! It has its own limits: connections, requests in flight, a body cap, a
//! rate per peer, and deadlines for reading headers and for each request.
//! Each refusal is a JSON `{"error": …}` with a clear status.

mod github;
mod http;
mod peers;
mod revoke;
pub mod signing;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::{keys::Keys, store::Store};

pub use peers::Rate;

/// Parses `bytes` as a secret-scanning report body of at most `max`
/// matches, as the GitHub route does after the signature holds: the number
/// of matches, or `None` when it is refused. For fuzzing.
#[doc(hidden)]
pub fn parse_report(bytes: &[u8], max: usize) -> Option<usize> {
    github::parse(bytes, max).ok().map(|m| m.len())
}
pub use signing::{GitHubKeys, KeysConfig};

/// The largest body a public revocation needs: one key and some JSON.
const MAX_REVOKE_BODY: usize = 4096;

#[derive(Clone, Debug)]
pub struct PublicConfig {
    /// Where the public listener listens; port 0 picks a free port.
    pub addr: String,
    pub github_keys: KeysConfig,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Most matches one secret-scanning report may carry.
    pub max_matches: usize,
    /// Connections open at once; more wait in the kernel's backlog. Each
    /// serves one request.
    pub max_connections: usize,
    /// Requests being answered at once; more get 503.
    pub max_in_flight: usize,
    /// Requests per peer, on any route.
    pub per_peer: Rate,
    /// Public revocations per peer (on top of `per_peer`).
    pub revoke_per_peer: Rate,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// How long a request may take, from its headers to its answer.
    pub request_timeout: Duration,
    /// How long a replayed delivery is recognised.
    pub replay_window: Duration,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:8443".into(),
            github_keys: KeysConfig::default(),
            max_body: 256 * 1024,
            max_matches: 1000,
            max_connections: 512,
            max_in_flight: 64,
            per_peer: Rate {
                per_second: 20.0,
                burst: 40.0,
            },
            revoke_per_peer: Rate {
                per_second: 0.2,
                burst: 5.0,
            },
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(20),
            replay_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// What the handlers share.
pub(crate) struct Public {
    config: PublicConfig,
    keys: Keys,
    store: Arc<dyn Store>,
    github: GitHubKeys,
    metrics: crate::metrics::Metrics,
    in_flight: Arc<Semaphore>,
    /// Requests per address.
    peers: peers::PeerLimiter,
    /// New connections per address, judged at accept: one address cannot
    /// take every connection slot by opening connections it never uses.
    dialers: peers::PeerLimiter,
    /// Open connections per address.
    open: Arc<peers::OpenConnections>,
    revokers: peers::PeerLimiter,
}

/// The public listener, bound, ready to serve.
pub struct PublicServer {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    state: Arc<Public>,
}

impl PublicServer {
    pub fn new(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        config: PublicConfig,
        keys: Keys,
        store: Arc<dyn Store>,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self, signing::FetchError> {
        let github = GitHubKeys::new(config.github_keys.clone())?;
        let state = Public {
            in_flight: Arc::new(Semaphore::new(config.max_in_flight)),
            peers: peers::PeerLimiter::new(config.per_peer),
            dialers: peers::PeerLimiter::new(config.per_peer),
            open: Arc::new(peers::OpenConnections::new(
                (config.max_connections / 8).max(1),
            )),
            revokers: peers::PeerLimiter::new(config.revoke_per_peer),
            config,
            keys,
            store,
            github,
            metrics,
        };
        Ok(Self {
            listener,
            tls,
            state: Arc::new(state),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop`, then lets open requests finish for at most
    /// `drain`.
    pub async fn run(self, stop: CancellationToken, drain: Duration) {
        let Self {
            listener,
            tls,
            state,
        } = self;
        // GitHub's keys are fetched ahead of the first report, in the
        // background: the listener serves (and refuses) meanwhile.
        // Then again every refresh interval, keeping the last good set.
        let (keys_state, refresher) = (state.clone(), stop.clone());
        tokio::spawn(async move {
            let every = keys_state.config.github_keys.refresh_interval;
            loop {
                let _ = keys_state.github.refresh().await;
                tokio::select! {
                    () = refresher.cancelled() => return,
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        let connections = Arc::new(Semaphore::new(state.config.max_connections));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let header_timeout = state.config.header_timeout;
        // One request per connection (no keep-alive), so a connection's
        // whole life is bounded: its headers, its body and its answer.
        let life = header_timeout + state.config.request_timeout + Duration::from_secs(5);
        loop {
            let permit = tokio::select! {
                () = stop.cancelled() => break,
                p = connections.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                () = stop.cancelled() => break,
                a = listener.accept() => a,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tracing::warn!(error = %e, "public listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Over its rate of new connections, or holding its share of the
            // open ones already: closed at once, holding no slot.
            if !state.dialers.admit(peer.ip()) {
                continue;
            }
            let Some(share) = state.open.hold(peer.ip()) else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let state = state.clone();
            let tls = tls.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let (_permit, _share) = (permit, share);
                let service = service_fn(move |req: hyper::Request<Incoming>| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(state.answer(req, peer).await) }
                });
                let builder = {
                    let mut b = http1::Builder::new();
                    b.timer(TokioTimer::new())
                        .header_read_timeout(Some(header_timeout))
                        .max_buf_size(64 * 1024)
                        .keep_alive(false);
                    b
                };
                let result = match tls {
                    None => {
                        let conn = builder.serve_connection(TokioIo::new(tcp), service);
                        tokio::time::timeout(life, watcher.watch(conn)).await
                    }
                    Some(acceptor) => {
                        let handshake = tokio::time::timeout(header_timeout, acceptor.accept(tcp));
                        let Ok(Ok(stream)) = handshake.await else {
                            return;
                        };
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::time::timeout(life, watcher.watch(conn)).await
                    }
                };
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "public connection ended"),
                    Err(_) => tracing::debug!(%peer, "public connection cut at its deadline"),
                }
            });
        }
        // No new connections while the open ones drain.
        drop(listener);
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(?drain, "public listener drain deadline passed");
        }
    }
}
