//! The key format: `{sk|pk}_{live|test}_<body><checksum>`.
//!
//! - body: 32 bytes from the OS CSPRNG, as 43 base62 digits;
//! - checksum: CRC32 of everything before it, as 6 base62 digits.
//!
//! 57 characters in all. The hash covers the 51 characters before the
//! checksum: the checksum is a function of them and adds no entropy, and 51
//! bytes fit one SHA-256 block.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Environment, KeyHash, KeyType, base62};

const PREFIX_LEN: usize = 8; // "sk_live_"
const BODY_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Length of every keysmith key.
pub const KEY_LEN: usize = PREFIX_LEN + BODY_LEN + CHECKSUM_LEN;
const HASHED_LEN: usize = PREFIX_LEN + BODY_LEN;

/// Why a presented string is not a keysmith key. Each variant is decided
/// before any hashing or lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("key is empty")]
    Empty,
    #[error("key must be {KEY_LEN} characters")]
    Length,
    #[error("key prefix must be sk_live_, sk_test_, pk_live_ or pk_test_")]
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

/// What a well-formed presented key reveals: its type, environment and hash.
/// Holds nothing secret, so the caller may drop the key string at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PresentedKey {
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
    if bytes.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    let (key_type, environment) = match &bytes[..PREFIX_LEN] {
        b"sk_live_" => (KeyType::Secret, Environment::Live),
        b"sk_test_" => (KeyType::Secret, Environment::Test),
        b"pk_live_" => (KeyType::Publishable, Environment::Live),
        b"pk_test_" => (KeyType::Publishable, Environment::Test),
        _ => return Err(KeyFormatError::Prefix),
    };
    if !bytes[PREFIX_LEN..].iter().all(u8::is_ascii_alphanumeric) {
        return Err(KeyFormatError::Charset);
    }
    let (hashed, checksum) = bytes.split_at(HASHED_LEN);
    let checksum: &[u8; CHECKSUM_LEN] = checksum.try_into().map_err(|_| KeyFormatError::Length)?;
    if base62::decode_u32(checksum) != Some(crc32fast::hash(hashed)) {
        return Err(KeyFormatError::Checksum);
    }
    Ok(PresentedKey {
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
    key_type: KeyType,
    environment: Environment,
}

/// The OS random number generator failed; no key was made.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessError;

impl ApiKey {
    /// Mints a key from 32 bytes of the OS CSPRNG.
    pub fn generate(key_type: KeyType, environment: Environment) -> Result<Self, RandomnessError> {
        let mut random = Zeroizing::new([0u8; 32]);
        fill_random(random.as_mut())?;
        Ok(Self::from_random(key_type, environment, &random))
    }

    pub(super) fn from_random(
        key_type: KeyType,
        environment: Environment,
        random: &[u8; 32],
    ) -> Self {
        let mut buf = Zeroizing::new([0u8; KEY_LEN]);
        let prefix = format!("{}_{}_", key_type.tag(), environment.as_str());
        buf[..PREFIX_LEN].copy_from_slice(prefix.as_bytes());
        let fits = base62::encode_be(random, &mut buf[PREFIX_LEN..HASHED_LEN]);
        debug_assert!(fits, "62^43 > 2^256");
        let mut checksum = [0u8; CHECKSUM_LEN];
        base62::encode_u32(crc32fast::hash(&buf[..HASHED_LEN]), &mut checksum);
        buf[HASHED_LEN..].copy_from_slice(&checksum);
        let mut secret = Zeroizing::new(String::with_capacity(KEY_LEN));
        // Every byte written above is ASCII.
        secret.extend(buf.iter().map(|&b| char::from(b)));
        Self {
            secret,
            key_type,
            environment,
        }
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn hash(&self) -> KeyHash {
        hash_of(&self.secret.as_bytes()[..HASHED_LEN])
    }

    /// The prefix and last four characters, e.g. `sk_live_…a1B2`: enough for a
    /// person to recognise a key, useless to an attacker (they are checksum digits).
    pub fn hint(&self) -> String {
        format!(
            "{}…{}",
            &self.secret[..PREFIX_LEN],
            &self.secret[KEY_LEN - 4..]
        )
    }

    /// The whole key. Call it only to hand the key to its owner, once.
    pub fn expose_secret(&self) -> &str {
        &self.secret
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
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
        let wrong_prefix = format!("xk_test_{}", &s[PREFIX_LEN..]);
        assert_eq!(parse(&wrong_prefix), Err(KeyFormatError::Prefix));
        let bad_char = format!("{}!{}", &s[..20], &s[21..]);
        assert_eq!(parse(&bad_char), Err(KeyFormatError::Charset));
        let mut body = s.as_bytes().to_vec();
        body[30] = if body[30] == b'a' { b'b' } else { b'a' };
        let swapped = String::from_utf8(body).expect("ascii");
        assert_eq!(parse(&swapped), Err(KeyFormatError::Checksum));
        // Multi-byte UTF-8 of the right byte length is a charset error, not a panic.
        let unicode = format!("sk_test_{}é", &s[PREFIX_LEN..KEY_LEN - 2]);
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
        assert!(!printed.contains(&k.expose_secret()[PREFIX_LEN..]));
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn known_vector_is_stable() {
        // Pins the format: changing encoding or checksum breaks every issued key.
        let k = ApiKey::from_random(KeyType::Secret, Environment::Live, &[0u8; 32]);
        let expected_body = "0".repeat(BODY_LEN);
        assert_eq!(
            &k.expose_secret()[..HASHED_LEN],
            format!("sk_live_{expected_body}")
        );
        let crc = crc32fast::hash(format!("sk_live_{expected_body}").as_bytes());
        assert_eq!(
            base62::decode_u32(
                &k.expose_secret().as_bytes()[HASHED_LEN..]
                    .try_into()
                    .unwrap()
            ),
            Some(crc)
        );
        assert!(parse(k.expose_secret()).is_ok());
    }
}
