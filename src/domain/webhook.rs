//! Webhook endpoints: event types, target URLs, signing.
//!
//! Deliveries are signed Stripe-style. The `Keysmith-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::{fmt, net::IpAddr};

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

pub use super::special_ip::is_public;
use super::{base62, random::RandomnessError};

/// Every event a webhook can subscribe to. Each is also an audit action.
pub const EVENT_TYPES: [&str; 16] = [
    "key.created",
    "key.updated",
    "key.rotated",
    "key.revoked",
    "key.disabled",
    "key.leaked",
    "key.enabled",
    "key.expiring",
    "key.expired",
    "key.rotation_due",
    "key.stale",
    "key.credits_low",
    "key.credits_exhausted",
    "credits.updated",
    "owner.updated",
    "keys.imported",
];

/// A subscription: one event type, or `*` for all.
pub fn check_event_type(s: &str) -> Result<(), String> {
    if s == "*" || EVENT_TYPES.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an event type; use one of {} or *",
            s.chars().take(64).collect::<String>(),
            EVENT_TYPES.join(", ")
        ))
    }
}

pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must be an absolute http or https URL of at most {MAX_URL_LEN} bytes")]
    Syntax,
    #[error("must not carry credentials")]
    Credentials,
    #[error("points at a private, loopback, link-local or other special-purpose address")]
    Private,
}

/// A webhook target. Parsing refuses special-purpose IP literals (see
/// `special_ip`) unless `allow_private`; host names are checked when they
/// resolve, at each delivery. The WHATWG parser turns every IPv4 spelling
/// (`2130706433`, `0x7f.1`, `0177.0.0.1`) into one address first, so no
/// spelling slips past the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    pub fn parse(s: &str, allow_private: bool) -> Result<Self, UrlError> {
        if s.len() > MAX_URL_LEN {
            return Err(UrlError::Syntax);
        }
        let url = url::Url::parse(s).map_err(|_| UrlError::Syntax)?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(UrlError::Syntax);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        // `localhost.` is the same name as `localhost`.
        let local_name = url.host_str().is_some_and(|h| {
            let h = h.strip_suffix('.').unwrap_or(h);
            h.eq_ignore_ascii_case("localhost") || h.to_ascii_lowercase().ends_with(".localhost")
        });
        if !allow_private && (local_name || literal.is_some_and(|ip| !is_public(ip))) {
            return Err(UrlError::Private);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn host(&self) -> Option<&str> {
        self.0.host_str()
    }

    /// `scheme://host[:port]`: where deliveries go, without the path and
    /// query, which often carry the receiver's own token. What audit
    /// events record.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }

    /// Hex SHA-256 of the whole URL: lets an audit reader match an
    /// endpoint's exact URL without the event holding a token it may carry.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        hex::encode(Sha256::digest(self.0.as_str().as_bytes()))
    }
}

/// An endpoint's signing secret: `whsec_` and 43 base62 digits.
pub struct SigningSecret(Zeroizing<String>);

impl SigningSecret {
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut random = Zeroizing::new([0u8; 32]);
        super::random::fill_random(random.as_mut())?;
        let mut body = [0u8; 43];
        base62::encode_be(random.as_ref(), &mut body);
        let mut s = Zeroizing::new(String::from("whsec_"));
        s.extend(body.iter().map(|&b| char::from(b)));
        Ok(Self(s))
    }

    /// Rebuilds a stored secret.
    pub fn from_stored(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The `Keysmith-Signature` header value for `body` sent at `unix_secs`.
    pub fn sign(&self, unix_secs: i64, body: &[u8]) -> String {
        let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.0.as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(unix_secs.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!(
            "t={unix_secs},v1={}",
            hex::encode(mac.finalize().into_bytes())
        )
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1/hook",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://localhost:8080/",
            "http://100.64.0.1/",
            "http://localhost./",
            "http://LocalHost/",
            "http://a.localhost./",
            // Every IPv4 spelling is one address to the parser.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.0.1./",
            "http://017700000001/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://3232235777/",
            // The special-purpose table, and IPv4 inside IPv6.
            "http://[64:ff9b::7f00:1]/",
            "http://[64:ff9b::169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
            "http://[fec0::1]/",
            "http://198.18.0.1/",
            "http://192.0.0.8/",
            "http://240.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
        ] {
            assert_eq!(
                WebhookUrl::parse(bad, false),
                Err(UrlError::Private),
                "{bad}"
            );
            assert!(WebhookUrl::parse(bad, true).is_ok(), "{bad}");
        }
        assert!(WebhookUrl::parse("https://hooks.example.org/keysmith", false).is_ok());
        for good in [
            "https://93.184.216.34/",
            "http://1572395042/",
            "https://[2606:4700:4700::1111]/",
            "https://[::ffff:93.184.216.34]/",
        ] {
            assert!(WebhookUrl::parse(good, false).is_ok(), "{good}");
        }
    }

    #[test]
    fn origin_drops_path_and_query() {
        let u = WebhookUrl::parse(
            "https://Hooks.Example.org:8443/services/T0/B0/XXSECRET?token=t",
            false,
        )
        .expect("url");
        assert_eq!(u.origin(), "https://hooks.example.org:8443");
        assert!(!u.fingerprint().contains("XXSECRET"));
        assert_eq!(u.fingerprint().len(), 64);
    }

    #[test]
    fn odd_urls_are_refused() {
        for bad in [
            "",
            "hooks.example.org",
            "ftp://x.org/",
            "https://user:pw@x.org/",
            "file:///etc/passwd",
        ] {
            assert!(WebhookUrl::parse(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn signature_is_stable_hmac_over_timestamp_and_body() {
        let s = SigningSecret::from_stored("whsec_test".into());
        let sig = s.sign(1_700_000_000, b"{}");
        // Computed independently, with Python's hmac module (the README's snippet).
        assert_eq!(
            sig,
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(sig, s.sign(1_700_000_000, b"{}"));
        assert_ne!(sig, s.sign(1_700_000_001, b"{}"));
        assert_ne!(
            sig,
            SigningSecret::from_stored("whsec_other".into()).sign(1_700_000_000, b"{}")
        );
    }
}
