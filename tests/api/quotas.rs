//! Credits, named limits and owners' shared limits, on both backends: a
//! denied call never spends, limits are all or nothing, bad settings name
//! their field.

use std::{collections::HashMap, time::Duration};

use keysmith::grpc::pb::{self, VerifyCode};

use crate::helpers::{Backend, TestApp, assert_status, eventually, spawn};

fn period(secs: i64) -> Option<keysmith::grpc::wkt::Duration> {
    Some(keysmith::grpc::wkt::Duration {
        seconds: secs,
        nanos: 0,
    })
}

pub fn limit(name: &str, requests: u32, secs: i64) -> pb::NamedLimit {
    pb::NamedLimit {
        name: name.into(),
        requests,
        period: period(secs),
        burst: 0,
    }
}

pub fn credits(n: i64) -> pb::CreditSettings {
    pb::CreditSettings {
        remaining: n,
        ..Default::default()
    }
}

pub fn quota_key(
    owner: &str,
    limits: Vec<pb::NamedLimit>,
    credits: Option<pb::CreditSettings>,
) -> pb::CreateKeyRequest {
    pb::CreateKeyRequest {
        owner_id: owner.into(),
        scopes: vec!["api:call".into()],
        restrictions: Some(pb::Restrictions {
            limits,
            credits,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn call(
    app: &TestApp,
    key: &str,
    scopes: &[&str],
    cost: Option<u32>,
    costs: &[(&str, u32)],
) -> pb::VerifyResponse {
    let req = pb::VerifyRequest {
        key: key.into(),
        required_scopes: scopes.iter().map(|s| s.to_string()).collect(),
        cost,
        limit_costs: costs
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<HashMap<_, _>>(),
        ..Default::default()
    };
    app.verify
        .clone()
        .verify(req)
        .await
        .expect("verify")
        .into_inner()
}

fn remaining(r: &pb::VerifyResponse, name: &str) -> i64 {
    r.limits
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no state for {name} in {:?}", r.limits))
        .remaining
}

async fn credits_are_spent_only_by_calls_that_pass(backend: Backend) {
    let app = spawn(backend).await;
    let k = app
        .create(quota_key("acct_1", vec![], Some(credits(3))))
        .await;
    let id = k.key.expect("key").id;
    // A call denied for its scope spends nothing.
    for _ in 0..5 {
        let r = call(&app, &k.secret, &["admin:all"], None, &[]).await;
        assert_eq!(r.code(), VerifyCode::InsufficientScope);
    }
    for left in [2, 1, 0] {
        let r = call(&app, &k.secret, &["api:call"], None, &[]).await;
        assert_eq!(r.code(), VerifyCode::Valid);
        assert_eq!(remaining(&r, "credits"), left);
    }
    let r = call(&app, &k.secret, &["api:call"], None, &[]).await;
    assert_eq!(r.code(), VerifyCode::UsageExceeded);
    assert!(!r.valid && r.owner_id.is_empty(), "a denial says no more");
    // A top-up is audited and works on the next calls.
    let req = pb::UpdateCreditsRequest {
        subject: Some(pb::update_credits_request::Subject::KeyId(id.clone())),
        change: Some(pb::update_credits_request::Change::Increment(2)),
        reason: "support ticket 42".into(),
        ..Default::default()
    };
    let b = app
        .admin
        .clone()
        .update_credits(req)
        .await
        .expect("top up")
        .into_inner();
    assert_eq!(b.remaining, 2, "two more to lease: {b:?}");
    eventually("the top-up to be spendable", || async {
        call(&app, &k.secret, &[], None, &[]).await.code() == VerifyCode::Valid
    })
    .await;
    let events = app
        .admin
        .clone()
        .list_audit_events(pb::ListAuditEventsRequest {
            key_id: id.clone(),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .events;
    let update = events
        .iter()
        .find(|e| e.action == "credits.updated")
        .expect("audited");
    assert!(!update.actor.is_empty());
    assert_eq!(update.reason, "support ticket 42");
}

async fn cost_zero_checks_and_a_cost_too_high_spends_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let k = app
        .create(quota_key("acct_1", vec![], Some(credits(5))))
        .await;
    let r = call(&app, &k.secret, &[], Some(0), &[]).await;
    assert_eq!(r.code(), VerifyCode::Valid);
    assert_eq!(remaining(&r, "credits"), 5, "cost 0 spends nothing");
    let r = call(&app, &k.secret, &[], Some(6), &[]).await;
    assert_eq!(r.code(), VerifyCode::UsageExceeded);
    let r = call(&app, &k.secret, &[], Some(5), &[]).await;
    assert_eq!(
        r.code(),
        VerifyCode::Valid,
        "the refused call spent nothing"
    );
    assert_eq!(remaining(&r, "credits"), 0);
    let r = call(&app, &k.secret, &[], Some(0), &[]).await;
    assert_eq!(
        r.code(),
        VerifyCode::UsageExceeded,
        "cost 0 on an empty balance"
    );
    let refused = app
        .verify
        .clone()
        .verify(pb::VerifyRequest {
            key: k.secret.clone(),
            cost: Some(1_000_001),
            ..Default::default()
        })
        .await;
    assert_status(refused, tonic::Code::InvalidArgument, "cost");
}

async fn named_limits_are_all_or_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let k = app
        .create(quota_key(
            "acct_1",
            vec![limit("requests", 5, 3600), limit("tokens", 100, 3600)],
            None,
        ))
        .await;
    let r = call(&app, &k.secret, &[], None, &[("tokens", 60)]).await;
    assert_eq!(r.code(), VerifyCode::Valid);
    assert_eq!(remaining(&r, "requests"), 4);
    assert_eq!(remaining(&r, "tokens"), 40);
    // The tokens limit fails: the requests limit is not charged either.
    let r = call(&app, &k.secret, &[], None, &[("tokens", 60)]).await;
    assert_eq!(r.code(), VerifyCode::RateLimited);
    assert!(r.retry_after.is_some(), "says when to come back");
    assert_eq!(
        remaining(&r, "requests"),
        4,
        "nothing spent: {:?}",
        r.limits
    );
    for left in (0..4).rev() {
        let r = call(&app, &k.secret, &[], None, &[("tokens", 1)]).await;
        assert_eq!(r.code(), VerifyCode::Valid);
        assert_eq!(remaining(&r, "requests"), left);
    }
    let r = call(&app, &k.secret, &[], None, &[("tokens", 1)]).await;
    assert_eq!(r.code(), VerifyCode::RateLimited);
    assert!(r.limits.iter().all(|l| l.holder == "key"));
}

async fn an_owners_credits_and_metadata_are_shared_by_its_keys(backend: Backend) {
    let app = spawn(backend).await;
    let mut metadata = HashMap::new();
    metadata.insert("plan".to_string(), "pro".to_string());
    let req = pb::UpdateOwnerRequest {
        owner_id: "acct_plan".into(),
        metadata,
        credits: Some(credits(3)),
        limits: vec![limit("requests", 1000, 60)],
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["metadata".into(), "credits".into(), "limits".into()],
        }),
        ..Default::default()
    };
    let owner = app
        .admin
        .clone()
        .update_owner(req)
        .await
        .expect("owner")
        .into_inner();
    assert!(owner.has_credits);
    let a = app.create(quota_key("acct_plan", vec![], None)).await;
    let b = app.create(quota_key("acct_plan", vec![], None)).await;
    let ra = call(&app, &a.secret, &[], None, &[]).await;
    assert_eq!(ra.code(), VerifyCode::Valid);
    assert_eq!(
        ra.owner_metadata.get("plan").map(String::as_str),
        Some("pro")
    );
    assert!(ra.limits.iter().any(|l| l.holder == "owner" && l.credits));
    assert_eq!(
        call(&app, &b.secret, &[], None, &[]).await.code(),
        VerifyCode::Valid
    );
    assert_eq!(
        call(&app, &a.secret, &[], None, &[]).await.code(),
        VerifyCode::Valid
    );
    assert_eq!(
        call(&app, &b.secret, &[], None, &[]).await.code(),
        VerifyCode::UsageExceeded,
        "one plan, many keys: three credits in all"
    );
    let got = app
        .admin
        .clone()
        .get_owner(pb::GetOwnerRequest {
            owner_id: "acct_plan".into(),
        })
        .await
        .expect("get owner")
        .into_inner();
    assert_eq!(got.limits.len(), 1);
    let listed = app
        .admin
        .clone()
        .list_owners(pb::ListOwnersRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.owners.iter().any(|o| o.owner_id == "acct_plan"));
}

async fn bad_limits_and_credits_name_their_field(backend: Backend) {
    let app = spawn(backend).await;
    let bad =
        |limits: Vec<pb::NamedLimit>, c: Option<pb::CreditSettings>| quota_key("acct_1", limits, c);
    let monthly = |day| pb::CreditSettings {
        remaining: 1,
        refill: Some(pb::CreditRefill {
            amount: 10,
            interval: Some(pb::credit_refill::Interval::MonthlyDay(day)),
        }),
        ..Default::default()
    };
    let cases = [
        (
            bad(vec![], Some(credits(-1))),
            "restrictions.credits.remaining",
        ),
        (
            bad(vec![], Some(credits(2_000_000_000_000_000_000))),
            "restrictions.credits.remaining",
        ),
        (
            bad(vec![], Some(monthly(0))),
            "restrictions.credits.refill.monthly_day",
        ),
        (
            bad(vec![], Some(monthly(32))),
            "restrictions.credits.refill.monthly_day",
        ),
        (
            bad(vec![limit("requests", 0, 1)], None),
            "restrictions.limits[0].requests",
        ),
        (
            bad(vec![limit("a", 1, 1), limit("a", 1, 1)], None),
            "restrictions.limits",
        ),
        (
            bad(
                (0..9).map(|i| limit(&format!("l{i}"), 1, 1)).collect(),
                None,
            ),
            "restrictions.limits",
        ),
        (
            bad(vec![limit("Bad Name", 1, 1)], None),
            "restrictions.limits[0].name",
        ),
    ];
    for (req, field) in cases {
        assert_status(
            app.admin.clone().create_key(req).await,
            tonic::Code::InvalidArgument,
            field,
        );
    }
    let listed = app
        .admin
        .clone()
        .list_keys(pb::ListKeysRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert!(listed.keys.is_empty(), "nothing was written");
    let _ = Duration::ZERO;
}

async fn ext_authz_answers_limits_with_429_and_rate_headers(backend: Backend) {
    use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
    let app = spawn(backend).await;
    let k = app
        .create(quota_key(
            "acct_1",
            vec![limit("requests", 10, 3600), limit("tight", 2, 3600)],
            Some(credits(1)),
        ))
        .await;
    let bearer = format!("Bearer {}", k.secret);
    let req = || {
        crate::ext_authz::check_request(
            &[("authorization", bearer.as_str())],
            "192.0.2.1",
            "/x",
            "",
        )
    };
    let ok = crate::ext_authz::check(&app, req()).await;
    let (_, status, headers) = crate::ext_authz::summary(&ok);
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("x-ratelimit-limit").map(String::as_str),
        Some("2"),
        "the tightest: {headers:?}"
    );
    assert_eq!(
        headers.get("x-ratelimit-remaining").map(String::as_str),
        Some("1")
    );
    assert!(headers.contains_key("x-ratelimit-reset"));
    let spent = crate::ext_authz::check(&app, req()).await;
    let (_, status, headers) = crate::ext_authz::summary(&spent);
    assert_eq!(status, 429, "credits are spent");
    assert!(headers.contains_key("retry-after"));
    let Some(HttpResponse::DeniedResponse(d)) = &spent.http_response else {
        panic!("a denial: {spent:?}");
    };
    let body: serde_json::Value = serde_json::from_str(&d.body).expect("json body");
    assert_eq!(body["error"], "usage_exceeded", "{body}");
}

async fn an_owner_holds_its_stale_policy(backend: Backend) {
    let app = spawn(backend).await;
    let req = pb::UpdateOwnerRequest {
        owner_id: "acct_stale".into(),
        stale_policy: Some(pb::OwnerStalePolicy {
            flag_after: period(86_400 * 30),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["stale_policy".into()],
        }),
        ..Default::default()
    };
    let owner = app
        .admin
        .clone()
        .update_owner(req)
        .await
        .expect("owner")
        .into_inner();
    let p = owner.stale_policy.expect("policy");
    assert_eq!(p.owner_id, "acct_stale");
    let listed = app
        .admin
        .clone()
        .list_owner_stale_policies(pb::ListOwnerStalePoliciesRequest {})
        .await
        .expect("policies")
        .into_inner();
    assert!(
        listed.policies.iter().any(|p| p.owner_id == "acct_stale"),
        "one store for both"
    );
    let clear = pb::UpdateOwnerRequest {
        owner_id: "acct_stale".into(),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["stale_policy".into()],
        }),
        ..Default::default()
    };
    let owner = app
        .admin
        .clone()
        .update_owner(clear)
        .await
        .expect("clear")
        .into_inner();
    assert!(owner.stale_policy.is_none());
    let mismatch = pb::UpdateOwnerRequest {
        owner_id: "acct_stale".into(),
        stale_policy: Some(pb::OwnerStalePolicy {
            owner_id: "acct_other".into(),
            flag_after: period(86_400),
            ..Default::default()
        }),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["stale_policy".into()],
        }),
        ..Default::default()
    };
    assert_status(
        app.admin.clone().update_owner(mismatch).await,
        tonic::Code::InvalidArgument,
        "stale_policy.owner_id",
    );
}

