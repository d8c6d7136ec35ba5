//! Keyspaces: a namespace of keys with its own key prefix, defaults for the
//! keys created in it, and an optional scope catalogue.
//!
//! Every key belongs to exactly one keyspace. The `default` keyspace
//! (`ks_default`) has no prefix: its keys keep the bare `sk_`/`pk_` form, as
//! keys made before keyspaces existed do.

use std::{fmt, str::FromStr, time::Duration};

use serde_json::json;

use super::{Environment, FieldError, KeyRotation, Restrictions, Scope, base62};

/// Shortest and longest key prefix.
pub const MIN_PREFIX_LEN: usize = 2;
pub const MAX_PREFIX_LEN: usize = 16;
/// Longest keyspace id accepted (`ks_` and up to 32 base62 digits).
pub const MAX_KEYSPACE_ID_LEN: usize = 35;
pub const MAX_KEYSPACE_NAME_LEN: usize = 200;
/// Most scopes a keyspace's catalogue may declare.
pub const MAX_CATALOGUE: usize = 500;

const ID_PREFIX: &str = "ks_";
const GENERATED_DIGITS: usize = 16;

/// A keyspace's public identifier: `ks_` and base62 digits, e.g.
/// `ks_4fG7…`, or `ks_default`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyspaceId(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be `ks_` followed by 1 to 32 characters of 0-9, A-Z, a-z")]
pub struct KeyspaceIdError;

impl KeyspaceId {
    /// The id of the keyspace every key made before keyspaces belongs to.
    pub const DEFAULT_STR: &'static str = "ks_default";

    pub fn default_id() -> Self {
        Self(Self::DEFAULT_STR.to_owned())
    }

    /// A fresh random id from the OS CSPRNG.
    pub fn generate() -> Result<Self, super::random::RandomnessError> {
        let mut random = [0u8; 11];
        super::random::fill_random(&mut random)?;
        let mut digits = [0u8; GENERATED_DIGITS];
        let fits = base62::encode_be(&random, &mut digits);
        debug_assert!(fits, "62^16 > 2^88");
        let digits: String = digits.iter().map(|&b| char::from(b)).collect();
        Ok(Self(format!("{ID_PREFIX}{digits}")))
    }

    /// Checks an id's form without allocating.
    pub fn check(s: &str) -> Result<(), KeyspaceIdError> {
        let rest = s.strip_prefix(ID_PREFIX).ok_or(KeyspaceIdError)?;
        let ok = !rest.is_empty()
            && s.len() <= MAX_KEYSPACE_ID_LEN
            && rest.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok { Ok(()) } else { Err(KeyspaceIdError) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT_STR
    }
}

impl Default for KeyspaceId {
    fn default() -> Self {
        Self::default_id()
    }
}

impl FromStr for KeyspaceId {
    type Err = KeyspaceIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::check(s)?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyspaceId({})", self.0)
    }
}

/// A keyspace's key prefix: 2 to 16 of `[a-z0-9]`, held inline (no heap),
/// so a parsed key can carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyPrefix {
    bytes: [u8; MAX_PREFIX_LEN],
    len: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must be {MIN_PREFIX_LEN} to {MAX_PREFIX_LEN} characters")]
    Length,
    #[error("must be lowercase a-z and 0-9 only")]
    Charset,
}

impl KeyPrefix {
    /// Parses a prefix without allocating.
    #[inline]
    pub fn parse(s: &str) -> Result<Self, PrefixError> {
        Self::from_bytes(s.as_bytes())
    }

    #[inline]
    pub fn from_bytes(b: &[u8]) -> Result<Self, PrefixError> {
        if !(MIN_PREFIX_LEN..=MAX_PREFIX_LEN).contains(&b.len()) {
            return Err(PrefixError::Length);
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(PrefixError::Charset);
        }
        let mut bytes = [0u8; MAX_PREFIX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Self {
            bytes,
            len: b.len() as u8,
        })
    }

    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPrefix({})", self.as_str())
    }
}

/// A human label for a keyspace: 1 to 200 bytes, no control characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyspaceName(String);

impl KeyspaceName {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.trim().is_empty() {
            return Err(FieldError::Empty);
        }
        if s.len() > MAX_KEYSPACE_NAME_LEN {
            return Err(FieldError::TooLong(MAX_KEYSPACE_NAME_LEN));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::Control);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a key created in a keyspace gets for each field its CreateKey
/// leaves unset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyspaceDefaults {
    pub environment: Option<Environment>,
    /// For a CreateKey with no scopes.
    pub scopes: Vec<Scope>,
    pub rotation: Option<KeyRotation>,
    /// RotateKey's grace period when the request names none.
    pub grace: Option<Duration>,
    /// A relative expiry for a CreateKey that asks for none.
    pub ttl: Option<Duration>,
    /// The longest life a key may be given at creation (and by UpdateKey's
    /// expiry, counted from the update). A key asking for no expiry gets
    /// `ttl`, or this.
    pub max_lifetime: Option<Duration>,
    /// For a CreateKey with no restrictions.
    pub restrictions: Restrictions,
}

/// Why a keyspace's settings are refused: the field (relative to the
/// keyspace) and the reason.
#[derive(Debug, PartialEq, Eq)]
pub struct KeyspaceViolation {
    pub field: String,
    pub reason: String,
}

