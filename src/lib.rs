//! keysmith: API key management over gRPC.
//!
//! See ARCHITECTURE.md for the data flow, the code map and the invariants.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod index;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod public;
pub mod store;
pub mod telemetry;
pub mod usage;
pub mod verify;
pub mod watch;
pub mod webhooks;

pub use app::App;
pub use config::Config;
