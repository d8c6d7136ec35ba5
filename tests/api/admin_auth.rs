//! The admin API refuses calls without a valid bearer token, answers valid
//! ones whatever their address did before, learns tokens minted by another
//! process at once, and audits failures in bounded summaries.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use keysmith::{
    auth::SAMPLE_PEERS,
    domain::admin_token::AdminToken,
    grpc::pb::{self, key_admin_client::KeyAdminClient},
    store::AuditEvent,
};
use tonic::{Code, Request, transport::Channel};

use crate::helpers::{Backend, TestDb, eventually, spawn, spawn_with};

fn with_header<T>(msg: T, header: &str) -> Request<T> {
    let mut req = Request::new(msg);
    req.metadata_mut()
        .insert("authorization", header.parse().expect("ascii"));
    req
}

fn list() -> pb::ListKeysRequest {
    pb::ListKeysRequest::default()
}

/// A well-formed admin token that no server knows.
fn stranger() -> String {
    let t = AdminToken::generate().expect("rng");
    format!("Bearer {}", t.expose_secret())
}

/// The kinds of wrong authorization, in turn: a well-formed unknown token,
/// a malformed one, none at all.
async fn fail_once(client: &mut KeyAdminClient<Channel>, i: usize) -> tonic::Status {
    let result = match i % 3 {
        0 => client.list_keys(with_header(list(), &stranger())).await,
        1 => {
            let req = with_header(list(), "Bearer ksa_' OR 1=1 --");
            client.list_keys(req).await
        }
        _ => client.list_keys(list()).await,
    };
    result.expect_err("a wrong token is refused")
}

/// A channel to `addr` whose connections come from `local` (any 127.0.0.x
/// is local on Linux loopback), so that one test can be many peers.
async fn connect_from(addr: &str, local: IpAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .local_address(Some(local))
        .connect()
        .await
        .expect("connect")
}

async fn auth_events(db: &TestDb) -> Vec<AuditEvent> {
    let store = keysmith::app::open_store(&db.config, false)
        .await
        .expect("store");
    let events = store.audit_chain(0, 10_000).await.expect("audit events");
    events
        .into_iter()
        .filter(|e| e.action.starts_with("admin.auth"))
        .collect()
}

fn count(events: &[AuditEvent], field: &str) -> u64 {
    events
        .iter()
        .map(|e| e.changes[field].as_u64().expect(field))
        .sum()
}

/// Runs SQL straight against the test's database, around keysmith.
async fn run_sql(db: &TestDb, sql: &'static str) {
    use sqlx::Connection;
    match db.backend {
        Backend::Postgres => {
            let url = db.config.database_url.as_deref().expect("url");
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("sql");
        }
        Backend::Sqlite => {
            let url = format!("sqlite://{}", db.sqlite_file().display());
            let mut c = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::query(sql).execute(&mut c).await.expect("sql");
        }
    }
}

async fn admin_calls_need_a_valid_token(backend: Backend) {
    let app = spawn(backend).await;
    let mut bare = KeyAdminClient::new(app.admin_channel.clone());

    let missing = bare.list_keys(list()).await.expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);

    for header in [
        "Bearer ksa_not_a_real_token",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        &stranger(),
        &app.token,
    ] {
        let status = bare
            .list_keys(with_header(list(), header))
            .await
            .expect_err("bad token");
        assert_eq!(status.code(), Code::Unauthenticated, "{header:?}");
    }

    let good = format!("bearer {}", app.token);
    bare.list_keys(with_header(list(), &good))
        .await
        .expect("a valid token, scheme in any case");
}

async fn verify_needs_no_admin_token(backend: Backend) {
    let app = spawn(backend).await;
    let key = app.create_with_scopes(&[]).await.secret;
    // `app.verify` carries no authorization header.
    assert!(app.verify_scopes(&key, &[]).await.valid);
}

/// Someone behind the admins' address fails until it is blocked: their
/// further failures are refused outright, but the admins' valid token
/// still works, every time, and the whole episode is audited in summary.
async fn a_blocked_address_still_accepts_a_valid_token(backend: Backend) {
    let app = spawn_with(backend, |c| c.auth_limits.max_failures = 5).await;
    let mut bare = KeyAdminClient::new(app.admin_channel.clone());
    for i in 0..5 {
        let status = fail_once(&mut bare, i).await;
        assert_eq!(status.code(), Code::Unauthenticated, "failure {i}");
    }
    for i in 5..11 {
        let blocked = fail_once(&mut bare, i).await;
        assert_eq!(blocked.code(), Code::ResourceExhausted, "{blocked:?}");
        assert!(blocked.message().contains("retry in"), "{blocked:?}");
        app.admin
            .clone()
            .list_keys(list())
            .await
            .expect("a valid token from the blocked address");
    }
    app.create_with_scopes(&["a:read"]).await;

    let (db, _) = app.stop().await;
    let events = auth_events(&db).await;
    assert!(
        (1..=2).contains(&events.len()),
        "the first summary, and the rest at shutdown: {events:?}"
    );
    assert_eq!(count(&events, "failures"), 5);
    assert_eq!(count(&events, "refused_while_blocked"), 6);
    assert_eq!(count(&events, "blocked_peers"), 1);
    for e in &events {
        assert_eq!(e.action, "admin.auth_failed");
        assert_eq!(e.actor, "unauthenticated");
        assert!(e.key_id.is_none());
        assert_eq!(e.changes["sample_peers"], serde_json::json!(["127.0.0.1"]));
    }
    let blocked_in: Vec<_> = events
        .iter()
        .filter(|e| e.changes["blocked_peers"] == 1)
        .map(|e| &e.changes["sample_blocked_peers"])
        .collect();
    assert_eq!(blocked_in, [&serde_json::json!(["127.0.0.1"])]);
    let reasons = |r: &str| -> u64 {
        events
            .iter()
            .filter_map(|e| e.changes["reasons"][r].as_u64())
            .sum()
    };
    assert_eq!(
        [
            reasons("unknown token"),
            reasons("malformed token"),
            reasons("no token")
        ],
        [2, 2, 1]
    );
}

