//! WatchRevocations: backlog, live events, resume, filters, retention, slow
//! subscribers.

use std::time::Duration;

use keysmith::grpc::pb::{self, KeyEventKind};
use sha2::{Digest, Sha256};
use tonic::{Code, Streaming};

use crate::helpers::{Backend, TestApp, spawn, spawn_with};

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

async fn revocations_stream_live_with_key_hash(backend: Backend) {
    let app = spawn(backend).await;
    let created = app.create_with_scopes(&[]).await;
    let id = created.key.expect("key").id;
    let mut events = watch(&app, Default::default()).await;
    app.revoke(&id).await;
    let e = next(&mut events).await;
    assert_eq!(e.key_id, id);
    assert_eq!(e.kind(), KeyEventKind::Revoked);
    assert_eq!(e.owner_id, "acct_test");
    let hashed = &created.secret[..created.secret.len() - 6];
    assert_eq!(e.key_hash, hex::encode(Sha256::digest(hashed.as_bytes())));
    assert!(e.cursor > 0);
}

async fn resumed_stream_has_no_gap_and_no_duplicate(backend: Backend) {
    let app = spawn(backend).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.create_with_scopes(&[]).await.key.expect("key").id);
    }
    let mut events = watch(
        &app,
        pb::WatchRevocationsRequest {
            after_cursor: Some(0),
            ..Default::default()
        },
    )
    .await;
    app.revoke(&ids[0]).await;
    app.revoke(&ids[1]).await;
    let first = next(&mut events).await;
    let second = next(&mut events).await;
    assert_eq!(
        (first.key_id.as_str(), second.key_id.as_str()),
        (ids[0].as_str(), ids[1].as_str())
    );
    drop(events);

    // While disconnected: more revocations, and creations the stream skips.
    for id in &ids[2..5] {
        app.revoke(id).await;
    }
    app.create_with_scopes(&[]).await;
    let resume = pb::WatchRevocationsRequest {
        after_cursor: Some(second.cursor),
        ..Default::default()
    };
    let mut events = watch(&app, resume).await;
    app.revoke(&ids[5]).await;
    // A last revocation marks the end: everything before it is read, so a
    // duplicate or a stray event shows.
    let sentinel = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&sentinel).await;
    let mut got = Vec::new();
    let mut last = second.cursor;
    loop {
        let e = next(&mut events).await;
        assert!(
            e.cursor > last,
            "cursors increase: {} after {last}",
            e.cursor
        );
        last = e.cursor;
        got.push(e.key_id.clone());
        if e.key_id == sentinel {
            break;
        }
    }
    let mut expected = ids[2..6].to_vec();
    expected.push(sentinel);
    assert_eq!(got, expected, "backlog then live, each once, nothing else");
}

async fn filters_and_all_changes(backend: Backend) {
    let app = spawn(backend).await;
    let other = app
        .create(pb::CreateKeyRequest {
            owner_id: "acct_other".into(),
            ..Default::default()
        })
        .await
        .key
        .expect("key")
        .id;
    let mine = app
        .create_with_scopes(&["a:read", "a:write"])
        .await
        .key
        .expect("key")
        .id;
    let only_mine = pb::WatchRevocationsRequest {
        after_cursor: Some(0),
        owner_id: "acct_test".into(),
        ..Default::default()
    };
    let mut events = watch(&app, only_mine).await;
    let everything = pb::WatchRevocationsRequest {
        after_cursor: Some(0),
        all_changes: true,
        ..Default::default()
    };
    let mut all = watch(&app, everything).await;
    app.revoke(&other).await;
    app.admin
        .clone()
        .update_key(pb::UpdateKeyRequest {
            key: Some(pb::Key {
                id: mine.clone(),
                scopes: vec!["a:read".into()],
                ..Default::default()
            }),
            update_mask: Some(keysmith::grpc::wkt::FieldMask {
                paths: vec!["scopes".into()],
            }),
        })
        .await
        .expect("narrow");
    let e = next(&mut events).await;
    assert_eq!(
        (e.key_id.as_str(), e.kind()),
        (mine.as_str(), KeyEventKind::ScopesNarrowed)
    );

    let kinds: Vec<KeyEventKind> = [
        next(&mut all).await,
        next(&mut all).await,
        next(&mut all).await,
        next(&mut all).await,
    ]
    .iter()
    .map(|e| e.kind())
    .collect();
    assert_eq!(
        kinds,
        [
            KeyEventKind::Created,
            KeyEventKind::Created,
            KeyEventKind::Revoked,
            KeyEventKind::ScopesNarrowed
        ]
    );
}

