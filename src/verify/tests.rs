use super::*;
use crate::domain::{
    Environment, KeyHash, KeyId, KeyName, KeyType, Metadata, OwnerId, Reason, Scope,
};

fn record(scopes: &[&str]) -> KeyRecord {
    KeyRecord {
        id: KeyId::generate(),
        hash: KeyHash::from_bytes([7; 32]),
        owner_id: OwnerId::parse("acct_1").unwrap(),
        name: KeyName::parse("k").unwrap(),
        key_type: KeyType::Secret,
        environment: Environment::Live,
        scopes: scopes.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        metadata: Metadata::default(),
        hint: "sk_live_…abcd".into(),
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(1_000),
        expires_at: None,
        revoked_at: None,
        revoke_reason: None,
        disabled_at: None,
        disable_reason: None,
        rotated_from: None,
        rotated_to: None,
        version: 1,
    }
}

fn req(scopes: &[&str]) -> Vec<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

const NOW: Timestamp = Timestamp::from_millis(10_000);

#[test]
fn live_key_with_granted_scopes_is_valid() {
    let r = record(&["invoices:read", "customers:*"]);
    let scopes = req(&["invoices:read", "customers:write"]);
    let d = decide(
        &r,
        &Request {
            required_scopes: &scopes,
        },
        NOW,
    );
    assert_eq!(d, Decision::of(Code::Valid));
    let none = decide(&r, &Request::default(), NOW);
    assert!(none.is_valid());
}

#[test]
fn scopes_are_all_of_and_name_the_first_missing() {
    let r = record(&["invoices:read"]);
    let scopes = req(&["invoices:read", "invoices:write", "refunds:read"]);
    let d = decide(
        &r,
        &Request {
            required_scopes: &scopes,
        },
        NOW,
    );
    assert_eq!(d.code, Code::InsufficientScope);
    assert_eq!(d.missing_scope, Some("invoices:write"));
}

#[test]
fn star_grants_everything() {
    let r = record(&["*"]);
    let scopes = req(&["a:b:c", "z"]);
    assert!(
        decide(
            &r,
            &Request {
                required_scopes: &scopes
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
    assert_eq!(decide(&r, &Request::default(), NOW).code, Code::Expired);
    r.expires_at = Some(Timestamp::from_millis(NOW.as_millis() + 1));
    assert_eq!(decide(&r, &Request::default(), NOW).code, Code::Valid);
}

#[test]
fn revoked_outranks_disabled_outranks_expired_outranks_scope() {
    let scopes = req(&["missing:scope"]);
    let request = Request {
        required_scopes: &scopes,
    };
    let mut r = record(&[]);
    assert_eq!(decide(&r, &request, NOW).code, Code::InsufficientScope);
    r.expires_at = Some(Timestamp::from_millis(1));
    assert_eq!(decide(&r, &request, NOW).code, Code::Expired);
    r.disabled_at = Some(Timestamp::from_millis(2));
    r.disable_reason = Some(Reason::parse("paused").unwrap());
    assert_eq!(decide(&r, &request, NOW).code, Code::Disabled);
    r.revoked_at = Some(Timestamp::from_millis(3));
    assert_eq!(decide(&r, &request, NOW).code, Code::Revoked);
}
