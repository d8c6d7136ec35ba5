//! Admin tokens over their life: audited when minted, read and revoked;
//! refused once expired or revoked, on every replica.

use std::{sync::atomic::Ordering, time::Duration};

use keysmith::{auth::VerifyAuth, grpc::pb};
use sqlx::Connection;
use tonic::{Code, Request};

use crate::{
    helpers::{Admin, Backend, TestApp, TestDb, eventually, spawn, spawn_configured, spawn_with},
    token_support::{get_token, mint, names, with_permissions},
    usage::manual_clock,
};

async fn list_keys(admin: &Admin) -> Result<(), tonic::Status> {
    admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await
        .map(drop)
}

async fn audit(app: &TestApp, action: &str) -> Vec<pb::AuditEvent> {
    let req = pb::ListAuditEventsRequest {
        action: action.into(),
        ..Default::default()
    };
    app.admin
        .clone()
        .list_audit_events(req)
        .await
        .expect("audit")
        .into_inner()
        .events
}

fn changes(e: &pb::AuditEvent) -> serde_json::Value {
    serde_json::from_str(&e.changes_json).expect("json")
}

async fn minting_reading_and_revoking_are_audited_with_the_acting_token(backend: Backend) {
    let app = spawn(backend).await;
    let manager = mint(
        &app,
        &app.admin,
        with_permissions("manager", names(&["tokens.manage", "keys.read"])),
    )
    .await;
    let child = mint(
        &app,
        &manager.admin,
        with_permissions("child", names(&["keys.read"])),
    )
    .await;
    let mut m = manager.admin.clone();
    m.get_admin_token(pb::GetAdminTokenRequest {
        id: child.id.clone(),
    })
    .await
    .expect("get");
    m.list_admin_tokens(pb::ListAdminTokensRequest::default())
        .await
        .expect("list");
    let revoke = pb::RevokeAdminTokenRequest {
        id: child.id.clone(),
        reason: "rotated out".into(),
        ..Default::default()
    };
    let revoked = m
        .revoke_admin_token(revoke.clone())
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(
        revoked.token.expect("token").state(),
        pb::AdminTokenState::Revoked
    );
    m.revoke_admin_token(revoke)
        .await
        .expect("revoking twice changes nothing");

    let actor = format!("admin:{}", manager.id);
    let created = audit(&app, "admin_token.created").await;
    let by_manager: Vec<_> = created.iter().filter(|e| e.actor == actor).collect();
    assert_eq!(by_manager.len(), 1, "{created:?}");
    let minted = changes(by_manager[0]);
    assert_eq!(minted["token_id"], child.id.as_str());
    assert_eq!(minted["permissions"], serde_json::json!(["keys.read"]));
    assert!(
        !by_manager[0].changes_json.contains(&child.secret[4..]),
        "never the secret"
    );

    let revocations = audit(&app, "admin_token.revoked").await;
    assert_eq!(revocations.len(), 1, "the second revoke changed nothing");
    assert_eq!(
        (
            revocations[0].actor.as_str(),
            revocations[0].reason.as_str()
        ),
        (actor.as_str(), "rotated out")
    );
    assert_eq!(changes(&revocations[0])["token_id"], child.id.as_str());
    let reads = audit(&app, "admin_token.read").await;
    assert_eq!(
        reads.len(),
        2,
        "the get, and the revoke that changed nothing"
    );
    assert!(
        reads
            .iter()
            .all(|e| e.actor == actor && changes(e)["token_id"] == child.id.as_str())
    );
    let lists = audit(&app, "admin_token.listed").await;
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].actor, actor);

    // The revoked child is refused, as an unknown token is.
    let status = list_keys(&child.admin).await.expect_err("revoked");
    assert_eq!(status.code(), Code::Unauthenticated);
    // The manager's last use reaches the store with the next flush.
    eventually("the manager's last use to be recorded", || async {
        let req = pb::GetAdminTokenRequest {
            id: manager.id.clone(),
        };
        let got = app.admin.clone().get_admin_token(req).await.expect("get");
        got.into_inner()
            .token
            .expect("token")
            .last_used_time
            .is_some()
    })
    .await;
}

