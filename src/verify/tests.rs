use std::{net::IpAddr, time::Duration};

use super::*;
use crate::{
    domain::{
        ApiKey, Environment, KeyName, KeyRecord, KeyType, Mode, OwnerId, Reason, Restrictions,
        Scope,
        restriction::{IpAllowlist, RateLimit, ReferrerAllowlist, ResourceAllowlist},
    },
    domain::{Rule, Timestamp},
    index::{Entry, KeyspaceScope},
    usage::Recorder,
};

pub(super) fn record(scopes: &[&str]) -> KeyRecord {
    let key = ApiKey::generate(KeyType::Secret, Environment::Live).unwrap();
    KeyRecord::new(
        &key,
        OwnerId::parse("acct_1").unwrap(),
        KeyName::parse("k").unwrap(),
        scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        Timestamp::from_millis(1_000),
    )
}

fn strings(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

pub(super) const NOW: Timestamp = Timestamp::from_millis(10_000);

fn code(r: &KeyRecord, req: &Request) -> Code {
    decide(&Entry::from(r), req, NOW).code
}

#[test]
fn live_key_with_granted_scopes_is_valid() {
    let r = record(&["invoices:read", "customers:*"]);
    let scopes = strings(&["invoices:read", "customers:write"]);
    let req = Request {
        required_scopes: &scopes,
        ..Default::default()
    };
    assert_eq!(
        decide(&Entry::from(&r), &req, NOW),
        Decision::of(Code::Valid)
    );
    assert!(decide(&Entry::from(&r), &Request::default(), NOW).is_valid());
}

#[test]
fn scopes_are_all_of_and_name_the_first_missing() {
    let r = record(&["invoices:read"]);
    let scopes = strings(&["invoices:read", "invoices:write", "refunds:read"]);
    let d = decide(
        &Entry::from(&r),
        &Request {
            required_scopes: &scopes,
            ..Default::default()
        },
        NOW,
    );
    assert_eq!(d.code, Code::InsufficientScope);
    assert_eq!(d.missing_scope, Some("invoices:write"));
}

#[test]
fn any_of_groups_follow_all_of_and_name_the_first_unmet_group() {
    let r = record(&["invoices:read", "refunds:*"]);
    let e = Entry::from(&r);
    let all = strings(&["invoices:read"]);
    let any: Vec<Vec<String>> = vec![
        strings(&["invoices:admin", "invoices:read"]),
        strings(&["customers:read", "customers:admin"]),
    ];
    let d = decide(
        &e,
        &Request {
            required_scopes: &all,
            required_any: &any,
            ..Default::default()
        },
        NOW,
    );
    assert_eq!(d.code, Code::InsufficientScope);
    assert_eq!(d.missing_scope, None);
    assert_eq!(d.missing_any, Some(Unmet::Scopes(&any[1])));
    let met: Vec<Vec<String>> = vec![strings(&["customers:read", "refunds:write"])];
    let ok = Request {
        required_scopes: &all,
        required_any: &met,
        ..Default::default()
    };
    assert_eq!(decide(&e, &ok, NOW), Decision::of(Code::Valid));
    // All-of is checked first, and named as before.
    let wrong = strings(&["invoices:write"]);
    let d = decide(
        &e,
        &Request {
            required_scopes: &wrong,
            ..ok
        },
        NOW,
    );
    assert_eq!(
        (d.missing_scope, d.missing_any),
        (Some("invoices:write"), None)
    );
}

#[test]
fn star_grants_everything() {
    let r = record(&["*"]);
    let scopes = strings(&["a:b:c", "z"]);
    assert!(
        decide(
            &Entry::from(&r),
            &Request {
                required_scopes: &scopes,
                ..Default::default()
            },
            NOW
        )
        .is_valid()
    );
}

#[test]
fn expiry_is_exclusive_of_the_instant() {
    let mut r = record(&[]);
    r.expires_at = Some(NOW);
    assert_eq!(code(&r, &Request::default()), Code::Expired);
    r.expires_at = Some(Timestamp::from_millis(NOW.as_millis() + 1));
    assert_eq!(code(&r, &Request::default()), Code::Valid);
}

fn restricted() -> KeyRecord {
    let mut r = record(&["a:read"]);
    r.restrictions = Restrictions {
        ip: Some(Rule {
            allow: IpAllowlist::parse(&["10.0.0.0/8", "2001:db8::/32"]).unwrap(),
            mode: Mode::Enforce,
        }),
        referrer: Some(Rule {
            allow: ReferrerAllowlist::parse(&["*.example.com"]).unwrap(),
            mode: Mode::Enforce,
        }),
        resource: Some(Rule {
            allow: ResourceAllowlist::parse(&["acct_1/*"]).unwrap(),
            mode: Mode::Enforce,
        }),
        rate_limit: None,
        quota: None,
    };
    r
}

fn full_request<'a>(scopes: &'a [String]) -> Request<'a> {
    Request {
        required_scopes: scopes,
        client_ip: ip("10.1.2.3"),
        referrer: "https://app.example.com/page",
        resource: "acct_1/invoices",
        ..Default::default()
    }
}

