//! ImportKeys' writes: many keys in one transaction, inserted many rows a
//! statement, with one audit event and a change-log row each, under the
//! same locks and checks as [`keys_sql::write`](super::keys_sql).

use super::{
    NewAuditEvent, NewChange, StoreError,
    audit_sql::{append_audit, lock_seq},
    catalogue_sql,
    db::{CHANGE_CHANNEL, Db, Tx, sql},
    key_roles_sql::{hold_roles, placeholders, save_key_roles},
    keys_sql::{INSERT_COLUMN_COUNT, INSERT_COLUMNS, append_changes, bind_insert, update_key},
    rows::{KEY_COLUMNS, KeyRow, KeyValues},
};
use crate::domain::{KeyHash, KeyId, KeyRecord};

/// One ImportKeys batch.
#[derive(Debug, Default)]
pub struct ImportBatch {
    pub insert: Vec<KeyRecord>,
    /// Overwrites; each record's `version` one more than the stored one.
    pub update: Vec<KeyRecord>,
    pub audit: Option<NewAuditEvent>,
    pub changes: Vec<NewChange>,
}

/// Rows a multi-row INSERT carries: 28 values each stays well within both
/// backends' parameter limits.
const ROWS_PER_INSERT: usize = 500;

/// The keys among `hashes` or `ids` already stored, with their roles.
pub(super) async fn keys_by_hash_or_id(
    db: &Db,
    hashes: &[KeyHash],
    ids: &[KeyId],
) -> Result<Vec<KeyRecord>, StoreError> {
    let mut rows: Vec<KeyRow> = Vec::new();
    for chunk in hashes.chunks(ROWS_PER_INSERT) {
        let found = sql(format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE key_hash IN ({})",
            placeholders(1, chunk.len())
        ))
        .unprepared()
        .bind_all(chunk.iter().map(|h| h.as_bytes().to_vec()))
        .fetch_all(db)
        .await?;
        rows.extend(found);
    }
    let mut found: Vec<KeyRecord> = rows
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<_, _>>()?;
    let known: std::collections::HashSet<KeyId> = found.iter().map(|k| k.id.clone()).collect();
    let by_id = keys_by_id(db, ids).await?;
    found.extend(by_id.into_iter().filter(|k| !known.contains(&k.id)));
    super::key_roles_sql::resolve_roles(db, &mut found).await?;
    Ok(found)
}

/// The stored keys among `ids`, without their roles resolved: many a
/// statement.
async fn keys_by_id(db: &Db, ids: &[KeyId]) -> Result<Vec<KeyRecord>, StoreError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let rows: Vec<KeyRow> = sql(format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE id IN ({})",
            placeholders(1, chunk.len())
        ))
        .unprepared()
        .bind_all(chunk.iter().map(KeyId::as_str))
        .fetch_all(db)
        .await?;
        for row in rows {
            found.push(row.try_into()?);
        }
    }
    Ok(found)
}

/// The stored keys among `ids`, with their roles: what the change feed
/// re-reads for a batch of changes, in a few statements.
pub(super) async fn get_keys(db: &Db, ids: &[KeyId]) -> Result<Vec<KeyRecord>, StoreError> {
    let mut found = keys_by_id(db, ids).await?;
    super::key_roles_sql::resolve_roles(db, &mut found).await?;
    Ok(found)
}

/// Commits the batch whole, or nothing: `Duplicate` when a hash or id was
/// taken meanwhile, `Conflict` when an overwritten key moved on.
pub(super) async fn import(db: &Db, batch: ImportBatch) -> Result<i64, StoreError> {
    let mut tx = db.begin_write().await?;
    for key in batch.insert.iter().chain(&batch.update) {
        if !key.roles.is_empty() {
            hold_roles(&mut tx, key).await?;
        }
    }
    for chunk in batch.insert.chunks(ROWS_PER_INSERT) {
        insert_keys(&mut tx, chunk).await.map_err(|e| match e {
            StoreError::Database(db) if StoreError::is_unique_violation(&db) => {
                StoreError::Duplicate
            }
            e => e,
        })?;
    }
    for key in batch.insert.iter().filter(|k| !k.roles.is_empty()) {
        save_key_roles(&mut tx, key, true).await?;
    }
    for key in &batch.update {
        update_key(&mut tx, key).await?;
        save_key_roles(&mut tx, key, false).await?;
    }
    let n = i64::try_from(batch.changes.len()).unwrap_or(i64::MAX);
    let last = lock_seq(&mut tx, n).await?;
    catalogue_sql::check_keys(&mut tx, batch.insert.iter().chain(&batch.update)).await?;
    append_audit(&mut tx, batch.audit.as_slice()).await?;
    append_changes(&mut tx, last - n + 1, &batch.changes).await?;
    if n > 0 {
        tx.notify(CHANGE_CHANNEL, last).await?;
    }
    tx.commit().await?;
    Ok(last)
}

/// Inserts `keys` in one statement, with their last use and grace.
async fn insert_keys(tx: &mut Tx, keys: &[KeyRecord]) -> Result<(), StoreError> {
    const COLUMNS: usize = INSERT_COLUMN_COUNT + 2;
    let rows: Vec<String> = (0..keys.len())
        .map(|r| format!("({})", placeholders(r * COLUMNS + 1, COLUMNS)))
        .collect();
    let mut q = sql(format!(
        "INSERT INTO keys ({INSERT_COLUMNS}, last_used_at, grace_idle_ms) VALUES {}",
        rows.join(", ")
    ));
    for k in keys {
        let v = KeyValues::from(k);
        let grace = v.grace_idle_ms;
        q = bind_insert(q, v, None)
            .bind(k.last_used_at.map(|t| t.as_millis()))
            .bind(grace);
    }
    q.execute(tx).await?;
    Ok(())
}
