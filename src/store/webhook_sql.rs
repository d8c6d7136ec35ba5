//! Webhook endpoints, their subscriptions and the delivery outbox.

use async_trait::async_trait;

use super::{
    AttemptOutcome, Claimed, DeliveryRow, DeliveryStatus, EndpointPatch, EndpointRow,
    NewAuditEvent, StoreError, WebhookStore,
    audit_sql::{audit_and_commit, lock_seq},
    db::{Db, Tx, sql},
    rows::{DELIVERY_COLUMNS, DeliverySqlRow},
    sql::SqlStore,
};
use crate::domain::Timestamp;

#[async_trait]
impl WebhookStore for SqlStore {
    async fn insert_endpoint(
        &self,
        e: &EndpointRow,
        secret: &str,
        audit: &NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.begin_write().await?;
        // The change_seq lock first: see `lock_seq`, and `delete_endpoint`.
        lock_seq(&mut tx, 0).await?;
        sql(
            "INSERT INTO webhook_endpoints (id, url, secret, description, enabled, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.id.as_str())
        .bind(e.url.as_str())
        .bind(secret)
        .bind(e.description.as_str())
        .bind(e.enabled)
        .bind(e.created_at.as_millis())
        .bind(e.updated_at.as_millis())
        .execute(&mut tx)
        .await?;
        write_subscriptions(&mut tx, &e.id, &e.events).await?;
        audit_and_commit(tx, audit).await
    }

    async fn get_endpoint(&self, id: &str) -> Result<Option<(EndpointRow, String)>, StoreError> {
        let row: Option<(String, String, String, String, bool, i64, i64)> = sql(
            "SELECT id, url, secret, description, enabled, created_at, updated_at \
             FROM webhook_endpoints WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.db)
        .await?;
        let Some((id, url, secret, description, enabled, created, updated)) = row else {
            return Ok(None);
        };
        let events = subscriptions_of(&self.db, &id).await?;
        let e = EndpointRow {
            id,
            url,
            description,
            enabled,
            events,
            created_at: Timestamp::from_millis(created),
            updated_at: Timestamp::from_millis(updated),
        };
        Ok(Some((e, secret)))
    }

    async fn list_endpoints(&self) -> Result<Vec<EndpointRow>, StoreError> {
        let rows: Vec<(String, String, String, bool, i64, i64)> = sql(
            "SELECT id, url, description, enabled, created_at, updated_at \
             FROM webhook_endpoints ORDER BY id",
        )
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, url, description, enabled, created, updated) in rows {
            let events = subscriptions_of(&self.db, &id).await?;
            out.push(EndpointRow {
                id,
                url,
                description,
                enabled,
                events,
                created_at: Timestamp::from_millis(created),
                updated_at: Timestamp::from_millis(updated),
            });
        }
        Ok(out)
    }

    async fn update_endpoint(
        &self,
        id: &str,
        p: &EndpointPatch,
        at: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let done = sql("UPDATE webhook_endpoints SET url = COALESCE($2, url), \
                        description = COALESCE($3, description), \
                        enabled = COALESCE($4, enabled), updated_at = $5 WHERE id = $1")
        .bind(id)
        .bind(p.url.as_deref())
        .bind(p.description.as_deref())
        .bind(p.enabled)
        .bind(at.as_millis())
        .execute(&mut tx)
        .await?;
        if done == 0 {
            return Ok(false);
        }
        if let Some(events) = &p.events {
            sql("DELETE FROM webhook_subscriptions WHERE endpoint_id = $1")
                .bind(id)
                .execute(&mut tx)
                .await?;
            write_subscriptions(&mut tx, id, events).await?;
        }
        audit_and_commit(tx, audit).await?;
        Ok(true)
    }

    async fn delete_endpoint(&self, id: &str, audit: &NewAuditEvent) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        // Lock order change_seq, then the endpoint's rows, as in
        // `Store::write` (whose outbox rows refer to endpoints): the other
        // order could deadlock with a concurrent key write.
        lock_seq(&mut tx, 0).await?;
        for statement in [
            "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
            "DELETE FROM webhook_subscriptions WHERE endpoint_id = $1",
        ] {
            sql(statement).bind(id).execute(&mut tx).await?;
        }
        let done = sql("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&mut tx)
            .await?;
        if done == 0 {
            return Ok(false);
        }
        audit_and_commit(tx, audit).await?;
        Ok(true)
    }

    async fn list_deliveries(
        &self,
        endpoint_id: Option<&str>,
        status: Option<DeliveryStatus>,
        before: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        sql(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE ($1 IS NULL OR endpoint_id = $1) AND ($2 IS NULL OR status = $2) \
             AND ($3 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $5"
        ))
        .bind(endpoint_id)
        .bind(status.map(DeliveryStatus::as_str))
        .bind(before.as_ref().map(|(_, id)| id.as_str()))
        .bind(before.as_ref().map_or(0, |(t, _)| *t))
        .bind(i64::from(limit))
        .fetch_all::<DeliverySqlRow>(&self.db)
        .await?
        .into_iter()
        .map(TryInto::try_into)
        .collect()
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Claimed>, StoreError> {
        // The lease test is repeated on the outer UPDATE: PostgreSQL
        // re-checks it after waiting on a row another replica just claimed,
        // so no delivery is claimed twice.
        let rows: Vec<DeliverySqlRow> = sql(format!(
            "UPDATE webhook_deliveries SET lease_until = $2 WHERE id IN (\
             SELECT id FROM webhook_deliveries WHERE status = 'pending' \
             AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY next_attempt_at LIMIT $3) \
             AND status = 'pending' AND (lease_until IS NULL OR lease_until < $1) \
             RETURNING {DELIVERY_COLUMNS}"
        ))
        .bind(now.as_millis())
        .bind(lease_until.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.db)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let delivery: DeliveryRow = row.try_into()?;
            let target: Option<(String, String)> =
                sql("SELECT url, secret FROM webhook_endpoints WHERE id = $1")
                    .bind(delivery.endpoint_id.as_str())
                    .fetch_optional(&self.db)
                    .await?;
            if let Some((url, secret)) = target {
                out.push(Claimed {
                    delivery,
                    url,
                    secret,
                });
            }
        }
        Ok(out)
    }

    async fn finish_attempt(
        &self,
        id: &str,
        outcome: &AttemptOutcome,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (status, code, error, next, delivered) = match outcome {
            AttemptOutcome::Delivered { status_code } => (
                "delivered",
                Some(*status_code),
                None,
                None,
                Some(at.as_millis()),
            ),
            AttemptOutcome::Retry {
                status_code,
                error,
                next_attempt_at,
            } => (
                "pending",
                *status_code,
                Some(error.as_str()),
                Some(next_attempt_at.as_millis()),
                None,
            ),
            AttemptOutcome::Failed { status_code, error } => {
                ("failed", *status_code, Some(error.as_str()), None, None)
            }
        };
        sql(
            "UPDATE webhook_deliveries SET status = $2, attempts = attempts + 1, \
             last_status_code = $3, last_error = $4, \
             next_attempt_at = COALESCE($5, next_attempt_at), delivered_at = $6, \
             lease_until = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(code)
        .bind(error)
        .bind(next)
        .bind(delivered)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        sql("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_scalar(&self.db)
            .await
    }

    async fn get_delivery(&self, id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        sql(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional::<DeliverySqlRow>(&self.db)
        .await?
        .map(TryInto::try_into)
        .transpose()
    }

    async fn redeliver(
        &self,
        id: &str,
        now: Timestamp,
        audit: &NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.begin_write().await?;
        lock_seq(&mut tx, 0).await?;
        let done = sql(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $2, \
                        lease_until = NULL, created_at = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(now.as_millis())
        .execute(&mut tx)
        .await?;
        if done == 0 {
            return Ok(false);
        }
        audit_and_commit(tx, audit).await?;
        Ok(true)
    }
}

/// An endpoint's event types, sorted.
async fn subscriptions_of(db: &Db, id: &str) -> Result<Vec<String>, StoreError> {
    let rows: Vec<(String,)> = sql(
        "SELECT event_type FROM webhook_subscriptions WHERE endpoint_id = $1 ORDER BY event_type",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(event,)| event).collect())
}

async fn write_subscriptions(tx: &mut Tx, id: &str, events: &[String]) -> Result<(), StoreError> {
    for event in events {
        sql("INSERT INTO webhook_subscriptions (endpoint_id, event_type) VALUES ($1, $2)")
            .bind(id)
            .bind(event.as_str())
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
