//! Roles: requests to domain types, and back.

use super::{keyspace::keyspace_id, pb, to_timestamp, update_paths};
use crate::{
    domain::{
        KeyspaceId, MAX_SCOPES, Role, RoleDescription, RoleName, Scope,
        role::{MAX_KEY_ROLES, MAX_ROLE_SCOPES},
    },
    error::{Error, Result},
    keys::{self, NewRole, Page, RolePatch, RoleQuery, RoleUpdated},
};

fn role_name(field: &str, s: &str) -> Result<RoleName> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    RoleName::parse(s).map_err(|e| Error::invalid(field, e))
}

fn description(field: &str, s: &str) -> Result<RoleDescription> {
    RoleDescription::parse(s).map_err(|e| Error::invalid(field, e))
}

/// A role's scopes: at most [`MAX_ROLE_SCOPES`], none repeated.
fn role_scopes(field: &str, raw: Vec<String>) -> Result<Vec<Scope>> {
    const _: () = assert!(MAX_ROLE_SCOPES <= MAX_SCOPES);
    super::scopes(field, raw)
}

/// The roles a key asks for, by name: at most [`MAX_KEY_ROLES`], none
/// repeated, in the request's order (so errors name the entry asked for).
pub(super) fn role_names(field: &str, raw: Vec<String>) -> Result<Vec<RoleName>> {
    if raw.len() > MAX_KEY_ROLES {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_KEY_ROLES} roles"),
        ));
    }
    let mut out: Vec<RoleName> = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let name = role_name(&format!("{field}[{i}]"), s)?;
        if out.contains(&name) {
            return Err(Error::invalid(format!("{field}[{i}]"), "is a duplicate"));
        }
        out.push(name);
    }
    Ok(out)
}

pub fn to_role(r: &Role) -> pb::Role {
    pb::Role {
        keyspace: r.keyspace_id.to_string(),
        name: r.name.to_string(),
        description: r.description.as_str().to_owned(),
        scopes: r.scopes.iter().map(ToString::to_string).collect(),
        create_time: Some(to_timestamp(r.created_at)),
        update_time: Some(to_timestamp(r.updated_at)),
        version: r.version,
    }
}

pub fn create_role(req: pb::CreateRoleRequest) -> Result<NewRole> {
    let pb::CreateRoleRequest { role } = req;
    let pb::Role {
        keyspace,
        name,
        description: text,
        scopes,
        // Output only.
        create_time: _,
        update_time: _,
        version: _,
    } = role.ok_or_else(|| Error::invalid("role", "is required"))?;
    Ok(NewRole {
        keyspace_id: keyspace_id("role.keyspace", &keyspace)?,
        name: role_name("role.name", &name)?,
        description: description("role.description", &text)?,
        scopes: role_scopes("role.scopes", scopes)?,
    })
}

/// The keyspace and name of a GetRole or DeleteRole.
pub fn role_ref(keyspace: &str, name: &str) -> Result<(KeyspaceId, RoleName)> {
    Ok((keyspace_id("keyspace", keyspace)?, role_name("name", name)?))
}

/// The `update_mask` paths UpdateRole accepts.
const UPDATABLE: [&str; 2] = ["scopes", "description"];

pub fn role_patch(req: pb::UpdateRoleRequest) -> Result<(KeyspaceId, RoleName, RolePatch)> {
    let pb::UpdateRoleRequest { role, update_mask } = req;
    let pb::Role {
        keyspace,
        name,
        description: text,
        scopes,
        ..
    } = role.ok_or_else(|| Error::invalid("role", "is required"))?;
    let ks = keyspace_id("role.keyspace", &keyspace)?;
    let name = role_name("role.name", &name)?;
    let paths = update_paths(update_mask, &UPDATABLE)?;
    let named = |p: &str| paths.iter().any(|x| x == p);
    let patch = RolePatch {
        description: named("description")
            .then(|| description("role.description", &text))
            .transpose()?,
        scopes: named("scopes")
            .then(|| role_scopes("role.scopes", scopes))
            .transpose()?,
    };
    Ok((ks, name, patch))
}

pub fn list_roles(req: pb::ListRolesRequest) -> Result<RoleQuery> {
    let pb::ListRolesRequest {
        keyspace,
        page_size,
        page_token,
    } = req;
    Ok(RoleQuery {
        keyspace_id: keyspace_id("keyspace", &keyspace)?,
        page_size: keys::page_size(page_size)?,
        page_token,
    })
}

pub fn roles_page(page: Page<Role>) -> pb::ListRolesResponse {
    pb::ListRolesResponse {
        roles: page.items.iter().map(to_role).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}

pub fn role_updated(u: &RoleUpdated) -> pb::UpdateRoleResponse {
    pb::UpdateRoleResponse {
        role: Some(to_role(&u.role)),
        keys_changed: u.keys_changed,
        cursor: u.cursor.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roles_are_capped_and_named_per_entry() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let got = role_names("roles", names(&["b-role", "a-role"])).unwrap();
        assert_eq!(
            got.iter().map(RoleName::as_str).collect::<Vec<_>>(),
            ["b-role", "a-role"]
        );
        let err = |v: &[&str]| match role_names("roles", names(v)) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(&["a", "Bad"]), "roles[1]");
        assert_eq!(err(&["a", "a"]), "roles[1]");
        assert_eq!(err(&["a"; MAX_KEY_ROLES + 1]), "roles");
    }
}
