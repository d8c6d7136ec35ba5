//! Envoy's external authorization (`envoy.service.auth.v3.Authorization`),
//! served on the verify listener. Like Verify, it answers from memory.
//!
//! - The key comes from `authorization: Bearer …` or the configured header
//!   (`x-api-key` by default).
//! - The client IP comes from Envoy's source address, the referrer from
//!   `referer` (or `origin`), the resource from the path (without its query
//!   and its one leading `/`, otherwise as written: a non-canonical path is
//!   refused like any resource, see `domain::restriction::resource`), and
//!   the required scopes from the route's
//!   `context_extensions["keysmith_scopes"]` (space- or comma-separated, with
//!   `a|b` for "either"; see `route_scopes.rs`; a malformed list denies with
//!   500).
//! - The keyspace a route accepts keys of comes from
//!   `context_extensions["keysmith_keyspace"]` (a keyspace id; unset: any).
//!   A key of another keyspace is refused as an unknown key is (401); a
//!   malformed id denies with 500.
//! - Unknown, malformed, revoked, expired or disabled keys get 401 with
//!   `WWW-Authenticate`; scope and restriction failures 403; rate limits and
//!   spent credits 429 with `retry-after`, the `x-ratelimit-*` headers of the
//!   tightest limit, and a body naming `rate_limited` or `usage_exceeded`. A denial names no owner, scopes or metadata.
//! - On allow, the key header is stripped, the key's id, owner and scopes
//!   go upstream as headers (overwriting the client's) and as dynamic
//!   metadata, and any other `x-keysmith-*` header the client sent is
//!   removed (`response.rs`).

mod response;
mod route_scopes;

use std::{collections::HashMap, net::IpAddr};

use envoy_types::ext_authz::v3::{
    CheckRequestExt,
    pb::{Authorization, CheckRequest, CheckResponse, HttpStatusCode},
};
use response::{allowed, denied, unauthorized};
use route_scopes::RouteScopes;

use super::presented::{Presented, Wipe};
use tonic::{Request, Response, Status};
use zeroize::Zeroize;

use crate::{
    auth::VerifyGate,
    domain::{Permission, TokenLimits},
    verify::{Class, Code, Request as VerifyRequest, Verifier},
};

/// The context extension that names the scopes a route requires.
pub const SCOPES_EXTENSION: &str = "keysmith_scopes";
/// The context extension that names the keyspace a route accepts keys of.
pub const KEYSPACE_EXTENSION: &str = "keysmith_keyspace";

pub struct ExtAuthzService {
    verifier: Verifier,
    /// Lowercase name of the header that may carry the key.
    key_header: String,
    /// The verify listener's own credential, when required: Envoy sends it
    /// as the gRPC call's `authorization` (its `initial_metadata`), apart
    /// from the HTTP request's headers that the CheckRequest carries.
    gate: VerifyGate,
}

