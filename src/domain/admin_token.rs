//! Admin tokens: `ksa_` and 43 base62 digits of OS randomness.
//!
//! Like keys, only their SHA-256 is stored. The token id (`adm_…`) names the
//! token in audit events.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    KeyName, Reason, Timestamp, TokenGrant, base62,
    random::{RandomnessError, fill_random},
};

const PREFIX: &str = "ksa_";
const BODY_LEN: usize = 43;

/// A freshly minted admin token. Not printable; zeroed on drop.
pub struct AdminToken(Zeroizing<String>);

impl AdminToken {
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut random = Zeroizing::new([0u8; 32]);
        fill_random(random.as_mut())?;
        let mut body = Zeroizing::new([0u8; BODY_LEN]);
        base62::encode_be(random.as_ref(), body.as_mut());
        let mut s = Zeroizing::new(String::with_capacity(PREFIX.len() + BODY_LEN));
        s.push_str(PREFIX);
        s.extend(body.iter().map(|&b| char::from(b)));
        Ok(Self(s))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> [u8; 32] {
        hash_presented(&self.0)
    }
}

/// Whether `token` has the shape of an admin token (`ksa_` and 43 base62
/// characters). Depends only on the presented string, so it leaks nothing
/// about stored tokens; a token of the wrong shape is refused without a
/// database lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == PREFIX.len() + BODY_LEN
        && token.starts_with(PREFIX)
        && token.as_bytes()[PREFIX.len()..]
            .iter()
            .all(u8::is_ascii_alphanumeric)
}

/// Hashes a presented bearer token for lookup. Any string hashes; a wrong one
/// simply matches nothing.
pub fn hash_presented(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken([redacted])")
    }
}

/// An admin token's public id, `adm_` and a lowercase ULID.
pub fn new_token_id() -> String {
    TokenId::generate().0
}

/// An admin token's public id: `adm_` and a lowercase ULID. Safe to log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be `adm_` and 26 characters of a lowercase ULID")]
pub struct TokenIdError;

impl TokenId {
    pub fn generate() -> Self {
        Self(format!(
            "adm_{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
    }

    pub fn parse(s: &str) -> Result<Self, TokenIdError> {
        let body = s.strip_prefix("adm_").ok_or(TokenIdError)?;
        let ok = body.len() == 26
            && body
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
            && ulid::Ulid::from_string(body).is_ok();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TokenIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The state of a token at a given moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenState {
    Active,
    Expired,
    Revoked,
}

/// An admin token as the admin API shows it. Its secret is never part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTokenRecord {
    pub id: TokenId,
    pub name: KeyName,
    pub grant: TokenGrant,
    pub created_at: Timestamp,
    /// The token that minted it (`adm_…`), or the system actor
    /// (`system:bootstrap`, `system:cli`); `None` for tokens minted before
    /// this was recorded.
    pub created_by: Option<String>,
    /// As of the last flush of recorded uses (see `auth::tokens`).
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_reason: Option<Reason>,
}

impl AdminTokenRecord {
    pub fn state(&self, now: Timestamp) -> TokenState {
        if self.revoked_at.is_some() {
            TokenState::Revoked
        } else if self.grant.is_live(now) {
            TokenState::Active
        } else {
            TokenState::Expired
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_parse_only_their_own_shape() {
        let id = TokenId::generate();
        assert_eq!(TokenId::parse(id.as_str()), Ok(id.clone()));
        for bad in [
            "",
            "adm_",
            "key_01m8g0zgfjs3a7rhn3909wtwsb",
            "adm_01M8G0ZGFJS3A7RHN3909WTWSB",
            "adm_01m8g0zgfjs3a7rhn3909wtws",
            "adm_01m8g0zgfjs3a7rhn3909wtwsb'--",
        ] {
            assert_eq!(TokenId::parse(bad), Err(TokenIdError), "{bad:?}");
        }
    }

    #[test]
    fn generated_tokens_are_well_formed_and_hash_as_presented() {
        let t = AdminToken::generate().expect("rng");
        assert!(well_formed(t.expose_secret()));
        assert_eq!(t.hash(), hash_presented(t.expose_secret()));
        assert!(!well_formed("ksa_short"));
        assert_eq!(format!("{t:?}"), "AdminToken([redacted])");
    }
}
