//! The change log, replica progress and job leases.

use async_trait::async_trait;

use super::{
    Change, LogBounds, LogStore, ReplicaRow, StoreError, db::sql, rows::ChangeRow, sql::SqlStore,
};
use crate::domain::Timestamp;

#[async_trait]
impl LogStore for SqlStore {
    async fn changes_after(&self, seq: i64, limit: u32) -> Result<Vec<Change>, StoreError> {
        sql(
            "SELECT seq, key_id, key_hash, kind, owner_id, environment, keyspace_id, expires_at, at, \
             key_version FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(i64::from(limit))
        .fetch_all::<ChangeRow>(&self.db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
    }

    async fn log_bounds(&self) -> Result<LogBounds, StoreError> {
        let (pruned_through, head, epoch) = sql("SELECT s.pruned_through, c.last, e.epoch \
             FROM change_log_state s, change_seq c, log_lineage e \
             WHERE s.id = 1 AND c.id = 1 AND e.id = 1")
        .fetch_one::<(i64, i64, i64)>(&self.db)
        .await?;
        Ok(LogBounds {
            pruned_through,
            head,
            epoch,
        })
    }

    async fn prune_changes(&self, before: Timestamp) -> Result<LogBounds, StoreError> {
        let mut tx = self.db.begin_write().await?;
        let through: i64 = sql("SELECT COALESCE(MAX(seq), 0) FROM key_changes WHERE at < $1")
            .bind(before.as_millis())
            .fetch_scalar(&mut tx)
            .await?;
        sql("DELETE FROM key_changes WHERE seq <= $1")
            .bind(through)
            .execute(&mut tx)
            .await?;
        sql("UPDATE change_log_state SET pruned_through = $1 \
             WHERE id = 1 AND pruned_through < $1")
        .bind(through)
        .execute(&mut tx)
        .await?;
        tx.commit().await?;
        self.log_bounds().await
    }

    async fn report_replica(&self, r: &ReplicaRow) -> Result<(), StoreError> {
        sql(
            "INSERT INTO replicas (id, applied_seq, heartbeat_at, started_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
             applied_seq = excluded.applied_seq, heartbeat_at = excluded.heartbeat_at",
        )
        .bind(r.id.as_str())
        .bind(r.applied_seq)
        .bind(r.heartbeat_at.as_millis())
        .bind(r.started_at.as_millis())
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn live_replicas(&self, since: Timestamp) -> Result<Vec<ReplicaRow>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sql(
            "SELECT id, applied_seq, heartbeat_at, started_at FROM replicas \
             WHERE heartbeat_at >= $1 ORDER BY id",
        )
        .bind(since.as_millis())
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, applied_seq, heartbeat, started)| ReplicaRow {
                id,
                applied_seq,
                heartbeat_at: Timestamp::from_millis(heartbeat),
                started_at: Timestamp::from_millis(started),
            })
            .collect())
    }

    async fn remove_replica(&self, id: &str) -> Result<(), StoreError> {
        sql("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn take_job_lease(
        &self,
        job: &str,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        sql(
            "INSERT INTO job_leases (job, owner, lease_until) VALUES ($1, NULL, 0) \
             ON CONFLICT (job) DO NOTHING",
        )
        .bind(job)
        .execute(&self.db)
        .await?;
        let taken = sql("UPDATE job_leases SET owner = $2, lease_until = $4 \
                         WHERE job = $1 AND (lease_until <= $3 OR owner = $2)")
        .bind(job)
        .bind(owner)
        .bind(now.as_millis())
        .bind(until.as_millis())
        .execute(&self.db)
        .await?;
        Ok(taken == 1)
    }
}
