//! Roles, and the keys that hold them: plain functions over
//! [`Db`](super::db::Db), one body for both backends.
//!
//! A role's change reaches every key holding it in its own transaction:
//! UpdateRole bumps each live holder's `version` and appends one change-log
//! row per holder, so every replica's feed re-reads those keys (resolving
//! their roles afresh) and streams show the change. The cost is one row per
//! holder; holders are capped ([`MAX_ROLE_HOLDERS`]) where a key takes a
//! role.
//!
//! Lock order, the same for every writer that touches roles: the role rows
//! first (UpdateRole's UPDATE, DeleteRole's and a key write's `FOR UPDATE` /
//! `FOR SHARE` on PostgreSQL; SQLite's one writer holds the whole database),
//! then key rows, then the change_seq row ([`lock_seq`]).
//!
//! [`MAX_ROLE_HOLDERS`]: crate::domain::role::MAX_ROLE_HOLDERS

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::types::Json;

use super::{
    ChangeKind, NewAuditEvent, NewChange, StoreError,
    audit_sql::{append_audit, lock_seq},
    db::{On, Tx, sql},
    keys_sql::append_changes,
    postgres::CHANGE_CHANNEL,
    sql::SqlStore,
};
use crate::domain::{
    KeyHash, KeyId, KeyRecord, KeyspaceId, OwnerId, Role, RoleDescription, RoleName, Scope,
    Timestamp, keyspace::scopes_from_json, role::union_scopes,
};

/// How an UpdateRole ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleUpdate {
    /// Written; `keys` live holders changed with it, the last of their
    /// change-log rows at `last_seq`.
    Updated { keys: i64, last_seq: Option<i64> },
    /// The role changed since it was read, or is gone.
    Conflict,
    /// The new scopes are not all `…:read`, and this live publishable key
    /// holds the role.
    HeldByPublishable(KeyId),
}

/// How a DeleteRole ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleDelete {
    Deleted,
    NotFound,
    /// `keys` live keys hold the role, `example` among them.
    Held {
        keys: i64,
        example: KeyId,
    },
}

/// Every mutation commits its audit event in its transaction, under the
/// change_seq lock, as `PolicyStore`'s do.
#[async_trait]
pub trait RoleStore: Send + Sync {
    /// `Duplicate` when the keyspace has a role of that name.
    async fn insert_role(&self, role: &Role, audit: &NewAuditEvent) -> Result<(), StoreError>;
    async fn get_role(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
    ) -> Result<Option<Role>, StoreError>;
    /// A keyspace's roles by name, after `after`, at most `limit`.
    async fn list_roles(
        &self,
        keyspace: &KeyspaceId,
        after: Option<&RoleName>,
        limit: u32,
    ) -> Result<Vec<Role>, StoreError>;
    /// Writes `next`, whose `version` must be one more than the stored one.
    /// With `holders: Some(kind)` (its scopes changed), every live key
    /// holding it gets a new version and a change-log row of `kind`; with
    /// `no_publishable`, a live publishable holder refuses the update.
    async fn update_role(
        &self,
        next: &Role,
        holders: Option<ChangeKind>,
        no_publishable: bool,
        audit: &NewAuditEvent,
    ) -> Result<RoleUpdate, StoreError>;
    /// Refused while a live key holds it; revoked holders let go of it.
    async fn delete_role(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
        audit: &NewAuditEvent,
    ) -> Result<RoleDelete, StoreError>;
    /// How many live keys hold the role.
    async fn count_holders(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
    ) -> Result<i64, StoreError>;
}

type RoleRow = (
    String,
    String,
    String,
    Json<serde_json::Value>,
    i64,
    i64,
    i64,
);

const COLUMNS: &str = "keyspace_id, name, description, scopes, created_at, updated_at, version";

fn from_row(
    (keyspace, name, description, scopes, created, updated, version): RoleRow,
) -> Result<Role, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("{what} of role {keyspace}/{name}"));
    Ok(Role {
        keyspace_id: keyspace.parse().map_err(|_| bad("keyspace"))?,
        name: RoleName::parse(&name).map_err(|_| bad("name"))?,
        description: RoleDescription::parse(&description).map_err(|_| bad("description"))?,
        scopes: scopes_from_json(&scopes.0).map_err(|_| bad("scopes"))?,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
        version,
    })
}

fn scopes_json(scopes: &[Scope]) -> serde_json::Value {
    scopes.iter().map(Scope::as_str).collect()
}

