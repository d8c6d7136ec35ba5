//! What survives a restart, and what is never stored.

use keysmith::grpc::pb::{self, VerifyCode};
use sqlx::{Connection, Row};

use crate::helpers::{Backend, TestDb, spawn, spawn_on};

async fn keys_survive_a_restart_with_their_state(backend: Backend) {
    let app = spawn(backend).await;
    let live = app.create_with_scopes(&["a:read"]).await.secret;
    let revoked = app.create_with_scopes(&[]).await;
    app.admin
        .clone()
        .revoke_key(pb::RevokeKeyRequest {
            id: revoked.key.expect("key").id,
            reason: String::new(),
            ..Default::default()
        })
        .await
        .expect("revoke");
    let (db, token) = app.stop().await;

    let app = spawn_on(db, Some(token)).await;
    assert_eq!(
        app.verify_scopes(&live, &["a:read"]).await.code(),
        VerifyCode::Valid
    );
    assert_eq!(app.verify_code(&revoked.secret).await, VerifyCode::Revoked);
}

/// Every table's rows as text, for a secret scan.
async fn dump_tables(db: &TestDb) -> String {
    let tables = [
        "keys",
        "audit_events",
        "key_changes",
        "admin_tokens",
        "change_seq",
    ];
    let mut out = String::new();
    match db.backend {
        Backend::Postgres => {
            let url = db.config.database_url.as_deref().expect("pg url");
            let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
            for t in tables {
                let sql = format!("SELECT row_to_json(t)::text FROM {t} t");
                for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&mut conn)
                    .await
                    .expect("dump")
                {
                    out.push_str(&row.get::<String, _>(0));
                    out.push('\n');
                }
            }
        }
        Backend::Sqlite => {
            // The raw bytes of the database and its WAL: covers every table,
            // free pages and anything not yet checkpointed.
            let file = db.sqlite_file();
            for path in [file.clone(), file.with_extension("db-wal")] {
                if let Ok(bytes) = std::fs::read(&path) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
    out
}

async fn no_secret_is_ever_stored(backend: Backend) {
    let app = spawn(backend).await;
    let mut secrets = vec![app.token.clone()];
    for i in 0..5 {
        let created = app.create_with_scopes(&[]).await;
        secrets.push(created.secret.clone());
        if i % 2 == 0 {
            let rotated = app
                .admin
                .clone()
                .rotate_key(pb::RotateKeyRequest {
                    id: created.key.expect("key").id,
                    grace_period: None,
                    ..Default::default()
                })
                .await
                .expect("rotate")
                .into_inner();
            secrets.push(rotated.secret);
        }
    }
    let dump = dump_tables(&app.db).await;
    assert!(dump.len() > 1000, "the dump holds the data");
    for secret in &secrets {
        // The body (after the prefix) is the secret part; the hint's last
        // four characters are checksum digits and may appear.
        let body = &secret[8..secret.len() - 6];
        assert!(
            !dump.contains(body),
            "a secret was found in the {:?} store",
            app.db.backend
        );
    }
}

/// `kill -9` never loses the page cache, so the crash tests cannot tell a
/// synced commit from a cached one: the settings are checked here, on the
/// store's own pooled connections.
async fn commits_are_synced_before_they_are_acknowledged(backend: Backend) {
    let db = TestDb::new(backend).await;
    if let Some(url) = &db.config.database_url {
        // A database whose default acknowledges before the WAL flush: the
        // store must override it on every connection it opens.
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        let name: String = sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .expect("name");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {name} SET synchronous_commit = off"
        )))
        .execute(&mut conn)
        .await
        .expect("alter database");
    }
    let store = keysmith::app::open_store(&db.config, true)
        .await
        .expect("store");
    // Several at once, so the pool opens several connections.
    let all = futures::future::join_all((0..4).map(|_| store.durability())).await;
    for durability in all {
        match durability.expect("durability") {
            keysmith::store::Durability::Sqlite {
                journal_mode,
                synchronous,
            } => {
                assert_eq!(journal_mode, "wal");
                assert_eq!(synchronous, 2, "synchronous=FULL");
            }
            keysmith::store::Durability::Postgres {
                synchronous_commit, ..
            } => assert_eq!(synchronous_commit, "on"),
        }
    }
}

crate::backend_tests!(
    keys_survive_a_restart_with_their_state,
    no_secret_is_ever_stored,
    commits_are_synced_before_they_are_acknowledged,
);
