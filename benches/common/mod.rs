//! Shared by the process benches: start a release `keysmith serve`, make a
//! fresh PostgreSQL database, read a process's RSS, print percentiles.
#![allow(dead_code)]

pub mod wire;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use keysmith::domain::{ApiKey, Environment, KeyId, KeyPrefix, KeyType, Timestamp};
use sqlx::Connection;
use tonic::{Request, transport::Channel};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// Whether cargo runs this as a benchmark (`cargo bench` passes `--bench`);
/// `cargo test --all-targets` only checks that it builds and starts.
pub fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

pub fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `keysmith serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub verify_addr: String,
    pub admin_addr: String,
    /// The public listener's, when `--public-addr` turned it on.
    pub public_addr: Option<String>,
    /// The bootstrap admin token, when this start minted one.
    pub token: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the binary under KEYSMITH_BIN (another build, e.g. a baseline)
    /// or this one, with `args` after `serve` and its listeners on port 0.
    /// Returns once both listeners are bound.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_bin(None, args, env)
    }

    /// As `start`, with `bin` (when given) instead of KEYSMITH_BIN.
    pub fn start_bin(bin: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Server {
        let bin = bin.map(str::to_owned).unwrap_or_else(|| {
            std::env::var("KEYSMITH_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_keysmith").to_owned())
        });
        let mut cmd = Command::new(bin);
        cmd.args([
            "serve",
            "--verify-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args(args)
        // The backend is chosen by `args` (`--database-url`), never by
        // the environment scripts/bench exports.
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn,keysmith::app=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn keysmith");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
            let token = lines.find_map(|l| {
                let l = l.trim();
                l.starts_with("ksa_").then(|| l.to_owned())
            });
            let _ = tx.send(token);
            lines.for_each(drop);
        });
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let fields = loop {
            let line = lines.next().expect("server log").expect("read log");
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if v["fields"]["message"] == "keysmith listening" {
                break v["fields"].clone();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        let addr = |k: &str| fields[k].as_str().expect("addr").to_owned();
        // The banner is printed before the listeners bind, or not at all.
        let token = rx.recv_timeout(Duration::from_millis(200)).ok().flatten();
        Server {
            verify_addr: addr("verify_addr"),
            admin_addr: addr("admin_addr"),
            public_addr: fields["public_addr"]
                .as_str()
                .filter(|a| *a != "off")
                .map(str::to_owned),
            token,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size now, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// Polls health until the verify listener reports SERVING.
    pub async fn wait_serving(&self, deadline: Duration) -> Duration {
        let started = Instant::now();
        let mut health = HealthClient::new(channel(&self.verify_addr).await);
        loop {
            let req = HealthCheckRequest {
                service: String::new(),
            };
            if let Ok(r) = health.check(req).await
                && r.into_inner().status() == ServingStatus::Serving
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < deadline,
                "not SERVING after {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

pub async fn channel(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect")
}

pub fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    let value = format!("Bearer {token}").parse().expect("ascii");
    req.metadata_mut().insert("authorization", value);
    req
}

/// A fresh, migrated database on the server at DATABASE_URL with an admin
/// token minted in it: (its URL, the token).
pub async fn migrated_database(base: &str) -> (String, String) {
    let url = fresh_database(base).await;
    let db = keysmith::config::DbConfig {
        database_url: Some(url.clone()),
        data_dir: std::env::temp_dir(),
    };
    let store = keysmith::app::open_store(&db, true).await.expect("store");
    let (token, _) = keysmith::auth::AdminAuth::new(store, Default::default(), Default::default())
        .mint("bench")
        .await
        .expect("token");
    (url, token.expose_secret().to_owned())
}

/// A new, empty database on the server at DATABASE_URL; its URL.
pub async fn fresh_database(base: &str) -> String {
    let name = format!(
        "keysmith_bench_{}",
        ulid::Ulid::new().to_string().to_lowercase()
    );
    let mut conn = sqlx::PgConnection::connect(base).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create database");
    format!(
        "{}/{name}",
        base.rsplit_once('/').expect("url with a database").0
    )
}

/// Sorted samples; `at(0.99)` is the 99th percentile.
pub struct Percentiles(Vec<Duration>);

impl Percentiles {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    pub fn at(&self, p: f64) -> Duration {
        let i = ((self.0.len() as f64 * p) as usize).min(self.0.len().saturating_sub(1));
        self.0.get(i).copied().unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn line(&self) -> String {
        format!(
            "p50={:>9.2?} p90={:>9.2?} p99={:>9.2?} p99.9={:>9.2?} max={:>9.2?}",
            self.at(0.5),
            self.at(0.9),
            self.at(0.99),
            self.at(0.999),
            self.at(1.0)
        )
    }
}

const CHUNK: usize = 10_000;

/// The keyspace the benches' keys live in, and its prefix.
pub const KEYSPACE: &str = "ks_bench";
pub const PREFIX: &str = "bench";
/// The role that every tenth of the first [`ROLE_HOLDERS`] × 10 keys holds
/// in place of its own scopes (the same two scopes).
pub const ROLE: &str = "billing-reader";
/// A role's cap on live holders.
pub const ROLE_HOLDERS: usize = 10_000;

/// Bulk-inserts `n` keys into the (migrated) database at `url`, 10,000 per
/// statement, the way CreateKey makes them: OS CSPRNG, SHA-256 of all but
/// the checksum, 10,000 owners. Every key is in keyspace [`KEYSPACE`]
/// (`bench_sk_live_…`) with scopes `invoices:*` and `customers:read`; every
/// tenth key, up to [`ROLE_HOLDERS`] of them, holds none of its own and has
/// them through role [`ROLE`]. Returns the secrets of the first `keep`.
pub async fn seed_postgres(url: &str, n: usize, keep: usize) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let now = Timestamp::now().as_millis();
    sqlx::query(
        "INSERT INTO keyspaces (id, name, prefix, defaults, scopes, created_at, updated_at, \
         version) VALUES ($1, 'bench', $2, '{}', '[]', $3, $3, 1)",
    )
    .bind(KEYSPACE)
    .bind(PREFIX)
    .bind(now)
    .execute(&mut conn)
    .await
    .expect("insert keyspace");
    sqlx::query(
        "INSERT INTO roles (keyspace_id, name, description, scopes, created_at, updated_at, \
         version) VALUES ($1, $2, '', '[\"invoices:*\", \"customers:read\"]', $3, $3, 1)",
    )
    .bind(KEYSPACE)
    .bind(ROLE)
    .bind(now)
    .execute(&mut conn)
    .await
    .expect("insert role");
    let prefix = KeyPrefix::parse(PREFIX).expect("prefix");
    let mut secrets = Vec::with_capacity(keep);
    let mut holders = 0;
    let mut done = 0;
    while done < n {
        let m = CHUNK.min(n - done);
        let (mut ids, mut hashes, mut owners, mut hints, mut scopes) = (
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
            Vec::with_capacity(m),
        );
        let mut role_keys = Vec::new();
        for i in done..done + m {
            let key =
                ApiKey::generate_in(Some(prefix), KeyType::Secret, Environment::Live).expect("rng");
            let id = KeyId::generate().as_str().to_owned();
            if i % 10 == 0 && holders < ROLE_HOLDERS {
                holders += 1;
                role_keys.push(id.clone());
                scopes.push("[]");
            } else {
                scopes.push(r#"["invoices:*", "customers:read"]"#);
            }
            ids.push(id);
            hashes.push(key.hash().as_bytes().to_vec());
            owners.push(format!("acct_{:05}", i % 10_000));
            hints.push(key.hint());
            if secrets.len() < keep {
                secrets.push(key.expose_secret().to_owned());
            }
        }
        sqlx::query(
            "INSERT INTO keys (id, key_hash, owner_id, name, key_type, environment, scopes, \
             metadata, hint, created_at, updated_at, version, keyspace_id) \
             SELECT id, key_hash, owner_id, '', 'secret', 'live', scopes::jsonb, '{}'::jsonb, \
             hint, $6, $6, 1, $7 \
             FROM UNNEST($1::text[], $2::bytea[], $3::text[], $4::text[], $5::text[]) \
             AS t(id, key_hash, owner_id, hint, scopes)",
        )
        .bind(&ids)
        .bind(&hashes)
        .bind(&owners)
        .bind(&hints)
        .bind(&scopes)
        .bind(now)
        .bind(KEYSPACE)
        .execute(&mut conn)
        .await
        .expect("insert keys");
        sqlx::query(
            "INSERT INTO key_roles (key_id, keyspace_id, role_name) \
             SELECT id, $2, $3 FROM UNNEST($1::text[]) AS t(id)",
        )
        .bind(&role_keys)
        .bind(KEYSPACE)
        .bind(ROLE)
        .execute(&mut conn)
        .await
        .expect("insert key roles");
        done += m;
    }
    secrets
}
