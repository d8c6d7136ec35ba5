//! Admin tokens as stored: their grant (permissions, limits, expiry), who
//! minted them, their last use, and revocation. Every call the admin API
//! makes here writes its audit event in the same transaction; a revocation
//! also wakes the other replicas (PostgreSQL's NOTIFY on
//! [`TOKEN_CHANNEL`]), which reload their token set at once.

use async_trait::async_trait;
use sqlx::types::Json;

use super::{
    NewAuditEvent, StoreError,
    audit_sql::{append_audit, audit_and_commit, lock_seq},
    db::{Tx, sql},
    sql::SqlStore,
};
use crate::domain::{
    KeyName, Permission, PermissionSet, Reason, Timestamp, TokenGrant, TokenLimits,
    admin_token::{AdminTokenRecord, TokenId},
};

/// The channel a token revocation NOTIFYs, and every replica's token
/// refresher LISTENs on. Only a wake-up: the table is the truth, and the
/// periodic reload stays as the backstop.
pub const TOKEN_CHANNEL: &str = "keysmith_tokens";

/// Which tokens a listing or a lookup may find.
#[derive(Clone, Debug)]
pub struct TokenFilter {
    /// `None`: every token. Otherwise only this token and the tokens it
    /// minted (a limited token manages its own).
    pub visible_to: Option<String>,
    /// Keyset pagination by id (ids are ULIDs, so by creation).
    pub after: Option<TokenId>,
    pub limit: u32,
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    /// Stores a new token, by the SHA-256 of its secret, with its audit event.
    async fn insert_token(
        &self,
        token: &AdminTokenRecord,
        hash: &[u8; 32],
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// Every token not revoked, by SHA-256: the set admin authentication
    /// holds in memory. Expired ones are included; expiry is judged at use,
    /// by the clock. A row that does not parse is left out (and logged):
    /// it can authenticate nothing, and the others keep working.
    async fn active_tokens(&self) -> Result<Vec<([u8; 32], AdminTokenRecord)>, StoreError>;
    /// One token, if `visible_to` may see it, and the read's audit event.
    async fn read_token(
        &self,
        id: &TokenId,
        visible_to: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<Option<AdminTokenRecord>, StoreError>;
    /// A page of tokens, revoked ones included, by id; and the listing's
    /// audit event.
    async fn list_tokens(
        &self,
        filter: &TokenFilter,
        audit: &NewAuditEvent,
    ) -> Result<Vec<AdminTokenRecord>, StoreError>;
    /// Revokes token `id` if `visible_to` may see it and, with
    /// `include_minted`, every live token minted from it, directly or
    /// through others, each audited as `revoked` is, naming its own id; when
    /// nothing changes, audited with `unchanged`. The token as it is now and
    /// how many minted ones were revoked with it, or `None` when it cannot
    /// be found.
    async fn revoke_token(
        &self,
        id: &TokenId,
        visible_to: Option<&str>,
        include_minted: bool,
        reason: &Reason,
        revoked: &NewAuditEvent,
        unchanged: &NewAuditEvent,
    ) -> Result<Option<(AdminTokenRecord, i64)>, StoreError>;
    /// Moves each token's last use forward (never back), in one transaction.
    async fn record_token_uses(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), StoreError>;
}

const COLUMNS: &str = "id, token_hash, name, permissions, keyspaces, owners, created_at, \
                       created_by, expires_at, last_used_at, revoked_at, revoke_reason";

/// A row of `admin_tokens`.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    token_hash: Vec<u8>,
    name: String,
    permissions: Json<Vec<String>>,
    keyspaces: Option<Json<Vec<String>>>,
    owners: Option<Json<Vec<String>>>,
    created_at: i64,
    created_by: Option<String>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
}

impl TokenRow {
    fn parse(self) -> Result<([u8; 32], AdminTokenRecord), StoreError> {
        let id = self.id;
        let bad = |what: &str| StoreError::Corrupt(format!("{what} of admin token {id}"));
        let hash = <[u8; 32]>::try_from(self.token_hash.as_slice()).map_err(|_| bad("hash"))?;
        // A name this version does not know (written by a newer one during
        // a rolling upgrade) grants nothing here: fewer permissions, never
        // a failed load that locks every admin out.
        let permissions = self
            .permissions
            .0
            .iter()
            .filter_map(|name| match name.parse::<Permission>() {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(token_id = %id, error = %e, "ignoring a stored permission");
                    None
                }
            })
            .collect::<PermissionSet>();
        let limits = TokenLimits::parse(self.keyspaces.map(|j| j.0), self.owners.map(|j| j.0))
            .map_err(|_| bad("limits"))?;
        let ms = |t: Option<i64>| t.map(Timestamp::from_millis);
        let record = AdminTokenRecord {
            id: TokenId::parse(&id).map_err(|_| bad("id"))?,
            name: KeyName::parse(&self.name).map_err(|_| bad("name"))?,
            grant: TokenGrant::from_stored(permissions, limits, ms(self.expires_at)),
            created_at: Timestamp::from_millis(self.created_at),
            created_by: self.created_by,
            last_used_at: ms(self.last_used_at),
            revoked_at: ms(self.revoked_at),
            revoke_reason: self
                .revoke_reason
                .map(|r| Reason::parse(&r))
                .transpose()
                .map_err(|_| bad("revoke reason"))?,
        };
        Ok((hash, record))
    }
}

