//! The `keysmith` binary: parses the command line and calls the library.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Args, Parser, Subcommand};
use keysmith::{
    App, Config, app,
    auth::VerifyAuth,
    cli::{
        self, AdminTokenCommand, Connection, CreditsCommand, DbArgs, KeyCommand, KeyspaceCommand,
        OwnerCommand, RoleCommand, WebhookCommand,
    },
    config::{DbConfig, TlsConfig},
    domain::KeyRotation,
    domain::StalePolicy,
    index::FeedConfig,
    jobs::JobsConfig,
    store::audit_chain,
    telemetry,
    webhooks::WebhookConfig,
};

/// mimalloc instead of glibc's malloc: under load, tonic and h2 allocate and
/// free on different worker threads, and glibc's arena locks showed up in
/// profiles. See BENCHMARKS.md.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3 keeps a page that another thread's frees emptied with the
/// thread that abandoned it, unless `page_reclaim_on_free` is 1. Here tonic
/// and h2 free on another worker than they allocated on; at 1M keys the
/// loaded index costs 221 bytes a key with this setting and 256 without
/// (`scripts/bench scale`, BENCHMARKS.md). The option is read on every
/// free, so setting it first thing in `main` covers the runtime.
/// MIMALLOC_PAGE_RECLAIM_ON_FREE, when set, wins. The index below is the
/// enum's position in the mimalloc 3 header that Cargo.lock pins; the scale
/// bench's budget fails if an update moves it.
#[cfg(all(
    feature = "mimalloc",
    not(feature = "mimalloc-v2"),
    not(feature = "jemalloc")
))]
fn tune_allocator() {
    // `mi_option_page_reclaim_on_free` in mimalloc 3's `mi_option_t`.
    const PAGE_RECLAIM_ON_FREE: i32 = 35;
    unsafe extern "C" {
        fn mi_option_set(option: i32, value: std::ffi::c_long);
    }
    if std::env::var_os("MIMALLOC_PAGE_RECLAIM_ON_FREE").is_none() {
        // SAFETY: mimalloc is linked (it is the global allocator), the
        // option exists in the linked version, and setting one is atomic.
        unsafe { mi_option_set(PAGE_RECLAIM_ON_FREE, 1) };
    }
}

