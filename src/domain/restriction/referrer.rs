//! Referrer allowlists: exact hosts (`app.example.com`) and wildcards
//! (`*.example.com`, which matches any subdomain but not `example.com`
//! itself). The presented Referer or Origin is parsed as a URL; hosts
//! compare case-insensitively, without a trailing dot.

use super::MAX_ALLOWLIST;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReferrerError {
    #[error("`{0}` is not a host name or `*.` wildcard")]
    Syntax(String),
    #[error("an allowlist needs at least one entry")]
    Empty,
    #[error("at most {MAX_ALLOWLIST} entries")]
    TooMany,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// Stored with its leading dot: `.example.com`.
    Suffix(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerAllowlist(Vec<Pattern>);

impl ReferrerAllowlist {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, ReferrerError)> {
        if entries.is_empty() {
            return Err((0, ReferrerError::Empty));
        }
        if entries.len() > MAX_ALLOWLIST {
            return Err((MAX_ALLOWLIST, ReferrerError::TooMany));
        }
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let e = e.as_ref();
            let bad = || (i, ReferrerError::Syntax(e.chars().take(64).collect()));
            let (wildcard, host) = match e.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, e),
            };
            let host = normalize_host(host).ok_or_else(bad)?;
            out.push(if wildcard {
                Pattern::Suffix(format!(".{host}"))
            } else {
                Pattern::Exact(host)
            });
        }
        Ok(Self(out))
    }

    /// Whether the host of `referrer` (a URL) is allowed. An unparsable
    /// referrer is not.
    pub fn allows(&self, referrer: &str) -> bool {
        let Some(host) = referrer_host(referrer) else {
            return false;
        };
        let host = host.trim_end_matches('.');
        self.0.iter().any(|p| match p {
            Pattern::Exact(h) => host.eq_ignore_ascii_case(h),
            Pattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        })
    }

    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|p| match p {
            Pattern::Exact(h) => h.clone(),
            Pattern::Suffix(s) => format!("*{s}"),
        })
    }
}

/// Lowercase ASCII host name, IDNA-encoded, without a trailing dot. Only
/// a bare host: no scheme, port, path, credentials or wildcard.
fn normalize_host(host: &str) -> Option<String> {
    if host.is_empty() || host.contains(['*', '/', ':', '@', ' ', '?', '#', '\\']) {
        return None;
    }
    let url = url::Url::parse(&format!("https://{host}/")).ok()?;
    let parsed = url.host_str()?.trim_end_matches('.');
    (!parsed.is_empty()).then(|| parsed.to_ascii_lowercase())
}

/// The host of a Referer or Origin URL, if it has one.
fn referrer_host(referrer: &str) -> Option<String> {
    let url = url::Url::parse(referrer).ok()?;
    matches!(url.scheme(), "http" | "https").then_some(())?;
    url.host_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(e: &[&str]) -> ReferrerAllowlist {
        ReferrerAllowlist::parse(e).expect("valid")
    }

    #[test]
    fn exact_hosts_match_case_insensitively() {
        let l = list(&["App.Example.com"]);
        assert!(l.allows("https://app.example.com/checkout?x=1"));
        assert!(l.allows("https://APP.EXAMPLE.COM"));
        assert!(l.allows("http://app.example.com.:8080/"));
        assert!(!l.allows("https://example.com/"));
        assert!(!l.allows("https://app.example.com.evil.net/"));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let l = list(&["*.example.com"]);
        assert!(l.allows("https://a.example.com/"));
        assert!(l.allows("https://a.b.example.com/"));
        assert!(!l.allows("https://example.com/"));
        assert!(!l.allows("https://evil-example.com/"));
        assert!(!l.allows("https://example.com.evil.net/"));
    }

    #[test]
    fn unparsable_or_odd_referrers_are_refused() {
        let l = list(&["*.example.com", "example.com"]);
        for r in [
            "",
            "example.com",
            "not a url",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "https://user@/",
        ] {
            assert!(!l.allows(r), "{r:?}");
        }
        assert!(
            l.allows("https://user:pw@example.com/"),
            "credentials do not change the host"
        );
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for bad in [
            "",
            "*",
            "*.",
            "a*.example.com",
            "example.com:443",
            "http://example.com",
            "ex ample.com",
        ] {
            assert!(ReferrerAllowlist::parse(&[bad]).is_err(), "{bad:?}");
        }
        assert!(
            ReferrerAllowlist::parse(&["bücher.example"]).is_ok(),
            "IDN hosts are allowed"
        );
    }
}
