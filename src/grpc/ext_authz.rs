//! Envoy's external authorization (`envoy.service.auth.v3.Authorization`),
//! served on the verify listener. Like Verify, it answers from memory.
//!
//! - The key comes from `authorization: Bearer …` or the configured header
//!   (`x-api-key` by default).
//! - The client IP comes from Envoy's source address, the referrer from
//!   `referer` (or `origin`), the resource from the path (without query and
//!   leading `/`), and the required scopes from the route's
//!   `context_extensions["keysmith_scopes"]` (space- or comma-separated).
//! - Unknown, malformed, revoked, expired or disabled keys get 401 with
//!   `WWW-Authenticate`; scope and restriction failures 403; rate limits 429
//!   with `retry-after`.
//! - On allow, the key header is stripped and the key's id, owner and
//!   scopes go upstream as headers and as dynamic metadata.

use std::{collections::HashMap, net::IpAddr, sync::Arc, time::Duration};

use envoy_types::{
    ext_authz::v3::{
        CheckRequestExt, CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
        pb::{Authorization, CheckRequest, CheckResponse, HttpStatusCode},
    },
    pb::google::protobuf::{ListValue, Struct, Value, value::Kind},
};
use tonic::{Request, Response, Status};
use zeroize::{Zeroize, Zeroizing};

use crate::{
    domain::{Clock, MAX_SCOPES, mono_nanos, scope},
    index::{KeyIndex, ReplicaState},
    metrics::Metrics,
    usage::Recorder,
    verify::{self, Code, Outcome, Request as VerifyRequest},
};

/// The context extension that names the scopes a route requires.
pub const SCOPES_EXTENSION: &str = "keysmith_scopes";

pub struct ExtAuthzService {
    index: Arc<KeyIndex>,
    metrics: Metrics,
    replica: Arc<ReplicaState>,
    /// Refuse when the change log was last read longer ago, like Verify.
    fail_closed_after: Option<Duration>,
    usage: Arc<Recorder>,
    clock: Clock,
    /// Lowercase name of the header that may carry the key.
    key_header: String,
}

impl ExtAuthzService {
    pub fn new(
        index: Arc<KeyIndex>,
        metrics: Metrics,
        usage: Arc<Recorder>,
        clock: Clock,
        replica: Arc<ReplicaState>,
        fail_closed_after: Option<Duration>,
        key_header: &str,
    ) -> Self {
        Self {
            index,
            metrics,
            replica,
            fail_closed_after,
            usage,
            clock,
            key_header: key_header.to_ascii_lowercase(),
        }
    }

    /// The presented key and the header it came in.
    fn key<'a>(&self, headers: &'a HashMap<String, String>) -> Option<(&'a str, &'static str)> {
        if let Some(value) = headers.get("authorization")
            && let Some((scheme, token)) = value.split_once(' ')
            && scheme.eq_ignore_ascii_case("bearer")
        {
            return Some((token.trim(), "authorization"));
        }
        headers.get(&self.key_header).map(|k| (k.trim(), "custom"))
    }
}

fn denied(
    status: HttpStatusCode,
    code: Code,
    detail: &str,
    extra: &[(&str, String)],
) -> CheckResponse {
    let mut http = DeniedHttpResponseBuilder::new();
    http.set_http_status(status);
    for (k, v) in extra {
        http.add_header(*k, v.clone(), None, false);
    }
    http.add_header("content-type", "application/json", None, false);
    http.set_body(serde_json::json!({ "error": code_name(code), "detail": detail }).to_string());
    let grpc = match status {
        HttpStatusCode::Unauthorized => Status::unauthenticated(detail),
        HttpStatusCode::TooManyRequests => Status::resource_exhausted(detail),
        _ => Status::permission_denied(detail),
    };
    let mut resp = CheckResponse::with_status(grpc);
    resp.set_http_response(http);
    resp
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Valid => "valid",
        Code::Malformed => "malformed",
        Code::NotFound => "not_found",
        Code::Revoked => "revoked",
        Code::Expired => "expired",
        Code::Disabled => "disabled",
        Code::InsufficientScope => "insufficient_scope",
        Code::IpNotAllowed => "ip_not_allowed",
        Code::ReferrerNotAllowed => "referrer_not_allowed",
        Code::ResourceNotAllowed => "resource_not_allowed",
        Code::RateLimited => "rate_limited",
    }
}

fn unauthorized(code: Code, detail: &str) -> CheckResponse {
    let challenge = format!(
        "Bearer realm=\"keysmith\", error=\"invalid_token\", error_description=\"{detail}\""
    );
    denied(
        HttpStatusCode::Unauthorized,
        code,
        detail,
        &[("www-authenticate", challenge)],
    )
}

