//! Webhook SQL, shared by both backends like `sql.rs`.

/// Implements [`super::WebhookStore`] for `$store` over `$db`.
macro_rules! impl_webhook_sql {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::WebhookStore for $store {
            async fn insert_endpoint(
                &self,
                e: &$crate::store::EndpointRow,
                secret: &str,
                audit: &$crate::store::NewAuditEvent,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                // The change_seq lock first: see `lock_seq`, and below.
                Self::lock_seq(&mut tx, 0).await?;
                sqlx::query::<$db>(
                    "INSERT INTO webhook_endpoints (id, url, secret, description, enabled, \
                     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(e.id.clone())
                .bind(e.url.clone())
                .bind(secret.to_owned())
                .bind(e.description.clone())
                .bind(e.enabled)
                .bind(e.created_at.as_millis())
                .bind(e.updated_at.as_millis())
                .execute(&mut *tx)
                .await?;
                Self::write_subscriptions(&mut tx, &e.id, &e.events).await?;
                Self::append_audit(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_endpoint(
                &self,
                id: &str,
            ) -> Result<Option<($crate::store::EndpointRow, String)>, $crate::store::StoreError> {
                let row = sqlx::query_as::<$db, (String, String, String, String, bool, i64, i64)>(
                    "SELECT id, url, secret, description, enabled, created_at, updated_at \
                     FROM webhook_endpoints WHERE id = $1",
                )
                .bind(id.to_owned())
                .fetch_optional(&self.pool)
                .await?;
                let Some((id, url, secret, description, enabled, created, updated)) = row else {
                    return Ok(None);
                };
                let events = self.subscriptions_of(&id).await?;
                let e = $crate::store::EndpointRow {
                    id,
                    url,
                    description,
                    enabled,
                    events,
                    created_at: $crate::domain::Timestamp::from_millis(created),
                    updated_at: $crate::domain::Timestamp::from_millis(updated),
                };
                Ok(Some((e, secret)))
            }

            async fn list_endpoints(&self) -> Result<Vec<$crate::store::EndpointRow>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, (String, String, String, bool, i64, i64)>(
                    "SELECT id, url, description, enabled, created_at, updated_at \
                     FROM webhook_endpoints ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for (id, url, description, enabled, created, updated) in rows {
                    let events = self.subscriptions_of(&id).await?;
                    out.push($crate::store::EndpointRow {
                        id,
                        url,
                        description,
                        enabled,
                        events,
                        created_at: $crate::domain::Timestamp::from_millis(created),
                        updated_at: $crate::domain::Timestamp::from_millis(updated),
                    });
                }
                Ok(out)
            }

            async fn update_endpoint(
                &self,
                id: &str,
                p: &$crate::store::EndpointPatch,
                at: $crate::domain::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                Self::lock_seq(&mut tx, 0).await?;
                let done = sqlx::query::<$db>(
                    "UPDATE webhook_endpoints SET url = COALESCE($2, url), \
                     description = COALESCE($3, description), enabled = COALESCE($4, enabled), \
                     updated_at = $5 WHERE id = $1",
                )
                .bind(id.to_owned())
                .bind(p.url.clone())
                .bind(p.description.clone())
                .bind(p.enabled)
                .bind(at.as_millis())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                if let Some(events) = &p.events {
                    sqlx::query::<$db>("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1")
                        .bind(id.to_owned())
                        .execute(&mut *tx)
                        .await?;
                    Self::write_subscriptions(&mut tx, id, events).await?;
                }
                Self::append_audit(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_endpoint(
                &self,
                id: &str,
                audit: &$crate::store::NewAuditEvent,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                // Lock order change_seq, then the endpoint's rows, as in
                // `Store::write` (whose outbox rows refer to endpoints): the
                // other order could deadlock with a concurrent key write.
                Self::lock_seq(&mut tx, 0).await?;
                for sql in [
                    "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
                    "DELETE FROM webhook_subscriptions WHERE endpoint_id = $1",
                ] {
                    sqlx::query::<$db>(sql).bind(id.to_owned()).execute(&mut *tx).await?;
                }
                let done = sqlx::query::<$db>("DELETE FROM webhook_endpoints WHERE id = $1")
                    .bind(id.to_owned())
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::append_audit(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn list_deliveries(
                &self,
                endpoint_id: Option<&str>,
                status: Option<$crate::store::DeliveryStatus>,
                before: Option<(i64, String)>,
                limit: u32,
            ) -> Result<Vec<$crate::store::DeliveryRow>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, $crate::store::rows::DeliverySqlRow>(concat!(
                    "SELECT ",
                    $crate::store::rows::delivery_columns!(),
                    " FROM webhook_deliveries WHERE ($1 IS NULL OR endpoint_id = $1) \
                     AND ($2 IS NULL OR status = $2) \
                     AND ($3 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $3)) \
                     ORDER BY created_at DESC, id DESC LIMIT $5"
                ))
                .bind(endpoint_id.map(str::to_owned))
                .bind(status.map(|s| s.as_str()))
                .bind(before.as_ref().map(|(_, id)| id.clone()))
                .bind(before.as_ref().map_or(0, |(t, _)| *t))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn claim_deliveries(
                &self,
                now: $crate::domain::Timestamp,
                lease_until: $crate::domain::Timestamp,
                limit: u32,
            ) -> Result<Vec<$crate::store::Claimed>, $crate::store::StoreError> {
                // The lease test is repeated on the outer UPDATE: PostgreSQL
                // re-checks it after waiting on a row another replica just
                // claimed, so no delivery is claimed twice.
                let rows = sqlx::query_as::<$db, $crate::store::rows::DeliverySqlRow>(concat!(
                    "UPDATE webhook_deliveries SET lease_until = $2 WHERE id IN (\
                     SELECT id FROM webhook_deliveries WHERE status = 'pending' \
                     AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
                     ORDER BY next_attempt_at LIMIT $3) \
                     AND status = 'pending' AND (lease_until IS NULL OR lease_until < $1) RETURNING ",
                    $crate::store::rows::delivery_columns!()
                ))
                .bind(now.as_millis())
                .bind(lease_until.as_millis())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let delivery: $crate::store::DeliveryRow = row.try_into()?;
                    let target = sqlx::query_as::<$db, (String, String)>(
                        "SELECT url, secret FROM webhook_endpoints WHERE id = $1",
                    )
                    .bind(delivery.endpoint_id.clone())
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some((url, secret)) = target {
                        out.push($crate::store::Claimed { delivery, url, secret });
                    }
                }
                Ok(out)
            }

            async fn finish_attempt(
                &self,
                id: &str,
                outcome: &$crate::store::AttemptOutcome,
                at: $crate::domain::Timestamp,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::AttemptOutcome as O;
                let (status, code, error, next, delivered) = match outcome {
                    O::Delivered { status_code } => ("delivered", Some(*status_code), None, None, Some(at.as_millis())),
                    O::Retry { status_code, error, next_attempt_at } => {
                        ("pending", *status_code, Some(error.clone()), Some(next_attempt_at.as_millis()), None)
                    }
                    O::Failed { status_code, error } => ("failed", *status_code, Some(error.clone()), None, None),
                };
                sqlx::query::<$db>(
                    "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, \
                     last_status_code = $3, last_error = $4, \
                     next_attempt_at = COALESCE($5, next_attempt_at), delivered_at = $6, \
                     lease_until = NULL WHERE id = $1",
                )
                .bind(id.to_owned())
                .bind(status)
                .bind(code)
                .bind(error)
                .bind(next)
                .bind(delivered)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn pending_deliveries(&self) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar::<$db, i64>(
                    "SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'",
                )
                .fetch_one(&self.pool)
                .await?)
            }

            async fn get_delivery(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::DeliveryRow>, $crate::store::StoreError> {
                let row = sqlx::query_as::<$db, $crate::store::rows::DeliverySqlRow>(concat!(
                    "SELECT ",
                    $crate::store::rows::delivery_columns!(),
                    " FROM webhook_deliveries WHERE id = $1"
                ))
                .bind(id.to_owned())
                .fetch_optional(&self.pool)
                .await?;
                row.map(TryInto::try_into).transpose()
            }

            async fn redeliver(
                &self,
                id: &str,
                now: $crate::domain::Timestamp,
                audit: &$crate::store::NewAuditEvent,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                Self::lock_seq(&mut tx, 0).await?;
                let done = sqlx::query::<$db>(
                    "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, \
                     lease_until = NULL, created_at = $2 WHERE id = $1",
                )
                .bind(id.to_owned())
                .bind(now.as_millis())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::append_audit(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(true)
            }
        }

        impl $store {
            async fn subscriptions_of(&self, id: &str) -> Result<Vec<String>, $crate::store::StoreError> {
                Ok(sqlx::query_scalar::<$db, String>(
                    "SELECT event_type FROM webhook_subscriptions WHERE endpoint_id = $1 ORDER BY event_type",
                )
                .bind(id.to_owned())
                .fetch_all(&self.pool)
                .await?)
            }

            async fn write_subscriptions(
                tx: &mut sqlx::Transaction<'static, $db>,
                id: &str,
                events: &[String],
            ) -> Result<(), $crate::store::StoreError> {
                for event in events {
                    sqlx::query::<$db>(
                        "INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES ($1, $2)",
                    )
                    .bind(id.to_owned())
                    .bind(event.clone())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }
    };
}

pub(super) use impl_webhook_sql;
