//! Replays the README's grpcurl session verbatim against a real server, so
//! the README cannot drift from the product.
//!
//! Two substitutions only: the server's port-0 addresses replace the default
//! ones, and `cargo run -q --` runs the already built binary.

use std::process::Command;

use crate::helpers::{Backend, TestDb, spawn_on};

const START: &str = "<!-- grpcurl-session:start -->";
const END: &str = "<!-- grpcurl-session:end -->";

fn readme_session() -> String {
    let readme = include_str!("../../README.md");
    let start = readme
        .find(START)
        .expect("README has the session start marker")
        + START.len();
    let end = readme.find(END).expect("README has the session end marker");
    let block = &readme[start..end];
    let code = block
        .split("```sh")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a ```sh block between the markers");
    code.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_session_works_verbatim() {
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

    let script = readme_session()
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
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "session failed:\n{stdout}\n{stderr}"
    );

    let codes: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("\"code\": \""))
        .map(|c| c.trim_end_matches(['"', ',']))
        .collect();
    assert_eq!(
        codes,
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
