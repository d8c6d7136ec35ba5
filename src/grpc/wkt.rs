//! The well-known types the proto uses (`google.protobuf.Timestamp`,
//! `Duration` and `FieldMask`), with the JSON proto3's canonical mapping
//! gives them. pbjson-types has them too, but writes a Timestamp with
//! `+00:00` instead of `Z` (which protobuf-es does not read back with a
//! fraction), a FieldMask as `{"paths": […]}` instead of one comma-separated
//! string of lowerCamelCase paths, and overflows on a Duration of
//! `"--9223372036854775808s"`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

use super::json_name::lower_camel;

/// A point in time: seconds and nanoseconds since the Unix epoch, in UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// A span of time: seconds and nanoseconds of the same sign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, ::prost::Message)]
pub struct Duration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The mapping's bound on a Duration: about 10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

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

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (seconds, nanos) = (self.seconds, self.nanos);
        if seconds.unsigned_abs() > MAX_DURATION_SECONDS.unsigned_abs()
            || nanos.unsigned_abs() > 999_999_999
            || (seconds != 0 && nanos != 0 && (seconds < 0) != (nanos < 0))
        {
            return Err(serde::ser::Error::custom("duration out of range"));
        }
        let sign = if seconds < 0 || nanos < 0 { "-" } else { "" };
        let (whole, frac) = (seconds.unsigned_abs(), nanos.unsigned_abs());
        let text = match frac {
            0 => format!("{sign}{whole}s"),
            f if f % 1_000_000 == 0 => format!("{sign}{whole}.{:03}s", f / 1_000_000),
            f if f % 1_000 == 0 => format!("{sign}{whole}.{:06}s", f / 1_000),
            f => format!("{sign}{whole}.{f:09}s"),
        };
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seconds;
        impl de::Visitor<'_> for Seconds {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds with an \"s\", such as \"3600s\" or \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).ok_or_else(|| E::custom("not a duration such as \"1.5s\""))
            }
        }
        d.deserialize_str(Seconds)
    }
}

/// `"-1.5s"` as seconds and nanoseconds, within the mapping's range.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.strip_suffix('s')?;
    let (negative, v) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (whole, frac) = match v.split_once('.') {
        Some((_, "")) => return None,
        Some(parts) => parts,
        None => (v, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || (frac.len() <= 9 && digits(frac))) {
        return None;
    }
    let seconds: i64 = whole.parse().ok().filter(|s| *s <= MAX_DURATION_SECONDS)?;
    let nanos: i32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(if negative {
        Duration {
            seconds: -seconds,
            nanos: -nanos,
        }
    } else {
        Duration { seconds, nanos }
    })
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
    fn a_duration_is_seconds_with_the_digits_it_needs() {
        for (text, seconds, nanos) in [
            ("3600s", 3600, 0),
            ("1.500s", 1, 500_000_000),
            ("-0.000001s", 0, -1_000),
            ("0.000000001s", 0, 1),
        ] {
            let d = Duration { seconds, nanos };
            assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{text}\""));
            assert_eq!(
                serde_json::from_str::<Duration>(&format!("\"{text}\"")).unwrap(),
                d
            );
        }
        assert_eq!(
            serde_json::from_str::<Duration>(r#""1.5s""#).unwrap(),
            Duration {
                seconds: 1,
                nanos: 500_000_000
            }
        );
        // Out of range, at the extremes too: an error, never an overflow.
        for (seconds, nanos) in [
            (i64::MIN, 0),
            (0, i32::MIN),
            (MAX_DURATION_SECONDS + 1, 0),
            (1, -1),
        ] {
            assert!(serde_json::to_string(&Duration { seconds, nanos }).is_err());
        }
        for bad in [
            "--9223372036854775808s",
            "9223372036854775808s",
            "315576000001s",
            "1.0000000001s",
            "1.s",
            ".5s",
            "1",
            "s",
            "+1s",
            "1e3s",
        ] {
            assert!(
                serde_json::from_str::<Duration>(&format!("\"{bad}\"")).is_err(),
                "{bad}"
            );
        }
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