fn names(items: impl IntoIterator<Item = impl AsRef<str>>) -> serde_json::Value {
    serde_json::Value::from_iter(items.into_iter().map(|s| s.as_ref().to_owned()))
}

/// Reads one token in `tx`, if `visible_to` may see it.
async fn token_in(
    tx: &mut Tx,
    id: &TokenId,
    visible_to: Option<&str>,
) -> Result<Option<AdminTokenRecord>, StoreError> {
    let row: Option<TokenRow> = sql(format!(
        "SELECT {COLUMNS} FROM admin_tokens WHERE id = $1 \
         AND ($2 IS NULL OR id = $2 OR created_by = $2)"
    ))
    .bind(id.as_str())
    .bind(visible_to)
    .fetch_optional(&mut *tx)
    .await?;
    row.map(|r| r.parse().map(|(_, t)| t)).transpose()
}

async fn revoke_one(
    tx: &mut Tx,
    id: &str,
    at: Timestamp,
    reason: &Reason,
) -> Result<(), StoreError> {
    sql("UPDATE admin_tokens SET revoked_at = $2, revoke_reason = $3 WHERE id = $1")
        .bind(id)
        .bind(at.as_millis())
        .bind(reason.as_str())
        .execute(tx)
        .await?;
    Ok(())
}