#[test]
fn each_restriction_allows_denies_and_denies_missing_input() {
    let r = restricted();
    let scopes = strings(&["a:read"]);
    let ok = full_request(&scopes);
    assert_eq!(code(&r, &ok), Code::Valid);
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("2001:db8::5"),
                ..ok
            }
        ),
        Code::Valid
    );

    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("11.0.0.1"),
                ..ok
            }
        ),
        Code::IpNotAllowed
    );
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("2001:db9::1"),
                ..ok
            }
        ),
        Code::IpNotAllowed
    );
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: None,
                ..ok
            }
        ),
        Code::IpNotAllowed
    );

    assert_eq!(
        code(
            &r,
            &Request {
                referrer: "https://evil-example.com/",
                ..ok
            }
        ),
        Code::ReferrerNotAllowed
    );
    assert_eq!(
        code(&r, &Request { referrer: "", ..ok }),
        Code::ReferrerNotAllowed
    );

    assert_eq!(
        code(
            &r,
            &Request {
                resource: "acct_2/invoices",
                ..ok
            }
        ),
        Code::ResourceNotAllowed
    );
    assert_eq!(
        code(
            &r,
            &Request {
                resource: "acct_1/../acct_2",
                ..ok
            }
        ),
        Code::ResourceNotAllowed
    );
    assert_eq!(
        code(&r, &Request { resource: "", ..ok }),
        Code::ResourceNotAllowed
    );
}

#[test]
fn report_only_passes_and_records_the_would_be_denial() {
    let mut r = restricted();
    for rule in [
        &mut r.restrictions.ip.as_mut().unwrap().mode,
        &mut r.restrictions.referrer.as_mut().unwrap().mode,
    ] {
        *rule = Mode::ReportOnly;
    }
    let scopes = strings(&["a:read"]);
    let req = Request {
        client_ip: ip("11.0.0.1"),
        referrer: "",
        ..full_request(&scopes)
    };
    let d = decide(&Entry::from(&r), &req, NOW);
    assert_eq!(d.code, Code::Valid);
    assert_eq!(
        d.would_deny.iter().collect::<Vec<_>>(),
        [Code::IpNotAllowed, Code::ReferrerNotAllowed]
    );
    // An enforced restriction still denies, and keeps the report-only notes.
    let req = Request {
        resource: "acct_9/x",
        ..req
    };
    let d = decide(&Entry::from(&r), &req, NOW);
    assert_eq!(d.code, Code::ResourceNotAllowed);
    assert!(!d.would_deny.is_empty());
}

#[test]
fn order_is_state_then_restrictions_then_scope() {
    let scopes = strings(&["missing:scope"]);
    let mut r = restricted();
    let bad = Request {
        client_ip: ip("11.0.0.1"),
        referrer: "",
        resource: "",
        required_scopes: &scopes,
        required_any: &NoGroups,
        keyspaces: KeyspaceScope::ANY,
        ..Request::default()
    };
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("10.0.0.1"),
                referrer: "https://a.example.com",
                resource: "acct_1/x",
                ..bad
            }
        ),
        Code::InsufficientScope
    );
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("10.0.0.1"),
                referrer: "https://a.example.com",
                ..bad
            }
        ),
        Code::ResourceNotAllowed
    );
    assert_eq!(
        code(
            &r,
            &Request {
                client_ip: ip("10.0.0.1"),
                ..bad
            }
        ),
        Code::ReferrerNotAllowed
    );
    assert_eq!(code(&r, &bad), Code::IpNotAllowed);
    r.expires_at = Some(Timestamp::from_millis(1));
    assert_eq!(code(&r, &bad), Code::Expired);
    r.disabled_at = Some(Timestamp::from_millis(2));
    r.disable_reason = Some(Reason::parse("paused").unwrap());
    assert_eq!(code(&r, &bad), Code::Disabled);
    r.revoked_at = Some(Timestamp::from_millis(3));
    assert_eq!(code(&r, &bad), Code::Revoked);
}