#[cfg(not(all(
    feature = "mimalloc",
    not(feature = "mimalloc-v2"),
    not(feature = "jemalloc")
)))]
fn tune_allocator() {}

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(name = "keysmith", version, about = "API key management over gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Manage admin tokens: offline against the database, or through the
    /// Admin API.
    #[command(subcommand)]
    AdminToken(AdminTokenCommand),
    /// Inspect the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage keys through the Admin API.
    Key {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: KeyCommand,
    },
    /// Manage keyspaces through the Admin API, and print their scanner rules.
    Keyspace {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: KeyspaceCommand,
    },
    /// Manage a keyspace's roles through the Admin API.
    Role {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: RoleCommand,
    },
    /// Read and change credit balances through the Admin API.
    Credits {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: CreditsCommand,
    },
    /// Manage owners (metadata, shared credits) through the Admin API.
    Owner {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: OwnerCommand,
    },
    /// Manage webhook endpoints through the Admin API.
    Webhook {
        #[command(flatten)]
        conn: Connection,
        #[command(subcommand)]
        cmd: WebhookCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the audit hash chain in the database and report the first broken
    /// link. Exits non-zero when the chain is broken. It reads the database
    /// itself rather than asking a server, so a compromised server cannot
    /// vouch for its own log.
    Verify(DbArgs),
    /// List audit events through the Admin API, newest first.
    List {
        #[command(flatten)]
        conn: Connection,
        #[arg(long, default_value = "")]
        key: String,
        #[arg(long, default_value = "")]
        owner: String,
        /// e.g. `key.revoked`.
        #[arg(long, default_value = "")]
        action: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    #[arg(long, env = "KEYSMITH_VERIFY_ADDR", default_value = "127.0.0.1:50051")]
    verify_addr: String,
    #[arg(long, env = "KEYSMITH_ADMIN_ADDR", default_value = "127.0.0.1:50052")]
    admin_addr: String,
    /// Default grace period of RotateKey, e.g. `48h`, `30m`.
    #[arg(long, env = "KEYSMITH_ROTATION_GRACE", default_value = "48h", value_parser = parse_duration)]
    rotation_grace: Duration,
    /// Do not apply migrations at startup.
    #[arg(long, env = "KEYSMITH_NO_MIGRATE")]
    no_migrate: bool,
    /// Read the change log at least this often, whatever NOTIFY does.
    #[arg(long, env = "KEYSMITH_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    poll_interval: Duration,
    /// Health turns NOT_SERVING when the change log was last read longer ago.
    #[arg(long, env = "KEYSMITH_MAX_STALENESS", default_value = "30s", value_parser = parse_duration)]
    max_staleness: Duration,
    /// Verify refuses with UNAVAILABLE when the change log was last read
    /// longer ago. Unset: keep answering from the index (availability).
    #[arg(long, env = "KEYSMITH_FAIL_CLOSED_AFTER", value_parser = parse_duration)]
    fail_closed_after: Option<Duration>,
    /// How often usage counters are written to the database. A crash loses
    /// at most this much usage.
    #[arg(long, env = "KEYSMITH_USAGE_FLUSH_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    usage_flush_interval: Duration,
    /// Failed admin authentications one address (IPv6: one /64) may make in
    /// a minute before its failing calls are refused outright for the rest
    /// of that minute; a valid token is always answered. 0 turns the limit
    /// off.
    #[arg(long, env = "KEYSMITH_ADMIN_AUTH_MAX_FAILURES", default_value_t = 10)]
    admin_auth_max_failures: u32,
    /// Let webhooks target private, loopback and link-local addresses. Off by
    /// default, so a webhook URL cannot reach into the internal network.
    #[arg(long, env = "KEYSMITH_WEBHOOK_ALLOW_PRIVATE_TARGETS")]
    webhook_allow_private_targets: bool,
    /// Record webhook deliveries but do not send them from this replica.
    #[arg(long, env = "KEYSMITH_NO_WEBHOOK_SEND")]
    no_webhook_send: bool,
    /// Rotate every key this often (e.g. `90d`): notices before, then the
    /// --rotation-action at the due time. Unset: no scheduled rotation.
    #[arg(long, env = "KEYSMITH_ROTATE_EVERY", value_parser = parse_duration)]
    rotate_every: Option<Duration>,
    /// `notify` (events only) or `expire` (the key expires at due + grace).
    #[arg(long, env = "KEYSMITH_ROTATION_ACTION", default_value = "notify", value_parser = ["notify", "expire"])]
    rotation_action: String,
    /// How often the scheduled jobs run; each run holds its job's lease this
    /// long, so another replica takes over within one interval of a crash.
    #[arg(long, env = "KEYSMITH_JOBS_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    jobs_interval: Duration,
    /// When to send key.expiring before a key's expiry, e.g. `14d,7d,1d`.
    #[arg(long, env = "KEYSMITH_EXPIRY_NOTICE", default_value = "14d,7d,1d", value_parser = parse_durations)]
    expiry_notice: Durations,
    /// When to send key.rotation_due before a key's rotation is due.
    #[arg(long, env = "KEYSMITH_ROTATION_NOTICE", default_value = "14d,7d,1d", value_parser = parse_durations)]
    rotation_notice: Durations,
    /// Disable keys unused this long (after flagging them stale at 90 days).
    #[arg(long, env = "KEYSMITH_STALE_DISABLE_AFTER", value_parser = parse_duration)]
    stale_disable_after: Option<Duration>,
    /// Revoke keys unused this long.
    #[arg(long, env = "KEYSMITH_STALE_REVOKE_AFTER", value_parser = parse_duration)]
    stale_revoke_after: Option<Duration>,
    /// Report the stale disable and revoke stages without acting.
    #[arg(long, env = "KEYSMITH_STALE_DRY_RUN")]
    stale_dry_run: bool,
    /// PEM certificate (chain) for TLS on both listeners. With --tls-key.
    #[arg(long, env = "KEYSMITH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "KEYSMITH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA: the verify listener then requires client certificates it signed (mTLS).
    #[arg(long, env = "KEYSMITH_TLS_CLIENT_CA", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Besides `authorization: Bearer`, the header Envoy ext_authz reads the key from.
    #[arg(
        long,
        env = "KEYSMITH_EXT_AUTHZ_KEY_HEADER",
        default_value = "x-api-key"
    )]
    ext_authz_key_header: String,
    /// `required`: the verify listener's calls need `authorization: Bearer
    /// <admin token>` with `verify` (Verify, VerifyStream, ext_authz) or
    /// `watch` (WatchRevocations). `off` (the default): anyone who reaches
    /// the listener may call it.
    #[arg(long, env = "KEYSMITH_VERIFY_AUTH", default_value = "off", value_parser = ["off", "required"])]
    verify_auth: String,
    /// Serve the public listener here (GitHub secret-scanning reports at
    /// `POST /v1/secret-scanning/github`, revocation by presenting a key at
    /// `POST /v1/keys/revoke`), the only one meant to face the internet.
    /// Unset: off.
    #[arg(long, env = "KEYSMITH_PUBLIC_ADDR")]
    public_addr: Option<String>,
    /// Requests a second one address may make to the public listener, in
    /// bursts of twice that (IPv6: per /64).
    #[arg(long, env = "KEYSMITH_PUBLIC_PEER_RATE", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    public_peer_rate: u32,
    /// GitHub's secret-scanning public keys, which sign its reports.
    #[arg(
        long,
        env = "KEYSMITH_GITHUB_KEYS_URL",
        default_value = "https://api.github.com/meta/public_keys/secret_scanning"
    )]
    github_keys_url: String,
    /// A leak report that does not say when its key became public takes it
    /// as public since this long before the report: successors the key
    /// rotated itself into since then are ended with it.
    #[arg(long, env = "KEYSMITH_LEAK_LOOKBACK", default_value = "24h", value_parser = parse_duration)]
    leak_lookback: Duration,
    /// While this replica answers Verify calls, ImportKeys batches take at
    /// most this share of the time, so live traffic keeps its throughput
    /// (1 never waits). An idle replica imports flat out.
    #[arg(long, env = "KEYSMITH_IMPORT_DUTY", default_value = "0.2", value_parser = parse_duty)]
    import_duty: f64,
    /// How long the change log keeps rows for resuming revocation streams.
    #[arg(long, env = "KEYSMITH_CHANGE_RETENTION", default_value = "7d", value_parser = parse_duration)]
    change_retention: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// A share of the time: above 0, at most 1.
