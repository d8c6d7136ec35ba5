//! Roles: a named set of scopes in one keyspace (`billing-reader` =
//! `invoices:read`, `customers:read`). A key holds scopes of its own and
//! roles; what it grants is the union ([`KeyRecord::effective_scopes`]).
//!
//! [`KeyRecord::effective_scopes`]: super::KeyRecord::effective_scopes

use std::fmt;

use super::{FieldError, KeyspaceId, Scope, Timestamp};

pub const MAX_ROLE_NAME_LEN: usize = 64;
pub const MAX_ROLE_DESCRIPTION_LEN: usize = 500;
/// Most scopes one role may hold.
pub const MAX_ROLE_SCOPES: usize = 100;
/// Most roles one key may hold.
pub const MAX_KEY_ROLES: usize = 10;
/// Most live (not revoked) keys that may hold one role. UpdateRole writes
/// one change-log row per holder in its transaction, and every replica
/// re-reads each of those keys, so this bounds what one role change costs.
pub const MAX_ROLE_HOLDERS: i64 = 10_000;

/// A role's name, unique in its keyspace: 1 to 64 of `a-z`, `0-9` and `-`,
/// starting with a letter or digit.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleName(String);

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_ROLE_NAME_LEN} of a-z, 0-9 and `-`, starting with a letter or digit")]
pub struct RoleNameError;

impl RoleName {
    pub fn parse(s: &str) -> Result<Self, RoleNameError> {
        let b = s.as_bytes();
        let ok = (1..=MAX_ROLE_NAME_LEN).contains(&b.len())
            && b[0] != b'-'
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RoleNameError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// What a role is for; may be empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleDescription(String);

impl RoleDescription {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.len() > MAX_ROLE_DESCRIPTION_LEN {
            return Err(FieldError::TooLong(MAX_ROLE_DESCRIPTION_LEN));
        }
        if s.chars().any(char::is_control) {
            return Err(FieldError::Control);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A role as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Role {
    pub keyspace_id: KeyspaceId,
    pub name: RoleName,
    pub description: RoleDescription,
    /// At most [`MAX_ROLE_SCOPES`], none repeated.
    pub scopes: Vec<Scope>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Starts at 1; every update adds 1.
    pub version: i64,
}

impl Role {
    /// Whether the update from `self` to `next` takes a scope away: then
    /// every key holding it may grant less.
    pub fn narrows_to(&self, next: &Role) -> bool {
        self.scopes.iter().any(|s| !next.scopes.contains(s))
    }
}

/// The union of `scopes`, in first-seen order: what a key's roles grant,
/// given each role's scopes in the order of the key's sorted role names.
pub fn union_scopes<'a>(scopes: impl IntoIterator<Item = &'a Scope>) -> Vec<Scope> {
    let mut out: Vec<Scope> = Vec::new();
    for s in scopes {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_lowercase_words_with_dashes() {
        for ok in ["billing-reader", "a", "r2-d2", &"x".repeat(64)] {
            assert!(RoleName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "Billing", "a_b", "a b", "a.b", &"x".repeat(65)] {
            assert_eq!(RoleName::parse(bad), Err(RoleNameError), "{bad}");
        }
    }

    #[test]
    fn descriptions_are_bounded_text() {
        assert!(RoleDescription::parse("").is_ok());
        assert_eq!(
            RoleDescription::parse(&"d".repeat(501)),
            Err(FieldError::TooLong(500))
        );
        assert_eq!(RoleDescription::parse("a\nb"), Err(FieldError::Control));
    }

    #[test]
    fn a_union_keeps_the_first_of_each_scope() {
        let s = |x: &str| Scope::parse(x).unwrap();
        let (a, b, c) = (s("a:read"), s("b:read"), s("c:*"));
        assert_eq!(union_scopes([&a, &b, &a, &c, &b]), [a, b, c]);
    }
}
