//! The scopes a route requires, as its `keysmith_scopes` context extension
//! writes them: groups separated by spaces or commas, each group one scope
//! or alternatives joined by `|` (no spaces around it). `invoices:read
//! refunds:write|refunds:admin` asks for `invoices:read` and one of the
//! refund scopes. The text is read in place: checking and deciding allocate
//! nothing.

use crate::{
    domain::{
        MAX_SCOPES, Scope,
        scope::{self, MAX_ALTERNATIVES},
    },
    verify::{AnyOf, Unmet, granted},
};

/// A route's requirement text, checked by [`RouteScopes::parse`].
#[derive(Clone, Copy, Debug)]
pub struct RouteScopes<'a>(&'a str);

impl<'a> RouteScopes<'a> {
    /// `None` when the text is malformed: an empty alternative, a bad
    /// scope, more than [`MAX_SCOPES`] scopes in all or more than
    /// [`MAX_ALTERNATIVES`] in a group.
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut total = 0;
        for group in groups(text) {
            let mut n = 0;
            for alt in group.split('|') {
                scope::check_required(alt).ok()?;
                n += 1;
            }
            total += n;
            if n > MAX_ALTERNATIVES || total > MAX_SCOPES {
                return None;
            }
        }
        Some(Self(text))
    }
}

fn groups(text: &str) -> impl Iterator<Item = &str> {
    text.split([' ', ',']).filter(|g| !g.is_empty())
}

impl AnyOf for RouteScopes<'_> {
    fn first_unmet(&self, held: &[Scope]) -> Option<Unmet<'_>> {
        groups(self.0)
            .find(|g| !g.split('|').any(|s| granted(held, s)))
            .map(Unmet::Text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(scopes: &[&str]) -> Vec<Scope> {
        scopes.iter().map(|s| Scope::parse(s).unwrap()).collect()
    }

    #[test]
    fn groups_are_all_of_and_alternatives_any_of() {
        let h = held(&["invoices:read", "refunds:*"]);
        let r = RouteScopes::parse("invoices:read, refunds:write|x:y").unwrap();
        assert_eq!(r.first_unmet(&h), None);
        let r = RouteScopes::parse("invoices:read a:b|c:d refunds:x").unwrap();
        assert_eq!(r.first_unmet(&h), Some(Unmet::Text("a:b|c:d")));
        assert_eq!(RouteScopes::parse("").unwrap().first_unmet(&[]), None);
    }

    #[test]
    fn malformed_text_is_refused() {
        for bad in ["a|", "|a", "a||b", "a | b", "a:*", "A", "a|b:*"] {
            assert!(RouteScopes::parse(bad).is_none(), "{bad:?}");
        }
        let wide = vec!["a"; MAX_ALTERNATIVES + 1].join("|");
        assert!(RouteScopes::parse(&wide).is_none());
        let many = vec!["a"; MAX_SCOPES + 1].join(" ");
        assert!(RouteScopes::parse(&many).is_none());
        assert!(RouteScopes::parse(&vec!["a"; MAX_SCOPES].join(" ")).is_some());
    }
}