fn parse_duty(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(d) if d > 0.0 && d <= 1.0 => Ok(d),
        _ => Err("a number above 0 and at most 1, such as 0.2".into()),
    }
}

/// A comma-separated list of durations.
#[derive(Clone, Debug)]
struct Durations(Vec<Duration>);

fn parse_durations(s: &str) -> Result<Durations, String> {
    s.split(',')
        .map(|p| parse_duration(p.trim()))
        .collect::<Result<_, _>>()
        .map(Durations)
}

#[tokio::main]
async fn main() -> ExitCode {
    tune_allocator();
    let _telemetry = telemetry::init();
    let result = match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(db) => app::open_store(&db.into(), true)
            .await
            .map(|_| eprintln!("migrations applied"))
            .map_err(|e| e.to_string()),
        Command::AdminToken(cmd) => cli::run_admin_token(cmd).await,
        Command::Audit(AuditCommand::Verify(db)) => verify_audit(db.into()).await,
        Command::Audit(AuditCommand::List {
            conn,
            key,
            owner,
            action,
        }) => cli::run_audit_list(&conn, key, owner, action).await,
        Command::Key { conn, cmd } => cli::run_key(&conn, cmd).await,
        Command::Keyspace { conn, cmd } => cli::run_keyspace(&conn, cmd).await,
        Command::Role { conn, cmd } => cli::run_role(&conn, cmd).await,
        Command::Credits { conn, cmd } => cli::run_credits(&conn, cmd).await,
        Command::Owner { conn, cmd } => cli::run_owner(&conn, cmd).await,
        Command::Webhook { conn, cmd } => cli::run_webhook(&conn, cmd).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keysmith: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let defaults = Config::default();
    let config = Config {
        verify_addr: args.verify_addr,
        admin_addr: args.admin_addr,
        db: args.db.into(),
        rotation_grace: args.rotation_grace,
        migrate: !args.no_migrate,
        feed: FeedConfig {
            poll_interval: args.poll_interval.max(Duration::from_millis(10)),
            ..defaults.feed
        },
        max_staleness: args.max_staleness,
        fail_closed_after: args.fail_closed_after,
        change_retention: args.change_retention,
        usage_flush_interval: args.usage_flush_interval.max(Duration::from_millis(10)),
        jobs: JobsConfig {
            interval: args.jobs_interval.max(Duration::from_millis(10)),
            default_rotation: args
                .rotate_every
                .map(|every| KeyRotation::every(every, args.rotation_action == "expire"))
                .transpose()?,
            rotation_grace: args.rotation_grace,
            expiry_notice: args.expiry_notice.0,
            rotation_notice: args.rotation_notice.0,
            stale: StalePolicy {
                disable_after: args.stale_disable_after,
                revoke_after: args.stale_revoke_after,
                dry_run: args.stale_dry_run,
                ..defaults.jobs.stale.clone()
            },
        },
        ext_authz_key_header: args.ext_authz_key_header,
        verify_auth: match args.verify_auth.as_str() {
            "required" => VerifyAuth::Required,
            _ => VerifyAuth::Off,
        },
        auth_limits: keysmith::auth::AuthLimits {
            max_failures: args.admin_auth_max_failures,
            ..defaults.auth_limits
        },
        tls: match (args.tls_cert, args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert,
                key,
                verify_client_ca: args.tls_client_ca,
            }),
            _ => None,
        },
        webhooks: WebhookConfig {
            allow_private_targets: args.webhook_allow_private_targets,
            send: !args.no_webhook_send,
            ..defaults.webhooks.clone()
        },
        public: args.public_addr.map(|addr| keysmith::public::PublicConfig {
            addr,
            github_keys: keysmith::public::KeysConfig {
                url: args.github_keys_url,
                ..Default::default()
            },
            per_peer: keysmith::public::Rate {
                per_second: f64::from(args.public_peer_rate),
                burst: 2.0 * f64::from(args.public_peer_rate),
            },
            ..Default::default()
        }),
        leak_lookback: args.leak_lookback,
        import_duty: args.import_duty,
        prune_interval: (args.change_retention / 10)
            .clamp(Duration::from_secs(1), defaults.prune_interval),
        ..defaults
    };
    let app = App::build(&config).await.map_err(|e| e.to_string())?;
    if let Some(token) = app
        .auth()
        .mint_bootstrap()
        .await
        .map_err(|e| e.to_string())?
    {
        // Printed, never logged: stdout is the operator's terminal.
        println!(
            "\n==================== keysmith admin token ====================\n\
             No admin token existed, so one was minted. It is shown once.\n\
             \n    {}\n\n\
             Use it as `authorization: Bearer <token>` on the admin port.\n\
             ==============================================================\n",
            token.expose_secret()
        );
    }
    app.run(shutdown_signal()).await.map_err(|e| e.to_string())
}

async fn verify_audit(db: DbConfig) -> Result<(), String> {
    let store = app::open_store(&db, false)
        .await
        .map_err(|e| e.to_string())?;
    match audit_chain::verify_store(store.as_ref())
        .await
        .map_err(|e| e.to_string())?
    {
        Ok(n) => {
            println!("audit chain intact: {n} events");
            Ok(())
        }
        Err(b) => Err(format!(
            "audit chain broken at event {}: {}",
            b.event_id, b.reason
        )),
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
