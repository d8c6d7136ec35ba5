//! Builds keysmith from a [`Config`] and runs it until shutdown.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{
    auth::AdminAuth,
    config::{Config, DbConfig, MAX_ADMIN_MESSAGE, MAX_VERIFY_MESSAGE},
    grpc::{
        AdminService, VerifyService,
        pb::{self, key_admin_server::KeyAdminServer, key_verify_server::KeyVerifyServer},
    },
    index::KeyIndex,
    keys::{Keys, KeysConfig},
    store::{self, Store},
};

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
    verify_listener: TcpListener,
    admin_listener: TcpListener,
    store: Arc<dyn Store>,
    index: Arc<KeyIndex>,
    keys: Keys,
    auth: AdminAuth,
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
        let index = Arc::new(KeyIndex::default());
        let keys_config = KeysConfig {
            rotation_grace: config.rotation_grace,
        };
        let keys = Keys::new(store.clone(), index.clone(), keys_config);
        let auth = AdminAuth::new(store.clone());
        Ok(Self {
            verify_listener: bind(&config.verify_addr).await?,
            admin_listener: bind(&config.admin_addr).await?,
            store,
            index,
            keys,
            auth,
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

    pub fn auth(&self) -> &AdminAuth {
        &self.auth
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Serves both listeners until `shutdown` resolves, then drains.
    ///
    /// Health answers NOT_SERVING until the index holds every key.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (verify_addr, admin_addr) = (self.verify_addr(), self.admin_addr());
        let (reporter, health) = tonic_health::server::health_reporter();
        set_health(&reporter, ServingStatus::NotServing).await;
        let stop = CancellationToken::new();

        let verify = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(health.clone())
            .add_service(reflection_v1(pb::key_verify_server::SERVICE_NAME)?)
            .add_service(reflection_v1alpha(pb::key_verify_server::SERVICE_NAME)?)
            .add_service(
                KeyVerifyServer::new(VerifyService::new(self.index.clone()))
                    .max_decoding_message_size(MAX_VERIFY_MESSAGE),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.verify_listener),
                stop.clone().cancelled_owned(),
            );
        let admin = Server::builder()
            .tcp_nodelay(true)
            .add_service(health)
            .add_service(reflection_v1(pb::key_admin_server::SERVICE_NAME)?)
            .add_service(reflection_v1alpha(pb::key_admin_server::SERVICE_NAME)?)
            .add_service(
                KeyAdminServer::new(AdminService::new(self.keys.clone(), self.auth.clone()))
                    .max_decoding_message_size(MAX_ADMIN_MESSAGE),
            )
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.admin_listener),
                stop.clone().cancelled_owned(),
            );
        tracing::info!(%verify_addr, %admin_addr, backend = self.store.backend(), "keysmith listening");
        let verify = tokio::spawn(verify);
        let admin = tokio::spawn(admin);

        let started = std::time::Instant::now();
        let snapshot = self.store.snapshot().await?;
        let count = snapshot.keys.len();
        self.index.load(snapshot.keys, snapshot.seq);
        set_health(&reporter, ServingStatus::Serving).await;
        tracing::info!(
            keys = count,
            seq = self.index.applied_seq(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "index loaded; serving"
        );

        shutdown.await;
        tracing::info!("shutting down");
        set_health(&reporter, ServingStatus::NotServing).await;
        stop.cancel();
        let (v, a) = tokio::join!(verify, admin);
        for result in [v, a] {
            match result {
                Ok(r) => r?,
                Err(e) => tracing::error!(error = %e, "server task failed"),
            }
        }
        Ok(())
    }
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    for name in [
        "",
        pb::key_verify_server::SERVICE_NAME,
        pb::key_admin_server::SERVICE_NAME,
    ] {
        reporter.set_service_status(name, status).await;
    }
}

const HEALTH: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// Reflection that advertises `service` (and health and reflection) only,
/// so each listener lists what it really serves.
fn reflection_builder(service: &str) -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(service)
        .with_service_name(HEALTH)
        .with_service_name(REFLECTION_V1)
        .with_service_name(REFLECTION_V1ALPHA)
}

fn reflection_v1(
    service: &str,
) -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    AppError,
> {
    Ok(reflection_builder(service).build_v1()?)
}

fn reflection_v1alpha(
    service: &str,
) -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    AppError,
> {
    Ok(reflection_builder(service).build_v1alpha()?)
}
