//! A rotation's grace that ends early, once the old key goes idle and its
//! successor is in use; never on idleness alone.

use std::{sync::atomic::Ordering, time::Duration};

use keysmith::grpc::pb::{self, VerifyCode};

use crate::{
    automation::events_of,
    helpers::{Backend, TestApp, eventually, spawn_with},
    usage::manual_clock,
};

/// A key, and its successor by a rotation whose grace (7 days) ends once
/// the old key is idle for an hour and the successor is in use.
async fn rotate_ending_grace_when_idle(
    app: &TestApp,
) -> (pb::CreateKeyResponse, pb::RotateKeyResponse) {
    let old = app.create_with_scopes(&[]).await;
    let req = pb::RotateKeyRequest {
        id: old.key.as_ref().expect("key").id.clone(),
        grace_period: Some(keysmith::grpc::wkt::Duration {
            seconds: 7 * 86_400,
            nanos: 0,
        }),
        end_grace_when_idle: Some(keysmith::grpc::wkt::Duration {
            seconds: 3600,
            nanos: 0,
        }),
    };
    let new = app.admin.clone().rotate_key(req).await.expect("rotate");
    (old, new.into_inner())
}

async fn grace_ends_early_once_the_old_key_goes_idle(backend: Backend) {
    let (clock, now) = manual_clock();
    let app = spawn_with(backend, |c| {
        c.clock = clock;
        c.jobs.interval = Duration::from_millis(20);
        c.usage_flush_interval = Duration::from_millis(20);
    })
    .await;
    // Made first, so each grace run looks at it before the control pair.
    let (old, new) = rotate_ending_grace_when_idle(&app).await;
    let (control_old, control_new) = rotate_ending_grace_when_idle(&app).await;
    let old_id = old.key.expect("key").id;
    let new_id = new.key.expect("key").id;
    let control_old_id = control_old.key.expect("key").id;
    assert!(old_id < control_old_id);
    // The control pair's successor is in use; ours is not.
    assert_eq!(
        app.verify_code(&control_new.secret).await,
        VerifyCode::Valid
    );
    let control_new_id = control_new.key.expect("key").id;
    eventually("the control successor's use to be flushed", || async {
        app.get(&control_new_id).await.last_used_time.is_some()
    })
    .await;
    // Both old keys idle for two hours. The run that ends the control's
    // grace has already judged ours, at the same instant: it must keep it.
    now.fetch_add(2 * 3600 * 1000, Ordering::SeqCst);
    eventually("the control's grace to end", || async {
        app.get(&control_old_id).await.state() == pb::KeyState::Expired
    })
    .await;
    assert_eq!(
        app.get(&old_id).await.state(),
        pb::KeyState::Active,
        "not before the successor is used, however idle the old key is"
    );
    assert!(events_of(&app, &old_id, "key.expired").await.is_empty());

    assert_eq!(app.verify_code(&old.secret).await, VerifyCode::Valid);
    assert_eq!(app.verify_code(&new.secret).await, VerifyCode::Valid);
    eventually("the successor's use to be flushed", || async {
        app.get(&new_id).await.last_used_time.is_some()
    })
    .await;
    // The overlap report shows both keys' traffic since the rotation.
    let overlap = || async {
        let req = pb::GetRotationOverlapRequest { id: new_id.clone() };
        app.admin
            .clone()
            .get_rotation_overlap(req)
            .await
            .expect("overlap")
            .into_inner()
    };
    eventually("both uses in the overlap report", || async {
        let o = overlap().await;
        o.old_key.is_some_and(|c| c.valid == 1) && o.new_key.is_some_and(|c| c.valid == 1)
    })
    .await;
    let o = overlap().await;
    assert_eq!(
        (o.old_key_id.as_str(), o.new_key_id.as_str()),
        (old_id.as_str(), new_id.as_str())
    );
    assert_eq!(o.end_grace_when_idle.map(|d| d.seconds), Some(3600));
    // The old key was used just now too; it must go quiet for an hour.
    now.fetch_add(3600 * 1000 + 1, Ordering::SeqCst);
    // Watched through the admin API: a Verify would be a use of the old key.
    eventually("the old key to expire early", || async {
        app.get(&old_id).await.state() == pb::KeyState::Expired
    })
    .await;
    assert_eq!(app.verify_code(&old.secret).await, VerifyCode::Expired);
    assert_eq!(app.verify_code(&new.secret).await, VerifyCode::Valid);
    let events = events_of(&app, &old_id, "key.expired").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].reason.contains("grace ended early"),
        "{:?}",
        events[0]
    );
}

crate::backend_tests!(grace_ends_early_once_the_old_key_goes_idle);
