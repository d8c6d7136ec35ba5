//! Resource allowlists: `/`-separated patterns such as `acct_123/*`.
//!
//! - A literal segment matches itself, byte for byte.
//! - `*` in the middle matches exactly one segment (`acct_*` style partial
//!   globs are refused as ambiguous).
//! - `*` as the last segment matches one or more remaining segments.
//!
//! **One canonical form, for patterns and presented resources alike:**
//! segments of printable ASCII, never empty, `.` or `..`, and without `%`,
//! `\`, `;`, `?` or `#`. Nothing is ever decoded. Whatever sits downstream
//! (a proxy, a framework, a file system) may decode `%2e%2e` or `%2F`, treat
//! `\` as a separator, drop `;` path parameters (`..;/`), or cut at a query
//! or fragment; a resource that one of them could read differently from us
//! could walk out of a prefix, so it is refused instead of interpreted. A
//! gateway that needs such characters must map them to canonical names first.
//! This also rules out `%00`, double encoding (`%252e`), either hex case and
//! anything that decodes to invalid UTF-8: there is no `%` to start one.

use super::MAX_ALLOWLIST;

pub const MAX_RESOURCE_LEN: usize = 512;
const MAX_SEGMENTS: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern is longer than {MAX_RESOURCE_LEN} bytes or {MAX_SEGMENTS} segments")]
    TooLong,
    #[error("`*` must be a whole segment")]
    PartialWildcard,
    #[error("segments must be non-empty printable ASCII, not `.` or `..`")]
    Segment,
    #[error("`{0}` is not allowed: resources are compared as written, never decoded")]
    Reserved(char),
    #[error("an allowlist needs at least one entry")]
    NoEntries,
    #[error("at most {MAX_ALLOWLIST} entries")]
    TooMany,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAllowlist(Vec<String>);

/// Characters some layer downstream reads as more than a byte: an escape,
/// a separator, a path parameter, a query or a fragment.
const RESERVED: [char; 5] = ['%', '\\', ';', '?', '#'];

/// How strictly a string is judged: presented resources and new patterns
/// must be canonical; a pattern stored before the canonical form existed may
/// hold a reserved character, which then simply never matches.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Resource,
    Pattern,
    StoredPattern,
}

fn check_segment(seg: &str, form: Form) -> Result<(), ResourceError> {
    if form != Form::Resource && seg.contains('*') && seg != "*" {
        return Err(ResourceError::PartialWildcard);
    }
    let printable = seg.bytes().all(|b| b.is_ascii_graphic());
    if seg.is_empty() || seg == "." || seg == ".." || !printable {
        return Err(ResourceError::Segment);
    }
    if form != Form::StoredPattern
        && let Some(c) = seg.chars().find(|c| RESERVED.contains(c))
    {
        return Err(ResourceError::Reserved(c));
    }
    Ok(())
}

fn check(s: &str, form: Form) -> Result<(), ResourceError> {
    if s.is_empty() {
        return Err(ResourceError::Empty);
    }
    if s.len() > MAX_RESOURCE_LEN || s.split('/').count() > MAX_SEGMENTS {
        return Err(ResourceError::TooLong);
    }
    s.split('/').try_for_each(|seg| check_segment(seg, form))
}

/// Whether a presented resource is well-formed (see the module docs).
pub fn check_resource(s: &str) -> Result<(), ResourceError> {
    check(s, Form::Resource)
}

impl ResourceAllowlist {
    /// A new allowlist: every pattern in the canonical form.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, ResourceError)> {
        Self::parse_as(entries, Form::Pattern)
    }

    /// An allowlist read back from the store. A pattern written before the
    /// canonical form existed may hold a reserved character; it loads (so
    /// one old key cannot stop a replica from loading its index) and can
    /// never match, because no canonical resource contains that character.
    pub fn parse_stored<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, ResourceError)> {
        Self::parse_as(entries, Form::StoredPattern)
    }

    fn parse_as<S: AsRef<str>>(entries: &[S], form: Form) -> Result<Self, (usize, ResourceError)> {
        if entries.is_empty() {
            return Err((0, ResourceError::NoEntries));
        }
        if entries.len() > MAX_ALLOWLIST {
            return Err((MAX_ALLOWLIST, ResourceError::TooMany));
        }
        for (i, e) in entries.iter().enumerate() {
            check(e.as_ref(), form).map_err(|err| (i, err))?;
        }
        Ok(Self(
            entries.iter().map(|e| e.as_ref().to_owned()).collect(),
        ))
    }

    /// Whether `resource` is allowed. A malformed resource is not.
    pub fn allows(&self, resource: &str) -> bool {
        check_resource(resource).is_ok() && self.0.iter().any(|p| matches(p, resource))
    }

    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().cloned()
    }
}

