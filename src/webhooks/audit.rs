//! The audit events of endpoint and delivery changes. They name the
//! endpoint, where it sends (the URL's origin, and a SHA-256 of the whole
//! URL to match it by) and what it subscribes to. They never hold the
//! signing secret, nor the URL's path and query, which often carry the
//! receiver's own token (and every event also goes to `*` subscribers).

use serde_json::{Map, Value, json};

use crate::{
    domain::{Timestamp, webhook::WebhookUrl},
    keys::Actor,
    store::{DeliveryRow, EndpointPatch, EndpointRow, NewAuditEvent},
};

pub(super) fn created(at: Timestamp, actor: &Actor, e: &EndpointRow) -> NewAuditEvent {
    let mut changes = fields(e, "new");
    changes.insert("endpoint_id".into(), json!(e.id));
    actor.event(at, "webhook_endpoint.created", changes)
}

/// `old` is the endpoint as read just before the update; each field the
/// patch sets becomes `{"old": …, "new": …}`.
pub(super) fn updated(
    at: Timestamp,
    actor: &Actor,
    old: &EndpointRow,
    patch: &EndpointPatch,
) -> NewAuditEvent {
    let next = EndpointRow {
        url: patch.url.clone().unwrap_or_else(|| old.url.clone()),
        description: patch
            .description
            .clone()
            .unwrap_or_else(|| old.description.clone()),
        enabled: patch.enabled.unwrap_or(old.enabled),
        events: patch.events.clone().unwrap_or_else(|| old.events.clone()),
        ..old.clone()
    };
    let (before, after) = (fields(old, "old"), fields(&next, "new"));
    let mut changes = Map::new();
    for (name, new) in after {
        let set = match name.as_str() {
            "url" | "url_sha256" => patch.url.is_some(),
            "events" => patch.events.is_some(),
            "enabled" => patch.enabled.is_some(),
            _ => patch.description.is_some(),
        };
        if set {
            let mut diff = before[&name].clone();
            diff["new"] = new["new"].clone();
            changes.insert(name, diff);
        }
    }
    changes.insert("endpoint_id".into(), json!(old.id));
    actor.event(at, "webhook_endpoint.updated", changes)
}

pub(super) fn deleted(at: Timestamp, actor: &Actor, old: &EndpointRow) -> NewAuditEvent {
    let mut changes = fields(old, "old");
    changes.insert("endpoint_id".into(), json!(old.id));
    actor.event(at, "webhook_endpoint.deleted", changes)
}

pub(super) fn redelivered(at: Timestamp, actor: &Actor, d: &DeliveryRow) -> NewAuditEvent {
    let changes = json!({
        "delivery_id": d.id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": { "old": d.status.as_str(), "new": "pending" },
    });
    let Value::Object(changes) = changes else {
        unreachable!("a json object")
    };
    actor.event(at, "webhook_delivery.redelivered", changes)
}

/// Each audited field of `e` as `{side: value}`.
fn fields(e: &EndpointRow, side: &str) -> Map<String, Value> {
    // Stored URLs parsed when they were written; `allow_private` only
    // skips the address check, which is not the point here.
    let (origin, fingerprint) = match WebhookUrl::parse(&e.url, true) {
        Ok(u) => (u.origin(), u.fingerprint()),
        Err(_) => ("unparsable".to_owned(), String::new()),
    };
    [
        ("url", json!(origin)),
        ("url_sha256", json!(fingerprint)),
        ("events", json!(e.events)),
        ("enabled", json!(e.enabled)),
        ("description", json!(e.description)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), json!({ side: v })))
    .collect()
}
