//! What a call requires of a key's scopes: every one of `required_scopes`,
//! and one scope of each any-of group. Together an AND over groups of OR
//! (conjunctive normal form), so Unkey's `a AND (b OR c)` is
//! `required_scopes: [a]` with one group `[b, c]`.
//!
//! The groups stay in the form the request arrived in ([`AnyOf`]): Verify's
//! decoded messages, or the text of an ext_authz route. Deciding copies
//! nothing and allocates nothing.

use std::fmt;

use crate::domain::Scope;

/// Whether any of `held` grants `required`: the one place a key's scopes
/// meet a required one.
#[inline]
pub fn granted(held: &[Scope], required: &str) -> bool {
    held.iter().any(|s| s.grants(required))
}

/// Groups of alternative scopes, each scope already checked by
/// [`crate::domain::scope::check_required`] and each group non-empty.
pub trait AnyOf: fmt::Debug + Sync {
    /// The first group of which `held` grants no scope.
    fn first_unmet(&self, held: &[Scope]) -> Option<Unmet<'_>>;
}

/// An any-of group that no held scope meets, as the request wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmet<'a> {
    /// The group's scopes, as listed.
    Scopes(&'a [String]),
    /// The group as written in text, alternatives joined by `|`.
    Text(&'a str),
}

/// No any-of groups: what a call without them requires.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoGroups;

impl AnyOf for NoGroups {
    #[inline]
    fn first_unmet(&self, _: &[Scope]) -> Option<Unmet<'_>> {
        None
    }
}

/// Groups as plain lists, for tests and callers that build them.
impl AnyOf for Vec<Vec<String>> {
    fn first_unmet(&self, held: &[Scope]) -> Option<Unmet<'_>> {
        self.iter()
            .find(|g| !g.iter().any(|s| granted(held, s)))
            .map(|g| Unmet::Scopes(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(scopes: &[&str]) -> Vec<Scope> {
        scopes.iter().map(|s| Scope::parse(s).unwrap()).collect()
    }

    fn groups(g: &[&[&str]]) -> Vec<Vec<String>> {
        g.iter()
            .map(|g| g.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn each_group_needs_one_granted_scope() {
        let h = held(&["invoices:read", "customers:*"]);
        let ok = groups(&[&["invoices:admin", "invoices:read"], &["customers:write"]]);
        assert_eq!(ok.first_unmet(&h), None);
        let bad = groups(&[&["invoices:read"], &["refunds:read", "refunds:admin"]]);
        assert_eq!(
            bad.first_unmet(&h),
            Some(Unmet::Scopes(&bad[1])),
            "names the first unmet group"
        );
        assert_eq!(NoGroups.first_unmet(&[]), None);
    }
}
