//! The change feed against a log edited by hand: a row it cannot apply, a
//! log replaced under it, rows pruned under a stream, and receipts that
//! must not count a replica that is behind.

use std::time::Duration;

use keysmith::grpc::pb::{self, VerifyCode};
use tonic::{Code, Streaming};

use crate::helpers::{Backend, TestApp, TestDb, eventually, spawn_with};

/// Runs `sql` (one or more statements) straight against the test's database.
async fn sql(db: &TestDb, sql: &str) {
    use sqlx::Connection;
    let sql = sqlx::AssertSqlSafe(sql.to_owned());
    match db.backend {
        Backend::Postgres => {
            let url = db.config.database_url.as_deref().expect("url");
            let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("sql");
        }
        Backend::Sqlite => {
            let url = format!("sqlite://{}", db.sqlite_file().display());
            let mut c = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("connect");
            sqlx::raw_sql(sql).execute(&mut c).await.expect("sql");
        }
    }
}

async fn status(app: &TestApp) -> pb::GetReplicaStatusResponse {
    app.admin
        .clone()
        .get_replica_status(pb::GetReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

async fn health(app: &TestApp) -> i32 {
    let mut h = tonic_health::pb::health_client::HealthClient::new(app.verify_channel.clone());
    let req = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    h.check(req).await.expect("health").into_inner().status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// Verify's answer, or the status code when Verify refuses.
async fn verify(app: &TestApp, key: &str) -> Result<VerifyCode, Code> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    match app.verify.clone().verify(req).await {
        Ok(r) => Ok(r.into_inner().code()),
        Err(s) => Err(s.code()),
    }
}

/// Appends a change-log row for `id` by hand, as a writer would (the row,
/// then the sequence), with `kind`; returns its sequence.
async fn append_change(app: &TestApp, id: &str, kind: &str) -> i64 {
    let head = status(app).await.head_seq;
    sql(
        &app.db,
        &format!(
            "BEGIN; \
             INSERT INTO key_changes (seq, key_id, key_hash, kind, owner_id, environment, expires_at, at) \
             SELECT {next}, id, key_hash, '{kind}', owner_id, environment, expires_at, created_at \
             FROM keys WHERE id = '{id}'; \
             UPDATE change_seq SET last = {next} WHERE id = 1; COMMIT;",
            next = head + 1
        ),
    )
    .await;
    head + 1
}

async fn stuck_feed_goes_stale_fails_closed_and_recovers(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.feed.poll_interval = Duration::from_millis(50);
        c.max_staleness = Duration::from_millis(500);
        c.fail_closed_after = Some(Duration::from_millis(500));
    })
    .await;
    let good = app.create_with_scopes(&[]).await.secret;
    let bad = app.create_with_scopes(&[]).await.key.expect("key").id;
    assert_eq!(verify(&app, &good).await, Ok(VerifyCode::Valid));

    for (what, break_it, repair) in [
        (
            // A key row the feed cannot read (a scope syntax from a newer
            // version, say).
            "key row",
            format!("UPDATE keys SET scopes = '[\"from the future!\"]' WHERE id = '{bad}'"),
            format!("UPDATE keys SET scopes = '[]' WHERE id = '{bad}'"),
        ),
        (
            // A change row the feed cannot read (a kind from a newer version).
            "change row",
            String::new(),
            "UPDATE key_changes SET kind = 'updated' WHERE kind = 'from_the_future'".to_owned(),
        ),
    ] {
        // Break nothing until the feed has applied every change so far: a
        // key row corrupted before the feed applied its creation would stick
        // the feed on that earlier change, not on the one appended below.
        eventually(&format!("{what}: the feed to catch up first"), || async {
            let s = status(&app).await;
            s.stuck_seq == 0 && s.applied_seq >= s.head_seq
        })
        .await;
        let kind = if break_it.is_empty() {
            "from_the_future"
        } else {
            sql(&app.db, &break_it).await;
            "updated"
        };
        let seq = append_change(&app, &bad, kind).await;

        eventually(
            &format!("the feed to report it is stuck on the {what}"),
            || async { status(&app).await.stuck_seq == seq },
        )
        .await;
        let s = status(&app).await;
        assert!(s.applied_seq < seq, "{what}: {s:?}");
        assert!(
            s.stuck_reason.contains("stored data is invalid"),
            "{what}: the status says why: {s:?}"
        );
        if what == "key row" {
            assert_eq!(s.stuck_key_id, bad, "{what}: the status names the key");
        }
        eventually(
            &format!("{what}: staleness to pass --max-staleness"),
            || async {
                status(&app)
                    .await
                    .staleness
                    .is_some_and(|d| d.seconds >= 1 || d.nanos >= 500_000_000)
            },
        )
        .await;
        eventually(&format!("{what}: health to turn NOT_SERVING"), || async {
            health(&app).await == NOT_SERVING
        })
        .await;
        eventually(&format!("{what}: Verify to fail closed"), || async {
            verify(&app, &good).await == Err(Code::Unavailable)
        })
        .await;

        sql(&app.db, &repair).await;
        eventually(
            &format!("{what}: the feed to pass the repaired row"),
            || async {
                let s = status(&app).await;
                s.stuck_seq == 0 && s.applied_seq >= seq
            },
        )
        .await;
        eventually(&format!("{what}: health SERVING again"), || async {
            health(&app).await == SERVING
        })
        .await;
        eventually(&format!("{what}: Verify to answer again"), || async {
            verify(&app, &good).await == Ok(VerifyCode::Valid)
        })
        .await;
    }
}

