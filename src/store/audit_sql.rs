//! The audit chain: its append, shared by every writer (`Store::write` and
//! the admin-plane writes: webhook endpoints, redeliveries, stale policies),
//! and its reads.

use super::{
    AuditEvent, AuditFilter, NewAuditEvent, StoreError, audit_chain,
    db::{Db, Tx, sql},
    event_payload,
    limits_sql::{keyspace_clause, owner_clause},
    rows::{AUDIT_COLUMNS, AuditRow},
};
use crate::domain::OwnerId;

/// Appends `audit` and commits `tx`: the end of an admin write that is one
/// audited change, after the change_seq lock that keeps the chain linear.
pub(super) async fn audit_and_commit(mut tx: Tx, audit: &NewAuditEvent) -> Result<(), StoreError> {
    append_audit(&mut tx, std::slice::from_ref(audit)).await?;
    tx.commit().await
}

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

/// Newest first, below `f.before`; an absent filter binds `NULL`.
pub(super) async fn list_audit_events(
    db: &Db,
    f: &AuditFilter,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows: Vec<AuditRow> = sql(format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE ($1 IS NULL OR key_id = $1) \
         AND ($2 IS NULL OR owner_id = $2) AND ($3 IS NULL OR id < $3) \
         AND ($5 IS NULL OR action = $5) AND ($6 IS NULL OR at >= $6) \
         AND ($7 IS NULL OR at < $7){owners}{keyspaces} ORDER BY id DESC LIMIT $4",
        owners = owner_clause(8, f.owners.as_deref(), f.owned_only),
        // Events name a key, not its keyspace: a keyspace limit keeps the
        // events about keys of those keyspaces (none about no key).
        keyspaces = match f.keyspaces.as_deref() {
            Some(ks) => format!(
                " AND key_id IN (SELECT id FROM keys WHERE TRUE{})",
                keyspace_clause(
                    8 + f.owners.as_ref().map_or(0, Vec::len),
                    Some(ks),
                    "keyspace_id"
                )
            ),
            None => String::new(),
        },
    ))
    .bind(f.key_id.as_ref().map(|k| k.as_str()))
    .bind(f.owner_id.as_ref().map(|o| o.as_str()))
    .bind(f.before)
    .bind(i64::from(f.limit))
    .bind(f.action.clone())
    .bind(f.from.map(|t| t.as_millis()))
    .bind(f.to.map(|t| t.as_millis()))
    .bind_all(f.owners.iter().flatten().map(OwnerId::as_str))
    .bind_all(f.keyspaces.iter().flatten().map(String::as_str))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Events with ids above `after`, oldest first: for walking the chain.
pub(super) async fn audit_chain(
    db: &Db,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditEvent>, StoreError> {
    let rows: Vec<AuditRow> = sql(format!(
        "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(i64::from(limit))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}
