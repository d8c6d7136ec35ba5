//! A keyspace's scope catalogue, as the writers check it in their
//! transactions, under the change_seq lock: a key or role write built on a
//! catalogue that has narrowed since fails (`Conflict`, and the writer
//! checks again against the new one), and a catalogue narrows only while
//! every live key and every role of its keyspace stays within it. So the
//! scopes of live keys are always drawn from their keyspace's catalogue.

use sqlx::types::Json;

use super::{
    StoreError,
    db::{Tx, sql},
};
use crate::domain::{
    KeyRecord, KeyspaceId, Scope,
    keyspace::{first_undeclared, scopes_from_json},
};

/// The catalogue of keyspace `id` as committed (empty: any scope; also for
/// a keyspace that does not exist, which the prefix check refuses).
async fn catalogue(tx: &mut Tx, id: &KeyspaceId) -> Result<Vec<Scope>, StoreError> {
    let row: Option<(Json<serde_json::Value>,)> = sql("SELECT scopes FROM keyspaces WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(tx)
        .await?;
    match row {
        None => Ok(Vec::new()),
        Some((Json(v),)) => scopes_from_json(&v)
            .map_err(|_| StoreError::Corrupt(format!("scopes of keyspace {id}"))),
    }
}

/// `Conflict` when a live key among `keys` holds a scope of its own that
/// its keyspace's committed catalogue does not admit. (What roles grant is
/// checked at the role's own write.)
pub(super) async fn check_keys<'a>(
    tx: &mut Tx,
    keys: impl Iterator<Item = &'a KeyRecord>,
) -> Result<(), StoreError> {
    let mut seen: Vec<(&KeyspaceId, Vec<Scope>)> = Vec::new();
    for key in keys.filter(|k| k.revoked_at.is_none() && !k.scopes.is_empty()) {
        let i = match seen.iter().position(|(id, _)| *id == &key.keyspace_id) {
            Some(i) => i,
            None => {
                seen.push((&key.keyspace_id, catalogue(tx, &key.keyspace_id).await?));
                seen.len() - 1
            }
        };
        if first_undeclared(&seen[i].1, &key.scopes).is_some() {
            return Err(StoreError::Conflict);
        }
    }
    Ok(())
}

