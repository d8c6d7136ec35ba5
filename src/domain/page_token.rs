//! Page tokens: where a list continues, sealed to the filter it was issued
//! for, so a client can neither forge a position nor page one owner's list
//! with a token from another's.

use std::{fmt, sync::Arc};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::random::{RandomnessError, fill_random};

/// Longest page token accepted; longer input is refused before any work.
pub const MAX_PAGE_TOKEN_LEN: usize = 512;

/// Bytes of HMAC-SHA256 kept in a token: 128 bits, far beyond guessing.
const TAG_LEN: usize = 16;

/// The key that seals page tokens. There is one per installation, stored in
/// the database, so a token issued by one replica pages on every other.
#[derive(Clone)]
pub struct PageTokens {
    key: Arc<Zeroizing<[u8; 32]>>,
}

/// A token that is malformed, tampered with, too long, or sealed for
/// another list or filter: the same answer for all, as the MAC cannot tell
/// them apart.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("was not issued for this list and filter")]
pub struct PageTokenError;

impl PageTokens {
    /// A key for an installation that has none yet, from the OS CSPRNG.
    /// The store keeps the first one stored; every replica then uses it.
    pub fn fresh_key() -> Result<Zeroizing<[u8; 32]>, RandomnessError> {
        let mut key = Zeroizing::new([0; 32]);
        fill_random(key.as_mut_slice())?;
        Ok(key)
    }

    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: Arc::new(Zeroizing::new(key)),
        }
    }

    /// A token for `position` in the list whose canonical filter is `filter`.
    pub fn seal(&self, filter: &str, position: &str) -> String {
        let tag = self.mac(filter, position).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(TAG_LEN + position.len());
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        bytes.extend_from_slice(position.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The position `token` holds, if it was sealed for `filter`; `None` for
    /// the empty token, which starts the list.
    pub fn open(&self, token: &str, filter: &str) -> Result<Option<String>, PageTokenError> {
        if token.is_empty() {
            return Ok(None);
        }
        if token.len() > MAX_PAGE_TOKEN_LEN {
            return Err(PageTokenError);
        }
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| PageTokenError)?;
        if bytes.len() <= TAG_LEN {
            return Err(PageTokenError);
        }
        let (tag, position) = bytes.split_at(TAG_LEN);
        let position = std::str::from_utf8(position).map_err(|_| PageTokenError)?;
        self.mac(filter, position)
            .verify_truncated_left(tag)
            .map_err(|_| PageTokenError)?;
        Ok(Some(position.to_owned()))
    }

    /// HMAC over the filter and the position, NUL between them: the filter
    /// is JSON, which holds no raw NUL, so no two pairs give the same input.
    fn mac(&self, filter: &str, position: &str) -> hmac::Hmac<Sha256> {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(filter.as_bytes());
        mac.update(&[0]);
        mac.update(position.as_bytes());
        mac
    }
}

impl fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageTokens(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(k: u8) -> PageTokens {
        PageTokens::new([k; 32])
    }

    #[test]
    fn a_token_opens_only_under_its_filter_and_key() {
        let t = tokens(1).seal(r#"["keys","alice"]"#, "0:key_1");
        assert_eq!(
            tokens(1).open(&t, r#"["keys","alice"]"#),
            Ok(Some("0:key_1".into()))
        );
        assert_eq!(tokens(1).open(&t, r#"["keys","bob"]"#), Err(PageTokenError));
        assert_eq!(
            tokens(2).open(&t, r#"["keys","alice"]"#),
            Err(PageTokenError)
        );
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let filter = r#"["audit",null]"#;
        let t = tokens(1).seal(filter, "42");
        let bytes = URL_SAFE_NO_PAD.decode(&t).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            let forged = URL_SAFE_NO_PAD.encode(&b);
            assert_eq!(tokens(1).open(&forged, filter), Err(PageTokenError), "{i}");
        }
    }

    #[test]
    fn empty_starts_and_junk_is_refused() {
        let filter = "[]";
        assert_eq!(tokens(1).open("", filter), Ok(None));
        for junk in ["garbage!", "AAAA", &"A".repeat(MAX_PAGE_TOKEN_LEN + 1)] {
            assert_eq!(tokens(1).open(junk, filter), Err(PageTokenError), "{junk}");
        }
    }
}
