//! Usage counters: hourly buckets per key, the keys' last use, and the
//! unknown-key attempts.

use async_trait::async_trait;

use super::{
    StoreError, UnknownRow, UsageCounts, UsageRow, UsageStore, UsageWrite,
    db::{Tx, sql},
    hour_of,
    sql::SqlStore,
};
use crate::domain::{KeyId, Timestamp};

#[async_trait]
impl UsageStore for SqlStore {
    async fn flush_usage(
        &self,
        at: Timestamp,
        keys: &[UsageWrite],
        unknown: (i64, i64),
    ) -> Result<(), StoreError> {
        let hour = hour_of(at).as_millis();
        let mut tx = self.db.begin_write().await?;
        for k in keys {
            add_counts(&mut tx, &k.key_id, hour, &k.counts).await?;
            if let Some(last) = k.last_used_at {
                record_use(&mut tx, &k.key_id, last, k.last_client_ip.as_deref()).await?;
            }
        }
        if unknown != (0, 0) {
            sql(
                "INSERT INTO unknown_key_attempts (hour, malformed, not_found) \
                 VALUES ($1, $2, $3) ON CONFLICT (hour) DO UPDATE SET \
                 malformed = unknown_key_attempts.malformed + excluded.malformed, \
                 not_found = unknown_key_attempts.not_found + excluded.not_found",
            )
            .bind(hour)
            .bind(unknown.0)
            .bind(unknown.1)
            .execute(&mut tx)
            .await?;
        }
        tx.commit().await
    }

    async fn key_usage(
        &self,
        id: &KeyId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsageRow>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            hour: i64,
            #[sqlx(flatten)]
            counts: UsageCounts,
        }
        let rows: Vec<Row> = sql(
            "SELECT hour, total, valid, revoked, expired, disabled, insufficient_scope, \
             ip_not_allowed, referrer_not_allowed, resource_not_allowed, rate_limited, \
             usage_exceeded, would_deny FROM key_usage_hourly WHERE key_id = $1 AND hour >= $2 AND hour < $3 \
             ORDER BY hour",
        )
        .bind(id.as_str())
        .bind(from.as_millis())
        .bind(to.as_millis())
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRow {
                hour: Timestamp::from_millis(r.hour),
                counts: r.counts,
            })
            .collect())
    }

    async fn unknown_attempts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UnknownRow>, StoreError> {
        let rows: Vec<(i64, i64, i64)> = sql(
            "SELECT hour, malformed, not_found FROM unknown_key_attempts \
             WHERE hour >= $1 AND hour < $2 ORDER BY hour",
        )
        .bind(from.as_millis())
        .bind(to.as_millis())
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(hour, malformed, not_found)| UnknownRow {
                hour: Timestamp::from_millis(hour),
                malformed,
                not_found,
            })
            .collect())
    }
}

/// Adds `c` to the key's bucket for `hour`.
async fn add_counts(
    tx: &mut Tx,
    key_id: &KeyId,
    hour: i64,
    c: &UsageCounts,
) -> Result<(), StoreError> {
    sql(
        "INSERT INTO key_usage_hourly (key_id, hour, total, valid, revoked, expired, disabled, \
         insufficient_scope, ip_not_allowed, referrer_not_allowed, resource_not_allowed, \
         rate_limited, usage_exceeded, would_deny) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (key_id, hour) DO UPDATE SET \
         total = key_usage_hourly.total + excluded.total, \
         valid = key_usage_hourly.valid + excluded.valid, \
         revoked = key_usage_hourly.revoked + excluded.revoked, \
         expired = key_usage_hourly.expired + excluded.expired, \
         disabled = key_usage_hourly.disabled + excluded.disabled, \
         insufficient_scope = key_usage_hourly.insufficient_scope + excluded.insufficient_scope, \
         ip_not_allowed = key_usage_hourly.ip_not_allowed + excluded.ip_not_allowed, \
         referrer_not_allowed = key_usage_hourly.referrer_not_allowed \
         + excluded.referrer_not_allowed, \
         resource_not_allowed = key_usage_hourly.resource_not_allowed \
         + excluded.resource_not_allowed, \
         rate_limited = key_usage_hourly.rate_limited + excluded.rate_limited, \
         usage_exceeded = key_usage_hourly.usage_exceeded + excluded.usage_exceeded, \
         would_deny = key_usage_hourly.would_deny + excluded.would_deny",
    )
    .bind(key_id.as_str())
    .bind(hour)
    .bind(c.total)
    .bind(c.valid)
    .bind(c.revoked)
    .bind(c.expired)
    .bind(c.disabled)
    .bind(c.insufficient_scope)
    .bind(c.ip_not_allowed)
    .bind(c.referrer_not_allowed)
    .bind(c.resource_not_allowed)
    .bind(c.rate_limited)
    .bind(c.usage_exceeded)
    .bind(c.would_deny)
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves the key's last use (and last client IP, when known) forward, never
/// back: flushes from two replicas may land in either order.
async fn record_use(
    tx: &mut Tx,
    key_id: &KeyId,
    last: Timestamp,
    client_ip: Option<&str>,
) -> Result<(), StoreError> {
    sql(
        "UPDATE keys SET last_used_at = $2, last_client_ip = COALESCE($3, last_client_ip) \
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2)",
    )
    .bind(key_id.as_str())
    .bind(last.as_millis())
    .bind(client_ip)
    .execute(tx)
    .await?;
    Ok(())
}
