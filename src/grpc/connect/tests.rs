//! The layer on its own, around a gRPC service that never answers or
//! that is not this listener's: what a Connect client reads back.

use std::{
    convert::Infallible,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tower::{Layer, Service};

use super::ConnectLayer;

/// A gRPC service whose calls never end.
#[derive(Clone)]
struct Never;

impl Service<Request<Body>> for Never {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = futures::future::Pending<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        futures::future::pending()
    }
}

fn post(path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(Body::new(Full::new(Bytes::from_static(b"{}"))))
        .expect("request")
}

async fn answer(call_timeout: Duration, req: Request<Body>) -> (StatusCode, String) {
    let layer = ConnectLayer::new(&["keysmith.v1.KeyVerify"], 1024, call_timeout);
    let reply = layer.layer(Never).call(req).await.expect("reply");
    let status = reply.status();
    let body = reply.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// tonic's own deadline would answer a bare gRPC status with HTTP 200;
/// the layer's ends first, as Connect's 504.
#[tokio::test]
async fn a_call_past_the_listeners_deadline_is_deadline_exceeded() {
    let (status, body) = answer(
        Duration::from_millis(200),
        post("/keysmith.v1.KeyVerify/Verify", &[]),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains(r#""code":"deadline_exceeded""#), "{body}");
}

/// The client's `Connect-Timeout-Ms`, shorter than the listener's.
#[tokio::test]
async fn a_call_past_its_connect_timeout_is_deadline_exceeded() {
    let started = tokio::time::Instant::now();
    let (status, body) = answer(
        Duration::from_secs(600),
        post(
            "/keysmith.v1.KeyVerify/Verify",
            &[("connect-timeout-ms", "50")],
        ),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "ended on its own timeout"
    );
}

#[tokio::test]
async fn grpc_headers_on_a_connect_call_are_refused() {
    let (status, body) = answer(
        Duration::from_secs(5),
        post("/keysmith.v1.KeyVerify/Verify", &[("grpc-timeout", "1n")]),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("connect-timeout-ms"), "{body}");
}

/// The admin listener's methods are not the verify listener's.
#[tokio::test]
async fn another_listeners_method_does_not_exist_here() {
    let (status, body) = answer(
        Duration::from_secs(5),
        post("/keysmith.v1.KeyAdmin/ListKeys", &[]),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains(r#""code":"unimplemented""#), "{body}");
}