#[test]
fn rate_limit_applies_after_the_decision_and_counts_usage() {
    let index = KeyIndex::default();
    let usage = Recorder::default();
    let key = crate::domain::ApiKey::generate(KeyType::Secret, Environment::Live).unwrap();
    let mut r = record(&["a:read"]);
    r.hash = key.hash();
    r.restrictions.rate_limit = Some(Rule {
        allow: RateLimit::new(1, Duration::from_secs(1), 2).unwrap(),
        mode: Mode::Enforce,
    });
    index.upsert(&r);
    let scopes = strings(&["a:read"]);
    let req = Request {
        required_scopes: &scopes,
        ..Default::default()
    };
    let at = |t: u64| verify(&index, &usage, key.expose_secret(), &req, NOW, || t);
    let t0 = 5_000_000_000;
    assert_eq!(at(t0).rate_limit_remaining, Some(1));
    assert_eq!(at(t0).rate_limit_remaining, Some(0));
    let limited = at(t0);
    assert_eq!(limited.decision.code, Code::RateLimited);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(1)));
    assert!(at(t0 + 1_000_000_000).decision.is_valid());
    // A denied scope check spends no token.
    let wrong = strings(&["b:write"]);
    let denied = verify(
        &index,
        &usage,
        key.expose_secret(),
        &Request {
            required_scopes: &wrong,
            ..Default::default()
        },
        NOW,
        || t0,
    );
    assert_eq!(denied.decision.code, Code::InsufficientScope);
    assert_eq!(denied.rate_limit_remaining, None);

    let _ = verify(&index, &usage, "sk_live_garbage", &req, NOW, || t0);
    let (deltas, unknown) = usage.drain();
    assert_eq!(deltas.len(), 1);
    assert_eq!(deltas[0].count(Code::Valid), 3);
    assert_eq!(deltas[0].count(Code::RateLimited), 1);
    assert_eq!(deltas[0].count(Code::InsufficientScope), 1);
    assert_eq!(deltas[0].last_used_at, Some(NOW));
    assert_eq!(unknown.malformed, 1);
    assert!(usage.drain().0.is_empty(), "a drain takes everything");
}

#[test]
fn a_key_outside_the_named_keyspace_answers_as_an_unknown_key() {
    let index = KeyIndex::default();
    let usage = Recorder::default();
    let acme = crate::domain::KeyPrefix::parse("acme").ok();
    let key = ApiKey::generate_in(acme, KeyType::Secret, Environment::Live).unwrap();
    let mut r = record(&[]);
    r.hash = key.hash();
    r.keyspace_id = "ks_acme".parse().unwrap();
    index.upsert(&r);
    let in_scope = |ks: &str| Request {
        keyspaces: index.keyspace_scope(ks),
        ..Default::default()
    };
    let at = |ks: &str| {
        verify(
            &index,
            &usage,
            key.expose_secret(),
            &in_scope(ks),
            NOW,
            || 0,
        )
    };
    assert!(at("").decision.is_valid());
    assert!(at("ks_acme").decision.is_valid());
    let unknown = ApiKey::generate(KeyType::Secret, Environment::Live).unwrap();
    let miss = verify(
        &index,
        &usage,
        unknown.expose_secret(),
        &in_scope(""),
        NOW,
        || 0,
    );
    usage.drain();
    for other in ["ks_default", "ks_nowhere"] {
        let outside = at(other);
        assert_eq!(outside.decision, miss.decision, "{other}");
        assert_eq!(outside.detail, miss.detail);
        assert!(
            outside.entry.is_none(),
            "{other}: nothing about the key leaks"
        );
        let (deltas, unknowns) = usage.drain();
        assert!(
            deltas.is_empty(),
            "{other}: the key's own counters are untouched"
        );
        assert_eq!(unknowns.not_found, 1, "{other}: counted as an unknown key");
    }
}