async fn an_expired_token_is_refused_like_an_unknown_one(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.verify_auth = VerifyAuth::Required;
    })
    .await;
    let hour = now.load(Ordering::SeqCst) / 1000 + 3600;
    let req = pb::CreateAdminTokenRequest {
        expire_time: Some(keysmith::grpc::wkt::Timestamp {
            seconds: hour,
            nanos: 0,
        }),
        ..with_permissions("short", names(&["keys.read", "verify"]))
    };
    let short = mint(&app, &app.admin, req).await;
    list_keys(&short.admin).await.expect("before its expiry");
    let verify = |token: &str| {
        let mut req = Request::new(pb::VerifyRequest {
            key: "sk_live_x".into(),
            ..Default::default()
        });
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        let mut v = app.verify.clone();
        async move { v.verify(req).await.map(drop) }
    };
    verify(&short.secret)
        .await
        .expect("verify, before its expiry");

    now.fetch_add(2 * 3600 * 1000, Ordering::SeqCst);
    let expired = list_keys(&short.admin).await.expect_err("expired");
    let unknown = list_keys(&crate::token_support::client(&app, &stranger()))
        .await
        .expect_err("unknown");
    assert_eq!(
        (expired.code(), expired.message()),
        (unknown.code(), unknown.message())
    );
    assert_eq!(expired.code(), Code::Unauthenticated);
    let on_verify = verify(&short.secret)
        .await
        .expect_err("expired on the verify listener");
    assert_eq!(on_verify.code(), Code::Unauthenticated);
    let shown = get_token(&app.admin, &short.id).await.expect("get");
    assert_eq!(shown.state(), pb::AdminTokenState::Expired);
}

fn stranger() -> String {
    let t = keysmith::domain::admin_token::AdminToken::generate().expect("rng");
    t.expose_secret().to_owned()
}

/// Two replicas on one PostgreSQL, neither reloading its tokens on a timer
/// (an hour apart): the revocation's NOTIFY alone makes the other replica
/// refuse the token, on both listeners; after its LISTEN connection is
/// killed, the rebuilt one (and the reload that follows it) does again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_on_a_second_replica() {
    let slow = |c: &mut keysmith::Config| {
        c.auth_limits.token_reload_interval = Duration::from_secs(3600);
        c.verify_auth = VerifyAuth::Required;
    };
    let first = spawn_configured(TestDb::new(Backend::Postgres).await, None, slow).await;
    let db = TestDb {
        backend: Backend::Postgres,
        config: first.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let second = spawn_configured(db, Some(first.token.clone()), slow).await;
    let key = first.create_with_scopes(&[]).await.secret;
    for round in 0..2 {
        let token = mint(
            &first,
            &first.admin,
            with_permissions("gateway", names(&["keys.read", "verify"])),
        )
        .await;
        let on_second = crate::token_support::client(&second, &token.secret);
        // A miss on the admin listener reloads: the second replica learns it.
        list_keys(&on_second)
            .await
            .expect("the token works on the second replica");
        let verify = || {
            let mut req = Request::new(pb::VerifyRequest {
                key: key.clone(),
                ..Default::default()
            });
            let bearer = format!("Bearer {}", token.secret).parse().expect("ascii");
            req.metadata_mut().insert("authorization", bearer);
            let mut v = second.verify.clone();
            async move { v.verify(req).await.map(|r| r.into_inner().valid) }
        };
        assert!(verify().await.expect("verify on the second replica"));
        if round == 1 {
            let url = first.db.config.database_url.clone().expect("url");
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() \
                 AND application_name LIKE 'keysmith-tokens-%'",
            )
            .fetch_all(&mut conn)
            .await
            .expect("terminate");
            assert_eq!(killed, [true, true], "both replicas' token listeners");
        }
        let req = pb::RevokeAdminTokenRequest {
            id: token.id.clone(),
            reason: "leaked".into(),
            ..Default::default()
        };
        first
            .admin
            .clone()
            .revoke_admin_token(req)
            .await
            .expect("revoke");
        eventually("the second replica to refuse the revoked token", || async {
            let admin = list_keys(&on_second).await;
            let verify = verify().await;
            admin.is_err_and(|s| s.code() == Code::Unauthenticated)
                && verify.is_err_and(|s| s.code() == Code::Unauthenticated)
        })
        .await;
    }
}

crate::backend_tests!(
    minting_reading_and_revoking_are_audited_with_the_acting_token,
    an_expired_token_is_refused_like_an_unknown_one,
);
