//! Signed scanner deliveries already received, so a replay is refused on
//! any replica: plain functions over [`Db`](super::db::Db), one body for
//! both backends, as [`SqlStore`]'s `ScanStore`.

use async_trait::async_trait;

use super::{StoreError, db::sql, sql::SqlStore};
use crate::domain::Timestamp;

#[async_trait]
pub trait ScanStore: Send + Sync {
    /// Whether delivery `digest` was recorded (applied) before.
    async fn has_receipt(&self, digest: &str) -> Result<bool, StoreError>;
    /// Records delivery `digest` as applied at `at` (again is a no-op).
    /// Receipts older than `forget_before` are dropped first, so the table
    /// holds one retention window of deliveries.
    async fn record_receipt(
        &self,
        digest: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl ScanStore for SqlStore {
    async fn has_receipt(&self, digest: &str) -> Result<bool, StoreError> {
        let n: i64 = sql("SELECT COUNT(*) FROM scan_receipts WHERE digest = $1")
            .bind(digest)
            .fetch_scalar(&self.db)
            .await?;
        Ok(n > 0)
    }

    async fn record_receipt(
        &self,
        digest: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        sql("DELETE FROM scan_receipts WHERE received_at < $1")
            .bind(forget_before.as_millis())
            .execute(&mut tx)
            .await?;
        sql(
            "INSERT INTO scan_receipts (digest, received_at) VALUES ($1, $2) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(at.as_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await
    }
}
