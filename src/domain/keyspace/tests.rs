//! Keyspace ids, prefixes, defaults and the catalogue.

use super::*;

#[test]
fn prefixes_are_short_lowercase_alphanumerics() {
    for ok in ["ab", "acme", "a1b2c3", "0123456789abcdef"] {
        assert_eq!(KeyPrefix::parse(ok).expect(ok).as_str(), ok);
    }
    assert_eq!(KeyPrefix::parse("a"), Err(PrefixError::Length));
    assert_eq!(
        KeyPrefix::parse("0123456789abcdefg"),
        Err(PrefixError::Length)
    );
    for bad in ["Acme", "ac_me", "ac-me", "acmé", "ac me"] {
        assert!(KeyPrefix::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn ids_parse_and_generate() {
    let id = KeyspaceId::generate().expect("rng");
    assert_eq!(id.as_str().len(), 3 + GENERATED_DIGITS);
    assert_eq!(id.as_str().parse::<KeyspaceId>(), Ok(id.clone()));
    assert!(KeyspaceId::default_id().is_default());
    for bad in [
        "",
        "ks_",
        "key_abc",
        "ks_a-b",
        &format!("ks_{}", "a".repeat(33)),
    ] {
        assert!(bad.parse::<KeyspaceId>().is_err(), "{bad}");
    }
}

#[test]
fn defaults_round_trip_through_json() {
    let d = KeyspaceDefaults {
        environment: Some(Environment::Live),
        scopes: vec![Scope::parse("invoices:read").unwrap()],
        rotation: Some(KeyRotation::Never),
        grace: Some(Duration::from_secs(60)),
        ttl: Some(Duration::from_secs(3600)),
        max_lifetime: Some(Duration::from_secs(7200)),
        restrictions: Restrictions::default(),
    };
    assert_eq!(KeyspaceDefaults::from_json(&d.to_json()), Ok(d));
    assert_eq!(
        KeyspaceDefaults::from_json(&json!({})),
        Ok(KeyspaceDefaults::default())
    );
}

#[test]
fn the_catalogue_admits_declared_and_granted_scopes() {
    let ks = |cat: &[&str]| Keyspace {
        id: KeyspaceId::default_id(),
        name: KeyspaceName::parse("x").unwrap(),
        prefix: None,
        defaults: KeyspaceDefaults::default(),
        scopes: cat.iter().map(|s| Scope::parse(s).unwrap()).collect(),
        leak: Default::default(),
        legacy: vec![],
        created_at: crate::domain::Timestamp::from_millis(0),
        updated_at: crate::domain::Timestamp::from_millis(0),
        version: 1,
    };
    let s = |s: &str| Scope::parse(s).unwrap();
    assert!(ks(&[]).admits_scope(&s("anything")));
    let k = ks(&["invoices:read", "customers:*"]);
    assert!(k.admits_scope(&s("invoices:read")));
    assert!(k.admits_scope(&s("customers:read")));
    assert!(!k.admits_scope(&s("invoices:write")));
    assert!(!k.admits_scope(&s("*")));
}

#[test]
fn scanner_regexes_name_the_prefix() {
    let p = KeyPrefix::parse("acme").unwrap();
    assert_eq!(
        scanner_regex(Some(&p)),
        r"\bacme_(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b"
    );
    assert_eq!(
        scanner_regex(None),
        r"\b(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b"
    );
}