async fn low_and_exhausted_credits_send_webhooks(backend: Backend) {
    let rx = crate::receiver::receiver(0).await;
    let app = crate::helpers::spawn_with(backend, |c| {
        c.webhooks.allow_private_targets = true;
        c.webhooks.poll_interval = Duration::from_millis(50);
    })
    .await;
    let req = pb::CreateWebhookEndpointRequest {
        url: format!("{}/hooks", rx.base),
        events: vec!["key.credits_low".into(), "key.credits_exhausted".into()],
        description: "credits".into(),
    };
    app.admin
        .clone()
        .create_webhook_endpoint(req)
        .await
        .expect("endpoint");
    let settings = pb::CreditSettings {
        remaining: 4,
        low_at: Some(2),
        ..Default::default()
    };
    let k = app
        .create(quota_key("acct_1", vec![], Some(settings)))
        .await;
    for _ in 0..4 {
        assert_eq!(
            call(&app, &k.secret, &[], None, &[]).await.code(),
            VerifyCode::Valid
        );
    }
    assert_eq!(
        call(&app, &k.secret, &[], None, &[]).await.code(),
        VerifyCode::UsageExceeded
    );
    eventually("both notices to arrive", || async {
        let types: Vec<String> = rx
            .requests()
            .iter()
            .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .filter_map(|v| v["type"].as_str().map(str::to_owned))
            .collect();
        types.iter().any(|t| t == "key.credits_low")
            && types.iter().any(|t| t == "key.credits_exhausted")
    })
    .await;
    let bodies = rx.requests();
    assert_eq!(bodies.len(), 2, "each notice once");
}

