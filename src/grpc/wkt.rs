//! `google.protobuf.Timestamp` and `google.protobuf.FieldMask`, with the
//! JSON proto3's canonical mapping gives them. pbjson-types has both, but
//! writes a Timestamp with `+00:00` instead of `Z` (which protobuf-es does
//! not read back with a fraction) and a FieldMask as `{"paths": […]}`
//! instead of one comma-separated string of lowerCamelCase paths. The
//! other well-known types come from pbjson-types.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A point in time: seconds and nanoseconds since the Unix epoch, in UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Paths of fields: which of a message's fields an update sets.
#[derive(Clone, PartialEq, Eq, Hash, ::prost::Message)]
pub struct FieldMask {
    #[prost(string, repeated, tag = "1")]
    pub paths: Vec<String>,
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let at = u32::try_from(self.nanos)
            .ok()
            .and_then(|nanos| DateTime::<Utc>::from_timestamp(self.seconds, nanos))
            .ok_or_else(|| serde::ser::Error::custom("timestamp out of range"))?;
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Rfc3339;
        impl de::Visitor<'_> for Rfc3339 {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time such as \"2026-12-01T10:00:00Z\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timestamp, E> {
                let at = DateTime::parse_from_rfc3339(v)
                    .map_err(|_| E::custom("not an RFC 3339 time"))?
                    .with_timezone(&Utc);
                Ok(Timestamp {
                    seconds: at.timestamp(),
                    nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
                })
            }
        }
        d.deserialize_str(Rfc3339)
    }
}

impl Serialize for FieldMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let camel: Vec<String> = self.paths.iter().map(|p| lower_camel(p)).collect();
        s.serialize_str(&camel.join(","))
    }
}

impl<'de> Deserialize<'de> for FieldMask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Paths;
        impl de::Visitor<'_> for Paths {
            type Value = FieldMask;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field paths separated by commas, such as \"name,expireTime\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldMask, E> {
                let paths = v
                    .split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(snake)
                    .collect();
                Ok(FieldMask { paths })
            }
        }
        d.deserialize_str(Paths)
    }
}

/// `expire_time` as `expireTime` (each dotted part on its own).
fn lower_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// `expireTime` as `expire_time`.
fn snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_is_written_in_utc_with_z_and_read_with_any_offset() {
        let t = Timestamp {
            seconds: 1_796_119_682,
            nanos: 761_000_000,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""2026-12-01T10:08:02.761Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        let shifted: Timestamp =
            serde_json::from_str(r#""2026-12-01T12:08:02.761+02:00""#).unwrap();
        assert_eq!(shifted, t);
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
    }

    #[test]
    fn a_field_mask_is_one_string_of_camel_case_paths() {
        let m = FieldMask {
            paths: vec!["name".into(), "expire_time".into()],
        };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#""name,expireTime""#);
        assert_eq!(
            serde_json::from_str::<FieldMask>(r#""name,expireTime""#).unwrap(),
            m
        );
        assert_eq!(
            serde_json::from_str::<FieldMask>(r#""""#).unwrap(),
            FieldMask { paths: vec![] }
        );
    }
}
