//! `keysmith admin-token …`: mint tokens offline, against the database
//! (the first token of an installation, or a way back in after losing
//! every token), or through the Admin API (`--api`, and `list`, `get`,
//! `revoke`), where the calling token's own power bounds what it mints.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Subcommand};

use super::{Client, Connection, output::Out, parse_duration};
use crate::{
    app,
    auth::{AdminAuth, NewToken},
    config::DbConfig,
    domain::{Clock, KeyName, PermissionSet, TokenGrant, TokenLimits},
    grpc::pb,
    keys::Actor,
};

/// Where the database is, for the commands that open it themselves.
#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// `postgres://…` or `sqlite://…`. Without it, SQLite in --data-dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the embedded SQLite database lives.
    #[arg(long, env = "KEYSMITH_DATA_DIR", default_value = "./keysmith-data")]
    pub data_dir: PathBuf,
}

impl From<DbArgs> for DbConfig {
    fn from(a: DbArgs) -> Self {
        Self {
            database_url: a.database_url.filter(|u| !u.is_empty()),
            data_dir: a.data_dir,
        }
    }
}

/// What a new token may do.
#[derive(Args, Clone, Debug)]
pub struct TokenSpec {
    /// A label for the token, shown in listings.
    #[arg(long, default_value = "cli")]
    pub name: String,
    /// A permission (repeat for several), e.g. `keys.read`. Offline, none
    /// means every permission.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// Limit the token to a keyspace (repeat for several).
    #[arg(long = "keyspace")]
    pub keyspaces: Vec<String>,
    /// Limit the token to an owner (repeat for several).
    #[arg(long = "owner")]
    pub owners: Vec<String>,
    /// Expire the token after this long, e.g. `30d`.
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
}

#[derive(Subcommand, Debug)]
pub enum AdminTokenCommand {
    /// Mint a token and print it once; the last line of stdout is the token
    /// alone. Offline (against the database) unless `--api`.
    Create {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        conn: Connection,
        #[command(flatten)]
        spec: TokenSpec,
        /// Mint through the Admin API, on the authority of `--token`.
        #[arg(long)]
        api: bool,
    },
    /// List tokens through the Admin API.
    List {
        #[command(flatten)]
        conn: Connection,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Show one token through the Admin API.
    Get {
        #[command(flatten)]
        conn: Connection,
        id: String,
    },
    /// Revoke a token through the Admin API, on every replica.
    Revoke {
        #[command(flatten)]
        conn: Connection,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Also revoke every token it minted, directly or through others.
        #[arg(long)]
        include_minted: bool,
    },
}

pub async fn run_admin_token(cmd: AdminTokenCommand) -> Result<(), String> {
    match cmd {
        AdminTokenCommand::Create {
            db,
            spec,
            api: false,
            ..
        } => mint_offline(db.into(), spec).await,
        AdminTokenCommand::Create {
            conn,
            spec,
            api: true,
            ..
        } => mint_online(&conn, spec).await,
        AdminTokenCommand::List {
            conn,
            page_size,
            page_token,
        } => {
            let mut c = Client::connect(&conn).await?;
            let msg = pb::ListAdminTokensRequest {
                page_size,
                page_token,
            };
            let r = c.inner.list_admin_tokens(c.req(msg)?).await;
            let r = r.map_err(|s| c.fail(s))?.into_inner();
            Out::new(conn.json).tokens(&r.tokens, &r.next_page_token);
            Ok(())
        }
        AdminTokenCommand::Get { conn, id } => {
            let mut c = Client::connect(&conn).await?;
            let r = c
                .inner
                .get_admin_token(c.req(pb::GetAdminTokenRequest { id })?)
                .await;
            let r = r.map_err(|s| c.fail(s))?.into_inner();
            Out::new(conn.json).token(r.token.as_ref(), None);
            Ok(())
        }
        AdminTokenCommand::Revoke {
            conn,
            id,
            reason,
            include_minted,
        } => {
            let mut c = Client::connect(&conn).await?;
            let msg = pb::RevokeAdminTokenRequest {
                id,
                reason,
                include_minted,
            };
            let r = c.inner.revoke_admin_token(c.req(msg)?).await;
            let r = r.map_err(|s| c.fail(s))?.into_inner();
            Out::new(conn.json).token(r.token.as_ref(), None);
            if include_minted && !conn.json {
                eprintln!("also revoked {} token(s) it minted", r.minted_revoked);
            }
            Ok(())
        }
    }
}

/// `--flag` lists, empty meaning no limit, as the API takes them.
fn limit(raw: Vec<String>) -> Option<Vec<String>> {
    (!raw.is_empty()).then_some(raw)
}

/// Mints against the database as `system:cli`: whoever can open the
/// database holds every power already, so the token may have any.
async fn mint_offline(db: DbConfig, spec: TokenSpec) -> Result<(), String> {
    let permissions = if spec.permissions.is_empty() {
        PermissionSet::ALL
    } else {
        PermissionSet::parse(spec.permissions.iter().map(String::as_str))
            .map_err(|(i, e)| format!("--permission #{}: {e}", i + 1))?
    };
    let limits = TokenLimits::parse(limit(spec.keyspaces), limit(spec.owners))
        .map_err(|e| format!("--keyspace/--owner: {e}"))?;
    let clock = Clock::system();
    let expires_at = spec.expires_in.map(|d| clock.now().saturating_add(d));
    let grant = TokenGrant::new(permissions, limits, expires_at).map_err(|e| e.to_string())?;
    let name = KeyName::parse(&spec.name).map_err(|e| format!("--name: {e}"))?;
    let store = app::open_store(&db, true)
        .await
        .map_err(|e| e.to_string())?;
    let (token, info) = AdminAuth::new(store, Default::default(), clock)
        .create_token(NewToken { name, grant }, &Actor::system("system:cli"))
        .await
        .map_err(|e| e.to_string())?;
    let perms: Vec<&str> = info
        .grant
        .permissions()
        .iter()
        .map(|p| p.as_str())
        .collect();
    eprintln!(
        "minted admin token {} ({}) with {}; it is shown once:",
        info.id,
        info.name,
        perms.join(", ")
    );
    println!("{}", token.expose_secret());
    Ok(())
}

/// Mints through the Admin API, which bounds the new token by the calling
/// one. The expiry is reckoned from this machine's clock.
async fn mint_online(conn: &Connection, spec: TokenSpec) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let expire_time = spec.expires_in.map(|d| {
        let at = std::time::SystemTime::now() + d;
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        crate::grpc::wkt::Timestamp {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }
    });
    let msg = pb::CreateAdminTokenRequest {
        name: spec.name,
        permissions: spec.permissions,
        keyspaces: spec.keyspaces,
        owners: spec.owners,
        expire_time,
    };
    let r = c.inner.create_admin_token(c.req(msg)?).await;
    let r = r.map_err(|s| c.fail(s))?.into_inner();
    let out = Out::new(conn.json);
    out.secret_once(&r.secret);
    out.token(r.token.as_ref(), Some(&r.secret));
    Ok(())
}
