//! The key format: `[<prefix>_]{sk|pk}_{live|test}_<body><checksum>`.
//!
//! - prefix: the keyspace's, 2 to 16 of `[a-z0-9]`; absent for the default
//!   keyspace, whose keys are bare (`sk_live_…`), as every key made before
//!   keyspaces is;
//! - body: 32 bytes from the OS CSPRNG, as 43 base62 digits;
//! - checksum: CRC32 of everything before it, prefix included, as 6 base62
//!   digits.
//!
//! A bare key is 57 characters; a prefixed one adds the prefix and its `_`.
//! The hash covers everything before the checksum: the checksum is a function
//! of it and adds no entropy. A bare key's 51 bytes fit one SHA-256 block; a
//! prefixed key's take two.
//!
//! Parsing recognises the prefix by position, not by a pattern: the last 57
//! bytes have the bare shape, and whatever comes before them must be a valid
//! prefix and `_`.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    Environment, KeyHash, KeyType, base62,
    keyspace::{KeyPrefix, MAX_PREFIX_LEN, MIN_PREFIX_LEN},
};

const TAG_LEN: usize = 8; // "sk_live_"
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Length of a bare key (the default keyspace's form).
pub const KEY_LEN: usize = TAG_LEN + BODY_LEN + CHECKSUM_LEN;
/// Length of the longest key: a 16-character prefix, its `_`, and a bare key.
pub const MAX_KEY_LEN: usize = MAX_PREFIX_LEN + 1 + KEY_LEN;

/// Why a presented string is not a keysmith key. Each variant is decided
/// before any hashing or lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("key is empty")]
    Empty,
    #[error("key must be {KEY_LEN} characters, or a prefix, `_` and {KEY_LEN} characters")]
    Length,
    #[error(
        "key must start with sk_live_, sk_test_, pk_live_ or pk_test_, after an optional \
         keyspace prefix and `_`"
    )]
    Prefix,
    #[error("key contains a character outside 0-9, A-Z, a-z")]
    Charset,
    #[error("key checksum does not match")]
    Checksum,
}

impl KeyFormatError {
    /// A fixed, short explanation, safe to return to any client.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Empty => "empty key",
            Self::Length => "wrong length",
            Self::Prefix => "unknown prefix",
            Self::Charset => "invalid character",
            Self::Checksum => "checksum mismatch",
        }
    }
}

/// What a well-formed presented key reveals: its keyspace prefix, type,
/// environment and hash. Holds nothing secret (and nothing on the heap), so
/// the caller may drop the key string at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresentedKey {
    /// `None` for a bare key (the default keyspace).
    pub prefix: Option<KeyPrefix>,
    pub key_type: KeyType,
    pub environment: Environment,
    pub hash: KeyHash,
}

/// Checks a presented key's format and hashes it. Allocation-free.
pub fn parse(key: &str) -> Result<PresentedKey, KeyFormatError> {
    let bytes = key.as_bytes();
    if bytes.is_empty() {
        return Err(KeyFormatError::Empty);
    }
    let len = bytes.len();
    // A prefix is at least two characters and its `_`.
    if len != KEY_LEN && !(KEY_LEN + MIN_PREFIX_LEN + 1..=MAX_KEY_LEN).contains(&len) {
        return Err(KeyFormatError::Length);
    }
    let (head, bare) = bytes.split_at(len - KEY_LEN);
    let (key_type, environment) = match &bare[..TAG_LEN] {
        b"sk_live_" => (KeyType::Secret, Environment::Live),
        b"sk_test_" => (KeyType::Secret, Environment::Test),
        b"pk_live_" => (KeyType::Publishable, Environment::Live),
        b"pk_test_" => (KeyType::Publishable, Environment::Test),
        _ => return Err(KeyFormatError::Prefix),
    };
    let prefix = match head.split_last() {
        None => None,
        Some((b'_', p)) => Some(KeyPrefix::from_bytes(p).map_err(|_| KeyFormatError::Prefix)?),
        Some(_) => return Err(KeyFormatError::Prefix),
    };
    if !bare[TAG_LEN..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::Charset);
    }
    let (hashed, checksum) = bytes.split_at(len - CHECKSUM_LEN);
    let checksum: &[u8; CHECKSUM_LEN] = checksum.try_into().map_err(|_| KeyFormatError::Length)?;
    if base62::decode_u32(checksum) != Some(crc32fast::hash(hashed)) {
        return Err(KeyFormatError::Checksum);
    }
    Ok(PresentedKey {
        prefix,
        key_type,
        environment,
        hash: hash_of(hashed),
    })
}

