//! The admin CLI: `keysmith key …`, `keysmith keyspace …`, `keysmith role …`, `keysmith audit list`,
//! `keysmith webhook …`, `keysmith admin-token …`.
//!
//! It talks to the Admin API. Output is a table for people, or JSON with
//! `--json` for scripts. Secrets are printed once, on create and rotate,
//! with a warning on stderr.

mod commands;
mod import;
mod keyspace;
mod output;
mod quota;
mod role;
mod tokens;

use std::time::Duration;

use clap::Args;
use tonic::{Code, Request, Status, transport::Channel};

use crate::grpc::pb::{self, key_admin_client::KeyAdminClient};
pub use commands::{KeyCommand, WebhookCommand};
pub use keyspace::{
    GITLEAKS_TEMPLATE, KeyspaceCommand, TRUFFLEHOG_TEMPLATE, render as render_scanner_rule,
    run_keyspace,
};
use output::{Out, key_json, key_row};
pub use quota::{CreditsCommand, OwnerCommand, run_credits, run_owner};
pub use role::{RoleCommand, run_role};
pub use tokens::{AdminTokenCommand, DbArgs, TokenSpec, run_admin_token};

/// Where the Admin API is and how to authenticate.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Admin API address.
    #[arg(
        long,
        env = "KEYSMITH_ADMIN_ADDR",
        default_value = "127.0.0.1:50052",
        global = true
    )]
    pub admin_addr: String,
    /// Admin token.
    #[arg(
        long,
        env = "KEYSMITH_ADMIN_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn pb_duration(d: Duration) -> crate::grpc::wkt::Duration {
    crate::grpc::wkt::Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// A client error, worded for a person at a terminal.
fn explain(conn: &Connection, s: Status) -> String {
    match s.code() {
        Code::Unauthenticated => {
            "the admin token was refused; pass --token or set KEYSMITH_ADMIN_TOKEN".to_owned()
        }
        Code::Unavailable
            if s.message().contains("connect") || s.message().contains("transport") =>
        {
            format!(
                "cannot reach the admin API at {}: {}",
                conn.admin_addr,
                s.message()
            )
        }
        code => format!("{code:?}: {}", s.message()),
    }
}

#[derive(Clone)]
struct Client {
    conn: Connection,
    inner: KeyAdminClient<Channel>,
    token: String,
}

impl Client {
    async fn connect(conn: &Connection) -> Result<Self, String> {
        let token = conn
            .token
            .clone()
            .ok_or("no admin token: pass --token or set KEYSMITH_ADMIN_TOKEN")?;
        let uri = format!("http://{}", conn.admin_addr);
        let channel = Channel::from_shared(uri)
            .map_err(|e| format!("bad admin address {}: {e}", conn.admin_addr))?
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", conn.admin_addr))?;
        Ok(Self {
            conn: conn.clone(),
            inner: KeyAdminClient::new(channel),
            token,
        })
    }

    fn req<T>(&self, msg: T) -> Result<Request<T>, String> {
        let mut req = Request::new(msg);
        let value = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| "the admin token is not valid ASCII")?;
        req.metadata_mut().insert("authorization", value);
        Ok(req)
    }

    fn fail(&self, s: Status) -> String {
        explain(&self.conn, s)
    }
}

