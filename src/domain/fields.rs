//! Small validated text fields of a key, and the limits on them.

use std::collections::BTreeMap;

pub const MAX_OWNER_LEN: usize = 128;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_REASON_LEN: usize = 500;
pub const MAX_SCOPES: usize = 100;
pub const MAX_METADATA_ENTRIES: usize = 50;
pub const MAX_METADATA_KEY_LEN: usize = 64;
pub const MAX_METADATA_VALUE_LEN: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
pub const MAX_REQUEST_ID_LEN: usize = 128;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} bytes")]
    TooLong(usize),
    #[error("must not contain control characters")]
    Control,
    #[error("must be ASCII letters, digits, `_`, `-`, `.`, `:` or `@`")]
    Charset,
    #[error("has more than {0} entries")]
    TooMany(usize),
}

pub(crate) fn no_control(s: &str) -> Result<(), FieldError> {
    if s.chars().any(char::is_control) {
        Err(FieldError::Control)
    } else {
        Ok(())
    }
}

pub(crate) fn max_len(s: &str, max: usize) -> Result<(), FieldError> {
    if s.len() > max {
        Err(FieldError::TooLong(max))
    } else {
        Ok(())
    }
}

/// Identifier-like text: owner ids and request ids.
fn identifier(s: &str, max: usize) -> Result<(), FieldError> {
    if s.is_empty() {
        return Err(FieldError::Empty);
    }
    max_len(s, max)?;
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    if ok { Ok(()) } else { Err(FieldError::Charset) }
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, FieldError> {
                let check: fn(&str) -> Result<(), FieldError> = $check;
                check(s)?;
                Ok(Self(s.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// The account, team or service that holds a key.
    OwnerId,
    |s| identifier(s, MAX_OWNER_LEN)
);
text_newtype!(
    /// A client-chosen idempotency key for CreateKey (AIP-155).
    RequestId,
    |s| identifier(s, MAX_REQUEST_ID_LEN)
);
text_newtype!(
    /// A human label for a key; may be empty.
    KeyName,
    |s| {
        max_len(s, MAX_NAME_LEN)?;
        no_control(s)
    }
);
text_newtype!(
    /// Why a key was revoked or disabled; may be empty.
    Reason,
    |s| {
        max_len(s, MAX_REASON_LEN)?;
        no_control(s)
    }
);

/// Free-form string pairs a caller attaches to a key, returned by Verify.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata(BTreeMap<String, String>);

/// A metadata problem, naming the offending key when there is one.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{source}", key.as_ref().map(|k| format!("entry `{k}` ")).unwrap_or_default())]
pub struct MetadataError {
    pub key: Option<String>,
    pub source: FieldError,
}

impl Metadata {
    pub const EMPTY: Metadata = Metadata(BTreeMap::new());

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn parse(
        entries: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, MetadataError> {
        let whole = |source| MetadataError { key: None, source };
        let mut map = BTreeMap::new();
        let mut bytes = 0usize;
        for (k, v) in entries {
            if map.len() == MAX_METADATA_ENTRIES {
                return Err(whole(FieldError::TooMany(MAX_METADATA_ENTRIES)));
            }
            let name_err = identifier(&k, MAX_METADATA_KEY_LEN).err();
            let value_err = max_len(&v, MAX_METADATA_VALUE_LEN)
                .and_then(|()| no_control(&v))
                .err();
            if let Some(source) = name_err.or(value_err) {
                let key = k.chars().take(MAX_METADATA_KEY_LEN).collect();
                return Err(MetadataError {
                    key: Some(key),
                    source,
                });
            }
            bytes += k.len() + v.len();
            if bytes > MAX_METADATA_BYTES {
                return Err(whole(FieldError::TooLong(MAX_METADATA_BYTES)));
            }
            map.insert(k, v);
        }
        Ok(Self(map))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// Rebuilds metadata read back from the store, which only holds valid values.
    pub(crate) fn from_trusted(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_ids_are_identifier_like() {
        assert!(OwnerId::parse("acct_123").is_ok());
        assert!(OwnerId::parse("team:payments@corp").is_ok());
        assert_eq!(OwnerId::parse(""), Err(FieldError::Empty));
        assert_eq!(OwnerId::parse("a b"), Err(FieldError::Charset));
        assert_eq!(
            OwnerId::parse("x'; DROP TABLE keys; --"),
            Err(FieldError::Charset)
        );
        assert_eq!(
            OwnerId::parse(&"a".repeat(129)),
            Err(FieldError::TooLong(128))
        );
    }

    #[test]
    fn names_allow_text_but_not_control_characters() {
        assert!(KeyName::parse("CI deploy key — prod").is_ok());
        assert!(KeyName::parse("").is_ok());
        assert_eq!(KeyName::parse("a\nb"), Err(FieldError::Control));
    }

    #[test]
    fn metadata_limits_name_the_entry() {
        let big = vec![("k".to_owned(), "v".repeat(2000))];
        let err = Metadata::parse(big).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("k"));
        let many = (0..51).map(|i| (format!("k{i}"), String::new()));
        assert_eq!(
            Metadata::parse(many).unwrap_err().source,
            FieldError::TooMany(50)
        );
        let total = (0..10).map(|i| (format!("k{i}"), "v".repeat(1000)));
        assert_eq!(
            Metadata::parse(total).unwrap_err().source,
            FieldError::TooLong(8192)
        );
    }
}
