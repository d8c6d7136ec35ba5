//! The audit chain's append, shared by every writer: `Store::write` and the
//! admin-plane writes (webhook endpoints, redeliveries, stale policies).

use super::{
    NewAuditEvent, StoreError, audit_chain,
    db::{Tx, sql},
    event_payload,
};

/// Takes the change_seq row lock and reserves `n` sequence numbers; returns
/// the last one. The lock serialises committers from here on: it keeps
/// sequence order equal to commit order, and the audit chain linear. An
/// admin write that changes no key takes it with `n = 0` before its audit.
pub(crate) async fn lock_seq(tx: &mut Tx, n: i64) -> Result<i64, StoreError> {
    sql("UPDATE change_seq SET last = last + $1 WHERE id = 1 RETURNING last")
        .bind(n)
        .fetch_scalar(tx)
        .await
}

/// Appends `events` to the audit chain in `tx`, each with its webhook
/// deliveries (the outbox). The caller holds the change_seq lock
/// ([`lock_seq`]), so the previous hash read here is the chain's head until
/// the commit.
pub(crate) async fn append_audit(tx: &mut Tx, events: &[NewAuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut prev: Vec<u8> = sql("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1")
        .fetch_optional::<(Option<Vec<u8>>,)>(&mut *tx)
        .await?
        .and_then(|(h,)| h)
        .unwrap_or_else(|| audit_chain::GENESIS.to_vec());
    for event in events {
        let hash = audit_chain::link(
            &prev,
            &audit_chain::Fields {
                at: event.at,
                actor: &event.actor,
                action: event.action,
                key_id: event.key_id.as_ref().map(|k| k.as_str()),
                owner_id: event.owner_id.as_ref().map(|o| o.as_str()),
                reason: event.reason.as_deref(),
                changes: &event.changes,
                request_id: event.request_id.as_deref(),
            },
        );
        let audit_id: i64 = sql(
            "INSERT INTO audit_events (at, actor, action, key_id, owner_id, reason, \
             changes, request_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(event.at.as_millis())
        .bind(event.actor.as_str())
        .bind(event.action)
        .bind(event.key_id.as_ref().map(|k| k.as_str()))
        .bind(event.owner_id.as_ref().map(|o| o.as_str()))
        .bind(event.reason.clone())
        .bind(event.changes.clone())
        .bind(event.request_id.clone())
        .bind(prev)
        .bind(hash.to_vec())
        .fetch_scalar(&mut *tx)
        .await?;
        prev = hash.to_vec();
        // One delivery per subscribed endpoint, in this transaction, so an
        // event is never lost or sent without being recorded.
        let event_id = format!("evt_{audit_id}");
        sql(
            "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, event_type, \
             payload, status, attempts, next_attempt_at, created_at) \
             SELECT $1 || ':' || e.id, $1, e.id, $2, $3, 'pending', 0, $4, $4 \
             FROM webhook_endpoints e WHERE e.enabled AND EXISTS (\
             SELECT 1 FROM webhook_subscriptions s WHERE s.endpoint_id = e.id \
             AND (s.event_type = $2 OR s.event_type = '*'))",
        )
        .bind(event_id.as_str())
        .bind(event.action)
        .bind(event_payload(&event_id, event))
        .bind(event.at.as_millis())
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// Adds `lock_seq` and `append_audit` to `$store` over `$db`.
macro_rules! impl_audit_sql {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Takes the change_seq row lock and reserves `n` sequence
            /// numbers; returns the last one. The lock serialises committers
            /// from here on: it keeps sequence order equal to commit order,
            /// and the audit chain linear.
            async fn lock_seq(
                tx: &mut sqlx::Transaction<'static, $db>,
                n: i64,
            ) -> Result<i64, $crate::store::StoreError> {
                Ok(sqlx::query_scalar::<$db, i64>(
                    "UPDATE change_seq SET last = last + $1 WHERE id = 1 RETURNING last",
                )
                .bind(n)
                .fetch_one(&mut **tx)
                .await?)
            }

            /// Appends `events` to the audit chain in `tx`, each with its
            /// webhook deliveries. The caller holds the change_seq lock
            /// ([`Self::lock_seq`]), so the previous hash read here is the
            /// chain's head until the commit.
            async fn append_audit(
                tx: &mut sqlx::Transaction<'static, $db>,
                events: &[$crate::store::NewAuditEvent],
            ) -> Result<(), $crate::store::StoreError> {
                if events.is_empty() {
                    return Ok(());
                }
                let mut prev: Vec<u8> = sqlx::query_scalar::<$db, Option<Vec<u8>>>(
                    "SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1",
                )
                .fetch_optional(&mut **tx)
                .await?
                .flatten()
                .unwrap_or_else(|| $crate::store::audit_chain::GENESIS.to_vec());
                for event in events {
                    let hash = $crate::store::audit_chain::link(
                        &prev,
                        &$crate::store::audit_chain::Fields {
                            at: event.at,
                            actor: &event.actor,
                            action: event.action,
                            key_id: event.key_id.as_ref().map(|k| k.as_str()),
                            owner_id: event.owner_id.as_ref().map(|o| o.as_str()),
                            reason: event.reason.as_deref(),
                            changes: &event.changes,
                            request_id: event.request_id.as_deref(),
                        },
                    );
                    let audit_id: i64 = sqlx::query_scalar::<$db, i64>(
                        "INSERT INTO audit_events (at, actor, action, key_id, owner_id, reason, \
                         changes, request_id, prev_hash, hash) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                    )
                    .bind(event.at.as_millis())
                    .bind(event.actor.clone())
                    .bind(event.action)
                    .bind(event.key_id.as_ref().map(|k| k.as_str().to_owned()))
                    .bind(event.owner_id.as_ref().map(|o| o.as_str().to_owned()))
                    .bind(event.reason.clone())
                    .bind(sqlx::types::Json(event.changes.clone()))
                    .bind(event.request_id.clone())
                    .bind(prev)
                    .bind(hash.to_vec())
                    .fetch_one(&mut **tx)
                    .await?;
                    prev = hash.to_vec();
                    // The outbox: one delivery per subscribed endpoint, in
                    // this transaction, so an event is never lost or sent
                    // without being recorded.
                    let event_id = format!("evt_{audit_id}");
                    sqlx::query::<$db>(
                        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, event_type, \
                         payload, status, attempts, next_attempt_at, created_at) \
                         SELECT $1 || ':' || e.id, $1, e.id, $2, $3, 'pending', 0, $4, $4 \
                         FROM webhook_endpoints e WHERE e.enabled AND EXISTS (\
                         SELECT 1 FROM webhook_subscriptions s WHERE s.endpoint_id = e.id \
                         AND (s.event_type = $2 OR s.event_type = '*'))",
                    )
                    .bind(event_id.clone())
                    .bind(event.action)
                    .bind($crate::store::event_payload(&event_id, event))
                    .bind(event.at.as_millis())
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }
        }
    };
}

pub(super) use impl_audit_sql;
