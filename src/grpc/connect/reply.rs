//! Connect's answers: a message, or an error as Connect's error JSON with
//! the HTTP status its table gives the code
//! (<https://connectrpc.com/docs/protocol#error-codes>).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::Full;
use tonic::{Code, body::Body};

/// Connect's name for a gRPC code.
pub(super) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "canceled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status Connect gives a code.
pub(super) fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
    }
}

/// An error a Connect client reads: `{"code": "…", "message": "…"}`, at
/// the code's HTTP status.
pub(super) fn error(code: Code, message: &str) -> http::Response<Body> {
    error_at(http_status(code), code, message)
}

/// [`error`] at another HTTP status, where HTTP has a plainer one for the
/// same case (413 for a body over the cap, 405 for a GET, 404 for a method
/// that does not exist); the body still carries the Connect code.
pub(super) fn error_at(status: StatusCode, code: Code, message: &str) -> http::Response<Body> {
    let mut body = serde_json::json!({ "code": code_name(code) });
    if !message.is_empty() {
        body["message"] = message.into();
    }
    let mut reply = http::Response::new(Body::new(Full::new(Bytes::from(body.to_string()))));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

/// A message, with the call's headers and its trailers as `trailer-`
/// headers, as Connect's unary protocol carries them.
pub(super) fn message(
    content_type: &'static str,
    body: Vec<u8>,
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
) -> http::Response<Body> {
    let mut reply = http::Response::new(Body::new(Full::new(Bytes::from(body))));
    let out = reply.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers.iter().filter(|(n, _)| is_metadata(n.as_str())) {
        out.append(name.clone(), value.clone());
    }
    for (name, value) in trailers
        .into_iter()
        .flatten()
        .filter(|(n, _)| is_metadata(n.as_str()))
    {
        if let Ok(name) = header::HeaderName::try_from(format!("trailer-{name}")) {
            out.append(name, value.clone());
        }
    }
    reply
}

/// A header the gRPC handlers set, not one of gRPC's own framing.
fn is_metadata(name: &str) -> bool {
    !(name.starts_with("grpc-")
        || matches!(name, "content-type" | "content-length" | "te" | "trailer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connect's table, spot-checked where HTTP's own reading differs from
    /// a guess (499, 409 for aborted, 400 for failed_precondition).
    #[test]
    fn codes_take_connects_http_statuses() {
        assert_eq!(http_status(Code::Cancelled).as_u16(), 499);
        assert_eq!(http_status(Code::Aborted), StatusCode::CONFLICT);
        assert_eq!(
            http_status(Code::FailedPrecondition),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(code_name(Code::Cancelled), "canceled");
    }
}
