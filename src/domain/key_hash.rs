use std::fmt;

/// SHA-256 of a key's prefix and body: the only form in which keysmith
/// stores a key. Not secret, so it prints as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A hash written as text, as an import gives it: 64 hex digits, or
    /// base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse_text(s: &str) -> Option<Self> {
        use base64::Engine;
        let bytes = if s.len() == 64 {
            hex::decode(s).ok()
        } else {
            let t = s.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(t)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
                .ok()
        };
        Self::try_from(bytes?.as_slice()).ok()
    }
}

impl TryFrom<&[u8]> for KeyHash {
    type Error = std::array::TryFromSliceError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Ok(Self(bytes.try_into()?))
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyHash({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
