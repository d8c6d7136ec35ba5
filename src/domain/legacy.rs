//! Legacy key formats: the shapes of keys a platform made before keysmith,
//! which a keyspace accepts besides its own.
//!
//! A format is a literal prefix and a body: an alphabet and a length range.
//! There is no checksum. A presented string of a declared shape is hashed
//! whole (SHA-256 of every byte) and looked up like any key; matching is a
//! prefix compare, a length compare and one table lookup a byte, never a
//! regular expression.

use std::fmt;

use serde_json::json;

use super::{KeyHash, Timestamp};

/// Most legacy formats a keyspace may declare.
pub const MAX_FORMATS: usize = 8;
/// Longest literal prefix.
pub const MAX_FORMAT_PREFIX: usize = 32;
/// Longest body a format may allow.
pub const MAX_BODY_LEN: usize = 256;
/// Fewest bits a format's shortest body must carry: shorter keys are
/// guessed, not leaked.
pub const MIN_BODY_BITS: f64 = 64.0;

/// A body's alphabet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Alphabet {
    /// `0-9a-f`, either case.
    Hex,
    /// `0-9A-Za-z`.
    Base62,
    /// `A-Za-z0-9-_`.
    Base64Url,
    /// An explicit set of printable ASCII characters.
    Set(String),
}

impl Alphabet {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hex => "hex",
            Self::Base62 => "base62",
            Self::Base64Url => "base64url",
            Self::Set(_) => "set",
        }
    }

    /// Which bytes the alphabet holds, as a 128-bit set over ASCII.
    fn bits(&self) -> [u64; 2] {
        let mut bits = [0u64; 2];
        let mut add = |b: u8| bits[usize::from(b >> 6)] |= 1 << (b & 63);
        let ranges: &[(u8, u8)] = match self {
            Self::Hex => &[(b'0', b'9'), (b'a', b'f'), (b'A', b'F')],
            Self::Base62 => &[(b'0', b'9'), (b'a', b'z'), (b'A', b'Z')],
            Self::Base64Url => &[
                (b'0', b'9'),
                (b'a', b'z'),
                (b'A', b'Z'),
                (b'-', b'-'),
                (b'_', b'_'),
            ],
            Self::Set(s) => {
                s.bytes().for_each(&mut add);
                return bits;
            }
        };
        for &(lo, hi) in ranges {
            (lo..=hi).for_each(&mut add);
        }
        bits
    }

    /// How many distinct symbols a body draws from (hex counts 16: its
    /// case is a spelling, not information).
    fn symbols(&self) -> u32 {
        match self {
            Self::Hex => 16,
            Self::Base62 => 62,
            Self::Base64Url => 64,
            Self::Set(s) => s.len() as u32,
        }
    }
}

/// One legacy format of a keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyFormat {
    /// Names the format in counters and errors: 1 to 32 of `[a-z0-9_-]`.
    pub name: String,
    /// Literal, case-sensitive; may be empty.
    pub prefix: String,
    pub alphabet: Alphabet,
    /// The body's length range, in characters, inclusive.
    pub min_len: usize,
    pub max_len: usize,
    /// From then on, keys of this format are refused (`FORMAT_RETIRED`).
    pub retire_at: Option<Timestamp>,
}

