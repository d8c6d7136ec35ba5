//! Verify's answers for keys that are not (or not quite) valid keys.

use keysmith::grpc::pb::{self, VerifyCode};
use tonic::Code;

use crate::helpers::{Backend, assert_status, spawn};

async fn malformed_keys_are_told_apart_from_unknown_ones(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&[]).await;
    let secret = created.secret;

    for (bad, detail) in [
        ("", "empty key"),
        ("sk_live_short", "wrong length"),
        (&*format!("xx_live_{}", &secret[8..]), "unknown prefix"),
        (
            &*format!("{}\u{0}{}", &secret[..20], &secret[21..]),
            "invalid character",
        ),
    ] {
        let v = app.verify_scopes(bad, &[]).await;
        assert_eq!(v.code(), VerifyCode::Malformed, "{bad:?}");
        assert_eq!(v.detail, detail);
        assert!(!v.valid);
        assert!(v.key_id.is_empty());
    }

    // Flip one body character: the checksum catches it.
    let mut bytes = secret.clone().into_bytes();
    bytes[20] = if bytes[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).expect("ascii");
    let v = app.verify_scopes(&flipped, &[]).await;
    assert_eq!(v.code(), VerifyCode::Malformed);
    assert_eq!(v.detail, "checksum mismatch");

    // A well-formed key that was never issued.
    let other = keysmith::domain::ApiKey::generate(
        keysmith::domain::KeyType::Secret,
        keysmith::domain::Environment::Live,
    )
    .expect("rng");
    assert_eq!(
        app.verify_code(other.expose_secret()).await,
        VerifyCode::NotFound
    );
}

async fn wildcards_grant_and_missing_scopes_are_named(backend: Backend) {
    let app = spawn(backend).await;
    let key = app
        .create_with_scopes(&["invoices:*", "customers:read"])
        .await
        .secret;
    assert_eq!(
        app.verify_scopes(
            &key,
            &["invoices:read", "invoices:lines:write", "customers:read"]
        )
        .await
        .code(),
        VerifyCode::Valid
    );
    let v = app
        .verify_scopes(&key, &["customers:read", "customers:write"])
        .await;
    assert_eq!(v.code(), VerifyCode::InsufficientScope);
    assert_eq!(v.missing_scope, "customers:write");
    // The denied answer still names the key, for the gateway's logs.
    assert!(!v.key_id.is_empty());

    let star = app.create_with_scopes(&["*"]).await.secret;
    assert!(app.verify_scopes(&star, &["anything:at:all"]).await.valid);
}

async fn bad_required_scopes_are_the_callers_error(backend: Backend) {
    let app = spawn(backend).await;
    let key = app.create_with_scopes(&["invoices:*"]).await.secret;
    let mut verify = app.verify.clone();
    let wildcard = pb::VerifyRequest {
        key: key.clone(),
        required_scopes: vec!["invoices:read".into(), "invoices:*".into()],
        ..Default::default()
    };
    assert_status(
        verify.verify(wildcard).await,
        Code::InvalidArgument,
        "required_scopes[1]",
    );
    let too_many = pb::VerifyRequest {
        key,
        required_scopes: (0..101).map(|i| format!("s{i}")).collect(),
        ..Default::default()
    };
    assert_status(
        verify.verify(too_many).await,
        Code::InvalidArgument,
        "required_scopes",
    );
}

async fn oversized_verify_request_is_refused_and_server_stays_up(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&[]).await;
    let huge = pb::VerifyRequest {
        key: "k".repeat(1 << 20),
        ..Default::default()
    };
    let status = app
        .verify
        .clone()
        .verify(huge)
        .await
        .expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(app.verify_code(&created.secret).await, VerifyCode::Valid);
}

/// Many verifications on one stream: answered in order with their ids,
/// a bad argument answered inline without ending the stream, and a
/// revocation seen by the next answer on the same open stream.
async fn verify_stream_answers_each_request_in_order(backend: Backend) {
    let app = spawn(backend).await;
    let key = app.create_with_scopes(&["invoices:*"]).await;
    let id = key.key.as_ref().expect("key").id.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut answers = app
        .verify
        .clone()
        .verify_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("open stream")
        .into_inner();
    let send = |id: u64, key: &str, scopes: &[&str], ip: &str| pb::VerifyStreamRequest {
        id,
        request: Some(pb::VerifyRequest {
            key: key.into(),
            required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
            client_ip: ip.into(),
            ..Default::default()
        }),
    };
    let requests = [
        send(7, &key.secret, &["invoices:read"], ""),
        send(8, &key.secret, &["refunds:read"], ""),
        send(9, "sk_live_nope", &[], ""),
        send(10, &key.secret, &[], "not-an-ip"),
        send(11, &key.secret, &[], ""),
    ];
    for r in requests {
        tx.send(r).await.expect("send");
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(answers.message().await.expect("answer").expect("open"));
    }
    let ids: Vec<u64> = got.iter().map(|a| a.id).collect();
    assert_eq!(ids, [7, 8, 9, 10, 11]);
    use pb::verify_stream_response::Result as R;
    let code = |a: &pb::VerifyStreamResponse| match &a.result {
        Some(R::Response(r)) => r.code(),
        other => panic!("expected a response, got {other:?}"),
    };
    assert_eq!(code(&got[0]), VerifyCode::Valid);
    assert_eq!(code(&got[1]), VerifyCode::InsufficientScope);
    assert_eq!(code(&got[2]), VerifyCode::Malformed);
    match &got[3].result {
        Some(R::Error(e)) => {
            assert_eq!(e.code, Code::InvalidArgument as i32);
            assert!(e.message.contains("client_ip"), "{}", e.message);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(code(&got[4]), VerifyCode::Valid);

    app.revoke(&id).await;
    tx.send(send(12, &key.secret, &[], "")).await.expect("send");
    let after = answers.message().await.expect("answer").expect("open");
    assert_eq!((after.id, code(&after)), (12, VerifyCode::Revoked));

    // The caller closing its side ends the stream cleanly.
    drop(tx);
    assert!(answers.message().await.expect("clean end").is_none());
}

crate::backend_tests!(
    verify_stream_answers_each_request_in_order,
    malformed_keys_are_told_apart_from_unknown_ones,
    wildcards_grant_and_missing_scopes_are_named,
    bad_required_scopes_are_the_callers_error,
    oversized_verify_request_is_refused_and_server_stays_up,
);
