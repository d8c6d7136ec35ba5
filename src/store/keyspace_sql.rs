//! Keyspaces: plain functions over [`Db`](super::db::Db), one body for both
//! backends, as [`SqlStore`]'s `KeyspaceStore`. Each mutation takes the change_seq lock first and commits its
//! audit event in its transaction, as `PolicyStore`'s do.

use async_trait::async_trait;
use sqlx::types::Json;

use super::{
    NewAuditEvent, StoreError,
    audit_sql::{audit_and_commit, lock_seq},
    catalogue_sql,
    db::{CHANGE_CHANNEL, Tx, sql},
    limits_sql::keyspace_clause,
    sql::SqlStore,
};
use crate::domain::{
    KeyPrefix, Keyspace, KeyspaceDefaults, KeyspaceId, KeyspaceName, Timestamp,
    keyspace::scopes_from_json, leak::LeakResponse, legacy::LegacyFormat,
};

/// How an UpdateKeyspace ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyspaceUpdate {
    Updated,
    /// The keyspace changed since it was read (its version moved on).
    Conflict,
    /// The update changes the prefix of a keyspace that holds keys.
    PrefixFinal,
    /// The new catalogue leaves out a scope that a live key holds or a role
    /// grants: which, described.
    Undeclared(String),
}

#[async_trait]
pub trait KeyspaceStore: Send + Sync {
    /// `Duplicate` when the id or the prefix is taken.
    async fn insert_keyspace(&self, ks: &Keyspace, audit: &NewAuditEvent)
    -> Result<(), StoreError>;
    /// Writes `ks`, whose `version` must be one more than the stored one.
    /// A prefix change is refused once a key is in the keyspace, judged under
    /// the change_seq lock that every key write takes. `Duplicate` when the
    /// new prefix is taken.
    async fn update_keyspace(
        &self,
        ks: &Keyspace,
        audit: &NewAuditEvent,
    ) -> Result<KeyspaceUpdate, StoreError>;
    async fn get_keyspace(&self, id: &KeyspaceId) -> Result<Option<Keyspace>, StoreError>;
    /// The keyspace whose keys carry `prefix` (`None`: the default
    /// keyspace's bare keys).
    async fn keyspace_by_prefix(
        &self,
        prefix: Option<&KeyPrefix>,
    ) -> Result<Option<Keyspace>, StoreError>;
    /// Every keyspace that declares legacy formats, and the keyspaces'
    /// generation: the sum of their versions, which every create and update
    /// moves (keyspaces are never deleted).
    async fn legacy_keyspaces(&self) -> Result<(i64, Vec<Keyspace>), StoreError>;
    /// The generation alone: one cheap row, read on every feed catch-up.
    async fn keyspaces_generation(&self) -> Result<i64, StoreError>;
    /// Keyspaces by id, after `after`, at most `limit`; with `within` (a
    /// caller's keyspace limit), only those.
    async fn list_keyspaces(
        &self,
        after: Option<&KeyspaceId>,
        limit: u32,
        within: Option<&[String]>,
    ) -> Result<Vec<Keyspace>, StoreError>;
}

type KeyspaceRow = (
    String,
    String,
    String,
    Json<serde_json::Value>,
    Json<serde_json::Value>,
    Json<serde_json::Value>,
    Json<serde_json::Value>,
    i64,
    i64,
    i64,
);

const COLUMNS: &str = "id, name, prefix, defaults, scopes, leak_response, legacy_formats, created_at, updated_at, \
     version";

fn from_row(
    (id, name, prefix, defaults, scopes, leak, legacy, created, updated, version): KeyspaceRow,
) -> Result<Keyspace, StoreError> {
    let bad = |what: &str| StoreError::Corrupt(format!("{what} of keyspace {id}"));
    Ok(Keyspace {
        name: KeyspaceName::parse(&name).map_err(|_| bad("name"))?,
        prefix: match prefix.as_str() {
            "" => None,
            p => Some(KeyPrefix::parse(p).map_err(|_| bad("prefix"))?),
        },
        defaults: KeyspaceDefaults::from_json(&defaults.0).map_err(|_| bad("defaults"))?,
        scopes: scopes_from_json(&scopes.0).map_err(|_| bad("scopes"))?,
        leak: LeakResponse::from_json(&leak.0).map_err(|_| bad("leak response"))?,
        legacy: formats_from_json(&legacy.0).ok_or_else(|| bad("legacy formats"))?,
        created_at: Timestamp::from_millis(created),
        updated_at: Timestamp::from_millis(updated),
        version,
        id: id.parse().map_err(|_| bad("id"))?,
    })
}

fn formats_from_json(v: &serde_json::Value) -> Option<Vec<LegacyFormat>> {
    v.as_array()?
        .iter()
        .map(|f| LegacyFormat::from_json(f).ok())
        .collect()
}

fn formats_json(ks: &Keyspace) -> serde_json::Value {
    ks.legacy.iter().map(LegacyFormat::to_json).collect()
}

