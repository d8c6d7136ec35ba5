//! Usage counters' SQL, shared by both backends like `sql.rs`.

/// Implements [`super::UsageStore`] for `$store` over `$db`.
macro_rules! impl_usage_sql {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::UsageStore for $store {
            async fn flush_usage(
                &self,
                at: $crate::domain::Timestamp,
                keys: &[$crate::store::UsageWrite],
                unknown: (i64, i64),
            ) -> Result<(), $crate::store::StoreError> {
                let hour = $crate::store::hour_of(at).as_millis();
                let mut tx = self.begin_write().await?;
                for k in keys {
                    let c = &k.counts;
                    sqlx::query::<$db>(
                        "INSERT INTO key_usage_hourly (key_id, hour, total, valid, revoked, \
                         expired, disabled, insufficient_scope, ip_not_allowed, \
                         referrer_not_allowed, resource_not_allowed, rate_limited, would_deny) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                         ON CONFLICT (key_id, hour) DO UPDATE SET \
                         total = key_usage_hourly.total + excluded.total, \
                         valid = key_usage_hourly.valid + excluded.valid, \
                         revoked = key_usage_hourly.revoked + excluded.revoked, \
                         expired = key_usage_hourly.expired + excluded.expired, \
                         disabled = key_usage_hourly.disabled + excluded.disabled, \
                         insufficient_scope = key_usage_hourly.insufficient_scope + excluded.insufficient_scope, \
                         ip_not_allowed = key_usage_hourly.ip_not_allowed + excluded.ip_not_allowed, \
                         referrer_not_allowed = key_usage_hourly.referrer_not_allowed + excluded.referrer_not_allowed, \
                         resource_not_allowed = key_usage_hourly.resource_not_allowed + excluded.resource_not_allowed, \
                         rate_limited = key_usage_hourly.rate_limited + excluded.rate_limited, \
                         would_deny = key_usage_hourly.would_deny + excluded.would_deny",
                    )
                    .bind(k.key_id.as_str().to_owned())
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
                    .bind(c.would_deny)
                    .execute(&mut *tx)
                    .await?;
                    if let Some(last) = k.last_used_at {
                        sqlx::query::<$db>(
                            "UPDATE keys SET last_used_at = $2, \
                             last_client_ip = COALESCE($3, last_client_ip) \
                             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2)",
                        )
                        .bind(k.key_id.as_str().to_owned())
                        .bind(last.as_millis())
                        .bind(k.last_client_ip.clone())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                if unknown != (0, 0) {
                    sqlx::query::<$db>(
                        "INSERT INTO unknown_key_attempts (hour, malformed, not_found) \
                         VALUES ($1, $2, $3) ON CONFLICT (hour) DO UPDATE SET \
                         malformed = unknown_key_attempts.malformed + excluded.malformed, \
                         not_found = unknown_key_attempts.not_found + excluded.not_found",
                    )
                    .bind(hour)
                    .bind(unknown.0)
                    .bind(unknown.1)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn key_usage(
                &self,
                id: &$crate::domain::KeyId,
                from: $crate::domain::Timestamp,
                to: $crate::domain::Timestamp,
            ) -> Result<Vec<$crate::store::UsageRow>, $crate::store::StoreError> {
                #[derive(sqlx::FromRow)]
                struct Row {
                    hour: i64,
                    #[sqlx(flatten)]
                    counts: $crate::store::UsageCounts,
                }
                let rows = sqlx::query_as::<$db, Row>(
                    "SELECT hour, total, valid, revoked, expired, disabled, insufficient_scope, \
                     ip_not_allowed, referrer_not_allowed, resource_not_allowed, rate_limited, \
                     would_deny FROM key_usage_hourly WHERE key_id = $1 AND hour >= $2 AND hour < $3 \
                     ORDER BY hour",
                )
                .bind(id.as_str().to_owned())
                .bind(from.as_millis())
                .bind(to.as_millis())
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::store::UsageRow {
                        hour: $crate::domain::Timestamp::from_millis(r.hour),
                        counts: r.counts,
                    })
                    .collect())
            }

            async fn unknown_attempts(
                &self,
                from: $crate::domain::Timestamp,
                to: $crate::domain::Timestamp,
            ) -> Result<Vec<$crate::store::UnknownRow>, $crate::store::StoreError> {
                let rows = sqlx::query_as::<$db, (i64, i64, i64)>(
                    "SELECT hour, malformed, not_found FROM unknown_key_attempts \
                     WHERE hour >= $1 AND hour < $2 ORDER BY hour",
                )
                .bind(from.as_millis())
                .bind(to.as_millis())
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(hour, malformed, not_found)| $crate::store::UnknownRow {
                        hour: $crate::domain::Timestamp::from_millis(hour),
                        malformed,
                        not_found,
                    })
                    .collect())
            }
        }
    };
}

pub(super) use impl_usage_sql;
