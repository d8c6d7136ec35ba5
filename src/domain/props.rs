//! Property tests for the parsers and matchers Verify relies on. Each
//! property is checked against a small reference model written here, not
//! against the code under test.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::{
    ApiKey, Environment, KeyFormatError, KeyPrefix, KeyType, Scope, api_key,
    restriction::{IpAllowlist, ReferrerAllowlist, ResourceAllowlist},
    scope,
};

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const LOWER_ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// No prefix (the default keyspace) or a keyspace prefix of any length.
fn key_prefix() -> impl Strategy<Value = Option<KeyPrefix>> {
    prop_oneof![
        Just(None),
        "[a-z0-9]{2,16}".prop_map(|p| KeyPrefix::parse(&p).ok()),
    ]
}

fn key_kind() -> impl Strategy<Value = (KeyType, Environment)> {
    (
        prop_oneof![Just(KeyType::Secret), Just(KeyType::Publishable)],
        prop_oneof![Just(Environment::Live), Just(Environment::Test)],
    )
}

/// Scope segments from a tiny alphabet, so that patterns and required
/// scopes often share prefixes.
fn segments() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec("[ab][ab.]?", 1..4)
}

/// Reference model of a scope grant, on segments.
fn model_grants(pattern: &[String], wildcard: bool, required: &[String]) -> bool {
    if wildcard {
        required.len() > pattern.len() && required[..pattern.len()] == *pattern
    } else {
        pattern == required
    }
}

fn resource_segment() -> impl Strategy<Value = String> {
    prop_oneof!["[xy]", Just("*".to_owned())]
}

/// Reference model of a resource pattern, on segments.
fn model_resource(pattern: &[String], resource: &[String]) -> bool {
    match pattern.split_last() {
        Some((last, init)) if last == "*" => {
            resource.len() > init.len()
                && init.iter().zip(resource).all(|(p, r)| p == "*" || p == r)
        }
        _ => {
            pattern.len() == resource.len()
                && pattern
                    .iter()
                    .zip(resource)
                    .all(|(p, r)| p == "*" || p == r)
        }
    }
}

fn v4_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