fn prefix_text(ks: &Keyspace) -> &str {
    ks.prefix.as_ref().map_or("", KeyPrefix::as_str)
}

fn catalogue(ks: &Keyspace) -> serde_json::Value {
    ks.scopes.iter().map(|s| s.as_str()).collect()
}

fn duplicate_or(e: StoreError) -> StoreError {
    match e {
        StoreError::Database(ref db) if StoreError::is_unique_violation(db) => {
            StoreError::Duplicate
        }
        e => e,
    }
}

/// Whether `id` holds any key, read in `tx`.
async fn holds_keys(tx: &mut Tx, id: &KeyspaceId) -> Result<bool, StoreError> {
    let n: i64 = sql("SELECT COUNT(*) FROM (SELECT 1 FROM keys WHERE keyspace_id = $1 LIMIT 1) k")
        .bind(id.as_str())
        .fetch_scalar(tx)
        .await?;
    Ok(n > 0)
}

#[async_trait]
impl KeyspaceStore for SqlStore {
    async fn insert_keyspace(
        &self,
        ks: &Keyspace,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        let seq = lock_seq(&mut tx, 0).await?;
        sql(
            "INSERT INTO keyspaces (id, name, prefix, defaults, scopes, leak_response, \
             legacy_formats, created_at, updated_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(ks.id.as_str())
        .bind(ks.name.as_str())
        .bind(prefix_text(ks))
        .bind(ks.defaults.to_json())
        .bind(catalogue(ks))
        .bind(ks.leak.to_json())
        .bind(formats_json(ks))
        .bind(ks.created_at.as_millis())
        .bind(ks.updated_at.as_millis())
        .bind(ks.version)
        .execute(&mut tx)
        .await
        .map_err(duplicate_or)?;
        if !ks.legacy.is_empty() {
            // A wake-up: other replicas' feeds reload the formats.
            tx.notify(CHANGE_CHANNEL, seq).await?;
        }
        audit_and_commit(tx, audit).await
    }

    async fn update_keyspace(
        &self,
        ks: &Keyspace,
        audit: &NewAuditEvent,
    ) -> Result<KeyspaceUpdate, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let seq = lock_seq(&mut tx, 0).await?;
        let held: Option<(String, Json<serde_json::Value>, Json<serde_json::Value>)> =
            sql("SELECT prefix, scopes, legacy_formats FROM keyspaces WHERE id = $1")
                .bind(ks.id.as_str())
                .fetch_optional(&mut tx)
                .await?;
        let Some((held, Json(held_scopes), Json(held_formats))) = held else {
            return Ok(KeyspaceUpdate::Conflict);
        };
        if held != prefix_text(ks) && holds_keys(&mut tx, &ks.id).await? {
            return Ok(KeyspaceUpdate::PrefixFinal);
        }
        // A changed catalogue must still admit what live keys and roles
        // hold: under the change_seq lock, which their writers take too.
        if held_scopes != catalogue(ks)
            && let Some(what) = catalogue_sql::first_outside(&mut tx, &ks.id, &ks.scopes).await?
        {
            return Ok(KeyspaceUpdate::Undeclared(what));
        }
        let updated = sql(
            "UPDATE keyspaces SET name = $2, prefix = $3, defaults = $4, scopes = $5, \
             leak_response = $6, legacy_formats = $9, updated_at = $7, version = $8 \
             WHERE id = $1 AND version = $8 - 1",
        )
        .bind(ks.id.as_str())
        .bind(ks.name.as_str())
        .bind(prefix_text(ks))
        .bind(ks.defaults.to_json())
        .bind(catalogue(ks))
        .bind(ks.leak.to_json())
        .bind(ks.updated_at.as_millis())
        .bind(ks.version)
        .bind(formats_json(ks))
        .execute(&mut tx)
        .await
        .map_err(duplicate_or)?;
        if updated != 1 {
            return Ok(KeyspaceUpdate::Conflict);
        }
        if held_formats != formats_json(ks) {
            // A wake-up: other replicas' feeds reload the formats.
            tx.notify(CHANGE_CHANNEL, seq).await?;
        }
        audit_and_commit(tx, audit).await?;
        Ok(KeyspaceUpdate::Updated)
    }

