//! Hostile and broken clients against a running server. Every case gets a
//! clear answer, nothing bad is written, the server stays up, and Verify
//! never needs the database.

use keysmith::grpc::pb::{self, VerifyCode};
use prost::Message;
use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_status, spawn};

/// SQL that would do damage if it were ever spliced into a statement.
const SQL: &[&str] = &[
    "'; DROP TABLE keys; --",
    "x' OR '1'='1",
    "1; DELETE FROM audit_events",
    "\" OR \"\"=\"",
];

async fn verify_code(app: &TestApp, req: pb::VerifyRequest) -> Result<VerifyCode, Code> {
    match app.verify.clone().verify(req).await {
        Ok(resp) => Ok(resp.into_inner().code()),
        Err(status) => Err(status.code()),
    }
}

fn key(key: impl Into<String>) -> pb::VerifyRequest {
    pb::VerifyRequest {
        key: key.into(),
        ..Default::default()
    }
}

async fn hostile_verify_inputs_get_precise_answers(backend: Backend) {
    let app = spawn(backend).await;
    let good = app.create_with_scopes(&["invoices:*"]).await.secret;
    let mut bad_checksum = good.clone().into_bytes();
    let last = bad_checksum.len() - 1;
    bad_checksum[last] = if bad_checksum[last] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let bad_checksum = String::from_utf8(bad_checksum).expect("ascii");
    let malformed = [
        String::new(),
        "\0".repeat(57),
        format!("{}\0", &good[..56]),
        format!("{}é", &good[..55]),
        "sk_live_ключ".repeat(5),
        "🔑".repeat(14) + "x",
        " ".repeat(57),
        bad_checksum,
        SQL[0].to_owned(),
        good.to_lowercase(),
    ];
    for k in malformed {
        assert_eq!(
            verify_code(&app, key(k.clone())).await,
            Ok(VerifyCode::Malformed),
            "{k:?}"
        );
    }

    // Past the verify listener's 16 KiB limit: refused before decoding.
    let huge = verify_code(&app, key("k".repeat(1 << 20))).await;
    assert_eq!(huge, Err(Code::OutOfRange));
    let many = pb::VerifyRequest {
        required_scopes: (0..10_000).map(|i| format!("s{i}")).collect(),
        ..key(good.clone())
    };
    assert_eq!(verify_code(&app, many).await, Err(Code::OutOfRange));

    // Bad arguments name their field.
    for (req, field) in [
        (
            pb::VerifyRequest {
                client_ip: SQL[1].into(),
                ..key(good.clone())
            },
            "client_ip",
        ),
        (
            pb::VerifyRequest {
                required_scopes: vec!["invoices:read".into(), String::new()],
                ..key(good.clone())
            },
            "required_scopes[1]",
        ),
        (
            pb::VerifyRequest {
                required_scopes: (0..101).map(|i| format!("s{i}")).collect(),
                ..key(good.clone())
            },
            "required_scopes",
        ),
    ] {
        assert_status(
            app.verify.clone().verify(req).await,
            Code::InvalidArgument,
            field,
        );
    }

    // Junk in the free-text inputs is only ever compared, never trusted.
    for s in SQL {
        let req = pb::VerifyRequest {
            required_scopes: vec!["invoices:read".into()],
            referrer: s.to_string(),
            resource: s.to_string(),
            ..key(good.clone())
        };
        assert_eq!(verify_code(&app, req).await, Ok(VerifyCode::Valid));
    }

    // Still up, still right.
    assert_eq!(verify_code(&app, key(good)).await, Ok(VerifyCode::Valid));
}

fn create(owner: &str) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        owner_id: owner.into(),
        ..Default::default()
    }
}

fn restrictions(ip: &[&str], referrer: &[&str], resource: &[&str]) -> pb::Restrictions {
    let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    pb::Restrictions {
        ip: (!ip.is_empty()).then(|| pb::IpRestriction {
            allow: v(ip),
            mode: 0,
        }),
        referrer: (!referrer.is_empty()).then(|| pb::ReferrerRestriction {
            allow: v(referrer),
            mode: 0,
        }),
        resource: (!resource.is_empty()).then(|| pb::ResourceRestriction {
            allow: v(resource),
            mode: 0,
        }),
        rate_limit: None,
        ..Default::default()
    }
}

/// `ListKeysRequest` with `page_size` widened to 64 bits, to send values an
/// int32 cannot hold, as a hostile client can.
#[derive(Clone, PartialEq, prost::Message)]
struct WideListKeys {
    #[prost(uint64, tag = "3")]
    page_size: u64,
}