fn text(s: String) -> Value {
    Value {
        kind: Some(Kind::StringValue(s)),
    }
}

fn allowed(o: &Outcome<'_>, key_header: &str) -> CheckResponse {
    let mut http = OkHttpResponseBuilder::new();
    http.remove_header(key_header);
    let mut metadata = Struct::default();
    if let Some(entry) = &o.entry {
        let k = entry;
        let (key_id, owner_id) = (k.key_id().into_string(), k.owner_id().to_owned());
        let scopes: Vec<String> = k.scopes().iter().map(|s| s.as_str().to_owned()).collect();
        http.add_header("x-keysmith-key-id", key_id.clone(), None, false);
        http.add_header("x-keysmith-owner-id", owner_id.clone(), None, false);
        http.add_header("x-keysmith-scopes", scopes.join(" "), None, false);
        http.add_header(
            "x-keysmith-environment",
            k.environment.as_str(),
            None,
            false,
        );
        if let Some(remaining) = o.rate_limit_remaining {
            http.add_header("x-ratelimit-remaining", remaining.to_string(), None, false);
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

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let mut req = req.into_inner();
        let answer = self.answer(&req);
        // The request's own copy of the key is wiped, not just dropped.
        if let Some(headers) = req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            for name in ["authorization", self.key_header.as_str()] {
                if let Some(value) = headers.headers.get_mut(name) {
                    value.zeroize();
                }
            }
        }
        answer.map(Response::new)
    }
}

impl ExtAuthzService {
    /// Decides a CheckRequest from memory, as Verify does.
    fn answer(&self, req: &CheckRequest) -> Result<CheckResponse, Status> {
        let started = std::time::Instant::now();
        if !self.index.is_ready() {
            return Err(Status::unavailable("the key index is still loading"));
        }
        if self.replica.fail_closed(self.fail_closed_after) {
            return Err(Status::unavailable(super::verify::FAIL_CLOSED));
        }
        let empty = HashMap::new();
        let headers = req.get_client_headers().unwrap_or(&empty);
        let Some((key, source)) = self.key(headers) else {
            return Ok(unauthorized(Code::Malformed, "no API key presented"));
        };
        let key = Zeroizing::new(key.to_owned());
        let key_header = if source == "authorization" {
            "authorization"
        } else {
            self.key_header.as_str()
        };
        let client_ip: Option<IpAddr> = req.get_client_address().and_then(|a| a.parse().ok());
        let referrer = headers
            .get("referer")
            .or_else(|| headers.get("origin"))
            .map_or("", String::as_str);
        let http = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref());
        let path = http.map_or("", |h| h.path.as_str());
        let resource = path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_start_matches('/');
        let extensions = req.attributes.as_ref().map(|a| &a.context_extensions);
        let required: Vec<String> = extensions
            .and_then(|e| e.get(SCOPES_EXTENSION))
            .map(|s| {
                s.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        // A bad scope list is the route's misconfiguration: fail closed, loudly.
        if required.len() > MAX_SCOPES || required.iter().any(|s| scope::check_required(s).is_err())
        {
            tracing::error!(
                extension = SCOPES_EXTENSION,
                "route requires malformed scopes; denying"
            );
            return Ok(denied(
                HttpStatusCode::Forbidden,
                Code::InsufficientScope,
                "route misconfigured",
                &[],
            ));
        }
        let request = VerifyRequest {
            required_scopes: &required,
            client_ip,
            referrer,
            resource,
        };
        let outcome = verify::verify(
            &self.index,
            &self.usage,
            &key,
            &request,
            self.clock.now(),
            mono_nanos,
        );
        let code = outcome.decision.code;
        let resp = match code {
            Code::Valid => allowed(&outcome, key_header),
            Code::Malformed | Code::NotFound | Code::Revoked | Code::Expired | Code::Disabled => {
                unauthorized(code, outcome.detail)
            }
            Code::RateLimited => {
                let secs = outcome
                    .retry_after
                    .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
                denied(
                    HttpStatusCode::TooManyRequests,
                    code,
                    outcome.detail,
                    &[("retry-after", secs.to_string())],
                )
            }
            Code::InsufficientScope
            | Code::IpNotAllowed
            | Code::ReferrerNotAllowed
            | Code::ResourceNotAllowed => {
                denied(HttpStatusCode::Forbidden, code, outcome.detail, &[])
            }
        };
        self.metrics
            .verify_latency
            .record(started.elapsed().as_secs_f64(), &[]);
        Ok(resp)
    }
}
