//! keysmith's integration suite: a real server on port 0, real databases
//! (SQLite in a temp dir, PostgreSQL from DATABASE_URL), generated clients.

mod helpers;
mod hostile;
mod hygiene;

mod admin_audit;
mod admin_auth;
mod audit;
mod automation;
mod bad_input;
mod cli;
mod crash;
mod deploy_files;
mod ext_authz;
mod flood;
mod lifecycle;
mod limits;
mod listing;
mod persistence;
mod pg_cluster;
mod process;
mod readme_session;
mod receiver;
mod replicas;
mod restrictions;
mod stream;
mod telemetry;
mod tls;
mod usage;
mod verify;
mod webhook_ssrf;
mod webhooks;