fn v6_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every minted key parses back to its prefix, type and environment,
    /// and its hash is SHA-256 of everything before its checksum (a bare
    /// key's first 51 characters).
    #[test]
    fn minted_keys_round_trip(
        random in any::<[u8; 32]>(),
        (t, e) in key_kind(),
        prefix in key_prefix(),
    ) {
        let key = ApiKey::from_random_in(prefix, t, e, &random);
        let secret = key.expose_secret();
        let parsed = api_key::parse(secret).expect("a minted key parses");
        prop_assert_eq!(parsed.prefix, prefix);
        prop_assert_eq!(parsed.key_type, t);
        prop_assert_eq!(parsed.environment, e);
        let head = prefix.map_or(0, |p| p.len() + 1);
        prop_assert_eq!(secret.len(), head + api_key::KEY_LEN);
        prop_assert_eq!(&secret[..head], prefix.map(|p| format!("{p}_")).unwrap_or_default());
        let expected: [u8; 32] = Sha256::digest(&secret.as_bytes()[..head + 51]).into();
        prop_assert_eq!(parsed.hash.as_bytes(), &expected);
        prop_assert_eq!(parsed.hash, key.hash());
    }

    /// Different randomness, different keys: the encoding loses nothing.
    #[test]
    fn distinct_randomness_gives_distinct_keys(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        prop_assume!(a != b);
        let (ka, kb) = (
            ApiKey::from_random(KeyType::Secret, Environment::Live, &a),
            ApiKey::from_random(KeyType::Secret, Environment::Live, &b),
        );
        prop_assert_ne!(ka.expose_secret(), kb.expose_secret());
    }

    /// Any one-character substitution is caught, wherever it falls: in the
    /// prefix, the type and environment, the body or the checksum. A
    /// substitution that leaves every part well-formed (a prefix character
    /// for another of `[a-z0-9]`, a body or checksum digit for another
    /// digit) is caught by the checksum, which covers the prefix.
    #[test]
    fn one_substitution_is_always_caught(
        random in any::<[u8; 32]>(),
        prefix in key_prefix(),
        at in 0usize..74,
        with in any::<prop::sample::Index>(),
    ) {
        let key = ApiKey::from_random_in(prefix, KeyType::Secret, Environment::Live, &random);
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        let at = at % bytes.len();
        let head = prefix.map_or(0, |p| p.len());
        let in_prefix = at < head;
        let in_tail = at >= bytes.len() - 49;
        let alphabet: &[u8] = if in_prefix { LOWER_ALNUM } else { BASE62 };
        let with = alphabet[with.index(alphabet.len())];
        prop_assume!(bytes[at] != with);
        bytes[at] = with;
        let changed = String::from_utf8(bytes).expect("ascii");
        if in_prefix || in_tail {
            prop_assert_eq!(api_key::parse(&changed), Err(KeyFormatError::Checksum));
        } else {
            prop_assert!(api_key::parse(&changed).is_err());
        }
    }

    /// Swapping two different neighbours anywhere is caught (a burst of at
    /// most 16 bits, which CRC-32 always detects), the prefix and its `_`
    /// included.
    #[test]
    fn adjacent_swaps_are_always_caught(
        random in any::<[u8; 32]>(),
        prefix in key_prefix(),
        at in 0usize..73,
    ) {
        let key = ApiKey::from_random_in(prefix, KeyType::Secret, Environment::Live, &random);
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        let at = at % (bytes.len() - 1);
        prop_assume!(bytes[at] != bytes[at + 1]);
        bytes.swap(at, at + 1);
        let changed = String::from_utf8(bytes).expect("ascii");
        prop_assert!(api_key::parse(&changed).is_err());
    }

    /// No input panics the parser, and whatever it accepts has the shape of
    /// a key: an optional `[a-z0-9]{2,16}_` prefix, then a bare key.
    #[test]
    fn the_parser_takes_any_string(s in prop_oneof![".{0,80}", "([a-z0-9A-Z_]{1,18}_)?[sp]k_(live|test)_[0-9A-Za-z]{49}"]) {
        if let Ok(parsed) = api_key::parse(&s) {
            prop_assert!(s.len() >= api_key::KEY_LEN);
            let (head, bare) = s.split_at(s.len() - api_key::KEY_LEN);
            prop_assert!(["sk_live_", "sk_test_", "pk_live_", "pk_test_"]
                .iter()
                .any(|p| bare.starts_with(p)));
            prop_assert!(bare.as_bytes()[8..].iter().all(u8::is_ascii_alphanumeric));
            match head.strip_suffix('_') {
                None => prop_assert!(head.is_empty()),
                Some(p) => {
                    prop_assert!((2..=16).contains(&p.len()));
                    prop_assert!(p.bytes().all(|b| LOWER_ALNUM.contains(&b)));
                    prop_assert_eq!(parsed.prefix.map(|x| x.as_str().to_owned()), Some(p.to_owned()));
                }
            }
        }
    }

    /// A scope grants exactly what the segment model says: a concrete scope
    /// itself, a wildcard everything strictly below its prefix. In
    /// particular no scope grants outside its pattern.
    #[test]
    fn scopes_grant_what_the_model_grants(
        pattern in segments(),
        wildcard in any::<bool>(),
        required in segments(),
    ) {
        let text = if wildcard {
            format!("{}:*", pattern.join(":"))
        } else {
            pattern.join(":")
        };
        let req = required.join(":");
        prop_assume!(scope::check_required(&req).is_ok());
        let scope = Scope::parse(&text).expect("generated scopes are valid");
        prop_assert_eq!(scope.grants(&req), model_grants(&pattern, wildcard, &required));
        prop_assert!(Scope::parse("*").expect("star").grants(&req));
    }

    /// IPv4 blocks contain exactly the addresses that agree on the prefix
    /// bits; mapped IPv6 forms of them too.
    #[test]
    fn ipv4_blocks_match_the_mask(net in any::<u32>(), prefix in 0u8..=32, ip in any::<u32>()) {
        let list = IpAllowlist::parse(&[format!("{}/{prefix}", Ipv4Addr::from(net))])
            .expect("valid block");
        let inside = (net ^ ip) & v4_mask(prefix) == 0;
        prop_assert_eq!(list.contains(IpAddr::V4(Ipv4Addr::from(ip))), inside);
        let mapped = Ipv4Addr::from(ip).to_ipv6_mapped();
        prop_assert_eq!(list.contains(IpAddr::V6(mapped)), inside);
    }

    #[test]
    fn ipv6_blocks_match_the_mask(net in any::<u128>(), prefix in 0u8..=128, ip in any::<u128>()) {
        // Addresses in ::ffff:0:0/96 are IPv4 in disguise and compare as such.
        prop_assume!(Ipv6Addr::from(ip).to_ipv4_mapped().is_none());
        let list = IpAllowlist::parse(&[format!("{}/{prefix}", Ipv6Addr::from(net))])
            .expect("valid block");
        let inside = (net ^ ip) & v6_mask(prefix) == 0;
        prop_assert_eq!(list.contains(IpAddr::V6(Ipv6Addr::from(ip))), inside);
    }

    /// `*.example.com` allows exactly the proper subdomains, whatever their
    /// case, path or port; a host that merely ends in the same letters is
    /// refused.
    #[test]
    fn referrer_wildcards_allow_only_subdomains(
        labels in prop::collection::vec("[a-zA-Z0-9]{1,8}", 0..3),
        glue in "[a-z-]{0,3}",
        path in "(/[a-z]{0,5}){0,2}",
        port in prop::option::of(1u16..),
    ) {
        let list = ReferrerAllowlist::parse(&["*.example.com"]).expect("valid");
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let sub = labels.join(".");
        let proper = !labels.is_empty();
        let url = |host: &str| format!("https://{host}{port}{path}");
        if proper {
            let (lower, upper) = (
                url(&format!("{sub}.example.com")),
                url(&format!("{}.EXAMPLE.com", sub.to_uppercase())),
            );
            prop_assert!(list.allows(&lower), "{}", lower);
            prop_assert!(list.allows(&upper), "{}", upper);
        }
        prop_assert!(!list.allows(&url("example.com")));
        // `<sub><glue>example.com` with no dot before `example`.
        let lookalike = format!("{sub}{glue}example.com");
        prop_assume!(!lookalike.starts_with('.') && lookalike != "example.com");
        prop_assert!(!list.allows(&url(&lookalike)));
    }

    /// Resource patterns match what the segment model says.
    #[test]
    fn resources_match_the_model(
        pattern in prop::collection::vec(resource_segment(), 1..5),
        resource in prop::collection::vec("[xy]", 1..6),
    ) {
        let list = ResourceAllowlist::parse(&[pattern.join("/")]).expect("valid pattern");
        prop_assert_eq!(list.allows(&resource.join("/")), model_resource(&pattern, &resource));
    }

    /// A presented resource that walks or has empty segments is never allowed,
    /// even by the widest pattern.
    #[test]
    fn traversal_is_never_allowed(
        before in prop::collection::vec("[xy]", 0..3),
        bad in prop_oneof![Just(""), Just("."), Just("..")],
        after in prop::collection::vec("[xy]", 0..3),
    ) {
        let list = ResourceAllowlist::parse(&["*", "x/*", "*/*"]).expect("valid");
        let mut segs: Vec<&str> = before.iter().map(String::as_str).collect();
        segs.push(bad);
        segs.extend(after.iter().map(String::as_str));
        prop_assert!(!list.allows(&segs.join("/")));
    }

    /// The canonical form is never decoded: a segment holding an escape, a
    /// backslash, a path parameter, a query or a fragment is never allowed,
    /// whatever follows it, and no pattern may hold one either.
    #[test]
    fn reserved_characters_are_never_canonical(
        before in prop::collection::vec("[xy]", 0..3),
        head in "[xy.]{0,2}",
        reserved in prop::sample::select(vec!['%', '\\', ';', '?', '#']),
        tail in "[0-9a-fA-F./]{0,6}",
        after in prop::collection::vec("[xy]", 0..3),
    ) {
        let list = ResourceAllowlist::parse(&["*", "x/*", "*/*"]).expect("valid");
        let mut segs: Vec<String> = before.clone();
        segs.push(format!("{head}{reserved}{tail}"));
        segs.extend(after.iter().cloned());
        let resource = segs.join("/");
        prop_assert!(!list.allows(&resource), "{resource:?}");
        prop_assert!(ResourceAllowlist::parse(&[resource.as_str()]).is_err());
    }
}
