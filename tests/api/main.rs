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
mod canonical;
mod cli;
mod crash;
mod crash_bounds;
mod deploy_files;
mod disclosure;
mod ext_authz;
mod feed;
mod flood;
mod grace;
mod lifecycle;
mod limits;
mod listing;
mod permissions;
mod persistence;
mod pg_cluster;
mod process;
mod readme_session;
mod receiver;
mod reflection;
mod replicas;
mod restrictions;
mod restrictions_stream;
mod revoke_lineage;
mod rotate_self;
mod stream;
mod telemetry;
mod tls;
mod token_lifecycle;
mod token_limits;
mod token_support;
mod usage;
mod verify;
mod verify_auth;
mod webhook_ssrf;
mod webhooks;
