//! The keys table: [`write`], the one way a key changes, and the reads.

use super::{
    Idempotency, KeyFilter, LiveKeys, NewChange, StoreError, WriteBatch, WriteOutcome,
    audit_sql::{append_audit, lock_seq},
    catalogue_sql,
    db::{CHANGE_CHANNEL, Db, Sql, Tx, sql},
    key_roles_sql::{hold_roles, resolve_roles, role_book, save_key_roles, stream_keys_with_roles},
    limits_sql::{keyspace_clause, owner_clause},
    rows::{KEY_COLUMNS, KeyRow, KeyValues},
};
use crate::domain::{KeyId, KeyPrefix, KeyRecord, KeyspaceId, OwnerId, Timestamp};

/// Commits `batch` in one transaction, or nothing. Its lock order is fixed:
/// the roles its keys hold ([`hold_roles`]: `Conflict` when one changed
/// since the record was built), the key rows (they may conflict), then the
/// change_seq row ([`lock_seq`]), the keyspace prefix a new key was minted
/// with and the catalogue its scopes are drawn from, the audit chain, the change log, and the NOTIFY that goes out with
/// the commit.
pub(super) async fn write(db: &Db, batch: WriteBatch) -> Result<WriteOutcome, StoreError> {
    let mut tx = db.begin_write().await?;
    if let Some((key_id, notice)) = &batch.notice {
        if !record_notice(&mut tx, key_id, notice).await? {
            return Ok(WriteOutcome::AlreadyNoticed);
        }
    }
    let inserted = batch.insert.iter().map(|(k, _)| k);
    for key in inserted.chain(&batch.update) {
        hold_roles(&mut tx, key).await?;
    }
    if let Some((key, idem)) = &batch.insert {
        match insert_key(&mut tx, key, idem.as_ref()).await {
            Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => {
                let Some(idem) = idem else {
                    return Err(StoreError::Duplicate);
                };
                // The failed insert aborted the transaction (PostgreSQL):
                // the earlier key is read outside it.
                drop(tx);
                return replayed(db, idem.request_id.as_str()).await;
            }
            inserted => inserted?,
        }
        save_key_roles(&mut tx, key, true).await?;
    }
    for key in &batch.update {
        update_key(&mut tx, key).await?;
        save_key_roles(&mut tx, key, false).await?;
    }
    for b in &batch.balances {
        super::balance_sql::insert_balance(&mut tx, b, Timestamp::now()).await?;
    }
    // Taken after the key writes, which may conflict, so the change_seq row
    // lock is held as briefly as possible.
    let n = i64::try_from(batch.changes.len()).unwrap_or(i64::MAX);
    let last = lock_seq(&mut tx, n).await?;
    if let Some(minted) = &batch.minted {
        check_minted_prefix(&mut tx, minted).await?;
    }
    let written = batch.insert.iter().map(|(k, _)| k).chain(&batch.update);
    catalogue_sql::check_keys(&mut tx, written).await?;
    append_audit(&mut tx, &batch.audit).await?;
    append_changes(&mut tx, last - n + 1, &batch.changes).await?;
    if n > 0 {
        tx.notify(CHANGE_CHANNEL, last).await?;
    }
    tx.commit().await?;
    Ok(WriteOutcome::Committed { last_seq: last })
}

/// Records that `notice` was sent about `key_id`; `false` when it was
/// already, and then the batch writes nothing.
async fn record_notice(tx: &mut Tx, key_id: &KeyId, notice: &str) -> Result<bool, StoreError> {
    let fresh = sql(
        "INSERT INTO key_notices (key_id, notice, at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_id, notice) DO NOTHING",
    )
    .bind(key_id.as_str())
    .bind(notice)
    .bind(Timestamp::now().as_millis())
    .execute(tx)
    .await?;
    Ok(fresh != 0)
}

/// The columns every key insert writes, in the order [`bind_insert`]
/// binds them.
pub(super) const INSERT_COLUMNS: &str = "id, key_hash, owner_id, name, key_type, environment, \
     scopes, metadata, hint, created_at, updated_at, expires_at, revoked_at, revoke_reason, \
     disabled_at, disable_reason, rotated_from, rotated_to, version, request_id, \
     request_fingerprint, restrictions, rotation_policy, lineage_expires_at, keyspace_id, \
     external_id, imported_at";
