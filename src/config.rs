//! Server configuration, built by the CLI from flags and environment.

use std::{path::PathBuf, time::Duration};

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
        }
    }
}

/// Largest request each listener decodes. Verify requests are a key and a
/// few short strings; admin requests are bounded by the field limits
/// (100 scopes of 128 bytes, 8 KiB of metadata).
pub const MAX_VERIFY_MESSAGE: usize = 16 * 1024;
pub const MAX_ADMIN_MESSAGE: usize = 256 * 1024;
