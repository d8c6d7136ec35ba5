//! The key format's tests: round trips, every corruption caught, and
//! known vectors computed apart from this code.

use std::collections::HashSet;

use super::*;

fn key(t: KeyType, e: Environment) -> ApiKey {
    ApiKey::generate(t, e).expect("os rng")
}

#[test]
fn generated_key_round_trips_through_parse() {
    for t in [KeyType::Secret, KeyType::Publishable] {
        for e in [Environment::Live, Environment::Test] {
            let k = key(t, e);
            let parsed = parse(k.expose_secret()).expect("valid key");
            assert_eq!(parsed.key_type, t);
            assert_eq!(parsed.environment, e);
            assert_eq!(parsed.hash, k.hash());
            assert_eq!(k.expose_secret().len(), KEY_LEN);
        }
    }
}

#[test]
fn prefixes_follow_type_and_environment() {
    let cases = [
        (KeyType::Secret, Environment::Live, "sk_live_"),
        (KeyType::Secret, Environment::Test, "sk_test_"),
        (KeyType::Publishable, Environment::Live, "pk_live_"),
        (KeyType::Publishable, Environment::Test, "pk_test_"),
    ];
    for (t, e, prefix) in cases {
        let k = key(t, e);
        assert!(k.expose_secret().starts_with(prefix));
        assert!(k.hint().starts_with(prefix));
        assert!(k.hint().ends_with(&k.expose_secret()[KEY_LEN - 4..]));
    }
}

#[test]
fn every_single_character_corruption_is_rejected() {
    let k = key(KeyType::Secret, Environment::Live);
    let original = k.expose_secret().as_bytes().to_vec();
    let alphabet = base62::ALPHABET.iter().copied().chain(*b"_-+/=. \0");
    let replacements: Vec<u8> = alphabet.collect();
    let mut tried = 0;
    for pos in 0..original.len() {
        for &r in &replacements {
            if r == original[pos] {
                continue;
            }
            let mut corrupted = original.clone();
            corrupted[pos] = r;
            let s = String::from_utf8(corrupted).expect("ascii");
            assert!(parse(&s).is_err(), "corruption at {pos} to {r:?} accepted");
            tried += 1;
        }
    }
    assert!(tried > 57 * 60);
}

#[test]
fn parse_names_the_precise_reason() {
    let k = key(KeyType::Secret, Environment::Test);
    let s = k.expose_secret();
    assert_eq!(parse(""), Err(KeyFormatError::Empty));
    assert_eq!(parse(&s[..KEY_LEN - 1]), Err(KeyFormatError::Length));
    assert_eq!(parse(&format!("{s}x")), Err(KeyFormatError::Length));
    let wrong_prefix = format!("xk_test_{}", &s[TAG_LEN..]);
    assert_eq!(parse(&wrong_prefix), Err(KeyFormatError::Prefix));
    let bad_char = format!("{}!{}", &s[..20], &s[21..]);
    assert_eq!(parse(&bad_char), Err(KeyFormatError::Charset));
    let mut body = s.as_bytes().to_vec();
    body[30] = if body[30] == b'a' { b'b' } else { b'a' };
    let swapped = String::from_utf8(body).expect("ascii");
    assert_eq!(parse(&swapped), Err(KeyFormatError::Checksum));
    // Multi-byte UTF-8 of the right byte length is a charset error, not a panic.
    let unicode = format!("sk_test_{}é", &s[TAG_LEN..KEY_LEN - 2]);
    assert_eq!(unicode.len(), KEY_LEN);
    assert_eq!(parse(&unicode), Err(KeyFormatError::Charset));
}

#[test]
fn ten_thousand_keys_are_all_distinct() {
    let mut seen = HashSet::new();
    for _ in 0..10_000 {
        let k = key(KeyType::Secret, Environment::Live);
        assert!(seen.insert(k.expose_secret().to_owned()));
    }
}

#[test]
fn debug_never_shows_the_secret() {
    let k = key(KeyType::Secret, Environment::Live);
    let printed = format!("{k:?}");
    assert!(!printed.contains(&k.expose_secret()[TAG_LEN..]));
    assert!(printed.contains("redacted"));
}

