//! Roles: plain functions over [`Db`](super::db::Db), one body for both
//! backends. The keys' side (what a key write holds and saves of its roles,
//! and how key reads resolve them) is `key_roles_sql.rs`.
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

use async_trait::async_trait;
use sqlx::types::Json;

use super::{
    ChangeKind, NewAuditEvent, NewChange, StoreError,
    audit_sql::{append_audit, audit_and_commit, lock_seq},
    catalogue_sql,
    db::{CHANGE_CHANNEL, Tx, for_update, sql},
    keys_sql::append_changes,
    sql::SqlStore,
};
use crate::domain::{
    KeyHash, KeyId, KeyspaceId, OwnerId, Role, RoleDescription, RoleName, Scope, Timestamp,
    keyspace::scopes_from_json,
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
    /// The role changed since it was read (its version moved on).
    Conflict,
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
    /// Deletes the role if it is still at `version`, the one `audit`
    /// describes.
    async fn delete_role(
        &self,
        keyspace: &KeyspaceId,
        name: &RoleName,
        version: i64,
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

#[async_trait]
impl RoleStore for SqlStore {
    async fn insert_role(&self, role: &Role, audit: &NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        catalogue_sql::check_role(&mut tx, &role.keyspace_id, &role.scopes).await?;
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
        audit_and_commit(tx, audit).await
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
        match catalogue_sql::check_role(&mut tx, &next.keyspace_id, &next.scopes).await {
            Err(StoreError::Conflict) => return Ok(RoleUpdate::Conflict),
            checked => checked?,
        }
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
        version: i64,
        audit: &NewAuditEvent,
    ) -> Result<RoleDelete, StoreError> {
        let (ks, name) = (keyspace.as_str(), name.as_str());
        let mut tx = self.db.begin_write().await?;
        let lock = for_update(&tx);
        let found = sql(format!(
            "SELECT version FROM roles WHERE keyspace_id = $1 AND name = $2{lock}"
        ))
        .bind(ks)
        .bind(name)
        .fetch_optional::<(i64,)>(&mut tx)
        .await?;
        match found {
            None => return Ok(RoleDelete::NotFound),
            Some((held,)) if held != version => return Ok(RoleDelete::Conflict),
            Some(_) => {}
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
        audit_and_commit(tx, audit).await?;
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

type HolderRow = (String, Vec<u8>, String, String, Option<i64>, String, i64);

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
         RETURNING id, key_hash, owner_id, environment, expires_at, keyspace_id, version",
    )
    .bind(ks)
    .bind(name)
    .fetch_all(&mut *tx)
    .await?;
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter()
        .map(|(id, hash, owner, env, expires, keyspace, version)| {
            let bad = || corrupt_key(&id);
            Ok(NewChange {
                kind,
                key_hash: KeyHash::try_from(hash.as_slice()).map_err(|_| bad())?,
                owner_id: OwnerId::parse(&owner).map_err(|_| bad())?,
                environment: env.parse().map_err(|_| bad())?,
                keyspace_id: keyspace.parse().map_err(|_| bad())?,
                expires_at: expires.map(Timestamp::from_millis),
                key_version: version,
                key_id: id.parse().map_err(|_| bad())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyspaceId;

    /// A DeleteRole whose read of the role is older than the role is refused
    /// (`Conflict`, and read again), so its audit event never describes
    /// scopes other than those deleted.
    #[tokio::test]
    async fn a_delete_built_on_an_old_read_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(None, dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        let t = Timestamp::from_millis(1);
        let audit = NewAuditEvent {
            at: t,
            actor: "test".into(),
            action: "role.deleted",
            key_id: None,
            owner_id: None,
            reason: None,
            changes: serde_json::json!({}),
            request_id: None,
        };
        let role = Role {
            keyspace_id: KeyspaceId::default_id(),
            name: RoleName::parse("r").unwrap(),
            description: RoleDescription::parse("").unwrap(),
            scopes: vec![Scope::parse("a:read").unwrap()],
            created_at: t,
            updated_at: t,
            version: 1,
        };
        store.insert_role(&role, &audit).await.unwrap();
        let wider = Role {
            scopes: vec![Scope::parse("b:read").unwrap()],
            version: 2,
            ..role.clone()
        };
        let updated = store
            .update_role(&wider, None, false, &audit)
            .await
            .unwrap();
        assert!(matches!(updated, RoleUpdate::Updated { .. }), "{updated:?}");
        let (ks, name) = (&role.keyspace_id, &role.name);
        let stale = store.delete_role(ks, name, 1, &audit).await.unwrap();
        assert_eq!(stale, RoleDelete::Conflict);
        assert!(store.get_role(ks, name).await.unwrap().is_some());
        let fresh = store.delete_role(ks, name, 2, &audit).await.unwrap();
        assert_eq!(fresh, RoleDelete::Deleted);
        assert!(store.get_role(ks, name).await.unwrap().is_none());
    }
}
