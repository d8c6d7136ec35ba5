//! Every mutation leaves an audit event, written with it.

use keysmith::grpc::pb;

use crate::helpers::{Backend, spawn, spawn_with};

async fn every_mutation_is_audited_with_actor_and_changes(backend: Backend) {
    // Scheduled jobs would add notices of their own (the rotated key's
    // grace end is within the expiry notice) if a round fell mid-test.
    let app = spawn_with(backend, |c| {
        c.jobs.interval = std::time::Duration::from_secs(3600)
    })
    .await;
    let mut admin = app.admin.clone();
    let created = app.create_with_scopes(&["a:read", "a:write"]).await;
    let id = created.key.expect("key").id;
    admin
        .update_key(pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id: id.clone(),
                scopes: vec!["a:read".into()],
                ..Default::default()
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: vec!["scopes".into()],
            }),
        })
        .await
        .expect("update");
    let successor = admin
        .rotate_key(pb::RotateKeyRequest {
            id: id.clone(),
            grace_period: None,
            ..Default::default()
        })
        .await
        .expect("rotate")
        .into_inner()
        .key
        .expect("key")
        .id;
    admin
        .revoke_key(pb::RevokeKeyRequest {
            id: id.clone(),
            reason: "rotated out".into(),
            ..Default::default()
        })
        .await
        .expect("revoke");

    let req = pb::ListAuditEventsRequest {
        key_id: id.clone(),
        ..Default::default()
    };
    let events = admin
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events;
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["key.revoked", "key.rotated", "key.updated", "key.created"],
        "newest first"
    );
    assert!(events.iter().all(|e| e.actor.starts_with("admin:adm_")));
    assert!(
        events
            .iter()
            .all(|e| e.key_id == id && e.owner_id == "acct_test")
    );
    assert_eq!(events[0].reason, "rotated out");

    let update: serde_json::Value = serde_json::from_str(&events[2].changes_json).expect("json");
    assert_eq!(
        update["scopes"]["old"],
        serde_json::json!(["a:read", "a:write"])
    );
    assert_eq!(update["scopes"]["new"], serde_json::json!(["a:read"]));
    let rotation: serde_json::Value = serde_json::from_str(&events[1].changes_json).expect("json");
    assert_eq!(rotation["rotated_to"]["new"], serde_json::json!(successor));

    // The successor's own history starts with its creation by rotation.
    let req = pb::ListAuditEventsRequest {
        key_id: successor,
        ..Default::default()
    };
    let events = admin
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, "key.created");

    // Paging walks the whole log once.
    let mut token = String::new();
    let mut total = 0;
    loop {
        let req = pb::ListAuditEventsRequest {
            page_size: 2,
            page_token: token,
            ..Default::default()
        };
        let page = admin
            .list_audit_events(req)
            .await
            .expect("audit")
            .into_inner();
        total += page.events.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    // The five key events, and the minting of the test's admin token.
    assert_eq!(total, 6);
}

async fn chain(admin: &crate::helpers::Admin) -> pb::VerifyAuditChainResponse {
    let req = pb::VerifyAuditChainRequest {};
    admin
        .clone()
        .verify_audit_chain(req)
        .await
        .expect("verify")
        .into_inner()
}

/// Runs SQL straight against the test's database, around keysmith.
async fn tamper(db: &crate::helpers::TestDb, sql: &str) {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db.backend {
        Backend::Postgres => {
            let url = db.config.database_url.as_deref().expect("url");
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("tamper");
        }
        Backend::Sqlite => {
            let url = format!("sqlite://{}", db.sqlite_file().display());
            let mut c = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("tamper");
        }
    }
}

fn cli_verify(db: &crate::helpers::TestDb) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keysmith"));
    cmd.args(["audit", "verify", "--data-dir"])
        .arg(&db.config.data_dir);
    match &db.config.database_url {
        Some(url) => cmd.args(["--database-url", url]),
        None => cmd.env_remove("DATABASE_URL"),
    };
    cmd.output().expect("run keysmith audit verify")
}

async fn editing_an_audit_row_breaks_the_chain_at_that_row(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let id = app
        .create_with_scopes(&["a:read"])
        .await
        .key
        .expect("key")
        .id;
    admin
        .disable_key(pb::DisableKeyRequest {
            id: id.clone(),
            reason: "check".into(),
        })
        .await
        .expect("disable");
    admin
        .enable_key(pb::EnableKeyRequest { id: id.clone() })
        .await
        .expect("enable");
    app.revoke(&id).await;

    let report = chain(&admin).await;
    assert!(report.intact, "{report:?}");
    // Four key events, after the minting of the test's admin token.
    assert_eq!(report.events_checked, 5);
    let out = cli_verify(&app.db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 5 events"));

    let req = pb::ListAuditEventsRequest {
        action: "key.disabled".into(),
        ..Default::default()
    };
    let disabled = admin
        .list_audit_events(req)
        .await
        .expect("list")
        .into_inner()
        .events;
    assert_eq!(disabled.len(), 1);
    let target = disabled[0].id;
    tamper(
        &app.db,
        &format!("UPDATE audit_events SET reason = 'nothing to see' WHERE id = {target}"),
    )
    .await;

    let report = chain(&admin).await;
    assert!(!report.intact);
    assert_eq!(report.broken_event_id, target);
    assert!(report.reason.contains("edited"), "{report:?}");
    let out = cli_verify(&app.db);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("event {target}")), "{stderr}");

    // Deleting a row breaks the link of the row after it.
    tamper(
        &app.db,
        &format!("UPDATE audit_events SET reason = 'check' WHERE id = {target}"),
    )
    .await;
    tamper(
        &app.db,
        &format!("DELETE FROM audit_events WHERE id = {target}"),
    )
    .await;
    let report = chain(&admin).await;
    assert!(!report.intact);
    assert!(report.broken_event_id > target);
    assert!(report.reason.contains("deleted"), "{report:?}");
}

async fn audit_events_filter_by_action_and_time(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let before = keysmith::grpc::wkt::Timestamp {
        seconds: 1,
        nanos: 0,
    };
    let a = app.create_with_scopes(&[]).await.key.expect("key");
    app.revoke(&a.id).await;
    let created_at = a.create_time.expect("time");
    let list = |action: &str,
                from: Option<keysmith::grpc::wkt::Timestamp>,
                to: Option<keysmith::grpc::wkt::Timestamp>| {
        let mut admin = admin.clone();
        let req = pb::ListAuditEventsRequest {
            action: action.into(),
            from,
            to,
            ..Default::default()
        };
        async move {
            admin
                .list_audit_events(req)
                .await
                .expect("list")
                .into_inner()
                .events
        }
    };
    assert_eq!(list("key.revoked", None, None).await.len(), 1);
    assert_eq!(list("key.created", None, None).await.len(), 1);
    assert_eq!(list("", Some(created_at), None).await.len(), 2);
    assert!(list("", None, Some(before)).await.is_empty());
    let bad = pb::ListAuditEventsRequest {
        action: "DROP TABLE".into(),
        ..Default::default()
    };
    assert!(admin.list_audit_events(bad).await.is_err());
}

crate::backend_tests!(
    every_mutation_is_audited_with_actor_and_changes,
    editing_an_audit_row_breaks_the_chain_at_that_row,
    audit_events_filter_by_action_and_time,
);
