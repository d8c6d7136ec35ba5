//! `keysmith admin-token …`: offline minting with limits, and the verbs
//! that go through the Admin API, bounded by the calling token.

use std::process::{Command, Output};

use keysmith::grpc::pb;

use crate::{
    helpers::{Admin, Backend, TestApp, spawn},
    token_support::client,
};

async fn list_keys(admin: &Admin) -> Result<(), tonic::Status> {
    admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await
        .map(drop)
}

fn cli(app: &TestApp, token: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keysmith"));
    cmd.args(args)
        .env("KEYSMITH_ADMIN_ADDR", app.admin_channel_addr())
        .env("KEYSMITH_ADMIN_TOKEN", token)
        .env("KEYSMITH_DATA_DIR", &app.db.config.data_dir)
        .env_remove("DATABASE_URL");
    if let Some(url) = &app.db.config.database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.output().expect("run keysmith")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn the_cli_mints_lists_shows_and_revokes_tokens(backend: Backend) {
    let app = spawn(backend).await;
    // Offline, against the database, with limits.
    let offline = ok(&cli(
        &app,
        "",
        &[
            "admin-token",
            "create",
            "--name",
            "support",
            "--permission",
            "keys.read",
            "--owner",
            "acct_a",
            "--expires-in",
            "1h",
        ],
    ));
    let support = offline
        .lines()
        .last()
        .expect("the token line")
        .trim()
        .to_owned();
    let support_admin = client(&app, &support);
    list_keys(&support_admin)
        .await
        .expect("the offline token works at once");
    let create = pb::CreateKeyRequest {
        owner_id: "acct_a".into(),
        ..Default::default()
    };
    let status = support_admin
        .clone()
        .create_key(create)
        .await
        .expect_err("read only");
    assert_eq!(status.message(), "this token lacks keys.write");
    let bad = cli(
        &app,
        "",
        &["admin-token", "create", "--permission", "keys.delete"],
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`keys.delete` is not a permission"));

    // Online, bounded by the calling token.
    let json = ok(&cli(
        &app,
        &app.token,
        &[
            "admin-token",
            "create",
            "--api",
            "--name",
            "daily",
            "--permission",
            "keys.read",
            "--permission",
            "tokens.manage",
            "--json",
        ],
    ));
    let daily: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    let (daily_id, daily_secret) = (
        daily["id"].as_str().expect("id"),
        daily["secret"].as_str().expect("secret"),
    );
    let stronger = cli(
        &app,
        daily_secret,
        &[
            "admin-token",
            "create",
            "--api",
            "--permission",
            "keys.write",
        ],
    );
    assert!(!stronger.status.success());
    assert!(String::from_utf8_lossy(&stronger.stderr).contains("permissions"));

    let table = ok(&cli(&app, &app.token, &["admin-token", "list"]));
    assert!(
        table.starts_with("ID") && table.contains("daily") && table.contains("support"),
        "{table}"
    );
    assert!(!table.contains(&daily_secret[4..]), "never a secret");
    let shown = ok(&cli(
        &app,
        &app.token,
        &["admin-token", "get", daily_id, "--json"],
    ));
    let shown: serde_json::Value = serde_json::from_str(shown.trim()).expect("json");
    assert_eq!(
        shown["permissions"],
        serde_json::json!(["keys.read", "tokens.manage"])
    );
    assert!(shown.get("secret").is_none());

    // The daily token retires the first one.
    let first_id = {
        let listed = ok(&cli(&app, daily_secret, &["admin-token", "list", "--json"]));
        let listed: serde_json::Value = serde_json::from_str(listed.trim()).expect("json");
        listed["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["name"] == "test")
            .expect("the first token")["id"]
            .as_str()
            .expect("id")
            .to_owned()
    };
    let out = ok(&cli(
        &app,
        daily_secret,
        &["admin-token", "revoke", &first_id, "--reason", "retired"],
    ));
    assert!(out.contains("revoked"), "{out}");
    let refused = cli(&app, &app.token, &["key", "list"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("admin token was refused"));
}

crate::backend_tests!(the_cli_mints_lists_shows_and_revokes_tokens);
