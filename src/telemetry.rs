//! Logging: pretty on a terminal, JSON otherwise. `RUST_LOG` filters.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // Logs go to stderr, so stdout carries only what a command prints for
    // scripts (an admin token, for instance).
    if std::io::stderr().is_terminal() {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    } else {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init();
    }
}