fn matches(pattern: &str, resource: &str) -> bool {
    let mut pat = pattern.split('/').peekable();
    let mut res = resource.split('/');
    while let Some(p) = pat.next() {
        let last = pat.peek().is_none();
        match (p, res.next()) {
            (_, None) => return false,
            ("*", Some(_)) if last => return true,
            ("*", Some(_)) => {}
            (lit, Some(r)) if lit == r => {}
            _ => return false,
        }
    }
    res.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(patterns: &[&str], resource: &str) -> bool {
        ResourceAllowlist::parse(patterns)
            .expect("valid")
            .allows(resource)
    }

    #[test]
    fn literal_and_trailing_wildcard() {
        assert!(allows(&["acct_123/*"], "acct_123/invoices"));
        assert!(allows(&["acct_123/*"], "acct_123/invoices/in_9"));
        assert!(!allows(&["acct_123/*"], "acct_123"));
        assert!(!allows(&["acct_123/*"], "acct_1234/invoices"));
        assert!(allows(&["acct_123"], "acct_123"));
        assert!(!allows(&["acct_123"], "acct_123/x"));
    }

    #[test]
    fn middle_wildcard_is_one_segment() {
        assert!(allows(&["acct_1/*/read"], "acct_1/invoices/read"));
        assert!(!allows(&["acct_1/*/read"], "acct_1/a/b/read"));
    }

    #[test]
    fn traversal_and_empty_segments_are_refused() {
        for r in [
            "acct_123/../acct_9",
            "acct_123/./x",
            "acct_123//x",
            "acct_123/",
            "",
            "acct_123/x y",
        ] {
            assert!(!allows(&["acct_123/*"], r), "{r:?}");
        }
    }

    #[test]
    fn encoded_and_ambiguous_resources_are_refused() {
        for r in [
            "acct_123/%2e%2e/acct_456/invoices",
            "acct_123/x%2F..%2F..%2Facct_456",
            "acct_123/%2E%2E/acct_456",
            "acct_123/%252e%252e/acct_456",
            "acct_123/x%00",
            "acct_123/%c0%ae%c0%ae/acct_456",
            "acct_123/%41",
            "acct_123/..\\..\\acct_456",
            "acct_123\\..\\acct_456",
            "acct_123/..;/acct_456",
            "acct_123/x;jsessionid=1",
            "acct_123/x?y=../../acct_456",
            "acct_123/x#/../../acct_456",
            "acct_123/x\0",
            "acct_123/\u{e9}",
            "acct_123/x\u{0}",
        ] {
            assert!(check_resource(r).is_err(), "{r:?} must not be canonical");
            assert!(!allows(&["acct_123/*", "*"], r), "{r:?}");
        }
        assert_eq!(
            check_resource("acct_123/x%2F"),
            Err(ResourceError::Reserved('%'))
        );
    }

    #[test]
    fn stored_patterns_from_before_the_canonical_form_load_and_never_match() {
        let old = ResourceAllowlist::parse_stored(&["acct_%31/*", "acct_2/x;y"]).unwrap();
        for r in ["acct_%31/x", "acct_1/x", "acct_2/x;y", "acct_2/x"] {
            assert!(!old.allows(r), "{r:?}");
        }
        assert!(ResourceAllowlist::parse_stored(&["acct_1/../x"]).is_err());
    }

    #[test]
    fn patterns_take_the_same_canonical_form() {
        for bad in [
            "acct_123/%2e%2e",
            "acct_%31/*",
            "acct_123\\x",
            "acct_123/x;y",
            "acct_123/x?y",
            "acct_123/x#y",
        ] {
            assert!(
                matches!(
                    ResourceAllowlist::parse(&[bad]),
                    Err((0, ResourceError::Reserved(_)))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn absurd_patterns_are_rejected() {
        for bad in [
            "",
            "acct_*",
            "a//b",
            "../x",
            &"a/".repeat(40),
            &"x".repeat(600),
        ] {
            assert!(ResourceAllowlist::parse(&[bad]).is_err(), "{bad:?}");
        }
    }
}