/// The live tokens minted from token `id`, directly or through other
/// tokens (revoked ones included on the way: what a revoked token minted
/// still came from `id`), by id.
async fn live_minted_from(tx: &mut Tx, id: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sql("WITH RECURSIVE minted (id) AS ( \
             SELECT id FROM admin_tokens WHERE created_by = $1 \
             UNION SELECT t.id FROM admin_tokens t JOIN minted m ON t.created_by = m.id) \
         SELECT t.id FROM admin_tokens t JOIN minted m ON m.id = t.id \
         WHERE t.revoked_at IS NULL ORDER BY t.id")
    .bind(id)
    .fetch_all(tx)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

#[async_trait]
impl TokenStore for SqlStore {
    async fn insert_token(
        &self,
        t: &AdminTokenRecord,
        hash: &[u8; 32],
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let limits = t.grant.limits();
        let inserted = sql(
            "INSERT INTO admin_tokens (id, token_hash, name, created_at, permissions, keyspaces, \
             owners, expires_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(t.id.as_str())
        .bind(&hash[..])
        .bind(t.name.as_str())
        .bind(t.created_at.as_millis())
        .bind(names(t.grant.permissions().iter().map(Permission::as_str)))
        .bind(limits.keyspaces().map(names))
        .bind(limits.owners().map(|o| names(o.iter().map(|o| o.as_str()))))
        .bind(t.grant.expires_at().map(Timestamp::as_millis))
        .bind(t.created_by.as_deref())
        .execute(&mut tx)
        .await;
        match inserted {
            Ok(_) => audit_and_commit(tx, audit).await,
            Err(StoreError::Database(e)) if StoreError::is_unique_violation(&e) => {
                Err(StoreError::Duplicate)
            }
            Err(e) => Err(e),
        }
    }

    async fn active_tokens(&self) -> Result<Vec<([u8; 32], AdminTokenRecord)>, StoreError> {
        let rows: Vec<TokenRow> = sql(format!(
            "SELECT {COLUMNS} FROM admin_tokens WHERE revoked_at IS NULL"
        ))
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| match r.parse() {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "an admin token cannot be read; it is refused");
                    None
                }
            })
            .collect())
    }

    async fn read_token(
        &self,
        id: &TokenId,
        visible_to: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<Option<AdminTokenRecord>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let Some(token) = token_in(&mut tx, id, visible_to).await? else {
            return Ok(None);
        };
        audit_and_commit(tx, audit).await?;
        Ok(Some(token))
    }

    async fn list_tokens(
        &self,
        f: &TokenFilter,
        audit: &NewAuditEvent,
    ) -> Result<Vec<AdminTokenRecord>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let rows: Vec<TokenRow> = sql(format!(
            "SELECT {COLUMNS} FROM admin_tokens \
             WHERE ($1 IS NULL OR id = $1 OR created_by = $1) AND ($2 IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        ))
        .bind(f.visible_to.as_deref())
        .bind(f.after.as_ref().map(TokenId::as_str))
        .bind(i64::from(f.limit))
        .fetch_all(&mut tx)
        .await?;
        let tokens = rows
            .into_iter()
            .map(|r| r.parse().map(|(_, t)| t))
            .collect::<Result<Vec<_>, _>>()?;
        audit_and_commit(tx, audit).await?;
        Ok(tokens)
    }

    async fn revoke_token(
        &self,
        id: &TokenId,
        visible_to: Option<&str>,
        include_minted: bool,
        reason: &Reason,
        revoked: &NewAuditEvent,
        unchanged: &NewAuditEvent,
    ) -> Result<Option<(AdminTokenRecord, i64)>, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let Some(mut token) = token_in(&mut tx, id, visible_to).await? else {
            return Ok(None);
        };
        let at = revoked.at;
        let mut events = Vec::new();
        if token.revoked_at.is_none() {
            revoke_one(&mut tx, id.as_str(), at, reason).await?;
            events.push(revoked.clone());
            token.revoked_at = Some(at);
            token.revoke_reason = Some(reason.clone());
        }
        let minted = if include_minted {
            live_minted_from(&mut tx, id.as_str()).await?
        } else {
            Vec::new()
        };
        for child in &minted {
            revoke_one(&mut tx, child, at, reason).await?;
            let mut e = revoked.clone();
            e.changes["token_id"] = child.as_str().into();
            e.changes["minted_from"] = id.as_str().into();
            events.push(e);
        }
        if events.is_empty() {
            audit_and_commit(tx, unchanged).await?;
            return Ok(Some((token, 0)));
        }
        tx.notify(TOKEN_CHANNEL, at.as_millis()).await?;
        append_audit(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(Some((
            token,
            i64::try_from(minted.len()).unwrap_or(i64::MAX),
        )))
    }

    async fn record_token_uses(&self, uses: &[(TokenId, Timestamp)]) -> Result<(), StoreError> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.db.begin_write().await?;
        for (id, at) in uses {
            sql("UPDATE admin_tokens SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)")
            .bind(id.as_str())
            .bind(at.as_millis())
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await
    }
}
