//! Leaks: what a keyspace does when one of its keys is found in public (by
//! GitHub's secret scanning, another scanner, or whoever holds the key), and
//! what a report of a leak says.

use std::{fmt, str::FromStr, time::Duration};

use serde_json::json;

use super::{
    Environment, FieldError, KeyType, Timestamp,
    fields::{max_len, no_control},
};

/// Longest source URL a report may carry.
pub const MAX_LEAK_URL_LEN: usize = 2048;
/// Longest free-form label (GitHub's `type` and `source`, a scanner's name).
pub const MAX_LEAK_LABEL_LEN: usize = 128;

/// What happens to a key found leaked. Whatever the policy, the leak is
/// audited (`key.leaked`) and sent to webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeakPolicy {
    /// Only the audit event and webhook.
    Notify,
    /// Disabled: denied everywhere, and EnableKey undoes it.
    Disable,
    /// Revoked for good, with its suspect successors.
    Revoke,
}

impl LeakPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Disable => "disable",
            Self::Revoke => "revoke",
        }
    }
}

impl FromStr for LeakPolicy {
    type Err = super::UnknownVariant;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "notify" => Ok(Self::Notify),
            "disable" => Ok(Self::Disable),
            "revoke" => Ok(Self::Revoke),
            other => Err(super::UnknownVariant::new(other)),
        }
    }
}

impl fmt::Display for LeakPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A keyspace's leak response. Each `None` is the default: revoke live
/// secret keys, notify for test keys and publishable ones (which are public
/// by design, so finding one is no emergency).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LeakResponse {
    /// Live secret keys.
    pub live: Option<LeakPolicy>,
    /// Test secret keys.
    pub test: Option<LeakPolicy>,
    /// Publishable keys, live or test.
    pub publishable: Option<LeakPolicy>,
    /// Whether anyone presenting a key may revoke it on the public
    /// listener (`POST /v1/keys/revoke`). On unless turned off.
    pub public_revocation_off: bool,
}

impl LeakResponse {
    /// The policy for a key of this type and environment.
    pub fn policy(&self, key_type: KeyType, environment: Environment) -> LeakPolicy {
        match (key_type, environment) {
            (KeyType::Publishable, _) => self.publishable.unwrap_or(LeakPolicy::Notify),
            (KeyType::Secret, Environment::Live) => self.live.unwrap_or(LeakPolicy::Revoke),
            (KeyType::Secret, Environment::Test) => self.test.unwrap_or(LeakPolicy::Notify),
        }
    }

    pub fn public_revocation(&self) -> bool {
        !self.public_revocation_off
    }

    pub fn to_json(&self) -> serde_json::Value {
        let p = |p: Option<LeakPolicy>| p.map(LeakPolicy::as_str);
        json!({
            "live": p(self.live),
            "test": p(self.test),
            "publishable": p(self.publishable),
            "public_revocation": self.public_revocation(),
        })
    }

    /// Reads what [`LeakResponse::to_json`] wrote; `{}` (a keyspace from
    /// before leak responses) is the default.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        let policy = |field: &str| -> Result<Option<LeakPolicy>, String> {
            match &v[field] {
                serde_json::Value::Null => Ok(None),
                p => p
                    .as_str()
                    .ok_or_else(|| format!("{field} is not text"))?
                    .parse()
                    .map(Some)
                    .map_err(|e: super::UnknownVariant| e.to_string()),
            }
        };
        let public_revocation = match &v["public_revocation"] {
            serde_json::Value::Null => true,
            b => b.as_bool().ok_or("public_revocation is not a boolean")?,
        };
        Ok(Self {
            live: policy("live")?,
            test: policy("test")?,
            publishable: policy("publishable")?,
            public_revocation_off: !public_revocation,
        })
    }
}

/// Who found a leak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakFinder {
    /// GitHub's secret scanning, on the public listener.
    GitHub,
    /// ReportLeakedKey: another scanner, through an admin token.
    Report,
    /// Someone holding the key, on the public listener's revoke endpoint.
    Holder,
}

impl LeakFinder {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GitHub => "github",
            Self::Report => "report",
            Self::Holder => "holder",
        }
    }
}