async fn watch(
    app: &TestApp,
    after: Option<i64>,
) -> Result<Streaming<pb::KeyEvent>, tonic::Status> {
    let req = pb::WatchRevocationsRequest {
        after_cursor: after,
        all_changes: true,
        ..Default::default()
    };
    Ok(app
        .verify
        .clone()
        .watch_revocations(req)
        .await?
        .into_inner())
}

/// Reads until the stream ends with a status; the events before it.
async fn end_status(stream: &mut Streaming<pb::KeyEvent>) -> (Vec<i64>, tonic::Status) {
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("the stream to end within the deadline")
        {
            Ok(Some(e)) => got.push(e.cursor),
            Ok(None) => panic!("stream ended without a status after {got:?}"),
            Err(status) => return (got, status),
        }
    }
}

/// A log replaced under a replica while its head stays where it was: by
/// another row at the applied sequence, then by another epoch. Each time
/// the index must become the database's (with a key's older version), and
/// a subscriber must be told to resync.
async fn replaced_log_reloads_index_and_ends_streams(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.feed.poll_interval = Duration::from_millis(50)
    })
    .await;
    let created = app.create_with_scopes(&[]).await;
    let id = created.key.expect("key").id;
    sql(
        &app.db,
        &format!("CREATE TABLE keys_saved AS SELECT * FROM keys WHERE id = '{id}'"),
    )
    .await;
    let restore =
        format!("DELETE FROM keys WHERE id = '{id}'; INSERT INTO keys SELECT * FROM keys_saved;");

    for (what, replace) in [
        (
            "another row at the applied sequence",
            "UPDATE key_changes SET at = at + 1 WHERE seq = (SELECT last FROM change_seq)",
        ),
        ("another epoch", "UPDATE log_lineage SET epoch = epoch + 1"),
    ] {
        app.revoke(&id).await;
        eventually("the feed to apply the revocation", || async {
            let s = status(&app).await;
            s.applied_seq == s.head_seq
        })
        .await;
        assert_eq!(verify(&app, &created.secret).await, Ok(VerifyCode::Revoked));
        let mut events = watch(&app, None).await.expect("watch");

        sql(&app.db, &format!("BEGIN; {restore} {replace}; COMMIT;")).await;
        let (_, end) = end_status(&mut events).await;
        assert_eq!(end.code(), Code::DataLoss, "{what}: {end:?}");
        assert!(end.message().contains("resync"), "{what}: {end:?}");
        eventually(
            &format!("{what}: the index to hold the restored version"),
            || async { verify(&app, &created.secret).await == Ok(VerifyCode::Valid) },
        )
        .await;
    }
}

