//! `keysmith credits get|update` and `keysmith owner get|list|update`:
//! usage limits through the Admin API.

use clap::{Args, Subcommand};

use super::{Client, Connection, output::Out};
use crate::grpc::pb;

/// Whose balance: one of `--key` or `--owner`.
#[derive(Args, Debug)]
pub struct Whose {
    #[arg(long, conflicts_with = "owner", required_unless_present = "owner")]
    key: Option<String>,
    #[arg(long)]
    owner: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum CreditsCommand {
    /// A key's or an owner's balance.
    Get {
        #[command(flatten)]
        whose: Whose,
    },
    /// Set, increment or decrement a balance (audited).
    Update {
        #[command(flatten)]
        whose: Whose,
        #[arg(long, conflicts_with_all = ["increment", "decrement"])]
        set: Option<i64>,
        #[arg(long, conflicts_with = "decrement")]
        increment: Option<i64>,
        #[arg(long)]
        decrement: Option<i64>,
        /// The balance at which `key.credits_low` fires.
        #[arg(long)]
        low_at: Option<i64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum OwnerCommand {
    Get {
        owner: String,
    },
    List {
        #[arg(long, default_value_t = 100)]
        page_size: u32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Set an owner's metadata (replaced whole) or give it a balance its
    /// keys share.
    Update {
        owner: String,
        /// `name=value`; repeat for several.
        #[arg(long = "metadata")]
        metadata: Option<Vec<String>>,
        /// A first balance for the owner's keys to share.
        #[arg(long)]
        credits: Option<i64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn credits_json(c: &pb::Credits) -> serde_json::Value {
    serde_json::json!({
        "remaining": c.remaining,
        "held": c.held,
        "low_at": c.low_at,
        "forfeited": c.forfeited,
    })
}

fn owner_json(o: &pb::Owner) -> serde_json::Value {
    serde_json::json!({
        "owner_id": o.owner_id,
        "metadata": o.metadata,
        "limits": o.limits.iter().map(|l| &l.name).collect::<Vec<_>>(),
        "has_credits": o.has_credits,
        "version": o.version,
    })
}

fn print_owners(out: &Out, owners: &[pb::Owner], value: serde_json::Value) {
    let rows = owners
        .iter()
        .map(|o| {
            let mut meta: Vec<String> =
                o.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            meta.sort();
            vec![
                o.owner_id.clone(),
                meta.join(" "),
                o.limits.len().to_string(),
                o.has_credits.to_string(),
            ]
        })
        .collect();
    out.list(&["OWNER", "METADATA", "LIMITS", "CREDITS"], rows, value);
}

pub async fn run_credits(conn: &Connection, cmd: CreditsCommand) -> Result<(), String> {
    use pb::{get_credits_request as get, update_credits_request as upd};
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    let credits = match cmd {
        CreditsCommand::Get { whose } => {
            let subject = match (whose.key, whose.owner) {
                (Some(k), _) => get::Subject::KeyId(k),
                (None, Some(o)) => get::Subject::OwnerId(o),
                (None, None) => return Err("pass --key or --owner".into()),
            };
            let msg = pb::GetCreditsRequest {
                subject: Some(subject),
            };
            c.inner.get_credits(c.req(msg)?).await
        }
        CreditsCommand::Update {
            whose,
            set,
            increment,
            decrement,
            low_at,
            reason,
        } => {
            let subject = match (whose.key, whose.owner) {
                (Some(k), _) => upd::Subject::KeyId(k),
                (None, Some(o)) => upd::Subject::OwnerId(o),
                (None, None) => return Err("pass --key or --owner".into()),
            };
            let change = set
                .map(upd::Change::Set)
                .or(increment.map(upd::Change::Increment))
                .or(decrement.map(upd::Change::Decrement));
            let msg = pb::UpdateCreditsRequest {
                subject: Some(subject),
                change,
                low_at,
                reason,
                ..Default::default()
            };
            c.inner.update_credits(c.req(msg)?).await
        }
    };
    let credits = credits.map_err(|s| c.fail(s))?.into_inner();
    let row = vec![
        credits.remaining.to_string(),
        credits.held.to_string(),
        credits.forfeited.to_string(),
    ];
    out.list(
        &["REMAINING", "HELD", "FORFEITED"],
        vec![row],
        credits_json(&credits),
    );
    Ok(())
}

pub async fn run_owner(conn: &Connection, cmd: OwnerCommand) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    let owner = match cmd {
        OwnerCommand::Get { owner } => {
            let msg = pb::GetOwnerRequest { owner_id: owner };
            c.inner.get_owner(c.req(msg)?).await
        }
        OwnerCommand::List {
            page_size,
            page_token,
        } => {
            let msg = pb::ListOwnersRequest {
                page_size,
                page_token,
            };
            let r = c
                .inner
                .list_owners(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let value = serde_json::json!({
                "owners": r.owners.iter().map(owner_json).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            });
            print_owners(&out, &r.owners, value);
            return Ok(());
        }
        OwnerCommand::Update {
            owner,
            metadata,
            credits,
            reason,
        } => {
            let mut paths = Vec::new();
            let mut entries = std::collections::HashMap::new();
            if let Some(pairs) = metadata {
                paths.push("metadata".to_owned());
                for pair in pairs {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("--metadata {pair}: expected name=value"))?;
                    entries.insert(k.to_owned(), v.to_owned());
                }
            }
            if credits.is_some() {
                paths.push("credits".to_owned());
            }
            if paths.is_empty() {
                return Err("nothing to update: pass --metadata or --credits".into());
            }
            let msg = pb::UpdateOwnerRequest {
                owner_id: owner,
                metadata: entries,
                credits: credits.map(|n| pb::CreditSettings {
                    remaining: n,
                    ..Default::default()
                }),
                update_mask: Some(crate::grpc::wkt::FieldMask { paths }),
                reason,
                ..Default::default()
            };
            c.inner.update_owner(c.req(msg)?).await
        }
    };
    let owner = owner.map_err(|s| c.fail(s))?.into_inner();
    print_owners(&out, std::slice::from_ref(&owner), owner_json(&owner));
    Ok(())
}
