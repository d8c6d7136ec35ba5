//! The admin CLI end to end against a real server: tables, `--json`, and
//! clear errors for a wrong token or an unreachable server.

use std::process::{Command, Output};

use crate::helpers::{Backend, TestApp, spawn};

fn cli(app: &TestApp, token: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args(args)
        .env("KEYSMITH_ADMIN_ADDR", app.admin_channel_addr())
        .env("KEYSMITH_ADMIN_TOKEN", token)
        .output()
        .expect("run keysmith")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn cli_drives_the_admin_api(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.token.clone();
    let created = cli(
        &app,
        &token,
        &[
            "key", "create", "--owner", "acct_cli", "--scope", "a:read", "--env", "live", "--json",
        ],
    );
    let stderr = String::from_utf8_lossy(&created.stderr).into_owned();
    let json: serde_json::Value = serde_json::from_str(ok(&created).trim()).expect("json");
    let secret = json["secret"].as_str().expect("secret").to_owned();
    let id = json["id"].as_str().expect("id").to_owned();
    assert!(secret.starts_with("sk_live_"));
    assert!(
        stderr.contains("shown once"),
        "a warning goes with the secret: {stderr}"
    );
    assert!(app.verify_scopes(&secret, &["a:read"]).await.valid);

    let table = ok(&cli(&app, &token, &["key", "list", "--owner", "acct_cli"]));
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&id) && table.contains("active"), "{table}");
    assert!(!table.contains(&secret[8..]), "list never shows a secret");

    let rotated: serde_json::Value = serde_json::from_str(
        ok(&cli(
            &app,
            &token,
            &["key", "rotate", &id, "--grace", "0s", "--json"],
        ))
        .trim(),
    )
    .expect("json");
    assert_eq!(rotated["previous"], id.as_str());
    let revoked = ok(&cli(
        &app,
        &token,
        &["key", "revoke", &id, "--reason", "done"],
    ));
    assert!(revoked.contains("revoked"), "{revoked}");
    let events: serde_json::Value = serde_json::from_str(
        ok(&cli(
            &app,
            &token,
            &["audit", "list", "--key", &id, "--json"],
        ))
        .trim(),
    )
    .expect("json");
    let actions: Vec<&str> = events
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["key.revoked", "key.rotated", "key.created"]);

    // Errors a person can act on.
    let bad = cli(&app, "ksa_wrong", &["key", "get", &id]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("admin token was refused"));
    let missing = cli(
        &app,
        &token,
        &["key", "get", "key_01aaaaaaaaaaaaaaaaaaaaaaaa"],
    );
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    let unreachable = Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args([
            "key",
            "list",
            "--admin-addr",
            "127.0.0.1:1",
            "--token",
            &token,
        ])
        .output()
        .expect("run");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unreachable.stderr)
            .contains("cannot reach the admin API at 127.0.0.1:1")
    );
}

