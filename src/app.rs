//! Builds keysmith from a [`Config`] and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::{net::TcpListener, sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tonic_web::GrpcWebLayer;

use crate::{
    auth::AdminAuth,
    config::{
        Config, DbConfig, ListenerLimits, MAX_ADMIN_MESSAGE, MAX_EXT_AUTHZ_MESSAGE,
        MAX_VERIFY_MESSAGE,
    },
    domain::{PageTokens, Timestamp},
    grpc::{
        AdminService, ConnectLayer, ExtAuthzService, VerifyService,
        pb::{self, key_admin_server::KeyAdminServer, key_verify_server::KeyVerifyServer},
    },
    index::{ChangeFeed, FeedHandle, KeyIndex, Pruner, ReplicaState},
    jobs::Scheduler,
    keys::{Keys, KeysConfig},
    limits::Limiter,
    metrics::{Gauges, Metrics},
    store::{self, Store},
    usage::{Recorder, UsageFlusher},
    verify::{Parts as VerifierParts, Verifier},
    watch::Watcher,
    webhooks::{WebhookSender, Webhooks},
};

mod reflection;
mod tls;

use tls::Tls;

/// A listener's server, running until its shutdown.
type Serving = std::pin::Pin<Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>>;

/// What the verify listener serves, and so what its reflection lists.
const VERIFY_SERVICES: &[&str] = &[
    pb::key_verify_server::SERVICE_NAME,
    envoy_types::pb::envoy::service::auth::v3::authorization_server::SERVICE_NAME,
];

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the store: {0}")]
    Store(#[from] store::StoreError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("grpc server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection setup failed: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("cannot make the page token key: {0}")]
    Randomness(#[from] crate::domain::RandomnessError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("public listener: {0}")]
    Public(#[from] crate::public::signing::FetchError),
    #[error("cannot read {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
}

/// Opens the configured store, applying migrations when asked.
pub async fn open_store(db: &DbConfig, migrate: bool) -> Result<Arc<dyn Store>, AppError> {
    let store = store::open(db.database_url.as_deref(), &db.data_dir).await?;
    if migrate {
        store.migrate().await?;
    }
    Ok(store)
}

/// A keysmith server with its listeners bound, ready to [`App::run`].
pub struct App {
    config: Config,
    verify_listener: TcpListener,
    admin_listener: TcpListener,
    public_listener: Option<TcpListener>,
    store: Arc<dyn Store>,
    index: Arc<KeyIndex>,
    feed: FeedHandle,
    keys: Keys,
    page_tokens: PageTokens,
    auth: AdminAuth,
    usage: Arc<Recorder>,
    limiter: Arc<Limiter>,
    tls: Option<Tls>,
}

async fn bind(addr: &str) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

impl App {
    pub async fn build(config: &Config) -> Result<Self, AppError> {
        let store = open_store(&config.db, config.migrate).await?;
        // One key for the installation, so any replica opens any's tokens.
        let page_key = PageTokens::fresh_key()?;
        let page_tokens =
            PageTokens::new(store.page_token_key(&page_key, config.clock.now()).await?);
        let index = Arc::new(KeyIndex::default());
        let feed = FeedHandle::new(&config.feed);
        let keys_config = KeysConfig {
            rotation_grace: config.rotation_grace,
            replica_live_window: (config.feed.poll_interval * 5).max(Duration::from_secs(5)),
            clock: config.clock.clone(),
            leak_lookback: config.leak_lookback,
            import_duty: config.import_duty,
        };
        let limiter = Arc::new(Limiter::new(
            store.clone(),
            feed.replica.id.clone(),
            config.clock.clone(),
        ));
        // Owners' limits are known before Verify answers.
        limiter.reload_owners().await?;
        let usage = Arc::new(Recorder::default());
        let keys = Keys::new(
            store.clone(),
            index.clone(),
            feed.clone(),
            keys_config,
            page_tokens.clone(),
            limiter.clone(),
            usage.clone(),
        );
        let auth = AdminAuth::new(store.clone(), config.auth_limits, config.clock.clone());
        // Before any listener serves: the verify listener's credential
        // check never reloads on a miss, so it must not start empty.
        auth.load().await?;
        Ok(Self {
            config: config.clone(),
            verify_listener: bind(&config.verify_addr).await?,
            admin_listener: bind(&config.admin_addr).await?,
            public_listener: match &config.public {
                Some(p) => Some(bind(&p.addr).await?),
                None => None,
            },
            store,
            index,
            feed,
            keys,
            page_tokens,
            auth,
            usage,
            limiter,
            tls: config.tls.as_ref().map(tls::load).transpose()?,
        })
    }

    pub fn verify_addr(&self) -> SocketAddr {
        self.verify_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The public listener's address, when it is on.
    pub fn public_addr(&self) -> Option<SocketAddr> {
        self.public_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn auth(&self) -> &AdminAuth {
        &self.auth
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn replica(&self) -> &Arc<ReplicaState> {
        &self.feed.replica
    }

    /// Serves both listeners until `shutdown` resolves, then drains.
    ///
    /// Health answers NOT_SERVING until the index has caught up with the
    /// change log, and again whenever the replica is staler than
    /// `max_staleness`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (verify_addr, admin_addr) = (self.verify_addr(), self.admin_addr());
        let public_addr = self
            .public_addr()
            .map_or_else(|| "off".to_owned(), |a| a.to_string());
        let (reporter, health) = tonic_health::server::health_reporter();
        set_health(&reporter, ServingStatus::NotServing).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;
        // Servers (and their streams) stop first; the background tasks
        // after them, so the last usage flush sees every served call.
        let stop = CancellationToken::new();
        let stop_tasks = CancellationToken::new();
        let watcher = Watcher::new(
            self.store.clone(),
            self.feed.clone(),
            self.config.watch.clone(),
            stop.clone(),
        );

        let webhooks = Webhooks::new(
            self.store.clone(),
            self.config.webhooks.clone(),
            self.config.clock.clone(),
            self.page_tokens.clone(),
        );
        let metrics = Metrics::default();
        let _gauges = Gauges::register(
            self.index.clone(),
            self.feed.replica.clone(),
            watcher.clone(),
            &metrics,
        );
        let gate = self.auth.verify_gate(self.config.verify_auth);
        let verifier = Verifier::new(VerifierParts {
            index: self.index.clone(),
            usage: self.usage.clone(),
            limiter: self.limiter.clone(),
            replica: self.feed.replica.clone(),
            clock: self.config.clock.clone(),
            metrics: metrics.clone(),
            fail_closed_after: self.config.fail_closed_after,
        });
        let verify_service = VerifyService::new(verifier.clone(), watcher, gate.clone());
        let ext_authz = ExtAuthzService::new(verifier, &self.config.ext_authz_key_header, gate);
        let verify = server(&self.config.verify_limits)
            .layer(ConnectLayer::new(
                &[pb::key_verify_server::SERVICE_NAME],
                MAX_VERIFY_MESSAGE,
                self.config.verify_limits.call_timeout,
            ))
            .layer(GrpcWebLayer::new())
            .add_service(health.clone())
            .add_service(reflection::v1(VERIFY_SERVICES)?)
            .add_service(reflection::v1alpha(VERIFY_SERVICES)?)
            .add_service(
                KeyVerifyServer::new(verify_service).max_decoding_message_size(MAX_VERIFY_MESSAGE),
            )
            .add_service(
                AuthorizationServer::new(ext_authz)
                    .max_decoding_message_size(MAX_EXT_AUTHZ_MESSAGE),
            );
        let tcp = incoming(self.verify_listener, &self.config.verify_limits);
        let verify: Serving = match &self.tls {
            Some(tls) => Box::pin(verify.serve_with_incoming_shutdown(
                tls::incoming(tcp, tls.verify.clone()),
                stop.clone().cancelled_owned(),
            )),
            None => {
                Box::pin(verify.serve_with_incoming_shutdown(tcp, stop.clone().cancelled_owned()))
            }
        };
        let admin = server(&self.config.admin_limits)
            .layer(ConnectLayer::new(
                &[pb::key_admin_server::SERVICE_NAME],
                MAX_ADMIN_MESSAGE,
                self.config.admin_limits.call_timeout,
            ))
            .layer(GrpcWebLayer::new())
            .add_service(health)
            .add_service(reflection::v1(&[pb::key_admin_server::SERVICE_NAME])?)
            .add_service(reflection::v1alpha(&[pb::key_admin_server::SERVICE_NAME])?)
            .add_service(
                KeyAdminServer::new(AdminService::new(
                    self.keys.clone(),
                    self.auth.clone(),
                    webhooks,
                ))
                .max_decoding_message_size(MAX_ADMIN_MESSAGE),
            );
        let tcp = incoming(self.admin_listener, &self.config.admin_limits);
        let admin: Serving = match &self.tls {
            Some(tls) => Box::pin(admin.serve_with_incoming_shutdown(
                tls::incoming(tcp, tls.admin.clone()),
                stop.clone().cancelled_owned(),
            )),
            None => {
                Box::pin(admin.serve_with_incoming_shutdown(tcp, stop.clone().cancelled_owned()))
            }
        };
        tracing::info!(
            %verify_addr,
            %admin_addr,
            %public_addr,
            backend = self.store.backend(),
            tls = self.tls.is_some(),
            verify_auth = ?self.config.verify_auth,
            replica = %self.feed.replica.id,
            "keysmith listening"
        );
        let mut servers = JoinSet::new();
        servers.spawn(verify);
        servers.spawn(admin);
        if let (Some(listener), Some(config)) = (self.public_listener, &self.config.public) {
            let public = crate::public::PublicServer::new(
                listener,
                self.tls.as_ref().map(|t| t.public.clone()),
                config.clone(),
                self.keys.clone(),
                self.store.clone(),
                metrics.clone(),
            )?;
            let (stop, drain) = (stop.clone(), self.config.shutdown_deadline);
            servers.spawn(async move {
                public.run(stop, drain).await;
                Ok(())
            });
        }

        let mut tasks = JoinSet::new();
        let (caught_up_tx, caught_up) = watch::channel(false);
        let feed = ChangeFeed::new(
            self.store.clone(),
            self.index.clone(),
            self.feed.clone(),
            self.config.feed.clone(),
        );
        tasks.spawn(feed.run(caught_up_tx, stop_tasks.clone()));
        let pruner = Pruner {
            store: self.store.clone(),
            retention: self.config.change_retention,
            interval: self.config.prune_interval,
        };
        tasks.spawn(pruner.run(stop_tasks.clone()));
        let flusher = UsageFlusher {
            store: self.store.clone(),
            recorder: self.usage.clone(),
            interval: self.config.usage_flush_interval,
            clock: self.config.clock.clone(),
            metrics: metrics.clone(),
        };
        tasks.spawn(flusher.run(stop_tasks.clone()));
        tasks.spawn(self.limiter.clone().keep(stop_tasks.clone()));
        let scheduler = Scheduler {
            store: self.store.clone(),
            keys: self.keys.clone(),
            clock: self.config.clock.clone(),
            config: self.config.jobs.clone(),
            replica: self.feed.replica.id.clone(),
        };
        tasks.spawn(scheduler.run(stop_tasks.clone()));
        if self.config.webhooks.send {
            let sender = WebhookSender {
                store: self.store.clone(),
                config: self.config.webhooks.clone(),
                clock: self.config.clock.clone(),
                feed: self.feed.clone(),
                outbox_depth: metrics.outbox_depth.clone(),
            };
            tasks.spawn(sender.run(stop_tasks.clone()));
        }
        let monitor = HealthMonitor {
            reporter: reporter.clone(),
            replica: self.feed.replica.clone(),
            caught_up,
            max_staleness: self.config.max_staleness,
            interval: self.config.feed.poll_interval.min(Duration::from_secs(1)),
        };
        tasks.spawn(monitor.run(stop_tasks.clone()));
        let (tokens, auth_auditor) = self.auth.tasks(&self.feed.replica.id);
        tasks.spawn(tokens.run(stop_tasks.clone()));
        tasks.spawn(auth_auditor.run(stop_tasks.clone()));

        shutdown.await;
        tracing::info!("shutting down");
        set_health(&reporter, ServingStatus::NotServing).await;
        reporter
            .set_service_status(LIVENESS, ServingStatus::NotServing)
            .await;
        stop.cancel();
        // Drain in-flight calls, but not forever: a client that keeps a
        // call open past the deadline is cut off.
        let drain = async {
            while let Some(result) = servers.join_next().await {
                match result {
                    Ok(r) => r?,
                    Err(e) => tracing::error!(error = %e, "server task failed"),
                }
            }
            Ok::<(), AppError>(())
        };
        match tokio::time::timeout(self.config.shutdown_deadline, drain).await {
            Ok(r) => r?,
            Err(_) => {
                tracing::warn!(deadline = ?self.config.shutdown_deadline, "drain deadline passed; closing");
                servers.abort_all();
            }
        }
        stop_tasks.cancel();
        tasks.join_all().await;
        Ok(())
    }
}

/// Accepted connections with Nagle off. `Server::tcp_nodelay` applies only
/// to listeners tonic binds itself; without this, a unary response's
/// trailers wait for the client's delayed ACK (about 40 ms).
fn incoming(listener: TcpListener, limits: &ListenerLimits) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(limits.tcp_keepalive))
}

/// A server builder with a listener's limits (see [`ListenerLimits`]).
fn server(limits: &ListenerLimits) -> Server {
    Server::builder()
        // HTTP/1.1 as well, for Connect's JSON and gRPC-Web.
        .accept_http1(true)
        .max_concurrent_streams(limits.max_concurrent_streams)
        .timeout(limits.call_timeout)
        .http2_max_header_list_size(limits.max_header_list_size)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout))
        .max_connection_age(limits.max_connection_age)
        .max_connection_age_grace(limits.max_connection_age_grace)
}

