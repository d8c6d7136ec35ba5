//! Tables for people, JSON for scripts.

use serde_json::{Value, json};

use crate::grpc::pb;

pub struct Out {
    json: bool,
}

fn time(t: &Option<crate::grpc::wkt::Timestamp>) -> Value {
    t.as_ref().map_or(Value::Null, |t| {
        json!(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
    })
}

fn state_name(s: pb::KeyState) -> &'static str {
    match s {
        pb::KeyState::Active => "active",
        pb::KeyState::Expired => "expired",
        pb::KeyState::Revoked => "revoked",
        pb::KeyState::Disabled => "disabled",
        pb::KeyState::Unspecified => "",
    }
}

pub fn key_json(k: &pb::Key) -> Value {
    json!({
        "id": k.id,
        "owner_id": k.owner_id,
        "name": k.name,
        "type": if k.r#type() == pb::KeyType::Publishable { "publishable" } else { "secret" },
        "environment": if k.environment() == pb::Environment::Live { "live" } else { "test" },
        "state": state_name(k.state()),
        "hint": k.hint,
        "scopes": k.scopes,
        "metadata": k.metadata,
        "create_time_ms": time(&k.create_time),
        "expire_time_ms": time(&k.expire_time),
        "revoke_time_ms": time(&k.revoke_time),
        "rotated_from": k.rotated_from,
        "rotated_to": k.rotated_to,
        "last_used_time_ms": time(&k.last_used_time),
        "version": k.version,
        "keyspace": k.keyspace,
        "roles": k.roles,
    })
}

