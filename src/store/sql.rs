//! The SQL both backends share, written once and instantiated per backend
//! by [`impl_sql_store!`]. A macro rather than generics: sqlx's trait bounds
//! for code generic over the database are unreadable, and the two backends
//! accept the same SQL (`$n` parameters, `RETURNING`, JSON as text or JSONB).

/// Implements [`super::Store`] for `$store`, a struct with a `pool: Pool<$db>`
/// field and the inherent methods `begin_write`, `begin_snapshot`, `notify`
/// and `run_migrations`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn migrate(&self) -> Result<(), $crate::store::StoreError> {
                self.run_migrations().await
            }

            async fn write(
                &self,
                batch: $crate::store::WriteBatch,
            ) -> Result<$crate::store::WriteOutcome, $crate::store::StoreError> {
                use $crate::store::{StoreError, WriteOutcome, rows::KeyValues};
                let mut tx = self.begin_write().await?;
                if let Some((key_id, notice)) = &batch.notice {
                    let fresh = sqlx::query::<$db>(
                        "INSERT INTO key_notices (key_id, notice, at) VALUES ($1, $2, $3) \
                         ON CONFLICT (key_id, notice) DO NOTHING",
                    )
                    .bind(key_id.as_str().to_owned())
                    .bind(notice.clone())
                    .bind($crate::domain::Timestamp::now().as_millis())
                    .execute(&mut *tx)
                    .await?;
                    if fresh.rows_affected() == 0 {
                        return Ok(WriteOutcome::AlreadyNoticed);
                    }
                }
                if let Some((key, idem)) = &batch.insert {
                    let v = KeyValues::from(key);
                    let inserted = sqlx::query::<$db>(
                        "INSERT INTO keys (id, key_hash, owner_id, name, key_type, environment, \
                         scopes, metadata, hint, created_at, updated_at, expires_at, revoked_at, \
                         revoke_reason, disabled_at, disable_reason, rotated_from, rotated_to, \
                         version, request_id, request_fingerprint, restrictions, rotation_policy, \
                         lineage_expires_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                         $16, $17, $18, $19, $20, $21, $22, $23, $24)",
                    )
                    .bind(v.id)
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
                    .bind(idem.as_ref().map(|i| i.request_id.as_str().to_owned()))
                    .bind(idem.as_ref().map(|i| i.fingerprint.to_vec()))
                    .bind(v.restrictions)
                    .bind(v.rotation_policy)
                    .bind(v.lineage_expires_at)
                    .execute(&mut *tx)
                    .await;
                    match (inserted, idem) {
                        (Ok(_), _) => {}
                        (Err(e), Some(idem)) if StoreError::is_unique_violation(&e) => {
                            drop(tx);
                            return self.replayed(idem.request_id.as_str()).await.map(
                                |(existing, fingerprint)| WriteOutcome::Replayed {
                                    existing: Box::new(existing),
                                    fingerprint,
                                },
                            );
                        }
                        (Err(e), _) if StoreError::is_unique_violation(&e) => {
                            return Err(StoreError::Duplicate);
                        }
                        (Err(e), _) => return Err(e.into()),
                    }
                }
                for key in &batch.update {
                    let v = KeyValues::from(key);
                    let done = sqlx::query::<$db>(
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
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        return Err(StoreError::Conflict);
                    }
                }
                // Taken after the key writes, which may conflict, so the
                // change_seq row lock is held as briefly as possible.
                let n = i64::try_from(batch.changes.len()).unwrap_or(i64::MAX);
                let last = Self::lock_seq(&mut tx, n).await?;
                Self::append_audit(&mut tx, &batch.audit).await?;
                let at = $crate::domain::Timestamp::now().as_millis();
                for (i, c) in (last - n + 1..).zip(&batch.changes) {
                    sqlx::query::<$db>(
                        "INSERT INTO key_changes (seq, key_id, key_hash, kind, owner_id, \
                         environment, expires_at, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .bind(i)
                    .bind(c.key_id.as_str().to_owned())
                    .bind(c.key_hash.as_bytes().to_vec())
                    .bind(c.kind.as_str())
                    .bind(c.owner_id.as_str().to_owned())
                    .bind(c.environment.as_str())
                    .bind(c.expires_at.map(|t| t.as_millis()))
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                if n > 0 {
                    self.notify(&mut tx, last).await?;
                }
                tx.commit().await?;
                Ok(WriteOutcome::Committed { last_seq: last })
            }

            async fn get_key(
                &self,
                id: &$crate::domain::KeyId,
            ) -> Result<Option<$crate::domain::KeyRecord>, $crate::store::StoreError> {
                let row = sqlx::query_as::<$db, $crate::store::rows::KeyRow>(concat!(
                    "SELECT ",
                    $crate::store::rows::key_columns!(),
                    " FROM keys WHERE id = $1"
                ))
                .bind(id.as_str().to_owned())
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn list_keys(
                &self,
                f: &$crate::store::KeyFilter,
            ) -> Result<Vec<$crate::domain::KeyRecord>, $crate::store::StoreError> {
                let owners = $crate::store::limits_sql::owner_clause(
                    9,
                    f.owners.as_deref(),
                    false,
                );
                let text = format!(
                    "{}{owners} ORDER BY $6 * COALESCE(last_used_at, -1), id LIMIT $5",
                    concat!(
                        "SELECT ",
                        $crate::store::rows::key_columns!(),
                        " FROM keys WHERE ($1 IS NULL OR owner_id = $1) \
                         AND ($2 IS NULL OR $6 * COALESCE(last_used_at, -1) > $7 \
                              OR ($6 * COALESCE(last_used_at, -1) = $7 AND id > $2)) \
                         AND ($8 IS NULL OR COALESCE(last_used_at, created_at) < $8) \
                         AND ($3 = '' \
                          OR ($3 = 'revoked' AND revoked_at IS NOT NULL) \
                          OR ($3 = 'disabled' AND revoked_at IS NULL AND disabled_at IS NOT NULL) \
                          OR ($3 = 'expired' AND revoked_at IS NULL AND disabled_at IS NULL \
                              AND expires_at <= $4) \
                          OR ($3 = 'active' AND revoked_at IS NULL AND disabled_at IS NULL \
                              AND (expires_at IS NULL OR expires_at > $4)))"
                    )
                );
                let mut q = sqlx::query_as::<$db, $crate::store::rows::KeyRow>(
                    sqlx::AssertSqlSafe(text),
                )
                .bind(f.owner_id.as_ref().map(|o| o.as_str().to_owned()))
                .bind(f.after.as_ref().map(|(_, id)| id.as_str().to_owned()))
                .bind(f.state.map_or("", |s| s.as_str()))
                .bind(f.now.as_millis())
                .bind(i64::from(f.limit))
                .bind(f.order.factor())
                .bind(f.after.as_ref().map_or(0, |(k, _)| *k))
                .bind(f.unused_before.map(|t| t.as_millis()));
                for o in f.owners.iter().flatten() {
                    q = q.bind(o.as_str().to_owned());
                }
                let rows = q.fetch_all(&self.pool).await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn list_audit_events(
                &self,
                f: &$crate::store::AuditFilter,
            ) -> Result<Vec<$crate::store::AuditEvent>, $crate::store::StoreError> {
                let owners = $crate::store::limits_sql::owner_clause(
                    8,
                    f.owners.as_deref(),
                    f.owned_only,
                );
                let text = format!(
                    "SELECT id, at, actor, action, key_id, owner_id, reason, changes, request_id, \
                     prev_hash, hash FROM audit_events WHERE ($1 IS NULL OR key_id = $1) \
                     AND ($2 IS NULL OR owner_id = $2) AND ($3 IS NULL OR id < $3) \
                     AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR at >= $6) \
                     AND ($7 IS NULL OR at < $7){owners} ORDER BY id DESC LIMIT $4",
                );
                let mut q = sqlx::query_as::<$db, $crate::store::rows::AuditRow>(
                    sqlx::AssertSqlSafe(text),
                )
                .bind(f.key_id.as_ref().map(|k| k.as_str().to_owned()))
                .bind(f.owner_id.as_ref().map(|o| o.as_str().to_owned()))
                .bind(f.before)
                .bind(i64::from(f.limit))
                .bind(f.action.clone())
                .bind(f.from.map(|t| t.as_millis()))
                .bind(f.to.map(|t| t.as_millis()));
                for o in f.owners.iter().flatten() {
                    q = q.bind(o.as_str().to_owned());
                }
                let rows = q.fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn audit_chain(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::AuditEvent>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, $crate::store::rows::AuditRow>(
                    "SELECT id, at, actor, action, key_id, owner_id, reason, changes, request_id, \
                     prev_hash, hash FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(Into::into).collect())
            }

            async fn snapshot(
                &self,
                sink: &mut (dyn FnMut($crate::domain::KeyRecord) + Send),
            ) -> Result<i64, $crate::store::StoreError> {
                use futures::TryStreamExt;
                let mut tx = self.begin_snapshot().await?;
                let seq: i64 =
                    sqlx::query_scalar::<$db, i64>("SELECT last FROM change_seq WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                {
                    // Streamed, not collected: a million rows never sit in
                    // memory at once next to the index they fill.
                    let mut rows = sqlx::query_as::<$db, $crate::store::rows::KeyRow>(concat!(
                        "SELECT ",
                        $crate::store::rows::key_columns!(),
                        " FROM keys"
                    ))
                    .fetch(&mut *tx);
                    while let Some(row) = rows.try_next().await? {
                        sink(row.try_into()?);
                    }
                }
                tx.commit().await?;
                Ok(seq)
            }

            async fn live_keys(
                &self,
            ) -> Result<Vec<$crate::domain::KeyRecord>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, $crate::store::rows::KeyRow>(concat!(
                    "SELECT ",
                    $crate::store::rows::key_columns!(),
                    " FROM keys WHERE revoked_at IS NULL ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(TryInto::try_into)
                    .collect::<Result<_, _>>()
            }

            async fn insert_admin_token(
                &self,
                info: &$crate::store::AdminTokenInfo,
                hash: &[u8; 32],
                at: $crate::domain::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query::<$db>(
                    "INSERT INTO admin_tokens (id, token_hash, name, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(info.id.clone())
                .bind(hash.to_vec())
                .bind(info.name.clone())
                .bind(at.as_millis())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn admin_tokens(
                &self,
            ) -> Result<Vec<([u8; 32], $crate::store::AdminTokenInfo)>, $crate::store::StoreError>
            {
                let rows = sqlx::query_as::<$db, (Vec<u8>, String, String)>(
                    "SELECT token_hash, id, name FROM admin_tokens WHERE revoked_at IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(hash, id, name)| {
                        let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                            $crate::store::StoreError::Corrupt(format!(
                                "admin token {id} has a hash of {} bytes",
                                hash.len()
                            ))
                        })?;
                        Ok((hash, $crate::store::AdminTokenInfo { id, name }))
                    })
                    .collect()
            }

            async fn count_admin_tokens(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar::<$db, i64>(
                    "SELECT COUNT(*) FROM admin_tokens WHERE revoked_at IS NULL",
                )
                .fetch_one(&self.pool)
                .await?)
            }

            fn wakeups(&self) -> Option<$crate::store::PgWakeups> {
                self.pg_wakeups()
            }

            fn backend(&self) -> &'static str {
                $backend
            }

            async fn durability(
                &self,
            ) -> Result<$crate::store::Durability, $crate::store::StoreError> {
                self.read_durability().await
            }
        }

        impl $store {
            /// The key an earlier CreateKey made under `request_id`, and its
            /// request fingerprint.
            async fn replayed(
                &self,
                request_id: &str,
            ) -> Result<($crate::domain::KeyRecord, Option<Vec<u8>>), $crate::store::StoreError>
            {
                let fingerprint: Option<Option<Vec<u8>>> = sqlx::query_scalar::<$db, Option<Vec<u8>>>(
                    "SELECT request_fingerprint FROM keys WHERE request_id = $1",
                )
                .bind(request_id.to_owned())
                .fetch_optional(&self.pool)
                .await?;
                let row = sqlx::query_as::<$db, $crate::store::rows::KeyRow>(concat!(
                    "SELECT ",
                    $crate::store::rows::key_columns!(),
                    " FROM keys WHERE request_id = $1"
                ))
                .bind(request_id.to_owned())
                .fetch_optional(&self.pool)
                .await?
                .ok_or($crate::store::StoreError::Duplicate)?;
                Ok((row.try_into()?, fingerprint.flatten()))
            }
        }
    };
}

pub(super) use impl_sql_store;