pub async fn run_key(conn: &Connection, cmd: KeyCommand) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    match cmd {
        KeyCommand::Create {
            owner,
            name,
            key_type,
            environment,
            scopes,
            ttl,
            request_id,
            keyspace,
            roles,
        } => {
            let key_type = match key_type.as_str() {
                "secret" => pb::KeyType::Secret,
                "publishable" => pb::KeyType::Publishable,
                other => return Err(format!("--type must be secret or publishable, not {other}")),
            };
            let environment = match environment.as_deref() {
                None => pb::Environment::Unspecified,
                Some("live") => pb::Environment::Live,
                Some("test") => pb::Environment::Test,
                Some(other) => return Err(format!("--env must be live or test, not {other}")),
            };
            let msg = pb::CreateKeyRequest {
                owner_id: owner,
                name,
                r#type: key_type.into(),
                environment: environment.into(),
                scopes,
                ttl: ttl.map(pb_duration),
                request_id,
                keyspace,
                roles,
                ..Default::default()
            };
            let r = c
                .inner
                .create_key(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            out.secret_once(&r.secret);
            out.key(r.key.as_ref(), &[("secret", &r.secret)]);
        }
        KeyCommand::Get { id } => {
            let r = c
                .inner
                .get_key(c.req(pb::GetKeyRequest { id })?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::List {
            owner,
            state,
            page_size,
            page_token,
            keyspace,
        } => {
            let state = match state.as_deref() {
                None => pb::KeyState::Unspecified,
                Some("active") => pb::KeyState::Active,
                Some("expired") => pb::KeyState::Expired,
                Some("revoked") => pb::KeyState::Revoked,
                Some("disabled") => pb::KeyState::Disabled,
                Some(other) => {
                    return Err(format!(
                        "--state must be active, expired, revoked or disabled, not {other}"
                    ));
                }
            };
            let msg = pb::ListKeysRequest {
                owner_id: owner,
                state: state.into(),
                page_size,
                page_token,
                keyspace,
                ..Default::default()
            };
            let r = c
                .inner
                .list_keys(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            out.list(
                &["ID", "OWNER", "NAME", "STATE", "HINT", "SCOPES"],
                r.keys.iter().map(key_row).collect(),
                serde_json::json!({
                    "keys": r.keys.iter().map(key_json).collect::<Vec<_>>(),
                    "next_page_token": r.next_page_token,
                }),
            );
        }
        KeyCommand::Update { id, name, scopes } => {
            let mut paths = Vec::new();
            if name.is_some() {
                paths.push("name".to_owned());
            }
            if scopes.is_some() {
                paths.push("scopes".to_owned());
            }
            if paths.is_empty() {
                return Err("nothing to update: pass --name or --scope".into());
            }
            let key = pb::Key {
                id,
                name: name.unwrap_or_default(),
                scopes: scopes.unwrap_or_default(),
                ..Default::default()
            };
            let msg = pb::UpdateKeyRequest {
                key: Some(key),
                update_mask: Some(crate::grpc::wkt::FieldMask { paths }),
            };
            let r = c
                .inner
                .update_key(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::Rotate { id, grace } => {
            let msg = pb::RotateKeyRequest {
                id,
                grace_period: grace.map(pb_duration),
                ..Default::default()
            };
            let r = c
                .inner
                .rotate_key(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            out.secret_once(&r.secret);
            let previous = r
                .previous
                .as_ref()
                .map(|p| p.id.as_str())
                .unwrap_or_default();
            out.key(
                r.key.as_ref(),
                &[("secret", &r.secret), ("previous", previous)],
            );
        }
        KeyCommand::Revoke { id, reason } => {
            let msg = pb::RevokeKeyRequest {
                id,
                reason,
                ..Default::default()
            };
            let r = c
                .inner
                .revoke_key(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::Disable { id, reason } => {
            let r = c
                .inner
                .disable_key(c.req(pb::DisableKeyRequest { id, reason })?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::Enable { id } => {
            let r = c
                .inner
                .enable_key(c.req(pb::EnableKeyRequest { id })?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::Lookup => {
            let key = read_key()?;
            let r = c
                .inner
                .lookup_key(c.req(pb::LookupKeyRequest {
                    key: key.to_string(),
                })?)
                .await
                .map_err(|s| c.fail(s))?;
            out.key(r.into_inner().key.as_ref(), &[]);
        }
        KeyCommand::ReportLeak { url, source } => {
            let key = read_key()?;
            let msg = pb::ReportLeakedKeyRequest {
                key: key.to_string(),
                url,
                source,
                leaked_time: None,
            };
            let r = c
                .inner
                .report_leaked_key(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let policy = r.policy().as_str_name();
            let successors = r.successors.len().to_string();
            out.key(
                r.key.as_ref(),
                &[("policy", policy), ("successors_ended", &successors)],
            );
        }
        KeyCommand::Import(args) => import::import(&mut c, args, conn.json).await?,
        KeyCommand::Export { keyspace, output } => import::export(&mut c, keyspace, output).await?,
        KeyCommand::Usage { id } => {
            let msg = pb::GetKeyUsageRequest {
                id,
                ..Default::default()
            };
            let r = c
                .inner
                .get_key_usage(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            out.usage(&r);
        }
    }
    Ok(())
}

pub async fn run_audit_list(
    conn: &Connection,
    key: String,
    owner: String,
    action: String,
) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let msg = pb::ListAuditEventsRequest {
        key_id: key,
        owner_id: owner,
        action,
        ..Default::default()
    };
    let r = c
        .inner
        .list_audit_events(c.req(msg)?)
        .await
        .map_err(|s| c.fail(s))?
        .into_inner();
    Out::new(conn.json).audit(&r.events);
    Ok(())
}

pub async fn run_webhook(conn: &Connection, cmd: WebhookCommand) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    match cmd {
        WebhookCommand::Create {
            url,
            events,
            description,
        } => {
            let msg = pb::CreateWebhookEndpointRequest {
                url,
                events,
                description,
            };
            let r = c
                .inner
                .create_webhook_endpoint(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            out.secret_once(&r.signing_secret);
            out.endpoints(r.endpoint.as_slice(), Some(&r.signing_secret));
        }
        WebhookCommand::List => {
            let r = c
                .inner
                .list_webhook_endpoints(c.req(pb::ListWebhookEndpointsRequest {})?)
                .await
                .map_err(|s| c.fail(s))?;
            out.endpoints(&r.into_inner().endpoints, None);
        }
        WebhookCommand::Delete { id } => {
            c.inner
                .delete_webhook_endpoint(c.req(pb::DeleteWebhookEndpointRequest { id })?)
                .await
                .map_err(|s| c.fail(s))?;
        }
        WebhookCommand::Deliveries { endpoint } => {
            let msg = pb::ListWebhookDeliveriesRequest {
                endpoint_id: endpoint,
                ..Default::default()
            };
            let r = c
                .inner
                .list_webhook_deliveries(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?;
            out.deliveries(&r.into_inner().deliveries);
        }
        WebhookCommand::Redeliver { id } => {
            let r = c
                .inner
                .redeliver_webhook(c.req(pb::RedeliverWebhookRequest { id })?)
                .await
                .map_err(|s| c.fail(s))?;
            out.deliveries(std::slice::from_ref(&r.into_inner()));
        }
    }
    Ok(())
}

/// A key from stdin's first line, wiped when dropped.
fn read_key() -> Result<zeroize::Zeroizing<String>, String> {
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("reading the key from stdin: {e}"))?;
    let key = zeroize::Zeroizing::new(line.trim().to_owned());
    if key.is_empty() {
        return Err("pass the key on stdin, e.g. `echo \"$KEY\" | keysmith key lookup`".into());
    }
    Ok(key)
}