/// Keeps health in step with the replica's freshness.
struct HealthMonitor {
    reporter: HealthReporter,
    replica: Arc<ReplicaState>,
    caught_up: watch::Receiver<bool>,
    max_staleness: Duration,
    interval: Duration,
}

impl HealthMonitor {
    async fn run(mut self, shutdown: CancellationToken) {
        tokio::select! {
            () = shutdown.cancelled() => return,
            r = self.caught_up.wait_for(|c| *c) => if r.is_err() { return },
        }
        tracing::info!("caught up with the change log; serving");
        let mut current = None;
        let mut tick = tokio::time::interval(self.interval);
        loop {
            let fresh = self
                .replica
                .staleness(Timestamp::now())
                .is_some_and(|s| s <= self.max_staleness);
            let status = if fresh {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if current != Some(status) {
                if !fresh {
                    tracing::warn!(max_staleness = ?self.max_staleness, "replica is stale; health NOT_SERVING");
                }
                set_health(&self.reporter, status).await;
                current = Some(status);
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
        }
    }
}

/// A health service name that is SERVING while the process runs, whatever
/// the database does: for liveness probes, which must not restart a replica
/// that is only stale (restarting cannot fix an unreachable database).
pub const LIVENESS: &str = "keysmith.liveness";

/// Readiness: the overall status and both keysmith services, which follow
/// startup catch-up and staleness.
async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for name in [
        "",
        pb::key_verify_server::SERVICE_NAME,
        pb::key_admin_server::SERVICE_NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}
