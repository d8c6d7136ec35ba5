//! A role's change reaches every key holding it: on this replica and on
//! another, and on the stream, as SCOPES_NARROWED where it narrows.

use std::time::Duration;

use keysmith::grpc::pb::{self, KeyEventKind, VerifyCode};
use tonic::Streaming;

use crate::{
    helpers::{Backend, TestApp, TestDb, eventually, spawn, spawn_on},
    roles::{DEFAULT_KS, create_role, key_request, scopes_update},
};

async fn watch(app: &TestApp, req: pb::WatchRevocationsRequest) -> Streaming<pb::KeyEvent> {
    app.verify
        .clone()
        .watch_revocations(req)
        .await
        .expect("watch")
        .into_inner()
}

async fn next(stream: &mut Streaming<pb::KeyEvent>) -> pb::KeyEvent {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event within the deadline")
        .expect("stream ok")
        .expect("stream open")
}

async fn code(app: &TestApp, key: &str, scope: &str) -> VerifyCode {
    app.verify_scopes(key, &[scope]).await.code()
}

async fn update(app: &TestApp, scopes: &[&str]) -> pb::UpdateRoleResponse {
    app.admin
        .clone()
        .update_role(scopes_update(DEFAULT_KS, "team", scopes))
        .await
        .expect("update role")
        .into_inner()
}

async fn a_role_change_reaches_every_key_holding_it(backend: Backend) {
    let app = spawn(backend).await;
    create_role(&app.admin, DEFAULT_KS, "team", &["a:read", "b:read"]).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let k = app.create(key_request(DEFAULT_KS, &["team"], &[])).await;
        holders.push((k.key.expect("key"), k.secret));
    }
    holders.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let other = app.create(key_request(DEFAULT_KS, &[], &["b:read"])).await;
    let (first, _) = &holders[0];
    let mut live = watch(&app, Default::default()).await;
    let before = app.get(&first.id).await;

    // Narrowed: each holder gets one restrictive event, in key order.
    let resp = update(&app, &["a:read"]).await;
    assert_eq!(resp.keys_changed, 2);
    for (i, (key, _)) in holders.iter().enumerate() {
        let e = next(&mut live).await;
        assert_eq!(
            (e.key_id.as_str(), e.kind()),
            (key.id.as_str(), KeyEventKind::ScopesNarrowed)
        );
        if i == 1 {
            assert_eq!(e.cursor, resp.cursor, "the response's cursor is the last");
        }
    }
    for (_, secret) in &holders {
        eventually("each holder to lose b:read", || async {
            code(&app, secret, "b:read").await == VerifyCode::InsufficientScope
        })
        .await;
        assert_eq!(code(&app, secret, "a:read").await, VerifyCode::Valid);
    }
    assert_eq!(code(&app, &other.secret, "b:read").await, VerifyCode::Valid);
    let after = app.get(&first.id).await;
    assert_eq!(
        after.version,
        before.version + 1,
        "a holder's version moves"
    );
    assert_eq!(after.roles, ["team"]);

    // Resumable by cursor like any change.
    let mut replay = watch(
        &app,
        pb::WatchRevocationsRequest {
            after_cursor: Some(resp.cursor - 2),
            ..Default::default()
        },
    )
    .await;
    for (key, _) in &holders {
        let e = next(&mut replay).await;
        assert_eq!(
            (e.key_id.as_str(), e.kind()),
            (key.id.as_str(), KeyEventKind::ScopesNarrowed)
        );
    }

    // Widened: an update, not a narrowing; the holders grant the new scope.
    let mut all = watch(
        &app,
        pb::WatchRevocationsRequest {
            all_changes: true,
            ..Default::default()
        },
    )
    .await;
    let resp = update(&app, &["a:read", "c:read"]).await;
    assert_eq!(resp.keys_changed, 2);
    for (key, _) in &holders {
        let e = next(&mut all).await;
        assert_eq!(
            (e.key_id.as_str(), e.kind()),
            (key.id.as_str(), KeyEventKind::Updated)
        );
    }
    for (_, secret) in &holders {
        eventually("each holder to gain c:read", || async {
            code(&app, secret, "c:read").await == VerifyCode::Valid
        })
        .await;
    }
    // A description alone changes no key.
    let describe = pb::UpdateRoleRequest {
        role: Some(pb::Role {
            keyspace: DEFAULT_KS.into(),
            name: "team".into(),
            description: "renamed team".into(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["description".into()],
        }),
    };
    let resp = app
        .admin
        .clone()
        .update_role(describe)
        .await
        .expect("update");
    assert_eq!(resp.into_inner().keys_changed, 0);
}

/// A replica that starts later loads every key with what its roles grant,
/// whatever mix of keys with none, one or several roles it finds.
async fn a_replica_started_later_loads_what_roles_grant(backend: Backend) {
    let first = spawn(backend).await;
    // Named so that a key's first role (by name) grants the least.
    create_role(&first.admin, DEFAULT_KS, "a-team", &["a:read"]).await;
    create_role(&first.admin, DEFAULT_KS, "b-ops", &["b:read", "a:read"]).await;
    let mut keys = Vec::new();
    for roles in [&[][..], &["a-team"], &["b-ops", "a-team"], &[], &["b-ops"]] {
        let k = first
            .create(key_request(DEFAULT_KS, roles, &["own:read"]))
            .await;
        keys.push((roles, k.secret));
    }
    let db = TestDb {
        backend,
        config: first.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let later = spawn_on(db, Some(first.token.clone())).await;
    for (roles, secret) in &keys {
        let v = later.verify_scopes(secret, &[]).await;
        let want = match roles.len() {
            0 => vec!["own:read"],
            2 => vec!["own:read", "a:read", "b:read"],
            _ if roles[0] == "a-team" => vec!["own:read", "a:read"],
            _ => vec!["own:read", "b:read", "a:read"],
        };
        assert_eq!(v.scopes, want, "roles {roles:?}");
    }
}

crate::backend_tests!(
    a_role_change_reaches_every_key_holding_it,
    a_replica_started_later_loads_what_roles_grant,
);

/// Two replicas on one PostgreSQL: a role narrowed through one is narrowed
/// on the other, which streams SCOPES_NARROWED for the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_narrows_on_another_replica() {
    let first = spawn(Backend::Postgres).await;
    let db = TestDb {
        backend: Backend::Postgres,
        config: first.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let second = spawn_on(db, Some(first.token.clone())).await;
    create_role(&first.admin, DEFAULT_KS, "team", &["a:read", "b:read"]).await;
    let key = first.create(key_request(DEFAULT_KS, &["team"], &[])).await;
    let id = key.key.expect("key").id;
    eventually("the other replica to grant b:read by the role", || async {
        code(&second, &key.secret, "b:read").await == VerifyCode::Valid
    })
    .await;
    let mut events = watch(&second, Default::default()).await;

    let resp = update(&first, &["a:read"]).await;
    eventually("the other replica to deny b:read", || async {
        code(&second, &key.secret, "b:read").await == VerifyCode::InsufficientScope
    })
    .await;
    assert_eq!(
        code(&second, &key.secret, "a:read").await,
        VerifyCode::Valid
    );
    let e = next(&mut events).await;
    assert_eq!(
        (e.key_id.as_str(), e.kind(), e.cursor),
        (id.as_str(), KeyEventKind::ScopesNarrowed, resp.cursor)
    );
}
