//! Scopes: `invoices:read`, `invoices:*`, `*`.
//!
//! A scope is one or more segments joined by `:`. A segment is lowercase
//! ASCII letters, digits, `_`, `-` or `.`, starting with a letter or digit.
//! A key's scope may end in the wildcard segment `*`, which grants every scope
//! that starts with the segments before it (`invoices:*` grants
//! `invoices:read` and `invoices:lines:write`, but not `invoices` itself);
//! `*` alone grants everything. Required scopes are always concrete.

use std::fmt;

pub const MAX_SCOPE_LEN: usize = 128;
/// Most any-of groups one call may require.
pub const MAX_ANY_GROUPS: usize = 16;
/// Most alternatives in one any-of group.
pub const MAX_ALTERNATIVES: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope is empty")]
    Empty,
    #[error("scope is longer than {MAX_SCOPE_LEN} bytes")]
    TooLong,
    #[error("scope segments are lowercase a-z, 0-9, `_`, `-`, `.`, joined by `:`")]
    Syntax,
    #[error("a wildcard may only be the last segment")]
    Wildcard,
}

/// A scope a key holds; may end in a wildcard.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(Box<str>);

impl Scope {
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        check(s, true)?;
        Ok(Self(s.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this scope grants `required`, a scope already checked by
    /// [`check_required`].
    #[inline]
    pub fn grants(&self, required: &str) -> bool {
        match self.0.strip_suffix('*') {
            None => *self.0 == *required,
            // `*` alone: prefix is empty and grants all.
            Some(prefix) => required.starts_with(prefix) && required.len() > prefix.len(),
        }
    }
}

/// Checks a required scope (concrete: no wildcard) without allocating.
#[inline]
pub fn check_required(s: &str) -> Result<(), ScopeError> {
    check(s, false)
}

fn check(s: &str, allow_wildcard: bool) -> Result<(), ScopeError> {
    if s.is_empty() {
        return Err(ScopeError::Empty);
    }
    if s.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let mut segments = s.split(':').peekable();
    while let Some(seg) = segments.next() {
        if seg == "*" {
            if !allow_wildcard || segments.peek().is_some() {
                return Err(ScopeError::Wildcard);
            }
            continue;
        }
        let bytes = seg.as_bytes();
        let valid = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && bytes.iter().all(|&b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if !valid {
            return Err(if seg.contains('*') {
                ScopeError::Wildcard
            } else {
                ScopeError::Syntax
            });
        }
    }
    Ok(())
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scope {
        Scope::parse(x).expect(x)
    }

    #[test]
    fn exact_scope_grants_only_itself() {
        assert!(s("invoices:read").grants("invoices:read"));
        assert!(!s("invoices:read").grants("invoices:write"));
        assert!(!s("invoices:read").grants("invoices:read:all"));
        assert!(!s("invoices").grants("invoices:read"));
    }

    #[test]
    fn wildcard_grants_below_its_prefix_only() {
        let w = s("invoices:*");
        assert!(w.grants("invoices:read"));
        assert!(w.grants("invoices:lines:write"));
        assert!(!w.grants("invoices"));
        assert!(!w.grants("invoicesx:read"));
        assert!(!w.grants("customers:read"));
        assert!(s("*").grants("anything:at:all"));
    }

    #[test]
    fn malformed_scopes_are_rejected_with_reason() {
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
        assert_eq!(Scope::parse("Invoices:read"), Err(ScopeError::Syntax));
        assert_eq!(Scope::parse("invoices::read"), Err(ScopeError::Syntax));
        assert_eq!(Scope::parse("invoices:read "), Err(ScopeError::Syntax));
        assert_eq!(Scope::parse("*:read"), Err(ScopeError::Wildcard));
        assert_eq!(Scope::parse("inv*"), Err(ScopeError::Wildcard));
        assert_eq!(Scope::parse(&"a".repeat(129)), Err(ScopeError::TooLong));
        assert_eq!(check_required("invoices:*"), Err(ScopeError::Wildcard));
        assert_eq!(check_required("invoices:read"), Ok(()));
    }
}
