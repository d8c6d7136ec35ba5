//! A whole session against a real `keysmith serve` process, logging at
//! debug: no secret reaches the logs, and SIGTERM drains, flushes usage and
//! exits 0.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use keysmith::grpc::pb::{
    self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient,
};
use sqlx::Connection;
use tonic::Request;

/// Lines a child process wrote, gathered by a reader thread.
type Lines = Arc<Mutex<Vec<String>>>;

fn collect(stream: impl std::io::Read + Send + 'static, into: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            into.lock().expect("lock").push(line);
        }
    });
}

fn authed<T>(token: &str, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii"),
    );
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_logs_no_secret_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args([
            "serve",
            "--verify-addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .args([
            "--usage-flush-interval",
            "1h",
            "--webhook-allow-private-targets",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (out, err): (Lines, Lines) = Default::default();
    collect(child.stdout.take().expect("stdout"), out.clone());
    collect(child.stderr.take().expect("stderr"), err.clone());

    let listening = || {
        err.lock().expect("lock").iter().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["fields"]["message"] == "keysmith listening").then(|| v["fields"].clone())
        })
    };
    let token = || {
        out.lock()
            .expect("lock")
            .iter()
            .find(|l| l.trim().starts_with("ksa_"))
            .map(|l| l.trim().to_owned())
    };
    crate::helpers::eventually("the server to start", || async {
        listening().is_some() && token().is_some()
    })
    .await;
    let fields = listening().expect("listening");
    let token = token().expect("bootstrap token");
    let addr = |k: &str| {
        fields[k]
            .as_str()
            .expect("addr")
            .parse()
            .expect("socket addr")
    };
    let verify_channel = crate::helpers::connect(addr("verify_addr")).await;
    crate::helpers::wait_until_serving(&verify_channel).await;
    let mut verify = KeyVerifyClient::new(verify_channel);
    let mut admin = KeyAdminClient::new(crate::helpers::connect(addr("admin_addr")).await);

    let mut secrets = vec![token.clone()];
    let created = admin
        .create_key(authed(
            &token,
            pb::CreateKeyRequest {
                owner_id: "acct_1".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner();
    secrets.push(created.secret.clone());
    let id = created.key.expect("key").id;
    for key in [created.secret.as_str(), "sk_live_not_a_key"] {
        let req = pb::VerifyRequest {
            key: key.into(),
            ..Default::default()
        };
        verify.verify(req).await.expect("verify");
    }
    let rotated = admin
        .rotate_key(authed(
            &token,
            pb::RotateKeyRequest {
                id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    secrets.push(rotated.secret.clone());
    let own = admin
        .rotate_self(authed(
            &rotated.secret,
            pb::RotateSelfRequest { grace_period: None },
        ))
        .await
        .expect("self rotation")
        .into_inner();
    secrets.push(own.secret.clone());
    let hook = admin
        .create_webhook_endpoint(authed(
            &token,
            pb::CreateWebhookEndpointRequest {
                url: "http://127.0.0.1:9/h".into(),
                events: vec!["*".into()],
                description: String::new(),
            },
        ))
        .await
        .expect("webhook")
        .into_inner();
    secrets.push(hook.signing_secret.clone());
    admin
        .revoke_key(authed(
            &token,
            pb::RevokeKeyRequest {
                id,
                ..Default::default()
            },
        ))
        .await
        .expect("revoke");
    let bad = admin
        .list_keys(authed("ksa_wrong", pb::ListKeysRequest::default()))
        .await;
    assert!(bad.is_err());

    // SIGTERM: health goes NOT_SERVING, calls drain, usage flushes, exit 0.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");

    let url = format!("sqlite://{}", dir.path().join("keysmith.db").display());
    let mut db = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("open db");
    let flushed: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(total), 0) FROM key_usage_hourly")
        .fetch_one(&mut db)
        .await
        .expect("usage");
    assert_eq!(
        flushed, 1,
        "the shutdown flush wrote the one call on a known key"
    );

    let stderr = err.lock().expect("lock").join("\n");
    assert!(stderr.lines().count() > 20, "debug logs were captured");
    for s in &secrets {
        let body = &s[8..s.len() - 4];
        assert!(!stderr.contains(body), "a secret appeared in the logs");
    }
    let stdout = out.lock().expect("lock").join("\n");
    for s in &secrets[1..] {
        assert!(
            !stdout.contains(&s[8..s.len() - 4]),
            "a secret appeared on stdout"
        );
    }
}
