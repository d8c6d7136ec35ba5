//! Roles: create, get, list, update, delete, and what a key's roles grant.
//! Each change is audited with the acting token in the transaction that
//! makes it. An update reaches every key holding the role in that same
//! transaction (see `store/role_sql.rs`).

use serde_json::json;

use super::{Actor, CONFLICT_RETRIES, Keys, Page, RoleQuery, diff};
use crate::{
    domain::{
        KeyType, Keyspace, KeyspaceId, Role, RoleDescription, RoleName, Scope,
        role::{MAX_ROLE_HOLDERS, union_scopes},
    },
    error::{Error, Result},
    store::{ChangeKind, RoleDelete, RoleUpdate, StoreError},
};

/// A parsed CreateRole request.
#[derive(Clone, Debug)]
pub struct NewRole {
    pub keyspace_id: KeyspaceId,
    pub name: RoleName,
    pub description: RoleDescription,
    pub scopes: Vec<Scope>,
}

/// UpdateRole's changes; `None` leaves a field alone.
#[derive(Clone, Debug, Default)]
pub struct RolePatch {
    pub description: Option<RoleDescription>,
    pub scopes: Option<Vec<Scope>>,
}

/// The outcome of UpdateRole: the role, how many live keys changed with
/// it, and the change-log sequence of the last of their changes.
#[derive(Clone, Debug)]
pub struct RoleUpdated {
    pub role: Role,
    pub keys_changed: i64,
    pub cursor: Option<i64>,
}

fn scope_strs(scopes: &[Scope]) -> Vec<&str> {
    scopes.iter().map(Scope::as_str).collect()
}

/// Refuses scopes outside the keyspace's catalogue, naming the first.
fn declared(ks: &Keyspace, field: &str, scopes: &[Scope]) -> Result<()> {
    match ks.first_undeclared(scopes) {
        None => Ok(()),
        Some((i, _)) => Err(Error::invalid(
            format!("{field}[{i}]"),
            format!("is not in the scope catalogue of keyspace {}", ks.id),
        )),
    }
}

fn not_found(ks: &KeyspaceId, name: &RoleName) -> Error {
    Error::NotFound(format!("role {name} in keyspace {ks}"))
}