fn hash_of(hashed: &[u8]) -> KeyHash {
    KeyHash::from_bytes(Sha256::digest(hashed).into())
}

/// A freshly minted key, the only value that ever holds a whole secret.
///
/// It has no `Display`, its `Debug` is redacted, and its memory is zeroed on
/// drop. The secret leaves it only through [`ApiKey::expose_secret`], which
/// the gRPC layer calls once to answer CreateKey or RotateKey.
pub struct ApiKey {
    secret: Zeroizing<String>,
    prefix: Option<KeyPrefix>,
    key_type: KeyType,
    environment: Environment,
}

/// The OS random number generator failed; no key was made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessError;

impl ApiKey {
    /// Mints a bare key (the default keyspace's form) from 32 bytes of the
    /// OS CSPRNG.
    pub fn generate(key_type: KeyType, environment: Environment) -> Result<Self, RandomnessError> {
        Self::generate_in(None, key_type, environment)
    }

    /// Mints a key of the keyspace whose prefix is `prefix` (`None`: bare).
    pub fn generate_in(
        prefix: Option<KeyPrefix>,
        key_type: KeyType,
        environment: Environment,
    ) -> Result<Self, RandomnessError> {
        let mut random = Zeroizing::new([0u8; 32]);
        fill_random(random.as_mut())?;
        Ok(Self::from_random_in(prefix, key_type, environment, &random))
    }

    #[cfg(test)]
    pub(super) fn from_random(
        key_type: KeyType,
        environment: Environment,
        random: &[u8; 32],
    ) -> Self {
        Self::from_random_in(None, key_type, environment, random)
    }

    pub(super) fn from_random_in(
        prefix: Option<KeyPrefix>,
        key_type: KeyType,
        environment: Environment,
        random: &[u8; 32],
    ) -> Self {
        let mut buf = Zeroizing::new([0u8; MAX_KEY_LEN]);
        let head = prefix.map_or(0, |p| p.len() + 1);
        if let Some(p) = prefix {
            buf[..p.len()].copy_from_slice(p.as_bytes());
            buf[p.len()] = b'_';
        }
        let len = head + KEY_LEN;
        let hashed = len - CHECKSUM_LEN;
        buf[head..head + 2].copy_from_slice(key_type.tag().as_bytes());
        buf[head + 2] = b'_';
        buf[head + 3..head + 7].copy_from_slice(environment.as_str().as_bytes());
        buf[head + 7] = b'_';
        let fits = base62::encode_be(random, &mut buf[head + TAG_LEN..hashed]);
        debug_assert!(fits, "62^43 > 2^256");
        let mut checksum = [0u8; CHECKSUM_LEN];
        base62::encode_u32(crc32fast::hash(&buf[..hashed]), &mut checksum);
        buf[hashed..len].copy_from_slice(&checksum);
        let mut secret = Zeroizing::new(String::with_capacity(len));
        // Every byte written above is ASCII.
        secret.extend(buf[..len].iter().map(|&b| char::from(b)));
        Self {
            secret,
            prefix,
            key_type,
            environment,
        }
    }

    pub fn prefix(&self) -> Option<KeyPrefix> {
        self.prefix
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn hash(&self) -> KeyHash {
        hash_of(&self.secret.as_bytes()[..self.secret.len() - CHECKSUM_LEN])
    }

    /// The prefixes and last four characters, e.g. `sk_live_…a1B2` or
    /// `acme_sk_live_…a1B2`: enough for a person to recognise a key, useless
    /// to an attacker (they are checksum digits).
    pub fn hint(&self) -> String {
        let tag_end = self.prefix.map_or(0, |p| p.len() + 1) + TAG_LEN;
        let len = self.secret.len();
        format!("{}…{}", &self.secret[..tag_end], &self.secret[len - 4..])
    }

    /// The whole key. Call it only to hand the key to its owner, once.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("prefix", &self.prefix)
            .field("key_type", &self.key_type)
            .field("environment", &self.environment)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// Fills `buf` from the OS CSPRNG (getrandom), never from a userspace PRNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), RandomnessError> {
    use rand::TryRng;
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(|_| RandomnessError)
}

#[cfg(test)]
mod tests {
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
}
