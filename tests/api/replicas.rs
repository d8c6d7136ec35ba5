//! Several `keysmith serve` processes on one PostgreSQL agree.

use keysmith::grpc::pb::{self, VerifyCode};
use sqlx::Connection;

use crate::{
    helpers::{eventually, fresh_pg_database},
    process::{Replica, mint_token},
};

async fn code(r: &Replica, key: &str) -> VerifyCode {
    try_code(r, key).await.expect("verify")
}

async fn try_code(r: &Replica, key: &str) -> Result<VerifyCode, tonic::Status> {
    let req = pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    };
    Ok(r.verify.clone().verify(req).await?.into_inner().code())
}

async fn create(r: &Replica) -> (String, String) {
    let req = pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        ..Default::default()
    };
    let resp = r
        .admin
        .clone()
        .create_key(req)
        .await
        .expect("create")
        .into_inner();
    (resp.key.expect("key").id, resp.secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_see_creations_and_revocations() {
    let url = fresh_pg_database().await;
    let token = mint_token(&url).await;
    let a = Replica::start(&url, &token, &[]).await;
    let b = Replica::start(&url, &token, &[]).await;
    let c = Replica::start(&url, &token, &[]).await;

    let (id, secret) = create(&a).await;
    for r in [&b, &c] {
        eventually("a key created on A to verify on B and C", || async {
            code(r, &secret).await == VerifyCode::Valid
        })
        .await;
    }

    // A revocation receipt: once it says complete, every replica denies.
    let req = pb::RevokeKeyRequest {
        id,
        reason: "leaked".into(),
        wait_for_propagation: true,
        propagation_timeout: Some(keysmith::grpc::wkt::Duration {
            seconds: 10,
            nanos: 0,
        }),
        ..Default::default()
    };
    let receipt = a
        .admin
        .clone()
        .revoke_key(req)
        .await
        .expect("revoke")
        .into_inner();
    let p = receipt.propagation.expect("propagation");
    assert!(p.complete, "{p:?}");
    assert_eq!((p.confirmed_replicas, p.live_replicas), (3, 3));
    for r in [&a, &b, &c] {
        assert_eq!(
            code(r, &secret).await,
            VerifyCode::Revoked,
            "no waiting after a receipt"
        );
    }

    let status = b
        .admin
        .clone()
        .get_replica_status(pb::GetReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.replica_id, b.id);
    assert_eq!(status.replicas.len(), 3);
    assert!(status.applied_seq >= p.cursor);
    assert!(status.staleness.expect("staleness").seconds < 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_listener_connection_loses_nothing() {
    let url = fresh_pg_database().await;
    let token = mint_token(&url).await;
    // Polling far apart: convergence within the deadline must come from the
    // rebuilt listener, not from the poll.
    let slow_poll = ["--poll-interval", "120s"];
    let a = Replica::start(&url, &token, &slow_poll).await;
    let b = Replica::start(&url, &token, &slow_poll).await;
    let mut keys = Vec::new();
    for _ in 0..20 {
        keys.push(create(&a).await);
    }
    for (_, secret) in &keys {
        eventually("B to see A's keys", || async {
            code(&b, secret).await == VerifyCode::Valid
        })
        .await;
    }

    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("keysmith-listener-{}", b.id))
    .fetch_all(&mut conn)
    .await
    .expect("terminate");
    assert_eq!(
        killed,
        [true],
        "B's listener connection was found and killed"
    );

    for (id, _) in &keys {
        let req = pb::RevokeKeyRequest {
            id: id.clone(),
            ..Default::default()
        };
        a.admin.clone().revoke_key(req).await.expect("revoke");
    }
    for (_, secret) in &keys {
        eventually("B to deny every key revoked on A", || async {
            code(&b, secret).await == VerifyCode::Revoked
        })
        .await;
    }
}

async fn health(r: &Replica) -> i32 {
    let mut h = tonic_health::pb::health_client::HealthClient::new(r.verify_channel.clone());
    let req = tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    h.check(req).await.expect("health").into_inner().status
}

async fn liveness(r: &Replica) -> i32 {
    let mut h = tonic_health::pb::health_client::HealthClient::new(r.verify_channel.clone());
    let req = tonic_health::pb::HealthCheckRequest {
        service: keysmith::app::LIVENESS.into(),
    };
    h.check(req).await.expect("liveness").into_inner().status
}

const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
const NOT_SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_keeps_verify_answering_and_loses_nothing() {
    let pg = crate::pg_cluster::PgCluster::start_new();
    let url = pg.url();
    let token = mint_token(&url).await;
    let args = ["--poll-interval", "100ms", "--max-staleness", "1s"];
    let a = Replica::start(&url, &token, &args).await;
    let b = Replica::start(&url, &token, &args).await;
    let strict = Replica::start(
        &url,
        &token,
        &[&args[..], &["--fail-closed-after", "1s"]].concat(),
    )
    .await;
    let mut keys = Vec::new();
    for _ in 0..10 {
        keys.push(create(&a).await);
    }
    for (_, secret) in &keys {
        eventually("B to see A's keys", || async {
            code(&b, secret).await == VerifyCode::Valid
        })
        .await;
    }

    pg.stop();
    // Writes fail, and say so; Verify keeps answering from the index.
    let req = pb::RevokeKeyRequest {
        id: keys[0].0.clone(),
        ..Default::default()
    };
    let status = a
        .admin
        .clone()
        .revoke_key(req)
        .await
        .expect_err("database down");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(code(&b, &keys[1].1).await, VerifyCode::Valid);
    // Staleness shows in health, and a fail-closed replica refuses.
    eventually("B's health to turn NOT_SERVING", || async {
        health(&b).await == NOT_SERVING
    })
    .await;
    assert_eq!(liveness(&b).await, SERVING, "stale is not dead");
    assert_eq!(
        code(&b, &keys[1].1).await,
        VerifyCode::Valid,
        "B still answers"
    );
    eventually("the fail-closed replica to refuse", || async {
        let req = pb::VerifyRequest { key: keys[1].1.clone(), ..Default::default() };
        matches!(strict.verify.clone().verify(req).await, Err(s) if s.code() == tonic::Code::Unavailable)
    })
    .await;
    // ext_authz refuses too, so Envoy denies rather than trusting a stale index.
    let mut authz =
        envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(
            strict.verify_channel.clone(),
        );
    let check = authz
        .check(envoy_types::pb::envoy::service::auth::v3::CheckRequest::default())
        .await;
    assert_eq!(
        check.expect_err("fail-closed").code(),
        tonic::Code::Unavailable
    );

    pg.start();
    for (id, _) in &keys {
        eventually(
            "A's revocation to succeed once PostgreSQL is back",
            || async {
                let req = pb::RevokeKeyRequest {
                    id: id.clone(),
                    ..Default::default()
                };
                a.admin.clone().revoke_key(req).await.is_ok()
            },
        )
        .await;
    }
    for r in [&a, &b, &strict] {
        for (_, secret) in &keys {
            eventually("every replica to deny every revoked key", || async {
                try_code(r, secret)
                    .await
                    .is_ok_and(|c| c == VerifyCode::Revoked)
            })
            .await;
        }
        eventually("health SERVING again", || async {
            health(r).await == SERVING
        })
        .await;
    }
}

/// The log goes back under two running replicas, as after a restore from a
/// backup or a failover to an asynchronous standby that had not seen the
/// last writes. Both must reload (the index equal to the database, with a
/// key's older version back and a later key gone), tell stream subscribers
/// to resync, and deny a key revoked after the rollback: with a receipt that
/// says complete only once they do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_rolled_back_under_two_replicas_is_reloaded() {
    let url = fresh_pg_database().await;
    let token = mint_token(&url).await;
    let args = ["--poll-interval", "100ms"];
    let a = Replica::start(&url, &token, &args).await;
    let b = Replica::start(&url, &token, &args).await;
    let (first, first_secret) = create(&a).await;
    let (second, second_secret) = create(&a).await;
    for r in [&a, &b] {
        eventually("both keys to verify on both replicas", || async {
            code(r, &second_secret).await == VerifyCode::Valid
        })
        .await;
    }
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
    // The backup.
    let backup_seq: i64 = sqlx::query_scalar("SELECT last FROM change_seq")
        .fetch_one(&mut conn)
        .await
        .expect("head");
    sqlx::raw_sql("CREATE TABLE keys_backup AS SELECT * FROM keys")
        .execute(&mut conn)
        .await
        .expect("backup");

    // Writes the restore will lose.
    let req = pb::RevokeKeyRequest {
        id: first.clone(),
        ..Default::default()
    };
    a.admin.clone().revoke_key(req).await.expect("revoke");
    let (_, lost_secret) = create(&a).await;
    for r in [&a, &b] {
        eventually("the lost writes to reach both replicas", || async {
            code(r, &first_secret).await == VerifyCode::Revoked
                && code(r, &lost_secret).await == VerifyCode::Valid
        })
        .await;
    }
    let mut events = b
        .verify
        .clone()
        .watch_revocations(pb::WatchRevocationsRequest::default())
        .await
        .expect("watch")
        .into_inner();

    // The restore: keys and log as they were at the backup.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "BEGIN; DELETE FROM key_changes WHERE seq > {backup_seq}; \
         UPDATE change_seq SET last = {backup_seq}; \
         DELETE FROM keys; INSERT INTO keys SELECT * FROM keys_backup; COMMIT;"
    )))
    .execute(&mut conn)
    .await
    .expect("restore");

    // At once, before either replica had to notice: revoke with a receipt.
    let req = pb::RevokeKeyRequest {
        id: second,
        reason: "leaked".into(),
        wait_for_propagation: true,
        propagation_timeout: Some(keysmith::grpc::wkt::Duration {
            seconds: 10,
            nanos: 0,
        }),
        include_successors: false,
    };
    let receipt = a
        .admin
        .clone()
        .revoke_key(req)
        .await
        .expect("revoke after the restore")
        .into_inner();
    let p = receipt.propagation.expect("propagation");
    assert!(p.complete, "{p:?}");
    assert_eq!((p.confirmed_replicas, p.live_replicas), (2, 2));
    assert_eq!(
        p.cursor,
        backup_seq + 1,
        "the sequence continues the restored log"
    );
    for r in [&a, &b] {
        assert_eq!(
            code(r, &second_secret).await,
            VerifyCode::Revoked,
            "no waiting after a receipt"
        );
        assert_eq!(
            code(r, &first_secret).await,
            VerifyCode::Valid,
            "the restored version"
        );
        assert_eq!(
            code(r, &lost_secret).await,
            VerifyCode::NotFound,
            "a key the restore lost"
        );
    }

    let end = loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), events.message())
            .await
            .expect("the stream to end")
        {
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), tonic::Code::DataLoss, "{end:?}");
    assert!(end.message().contains("resync"), "{end:?}");
    let status = b
        .admin
        .clone()
        .get_replica_status(pb::GetReplicaStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.applied_seq, backup_seq + 1, "{status:?}");
}
