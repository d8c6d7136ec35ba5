//! The keys' side of roles: what a key write holds and saves of the roles
//! its key holds, and how key reads resolve them (one key, a page, or the
//! snapshot's stream), so a record always carries what its roles grant now.
//! Plain functions over [`Db`] and [`Tx`], called by `keys_sql.rs`.

use std::collections::HashMap;

use sqlx::types::Json;

use super::{
    StoreError,
    db::{Db, Tx, sql},
    rows::{KEY_COLUMNS, KeyRow},
};
use crate::domain::{KeyRecord, RoleName, Scope, keyspace::scopes_from_json, role::union_scopes};

/// `FOR SHARE` on PostgreSQL; nothing on SQLite, whose writer already
/// holds the database.
fn for_share(tx: &Tx) -> &'static str {
    match tx {
        Tx::Postgres(_) => " FOR SHARE",
        Tx::Sqlite(_) => "",
    }
}

/// `$first, $first + 1, …` for `n` values.
pub(super) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks, in a key write's transaction and before its key rows, that the
/// roles `key` holds exist and grant what `key.role_scopes` was built from,
/// and holds them (PostgreSQL: `FOR SHARE`) until the commit, so no
/// UpdateRole or DeleteRole slips between this check and the key's commit.
/// `Conflict` otherwise: the caller reads the roles again.
pub(super) async fn hold_roles(tx: &mut Tx, key: &KeyRecord) -> Result<(), StoreError> {
    if key.roles.is_empty() {
        return Ok(());
    }
    let lock = for_share(tx);
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
type Holdings = HashMap<String, Vec<(String, Json<serde_json::Value>)>>;

type HoldingRow = (String, String, Json<serde_json::Value>);

const HOLDINGS: &str = "SELECT kr.key_id, kr.role_name, r.scopes FROM key_roles kr \
     JOIN roles r ON r.keyspace_id = kr.keyspace_id AND r.name = kr.role_name";

fn collect(rows: Vec<HoldingRow>, into: &mut Holdings) {
    for (key, role, scopes) in rows {
        into.entry(key).or_default().push((role, scopes));
    }
}

/// Every role's scopes, as a snapshot reads them before it streams keys.
pub(super) struct RoleBook(HashMap<(String, String), Vec<Scope>>);

/// The role book of the snapshot `tx`; `None` when no key holds a role, so
/// the snapshot streams the keys alone, as it did before roles.
pub(super) async fn role_book(tx: &mut Tx) -> Result<Option<RoleBook>, StoreError> {
    let held: i64 = sql("SELECT COUNT(*) FROM (SELECT 1 FROM key_roles LIMIT 1) h")
        .fetch_scalar(&mut *tx)
        .await?;
    if held == 0 {
        return Ok(None);
    }
    let rows: Vec<(String, String, Json<serde_json::Value>)> =
        sql("SELECT keyspace_id, name, scopes FROM roles")
            .fetch_all(&mut *tx)
            .await?;
    let mut book = HashMap::with_capacity(rows.len());
    for (ks, name, scopes) in rows {
        let scopes = scopes_from_json(&scopes.0)
            .map_err(|_| StoreError::Corrupt(format!("scopes of role {ks}/{name}")))?;
        book.insert((ks, name), scopes);
    }
    Ok(Some(RoleBook(book)))
}

/// A key's row with one role it holds (none: `NULL`), as the snapshot's
/// join returns it: a key holding three roles comes as three rows in a row.
#[derive(sqlx::FromRow)]
struct HeldKeyRow {
    #[sqlx(flatten)]
    key: KeyRow,
    role_name: Option<String>,
}

/// Streams every key, with its roles from `book`, to `sink`: one pass over
/// keys joined with their roles, in key order, so memory holds one key at
/// a time whatever the number of keys or roles.
pub(super) async fn stream_keys_with_roles(
    tx: &mut Tx,
    book: &RoleBook,
    sink: &mut (dyn FnMut(KeyRecord) + Send),
) -> Result<(), StoreError> {
    let columns: Vec<String> = KEY_COLUMNS
        .split(',')
        .map(|c| format!("k.{}", c.trim()))
        .collect();
    let mut pending: Option<(KeyRecord, Vec<String>)> = None;
    let mut flush = |held: Option<(KeyRecord, Vec<String>)>| -> Result<(), StoreError> {
        if let Some((mut key, names)) = held {
            book.grant(&mut key, names)?;
            sink(key);
        }
        Ok(())
    };
    sql(format!(
        "SELECT {}, kr.role_name FROM keys k LEFT JOIN key_roles kr ON kr.key_id = k.id \
         ORDER BY k.id, kr.role_name",
        columns.join(", ")
    ))
    .for_each(&mut *tx, |row: HeldKeyRow| {
        let key: KeyRecord = row.key.try_into()?;
        match &mut pending {
            Some((held, names)) if held.id == key.id => names.extend(row.role_name),
            _ => flush(pending.replace((key, row.role_name.into_iter().collect())))?,
        }
        Ok(())
    })
    .await?;
    flush(pending.take())
}

impl RoleBook {
    /// Gives `key` the roles `names` (in name order) and what they grant.
    fn grant(&self, key: &mut KeyRecord, names: Vec<String>) -> Result<(), StoreError> {
        let bad = |what: &str| StoreError::Corrupt(format!("{what} of key {}", key.id));
        let mut granted = Vec::new();
        let mut roles = Vec::with_capacity(names.len());
        for name in names {
            let scopes = self
                .0
                .get(&(key.keyspace_id.as_str().to_owned(), name.clone()))
                .ok_or_else(|| bad("roles"))?;
            granted.extend(scopes.iter().cloned());
            roles.push(RoleName::parse(&name).map_err(|_| bad("roles"))?);
        }
        key.roles = roles;
        key.role_scopes = union_scopes(&granted);
        Ok(())
    }
}

/// How many keys one resolving query names.
const RESOLVE_CHUNK: usize = 500;

/// Fills `roles` and `role_scopes` of `keys` from the store: what every key
/// read does, so a key's record always carries its roles' current scopes.
pub(super) async fn resolve_roles(db: &Db, keys: &mut [KeyRecord]) -> Result<(), StoreError> {
    let mut held = Holdings::new();
    for chunk in keys.chunks(RESOLVE_CHUNK) {
        let mut q = sql(format!(
            "{HOLDINGS} WHERE kr.key_id IN ({}) ORDER BY kr.key_id, kr.role_name",
            placeholders(1, chunk.len())
        ))
        .unprepared();
        for k in chunk {
            q = q.bind(k.id.as_str());
        }
        collect(q.fetch_all(db).await?, &mut held);
    }
    for key in keys {
        apply_holdings(key, &mut held)?;
    }
    Ok(())
}

/// Sets `key`'s roles from `held` (taking its entry).
fn apply_holdings(key: &mut KeyRecord, held: &mut Holdings) -> Result<(), StoreError> {
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