/// `Conflict` when `scopes`, a role's of keyspace `id`, are not all admitted
/// by the committed catalogue.
pub(super) async fn check_role(
    tx: &mut Tx,
    id: &KeyspaceId,
    scopes: &[Scope],
) -> Result<(), StoreError> {
    if first_undeclared(&catalogue(tx, id).await?, scopes).is_some() {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// What keeps catalogue `next` of keyspace `id` from being committed: the
/// first live key that holds, or role that grants, a scope it does not
/// admit, described for the caller (`None` when there is none). Reads every
/// live key of the keyspace, so it runs only when the catalogue changes.
pub(super) async fn first_outside(
    tx: &mut Tx,
    id: &KeyspaceId,
    next: &[Scope],
) -> Result<Option<String>, StoreError> {
    if next.is_empty() {
        return Ok(None);
    }
    let roles: Vec<(String, Json<serde_json::Value>)> =
        sql("SELECT name, scopes FROM roles WHERE keyspace_id = $1 ORDER BY name")
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
    for (name, Json(v)) in roles {
        let scopes = scopes_from_json(&v)
            .map_err(|_| StoreError::Corrupt(format!("scopes of role {name}")))?;
        if let Some((_, s)) = first_undeclared(next, &scopes) {
            return Ok(Some(format!("role {name} grants `{s}`")));
        }
    }
    let keys: Vec<(String, Json<serde_json::Value>)> = sql(
        "SELECT id, scopes FROM keys WHERE keyspace_id = $1 AND revoked_at IS NULL ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(tx)
    .await?;
    for (key_id, Json(v)) in keys {
        let scopes = scopes_from_json(&v)
            .map_err(|_| StoreError::Corrupt(format!("scopes of key {key_id}")))?;
        if let Some((_, s)) = first_undeclared(next, &scopes) {
            return Ok(Some(format!("key {key_id} holds `{s}`")));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use crate::{
        domain::{
            ApiKey, Environment, KeyName, KeyPrefix, KeyRecord, KeyType, Keyspace,
            KeyspaceDefaults, KeyspaceName, OwnerId, Role, RoleDescription, RoleName, Scope,
            Timestamp,
        },
        store::{
            ChangeKind, KeyspaceUpdate, NewAuditEvent, NewChange, RoleUpdate, StoreError,
            WriteBatch,
        },
    };

    fn audit() -> NewAuditEvent {
        NewAuditEvent {
            at: Timestamp::from_millis(1),
            actor: "test".into(),
            action: "keyspace.updated",
            key_id: None,
            owner_id: None,
            reason: None,
            changes: serde_json::json!({}),
            request_id: None,
        }
    }

    fn scopes(s: &[&str]) -> Vec<Scope> {
        s.iter().map(|s| Scope::parse(s).unwrap()).collect()
    }

    /// Writers that checked a catalogue which narrowed before they commit
    /// fail in their transaction: a key (insert or update), a new role and
    /// a role's new scopes. Each would otherwise leave a live scope outside
    /// the catalogue the narrowing was allowed for.
    #[tokio::test]
    async fn writes_built_on_a_wider_catalogue_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(None, dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        let t = Timestamp::from_millis(1);
        let mut ks = Keyspace {
            id: "ks_narrow".parse().unwrap(),
            name: KeyspaceName::parse("narrow").unwrap(),
            prefix: KeyPrefix::parse("narrow").ok(),
            defaults: KeyspaceDefaults::default(),
            scopes: scopes(&["a:*", "b:*"]),
            leak: Default::default(),
            legacy: vec![],
            created_at: t,
            updated_at: t,
            version: 1,
        };
        store.insert_keyspace(&ks, &audit()).await.unwrap();
        let role = Role {
            keyspace_id: ks.id.clone(),
            name: RoleName::parse("r").unwrap(),
            description: RoleDescription::parse("").unwrap(),
            scopes: scopes(&["a:read"]),
            created_at: t,
            updated_at: t,
            version: 1,
        };
        store.insert_role(&role, &audit()).await.unwrap();
        let key = ApiKey::generate_in(ks.prefix, KeyType::Secret, Environment::Live).unwrap();
        let record = KeyRecord {
            keyspace_id: ks.id.clone(),
            ..KeyRecord::new(
                &key,
                OwnerId::parse("acct_1").unwrap(),
                KeyName::parse("k").unwrap(),
                scopes(&["a:read"]),
                t,
            )
        };
        let insert = |r: &KeyRecord| WriteBatch {
            changes: vec![NewChange::of(ChangeKind::Created, r)],
            insert: Some((r.clone(), None)),
            ..WriteBatch::default()
        };
        store.write(insert(&record)).await.unwrap();

        // The catalogue narrows to a:*; b:* is gone, and nothing held it.
        ks.scopes = scopes(&["a:*"]);
        ks.version = 2;
        let narrowed = store.update_keyspace(&ks, &audit()).await.unwrap();
        assert_eq!(narrowed, KeyspaceUpdate::Updated);

        // Each writer below read the catalogue before that.
        let stale_key = KeyRecord {
            scopes: scopes(&["b:read"]),
            version: 2,
            ..record.clone()
        };
        let update = WriteBatch {
            changes: vec![NewChange::of(ChangeKind::Updated, &stale_key)],
            update: vec![stale_key.clone()],
            ..WriteBatch::default()
        };
        assert!(matches!(
            store.write(update).await,
            Err(StoreError::Conflict)
        ));
        let other = ApiKey::generate_in(ks.prefix, KeyType::Secret, Environment::Live).unwrap();
        let new_key = KeyRecord {
            keyspace_id: ks.id.clone(),
            ..KeyRecord::new(
                &other,
                OwnerId::parse("acct_1").unwrap(),
                KeyName::parse("k2").unwrap(),
                scopes(&["b:write"]),
                t,
            )
        };
        assert!(matches!(
            store.write(insert(&new_key)).await,
            Err(StoreError::Conflict)
        ));
        let new_role = Role {
            name: RoleName::parse("r2").unwrap(),
            scopes: scopes(&["b:read"]),
            ..role.clone()
        };
        let inserted = store.insert_role(&new_role, &audit()).await;
        assert!(
            matches!(inserted, Err(StoreError::Conflict)),
            "{inserted:?}"
        );
        let wider = Role {
            scopes: scopes(&["a:read", "b:read"]),
            version: 2,
            ..role.clone()
        };
        let updated = store
            .update_role(&wider, None, false, &audit())
            .await
            .unwrap();
        assert_eq!(updated, RoleUpdate::Conflict);

        // Within the catalogue, the same writes commit.
        let fine = KeyRecord {
            scopes: scopes(&["a:write"]),
            version: 2,
            ..record
        };
        let update = WriteBatch {
            changes: vec![NewChange::of(ChangeKind::Updated, &fine)],
            update: vec![fine.clone()],
            ..WriteBatch::default()
        };
        store.write(update).await.unwrap();
        assert_eq!(
            store
                .get_role(&ks.id, &role.name)
                .await
                .unwrap()
                .unwrap()
                .scopes,
            role.scopes
        );
    }
}
