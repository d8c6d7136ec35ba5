//! `keysmith role create|get|list|update|delete`: a keyspace's roles.

use clap::Subcommand;

use super::{Client, Connection, output::Out};
use crate::grpc::pb;

#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Create a role: a named set of scopes that keys of the keyspace hold.
    Create {
        /// The keyspace's id, e.g. `ks_default`.
        keyspace: String,
        /// 1 to 64 of a-z, 0-9 and `-`.
        name: String,
        /// Repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    Get {
        keyspace: String,
        name: String,
    },
    /// A keyspace's roles, by name.
    List {
        keyspace: String,
        #[arg(long, default_value_t = 50)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
    },
    /// Change a role's scopes (every key holding it changes with it) or
    /// its description.
    Update {
        keyspace: String,
        name: String,
        /// Replaces all scopes; repeat for several.
        #[arg(long = "scope")]
        scopes: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a role no live key holds.
    Delete {
        keyspace: String,
        name: String,
    },
}

fn json(r: &pb::Role) -> serde_json::Value {
    serde_json::json!({
        "keyspace": r.keyspace,
        "name": r.name,
        "description": r.description,
        "scopes": r.scopes,
    })
}

fn print(out: &Out, roles: &[pb::Role], json_value: serde_json::Value) {
    let rows = roles
        .iter()
        .map(|r| {
            vec![
                r.keyspace.clone(),
                r.name.clone(),
                r.scopes.join(" "),
                r.description.clone(),
            ]
        })
        .collect();
    out.list(
        &["KEYSPACE", "NAME", "SCOPES", "DESCRIPTION"],
        rows,
        json_value,
    );
}

pub async fn run_role(conn: &Connection, cmd: RoleCommand) -> Result<(), String> {
    let mut c = Client::connect(conn).await?;
    let out = Out::new(conn.json);
    let role = match cmd {
        RoleCommand::Create {
            keyspace,
            name,
            scopes,
            description,
        } => {
            let role = pb::Role {
                keyspace,
                name,
                scopes,
                description,
                ..Default::default()
            };
            let msg = pb::CreateRoleRequest { role: Some(role) };
            c.inner.create_role(c.req(msg)?).await
        }
        RoleCommand::Get { keyspace, name } => {
            c.inner
                .get_role(c.req(pb::GetRoleRequest { keyspace, name })?)
                .await
        }
        RoleCommand::List {
            keyspace,
            page_size,
            page_token,
        } => {
            let msg = pb::ListRolesRequest {
                keyspace,
                page_size,
                page_token,
            };
            let r = c
                .inner
                .list_roles(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let value = serde_json::json!({
                "roles": r.roles.iter().map(json).collect::<Vec<_>>(),
                "next_page_token": r.next_page_token,
            });
            print(&out, &r.roles, value);
            return Ok(());
        }
        RoleCommand::Update {
            keyspace,
            name,
            scopes,
            description,
        } => {
            let mut paths = Vec::new();
            if scopes.is_some() {
                paths.push("scopes".to_owned());
            }
            if description.is_some() {
                paths.push("description".to_owned());
            }
            if paths.is_empty() {
                return Err("nothing to update: pass --scope or --description".into());
            }
            let msg = pb::UpdateRoleRequest {
                role: Some(pb::Role {
                    keyspace,
                    name,
                    scopes: scopes.unwrap_or_default(),
                    description: description.unwrap_or_default(),
                    ..Default::default()
                }),
                update_mask: Some(crate::grpc::wkt::FieldMask { paths }),
            };
            let r = c
                .inner
                .update_role(c.req(msg)?)
                .await
                .map_err(|s| c.fail(s))?
                .into_inner();
            let role = r.role.unwrap_or_default();
            let mut value = json(&role);
            value["keys_changed"] = r.keys_changed.into();
            value["cursor"] = r.cursor.into();
            print(&out, std::slice::from_ref(&role), value);
            if !conn.json {
                println!("keys changed: {}", r.keys_changed);
            }
            return Ok(());
        }
        RoleCommand::Delete { keyspace, name } => {
            c.inner
                .delete_role(c.req(pb::DeleteRoleRequest { keyspace, name })?)
                .await
                .map_err(|s| c.fail(s))?;
            if !conn.json {
                println!("deleted");
            }
            return Ok(());
        }
    };
    let role = role.map_err(|s| c.fail(s))?.into_inner();
    print(&out, std::slice::from_ref(&role), json(&role));
    Ok(())
}
