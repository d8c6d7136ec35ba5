//! Replays the README's grpcurl session verbatim against a real server, so
//! the README cannot drift from the product.
//!
//! Two substitutions only: the server's port-0 addresses replace the default
//! ones, and `cargo run -q --` runs the already built binary.

use std::process::Command;

use crate::helpers::{Backend, TestDb, spawn_on};

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

/// Runs README session `name` with bash against a fresh server on SQLite
/// in the session's working directory; its stdout.
async fn replay(name: &str) -> String {
    let which = Command::new("sh")
        .args(["-c", "command -v grpcurl && command -v jq"])
        .output();
    assert!(
        which.is_ok_and(|o| o.status.success()),
        "grpcurl and jq are needed; scripts/test installs them"
    );
    // The README runs next to a default `keysmith serve`: SQLite in ./keysmith-data.
    let db = TestDb::new(Backend::Sqlite).await;
    let workdir = db.dir.path().to_owned();
    let app = spawn_on(db, None).await;
    let verify_addr = app.verify_channel_addr();
    let admin_addr = app.admin_channel_addr();

    let script = readme_session(name)
        .replace("127.0.0.1:50051", &verify_addr)
        .replace("127.0.0.1:50052", &admin_addr);
    let shim =
        "cargo() { while [ \"$1\" != -- ]; do shift; done; shift; \"$KEYSMITH_BIN\" \"$@\"; }\n";
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &format!("{shim}{script}")])
            .current_dir(&workdir)
            .env("KEYSMITH_BIN", env!("CARGO_BIN_EXE_keysmith"))
            .env_remove("DATABASE_URL")
            .output()
            .expect("run bash")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "session failed:\n{stdout}\n{stderr}"
    );
    stdout
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