/// A checked free-form label: at most [`MAX_LEAK_LABEL_LEN`] bytes, no
/// control characters; may be empty.
pub fn leak_label(s: &str) -> Result<&str, FieldError> {
    max_len(s, MAX_LEAK_LABEL_LEN)?;
    no_control(s)?;
    Ok(s)
}

/// A checked source URL: at most [`MAX_LEAK_URL_LEN`] bytes, no control
/// characters or spaces; may be empty. Not fetched, only recorded.
pub fn leak_url(s: &str) -> Result<&str, FieldError> {
    max_len(s, MAX_LEAK_URL_LEN)?;
    no_control(s)?;
    if s.chars().any(char::is_whitespace) {
        return Err(FieldError::Control);
    }
    Ok(s)
}

/// One report of a leaked key, as audited: who found it, where, and what
/// they called it. Holds nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeakReport {
    pub finder: LeakFinder,
    /// Where the key was seen (a commit's URL, a paste, a log).
    pub url: String,
    /// The finder's name for where in the source (GitHub: `content`,
    /// `commit`, `pull_request_comment`, …), or the scanner's name.
    pub source: String,
    /// The finder's name for the kind of secret (GitHub: the token type
    /// registered for the keyspace's pattern).
    pub token_type: String,
    /// When the key became public, if the finder knows; successors
    /// rotated by the key itself since then are revoked with it.
    pub leaked_at: Option<Timestamp>,
}

impl LeakReport {
    /// Since when the key must be taken as known to others: the finder's
    /// `leaked_at`, else `lookback` before `now`.
    pub fn exposed_since(&self, now: Timestamp, lookback: Duration) -> Timestamp {
        self.leaked_at.unwrap_or_else(|| {
            let ms = i64::try_from(lookback.as_millis()).unwrap_or(i64::MAX);
            Timestamp::from_millis(now.as_millis().saturating_sub(ms))
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "finder": self.finder.as_str(),
            "url": self.url,
            "source": self.source,
            "token_type": self.token_type,
            "leaked_at": self.leaked_at.map(Timestamp::as_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_revoke_live_secrets_and_notify_the_rest() {
        let r = LeakResponse::default();
        assert_eq!(
            r.policy(KeyType::Secret, Environment::Live),
            LeakPolicy::Revoke
        );
        assert_eq!(
            r.policy(KeyType::Secret, Environment::Test),
            LeakPolicy::Notify
        );
        for env in [Environment::Live, Environment::Test] {
            assert_eq!(r.policy(KeyType::Publishable, env), LeakPolicy::Notify);
        }
        assert!(r.public_revocation());
    }

    #[test]
    fn json_round_trips_and_empty_is_default() {
        let r = LeakResponse {
            live: Some(LeakPolicy::Disable),
            test: Some(LeakPolicy::Revoke),
            publishable: None,
            public_revocation_off: true,
        };
        assert_eq!(LeakResponse::from_json(&r.to_json()), Ok(r));
        assert_eq!(
            LeakResponse::from_json(&json!({})),
            Ok(LeakResponse::default())
        );
        assert!(LeakResponse::from_json(&json!({"live": "burn"})).is_err());
    }

    #[test]
    fn labels_and_urls_are_bounded() {
        assert!(leak_label(&"x".repeat(MAX_LEAK_LABEL_LEN)).is_ok());
        assert!(leak_label(&"x".repeat(MAX_LEAK_LABEL_LEN + 1)).is_err());
        assert!(leak_label("a\nb").is_err());
        assert!(leak_url("https://github.com/o/r/blob/abc/config.yml").is_ok());
        assert!(leak_url("https://x/ y").is_err());
        assert!(leak_url(&"x".repeat(MAX_LEAK_URL_LEN + 1)).is_err());
    }

    #[test]
    fn exposure_is_the_finder_time_or_the_lookback() {
        let now = Timestamp::from_millis(10_000_000);
        let mut r = LeakReport {
            finder: LeakFinder::GitHub,
            url: String::new(),
            source: String::new(),
            token_type: String::new(),
            leaked_at: None,
        };
        assert_eq!(
            r.exposed_since(now, Duration::from_secs(3600)),
            Timestamp::from_millis(10_000_000 - 3_600_000)
        );
        r.leaked_at = Some(Timestamp::from_millis(5));
        assert_eq!(
            r.exposed_since(now, Duration::from_secs(3600)),
            Timestamp::from_millis(5)
        );
    }
}