/// Many peers fail at once, each until it is blocked: the audit log gets
/// one summary at once and one at shutdown, not a row per peer, and every
/// peer's valid token works throughout.
async fn failures_from_many_peers_make_a_bounded_number_of_audit_events(backend: Backend) {
    const PEERS: u8 = 40;
    const TRIES: usize = 4;
    let app = spawn_with(backend, |c| {
        c.auth_limits.max_failures = 2;
        c.auth_limits.audit_interval = Duration::from_secs(3600);
    })
    .await;
    let addr = app.admin_channel_addr();
    let mut peers = Vec::new();
    for n in 2..2 + PEERS {
        let channel = connect_from(&addr, IpAddr::from([127, 0, 0, n])).await;
        let bearer =
            crate::helpers::Bearer(format!("Bearer {}", app.token).parse().expect("ascii"));
        peers.push((
            KeyAdminClient::new(channel.clone()),
            KeyAdminClient::with_interceptor(channel, bearer),
        ));
    }
    let calls = peers.into_iter().map(|(mut bad, mut good)| async move {
        for i in 0..TRIES {
            let status = fail_once(&mut bad, i).await;
            assert!(
                matches!(
                    status.code(),
                    Code::Unauthenticated | Code::ResourceExhausted
                ),
                "{status:?}"
            );
            good.list_keys(list()).await.expect("a valid token works");
        }
    });
    futures::future::join_all(calls).await;
    eventually("the first summary, written at once", || async {
        !auth_events(&app.db).await.is_empty()
    })
    .await;

    let (db, _) = app.stop().await;
    let events = auth_events(&db).await;
    assert!(events.len() <= 2, "{} audit events", events.len());
    let refused = count(&events, "failures") + count(&events, "refused_while_blocked");
    assert_eq!(refused, u64::from(PEERS) * TRIES as u64);
    assert_eq!(count(&events, "blocked_peers"), u64::from(PEERS));
    for e in &events {
        let sample = e.changes["sample_peers"].as_array().expect("sample");
        assert!(sample.len() <= SAMPLE_PEERS, "{sample:?}");
        for peer in sample {
            let peer: Ipv4Addr = peer.as_str().expect("str").parse().expect("IPv4");
            assert_eq!(peer.octets()[..3], [127, 0, 0], "{peer}");
        }
    }
    // Each peer is counted in the summary of its window: the first summary
    // may have seen only some of them.
    let peers: Vec<u64> = events
        .iter()
        .map(|e| e.changes["peers"].as_u64().expect("peers"))
        .collect();
    assert!(peers.iter().all(|&n| n <= u64::from(PEERS)), "{peers:?}");
    assert!(peers.iter().sum::<u64>() >= u64::from(PEERS), "{peers:?}");
}

/// `keysmith admin-token create`, run as another process next to the live
/// server, mints a token the server accepts on its very first call, with
/// no periodic reload to wait for.
async fn a_token_minted_by_another_process_works_at_once(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.auth_limits.token_reload_interval = Duration::from_secs(3600);
    })
    .await;
    for name in ["ops", "ci"] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keysmith"));
        cmd.args(["admin-token", "create", "--name", name, "--data-dir"])
            .arg(&app.db.config.data_dir)
            .env_remove("DATABASE_URL");
        if let Some(url) = &app.db.config.database_url {
            cmd.args(["--database-url", url]);
        }
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("run keysmith");
        assert!(out.status.success(), "{out:?}");
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let token = stdout.lines().last().expect("a token line").trim();
        let mut bare = KeyAdminClient::new(app.admin_channel.clone());
        let req = pb::CreateKeyRequest {
            owner_id: "acct_new".into(),
            ..Default::default()
        };
        bare.create_key(with_header(req, &format!("Bearer {token}")))
            .await
            .expect("the new token works at once");
    }
}

/// A token revoked in the store (by another process, or by hand) stops
/// working within the reload interval, though it is held in memory.
async fn a_token_revoked_in_the_store_stops_working(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.auth_limits.token_reload_interval = Duration::from_millis(50);
    })
    .await;
    app.admin.clone().list_keys(list()).await.expect("valid");
    run_sql(&app.db, "UPDATE admin_tokens SET revoked_at = 1").await;
    eventually("the revoked token to be refused", || async {
        let r = app.admin.clone().list_keys(list()).await;
        r.is_err_and(|s| s.code() == Code::Unauthenticated)
    })
    .await;
}

crate::backend_tests!(
    admin_calls_need_a_valid_token,
    verify_needs_no_admin_token,
    a_blocked_address_still_accepts_a_valid_token,
    failures_from_many_peers_make_a_bounded_number_of_audit_events,
    a_token_minted_by_another_process_works_at_once,
    a_token_revoked_in_the_store_stops_working,
);
