//! The CheckResponses ext_authz answers with: an allow that sets the
//! caller's identity for the upstream, and denials that say no more than the
//! code and a fixed detail.

use std::collections::HashMap;

use envoy_types::{
    ext_authz::v3::{
        CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
        pb::{CheckResponse, HeaderAppendAction, HttpStatusCode},
    },
    pb::google::protobuf::{ListValue, Struct, Value, value::Kind},
};
use tonic::Status;

use crate::{
    domain::Timestamp,
    limits::Kind as LimitKind,
    verify::{Code, Outcome},
};

/// Every identity header keysmith sets starts with this. The upstream trusts
/// them, so a client's own copies never get through (see [`allowed`]).
pub const IDENTITY_PREFIX: &str = "x-keysmith-";
const KEY_ID: &str = "x-keysmith-key-id";
const OWNER_ID: &str = "x-keysmith-owner-id";
const SCOPES: &str = "x-keysmith-scopes";
const ENVIRONMENT: &str = "x-keysmith-environment";
/// The identity headers an allow sets (and so overwrites).
const SET: [&str; 4] = [KEY_ID, OWNER_ID, SCOPES, ENVIRONMENT];
const RATE_LIMIT: &str = "x-ratelimit-limit";
const RATE_REMAINING: &str = "x-ratelimit-remaining";
const RATE_RESET: &str = "x-ratelimit-reset";

/// A denial: `status` for the client, a JSON body with the error's name and
/// a fixed detail, and nothing about the key (no owner, scopes or metadata).
pub fn denied(
    status: HttpStatusCode,
    error: &str,
    detail: &str,
    extra: &[(&str, String)],
) -> CheckResponse {
    let mut http = DeniedHttpResponseBuilder::new();
    http.set_http_status(status);
    for (k, v) in extra {
        http.add_header(*k, v.clone(), None, false);
    }
    http.add_header("content-type", "application/json", None, false);
    http.set_body(serde_json::json!({ "error": error, "detail": detail }).to_string());
    let grpc = match status {
        HttpStatusCode::Unauthorized => Status::unauthenticated(detail),
        HttpStatusCode::TooManyRequests => Status::resource_exhausted(detail),
        _ => Status::permission_denied(detail),
    };
    let mut resp = CheckResponse::with_status(grpc);
    resp.set_http_response(http);
    resp
}

/// The `x-ratelimit-limit`, `-remaining` and `-reset` (seconds) headers of
/// the tightest named limit: the one with the fewest tokens left.
pub fn rate_headers(o: &Outcome<'_>) -> Vec<(&'static str, String)> {
    let now = Timestamp::now().as_millis();
    let tightest = o
        .limits
        .iter()
        .filter_map(|r| match &r.pool.kind {
            LimitKind::Tokens { rate, .. } => Some((r, rate)),
            LimitKind::Credits => None,
        })
        .min_by_key(|(r, _)| r.remaining);
    let Some((r, rate)) = tightest else {
        return Vec::new();
    };
    let reset_ms = r.reset_at.map_or(0, |t| (t.as_millis() - now).max(0));
    vec![
        (RATE_LIMIT, rate.requests().to_string()),
        (RATE_REMAINING, r.remaining.max(0).to_string()),
        (RATE_RESET, ((reset_ms + 999) / 1000).to_string()),
    ]
}

pub fn unauthorized(code: Code, detail: &str) -> CheckResponse {
    let challenge = format!(
        "Bearer realm=\"keysmith\", error=\"invalid_token\", error_description=\"{detail}\""
    );
    denied(
        HttpStatusCode::Unauthorized,
        code.name(),
        detail,
        &[("www-authenticate", challenge)],
    )
}

fn text(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

/// Replaces whatever the client sent under the same name: Envoy's default,
/// APPEND_IF_EXISTS_OR_ADD, would let a client's `x-keysmith-owner-id`
/// travel upstream next to ours.
fn set(http: &mut OkHttpResponseBuilder, name: &str, value: String) {
    http.add_header(
        name,
        value,
        Some(HeaderAppendAction::OverwriteIfExistsOrAdd),
        false,
    );
}

/// An allow: the key's header is removed, the identity headers are set
/// (overwriting), and every other `x-keysmith-*` header the client sent is
/// removed, so the upstream sees only what keysmith vouches for.
///
/// The headers keysmith sets are not also listed for removal: Envoy applies
/// `headers_to_remove` after the headers to set, and would drop ours.
pub fn allowed(
    o: &Outcome<'_>,
    key_header: &str,
    client_headers: &HashMap<String, String>,
) -> CheckResponse {
    let mut http = OkHttpResponseBuilder::new();
    http.remove_header(key_header);
    for name in client_headers.keys() {
        let spoofed = name
            .get(..IDENTITY_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(IDENTITY_PREFIX));
        if spoofed && !SET.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            http.remove_header(name.as_str());
        }
    }
    let mut metadata = Struct::default();
    if let Some(k) = &o.entry {
        let (key_id, owner_id) = (k.key_id().into_string(), k.owner_id().to_owned());
        let scopes: Vec<String> = k.scopes().iter().map(|s| s.as_str().to_owned()).collect();
        set(&mut http, KEY_ID, key_id.clone());
        set(&mut http, OWNER_ID, owner_id.clone());
        set(&mut http, SCOPES, scopes.join(" "));
        set(&mut http, ENVIRONMENT, k.environment.as_str().to_owned());
        let named = rate_headers(o);
        if !named.is_empty() {
            for (name, value) in named {
                set(&mut http, name, value);
            }
        } else {
            match o.rate_limit_remaining {
                Some(remaining) => set(&mut http, RATE_REMAINING, remaining.to_string()),
                // Only keysmith speaks for the key's rate limit upstream.
                None if client_headers.contains_key(RATE_REMAINING) => {
                    http.remove_header(RATE_REMAINING);
                }
                None => {}
            }
        }
        let list = scopes.into_iter().map(text).collect();
        metadata.fields.insert("key_id".into(), text(key_id));
        metadata.fields.insert("owner_id".into(), text(owner_id));
        metadata
            .fields
            .insert("environment".into(), text(k.environment.as_str().into()));
        metadata.fields.insert(
            "scopes".into(),
            Value {
                kind: Some(Kind::ListValue(ListValue { values: list })),
            },
        );
    }
    let mut resp = CheckResponse::with_status(Status::ok(""));
    resp.set_http_response(http);
    resp.set_dynamic_metadata(Some(metadata));
    resp
}
