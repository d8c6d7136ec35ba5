//! RevokeKey with `include_successors`: a leaked key and every key rotated
//! from it (by its holder or by a thief) end together, in one transaction,
//! each audited and streamed, on every replica.

use keysmith::grpc::pb::{self, KeyEventKind, VerifyCode};
use std::{collections::BTreeSet, sync::atomic::Ordering, time::Duration};

use crate::{
    helpers::{Backend, TestApp, TestDb, spawn_on},
    rotate_self::{HOUR, clocked, create, rotate_self, secret_key, secs},
};

async fn admin_rotate(app: &TestApp, id: &str) -> pb::RotateKeyResponse {
    let req = pb::RotateKeyRequest {
        id: id.into(),
        grace_period: Some(secs(24 * HOUR)),
        ..Default::default()
    };
    app.admin
        .clone()
        .rotate_key(req)
        .await
        .expect("rotate")
        .into_inner()
}

fn lineage_revocation(id: &str) -> pb::RevokeKeyRequest {
    pb::RevokeKeyRequest {
        id: id.into(),
        reason: "leaked".into(),
        wait_for_propagation: true,
        propagation_timeout: Some(secs(10)),
        include_successors: true,
    }
}

fn id_of(r: &pb::RotateKeyResponse) -> String {
    r.key.as_ref().expect("key").id.clone()
}

async fn revoking_a_lineage_ends_every_successor(backend: Backend) {
    let (app, now) = clocked(backend).await;
    // A → B by an admin; B → C by whoever holds B (say, a thief).
    let (a_id, a) = secret_key(&app).await;
    let b = admin_rotate(&app, &a_id).await;
    now.fetch_add(60_000, Ordering::SeqCst);
    let c = rotate_self(&app, &b.secret, Some(2 * HOUR))
        .await
        .expect("self");
    let (b_id, c_id) = (id_of(&b), id_of(&c));
    // Unrelated: a bystander, and a lineage revoked the ordinary way.
    let (_, bystander) = secret_key(&app).await;
    let (x_id, _) = create(&app, Default::default()).await;
    let y = admin_rotate(&app, &x_id).await;
    for key in [&a, &b.secret, &c.secret] {
        assert_eq!(app.verify_code(key).await, VerifyCode::Valid);
    }
    let mut events = app
        .verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();

    let resp = app
        .admin
        .clone()
        .revoke_key(lineage_revocation(&a_id))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(resp.key.expect("key").id, a_id);
    let successors: Vec<_> = resp.successors.iter().map(|k| k.id.clone()).collect();
    assert_eq!(successors, [b_id.clone(), c_id.clone()]);
    assert!(resp.successors.iter().all(|k| k.revoke_time.is_some()));
    let receipt = resp.propagation.expect("receipt");
    assert!(receipt.complete, "{receipt:?}");
    for key in [&a, &b.secret, &c.secret] {
        assert_eq!(app.verify_code(key).await, VerifyCode::Revoked);
    }
    assert_eq!(app.verify_code(&bystander).await, VerifyCode::Valid);

    // Each is announced, in one commit: consecutive cursors that end at
    // the receipt's.
    let mut seen = BTreeSet::new();
    let mut cursors = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("an event in time")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(e.kind(), KeyEventKind::Revoked, "{e:?}");
        seen.insert(e.key_id);
        cursors.push(e.cursor);
    }
    assert_eq!(
        seen,
        BTreeSet::from([a_id.clone(), b_id.clone(), c_id.clone()])
    );
    assert_eq!(
        cursors,
        [receipt.cursor - 2, receipt.cursor - 1, receipt.cursor]
    );

    // Each is audited, by the admin, with the reason.
    for id in [&a_id, &b_id, &c_id] {
        let req = pb::ListAuditEventsRequest {
            key_id: id.clone(),
            action: "key.revoked".into(),
            ..Default::default()
        };
        let audit = app
            .admin
            .clone()
            .list_audit_events(req)
            .await
            .expect("audit");
        let events = audit.into_inner().events;
        assert_eq!(events.len(), 1, "{id}: {events:?}");
        assert!(events[0].actor.starts_with("admin:"), "{:?}", events[0]);
        assert_eq!(events[0].reason, "leaked");
    }

    // Again: nothing left to revoke, the same answer.
    let again = app
        .admin
        .clone()
        .revoke_key(lineage_revocation(&a_id))
        .await
        .expect("again")
        .into_inner();
    assert_eq!(again.successors.len(), 2);

    // Without the flag, only the named key ends.
    let req = pb::RevokeKeyRequest {
        id: x_id,
        reason: "one".into(),
        ..Default::default()
    };
    let only = app.admin.clone().revoke_key(req).await.expect("revoke");
    assert!(only.into_inner().successors.is_empty());
    assert_eq!(app.verify_code(&y.secret).await, VerifyCode::Valid);
}

crate::backend_tests!(revoking_a_lineage_ends_every_successor);

/// Two replicas on one PostgreSQL: once the receipt is complete, the other
/// replica denies the whole lineage, with no waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_replica_denies_the_whole_lineage() {
    let first = crate::helpers::spawn(Backend::Postgres).await;
    let db = TestDb {
        backend: Backend::Postgres,
        config: first.db.config.clone(),
        dir: tempfile::tempdir().expect("temp dir"),
    };
    let second = spawn_on(db, Some(first.token.clone())).await;
    let (a_id, a) = secret_key(&first).await;
    let b = admin_rotate(&first, &a_id).await;
    let c = admin_rotate(&first, &id_of(&b)).await;
    let lineage = [a, b.secret, c.secret];
    for key in &lineage {
        crate::helpers::eventually("the second replica to know the lineage", || async {
            second.verify_code(key).await == VerifyCode::Valid
        })
        .await;
    }
    let resp = first
        .admin
        .clone()
        .revoke_key(lineage_revocation(&a_id))
        .await
        .expect("revoke")
        .into_inner();
    let receipt = resp.propagation.expect("receipt");
    assert!(receipt.complete, "{receipt:?}");
    assert_eq!(receipt.live_replicas, 2, "{receipt:?}");
    for key in &lineage {
        assert_eq!(second.verify_code(key).await, VerifyCode::Revoked);
    }
}