impl ExtAuthzService {
    pub fn new(verifier: Verifier, key_header: &str, gate: VerifyGate) -> Self {
        Self {
            verifier,
            key_header: key_header.to_ascii_lowercase(),
            gate,
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

/// A CheckRequest with the name of the configured key header: Envoy's copy
/// of the client's headers holds the key, under `authorization` or that name.
struct Check<'a> {
    req: CheckRequest,
    key_header: &'a str,
}

impl Wipe for Check<'_> {
    fn wipe(&mut self) {
        if let Some(headers) = self
            .req
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
        {
            for name in ["authorization", self.key_header] {
                if let Some(value) = headers.headers.get_mut(name) {
                    value.zeroize();
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthzService {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        // Wrapped first: whatever `answer` returns, the key headers are wiped.
        let (metadata, _, req) = req.into_parts();
        let presented = Presented::new(Check {
            req,
            key_header: &self.key_header,
        });
        let admitted = self
            .gate
            .admit(super::bearer_in(&metadata), Permission::Verify)?;
        self.answer(&presented.req, admitted.limits())
            .await
            .map(Response::new)
    }
}

impl ExtAuthzService {
    /// Decides a CheckRequest from memory, as Verify does, for a caller
    /// confined to `within`.
    async fn answer(
        &self,
        req: &CheckRequest,
        within: &TokenLimits,
    ) -> Result<CheckResponse, Status> {
        self.verifier.ready()?;
        let empty = HashMap::new();
        let headers = req.get_client_headers().unwrap_or(&empty);
        let Some((key, source)) = self.key(headers) else {
            return Ok(unauthorized(Code::Malformed, "no API key presented"));
        };
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
        // The query is not part of the resource; a fragment has no business
        // in a request path, so it stays in and makes the resource
        // non-canonical. Only the one leading `/` goes: `//acct_1/x` keeps an
        // empty first segment, and is refused like any other.
        let before_query = path.split_once('?').map_or(path, |(p, _)| p);
        let resource = before_query.strip_prefix('/').unwrap_or(before_query);
        let extensions = req.attributes.as_ref().map(|a| &a.context_extensions);
        let text = extensions
            .and_then(|e| e.get(SCOPES_EXTENSION))
            .map_or("", String::as_str);
        // A bad scope list is the route's misconfiguration: fail closed, loudly.
        let Some(required) = RouteScopes::parse(text) else {
            tracing::error!(
                extension = SCOPES_EXTENSION,
                "route requires malformed scopes; denying"
            );
            return Ok(denied(
                HttpStatusCode::InternalServerError,
                "route_misconfigured",
                "route misconfigured: keysmith_scopes is malformed",
                &[],
            ));
        };
        let keyspace = extensions
            .and_then(|e| e.get(KEYSPACE_EXTENSION))
            .map_or("", String::as_str);
        let Ok(keyspaces) = super::convert::keyspace_scope(self.verifier.index(), keyspace) else {
            tracing::error!(
                extension = KEYSPACE_EXTENSION,
                "route names a malformed keyspace; denying"
            );
            return Ok(denied(
                HttpStatusCode::InternalServerError,
                "route_misconfigured",
                "route misconfigured: keysmith_keyspace is malformed",
                &[],
            ));
        };
        // Every group, single scopes too, is read from the text in place.
        let request = VerifyRequest {
            required_scopes: &[],
            required_any: &required,
            client_ip,
            referrer,
            resource,
            keyspaces,
            ..VerifyRequest::default()
        };
        let outcome = self.verifier.verify(key, &request, within).await?;
        let code = outcome.decision.code;
        Ok(match code.class() {
            Class::Allowed => allowed(&outcome, key_header, headers),
            Class::Unauthenticated => unauthorized(code, outcome.detail),
            Class::TooMany => {
                let secs = outcome
                    .retry_after
                    .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
                let mut extra = vec![("retry-after", secs.to_string())];
                extra.extend(response::rate_headers(&outcome));
                denied(
                    HttpStatusCode::TooManyRequests,
                    code.name(),
                    outcome.detail,
                    &extra,
                )
            }
            Class::Forbidden => denied(HttpStatusCode::Forbidden, code.name(), outcome.detail, &[]),
        })
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};

    use super::*;

    #[test]
    fn check_requests_lose_both_key_headers() {
        let headers = [
            ("authorization", "Bearer sk_live_a"),
            ("x-api-key", "sk_live_b"),
            ("accept", "*/*"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let req = CheckRequest {
            attributes: Some(AttributeContext {
                request: Some(attribute_context::Request {
                    http: Some(attribute_context::HttpRequest {
                        headers,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        };
        let mut check = Check {
            req,
            key_header: "x-api-key",
        };
        check.wipe();
        let h = check.req.get_client_headers().expect("headers");
        assert!(h["authorization"].is_empty());
        assert!(h["x-api-key"].is_empty());
        assert_eq!(h["accept"], "*/*", "only the key headers are wiped");
    }
}