/// How many [`INSERT_COLUMNS`] there are.
pub(super) const INSERT_COLUMN_COUNT: usize = 27;

/// Binds `v`'s [`INSERT_COLUMNS`], in order.
pub(super) fn bind_insert(q: Sql, v: KeyValues, idem: Option<&Idempotency>) -> Sql {
    q.bind(v.id)
        .bind(v.hash)
        .bind(v.owner_id)
        .bind(v.name)
        .bind(v.key_type)
        .bind(v.environment)
        .bind(v.scopes)
        .bind(v.metadata)
        .bind(v.hint)
        .bind(v.created_at)
        .bind(v.updated_at)
        .bind(v.expires_at)
        .bind(v.revoked_at)
        .bind(v.revoke_reason)
        .bind(v.disabled_at)
        .bind(v.disable_reason)
        .bind(v.rotated_from)
        .bind(v.rotated_to)
        .bind(v.version)
        .bind(idem.map(|i| i.request_id.as_str()))
        .bind(idem.map(|i| i.fingerprint.to_vec()))
        .bind(v.restrictions)
        .bind(v.rotation_policy)
        .bind(v.lineage_expires_at)
        .bind(v.keyspace_id)
        .bind(v.external_id)
        .bind(v.imported_at)
}

/// Inserts a new key. A unique violation (its hash, or its idempotency key)
/// comes back as the database's error, for [`write`] to tell apart.
async fn insert_key(
    tx: &mut Tx,
    key: &KeyRecord,
    idem: Option<&Idempotency>,
) -> Result<(), StoreError> {
    let q = sql(format!(
        "INSERT INTO keys ({INSERT_COLUMNS}) VALUES ({})",
        super::key_roles_sql::placeholders(1, INSERT_COLUMN_COUNT)
    ));
    bind_insert(q, KeyValues::from(key), idem)
        .execute(tx)
        .await?;
    Ok(())
}

/// Writes `key`'s new version over the one before it; `Conflict` when the
/// stored version is not exactly one less (someone else wrote first).
pub(super) async fn update_key(tx: &mut Tx, key: &KeyRecord) -> Result<(), StoreError> {
    let v = KeyValues::from(key);
    let done = sql(
        "UPDATE keys SET name = $2, scopes = $3, metadata = $4, updated_at = $5, \
         expires_at = $6, revoked_at = $7, revoke_reason = $8, disabled_at = $9, \
         disable_reason = $10, rotated_to = $11, version = $12, restrictions = $13, \
         grace_idle_ms = $14, rotation_policy = $15, lineage_expires_at = $16 \
         WHERE id = $1 AND version = $12 - 1",
    )
    .bind(v.id)
    .bind(v.name)
    .bind(v.scopes)
    .bind(v.metadata)
    .bind(v.updated_at)
    .bind(v.expires_at)
    .bind(v.revoked_at)
    .bind(v.revoke_reason)
    .bind(v.disabled_at)
    .bind(v.disable_reason)
    .bind(v.rotated_to)
    .bind(v.version)
    .bind(v.restrictions)
    .bind(v.grace_idle_ms)
    .bind(v.rotation_policy)
    .bind(v.lineage_expires_at)
    .execute(tx)
    .await?;
    if done != 1 {
        return Err(StoreError::Conflict);
    }
    Ok(())
}

