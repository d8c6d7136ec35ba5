//! Restrictions over the wire: IP, referrer, resource, report-only, rate
//! limits, and the publishable-key policy.

use keysmith::grpc::pb::{self, RestrictionMode, VerifyCode};
use tonic::Code;

use crate::helpers::{Backend, TestApp, assert_status, spawn};

fn list(allow: &[&str], mode: RestrictionMode) -> (Vec<String>, i32) {
    (allow.iter().map(|s| s.to_string()).collect(), mode.into())
}

fn restrictions(mode: RestrictionMode) -> pb::Restrictions {
    let (ip, m) = list(&["10.0.0.0/8", "2001:db8::/32"], mode);
    let (referrer, _) = list(&["*.example.com"], mode);
    let (resource, _) = list(&["acct_1/*"], mode);
    pb::Restrictions {
        ip: Some(pb::IpRestriction { allow: ip, mode: m }),
        referrer: Some(pb::ReferrerRestriction {
            allow: referrer,
            mode: m,
        }),
        resource: Some(pb::ResourceRestriction {
            allow: resource,
            mode: m,
        }),
        rate_limit: None,
        ..Default::default()
    }
}

async fn create(app: &TestApp, r: pb::Restrictions) -> String {
    app.create(pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        restrictions: Some(r),
        ..Default::default()
    })
    .await
    .secret
}

async fn verify(
    app: &TestApp,
    key: &str,
    ip: &str,
    referrer: &str,
    resource: &str,
) -> pb::VerifyResponse {
    app.verify_from(key, &[], ip, referrer, resource).await
}

async fn enforced_restrictions_deny_with_precise_codes(backend: Backend) {
    let app = spawn(backend).await;
    let key = create(&app, restrictions(RestrictionMode::Enforce)).await;
    let (ip, referrer, resource) = ("10.9.8.7", "https://app.example.com/x", "acct_1/invoices/9");
    assert_eq!(
        verify(&app, &key, ip, referrer, resource).await.code(),
        VerifyCode::Valid
    );
    assert_eq!(
        verify(&app, &key, "2001:db8::1", referrer, resource)
            .await
            .code(),
        VerifyCode::Valid
    );
    let cases = [
        (("11.0.0.1", referrer, resource), VerifyCode::IpNotAllowed),
        (("", referrer, resource), VerifyCode::IpNotAllowed),
        (
            (ip, "https://evil-example.com/", resource),
            VerifyCode::ReferrerNotAllowed,
        ),
        ((ip, "", resource), VerifyCode::ReferrerNotAllowed),
        (
            (ip, referrer, "acct_2/invoices"),
            VerifyCode::ResourceNotAllowed,
        ),
        ((ip, referrer, ""), VerifyCode::ResourceNotAllowed),
    ];
    for ((i, r, res), expected) in cases {
        let v = verify(&app, &key, i, r, res).await;
        assert_eq!(v.code(), expected, "{i:?} {r:?} {res:?}");
        assert!(!v.valid);
        assert!(!v.detail.is_empty());
    }
    // A client_ip that is not an address is the gateway's bug.
    let req = pb::VerifyRequest {
        key,
        client_ip: "localhost".into(),
        ..Default::default()
    };
    assert_status(
        app.verify.clone().verify(req).await,
        Code::InvalidArgument,
        "client_ip",
    );
}

async fn report_only_passes_and_says_what_it_would_deny(backend: Backend) {
    let app = spawn(backend).await;
    let key = create(&app, restrictions(RestrictionMode::ReportOnly)).await;
    let v = verify(&app, &key, "11.0.0.1", "", "acct_1/x").await;
    assert!(v.valid);
    assert_eq!(v.code(), VerifyCode::Valid);
    let would: Vec<VerifyCode> = v.would_deny().collect();
    assert_eq!(
        would,
        [VerifyCode::IpNotAllowed, VerifyCode::ReferrerNotAllowed]
    );
    // The restriction that does hold stays silent.
    assert!(!would.contains(&VerifyCode::ResourceNotAllowed));
}

async fn rate_limit_denies_with_retry_after(backend: Backend) {
    let app = spawn(backend).await;
    let key = create(
        &app,
        pb::Restrictions {
            rate_limit: Some(pb::RateLimit {
                requests: 1,
                period: Some(keysmith::grpc::wkt::Duration {
                    seconds: 3600,
                    nanos: 0,
                }),
                burst: 3,
                mode: RestrictionMode::Enforce.into(),
            }),
            ..Default::default()
        },
    )
    .await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let v = verify(&app, &key, "", "", "").await;
        assert!(v.valid);
        remaining.push(v.rate_limit_remaining.expect("remaining"));
    }
    assert_eq!(remaining, [2, 1, 0]);
    let v = verify(&app, &key, "", "", "").await;
    assert_eq!(v.code(), VerifyCode::RateLimited);
    let retry = v.retry_after.expect("retry after");
    assert!(retry.seconds > 3500 && retry.seconds <= 3600, "{retry:?}");
}

