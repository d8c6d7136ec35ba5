//! Listener limits: call deadlines that spare streams, and the per-connection
//! stream cap.

use std::time::{Duration, Instant};

use keysmith::{
    config::ListenerLimits,
    grpc::pb::{self, VerifyCode},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::helpers::{Backend, spawn_with};

const SHORT: Duration = Duration::from_millis(300);

fn short_deadline(limits: &mut ListenerLimits) {
    limits.call_timeout = SHORT;
}

/// A client that sends the headers of a unary Verify and never its message
/// is cut off at the deadline with CANCELLED, and the server goes on.
#[tokio::test]
async fn a_trickled_call_is_cut_off_at_its_deadline() {
    let app = spawn_with(Backend::Sqlite, |c| short_deadline(&mut c.verify_limits)).await;
    let key = app.create_with_scopes(&[]).await.secret;
    let mut grpc = tonic::client::Grpc::new(app.verify_channel.clone());
    grpc.ready().await.expect("ready");
    let started = Instant::now();
    let never = futures::stream::pending::<pb::VerifyRequest>();
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/keysmith.v1.KeyVerify/Verify");
    let codec = tonic_prost::ProstCodec::<pb::VerifyRequest, pb::VerifyResponse>::default();
    let status = grpc
        .client_streaming(tonic::Request::new(never), path, codec)
        .await
        .expect_err("cut off");
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(started.elapsed() >= SHORT, "not before the deadline");
    assert_eq!(app.verify_code(&key).await, VerifyCode::Valid);
}

/// The deadline bounds producing a response, not a stream's life: a
/// VerifyStream keeps answering well past it.
#[tokio::test]
async fn streams_outlive_the_call_deadline() {
    let app = spawn_with(Backend::Sqlite, |c| short_deadline(&mut c.verify_limits)).await;
    let key = app.create_with_scopes(&[]).await.secret;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let mut answers = app
        .verify
        .clone()
        .verify_stream(ReceiverStream::new(rx))
        .await
        .expect("open")
        .into_inner();
    let opened = Instant::now();
    let mut id = 0;
    while opened.elapsed() < SHORT * 3 {
        id += 1;
        let request = pb::VerifyRequest {
            key: key.clone(),
            ..Default::default()
        };
        tx.send(pb::VerifyStreamRequest {
            id,
            request: Some(request),
        })
        .await
        .expect("send");
        let answer = answers.message().await.expect("answer").expect("open");
        assert_eq!(answer.id, id);
    }
    assert!(id > 1);
}

/// With a cap of 2 streams per connection, a third call on the same
/// connection waits for a slot instead of overloading the server, and runs
/// once one frees.
#[tokio::test]
async fn streams_per_connection_are_capped() {
    let app = spawn_with(Backend::Sqlite, |c| {
        c.verify_limits.max_concurrent_streams = 2;
    })
    .await;
    let watch = || {
        let mut client = app.verify.clone();
        async move {
            client
                .watch_revocations(pb::WatchRevocationsRequest::default())
                .await
                .expect("watch")
                .into_inner()
        }
    };
    let first = watch().await;
    let _second = watch().await;
    let key = app.create_with_scopes(&[]).await.secret;
    let mut third = Box::pin(app.verify_code(&key));
    assert!(
        tokio::time::timeout(SHORT, &mut third).await.is_err(),
        "a third stream on the connection waits"
    );
    drop(first);
    let code = tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("runs once a slot frees");
    assert_eq!(code, VerifyCode::Valid);
}
