//! Admin tokens: `ksa_` and 43 base62 digits of OS randomness.
//!
//! Like keys, only their SHA-256 is stored. The token id (`adm_…`) names the
//! token in audit events.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{
    api_key::{RandomnessError, fill_random},
    base62,
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
    format!("adm_{}", ulid::Ulid::new().to_string().to_lowercase())
}