impl Keys {
    pub async fn create_role(&self, new: NewRole, actor: &Actor) -> Result<Role> {
        let ks = self
            .named_keyspace("role.keyspace", &new.keyspace_id)
            .await?;
        declared(&ks, "role.scopes", &new.scopes)?;
        let now = self.now();
        let role = Role {
            keyspace_id: new.keyspace_id,
            name: new.name,
            description: new.description,
            scopes: new.scopes,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let changes = json!({
            "keyspace_id": role.keyspace_id.as_str(),
            "name": role.name.as_str(),
            "description": role.description.as_str(),
            "scopes": scope_strs(&role.scopes),
        });
        let audit = actor.event(now, "role.created", changes);
        match self.store.insert_role(&role, &audit).await {
            Ok(()) => Ok(role),
            // The catalogue narrowed since it was read: say so against it.
            Err(StoreError::Conflict) => {
                let ks = self
                    .named_keyspace("role.keyspace", &role.keyspace_id)
                    .await?;
                declared(&ks, "role.scopes", &role.scopes)?;
                Err(Error::Unavailable("the keyspace is changing; retry"))
            }
            Err(StoreError::Duplicate) => Err(Error::AlreadyExists(format!(
                "role.name: keyspace {} already has a role {}",
                role.keyspace_id, role.name
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_role(&self, ks: &KeyspaceId, name: &RoleName) -> Result<Role> {
        self.store
            .get_role(ks, name)
            .await?
            .ok_or_else(|| not_found(ks, name))
    }

    /// A keyspace's roles by name. A keyspace that does not exist has none:
    /// NOT_FOUND, so a typo is not mistaken for an empty list.
    pub async fn list_roles(&self, query: RoleQuery) -> Result<Page<Role>> {
        let after = query.after(&self.page_tokens)?;
        let ks = &query.keyspace_id;
        self.named_keyspace("keyspace", ks).await?;
        let rows = self
            .store
            .list_roles(ks, after.as_ref(), query.page_size + 1)
            .await?;
        Ok(Page::from_overfetch(rows, query.page_size, |r| {
            query.token_after(&self.page_tokens, &r.name)
        }))
    }

    pub async fn update_role(
        &self,
        ks: &KeyspaceId,
        name: &RoleName,
        patch: RolePatch,
        actor: &Actor,
    ) -> Result<RoleUpdated> {
        // Subscribed before the write, so the feed's apply of it is seen.
        let applied = self.feed.subscribe();
        for _ in 0..CONFLICT_RETRIES {
            // Read again on a conflict: the catalogue may have narrowed.
            let keyspace = self.named_keyspace("role.keyspace", ks).await?;
            if let Some(scopes) = &patch.scopes {
                declared(&keyspace, "role.scopes", scopes)?;
            }
            let old = self.get_role(ks, name).await?;
            let now = self.now();
            let mut next = old.clone();
            let mut changes = serde_json::Map::new();
            changes.insert("keyspace_id".into(), json!(ks.as_str()));
            changes.insert("name".into(), json!(name.as_str()));
            if let Some(d) = &patch.description
                && *d != old.description
            {
                changes.insert(
                    "description".into(),
                    diff(old.description.as_str(), d.as_str()),
                );
                next.description = d.clone();
            }
            let mut holders = None;
            if let Some(scopes) = &patch.scopes
                && *scopes != old.scopes
            {
                let d = diff(scope_strs(&old.scopes), scope_strs(scopes));
                changes.insert("scopes".into(), d);
                next.scopes = scopes.clone();
                // Where the role lost a scope, every holder may grant less.
                holders = Some(match old.narrows_to(&next) {
                    true => ChangeKind::ScopesNarrowed,
                    false => ChangeKind::Updated,
                });
            }
            if changes.len() == 2 {
                return Ok(RoleUpdated {
                    role: old,
                    keys_changed: 0,
                    cursor: None,
                });
            }
            next.version = old.version + 1;
            next.updated_at = now;
            // Publishable keys may only hold `…:read` scopes, through roles too.
            let no_publishable = next.scopes.iter().any(|s| !s.as_str().ends_with(":read"));
            let audit = actor.event(now, "role.updated", changes);
            match self
                .store
                .update_role(&next, holders, no_publishable, &audit)
                .await?
            {
                RoleUpdate::Updated { keys, last_seq } => {
                    // Streams, and this replica's index, follow through the
                    // feed, which re-reads every key the update changed;
                    // the answer waits for this replica's index to have them.
                    self.feed.wake();
                    if let Some(seq) = last_seq {
                        self.applied_through(applied, seq).await;
                    }
                    return Ok(RoleUpdated {
                        role: next,
                        keys_changed: keys,
                        cursor: last_seq,
                    });
                }
                RoleUpdate::Conflict => continue,
                RoleUpdate::HeldByPublishable(key) => {
                    return Err(Error::FailedPrecondition(format!(
                        "role.scopes: publishable key {key} holds this role, and publishable keys \
                         may only hold `…:read` scopes"
                    )));
                }
            }
        }
        Err(Error::Unavailable("the role is changing too often; retry"))
    }

    pub async fn delete_role(&self, ks: &KeyspaceId, name: &RoleName, actor: &Actor) -> Result<()> {
        for _ in 0..CONFLICT_RETRIES {
            // The audit event says what was deleted: the store deletes the
            // role only at the version read here.
            let role = self.get_role(ks, name).await?;
            let changes = json!({
                "keyspace_id": ks.as_str(),
                "name": name.as_str(),
                "scopes": diff(scope_strs(&role.scopes), None::<()>),
            });
            let audit = actor.event(self.now(), "role.deleted", changes);
            match self
                .store
                .delete_role(ks, name, role.version, &audit)
                .await?
            {
                RoleDelete::Deleted => return Ok(()),
                RoleDelete::Conflict => continue,
                RoleDelete::NotFound => return Err(not_found(ks, name)),
                RoleDelete::Held { keys, example } => {
                    return Err(Error::FailedPrecondition(format!(
                        "role {name} is held by {keys} live key(s), {example} among them: take \
                         it from them first"
                    )));
                }
            }
        }
        Err(Error::Unavailable("the role is changing too often; retry"))
    }

    /// What `roles` grant in keyspace `ks`, for a key of type `key_type`:
    /// the roles, sorted, and the union of their scopes. A missing role is
    /// an INVALID_ARGUMENT naming `field[i]`; `added` (the roles the key did
    /// not hold before) must each have room for one more holder.
    pub(super) async fn resolve_roles(
        &self,
        field: &str,
        ks: &KeyspaceId,
        roles: &[RoleName],
        added: impl Fn(&RoleName) -> bool,
    ) -> Result<(Vec<RoleName>, Vec<Scope>)> {
        let mut found: Vec<Role> = Vec::with_capacity(roles.len());
        for (i, name) in roles.iter().enumerate() {
            let Some(role) = self.store.get_role(ks, name).await? else {
                return Err(Error::invalid(
                    format!("{field}[{i}]"),
                    format!("keyspace {ks} has no role {name}"),
                ));
            };
            if added(name) && self.store.count_holders(ks, name).await? >= MAX_ROLE_HOLDERS {
                return Err(Error::FailedPrecondition(format!(
                    "{field}[{i}]: role {name} is held by {MAX_ROLE_HOLDERS} live keys, the most \
                     one role may have"
                )));
            }
            found.push(role);
        }
        found.sort_by(|a, b| a.name.cmp(&b.name));
        let scopes = union_scopes(found.iter().flat_map(|r| &r.scopes));
        Ok((found.into_iter().map(|r| r.name).collect(), scopes))
    }
}

/// Whether a key of `key_type` may hold what its roles grant: publishable
/// keys only `…:read` scopes, whatever they come from.
pub(super) fn roles_fit(field: &str, key_type: KeyType, role_scopes: &[Scope]) -> Result<()> {
    match key_type {
        KeyType::Publishable if role_scopes.iter().any(|s| !s.as_str().ends_with(":read")) => {
            Err(Error::invalid(
                field,
                "publishable keys may only hold `…:read` scopes, through roles too",
            ))
        }
        _ => Ok(()),
    }
}
