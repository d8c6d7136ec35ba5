//! The change log, replica progress and job leases: SQL shared by both
//! backends like `sql.rs`.

/// Implements [`super::LogStore`] for `$store` over `$db`.
macro_rules! impl_log_sql {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::LogStore for $store {
            async fn changes_after(
                &self,
                seq: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::Change>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, $crate::store::rows::ChangeRow>(
                    "SELECT seq, key_id, key_hash, kind, owner_id, environment, keyspace_id, expires_at, at \
                     FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
                )
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn log_bounds(&self) -> Result<$crate::store::LogBounds, $crate::store::StoreError> {
                let (pruned_through, head, epoch) = sqlx::query_as::<$db, (i64, i64, i64)>(
                    "SELECT s.pruned_through, c.last, e.epoch \
                     FROM change_log_state s, change_seq c, log_lineage e \
                     WHERE s.id = 1 AND c.id = 1 AND e.id = 1",
                )
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::LogBounds {
                    pruned_through,
                    head,
                    epoch,
                })
            }

            async fn prune_changes(
                &self,
                before: $crate::domain::Timestamp,
            ) -> Result<$crate::store::LogBounds, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let through: i64 = sqlx::query_scalar::<$db, i64>(
                    "SELECT COALESCE(MAX(seq), 0) FROM key_changes WHERE at < $1",
                )
                .bind(before.as_millis())
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query::<$db>("DELETE FROM key_changes WHERE seq <= $1")
                    .bind(through)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query::<$db>(
                    "UPDATE change_log_state SET pruned_through = $1 \
                     WHERE id = 1 AND pruned_through < $1",
                )
                .bind(through)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                self.log_bounds().await
            }

            async fn report_replica(
                &self,
                r: &$crate::store::ReplicaRow,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query::<$db>(
                    "INSERT INTO replicas (id, applied_seq, heartbeat_at, started_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
                     applied_seq = excluded.applied_seq, heartbeat_at = excluded.heartbeat_at",
                )
                .bind(r.id.clone())
                .bind(r.applied_seq)
                .bind(r.heartbeat_at.as_millis())
                .bind(r.started_at.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn live_replicas(
                &self,
                since: $crate::domain::Timestamp,
            ) -> Result<Vec<$crate::store::ReplicaRow>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, (String, i64, i64, i64)>(
                    "SELECT id, applied_seq, heartbeat_at, started_at FROM replicas \
                     WHERE heartbeat_at >= $1 ORDER BY id",
                )
                .bind(since.as_millis())
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, applied_seq, hb, started)| $crate::store::ReplicaRow {
                        id,
                        applied_seq,
                        heartbeat_at: $crate::domain::Timestamp::from_millis(hb),
                        started_at: $crate::domain::Timestamp::from_millis(started),
                    })
                    .collect())
            }

            async fn remove_replica(&self, id: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query::<$db>("DELETE FROM replicas WHERE id = $1")
                    .bind(id.to_owned())
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn take_job_lease(
                &self,
                job: &str,
                owner: &str,
                now: $crate::domain::Timestamp,
                until: $crate::domain::Timestamp,
            ) -> Result<bool, $crate::store::StoreError> {
                sqlx::query::<$db>(
                    "INSERT INTO job_leases (job, owner, lease_until) VALUES ($1, NULL, 0) \
                     ON CONFLICT (job) DO NOTHING",
                )
                .bind(job.to_owned())
                .execute(&self.pool)
                .await?;
                let taken = sqlx::query::<$db>(
                    "UPDATE job_leases SET owner = $2, lease_until = $4 \
                     WHERE job = $1 AND (lease_until <= $3 OR owner = $2)",
                )
                .bind(job.to_owned())
                .bind(owner.to_owned())
                .bind(now.as_millis())
                .bind(until.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(taken.rows_affected() == 1)
            }
        }
    };
}

pub(super) use impl_log_sql;