/// Why a declared format is refused: the field (relative to the format)
/// and why.
#[derive(Debug, PartialEq, Eq)]
pub struct FormatViolation {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for FormatViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

fn violation(field: &'static str, reason: impl Into<String>) -> Result<(), FormatViolation> {
    Err(FormatViolation {
        field,
        reason: reason.into(),
    })
}

impl LegacyFormat {
    /// Checks the format on its own.
    pub fn check(&self) -> Result<(), FormatViolation> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 32
            || !n
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
        {
            return violation("name", "must be 1 to 32 of a-z, 0-9, `_` and `-`");
        }
        if self.prefix.len() > MAX_FORMAT_PREFIX
            || !self.prefix.bytes().all(|b| b.is_ascii_graphic())
        {
            return violation(
                "prefix",
                format!(
                    "must be at most {MAX_FORMAT_PREFIX} printable ASCII characters, no spaces"
                ),
            );
        }
        if let Alphabet::Set(s) = &self.alphabet {
            let mut seen = [0u64; 2];
            for b in s.bytes() {
                let (word, bit) = (usize::from(b >> 6), 1u64 << (b & 63));
                if !b.is_ascii_graphic() || seen[word & 1] & bit != 0 {
                    return violation(
                        "characters",
                        "must be distinct printable ASCII characters, no spaces",
                    );
                }
                seen[word & 1] |= bit;
            }
            if s.len() < 2 {
                return violation("characters", "must hold at least 2 characters");
            }
        }
        if self.min_len == 0 || self.min_len > self.max_len || self.max_len > MAX_BODY_LEN {
            return violation(
                "min_length",
                format!(
                    "must be at least 1, at most max_length, and max_length at most {MAX_BODY_LEN}"
                ),
            );
        }
        let bits = f64::from(self.alphabet.symbols()).log2() * self.min_len as f64;
        if bits < MIN_BODY_BITS {
            return violation(
                "min_length",
                format!(
                    "a body of {} {} characters carries {bits:.0} bits; at least {MIN_BODY_BITS} are needed",
                    self.min_len,
                    self.alphabet.name()
                ),
            );
        }
        Ok(())
    }

    /// Whether `key` has this format's shape. Allocation-free.
    pub fn matches(&self, key: &str) -> bool {
        Shape::of(self).matches(key.as_bytes())
    }