/// Rows after a stream's cursor deleted between its range check and its
/// backlog read (what a racing prune leaves): the stream ends with
/// OUT_OF_RANGE instead of skipping them.
async fn backlog_with_pruned_rows_ends_with_resync(backend: Backend) {
    // Polling rarely: the feed must not notice the deleted rows first.
    let app = spawn_with(backend, |c| c.feed.poll_interval = Duration::from_secs(600)).await;
    for _ in 0..4 {
        app.create_with_scopes(&[]).await;
    }
    eventually("the feed to apply every creation", || async {
        let s = status(&app).await;
        s.applied_seq == s.head_seq
    })
    .await;
    let head = status(&app).await.head_seq;
    assert!(head >= 4);

    // A hole in the middle of the backlog: what comes before it is
    // delivered, nothing after.
    sql(&app.db, "DELETE FROM key_changes WHERE seq = 2").await;
    let (got, end) = end_status(&mut watch(&app, Some(0)).await.expect("watch")).await;
    assert_eq!(got, [1], "the backlog stops at the hole");
    assert_eq!(end.code(), Code::OutOfRange, "{end:?}");
    assert!(end.message().contains("resync"), "{end:?}");

    // A hole at its start.
    sql(&app.db, "DELETE FROM key_changes WHERE seq <= 2").await;
    let (got, end) = end_status(&mut watch(&app, Some(0)).await.expect("watch")).await;
    assert_eq!(
        got,
        Vec::<i64>::new(),
        "nothing after the hole is delivered"
    );
    assert_eq!(end.code(), Code::OutOfRange, "{end:?}");

    // Everything after the cursor gone: an empty backlog short of the head.
    sql(&app.db, "DELETE FROM key_changes").await;
    let (got, end) = end_status(&mut watch(&app, Some(3)).await.expect("watch")).await;
    assert_eq!(got, Vec::<i64>::new());
    assert_eq!(end.code(), Code::OutOfRange, "{end:?}");
    assert!(end.message().contains("cursor 3"), "{end:?}");
}

/// Revokes `id` and waits (briefly) for the receipt.
async fn receipt(app: &TestApp, id: &str) -> pb::Propagation {
    let req = pb::RevokeKeyRequest {
        id: id.into(),
        reason: "test".into(),
        wait_for_propagation: true,
        propagation_timeout: Some(keysmith::grpc::wkt::Duration {
            seconds: 0,
            nanos: 300_000_000,
        }),
        include_successors: false,
    };
    app.admin
        .clone()
        .revoke_key(req)
        .await
        .expect("revoke")
        .into_inner()
        .propagation
        .expect("propagation")
}

async fn receipt_counts_a_lagging_replica_as_unconfirmed(backend: Backend) {
    let app = spawn_with(backend, |_| {}).await;
    let first = app.create_with_scopes(&[]).await.key.expect("key").id;
    let second = app.create_with_scopes(&[]).await.key.expect("key").id;
    let p = receipt(&app, &first).await;
    assert!(p.complete, "alone, this replica confirms: {p:?}");
    assert_eq!((p.confirmed_replicas, p.live_replicas), (1, 1));

    // Replicas that report by hand: one behind, one past the head (it
    // applied a log that has since gone back), one whose heartbeat is old.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    sql(
        &app.db,
        &format!(
            "INSERT INTO replicas (id, applied_seq, heartbeat_at, started_at) VALUES \
             ('rep_lagging', 1, {now} + 60000, {now}), \
             ('rep_ahead', 1000000, {now} + 60000, {now}), \
             ('rep_dead', 1000000, {now} - 3600000, {now})"
        ),
    )
    .await;
    let p = receipt(&app, &second).await;
    assert!(!p.complete, "{p:?}");
    assert_eq!(
        (p.confirmed_replicas, p.live_replicas),
        (1, 3),
        "the lagging and the ahead replica are live and unconfirmed; the dead one is not live"
    );
}

async fn subscriber_cap_refuses_then_frees_a_slot(backend: Backend) {
    let app = spawn_with(backend, |c| c.watch.max_subscribers = 2).await;
    let one = watch(&app, None).await.expect("first subscriber");
    let _two = watch(&app, None).await.expect("second subscriber");
    let refused = watch(&app, None).await.expect_err("third subscriber");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("too many revocation subscribers"),
        "{refused:?}"
    );
    // No event arrives meanwhile: the slot frees because the client left.
    drop(one);
    let three = std::sync::Mutex::new(None);
    eventually("a slot to free once a subscriber left", || async {
        match watch(&app, None).await {
            Ok(s) => {
                *three.lock().expect("lock") = Some(s);
                true
            }
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                false
            }
        }
    })
    .await;
    let refused = watch(&app, None).await.expect_err("full again");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

crate::backend_tests!(
    stuck_feed_goes_stale_fails_closed_and_recovers,
    replaced_log_reloads_index_and_ends_streams,
    backlog_with_pruned_rows_ends_with_resync,
    receipt_counts_a_lagging_replica_as_unconfirmed,
    subscriber_cap_refuses_then_frees_a_slot,
);