#[test]
fn known_vectors_are_stable() {
    // Pins the format: changing encoding, checksum or hash breaks every
    // issued key. The strings and digests were computed apart from this
    // code (zlib's CRC-32 and SHA-256 over the text before the checksum).
    // The bare vector is the one keysmith has minted since its first
    // release: keyspaces left bare keys as they were.
    let zero = [0u8; 32];
    let counting: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    let acme = KeyPrefix::parse("acme").ok();
    let vectors = [
        (
            ApiKey::from_random(KeyType::Secret, Environment::Live, &zero),
            "sk_live_00000000000000000000000000000000000000000001Vxh1Z",
            "3c4068f00dcd6f0c25997337ebc564a97723a194fd1a9e725d6c11c87021482a",
        ),
        (
            ApiKey::from_random_in(acme, KeyType::Secret, Environment::Live, &zero),
            "acme_sk_live_000000000000000000000000000000000000000000038jOYf",
            "af6a0c623e217243e24f90467eee9830f7a78e8125dc55648fe6463ec806ccd0",
        ),
        (
            ApiKey::from_random_in(acme, KeyType::Publishable, Environment::Test, &counting),
            "acme_pk_test_0Eoh211G4c8wtVWM00my5rsNSFlKgaWqQ4mb8gdEqno2OYvCo",
            "dbe414b96be4f69b0569a424ac053ec189f29d28bff67d6c3768aabc0e6e11d8",
        ),
    ];
    for (key, secret, hash) in vectors {
        assert_eq!(key.expose_secret(), secret);
        assert_eq!(key.hash().to_hex(), hash);
        let parsed = parse(secret).expect("the vector parses");
        assert_eq!(parsed.hash, key.hash());
        assert_eq!(parsed.prefix, key.prefix());
    }
}

fn prefixed(p: &str, t: KeyType, e: Environment) -> ApiKey {
    ApiKey::generate_in(Some(KeyPrefix::parse(p).expect("prefix")), t, e).expect("os rng")
}

#[test]
fn prefixed_keys_round_trip_and_carry_their_prefix() {
    for p in ["ab", "acme", "0123456789abcdef"] {
        let k = prefixed(p, KeyType::Secret, Environment::Live);
        let s = k.expose_secret();
        assert!(s.starts_with(&format!("{p}_sk_live_")), "{p}");
        assert_eq!(s.len(), p.len() + 1 + KEY_LEN);
        assert!(k.hint().starts_with(&format!("{p}_sk_live_…")));
        assert!(k.hint().ends_with(&s[s.len() - 4..]));
        let parsed = parse(s).expect("valid key");
        assert_eq!(parsed.prefix.map(|p| p.as_str().to_owned()), Some(p.into()));
        assert_eq!(parsed.hash, k.hash());
        let expected: [u8; 32] = Sha256::digest(&s.as_bytes()[..s.len() - 6]).into();
        assert_eq!(parsed.hash.as_bytes(), &expected);
    }
    assert_eq!(
        parse(key(KeyType::Secret, Environment::Live).expose_secret()).map(|p| p.prefix),
        Ok(None)
    );
}

#[test]
fn the_checksum_covers_the_prefix() {
    let k = prefixed("acme", KeyType::Secret, Environment::Test);
    let s = k.expose_secret();
    // Another valid prefix in its place.
    let renamed = format!("acmf{}", &s[4..]);
    assert_eq!(parse(&renamed), Err(KeyFormatError::Checksum));
    // Dropping the prefix, or adding one to a bare key, breaks it too.
    assert_eq!(parse(&s[5..]), Err(KeyFormatError::Checksum));
    let bare = key(KeyType::Secret, Environment::Test);
    let adopted = format!("acme_{}", bare.expose_secret());
    assert_eq!(parse(&adopted), Err(KeyFormatError::Checksum));
}

#[test]
fn a_bad_prefix_is_a_prefix_error() {
    let k = prefixed("acme", KeyType::Secret, Environment::Test);
    let tail = &k.expose_secret()[5..];
    for head in ["Acme_", "ac_e_", "acme-", "acmé", "_acm_"] {
        let s = format!("{head}{tail}");
        assert_eq!(parse(&s), Err(KeyFormatError::Prefix), "{s}");
    }
    // Too long for any prefix, too short for the shortest.
    assert_eq!(
        parse(&format!("{}_{tail}", "a".repeat(17))),
        Err(KeyFormatError::Length)
    );
    assert_eq!(parse(&format!("a_{tail}")), Err(KeyFormatError::Length));
}

#[test]
fn every_single_character_corruption_of_a_prefixed_key_is_rejected() {
    let k = prefixed("acme", KeyType::Publishable, Environment::Live);
    let original = k.expose_secret().as_bytes().to_vec();
    let replacements: Vec<u8> = base62::ALPHABET.iter().copied().chain(*b"_-. ").collect();
    for pos in 0..original.len() {
        for &r in &replacements {
            if r == original[pos] {
                continue;
            }
            let mut corrupted = original.clone();
            corrupted[pos] = r;
            let s = String::from_utf8(corrupted).expect("ascii");
            assert!(parse(&s).is_err(), "corruption at {pos} to {r:?} accepted");
        }
    }
}