/// Appends `changes` to the change log as `first_seq`, `first_seq + 1`, …:
/// the numbers [`lock_seq`] reserved. Every writer of key changes (key
/// writes, role updates) appends through here.
pub(super) async fn append_changes(
    tx: &mut Tx,
    first_seq: i64,
    changes: &[NewChange],
) -> Result<(), StoreError> {
    // Many rows a statement: an import appends a thousand at once.
    const ROWS: usize = 500;
    let at = Timestamp::now().as_millis();
    let numbered: Vec<(i64, &NewChange)> = (first_seq..).zip(changes).collect();
    for chunk in numbered.chunks(ROWS) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| format!("({})", super::key_roles_sql::placeholders(r * 10 + 1, 10)))
            .collect();
        let mut q = sql(format!(
            "INSERT INTO key_changes (seq, key_id, key_hash, kind, owner_id, environment, \
             expires_at, at, keyspace_id, key_version) VALUES {}",
            rows.join(", ")
        ));
        for (seq, c) in chunk {
            q = q
                .bind(*seq)
                .bind(c.key_id.as_str())
                .bind(c.key_hash.as_bytes().as_slice())
                .bind(c.kind.as_str())
                .bind(c.owner_id.as_str())
                .bind(c.environment.as_str())
                .bind(c.expires_at.map(|t| t.as_millis()))
                .bind(at)
                .bind(c.keyspace_id.as_str())
                .bind(c.key_version);
        }
        q.execute(&mut *tx).await?;
    }
    Ok(())
}

/// The key an earlier CreateKey made under `request_id`, and its request
/// fingerprint, so the caller can tell a retry from a reuse.
async fn replayed(db: &Db, request_id: &str) -> Result<WriteOutcome, StoreError> {
    let fingerprint: Option<Option<Vec<u8>>> =
        sql("SELECT request_fingerprint FROM keys WHERE request_id = $1")
            .bind(request_id)
            .fetch_optional::<(Option<Vec<u8>>,)>(db)
            .await?
            .map(|(f,)| f);
    let row: KeyRow = sql(format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE request_id = $1"
    ))
    .bind(request_id)
    .fetch_optional(db)
    .await?
    .ok_or(StoreError::Duplicate)?;
    let mut existing = [row.try_into()?];
    resolve_roles(db, &mut existing).await?;
    let [existing] = existing;
    Ok(WriteOutcome::Replayed {
        existing: Box::new(existing),
        fingerprint: fingerprint.flatten(),
    })
}

/// Every read of a key resolves its roles, so a record carries what they
/// grant now.
pub(super) async fn get_key(db: &Db, id: &KeyId) -> Result<Option<KeyRecord>, StoreError> {
    let Some(row) = sql(format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional::<KeyRow>(db)
        .await?
    else {
        return Ok(None);
    };
    let mut key = [row.try_into()?];
    resolve_roles(db, &mut key).await?;
    let [key] = key;
    Ok(Some(key))
}

async fn resolved(db: &Db, rows: Vec<KeyRow>) -> Result<Vec<KeyRecord>, StoreError> {
    let mut keys = rows
        .into_iter()
        .map(TryInto::try_into)
        .collect::<Result<Vec<KeyRecord>, _>>()?;
    resolve_roles(db, &mut keys).await?;
    Ok(keys)
}

/// One statement for every filter and order: an absent filter binds `NULL`
/// (or `''` for the state), and the order is a factor on the last use.
pub(super) async fn list_keys(db: &Db, f: &KeyFilter) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = sql(format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE ($1 IS NULL OR owner_id = $1) \
         AND ($9 IS NULL OR keyspace_id = $9) \
         AND ($2 IS NULL OR $6 * COALESCE(last_used_at, -1) > $7 \
              OR ($6 * COALESCE(last_used_at, -1) = $7 AND id > $2)) \
         AND ($8 IS NULL OR (CASE WHEN imported_at > COALESCE(last_used_at, created_at) \
              THEN imported_at ELSE COALESCE(last_used_at, created_at) END) < $8) \
         AND ($3 = '' \
          OR ($3 = 'revoked' AND revoked_at IS NOT NULL) \
          OR ($3 = 'disabled' AND revoked_at IS NULL AND disabled_at IS NOT NULL) \
          OR ($3 = 'expired' AND revoked_at IS NULL AND disabled_at IS NULL \
              AND expires_at <= $4) \
          OR ($3 = 'active' AND revoked_at IS NULL AND disabled_at IS NULL \
              AND (expires_at IS NULL OR expires_at > $4))){owners}{keyspaces} \
         ORDER BY $6 * COALESCE(last_used_at, -1), id LIMIT $5",
        owners = owner_clause(10, f.owners.as_deref(), false),
        keyspaces = keyspace_clause(
            10 + f.owners.as_ref().map_or(0, Vec::len),
            f.keyspaces.as_deref(),
            "keyspace_id",
        ),
    ))
    .bind(f.owner_id.as_ref().map(|o| o.as_str()))
    .bind(f.after.as_ref().map(|(_, id)| id.as_str()))
    .bind(f.state.map_or("", |s| s.as_str()))
    .bind(f.now.as_millis())
    .bind(i64::from(f.limit))
    .bind(f.order.factor())
    .bind(f.after.as_ref().map_or(0, |(k, _)| *k))
    .bind(f.unused_before.map(|t| t.as_millis()))
    .bind(f.keyspace_id.as_ref().map(|k| k.as_str()))
    .bind_all(f.owners.iter().flatten().map(OwnerId::as_str))
    .bind_all(f.keyspaces.iter().flatten().map(String::as_str))
    .fetch_all::<KeyRow>(db)
    .await?;
    resolved(db, rows).await
}

