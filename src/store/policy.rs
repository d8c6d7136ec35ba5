//! Per-owner overrides of the unused-key policy.

use std::time::Duration;

use async_trait::async_trait;

use super::{
    NewAuditEvent, StoreError,
    audit_sql::{audit_and_commit, lock_seq},
    db::sql,
    sql::SqlStore,
};
use crate::domain::{OwnerId, StalePolicy, Timestamp};

/// Each mutation commits its audit event in its transaction, as
/// `WebhookStore`'s do.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// Sets (inserts or replaces) `owner`'s thresholds.
    async fn set_owner_policy(
        &self,
        owner: &OwnerId,
        p: &StalePolicy,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError>;
    /// `false` when the owner had none; then nothing is written.
    async fn delete_owner_policy(
        &self,
        owner: &OwnerId,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError>;
    async fn owner_policies(&self) -> Result<Vec<(OwnerId, StalePolicy)>, StoreError>;
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn from_row(
    (owner, flag, disable, revoke, dry_run): (String, i64, Option<i64>, Option<i64>, bool),
) -> Result<(OwnerId, StalePolicy), StoreError> {
    let d = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    let bad = || StoreError::Corrupt(format!("stale policy of owner {owner}"));
    let policy =
        StalePolicy::new(d(flag), disable.map(d), revoke.map(d), dry_run).map_err(|_| bad())?;
    Ok((OwnerId::parse(&owner).map_err(|_| bad())?, policy))
}

#[async_trait]
impl PolicyStore for SqlStore {
    async fn set_owner_policy(
        &self,
        owner: &OwnerId,
        p: &StalePolicy,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        sql(
            "INSERT INTO owner_stale_policies (owner_id, flag_after_ms, disable_after_ms, \
             revoke_after_ms, dry_run, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (owner_id) DO UPDATE SET flag_after_ms = excluded.flag_after_ms, \
             disable_after_ms = excluded.disable_after_ms, \
             revoke_after_ms = excluded.revoke_after_ms, dry_run = excluded.dry_run, \
             updated_at = excluded.updated_at",
        )
        .bind(owner.as_str())
        .bind(ms(p.flag_after))
        .bind(p.disable_after.map(ms))
        .bind(p.revoke_after.map(ms))
        .bind(p.dry_run)
        .bind(at.as_millis())
        .execute(&mut tx)
        .await?;
        audit_and_commit(tx, audit).await
    }

    async fn delete_owner_policy(
        &self,
        owner: &OwnerId,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let deleted = sql("DELETE FROM owner_stale_policies WHERE owner_id = $1")
            .bind(owner.as_str())
            .execute(&mut tx)
            .await?;
        if deleted == 0 {
            return Ok(false);
        }
        audit_and_commit(tx, audit).await?;
        Ok(true)
    }

    async fn owner_policies(&self) -> Result<Vec<(OwnerId, StalePolicy)>, StoreError> {
        sql(
            "SELECT owner_id, flag_after_ms, disable_after_ms, revoke_after_ms, dry_run \
             FROM owner_stale_policies ORDER BY owner_id",
        )
        .fetch_all(&self.db)
        .await?
        .into_iter()
        .map(from_row)
        .collect()
    }
}
