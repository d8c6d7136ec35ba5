//! Replays the README's grpcurl session verbatim against a real server, so
//! the README cannot drift from the product.
//!
//! Two substitutions only: the server's port-0 addresses replace the default
//! ones, and `cargo run -q --` runs the already built binary.

use std::process::Command;

use keysmith::grpc::pb;

use crate::helpers::{Backend, TestApp, TestDb};

/// The ```sh block between `<!-- {name}:start -->` and `<!-- {name}:end -->`.
fn readme_session(name: &str) -> String {
    let readme = include_str!("../../README.md");
    let (start_marker, end_marker) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    let start = readme
        .find(&start_marker)
        .expect("README has the session start marker")
        + start_marker.len();
    let end = readme
        .find(&end_marker)
        .expect("README has the session end marker");
    let block = &readme[start..end];
    let code = block
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block between the markers");
    code.to_owned()
}

/// Runs README session `name` with bash against a fresh server on SQLite,
/// in the session's working directory: the server, and what bash printed.
async fn replay_on_server(name: &str) -> (TestApp, std::process::Output) {
    replay_configured(name, |_| {}).await
}

/// [`replay_on_server`] with the server's configuration adjusted; the
/// session's `127.0.0.1:8443` is the public listener, when it is on.
async fn replay_configured(
    name: &str,
    configure: impl FnOnce(&mut keysmith::Config),
) -> (TestApp, std::process::Output) {
    let which = Command::new("sh")
        .args([
            "-c",
            "command -v grpcurl && command -v jq && command -v curl",
        ])
        .output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "grpcurl, jq and curl are needed; scripts/test installs them"
    );
    // The README runs next to a default `keysmith serve`: SQLite in ./keysmith-data.
    let db = TestDb::new(Backend::Sqlite).await;
    let workdir = db.dir.path().to_owned();
    let app = crate::helpers::spawn_configured(db, None, configure).await;
    let mut script = readme_session(name)
        .replace("127.0.0.1:50051", &app.verify_channel_addr())
        .replace("127.0.0.1:50052", &app.admin_channel_addr());
    if let Some(public) = app.public_addr {
        script = script.replace("127.0.0.1:8443", &public.to_string());
    }
    let shim =
        "cargo() { while [ \"$1\" != -- ]; do shift; done; shift; \"$KEYSMITH_BIN\" \"$@\"; }\n";
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &format!("{shim}{script}")])
            .current_dir(&workdir)
            .env("KEYSMITH_BIN", env!("CARGO_BIN_EXE_keysmith"))
            .env_remove("DATABASE_URL")
            .env_remove("KEYSMITH_ADMIN_TOKEN")
            .env_remove("KEYSMITH_ADMIN_ADDR")
            .output()
            .expect("run bash")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "session failed:\n{stdout}\n{stderr}"
    );
    (app, output)
}

/// [`replay_on_server`]'s stdout.
async fn replay(name: &str) -> String {
    let (_, output) = replay_on_server(name).await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The verify codes a session printed, in order.
fn codes(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"code\": \""))
        .map(|c| c.trim_end_matches(['"', ',']))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_session_works_verbatim() {
    let stdout = replay("grpcurl-session").await;
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_VALID",   // the new key
            "VERIFY_CODE_VALID",   // old key, during the overlap
            "VERIFY_CODE_VALID",   // its successor
            "VERIFY_CODE_REVOKED", // old key, revoked
            "VERIFY_CODE_VALID",   // successor unaffected
        ],
        "stdout:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_curl_session_works_verbatim() {
    let stdout = replay("curl-session").await;
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_VALID",   // created and verified over JSON
            "VERIFY_CODE_REVOKED", // revoked over JSON
        ],
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains(r#""ownerId": "acct_123""#),
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains(
            r#"{"code":"unauthenticated","message":"missing or invalid admin token"}401"#
        ),
        "stdout:\n{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_keyspace_session_works_verbatim() {
    let stdout = replay("keyspace-session").await;
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_VALID",     // in its own keyspace
            "VERIFY_CODE_NOT_FOUND", // named another keyspace
        ],
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains(r"regex = '''\bacme_(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b'''"),
        "gitleaks rule: {stdout}"
    );
    assert!(
        stdout.contains("name: keysmith-acme-api-key"),
        "TruffleHog detector: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_role_session_works_verbatim() {
    let stdout = replay("role-session").await;
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_VALID",              // through the role, all-of and any-of
            "VERIFY_CODE_INSUFFICIENT_SCOPE", // the role narrowed
        ],
        "stdout:\n{stdout}"
    );
    assert!(stdout.contains(r#""keysChanged": "1""#), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_leak_session_works_verbatim() {
    let (app, output) = replay_configured("leak-session", |c| {
        crate::scanner::with_public(c, "http://127.0.0.1:9/unused");
    })
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_REVOKED", // revoked by presenting it
            "VERIFY_CODE_REVOKED", // reported by a scanner, live: revoke
        ],
        "stdout:\n{stdout}"
    );
    assert!(stdout.contains(r#""owner": "acct_123""#), "{stdout}");
    assert!(stdout.contains(r#"{"status":"accepted"}"#), "{stdout}");
    assert!(
        stdout.contains(r#""policy": "LEAK_POLICY_REVOKE""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""revoked": true"#), "{stdout}");
    let mut admin = app.admin.clone();
    let leaked = admin
        .list_audit_events(keysmith::grpc::pb::ListAuditEventsRequest {
            action: "key.leaked".into(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actors: Vec<_> = leaked.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(actors.len(), 2, "{actors:?}");
    assert!(actors.contains(&"public"), "{actors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_limits_session_works_verbatim() {
    let stdout = replay("limits-session").await;
    assert_eq!(
        codes(&stdout),
        [
            "VERIFY_CODE_VALID",          // 2 credits and 1,200 tokens
            "VERIFY_CODE_USAGE_EXCEEDED", // 2 more, with 1 left
            "VERIFY_CODE_VALID",          // after the top-up
        ],
        "stdout:\n{stdout}"
    );
    assert!(
        stdout.contains(r#""ownerMetadata""#),
        "owner metadata on Verify: {stdout}"
    );
    assert!(
        stdout.contains(r#""name": "tokens""#),
        "limit states: {stdout}"
    );
}

/// The README's admin-token session: a narrower token for daily use, the
/// same with the CLI, and the first token retiring itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_admin_token_session_works_verbatim() {
    let (app, output) = replay_on_server("admin-token-session").await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("this token lacks keys.write"), "{stderr}");
    assert!(stdout.contains("refused, as it should be"), "{stdout}");
    let tokens = app
        .admin
        .clone()
        .list_admin_tokens(pb::ListAdminTokensRequest::default())
        .await
        .expect("list")
        .into_inner()
        .tokens;
    let state = |name: &str| {
        let t = tokens.iter().find(|t| t.name == name).expect(name);
        t.state()
    };
    assert_eq!(state("root"), pb::AdminTokenState::Revoked);
    assert_eq!(state("daily"), pb::AdminTokenState::Active);
    assert_eq!(state("ci"), pb::AdminTokenState::Active);
    let keys = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("keys")
        .into_inner()
        .keys;
    assert_eq!(keys.len(), 1, "the CI token made one key");
    assert_eq!(keys[0].owner_id, "acct_123");
}

/// The README's import session: a keyspace with a legacy format, one key
/// imported by its raw value and one by its hash, and the old key verified
/// as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_import_session_works_verbatim() {
    let stdout = replay("import-session").await;
    assert!(stdout.contains(r#""created": 2"#), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.trim() == "VERIFY_CODE_VALID"),
        "{stdout}"
    );
}