/// Streams every key to `sink` from one snapshot transaction; the change-log
/// sequence the keys reflect.
pub(super) async fn snapshot(
    db: &Db,
    sink: &mut (dyn FnMut(KeyRecord) + Send),
) -> Result<i64, StoreError> {
    let mut tx = db.begin_snapshot().await?;
    let seq: i64 = sql("SELECT last FROM change_seq WHERE id = 1")
        .fetch_scalar(&mut tx)
        .await?;
    match role_book(&mut tx).await? {
        // Keys with roles come joined to them, from the same snapshot.
        Some(book) => stream_keys_with_roles(&mut tx, &book, sink).await?,
        None => {
            sql(format!("SELECT {KEY_COLUMNS} FROM keys"))
                .for_each(&mut tx, |row: KeyRow| {
                    sink(row.try_into()?);
                    Ok(())
                })
                .await?
        }
    }
    tx.commit().await?;
    Ok(seq)
}

pub(super) async fn live_keys(db: &Db, which: LiveKeys) -> Result<Vec<KeyRecord>, StoreError> {
    let (filter, by) = match which {
        LiveKeys::All => ("", None),
        LiveKeys::InIdleGrace => (
            " AND grace_idle_ms IS NOT NULL AND rotated_to IS NOT NULL",
            None,
        ),
        LiveKeys::ExpiringBy(t) => (" AND expires_at <= $1", Some(t.as_millis())),
        LiveKeys::WithRotationPolicy => (" AND rotation_policy IS NOT NULL", None),
    };
    let mut q = sql(format!(
        "SELECT {KEY_COLUMNS} FROM keys WHERE revoked_at IS NULL{filter} ORDER BY id"
    ));
    if let Some(t) = by {
        q = q.bind(t);
    }
    let rows = q.fetch_all::<KeyRow>(db).await?;
    resolved(db, rows).await
}

/// Refuses, with `Conflict`, a new key minted with a prefix its keyspace no
/// longer has (or in a keyspace that does not exist). Called by the key
/// write under the change_seq lock, which an UpdateKeyspace takes before it
/// looks for keys: so a prefix change and a key minted with the old prefix
/// never both commit.
pub(super) async fn check_minted_prefix(tx: &mut Tx, m: &MintedPrefix) -> Result<(), StoreError> {
    let held: Option<(String,)> = sql("SELECT prefix FROM keyspaces WHERE id = $1")
        .bind(m.keyspace_id.as_str())
        .fetch_optional(tx)
        .await?;
    match held {
        Some((prefix,)) if prefix == m.prefix => Ok(()),
        _ => Err(StoreError::Conflict),
    }
}

/// The keyspace and prefix an inserted key was minted with. The key write
/// checks, in its transaction and under its change_seq lock, that the
/// keyspace still has that prefix (until the keyspace holds a key,
/// UpdateKeyspace may change it), and fails with `Conflict` if not, so the
/// writer mints again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedPrefix {
    pub keyspace_id: KeyspaceId,
    /// Empty for a bare key.
    pub prefix: String,
}

impl MintedPrefix {
    pub fn new(keyspace_id: &KeyspaceId, prefix: Option<&KeyPrefix>) -> Self {
        Self {
            keyspace_id: keyspace_id.clone(),
            prefix: prefix.map_or_else(String::new, |p| p.as_str().to_owned()),
        }
    }
}