async fn restrictions_are_validated_and_updatable(backend: Backend) {
    let app = spawn(backend).await;
    let mut admin = app.admin.clone();
    let bad = |r: pb::Restrictions| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        restrictions: Some(r),
        ..Default::default()
    };
    let ip = |allow: &[&str]| pb::Restrictions {
        ip: Some(pb::IpRestriction {
            allow: allow.iter().map(|s| s.to_string()).collect(),
            mode: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin
            .create_key(bad(ip(&["10.0.0.0/8", "10.0.0.0/99"])))
            .await,
        Code::InvalidArgument,
        "restrictions.ip.allow[1]",
    );
    assert_status(
        admin.create_key(bad(ip(&[]))).await,
        Code::InvalidArgument,
        "restrictions.ip.allow[0]",
    );
    let referrer = pb::Restrictions {
        referrer: Some(pb::ReferrerRestriction {
            allow: vec!["https://x.com/path".into()],
            mode: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin.create_key(bad(referrer)).await,
        Code::InvalidArgument,
        "restrictions.referrer.allow[0]",
    );
    let resource = pb::Restrictions {
        resource: Some(pb::ResourceRestriction {
            allow: vec!["acct_*".into()],
            mode: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin.create_key(bad(resource)).await,
        Code::InvalidArgument,
        "restrictions.resource.allow[0]",
    );
    let rate = pb::Restrictions {
        rate_limit: Some(pb::RateLimit {
            requests: 0,
            period: None,
            burst: 1,
            mode: 0,
        }),
        ..Default::default()
    };
    assert_status(
        admin.create_key(bad(rate)).await,
        Code::InvalidArgument,
        "restrictions.rate_limit",
    );

    // Publishable keys: bound to callers, read scopes only.
    let pk = |scopes: Vec<String>, r: Option<pb::Restrictions>| pb::CreateKeyRequest {
        owner_id: "acct_1".into(),
        r#type: pb::KeyType::Publishable.into(),
        scopes,
        restrictions: r,
        ..Default::default()
    };
    assert_status(
        admin.create_key(pk(vec![], None)).await,
        Code::InvalidArgument,
        "restrictions",
    );
    let report_only = restrictions(RestrictionMode::ReportOnly);
    assert_status(
        admin.create_key(pk(vec![], Some(report_only))).await,
        Code::InvalidArgument,
        "restrictions",
    );
    let bound = restrictions(RestrictionMode::Enforce);
    assert_status(
        admin
            .create_key(pk(vec!["a:write".into()], Some(bound.clone())))
            .await,
        Code::InvalidArgument,
        "scopes",
    );
    let created = admin
        .create_key(pk(vec!["a:read".into()], Some(bound)))
        .await
        .expect("publishable")
        .into_inner();

    // UpdateKey replaces restrictions whole, and keeps the policy.
    let id = created.key.expect("key").id;
    let clear = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: id.clone(),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["restrictions".into()],
        }),
    };
    assert_status(
        admin.update_key(clear).await,
        Code::InvalidArgument,
        "key.restrictions",
    );
    let secret_key = app.create_with_scopes(&[]).await;
    let narrow = pb::UpdateKeyRequest {
        key: Some(pb::Key {
            id: secret_key.key.expect("key").id,
            restrictions: Some(ip(&["192.0.2.0/24"])),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["restrictions".into()],
        }),
    };
    let updated = admin
        .update_key(narrow)
        .await
        .expect("update")
        .into_inner()
        .key
        .expect("key");
    assert_eq!(
        updated
            .restrictions
            .expect("restrictions")
            .ip
            .expect("ip")
            .allow,
        ["192.0.2.0/24"]
    );
    assert_eq!(
        verify(&app, &secret_key.secret, "192.0.2.9", "", "")
            .await
            .code(),
        VerifyCode::Valid
    );
    assert_eq!(
        verify(&app, &secret_key.secret, "198.51.100.1", "", "")
            .await
            .code(),
        VerifyCode::IpNotAllowed
    );
}

crate::backend_tests!(
    enforced_restrictions_deny_with_precise_codes,
    report_only_passes_and_says_what_it_would_deny,
    rate_limit_denies_with_retry_after,
    restrictions_are_validated_and_updatable,
);
