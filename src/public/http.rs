//! The public listener's HTTP plumbing: routing, the limits every request
//! passes, bounded bodies, and JSON answers.

use std::net::SocketAddr;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER},
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

/// A request's body, read up to `max` bytes: 413 past it (judged on
/// `content-length` before reading, when there is one).
pub(super) async fn body(
    req: Request<Incoming>,
    max: usize,
) -> Result<(hyper::http::request::Parts, Bytes), Answer> {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body: larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let (parts, body) = req.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_big()),
        Err(_) => Err(error(StatusCode::BAD_REQUEST, "body: could not be read")),
    }
}

impl Public {
    /// Routes `req` through the listener's limits, and counts the answer.
    pub(super) async fn answer(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let name = match req.uri().path() {
            "/v1/secret-scanning/github" => "github",
            "/v1/keys/revoke" => "revoke",
            _ => "other",
        };
        let answer = self.route(req, peer).await;
        self.metrics.count_public(name, answer.status().as_u16());
        answer
    }

    async fn route(&self, req: Request<Incoming>, peer: SocketAddr) -> Answer {
        let route = match (req.method(), req.uri().path()) {
            (&Method::POST, "/v1/secret-scanning/github") => Route::GitHub,
            (&Method::POST, "/v1/keys/revoke") => Route::Revoke,
            (_, "/v1/secret-scanning/github" | "/v1/keys/revoke") => {
                let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
                resp.headers_mut()
                    .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
                return resp;
            }
            _ => return error(StatusCode::NOT_FOUND, "no such route"),
        };
        if !self.peers.admit(peer.ip()) {
            return too_many();
        }
        if matches!(route, Route::Revoke) && !self.revokers.admit(peer.ip()) {
            return too_many();
        }
        // The body first, under its own deadline, and only then a slot: a
        // client trickling its body holds a connection, never a slot.
        let cap = match route {
            Route::GitHub => self.config.max_body,
            Route::Revoke => super::MAX_REVOKE_BODY.min(self.config.max_body),
        };
        let (parts, bytes) =
            match tokio::time::timeout(self.config.header_timeout, body(req, cap)).await {
                Ok(Ok(read)) => read,
                Ok(Err(refused)) => return refused,
                Err(_) => return error(StatusCode::REQUEST_TIMEOUT, "body: not received in time"),
            };
        let Ok(_permit) = self.in_flight.clone().try_acquire_owned() else {
            return busy("too many requests in flight; retry", 1);
        };
        let work = async {
            match route {
                Route::GitHub => self.github_report(&parts, bytes).await,
                Route::Revoke => self.public_revoke(bytes, peer).await,
            }
        };
        match tokio::time::timeout(self.config.request_timeout, work).await {
            Ok(answer) => answer,
            Err(_) => busy("the request took too long; retry", 5),
        }
    }
}

enum Route {
    GitHub,
    Revoke,
}

pub(super) fn too_many() -> Answer {
    let mut resp = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many requests from this address",
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}