    async fn get_keyspace(&self, id: &KeyspaceId) -> Result<Option<Keyspace>, StoreError> {
        sql(format!("SELECT {COLUMNS} FROM keyspaces WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional::<KeyspaceRow>(&self.db)
            .await?
            .map(from_row)
            .transpose()
    }

    async fn keyspace_by_prefix(
        &self,
        prefix: Option<&KeyPrefix>,
    ) -> Result<Option<Keyspace>, StoreError> {
        sql(format!("SELECT {COLUMNS} FROM keyspaces WHERE prefix = $1"))
            .bind(prefix.map_or("", KeyPrefix::as_str))
            .fetch_optional::<KeyspaceRow>(&self.db)
            .await?
            .map(from_row)
            .transpose()
    }

    async fn list_keyspaces(
        &self,
        after: Option<&KeyspaceId>,
        limit: u32,
        within: Option<&[String]>,
    ) -> Result<Vec<Keyspace>, StoreError> {
        sql(format!(
            "SELECT {COLUMNS} FROM keyspaces WHERE ($1 IS NULL OR id > $1){within} \
             ORDER BY id LIMIT $2",
            within = keyspace_clause(3, within, "id"),
        ))
        .bind(after.map(KeyspaceId::as_str))
        .bind(i64::from(limit))
        .bind_all(within.into_iter().flatten().map(String::as_str))
        .fetch_all::<KeyspaceRow>(&self.db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
    }

    async fn legacy_keyspaces(&self) -> Result<(i64, Vec<Keyspace>), StoreError> {
        let mut tx = self.db.begin_snapshot().await?;
        let generation = generation(&mut tx).await?;
        let keyspaces = sql(format!(
            "SELECT {COLUMNS} FROM keyspaces WHERE legacy_formats <> '[]' ORDER BY id"
        ))
        .fetch_all::<KeyspaceRow>(&mut tx)
        .await?
        .into_iter()
        .map(from_row)
        .collect::<Result<_, _>>()?;
        Ok((generation, keyspaces))
    }

    async fn keyspaces_generation(&self) -> Result<i64, StoreError> {
        sql(GENERATION).fetch_scalar(&self.db).await
    }
}

const GENERATION: &str = "SELECT CAST(COALESCE(SUM(version), 0) AS BIGINT) FROM keyspaces";

async fn generation(tx: &mut Tx) -> Result<i64, StoreError> {
    sql(GENERATION).fetch_scalar(tx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{ApiKey, Environment, KeyName, KeyRecord, KeyType, OwnerId},
        store::{ChangeKind, MintedPrefix, NewChange, WriteBatch, WriteOutcome},
    };

    fn audit() -> NewAuditEvent {
        NewAuditEvent {
            at: Timestamp::from_millis(1),
            actor: "test".into(),
            action: "keyspace.created",
            key_id: None,
            owner_id: None,
            reason: None,
            changes: serde_json::json!({}),
            request_id: None,
        }
    }

    fn batch(ks: &Keyspace, minted_with: &str) -> WriteBatch {
        let prefix = KeyPrefix::parse(minted_with).ok();
        let key = ApiKey::generate_in(prefix, KeyType::Secret, Environment::Live).unwrap();
        let record = KeyRecord {
            keyspace_id: ks.id.clone(),
            ..KeyRecord::new(
                &key,
                OwnerId::parse("acct_1").unwrap(),
                KeyName::parse("k").unwrap(),
                vec![],
                Timestamp::from_millis(1),
            )
        };
        WriteBatch {
            changes: vec![NewChange::of(ChangeKind::Created, &record)],
            minted: Some(MintedPrefix::new(&ks.id, prefix.as_ref())),
            insert: Some((record, None)),
            ..WriteBatch::default()
        }
    }

    /// A key minted with a prefix its keyspace no longer has is refused in
    /// the write, and the prefix is final once a key is in: whichever of a
    /// CreateKey and an UpdateKeyspace commits first, the other fails.
    #[tokio::test]
    async fn a_prefix_change_and_a_key_of_the_old_prefix_never_both_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(None, dir.path()).await.unwrap();
        store.migrate().await.unwrap();
        let mut ks = Keyspace {
            id: "ks_race".parse().unwrap(),
            name: KeyspaceName::parse("race").unwrap(),
            prefix: KeyPrefix::parse("old").ok(),
            defaults: KeyspaceDefaults::default(),
            scopes: vec![],
            leak: Default::default(),
            legacy: vec![],
            created_at: Timestamp::from_millis(1),
            updated_at: Timestamp::from_millis(1),
            version: 1,
        };
        store.insert_keyspace(&ks, &audit()).await.unwrap();
        // The prefix changes after a CreateKey read it and before it commits.
        ks.prefix = KeyPrefix::parse("new").ok();
        ks.version = 2;
        let updated = store.update_keyspace(&ks, &audit()).await.unwrap();
        assert_eq!(updated, KeyspaceUpdate::Updated);
        let stale = store.write(batch(&ks, "old")).await;
        assert!(matches!(stale, Err(StoreError::Conflict)), "{stale:?}");
        let fresh = store.write(batch(&ks, "new")).await.unwrap();
        assert!(matches!(fresh, WriteOutcome::Committed { .. }));
        // Now the keyspace holds a key: its prefix is final.
        ks.prefix = KeyPrefix::parse("newer").ok();
        ks.version = 3;
        let refused = store.update_keyspace(&ks, &audit()).await.unwrap();
        assert_eq!(refused, KeyspaceUpdate::PrefixFinal);
        let held = store.get_keyspace(&ks.id).await.unwrap().unwrap();
        assert_eq!(held.prefix, KeyPrefix::parse("new").ok());
        assert_eq!(held.version, 2);
    }
}