impl KeyspaceDefaults {
    pub fn to_json(&self) -> serde_json::Value {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        json!({
            "environment": self.environment.map(Environment::as_str),
            "scopes": self.scopes.iter().map(Scope::as_str).collect::<Vec<_>>(),
            "rotation": self.rotation.map(KeyRotation::to_json),
            "grace_ms": ms(self.grace),
            "ttl_ms": ms(self.ttl),
            "max_lifetime_ms": ms(self.max_lifetime),
            "restrictions": self.restrictions.to_json(),
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let ms = |field: &str| -> Result<Option<Duration>, String> {
            match &v[field] {
                serde_json::Value::Null => Ok(None),
                n => n
                    .as_u64()
                    .map(|m| Some(Duration::from_millis(m)))
                    .ok_or_else(|| format!("{field} is not a number")),
            }
        };
        let environment = match &v["environment"] {
            serde_json::Value::Null => None,
            e => Some(
                e.as_str()
                    .ok_or("environment is not text")?
                    .parse()
                    .map_err(|e: super::UnknownVariant| e.to_string())?,
            ),
        };
        let scopes = match &v["scopes"] {
            serde_json::Value::Null => Vec::new(),
            s => scopes_from_json(s)?,
        };
        let rotation = match &v["rotation"] {
            serde_json::Value::Null => None,
            r => Some(KeyRotation::from_json(r)?),
        };
        let restrictions = match &v["restrictions"] {
            serde_json::Value::Null => Restrictions::default(),
            r => Restrictions::from_json(r)?,
        };
        Ok(Self {
            environment,
            scopes,
            rotation,
            grace: ms("grace_ms")?,
            ttl: ms("ttl_ms")?,
            max_lifetime: ms("max_lifetime_ms")?,
            restrictions,
        })
    }
}

pub(crate) fn scopes_from_json(v: &serde_json::Value) -> Result<Vec<Scope>, String> {
    v.as_array()
        .ok_or("scopes is not a list")?
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| "scope is not text".to_owned())
                .and_then(|s| Scope::parse(s).map_err(|e| e.to_string()))
        })
        .collect()
}

/// A keyspace as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyspace {
    pub id: KeyspaceId,
    pub name: KeyspaceName,
    /// `None` only for the default keyspace, whose keys are bare.
    pub prefix: Option<KeyPrefix>,
    pub defaults: KeyspaceDefaults,
    /// The declared scope catalogue: when not empty, the scopes of the
    /// keys in this keyspace (and its roles) must be drawn from it.
    pub scopes: Vec<Scope>,
    /// What happens to a key of this keyspace found leaked.
    pub leak: super::leak::LeakResponse,
    /// Key formats made before keysmith that Verify also accepts here.
    pub legacy: Vec<super::legacy::LegacyFormat>,
    pub created_at: super::Timestamp,
    pub updated_at: super::Timestamp,
    /// Starts at 1; every update adds 1.
    pub version: i64,
}

impl Keyspace {
    /// The regular expression that finds this keyspace's keys in text, for
    /// secret scanners.
    pub fn scanner_regex(&self) -> String {
        scanner_regex(self.prefix.as_ref())
    }

    /// Whether the catalogue admits `scope` on a key: always when the
    /// catalogue is empty; otherwise when a declared scope is it or grants it.
    pub fn admits_scope(&self, scope: &Scope) -> bool {
        catalogue_admits(&self.scopes, scope)
    }

    /// The first of `scopes` the catalogue does not admit, by position.
    pub fn first_undeclared<'a>(&self, scopes: &'a [Scope]) -> Option<(usize, &'a Scope)> {
        first_undeclared(&self.scopes, scopes)
    }

    /// Checks the defaults against each other, the catalogue and the key
    /// rules (`field` paths are relative to the keyspace message).
    pub fn check(&self) -> Result<(), KeyspaceViolation> {
        let bad = |field: String, reason: &str| {
            Err(KeyspaceViolation {
                field,
                reason: reason.to_owned(),
            })
        };
        if let Some((i, _)) = self.first_undeclared(&self.defaults.scopes) {
            return bad(
                format!("defaults.scopes[{i}]"),
                "is not in the keyspace's scope catalogue",
            );
        }
        let d = &self.defaults;
        if d.ttl.is_some_and(|t| t.is_zero()) {
            return bad("defaults.ttl".into(), "must be positive");
        }
        if d.max_lifetime.is_some_and(|t| t.is_zero()) {
            return bad("defaults.max_lifetime".into(), "must be positive");
        }
        if let (Some(ttl), Some(max)) = (d.ttl, d.max_lifetime)
            && ttl > max
        {
            return bad(
                "defaults.ttl".into(),
                "must not exceed defaults.max_lifetime",
            );
        }
        if let Err((i, v)) = super::legacy::check_formats(&self.legacy) {
            let field = match v.field {
                "" => "legacy_formats".to_owned(),
                f => format!("legacy_formats[{i}].{f}"),
            };
            return bad(field, &v.reason);
        }
        Ok(())
    }
}

/// The scanner regex of keys with `prefix` (bare keys when `None`).
pub fn scanner_regex(prefix: Option<&KeyPrefix>) -> String {
    let tail = r"(sk|pk)_(live|test)_[0-9A-Za-z]{49}\b";
    match prefix {
        None => format!(r"\b{tail}"),
        Some(p) => format!(r"\b{p}_{tail}"),
    }
}

#[cfg(test)]
mod tests;

/// Whether scope catalogue `catalogue` admits `scope` on a key or a role:
/// always when it is empty; otherwise when a declared scope is it or grants
/// it.
pub fn catalogue_admits(catalogue: &[Scope], scope: &Scope) -> bool {
    catalogue.is_empty()
        || catalogue
            .iter()
            .any(|c| c == scope || c.grants(scope.as_str()))
}

/// The first of `scopes` that `catalogue` does not admit, by position.
pub fn first_undeclared<'a>(
    catalogue: &[Scope],
    scopes: &'a [Scope],
) -> Option<(usize, &'a Scope)> {
    scopes
        .iter()
        .enumerate()
        .find(|(_, s)| !catalogue_admits(catalogue, s))
}
