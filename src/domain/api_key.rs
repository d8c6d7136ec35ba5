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
    random::{RandomnessError, fill_random},
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

#[cfg(test)]
mod tests;