async fn cursor_older_than_retention_is_out_of_range(backend: Backend) {
    let retention = |c: &mut keysmith::Config| {
        c.change_retention = Duration::ZERO;
        c.prune_interval = Duration::from_millis(20);
    };
    let app = spawn_with(backend, retention).await;
    let revoked = app.create_with_scopes(&[]).await;
    let kept = app.create_with_scopes(&[]).await;
    app.revoke(&revoked.key.as_ref().expect("key").id).await;
    let head = app
        .admin
        .clone()
        .get_replica_status(pb::GetReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .head_seq;
    let verify = app.verify.clone();
    // Resuming just before the head fails once every row is pruned.
    crate::helpers::eventually("the whole change log to be pruned", || {
        let mut verify = verify.clone();
        async move {
            let req = pb::WatchRevocationsRequest {
                after_cursor: Some(head - 1),
                ..Default::default()
            };
            matches!(verify.watch_revocations(req).await, Err(s) if s.code() == Code::OutOfRange)
        }
    })
    .await;
    let ahead = pb::WatchRevocationsRequest {
        after_cursor: Some(1_000_000),
        ..Default::default()
    };
    let status = verify
        .clone()
        .watch_revocations(ahead)
        .await
        .expect_err("cursor ahead of the log");
    assert_eq!(status.code(), Code::OutOfRange);

    // Pruning never hides a key: keys whose every change-log row is gone
    // answer as before, here and on a server started after the prune (its
    // index comes from the keys, not from the log).
    assert_eq!(app.verify_code(&kept.secret).await, pb::VerifyCode::Valid);
    assert_eq!(
        app.verify_code(&revoked.secret).await,
        pb::VerifyCode::Revoked
    );
    let (db, token) = app.stop().await;
    let app = crate::helpers::spawn_configured(db, Some(token), retention).await;
    assert_eq!(app.verify_code(&kept.secret).await, pb::VerifyCode::Valid);
    assert_eq!(
        app.verify_code(&revoked.secret).await,
        pb::VerifyCode::Revoked
    );
}

async fn slow_subscriber_is_cut_off_with_its_cursor(backend: Backend) {
    let app = spawn_with(backend, |c| {
        c.watch.subscriber_buffer = 2;
        c.watch.slow_subscriber_timeout = Duration::from_millis(100);
        c.feed.event_buffer = 4;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        ids.push(app.create_with_scopes(&[]).await.key.expect("key").id);
    }
    // A client with a tiny receive window: flow control stops the server
    // after a few events unless the client reads.
    let channel =
        tonic::transport::Channel::from_shared(format!("http://{}", app.verify_channel_addr()))
            .expect("uri")
            .initial_stream_window_size(1024)
            .initial_connection_window_size(1024)
            .connect()
            .await
            .expect("connect");
    let mut client = pb::key_verify_client::KeyVerifyClient::new(channel);
    let mut events = client
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    // Never read while 60 revocations happen: flow control fills, then the
    // server's buffer, then the subscriber is cut off.
    for id in &ids {
        app.revoke(id).await;
    }
    let mut received = Vec::new();
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("deadline")
        {
            Ok(Some(e)) => received.push(e.key_id),
            Ok(None) => panic!("stream ended without a status after {received:?}"),
            Err(status) => break status,
        }
    };
    assert!(
        received.len() < 60,
        "a slow subscriber does not get everything buffered"
    );
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    let cursor: i64 = status
        .message()
        .split("after_cursor=")
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("the status names the cursor: {status:?}"));

    // A resumed stream picks up exactly where the cut-off one stopped. It
    // reads at full speed on an ordinary channel, but a loaded machine may
    // still stall it past the 100 ms limit: a second cut-off names its own
    // cursor, and resuming from that must keep the same order, no gap and
    // no duplicate.
    let sentinel = app.create_with_scopes(&[]).await.key.expect("key").id;
    app.revoke(&sentinel).await;
    let mut cursor = cursor;
    'resume: loop {
        let mut events = app
            .verify
            .clone()
            .watch_revocations(pb::WatchRevocationsRequest {
                after_cursor: Some(cursor),
                ..Default::default()
            })
            .await
            .expect("resume")
            .into_inner();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.message())
                .await
                .expect("deadline")
            {
                Ok(Some(e)) => {
                    cursor = e.cursor;
                    let done = e.key_id == sentinel;
                    received.push(e.key_id);
                    if done {
                        break 'resume;
                    }
                }
                Ok(None) => panic!("resumed stream ended without a status"),
                Err(status) if status.code() == Code::Aborted => continue 'resume,
                Err(status) => panic!("resumed stream failed: {status:?}"),
            }
        }
    }
    ids.push(sentinel);
    assert_eq!(
        received, ids,
        "before the cut and after the resume: each once, in order"
    );
}

crate::backend_tests!(
    revocations_stream_live_with_key_hash,
    resumed_stream_has_no_gap_and_no_duplicate,
    filters_and_all_changes,
    cursor_older_than_retention_is_out_of_range,
    slow_subscriber_is_cut_off_with_its_cursor,
);
