//! Server configuration, built by the CLI from flags and environment.

use std::{path::PathBuf, time::Duration};

use crate::{
    auth::{AuthLimits, VerifyAuth},
    domain::Clock,
    index::FeedConfig,
    jobs::JobsConfig,
    watch::WatchConfig,
    webhooks::WebhookConfig,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// Where KeyVerify listens; port 0 picks a free port.
    pub verify_addr: String,
    /// Where KeyAdmin listens; port 0 picks a free port.
    pub admin_addr: String,
    pub db: DbConfig,
    /// Default RotateKey grace period.
    pub rotation_grace: Duration,
    /// Apply migrations at startup.
    pub migrate: bool,
    pub feed: FeedConfig,
    pub watch: WatchConfig,
    /// Health turns NOT_SERVING when the change log was last read longer ago.
    pub max_staleness: Duration,
    /// Verify refuses (UNAVAILABLE) when the change log was last read longer ago.
    pub fail_closed_after: Option<Duration>,
    /// How long change-log rows are kept for resuming streams.
    pub change_retention: Duration,
    /// How often old change-log rows are pruned.
    pub prune_interval: Duration,
    /// How often usage counters are written; a crash loses at most this much.
    pub usage_flush_interval: Duration,
    /// "Now" for key times; tests inject a manual clock.
    pub clock: Clock,
    pub webhooks: WebhookConfig,
    pub jobs: JobsConfig,
    /// The header ext_authz also reads the key from (besides `authorization: Bearer`).
    pub ext_authz_key_header: String,
    /// TLS on both listeners; `None` serves plaintext.
    pub tls: Option<TlsConfig>,
    /// How long shutdown waits for in-flight calls before closing them.
    pub shutdown_deadline: Duration,
    pub verify_limits: ListenerLimits,
    pub admin_limits: ListenerLimits,
    /// Admin authentication: failures allowed per peer, token reloads,
    /// and how often failures are audited.
    pub auth_limits: AuthLimits,
    /// Whether the verify listener requires its own credential (an admin
    /// token with `verify` or `watch`).
    pub verify_auth: VerifyAuth,
    /// The public listener (GitHub secret scanning, public revocation);
    /// `None` (the default) serves none.
    pub public: Option<crate::public::PublicConfig>,
    /// A leak report that does not say when its key became public takes it
    /// as public since this long before the report.
    pub leak_lookback: Duration,
    /// The share of the time ImportKeys batches may take while this replica
    /// answers Verify calls (`--import-duty`); 1 never waits.
    pub import_duty: f64,
}

/// Connection and call limits of one listener. A breach gets a clear answer:
/// a stream over the limit is refused (`REFUSED_STREAM`, which clients see
/// as `UNAVAILABLE` and may retry), a call past its deadline ends with
/// `CANCELLED` ("Timeout expired"), and a peer that stops answering pings is
/// disconnected.
#[derive(Clone, Copy, Debug)]
pub struct ListenerLimits {
    /// Calls in flight on one connection (HTTP/2 `MAX_CONCURRENT_STREAMS`).
    pub max_concurrent_streams: u32,
    /// How long a call may take to produce its response headers, including
    /// reading a unary request. A stream's life after that is not bounded;
    /// a client's shorter `grpc-timeout` applies too.
    pub call_timeout: Duration,
    /// Request headers per call, in bytes (HPACK-decoded).
    pub max_header_list_size: u32,
    /// HTTP/2 PING after this much silence; the connection closes when the
    /// PING is not answered within `keepalive_timeout`.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// TCP keepalive probes, for peers that vanish without a FIN.
    pub tcp_keepalive: Duration,
    /// A connection is asked to close (GOAWAY) after this long, and closed
    /// `max_connection_age_grace` later. Spreads long-lived gateway
    /// connections across replicas after scaling, and ends connections that
    /// never finish their handshake. Streams resume from their cursor.
    pub max_connection_age: Duration,
    pub max_connection_age_grace: Duration,
}

impl ListenerLimits {
    /// Verify: gateways multiplex many calls and long-lived streams on few
    /// connections. A Verify answers in microseconds, so 5 s only ever
    /// catches a client that trickles its request.
    pub const VERIFY: Self = Self {
        max_concurrent_streams: 1024,
        call_timeout: Duration::from_secs(5),
        max_header_list_size: 16 * 1024,
        keepalive_interval: Duration::from_secs(30),
        keepalive_timeout: Duration::from_secs(10),
        tcp_keepalive: Duration::from_secs(60),
        max_connection_age: Duration::from_secs(3600),
        max_connection_age_grace: Duration::from_secs(300),
    };

    /// Admin: operators and tooling, few calls at a time. The deadline
    /// leaves room for `wait_for_propagation` (at most 60 s).
    pub const ADMIN: Self = Self {
        max_concurrent_streams: 64,
        call_timeout: Duration::from_secs(75),
        ..Self::VERIFY
    };
}

/// PEM files for TLS. Read at startup: to change certificates, replace the
/// files and restart (replicas roll one at a time behind the load balancer).
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, the verify listener requires client certificates signed by
    /// this CA (mTLS).
    pub verify_client_ca: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct DbConfig {
    /// `postgres://…` or `sqlite:…`; `None` means SQLite in `data_dir`.
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            verify_addr: "127.0.0.1:50051".into(),
            admin_addr: "127.0.0.1:50052".into(),
            db: DbConfig {
                database_url: None,
                data_dir: "./keysmith-data".into(),
            },
            rotation_grace: Duration::from_secs(48 * 3600),
            migrate: true,
            feed: FeedConfig::default(),
            watch: WatchConfig::default(),
            max_staleness: Duration::from_secs(30),
            fail_closed_after: None,
            change_retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
            usage_flush_interval: Duration::from_secs(10),
            clock: Clock::system(),
            webhooks: WebhookConfig::default(),
            jobs: JobsConfig::default(),
            ext_authz_key_header: "x-api-key".into(),
            tls: None,
            verify_limits: ListenerLimits::VERIFY,
            admin_limits: ListenerLimits::ADMIN,
            auth_limits: AuthLimits::default(),
            verify_auth: VerifyAuth::Off,
            shutdown_deadline: Duration::from_secs(20),
            public: None,
            leak_lookback: crate::keys::DEFAULT_LEAK_LOOKBACK,
            import_duty: crate::keys::DEFAULT_IMPORT_DUTY,
        }
    }
}

/// Largest request each listener decodes. Verify requests are a key and a
/// few short strings; admin requests are bounded by the field limits
/// (100 scopes of 128 bytes, 8 KiB of metadata).
pub const MAX_VERIFY_MESSAGE: usize = 16 * 1024;
pub const MAX_ADMIN_MESSAGE: usize = 256 * 1024;
/// Envoy's CheckRequest carries every request header: allow for big ones.
pub const MAX_EXT_AUTHZ_MESSAGE: usize = 256 * 1024;
