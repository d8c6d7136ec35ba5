//! The public listener's HTTP plumbing: routing, the limits every request
//! passes, bounded bodies, and JSON answers.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER},
};

use super::Public;

pub(super) type Answer = Response<Full<Bytes>>;

/// A JSON answer.
pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A refusal: `{"error": message}`.
pub(super) fn error(status: StatusCode, message: &str) -> Answer {
    json(status, &serde_json::json!({ "error": message }))
}

/// A refusal to retry later.
pub(super) fn busy(message: &str, retry_after_secs: u32) -> Answer {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, message);
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

/// How much of a body is read and dropped when it is not wanted: past its
/// route's cap, or refused before it was read. The listener closes every
/// connection after one answer, and a close with bytes still unread resets
/// it: the client, still sending, would see a broken pipe instead of the
/// answer. Past this, it does.
const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

/// A request's body, kept up to `max` bytes: 413 past it (judged on
/// `content-length` before keeping any, when there is one). A body refused
/// for its size is still read to its end, up to [`DRAIN_LIMIT`], so that
/// the 413 reaches the client. With `max` 0, it only drains.
async fn read_body(headers: &HeaderMap, mut body: Incoming, max: usize) -> Result<Bytes, Answer> {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body: larger than {max} bytes"),
        )
    };
    let max = max as u64;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_big());
    }
    let mut kept = Vec::new();
    let mut seen: u64 = 0;
    let mut refused = declared.is_some_and(|n| n > max);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(error(StatusCode::BAD_REQUEST, "body: could not be read"));
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len() as u64);
        if seen > DRAIN_LIMIT {
            break;
        }
        refused |= seen > max;
        if refused {
            kept = Vec::new();
        } else {
            kept.extend_from_slice(&data);
        }
    }
    if refused || seen > max {
        return Err(too_big());
    }
    Ok(Bytes::from(kept))
}

impl Public {
    /// Routes `req` through the listener's limits, and counts the answer.
    pub(super) async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let name = match req.uri().path() {
            "/v1/secret-scanning/github" => "github",
            "/v1/keys/revoke" => "revoke",
            _ => "other",
        };
        let (parts, body) = req.into_parts();
        // Whatever the answer, the body is read first, under its own
        // deadline, and only then is a slot taken: a client trickling its
        // body holds a connection, never a slot.
        let read = |cap| {
            tokio::time::timeout(
                self.config.header_timeout,
                read_body(&parts.headers, body, cap),
            )
        };
        let answer = match self.admit(&parts, peer) {
            Err(refused) => {
                let _ = read(0).await;
                refused.answer()
            }
            Ok(route) => match read(self.cap(route)).await {
                Ok(Ok(bytes)) => self.route(route, &parts, bytes, peer).await,
                Ok(Err(refused)) => refused,
                Err(_) => error(StatusCode::REQUEST_TIMEOUT, "body: not received in time"),
            },
        };
        self.metrics.count_public(name, answer.status().as_u16());
        answer
    }

    /// The route `parts` asks for, if it and the peer's limits allow.
    fn admit(
        &self,
        parts: &hyper::http::request::Parts,
        peer: SocketAddr,
    ) -> Result<Route, Refused> {
        let route = match (&parts.method, parts.uri.path()) {
            (&Method::POST, "/v1/secret-scanning/github") => Route::GitHub,
            (&Method::POST, "/v1/keys/revoke") => Route::Revoke,
            (_, "/v1/secret-scanning/github" | "/v1/keys/revoke") => {
                return Err(Refused::UsePost);
            }
            _ => return Err(Refused::NoRoute),
        };
        if !self.peers.admit(peer.ip()) {
            return Err(Refused::TooMany);
        }
        if matches!(route, Route::Revoke) && !self.revokers.admit(peer.ip()) {
            return Err(Refused::TooMany);
        }
        Ok(route)
    }

    fn cap(&self, route: Route) -> usize {
        match route {
            Route::GitHub => self.config.max_body,
            Route::Revoke => super::MAX_REVOKE_BODY.min(self.config.max_body),
        }
    }

    async fn route(
        &self,
        route: Route,
        parts: &hyper::http::request::Parts,
        bytes: Bytes,
        peer: SocketAddr,
    ) -> Answer {
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return busy("too many requests in flight; retry", 1);
        };
        let work = async {
            match route {
                Route::GitHub => self.github_report(parts, bytes).await,
                Route::Revoke => self.public_revoke(bytes, peer).await,
            }
        };
        match tokio::time::timeout(self.config.request_timeout, work).await {
            Ok(answer) => answer,
            Err(_) => busy("the request took too long; retry", 5),
        }
    }
}

/// Why a request was refused before its body was read.
enum Refused {
    NoRoute,
    UsePost,
    TooMany,
}

impl Refused {
    fn answer(self) -> Answer {
        match self {
            Self::NoRoute => error(StatusCode::NOT_FOUND, "no such route"),
            Self::UsePost => {
                let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                resp.headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
                resp
            }
            Self::TooMany => too_many(),
        }
    }
}

#[derive(Clone, Copy)]
enum Route {
    GitHub,
    Revoke,
}

fn too_many() -> Answer {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests from this address",
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}