    pub fn retired(&self, now: Timestamp) -> bool {
        self.retire_at.is_some_and(|t| t <= now)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let characters = match &self.alphabet {
            Alphabet::Set(s) => Some(s.as_str()),
            _ => None,
        };
        json!({
            "name": self.name,
            "prefix": self.prefix,
            "alphabet": self.alphabet.name(),
            "characters": characters,
            "min_length": self.min_len,
            "max_length": self.max_len,
            "retire_at": self.retire_at.map(Timestamp::as_millis),
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let text = |f: &str| {
            v[f].as_str()
                .map(str::to_owned)
                .ok_or(format!("{f} is not text"))
        };
        let len = |f: &str| {
            v[f].as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or(format!("{f} is not a length"))
        };
        let alphabet = match v["alphabet"].as_str() {
            Some("hex") => Alphabet::Hex,
            Some("base62") => Alphabet::Base62,
            Some("base64url") => Alphabet::Base64Url,
            Some("set") => Alphabet::Set(text("characters")?),
            _ => return Err("alphabet is unknown".into()),
        };
        Ok(Self {
            name: text("name")?,
            prefix: text("prefix")?,
            alphabet,
            min_len: len("min_length")?,
            max_len: len("max_length")?,
            retire_at: v["retire_at"].as_i64().map(Timestamp::from_millis),
        })
    }
}

/// Checks a keyspace's formats together: each on its own, at most
/// [`MAX_FORMATS`], names distinct. The field is `[i].<field>`.
pub fn check_formats(formats: &[LegacyFormat]) -> Result<(), (usize, FormatViolation)> {
    if formats.len() > MAX_FORMATS {
        return Err((
            MAX_FORMATS,
            FormatViolation {
                field: "",
                reason: format!("at most {MAX_FORMATS} formats"),
            },
        ));
    }
    for (i, f) in formats.iter().enumerate() {
        f.check().map_err(|v| (i, v))?;
        if formats[..i].iter().any(|g| g.name == f.name) {
            return Err((
                i,
                FormatViolation {
                    field: "name",
                    reason: "names another format of the keyspace".into(),
                },
            ));
        }
    }
    Ok(())
}

/// A format as Verify matches it: the prefix, the length range and the
/// alphabet as a bit set.
#[derive(Clone, Debug)]
pub struct Shape {
    prefix: Box<[u8]>,
    min: usize,
    max: usize,
    bits: [u64; 2],
}

impl Shape {
    pub fn of(f: &LegacyFormat) -> Self {
        Self {
            prefix: f.prefix.as_bytes().into(),
            min: f.min_len,
            max: f.max_len,
            bits: f.alphabet.bits(),
        }
    }

    /// Whether `key` is the prefix and a body of the shape. A compare, a
    /// length check, and a bit test per byte.
    pub fn matches(&self, key: &[u8]) -> bool {
        let Some(body) = key.strip_prefix(&*self.prefix) else {
            return false;
        };
        (self.min..=self.max).contains(&body.len())
            && body
                .iter()
                .all(|&b| b < 128 && self.bits[usize::from(b >> 6)] & (1 << (b & 63)) != 0)
    }
}

/// The hash a legacy key is stored under: SHA-256 of the whole string.
pub fn hash_whole(key: &str) -> KeyHash {
    use sha2::{Digest, Sha256};
    KeyHash::from_bytes(Sha256::digest(key.as_bytes()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(prefix: &str, alphabet: Alphabet, min: usize, max: usize) -> LegacyFormat {
        LegacyFormat {
            name: "old".into(),
            prefix: prefix.into(),
            alphabet,
            min_len: min,
            max_len: max,
            retire_at: None,
        }
    }

    #[test]
    fn shapes_match_prefix_alphabet_and_length() {
        let f = format("sk_", Alphabet::Hex, 32, 40);
        assert!(f.matches(&format!("sk_{}", "a1B2".repeat(8))));
        assert!(f.matches(&format!("sk_{}", "0".repeat(40))));
        assert!(!f.matches(&format!("sk_{}", "0".repeat(31))), "too short");
        assert!(!f.matches(&format!("sk_{}", "0".repeat(41))), "too long");
        assert!(
            !f.matches(&format!("pk_{}", "0".repeat(32))),
            "another prefix"
        );
        assert!(!f.matches(&format!("sk_{}g", "0".repeat(31))), "not hex");
        assert!(!f.matches(&format!("sk_{}é", "0".repeat(31))), "not ASCII");
        let set = format("", Alphabet::Set("xyz!".into()), 40, 40);
        assert!(set.matches(&"x!z".repeat(14)[..40]));
        assert!(!set.matches(&"a".repeat(40)));
        let b64 = format("k.", Alphabet::Base64Url, 22, 22);
        assert!(b64.matches("k.abcdefghij-_KLMNOP0123"));
    }

    #[test]
    fn weak_or_malformed_formats_are_refused() {
        let fields = |f: LegacyFormat| f.check().map_err(|v| v.field);
        assert_eq!(fields(format("", Alphabet::Hex, 16, 16)), Ok(()));
        assert_eq!(fields(format("", Alphabet::Hex, 15, 16)), Err("min_length"));
        assert_eq!(fields(format("", Alphabet::Hex, 20, 16)), Err("min_length"));
        assert_eq!(
            fields(format("", Alphabet::Hex, 16, 300)),
            Err("min_length")
        );
        assert_eq!(fields(format("a b", Alphabet::Hex, 16, 16)), Err("prefix"));
        assert_eq!(
            fields(format("", Alphabet::Set("aa".into()), 64, 64)),
            Err("characters")
        );
        assert_eq!(
            fields(format("", Alphabet::Set("a".into()), 64, 64)),
            Err("characters")
        );
        assert_eq!(
            fields(format("", Alphabet::Set("ab".into()), 64, 64)),
            Ok(())
        );
        let mut bad = format("", Alphabet::Hex, 16, 16);
        bad.name = "Old".into();
        assert_eq!(fields(bad), Err("name"));
        let twice = [
            format("", Alphabet::Hex, 16, 16),
            format("x", Alphabet::Hex, 16, 16),
        ];
        assert_eq!(
            check_formats(&twice).map_err(|(i, v)| (i, v.field)),
            Err((1, "name"))
        );
    }

    #[test]
    fn formats_survive_json() {
        let mut f = format("live_", Alphabet::Set("abc123".into()), 30, 40);
        f.retire_at = Some(Timestamp::from_millis(1_800_000_000_000));
        assert_eq!(LegacyFormat::from_json(&f.to_json()), Ok(f));
    }
}