async fn cli_manages_keyspaces_and_prints_their_scanner_rules(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.token.clone();
    let run = |args: &[&str]| cli(&app, &token, args);
    let created = ok(&run(&[
        "keyspace",
        "create",
        "--name",
        "Acme API",
        "--prefix",
        "acme",
        "--default-env",
        "live",
        "--max-lifetime",
        "30d",
        "--json",
    ]));
    let ks: serde_json::Value = serde_json::from_str(created.trim()).expect("json");
    let id = ks["id"].as_str().expect("id").to_owned();
    let regex = r"\bacme_(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b";
    assert_eq!(ks["scanner_regex"], regex);
    let key: serde_json::Value = serde_json::from_str(
        ok(&run(&[
            "key",
            "create",
            "--owner",
            "acct_cli",
            "--keyspace",
            &id,
            "--json",
        ]))
        .trim(),
    )
    .expect("json");
    assert!(
        key["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("acme_sk_live_"))
    );
    assert_eq!(key["keyspace"], id.as_str());
    let table = ok(&run(&["keyspace", "list"]));
    assert!(table.starts_with("ID") && table.contains(&id) && table.contains("ks_default"));
    let gitleaks = ok(&run(&["keyspace", "pattern", &id, "--format", "gitleaks"]));
    assert!(
        gitleaks.contains(&format!("regex = '''{regex}'''")),
        "{gitleaks}"
    );
    let both = ok(&run(&["keyspace", "pattern", &id]));
    assert!(
        both.contains("[[rules]]") && both.contains("detectors:"),
        "{both}"
    );
    let refused = run(&["keyspace", "update", &id, "--prefix", "other"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("FailedPrecondition") && stderr.contains("prefix"),
        "{stderr}"
    );
}

/// `keysmith role …`, and `key create --role`: a role's change reaches the
/// key that holds it.
async fn cli_manages_roles(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.token.clone();
    let run = |args: &[&str]| cli(&app, &token, args);
    let json =
        |out: &Output| -> serde_json::Value { serde_json::from_str(ok(out).trim()).expect("json") };
    let role = json(&run(&[
        "role",
        "create",
        "ks_default",
        "support",
        "--scope",
        "tickets:read",
        "--description",
        "the support desk",
        "--json",
    ]));
    assert_eq!(role["scopes"], serde_json::json!(["tickets:read"]));
    let key = json(&run(&[
        "key", "create", "--owner", "acct_cli", "--role", "support", "--json",
    ]));
    assert_eq!(key["roles"], serde_json::json!(["support"]));
    let secret = key["secret"].as_str().expect("secret").to_owned();
    assert!(app.verify_scopes(&secret, &["tickets:read"]).await.valid);
    assert!(!app.verify_scopes(&secret, &["tickets:write"]).await.valid);

    let updated = json(&run(&[
        "role",
        "update",
        "ks_default",
        "support",
        "--scope",
        "tickets:read",
        "--scope",
        "tickets:write",
        "--json",
    ]));
    assert_eq!(updated["keys_changed"], 1);
    assert!(app.verify_scopes(&secret, &["tickets:write"]).await.valid);

    let table = ok(&run(&["role", "list", "ks_default"]));
    assert!(table.starts_with("KEYSPACE"), "{table}");
    assert!(
        table.contains("support") && table.contains("tickets:read tickets:write"),
        "{table}"
    );
    // Held by a live key: refused, and the error says why.
    let refused = run(&["role", "delete", "ks_default", "support"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("FailedPrecondition") || stderr.contains("holds"),
        "{stderr}"
    );
    let got = json(&run(&["role", "get", "ks_default", "support", "--json"]));
    assert_eq!(got["description"], "the support desk");
}

/// `keysmith owner …` and `keysmith credits …`: an owner's shared balance,
/// topped up from the command line.
async fn cli_manages_owners_and_credits(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.token.clone();
    let run = |args: &[&str]| cli(&app, &token, args);
    let json =
        |out: &Output| -> serde_json::Value { serde_json::from_str(ok(out).trim()).expect("json") };
    let owner = json(&run(&[
        "owner",
        "update",
        "acct_cli",
        "--metadata",
        "plan=pro",
        "--credits",
        "1",
        "--json",
    ]));
    assert_eq!(owner["has_credits"], true);
    assert_eq!(owner["metadata"]["plan"], "pro");
    let key = json(&run(&["key", "create", "--owner", "acct_cli", "--json"]));
    let secret = key["secret"].as_str().expect("secret").to_owned();
    assert!(app.verify_scopes(&secret, &[]).await.valid);
    assert_eq!(
        app.verify_code(&secret).await,
        keysmith::grpc::pb::VerifyCode::UsageExceeded
    );
    let topped = json(&run(&[
        "credits",
        "update",
        "--owner",
        "acct_cli",
        "--increment",
        "5",
        "--reason",
        "goodwill",
        "--json",
    ]));
    assert_eq!(topped["remaining"], 5);
    assert!(
        app.verify_scopes(&secret, &[]).await.valid,
        "seen here at once"
    );
    let got = json(&run(&["credits", "get", "--owner", "acct_cli", "--json"]));
    assert!(got["remaining"].as_i64().unwrap() + got["held"].as_i64().unwrap() >= 4);
    let table = ok(&run(&["owner", "list"]));
    assert!(
        table.starts_with("OWNER") && table.contains("plan=pro"),
        "{table}"
    );
    let refused = run(&[
        "credits",
        "update",
        "--owner",
        "acct_cli",
        "--decrement",
        "1000",
    ]);
    assert!(!refused.status.success(), "more than the balance");
}

/// `cli` with `stdin` piped in.
fn cli_stdin(app: &TestApp, token: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_keysmith"))
        .args(args)
        .env("KEYSMITH_ADMIN_ADDR", app.admin_channel_addr())
        .env("KEYSMITH_ADMIN_TOKEN", token)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run keysmith");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

async fn cli_looks_up_and_reports_leaked_keys(backend: Backend) {
    let app = spawn(backend).await;
    let token = app.token.clone();
    let json =
        |out: &Output| -> serde_json::Value { serde_json::from_str(ok(out).trim()).expect("json") };
    let ks = json(&cli(
        &app,
        &token,
        &[
            "keyspace",
            "create",
            "--name",
            "Acme",
            "--prefix",
            "acme",
            "--leak-live",
            "disable",
            "--json",
        ],
    ));
    let ks_id = ks["id"].as_str().expect("id").to_owned();
    assert_eq!(ks["leak_response"]["live"], "LEAK_POLICY_DISABLE");
    let updated = json(&cli(
        &app,
        &token,
        &[
            "keyspace",
            "update",
            &ks_id,
            "--public-revocation",
            "off",
            "--json",
        ],
    ));
    assert_eq!(
        updated["leak_response"]["live"], "LEAK_POLICY_DISABLE",
        "kept"
    );
    assert_eq!(updated["leak_response"]["public_revocation"], false);
    let key = json(&cli(
        &app,
        &token,
        &[
            "key",
            "create",
            "--owner",
            "acct_cli",
            "--keyspace",
            &ks_id,
            "--env",
            "live",
            "--json",
        ],
    ));
    let (id, secret) = (key["id"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let found = json(&cli_stdin(
        &app,
        &token,
        &["key", "lookup", "--json"],
        &format!("{secret}\n"),
    ));
    assert_eq!(found["id"], id);
    let reported = json(&cli_stdin(
        &app,
        &token,
        &[
            "key",
            "report-leak",
            "--source",
            "gitleaks",
            "--url",
            "https://ci.example.com/1",
            "--json",
        ],
        secret,
    ));
    assert_eq!(reported["policy"], "LEAK_POLICY_DISABLE");
    assert_eq!(
        app.verify_code(secret).await,
        keysmith::grpc::pb::VerifyCode::Disabled
    );
    let empty = cli_stdin(&app, &token, &["key", "lookup"], "");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("stdin"));
}

crate::backend_tests!(
    cli_looks_up_and_reports_leaked_keys,
    cli_manages_owners_and_credits,
    cli_drives_the_admin_api,
    cli_manages_keyspaces_and_prints_their_scanner_rules,
    cli_manages_roles,
);
