//! Secret hygiene. A whole session against a real `keysmith serve`, on
//! SQLite and on a private PostgreSQL, logging at debug and exporting spans
//! and metrics to a loopback OTLP collector. Afterwards every secret issued,
//! and every secret-shaped value presented (unknown keys with a valid
//! checksum, a wrong admin token, revoked keys), is searched for in the
//! logs, the exported telemetry and every file of the database (tables,
//! indexes, WAL): zero hits. SIGTERM drains, flushes usage and exits 0.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{Arc, Mutex},
};

use keysmith::{
    config::DbConfig,
    domain::{ApiKey, Environment, KeyId, KeyType, Timestamp, admin_token::AdminToken},
    grpc::pb::{self, key_admin_client::KeyAdminClient, key_verify_client::KeyVerifyClient},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use crate::{helpers::eventually, receiver::receiver};

mod scan;
use scan::{assert_absent, files_under, needle};

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

/// What a session issued.
struct Issued {
    /// Keys, the bootstrap admin token, and the well-formed strangers the
    /// session presented: never stored, logged or exported.
    secrets: Vec<String>,
    /// A webhook signing secret: stored (keysmith signs with it), but never
    /// logged or exported.
    signing_secret: String,
    /// A key whose one Verify the shutdown flush must write.
    used_key: String,
    out: Lines,
    err: Lines,
}

/// Scans the database's files for the secrets. The webhook signing secret
/// is stored by design, so finding it proves the scan reads the data.
fn scan_database(dir: &Path, issued: &Issued) {
    let files = files_under(dir);
    let found = |needle_of: &str| {
        files
            .iter()
            .any(|(_, bytes)| memchr::memmem::find(bytes, needle(needle_of)).is_some())
    };
    assert!(found(&issued.signing_secret), "the scan sees stored data");
    let secrets: Vec<&str> = issued.secrets.iter().map(String::as_str).collect();
    for (path, bytes) in &files {
        assert_absent(bytes, &secrets, path);
    }
}

/// Runs the session against `keysmith serve <db_args>`, exporting to
/// `otlp`, and stops the server with SIGTERM.
async fn session(db_args: &[&str], otlp: &str) -> Issued {
    let mut child = crate::process::serve_command()
        .args([
            "--usage-flush-interval",
            "1h",
            "--webhook-allow-private-targets",
            "--public-addr",
            "127.0.0.1:0",
            "--github-keys-url",
            "http://127.0.0.1:9/keys",
        ])
        .args(db_args)
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "debug")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
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
    eventually("the server to start", || async {
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
    let mut verify = KeyVerifyClient::new(verify_channel.clone());
    let mut admin = KeyAdminClient::new(crate::helpers::connect(addr("admin_addr")).await);

    let mut secrets = vec![token.clone()];
    let created = admin
        .create_key(authed(
            &token,
            pb::CreateKeyRequest {
                owner_id: "acct_1".into(),
                scopes: vec!["invoices:*".into()],
                metadata: [("plan".to_owned(), "pro".to_owned())].into(),
                ..Default::default()
            },
        ))
        .await
        .expect("create")
        .into_inner();
    secrets.push(created.secret.clone());
    let id = created.key.expect("key").id;
    let publishable = admin
        .create_key(authed(
            &token,
            pb::CreateKeyRequest {
                owner_id: "acct_1".into(),
                r#type: pb::KeyType::Publishable.into(),
                scopes: vec!["invoices:read".into()],
                restrictions: Some(pb::Restrictions {
                    referrer: Some(pb::ReferrerRestriction {
                        allow: vec!["*.example.com".into()],
                        mode: 0,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ))
        .await
        .expect("create publishable")
        .into_inner();
    secrets.push(publishable.secret.clone());
    // Secret-shaped values the session presents but keysmith never issued:
    // a well-formed key with a valid checksum that is in no index, and a
    // well-formed admin token that is in no store. Refusing them must not
    // leak them either.
    let unknown_key = ApiKey::generate(KeyType::Secret, Environment::Live).expect("rng");
    let unknown_key = unknown_key.expose_secret().to_owned();
    secrets.push(unknown_key.clone());
    let wrong_token = AdminToken::generate().expect("rng");
    let wrong_token = wrong_token.expose_secret().to_owned();
    secrets.push(wrong_token.clone());

    // Every way a key is presented: unary Verify, VerifyStream, ext_authz.
    for key in [
        created.secret.as_str(),
        "sk_live_not_a_key",
        &unknown_key,
        &wrong_token,
    ] {
        let req = pb::VerifyRequest {
            key: key.into(),
            required_scopes: vec!["invoices:read".into()],
            ..Default::default()
        };
        verify.verify(req).await.expect("verify");
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = verify
        .verify_stream(ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    let request = pb::VerifyRequest {
        key: publishable.secret.clone(),
        referrer: "https://app.example.com/".into(),
        ..Default::default()
    };
    let unknown = pb::VerifyRequest {
        key: unknown_key.clone(),
        ..Default::default()
    };
    for (id, request) in [(1, request), (2, unknown)] {
        tx.send(pb::VerifyStreamRequest {
            id,
            request: Some(request),
        })
        .await
        .expect("send");
        answers.message().await.expect("answer").expect("open");
    }
    drop(tx);
    let mut authz =
        envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(
            verify_channel,
        );
    let bearer = format!("Bearer {}", publishable.secret);
    let unknown_bearer = format!("Bearer {unknown_key}");
    for headers in [
        vec![("authorization", bearer.as_str())],
        vec![("x-api-key", publishable.secret.as_str())],
        vec![("authorization", unknown_bearer.as_str())],
        vec![("x-api-key", unknown_key.as_str())],
    ] {
        let req = crate::ext_authz::check_request(&headers, "203.0.113.9", "/invoices", "");
        authz.check(req).await.expect("check");
    }

    // Self-rotation first: a key made by a rotation cannot rotate itself
    // within the minute.
    let own = admin
        .rotate_self(authed(
            &created.secret,
            pb::RotateSelfRequest { grace_period: None },
        ))
        .await
        .expect("self rotation")
        .into_inner();
    secrets.push(own.secret.clone());
    let rotated = admin
        .rotate_key(authed(
            &token,
            pb::RotateKeyRequest {
                id: own.key.as_ref().expect("key").id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("rotate")
        .into_inner();
    secrets.push(rotated.secret.clone());
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
    // The leak paths, each handed a raw key: LookupKey, ReportLeakedKey, and
    // revocation by presenting a key on the public listener (a live key and
    // one never issued). Their audit events go to the `*` webhook too.
    let looked = pb::LookupKeyRequest {
        key: created.secret.clone(),
    };
    admin
        .lookup_key(authed(&token, looked))
        .await
        .expect("lookup");
    let live_key = || {
        let mut admin = admin.clone();
        let token = token.clone();
        async move {
            let req = pb::CreateKeyRequest {
                owner_id: "acct_1".into(),
                environment: pb::Environment::Live.into(),
                ..Default::default()
            };
            let created = admin.create_key(authed(&token, req)).await.expect("create");
            created.into_inner().secret
        }
    };
    let (reported, presented) = (live_key().await, live_key().await);
    secrets.extend([reported.clone(), presented.clone()]);
    let report = pb::ReportLeakedKeyRequest {
        key: reported,
        url: "https://github.com/octo/app/blob/abc/.env".into(),
        source: "gitleaks".into(),
        leaked_time: None,
    };
    admin
        .report_leaked_key(authed(&token, report))
        .await
        .expect("report");
    let public = fields["public_addr"].as_str().expect("public addr");
    for key in [&presented, &unknown_key] {
        let resp = reqwest::Client::new()
            .post(format!("http://{public}/v1/keys/revoke"))
            .body(serde_json::json!({ "key": key }).to_string())
            .send()
            .await
            .expect("public revoke");
        assert_eq!(resp.status(), 202);
    }
    admin
        .revoke_key(authed(
            &token,
            pb::RevokeKeyRequest {
                id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect("revoke");
    // The revoked key, presented everywhere it could be.
    let revoked = pb::VerifyRequest {
        key: created.secret.clone(),
        ..Default::default()
    };
    let answer = verify.verify(revoked).await.expect("verify").into_inner();
    assert_eq!(answer.code(), pb::VerifyCode::Revoked);
    let revoked_bearer = format!("Bearer {}", created.secret);
    let req = crate::ext_authz::check_request(
        &[("authorization", revoked_bearer.as_str())],
        "203.0.113.9",
        "/invoices",
        "",
    );
    authz.check(req).await.expect("check");
    for key in [&created.secret, &unknown_key, &wrong_token] {
        let req = authed(key, pb::RotateSelfRequest { grace_period: None });
        assert!(admin.rotate_self(req).await.is_err(), "not a live key");
    }
    // The wrong admin token, on several calls and past the failure limit,
    // so the refusals, the block and its audit summary are all exercised.
    for i in 0..12 {
        let bad = if i % 2 == 0 {
            let req = authed(&wrong_token, pb::ListKeysRequest::default());
            admin.list_keys(req).await.map(drop)
        } else {
            let req = authed(&wrong_token, pb::GetKeyRequest { id: id.clone() });
            admin.get_key(req).await.map(drop)
        };
        assert!(bad.is_err(), "a wrong admin token is refused");
    }

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
    Issued {
        secrets,
        signing_secret: hook.signing_secret,
        used_key: id,
        out,
        err,
    }
}

/// The session's checks that do not depend on the backend.
async fn check(issued: &Issued, db: &DbConfig, telemetry: &crate::receiver::Receiver) {
    // The shutdown flush wrote the one valid call on the first key.
    let store = keysmith::app::open_store(db, false).await.expect("store");
    let id: KeyId = issued.used_key.parse().expect("id");
    let rows = store
        .key_usage(&id, Timestamp::from_millis(0), Timestamp::now())
        .await
        .expect("usage");
    let valid: i64 = rows.iter().map(|r| r.counts.valid).sum();
    assert_eq!(valid, 1, "the shutdown flush wrote the one valid call");

    let secrets: Vec<&str> = issued.secrets.iter().map(String::as_str).collect();
    let mut everything = secrets.clone();
    everything.push(&issued.signing_secret);

    let stderr = issued.err.lock().expect("lock").join("\n");
    assert!(stderr.lines().count() > 20, "debug logs were captured");
    assert_absent(stderr.as_bytes(), &everything, "the logs");
    // stdout carries the bootstrap banner, by design, and nothing else.
    let stdout = issued.out.lock().expect("lock").join("\n");
    assert_absent(stdout.as_bytes(), &everything[1..], "stdout");

    let exported = telemetry.requests();
    assert!(
        exported.iter().any(|r| r.path == "/v1/traces"),
        "spans were exported"
    );
    for r in &exported {
        assert_absent(
            &r.body,
            &everything,
            &format!("an OTLP export to {}", r.path),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_session_leaks_no_secret() {
    let collector = receiver(0).await;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("utf-8");
    let issued = session(&["--data-dir", data_arg], &collector.base).await;
    let db = DbConfig {
        database_url: None,
        data_dir: data.clone(),
    };
    check(&issued, &db, &collector).await;
    // The database file, its WAL and shared memory, byte for byte.
    assert!(data.join("keysmith.db").exists());
    scan_database(&data, &issued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_session_leaks_no_secret() {
    let collector = receiver(0).await;
    let pg = crate::pg_cluster::PgCluster::start_new();
    let url = pg.url();
    let issued = session(&["--database-url", &url], &collector.base).await;
    let db = DbConfig {
        database_url: Some(url),
        data_dir: std::env::temp_dir(),
    };
    check(&issued, &db, &collector).await;
    // Every file of the cluster once it has stopped: tables, indexes, TOAST,
    // free space and the WAL.
    pg.stop();
    assert!(pg.data_dir().join("pg_wal").is_dir());
    scan_database(pg.data_dir(), &issued);
}