/// Owners span keyspaces: a token limited to keyspaces reaches none of
/// them; one limited to owners reaches only its own.
async fn limited_tokens_reach_only_their_owners(backend: Backend) {
    use crate::token_support::{mint, names, with_permissions};
    let app = spawn(backend).await;
    let req = pb::UpdateOwnerRequest {
        owner_id: "acct_secret".into(),
        metadata: [("notes".to_string(), "internal".to_string())].into(),
        credits: Some(credits(5)),
        update_mask: Some(keysmith::grpc::wkt::FieldMask {
            paths: vec!["metadata".into(), "credits".into()],
        }),
        ..Default::default()
    };
    app.admin.clone().update_owner(req).await.expect("owner");
    let perms = names(&["keys.read", "keys.write"]);
    let in_keyspace = mint(
        &app,
        &app.admin,
        pb::CreateAdminTokenRequest {
            keyspaces: vec!["ks_default".into()],
            ..with_permissions("ks", perms.clone())
        },
    )
    .await;
    let get = |owner: &str| pb::GetOwnerRequest {
        owner_id: owner.into(),
    };
    assert_status(
        in_keyspace
            .admin
            .clone()
            .get_owner(get("acct_secret"))
            .await,
        tonic::Code::PermissionDenied,
        "span keyspaces",
    );
    assert_status(
        in_keyspace
            .admin
            .clone()
            .list_owners(pb::ListOwnersRequest::default())
            .await,
        tonic::Code::PermissionDenied,
        "span keyspaces",
    );
    let topup = pb::UpdateCreditsRequest {
        subject: Some(pb::update_credits_request::Subject::OwnerId(
            "acct_secret".into(),
        )),
        change: Some(pb::update_credits_request::Change::Set(1_000_000)),
        ..Default::default()
    };
    assert_status(
        in_keyspace
            .admin
            .clone()
            .update_credits(topup.clone())
            .await,
        tonic::Code::PermissionDenied,
        "span keyspaces",
    );
    let own = mint(
        &app,
        &app.admin,
        pb::CreateAdminTokenRequest {
            owners: vec!["acct_mine".into()],
            ..with_permissions("own", perms)
        },
    )
    .await;
    assert_status(
        own.admin.clone().update_credits(topup).await,
        tonic::Code::NotFound,
        "owner",
    );
    let b = app
        .admin
        .clone()
        .get_credits(pb::GetCreditsRequest {
            subject: Some(pb::get_credits_request::Subject::OwnerId(
                "acct_secret".into(),
            )),
        })
        .await
        .expect("credits")
        .into_inner();
    assert_eq!(b.remaining + b.held, 5, "untouched");
}

crate::backend_tests!(
    limited_tokens_reach_only_their_owners,
    low_and_exhausted_credits_send_webhooks,
    ext_authz_answers_limits_with_429_and_rate_headers,
    an_owner_holds_its_stale_policy,
    credits_are_spent_only_by_calls_that_pass,
    cost_zero_checks_and_a_cost_too_high_spends_nothing,
    named_limits_are_all_or_nothing,
    an_owners_credits_and_metadata_are_shared_by_its_keys,
    bad_limits_and_credits_name_their_field,
);
