use std::{fmt, str::FromStr};

/// A key's public identifier: `key_` and a lowercase ULID (26 characters).
///
/// Time-ordered, so listing by id lists by creation. Safe to log and to show.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

const PREFIX: &str = "key_";

#[derive(Debug, thiserror::Error)]
#[error("must be `key_` followed by 26 lowercase base32 characters")]
pub struct KeyIdError;

impl KeyId {
    pub fn generate() -> Self {
        Self(format!(
            "{PREFIX}{}",
            ulid::Ulid::new().to_string().to_lowercase()
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix(PREFIX).ok_or(KeyIdError)?;
        let canonical = rest.len() == 26
            && rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        match ulid::Ulid::from_string(rest) {
            Ok(_) if canonical => Ok(Self(s.to_owned())),
            _ => Err(KeyIdError),
        }
    }
}

impl KeyId {
    /// The id's 128-bit ULID: 16 bytes where the string takes 30 and a heap
    /// allocation. The in-memory index holds ids this way.
    pub fn pack(&self) -> PackedKeyId {
        let ulid = ulid::Ulid::from_string(&self.0[PREFIX.len()..])
            .expect("a KeyId always holds a valid ULID");
        PackedKeyId(ulid.to_bytes())
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// A [`KeyId`] packed into its ULID's 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PackedKeyId([u8; 16]);

impl PackedKeyId {
    pub fn unpack(self) -> KeyId {
        let mut buf = [0u8; ulid::ULID_LEN];
        let text = ulid::Ulid::from_bytes(self.0).array_to_str(&mut buf);
        text.make_ascii_lowercase();
        let mut s = String::with_capacity(PREFIX.len() + ulid::ULID_LEN);
        s.push_str(PREFIX);
        s.push_str(text);
        KeyId(s)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = KeyId::generate();
        let parsed: KeyId = a.as_str().parse().expect("generated id parses");
        assert_eq!(parsed, a);
        assert!(a.as_str().len() == 30);
    }

    #[test]
    fn packed_ids_unpack_to_the_same_id() {
        for _ in 0..100 {
            let a = KeyId::generate();
            assert_eq!(a.pack().unpack(), a);
        }
        let fixed: KeyId = "key_01hv0000000000000000000000".parse().expect("id");
        assert_eq!(
            fixed.pack().unpack().as_str(),
            "key_01hv0000000000000000000000"
        );
    }

    #[test]
    fn malformed_ids_are_rejected() {
        for bad in [
            "",
            "key_",
            "key_123",
            "KEY_01hv0000000000000000000000",
            "key_01HV0000000000000000000000",
            "key_01hv000000000000000000000!",
            "sk_live_x",
        ] {
            assert!(bad.parse::<KeyId>().is_err(), "{bad}");
        }
    }
}