pub fn key_row(k: &pb::Key) -> Vec<String> {
    vec![
        k.id.clone(),
        k.owner_id.clone(),
        k.name.clone(),
        state_name(k.state()).to_owned(),
        k.hint.clone(),
        k.scopes.join(" "),
    ]
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

impl Out {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Warns, on stderr, that a secret follows and will not be shown again.
    pub fn secret_once(&self, secret: &str) {
        if !secret.is_empty() {
            eprintln!(
                "keysmith: the secret below is shown once; store it now, it cannot be retrieved later"
            );
        }
    }

    pub fn key(&self, k: Option<&pb::Key>, extra: &[(&str, &str)]) {
        let Some(k) = k else { return };
        if self.json {
            let mut v = key_json(k);
            for (name, value) in extra {
                v[*name] = json!(value);
            }
            println!("{v}");
            return;
        }
        let mut rows = vec![
            vec!["id".into(), k.id.clone()],
            vec!["owner".into(), k.owner_id.clone()],
            vec!["name".into(), k.name.clone()],
            vec!["state".into(), state_name(k.state()).into()],
            vec!["hint".into(), k.hint.clone()],
            vec!["scopes".into(), k.scopes.join(" ")],
        ];
        if !k.rotated_to.is_empty() {
            rows.push(vec!["rotated to".into(), k.rotated_to.clone()]);
        }
        for (name, value) in extra {
            rows.push(vec![name.to_string(), value.to_string()]);
        }
        table(&["FIELD", "VALUE"], &rows);
    }

    pub fn list(&self, headers: &[&str], rows: Vec<Vec<String>>, json: Value) {
        if self.json {
            println!("{json}");
        } else {
            table(headers, &rows);
        }
    }

    pub fn usage(&self, u: &pb::GetKeyUsageResponse) {
        let t = u.totals.unwrap_or_default();
        if self.json {
            println!(
                "{}",
                json!({
                    "total": t.total, "valid": t.valid, "revoked": t.revoked, "expired": t.expired,
                    "disabled": t.disabled, "insufficient_scope": t.insufficient_scope,
                    "ip_not_allowed": t.ip_not_allowed, "referrer_not_allowed": t.referrer_not_allowed,
                    "resource_not_allowed": t.resource_not_allowed, "rate_limited": t.rate_limited,
                    "would_deny": t.would_deny, "last_used_time_ms": time(&u.last_used_time),
                    "last_client_ip": u.last_client_ip,
                })
            );
            return;
        }
        let rows = vec![
            vec!["total".into(), t.total.to_string()],
            vec!["valid".into(), t.valid.to_string()],
            vec!["denied".into(), (t.total - t.valid).to_string()],
            vec!["would deny (report-only)".into(), t.would_deny.to_string()],
            vec!["last client ip".into(), u.last_client_ip.clone()],
        ];
        table(&["LAST 24H", "CALLS"], &rows);
    }

    pub fn audit(&self, events: &[pb::AuditEvent]) {
        let rows = events
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    e.action.clone(),
                    e.key_id.clone(),
                    e.actor.clone(),
                    e.reason.clone(),
                ]
            })
            .collect();
        let json = json!(events
            .iter()
            .map(|e| json!({
                "id": e.id, "time_ms": time(&e.time), "actor": e.actor, "action": e.action,
                "key_id": e.key_id, "owner_id": e.owner_id, "reason": e.reason,
                "changes": serde_json::from_str::<Value>(&e.changes_json).unwrap_or(Value::Null),
            }))
            .collect::<Vec<_>>());
        self.list(&["ID", "ACTION", "KEY", "ACTOR", "REASON"], rows, json);
    }

    pub fn endpoints(&self, endpoints: &[pb::WebhookEndpoint], secret: Option<&str>) {
        let rows = endpoints
            .iter()
            .map(|e| {
                vec![
                    e.id.clone(),
                    e.url.clone(),
                    e.events.join(" "),
                    e.enabled.to_string(),
                ]
            })
            .collect();
        let mut json = json!(endpoints
            .iter()
            .map(|e| json!({ "id": e.id, "url": e.url, "events": e.events, "enabled": e.enabled }))
            .collect::<Vec<_>>());
        if let (Some(secret), Some(first)) = (secret, json.get_mut(0)) {
            first["signing_secret"] = json!(secret);
        }
        if let (Some(secret), false) = (secret, self.json) {
            println!("signing secret: {secret}");
        }
        self.list(&["ID", "URL", "EVENTS", "ENABLED"], rows, json);
    }

    pub fn deliveries(&self, ds: &[pb::WebhookDelivery]) {
        let status = |d: &pb::WebhookDelivery| format!("{:?}", d.status()).to_lowercase();
        let rows = ds
            .iter()
            .map(|d| {
                vec![
                    d.id.clone(),
                    d.event_type.clone(),
                    status(d),
                    d.attempts.to_string(),
                    d.last_error.clone(),
                ]
            })
            .collect();
        let json = json!(ds
            .iter()
            .map(|d| json!({
                "id": d.id, "event_id": d.event_id, "event_type": d.event_type, "status": status(d),
                "attempts": d.attempts, "last_status_code": d.last_status_code, "last_error": d.last_error,
            }))
            .collect::<Vec<_>>());
        self.list(
            &["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST ERROR"],
            rows,
            json,
        );
    }

    /// One admin token; with a secret (just minted), the secret last, alone
    /// on its line (or as `secret` in the JSON).
    pub fn token(&self, t: Option<&pb::AdminToken>, secret: Option<&str>) {
        let Some(t) = t else { return };
        if self.json {
            let mut v = token_json(t);
            if let Some(secret) = secret {
                v["secret"] = json!(secret);
            }
            println!("{v}");
            return;
        }
        let limit = |l: &[String]| {
            if l.is_empty() {
                "any".to_owned()
            } else {
                l.join(" ")
            }
        };
        let rows = vec![
            vec!["id".into(), t.id.clone()],
            vec!["name".into(), t.name.clone()],
            vec!["state".into(), token_state(t.state()).into()],
            vec!["permissions".into(), t.permissions.join(" ")],
            vec!["keyspaces".into(), limit(&t.keyspaces)],
            vec!["owners".into(), limit(&t.owners)],
            vec!["expires (ms)".into(), time(&t.expire_time).to_string()],
            vec!["last used (ms)".into(), time(&t.last_used_time).to_string()],
            vec!["created by".into(), t.created_by.clone()],
        ];
        table(&["FIELD", "VALUE"], &rows);
        if let Some(secret) = secret {
            println!("{secret}");
        }
    }

    pub fn tokens(&self, ts: &[pb::AdminToken], next_page_token: &str) {
        let rows = ts
            .iter()
            .map(|t| {
                vec![
                    t.id.clone(),
                    t.name.clone(),
                    token_state(t.state()).to_owned(),
                    t.permissions.join(" "),
                    t.owners.join(" "),
                ]
            })
            .collect();
        let json = json!({
            "tokens": ts.iter().map(token_json).collect::<Vec<_>>(),
            "next_page_token": next_page_token,
        });
        self.list(
            &["ID", "NAME", "STATE", "PERMISSIONS", "OWNERS"],
            rows,
            json,
        );
    }
}

fn token_state(s: pb::AdminTokenState) -> &'static str {
    match s {
        pb::AdminTokenState::Active => "active",
        pb::AdminTokenState::Expired => "expired",
        pb::AdminTokenState::Revoked => "revoked",
        pb::AdminTokenState::Unspecified => "",
    }
}

fn token_json(t: &pb::AdminToken) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "state": token_state(t.state()),
        "permissions": t.permissions,
        "keyspaces": t.keyspaces,
        "owners": t.owners,
        "create_time_ms": time(&t.create_time),
        "expire_time_ms": time(&t.expire_time),
        "last_used_time_ms": time(&t.last_used_time),
        "revoke_time_ms": time(&t.revoke_time),
        "revoke_reason": t.revoke_reason,
        "created_by": t.created_by,
    })
}
