//! JSON over HTTP (Connect's unary protocol) and gRPC-Web, against a real
//! server on port 0 through a real HTTP client: the same handlers as gRPC,
//! so the same authentication, audit and answers, and Connect's errors for
//! what is wrong with a request, with nothing changed by it.

use keysmith::grpc::pb;
use prost::Message;
use reqwest::{Client, StatusCode, header};
use serde_json::{Value, json};

use crate::{
    helpers::{Backend, TestApp, spawn},
    token_support::{mint, names},
};

/// A Connect call: `POST http://{addr}/{method}` with a JSON body.
async fn call(
    http: &Client,
    addr: &str,
    method: &str,
    token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("http://{addr}/{method}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON answer: {text}"));
    (status, json)
}

async fn admin(
    app: &TestApp,
    method: &str,
    token: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let addr = app.admin_channel_addr();
    call(
        &Client::new(),
        &addr,
        &format!("keysmith.v1.KeyAdmin/{method}"),
        token,
        &body,
    )
    .await
}

async fn verify(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let addr = app.verify_channel_addr();
    call(
        &Client::new(),
        &addr,
        "keysmith.v1.KeyVerify/Verify",
        None,
        &body,
    )
    .await
}

async fn json_calls_are_the_grpc_handlers(backend: Backend) {
    let app = spawn(backend).await;
    let tok = Some(app.token.as_str());
    let (status, created) = admin(
        &app,
        "CreateKey",
        tok,
        json!({"ownerId": "acct_json", "name": "edge", "scopes": ["invoices:read"],
               "environment": "ENVIRONMENT_LIVE"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_owned();
    let id = created["key"]["id"].as_str().expect("id").to_owned();
    // Canonical JSON: lowerCamelCase, int64 as a string, times in UTC with Z.
    assert_eq!(created["key"]["ownerId"], "acct_json");
    assert_eq!(created["key"]["version"], "1");
    let t = created["key"]["createTime"].as_str().expect("time");
    assert!(t.ends_with('Z'), "{t}");

    // The key is the gRPC API's key, and JSON Verify answers like gRPC.
    assert_eq!(app.get(&id).await.owner_id, "acct_json");
    let (status, v) = verify(
        &app,
        json!({"key": secret, "requiredScopes": ["invoices:read"]}),
    )
    .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::OK, &json!("VERIFY_CODE_VALID"))
    );
    assert_eq!(v["keyId"], id.as_str());
    let (_, v) = verify(
        &app,
        json!({"key": secret, "requiredScopes": ["invoices:write"]}),
    )
    .await;
    assert_eq!(v["code"], "VERIFY_CODE_INSUFFICIENT_SCOPE");

    // Audited with the acting token, as a gRPC call is.
    let (status, events) = admin(&app, "ListAuditEvents", tok, json!({"keyId": id})).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let created_event = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["action"] == "key.created")
        .expect("key.created");
    assert!(
        created_event["actor"]
            .as_str()
            .is_some_and(|a| a.starts_with("admin:")),
        "{created_event}"
    );

    // Revoked over JSON, denied everywhere.
    let (status, _) = admin(&app, "RevokeKey", tok, json!({"id": id, "reason": "json"})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, v) = verify(&app, json!({"key": secret})).await;
    assert_eq!(v["code"], "VERIFY_CODE_REVOKED");
    assert_eq!(app.verify_code(&secret).await, pb::VerifyCode::Revoked);

    // A deadline the call meets changes nothing.
    let on_time = Client::new()
        .post(format!(
            "http://{}/keysmith.v1.KeyVerify/Verify",
            app.verify_channel_addr()
        ))
        .header(header::CONTENT_TYPE, "application/json")
        .header("connect-timeout-ms", "10000")
        .body(json!({"key": secret}).to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(on_time.status(), StatusCode::OK);

    // HTTP/2 (h2c, prior knowledge) carries the same calls.
    let h2 = Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let (status, v) = call(
        &h2,
        &app.verify_channel_addr(),
        "keysmith.v1.KeyVerify/Verify",
        None,
        &json!({"key": secret}),
    )
    .await;
    assert_eq!(
        (status, &v["code"]),
        (StatusCode::OK, &json!("VERIFY_CODE_REVOKED"))
    );
}

async fn errors_are_connects_and_change_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let tok = Some(app.token.as_str());
    let secret = app.create_with_scopes(&["a"]).await.secret;
    let keys_before = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await;
    let keys_before = keys_before.expect("list").into_inner().keys.len();
    let create = json!({"ownerId": "acct_x", "name": "n"});

    let (status, e) = admin(&app, "CreateKey", None, create.clone()).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthenticated"))
    );
    let (status, e) = admin(&app, "CreateKey", Some("ksa_not_a_token"), create.clone()).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthenticated"))
    );

    // A token without keys.write is refused, naming the permission.
    let reader = mint(
        &app,
        &app.admin,
        pb::CreateAdminTokenRequest {
            name: "reader".into(),
            permissions: names(&["keys.read"]),
            ..Default::default()
        },
    )
    .await;
    let (status, e) = admin(&app, "CreateKey", Some(&reader.secret), create.clone()).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::FORBIDDEN, &json!("permission_denied"))
    );
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("keys.write")),
        "{e}"
    );

    // The handler's own INVALID_ARGUMENT, naming the field.
    let (status, e) = admin(&app, "CreateKey", tok, json!({"ownerId": "", "name": "n"})).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_argument"))
    );
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("owner_id")),
        "{e}"
    );

    // Bodies that are not the message: each a 400 naming what is wrong.
    let addr = app.admin_channel_addr();
    let raw = |body: &'static str| {
        let addr = addr.clone();
        let token = app.token.clone();
        async move {
            let resp = Client::new()
                .post(format!("http://{addr}/keysmith.v1.KeyAdmin/CreateKey"))
                .header(header::CONTENT_TYPE, "application/json")
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = resp.status();
            let text = resp.text().await.expect("body");
            (
                status,
                serde_json::from_str::<Value>(&text).expect("JSON error"),
            )
        }
    };
    for (body, says) in [
        (r#"{"ownerId": "acct_x", "name": "#, "ends early"),
        (r#"{"ownerId": "acct_x" "name": "n"}"#, "not valid JSON"),
        (
            r#"{"ownerId": 7, "name": "n"}"#,
            "field ownerId: invalid type, expected a string",
        ),
        (
            r#"{"ownerId": "a", "scopes": "x"}"#,
            "field scopes: invalid type",
        ),
        (r#"{"ownerId": "a", "type": "KEY_TYPE_NOPE"}"#, "field type"),
        (r#"{"ownerId": "a", "colour": "blue"}"#, "unknown field"),
        (r#"{"ownerId": "a"} {}"#, "more after"),
    ] {
        let (status, e) = raw(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["code"], "invalid_argument", "{body}");
        let message = e["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{body}: `{message}` should say `{says}`"
        );
    }

    // What a caller put in the wrong place never comes back in the error.
    for body in [
        json!({"scopes": secret}),
        json!({"key": secret, "cost": secret}),
        json!({ secret.clone(): 1 }),
        json!({"key": secret, "requiredScopes": [{ secret.clone(): secret }]}),
    ] {
        let (status, e) = verify(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
        let text = e.to_string();
        assert!(!text.contains(&secret[8..]), "the secret came back: {text}");
    }

    // Over the cap: 413, before anything is decoded.
    let big = json!({"key": "k".repeat(80 * 1024)});
    let (status, e) = verify(&app, big).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::PAYLOAD_TOO_LARGE, &json!("resource_exhausted"))
    );

    // A method that does not exist, a GET, a stream, a strange body type.
    let (status, e) = admin(&app, "MintMoney", tok, json!({})).await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::NOT_FOUND, &json!("unimplemented"))
    );
    let get = Client::new()
        .get(format!("http://{addr}/keysmith.v1.KeyAdmin/ListKeys"))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.headers()[header::ALLOW], "POST");
    let vaddr = app.verify_channel_addr();
    let (status, e) = call(
        &Client::new(),
        &vaddr,
        "keysmith.v1.KeyVerify/WatchRevocations",
        None,
        &json!({}),
    )
    .await;
    assert_eq!(
        (status, &e["code"]),
        (StatusCode::NOT_IMPLEMENTED, &json!("unimplemented"))
    );
    let text = Client::new()
        .post(format!("http://{addr}/keysmith.v1.KeyAdmin/ListKeys"))
        .header(header::CONTENT_TYPE, "text/plain")
        .body("{}")
        .send()
        .await
        .expect("send");
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Connect's own headers are checked.
    for (name, value) in [
        ("connect-protocol-version", "2"),
        ("connect-timeout-ms", "soon"),
        ("connect-timeout-ms", "12345678901"),
    ] {
        let resp = Client::new()
            .post(format!("http://{vaddr}/keysmith.v1.KeyVerify/Verify"))
            .header(header::CONTENT_TYPE, "application/json")
            .header(name, value)
            .body(json!({"key": secret}).to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{name}: {value}");
    }

    // None of it changed anything.
    let keys_after = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await;
    assert_eq!(
        keys_after.expect("list").into_inner().keys.len(),
        keys_before
    );
    assert_eq!(app.verify_code(&secret).await, pb::VerifyCode::Valid);
}

crate::backend_tests!(
    json_calls_are_the_grpc_handlers,
    errors_are_connects_and_change_nothing
);

/// `application/proto`: Connect's binary form, the message as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_body_is_answered_in_protobuf() {
    let app = spawn(Backend::Sqlite).await;
    let secret = app.create_with_scopes(&["a"]).await.secret;
    let ask = |body: Vec<u8>| {
        let addr = app.verify_channel_addr();
        async move {
            Client::new()
                .post(format!("http://{addr}/keysmith.v1.KeyVerify/Verify"))
                .header(header::CONTENT_TYPE, "application/proto")
                .body(body)
                .send()
                .await
                .expect("send")
        }
    };
    let req = pb::VerifyRequest {
        key: secret,
        required_scopes: vec!["a".into()],
        ..Default::default()
    };
    let resp = ask(req.encode_to_vec()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/proto");
    let answer = pb::VerifyResponse::decode(resp.bytes().await.expect("body")).expect("decode");
    assert_eq!(answer.code(), pb::VerifyCode::Valid);
    let resp = ask(vec![0xff, 0xff, 0xff]).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// One gRPC-Web frame of `message`.
fn web_frame(message: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
    f.extend_from_slice(message);
    f
}

/// A browser's gRPC-Web call over HTTP/1.1 holds WatchRevocations open:
/// a revocation made while it is open arrives on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_web_client_holds_watch_revocations_open() {
    let app = spawn(Backend::Sqlite).await;
    let first = app.create_with_scopes(&["a"]).await.key.expect("key");
    let second = app.create_with_scopes(&["a"]).await.key.expect("key");
    app.revoke(&first.id).await;
    let req = pb::WatchRevocationsRequest {
        after_cursor: Some(0),
        ..Default::default()
    };
    let mut resp = Client::builder()
        .http1_only()
        .build()
        .expect("client")
        .post(format!(
            "http://{}/keysmith.v1.KeyVerify/WatchRevocations",
            app.verify_channel_addr()
        ))
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(web_frame(&req.encode_to_vec()))
        .send()
        .await
        .expect("open the stream");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);

    // Frames as they arrive: the first revocation (from the cursor), then
    // the second, revoked only once the stream is seen to be open.
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while seen.len() < 2 {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("an event in time")
            .expect("read")
            .expect("the stream stays open");
        buf.extend_from_slice(&chunk);
        while buf.len() >= 5 {
            let len = u32::from_be_bytes(buf[1..5].try_into().expect("4")) as usize;
            if buf.len() < 5 + len {
                break;
            }
            let frame: Vec<u8> = buf.drain(..5 + len).collect();
            assert_eq!(
                frame[0], 0,
                "a message frame, not the trailers: the stream ended"
            );
            let event = pb::KeyEvent::decode(&frame[5..]).expect("event");
            assert_eq!(event.kind(), pb::KeyEventKind::Revoked);
            seen.push(event.key_id.clone());
            if seen.len() == 1 {
                app.revoke(&second.id).await;
            }
        }
    }
    assert_eq!(seen, [first.id, second.id]);
}
