//! Webhook endpoints: event types, target URLs, signing.
//!
//! Deliveries are signed Stripe-style. The `Keysmith-Signature` header is
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use std::{fmt, net::IpAddr};

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{api_key::RandomnessError, base62};

/// Every event a webhook can subscribe to. Each is also an audit action.
pub const EVENT_TYPES: [&str; 10] = [
    "key.created",
    "key.updated",
    "key.rotated",
    "key.revoked",
    "key.disabled",
    "key.enabled",
    "key.expiring",
    "key.expired",
    "key.rotation_due",
    "key.stale",
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
    #[error("points at a private, loopback or link-local address")]
    Private,
}

/// A webhook target. Parsing refuses private and loopback IP literals
/// unless `allow_private`; host names are checked again when they resolve,
/// at each delivery.
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
        let local_name = url
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case("localhost") || h.ends_with(".localhost"));
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
}

/// Whether `ip` is a public unicast address: not loopback, private,
/// link-local, unique-local, shared (CGNAT), documentation, multicast or
/// unspecified. Webhooks reach only these unless told otherwise (SSRF).
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// An endpoint's signing secret: `whsec_` and 43 base62 digits.
pub struct SigningSecret(Zeroizing<String>);

impl SigningSecret {
    pub fn generate() -> Result<Self, RandomnessError> {
        let mut random = Zeroizing::new([0u8; 32]);
        super::api_key::fill_random(random.as_mut())?;
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
        ] {
            assert_eq!(
                WebhookUrl::parse(bad, false),
                Err(UrlError::Private),
                "{bad}"
            );
            assert!(WebhookUrl::parse(bad, true).is_ok(), "{bad}");
        }
        assert!(WebhookUrl::parse("https://hooks.example.org/keysmith", false).is_ok());
        assert!(WebhookUrl::parse("https://93.184.216.34/", false).is_ok());
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