async fn hostile_admin_inputs_are_refused_and_nothing_is_written(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let with = |r: pb::Restrictions| pb::CreateKeyRequest {
        restrictions: Some(r),
        ..create("acct_1")
    };
    // JSON nested 150 deep, 900 bytes: metadata is opaque text to keysmith.
    let deep = "{\"a\":".repeat(150) + &"}".repeat(150);
    let cases: Vec<(pb::CreateKeyRequest, &str)> = vec![
        (
            with(restrictions(&["10.0.0.0/33"], &[], &[])),
            "restrictions.ip.allow[0]",
        ),
        (
            with(restrictions(&[SQL[0]], &[], &[])),
            "restrictions.ip.allow[0]",
        ),
        (
            with(restrictions(&["::/129"], &[], &[])),
            "restrictions.ip.allow[0]",
        ),
        (
            with(restrictions(&[], &["https://x.com/?q=1"], &[])),
            "restrictions.referrer.allow[0]",
        ),
        (
            with(restrictions(&[], &["*.*.com"], &[])),
            "restrictions.referrer.allow[0]",
        ),
        (
            with(restrictions(&[], &[SQL[1]], &[])),
            "restrictions.referrer.allow[0]",
        ),
        (
            with(restrictions(&[], &[], &["../etc/passwd"])),
            "restrictions.resource.allow[0]",
        ),
        (
            with(restrictions(&[], &[], &["a/**/b"])),
            "restrictions.resource.allow[0]",
        ),
        (
            with(restrictions(&[], &[], &[&"a/".repeat(40)])),
            "restrictions.resource.allow[0]",
        ),
        (
            with(restrictions(&[], &[], &[&"x".repeat(600)])),
            "restrictions.resource.allow[0]",
        ),
        (
            pb::CreateKeyRequest {
                scopes: (0..10_000).map(|i| format!("s{i}")).collect(),
                ..create("acct_1")
            },
            "scopes",
        ),
        (
            pb::CreateKeyRequest {
                scopes: vec!["a:read".into(), "a:read".into()],
                ..create("acct_1")
            },
            "scopes[1]",
        ),
        (
            pb::CreateKeyRequest {
                scopes: vec![String::new()],
                ..create("acct_1")
            },
            "scopes[0]",
        ),
        (
            pb::CreateKeyRequest {
                metadata: [("deep".to_owned(), deep.repeat(2))].into(),
                ..create("acct_1")
            },
            "metadata[deep]",
        ),
        (
            pb::CreateKeyRequest {
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
                ..create("acct_1")
            },
            "ttl",
        ),
        (
            pb::CreateKeyRequest {
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: 0,
                    nanos: -5,
                }),
                ..create("acct_1")
            },
            "ttl",
        ),
        (
            pb::CreateKeyRequest {
                ttl: Some(keysmith::grpc::wkt::Duration {
                    seconds: i64::MAX,
                    nanos: 999_999_999,
                }),
                ..create("acct_1")
            },
            "ttl",
        ),
        (
            pb::CreateKeyRequest {
                expire_time: Some(keysmith::grpc::wkt::Timestamp {
                    seconds: i64::MIN,
                    nanos: 0,
                }),
                ..create("acct_1")
            },
            "expire_time",
        ),
    ];
    let mut cases = cases;
    for s in SQL {
        cases.push((create(s), "owner_id"));
        cases.push((
            pb::CreateKeyRequest {
                request_id: s.to_string(),
                ..create("acct_1")
            },
            "request_id",
        ));
    }
    for (req, field) in cases {
        assert_status(admin.create_key(req).await, Code::InvalidArgument, field);
    }

    // page_size beyond int32: 2^31 on the wire.
    let wide = WideListKeys { page_size: 1 << 31 };
    let decoded = pb::ListKeysRequest::decode(wide.encode_to_vec().as_slice()).expect("decodes");
    assert_status(
        admin.list_keys(decoded).await,
        Code::InvalidArgument,
        "page_size",
    );
    let rotate = |seconds| pb::RotateKeyRequest {
        id: "key_01aaaaaaaaaaaaaaaaaaaaaaaa".into(),
        grace_period: Some(keysmith::grpc::wkt::Duration { seconds, nanos: 0 }),
        ..Default::default()
    };
    for seconds in [-1, i64::MIN, i64::MAX] {
        assert_status(
            admin.rotate_key(rotate(seconds)).await,
            Code::InvalidArgument,
            "grace_period",
        );
    }

    // Filters with SQL in them: refused where the field has a syntax, and
    // matching nothing where it is free text.
    for s in SQL {
        let req = pb::ListKeysRequest {
            owner_id: s.to_string(),
            ..Default::default()
        };
        assert_status(
            admin.list_keys(req).await,
            Code::InvalidArgument,
            "owner_id",
        );
        let req = pb::ListAuditEventsRequest {
            key_id: s.to_string(),
            ..Default::default()
        };
        assert_status(
            admin.list_audit_events(req).await,
            Code::InvalidArgument,
            "key_id",
        );
        let req = pb::ListAuditEventsRequest {
            action: s.to_string(),
            ..Default::default()
        };
        assert_status(
            admin.list_audit_events(req).await,
            Code::InvalidArgument,
            "action",
        );
    }

    // Nothing above wrote a key.
    let listed = admin
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.keys.is_empty(), "{:?}", listed.keys);

    // Where SQL-looking text is allowed (names, reasons, metadata), it is
    // stored and returned verbatim.
    let mut ids = Vec::new();
    for s in SQL {
        let req = pb::CreateKeyRequest {
            name: s.to_string(),
            metadata: [
                ("note".to_owned(), s.to_string()),
                ("deep".to_owned(), deep.clone()),
            ]
            .into(),
            ..create("acct_sql")
        };
        let key = app.create(req).await.key.expect("key");
        assert_eq!(key.name, *s);
        assert_eq!(key.metadata["note"], *s);
        assert_eq!(key.metadata["deep"], deep);
        let req = pb::RevokeKeyRequest {
            id: key.id.clone(),
            reason: s.to_string(),
            ..Default::default()
        };
        admin.revoke_key(req).await.expect("revoke");
        ids.push(key.id);
    }
    let req = pb::ListKeysRequest {
        owner_id: "acct_sql".into(),
        ..Default::default()
    };
    let listed = admin.list_keys(req).await.expect("list").into_inner();
    assert_eq!(listed.keys.len(), SQL.len());
    for id in ids {
        let key = app.get(&id).await;
        assert!(SQL.contains(&key.revoke_reason.as_str()));
    }
}

crate::backend_tests!(
    hostile_verify_inputs_get_precise_answers,
    hostile_admin_inputs_are_refused_and_nothing_is_written,
);
