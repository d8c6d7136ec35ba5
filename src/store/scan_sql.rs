//! Signed scanner deliveries already received, so a replay is refused on
//! any replica: plain functions over [`Db`](super::db::Db), one body for
//! both backends, as [`SqlStore`]'s `ScanStore`.

use async_trait::async_trait;

use super::{StoreError, db::sql, sql::SqlStore};
use crate::domain::Timestamp;

#[async_trait]
pub trait ScanStore: Send + Sync {
    /// Records delivery `digest` as received at `at`: `false` when it was
    /// already (a replay). Receipts older than `forget_before` are dropped
    /// first, so the table holds one retention window of deliveries.
    async fn claim_receipt(
        &self,
        digest: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Forgets `digest`, for a delivery that failed before it took effect
    /// (its sender's retry is then no replay).
    async fn release_receipt(&self, digest: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl ScanStore for SqlStore {
    async fn claim_receipt(
        &self,
        digest: &str,
        at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        sql("DELETE FROM scan_receipts WHERE received_at < $1")
            .bind(forget_before.as_millis())
            .execute(&mut tx)
            .await?;
        let inserted = sql(
            "INSERT INTO scan_receipts (digest, received_at) VALUES ($1, $2) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(at.as_millis())
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    async fn release_receipt(&self, digest: &str) -> Result<(), StoreError> {
        sql("DELETE FROM scan_receipts WHERE digest = $1")
            .bind(digest)
            .execute(&self.db)
            .await?;
        Ok(())
    }
}