/// `FOR SHARE` / `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose
/// writer already holds the database.
fn locking(tx: &Tx, clause: &'static str) -> &'static str {
    match tx {
        Tx::Postgres(_) => clause,
        Tx::Sqlite(_) => "",
    }
}

/// `$first, $first + 1, …` for `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl RoleStore for SqlStore {
    async fn insert_role(&self, role: &Role, audit: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        sql(format!(
            "INSERT INTO roles ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(role.keyspace_id.as_str())
        .bind(role.name.as_str())
        .bind(role.description.as_str())
        .bind(scopes_json(&role.scopes))
        .bind(role.created_at.as_millis())
        .bind(role.updated_at.as_millis())
        .bind(role.version)
        .execute(&mut tx)
        .await
        .map_err(|e| match e {
            StoreError::Database(ref db) if StoreError::is_unique_violation(db) => {
                StoreError::Duplicate
            }
            e => e,
        })?;
        append_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    async fn get_role(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
    ) -> Result<Option<Role>, StoreError> {
        sql(format!(
            "SELECT {COLUMNS} FROM roles WHERE keyspace_id = $1 AND name = $2"
        ))
        .bind(keyspace.as_str())
        .bind(name.as_str())
        .fetch_optional::<RoleRow>(&self.db)
        .await?
        .map(from_row)
        .transpose()
    }

    async fn list_roles(
        &self,
        keyspace: &KeyspaceId,
        after: Option<&RoleName>,
        limit: u32,
    ) -> Result<Vec<Role>, StoreError> {
        sql(format!(
            "SELECT {COLUMNS} FROM roles WHERE keyspace_id = $1 AND ($2 IS NULL OR name > $2) \
             ORDER BY name LIMIT $3"
        ))
        .bind(keyspace.as_str())
        .bind(after.map(RoleName::as_str))
        .bind(i64::from(limit))
        .fetch_all::<RoleRow>(&self.db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
    }

    async fn update_role(
        &self,
        next: &Role,
        holders: Option<ChangeKind>,
        no_publishable: bool,
        audit: &NewAuditEvent,
    ) -> Result<RoleUpdate, StoreError> {
        let (ks, name) = (next.keyspace_id.as_str(), next.name.as_str());
        let mut tx = self.db.begin_write().await?;
        // First the role row: a key write that holds it waits on this lock.
        let written = sql(
            "UPDATE roles SET description = $3, scopes = $4, updated_at = $5, version = $6 \
             WHERE keyspace_id = $1 AND name = $2 AND version = $6 - 1",
        )
        .bind(ks)
        .bind(name)
        .bind(next.description.as_str())
        .bind(scopes_json(&next.scopes))
        .bind(next.updated_at.as_millis())
        .bind(next.version)
        .execute(&mut tx)
        .await?;
        if written != 1 {
            return Ok(RoleUpdate::Conflict);
        }
        let mut changes = Vec::new();
        if let Some(kind) = holders {
            if no_publishable
                && let Some((id,)) = sql(
                    "SELECT k.id FROM keys k JOIN key_roles kr ON kr.key_id = k.id \
                     WHERE kr.keyspace_id = $1 AND kr.role_name = $2 AND k.revoked_at IS NULL \
                     AND k.key_type = 'publishable' ORDER BY k.id LIMIT 1",
                )
                .bind(ks)
                .bind(name)
                .fetch_optional::<(String,)>(&mut tx)
                .await?
            {
                let id = id.parse().map_err(|_| corrupt_key(&id))?;
                return Ok(RoleUpdate::HeldByPublishable(id));
            }
            changes = bump_holders(&mut tx, ks, name, kind).await?;
        }
        let n = i64::try_from(changes.len()).unwrap_or(i64::MAX);
        let last = lock_seq(&mut tx, n).await?;
        append_audit(&mut tx, std::slice::from_ref(audit)).await?;
        append_changes(&mut tx, last - n + 1, &changes).await?;
        if n > 0 {
            tx.notify(CHANGE_CHANNEL, last).await?;
        }
        tx.commit().await?;
        Ok(RoleUpdate::Updated {
            keys: n,
            last_seq: (n > 0).then_some(last),
        })
    }

    async fn delete_role(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
        audit: &NewAuditEvent,
    ) -> Result<RoleDelete, StoreError> {
        let (ks, name) = (keyspace.as_str(), name.as_str());
        let mut tx = self.db.begin_write().await?;
        let lock = locking(&tx, " FOR UPDATE");
        let found = sql(format!(
            "SELECT version FROM roles WHERE keyspace_id = $1 AND name = $2{lock}"
        ))
        .bind(ks)
        .bind(name)
        .fetch_optional::<(i64,)>(&mut tx)
        .await?;
        if found.is_none() {
            return Ok(RoleDelete::NotFound);
        }
        let (keys, example): (i64, Option<String>) = sql(
            "SELECT COUNT(*), MIN(k.id) FROM key_roles kr JOIN keys k ON k.id = kr.key_id \
             WHERE kr.keyspace_id = $1 AND kr.role_name = $2 AND k.revoked_at IS NULL",
        )
        .bind(ks)
        .bind(name)
        .fetch_one(&mut tx)
        .await?;
        if let (true, Some(id)) = (keys > 0, example) {
            let example = id.parse().map_err(|_| corrupt_key(&id))?;
            return Ok(RoleDelete::Held { keys, example });
        }
        // Only revoked keys are left: revocation is final, so what they
        // held no longer matters to any decision.
        sql("DELETE FROM key_roles WHERE keyspace_id = $1 AND role_name = $2")
            .bind(ks)
            .bind(name)
            .execute(&mut tx)
            .await?;
        sql("DELETE FROM roles WHERE keyspace_id = $1 AND name = $2")
            .bind(ks)
            .bind(name)
            .execute(&mut tx)
            .await?;
        lock_seq(&mut tx, 0).await?;
        append_audit(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(RoleDelete::Deleted)
    }

    async fn count_holders(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
    ) -> Result<i64, StoreError> {
        sql(
            "SELECT COUNT(*) FROM key_roles kr JOIN keys k ON k.id = kr.key_id \
             WHERE kr.keyspace_id = $1 AND kr.role_name = $2 AND k.revoked_at IS NULL",
        )
        .bind(keyspace.as_str())
        .bind(name.as_str())
        .fetch_scalar(&self.db)
        .await
    }
}

fn corrupt_key(id: &str) -> StoreError {
    StoreError::Corrupt(format!("id of key {id}"))
}

type HolderRow = (String, Vec<u8>, String, String, Option<i64>, String);

/// Gives every live holder of the role a new version, and returns their
/// change-log rows of `kind`, by key id.
async fn bump_holders(
    tx: &mut Tx,
    ks: &str,
    name: &str,
    kind: ChangeKind,
) -> Result<Vec<NewChange>, StoreError> {
    let mut rows: Vec<HolderRow> = sql(
        "UPDATE keys SET version = version + 1 WHERE revoked_at IS NULL AND id IN \
         (SELECT key_id FROM key_roles WHERE keyspace_id = $1 AND role_name = $2) \
         RETURNING id, key_hash, owner_id, environment, expires_at, keyspace_id",
    )
    .bind(ks)
    .bind(name)
    .fetch_all(&mut *tx)
    .await?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter()
        .map(|(id, hash, owner, env, expires, keyspace)| {
            let bad = || corrupt_key(&id);
            Ok(NewChange {
                kind,
                key_hash: KeyHash::try_from(hash.as_slice()).map_err(|_| bad())?,
                owner_id: OwnerId::parse(&owner).map_err(|_| bad())?,
                environment: env.parse().map_err(|_| bad())?,
                keyspace_id: keyspace.parse().map_err(|_| bad())?,
                expires_at: expires.map(Timestamp::from_millis),
                key_id: id.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The keys' side: what a key write and a key read do about roles.
// ---------------------------------------------------------------------------

/// Checks, in a key write's transaction and before its key rows, that the
/// roles `key` holds exist and grant what `key.role_scopes` was built from,
/// and holds them (PostgreSQL: `FOR SHARE`) until the commit, so no
/// UpdateRole or DeleteRole slips between this check and the key's commit.
/// `Conflict` otherwise: the caller reads the roles again.
pub(super) async fn hold_roles(tx: &mut Tx, key: &KeyRecord) -> Result<(), StoreError> {
    if key.roles.is_empty() {
        return Ok(());
    }
    let lock = locking(tx, " FOR SHARE");
    let mut q = sql(format!(
        "SELECT name, scopes FROM roles WHERE keyspace_id = $1 AND name IN ({}) \
         ORDER BY name{lock}",
        placeholders(2, key.roles.len())
    ))
    .bind(key.keyspace_id.as_str());
    for r in &key.roles {
        q = q.bind(r.as_str());
    }
    let rows: Vec<(String, Json<serde_json::Value>)> = q.fetch_all(&mut *tx).await?;
    let names_match = rows.len() == key.roles.len()
        && rows
            .iter()
            .zip(&key.roles)
            .all(|((n, _), r)| n == r.as_str());
    if !names_match {
        return Err(StoreError::Conflict);
    }
    let mut granted = Vec::new();
    for (name, scopes) in rows {
        granted.extend(scopes_from_json(&scopes.0).map_err(|_| {
            StoreError::Corrupt(format!("scopes of role {}/{name}", key.keyspace_id))
        })?);
    }
    if union_scopes(&granted) != key.role_scopes {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// Makes `key_roles` say what `key.roles` says: after the key's row is
/// written. `fresh` for a key just inserted, which holds no rows yet.
pub(super) async fn save_key_roles(
    tx: &mut Tx,
    key: &KeyRecord,
    fresh: bool,
) -> Result<(), StoreError> {
    if !fresh {
        sql("DELETE FROM key_roles WHERE key_id = $1")
            .bind(key.id.as_str())
            .execute(&mut *tx)
            .await?;
    }
    for r in &key.roles {
        sql("INSERT INTO key_roles (key_id, keyspace_id, role_name) VALUES ($1, $2, $3)")
            .bind(key.id.as_str())
            .bind(key.keyspace_id.as_str())
            .bind(r.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// The roles keys hold, with each role's scopes: key id → (name, scopes)
/// by role name.
pub(super) type Holdings = HashMap<String, Vec<(String, Json<serde_json::Value>)>>;

type HoldingRow = (String, String, Json<serde_json::Value>);

const HOLDINGS: &str = "SELECT kr.key_id, kr.role_name, r.scopes FROM key_roles kr \
     JOIN roles r ON r.keyspace_id = kr.keyspace_id AND r.name = kr.role_name";

fn collect(rows: Vec<HoldingRow>, into: &mut Holdings) {
    for (key, role, scopes) in rows {
        into.entry(key).or_default().push((role, scopes));
    }
}

/// Every key's roles, read in `tx` (a snapshot): one query for the whole
/// set, however many keys the snapshot streams.
pub(super) async fn all_holdings(tx: &mut Tx) -> Result<Holdings, StoreError> {
    let rows = sql(format!("{HOLDINGS} ORDER BY kr.key_id, kr.role_name"))
        .fetch_all(tx)
        .await?;
    let mut out = Holdings::new();
    collect(rows, &mut out);
    Ok(out)
}

/// How many keys one resolving query names.
const RESOLVE_CHUNK: usize = 500;

/// Fills `roles` and `role_scopes` of `keys` from the store: what every key
/// read does, so a key's record always carries its roles' current scopes.
pub(super) async fn resolve_roles<'a>(
    on: impl Into<On<'a>>,
    keys: &mut [KeyRecord],
) -> Result<(), StoreError> {
    let mut on = on.into();
    let mut held = Holdings::new();
    for chunk in keys.chunks(RESOLVE_CHUNK) {
        let mut q = sql(format!(
            "{HOLDINGS} WHERE kr.key_id IN ({}) ORDER BY kr.key_id, kr.role_name",
            placeholders(1, chunk.len())
        ));
        for k in chunk {
            q = q.bind(k.id.as_str());
        }
        let on = match &mut on {
            On::Pool(db) => On::Pool(db),
            On::Tx(tx) => On::Tx(tx),
        };
        collect(q.fetch_all(on).await?, &mut held);
    }
    for key in keys {
        apply_holdings(key, &mut held)?;
    }
    Ok(())
}

/// Sets `key`'s roles from `held` (taking its entry).
pub(super) fn apply_holdings(key: &mut KeyRecord, held: &mut Holdings) -> Result<(), StoreError> {
    let Some(roles) = held.remove(key.id.as_str()) else {
        return Ok(());
    };
    let bad = |what: &str| StoreError::Corrupt(format!("{what} of key {}", key.id));
    let mut names = Vec::with_capacity(roles.len());
    let mut granted = Vec::new();
    for (name, scopes) in roles {
        names.push(RoleName::parse(&name).map_err(|_| bad("roles"))?);
        granted.extend(scopes_from_json(&scopes.0).map_err(|_| bad("role scopes"))?);
    }
    key.roles = names;
    key.role_scopes = union_scopes(&granted);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_count_from_the_first() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 1), "$1");
    }
}
