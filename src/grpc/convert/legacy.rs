//! Legacy key formats: proto to domain, and back.

use super::{pb, timestamp, to_timestamp};
use crate::{
    domain::legacy::{Alphabet, LegacyFormat, MAX_FORMATS},
    error::{Error, Result},
};

/// A keyspace's legacy formats; `field` names the repeated field. Each is
/// checked fully with the keyspace.
pub fn legacy_formats(field: &str, raw: Vec<pb::LegacyFormat>) -> Result<Vec<LegacyFormat>> {
    if raw.len() > MAX_FORMATS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_FORMATS} formats"),
        ));
    }
    raw.into_iter()
        .enumerate()
        .map(|(i, f)| legacy_format(&format!("{field}[{i}]"), f))
        .collect()
}

fn legacy_format(field: &str, f: pb::LegacyFormat) -> Result<LegacyFormat> {
    let pb::LegacyFormat {
        name,
        prefix,
        alphabet,
        characters,
        min_length,
        max_length,
        retire_time,
    } = f;
    let alphabet = match pb::LegacyAlphabet::try_from(alphabet) {
        Ok(pb::LegacyAlphabet::Hex) => Alphabet::Hex,
        Ok(pb::LegacyAlphabet::Base62) => Alphabet::Base62,
        Ok(pb::LegacyAlphabet::Base64url) => Alphabet::Base64Url,
        Ok(pb::LegacyAlphabet::Set) => Alphabet::Set(characters.clone()),
        _ => return Err(Error::invalid(format!("{field}.alphabet"), "is required")),
    };
    if !characters.is_empty() && !matches!(alphabet, Alphabet::Set(_)) {
        return Err(Error::invalid(
            format!("{field}.characters"),
            "is only for LEGACY_ALPHABET_SET",
        ));
    }
    let len = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(LegacyFormat {
        name,
        prefix,
        alphabet,
        min_len: len(min_length),
        max_len: len(max_length),
        retire_at: retire_time
            .map(|t| timestamp(&format!("{field}.retire_time"), t))
            .transpose()?,
    })
}

pub fn to_legacy_format(f: &LegacyFormat) -> pb::LegacyFormat {
    let (alphabet, characters) = match &f.alphabet {
        Alphabet::Hex => (pb::LegacyAlphabet::Hex, String::new()),
        Alphabet::Base62 => (pb::LegacyAlphabet::Base62, String::new()),
        Alphabet::Base64Url => (pb::LegacyAlphabet::Base64url, String::new()),
        Alphabet::Set(s) => (pb::LegacyAlphabet::Set, s.clone()),
    };
    let len = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    pb::LegacyFormat {
        name: f.name.clone(),
        prefix: f.prefix.clone(),
        alphabet: alphabet.into(),
        characters,
        min_length: len(f.min_len),
        max_length: len(f.max_len),
        retire_time: f.retire_at.map(to_timestamp),
    }
}
