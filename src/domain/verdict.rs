//! What Verify decides: a [`Code`], the [`Decision`] with its details, and
//! the report-only codes that would have denied ([`WouldDeny`]).
//!
//! Every code is described once, in [`Code::ALL`] and the `match`es below:
//! its fixed detail, its snake-case name (ext_authz bodies, metrics labels)
//! and its [`Class`] (what HTTP status a gateway answers). The wire enum
//! `VerifyCode` numbers them `index + 1`, checked by a test in `grpc`.

use super::required::Unmet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Valid,
    Malformed,
    NotFound,
    Revoked,
    Expired,
    Disabled,
    InsufficientScope,
    IpNotAllowed,
    ReferrerNotAllowed,
    ResourceNotAllowed,
    RateLimited,
    /// The key's (or its owner's) credits cannot pay the call's cost.
    UsageExceeded,
    /// A key of a legacy format its keyspace retired.
    FormatRetired,
}

/// How a gateway answers a code: 2xx, 401, 403 or 429.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Allowed,
    /// The key does not authenticate: malformed, unknown or dead.
    Unauthenticated,
    /// The key authenticates, but not for this call.
    Forbidden,
    /// The key may call again later (or after a top-up).
    TooMany,
}

impl Code {
    /// Every code, in a fixed order (usage counters are indexed by it).
    pub const ALL: [Code; 13] = [
        Code::Valid,
        Code::Malformed,
        Code::NotFound,
        Code::Revoked,
        Code::Expired,
        Code::Disabled,
        Code::InsufficientScope,
        Code::IpNotAllowed,
        Code::ReferrerNotAllowed,
        Code::ResourceNotAllowed,
        Code::RateLimited,
        Code::UsageExceeded,
        Code::FormatRetired,
    ];

    pub const fn index(self) -> usize {
        self as usize
    }

    /// A fixed explanation of a denial, safe for any client.
    pub const fn detail(self) -> &'static str {
        match self {
            Code::Valid => "",
            Code::Malformed => "malformed key",
            Code::NotFound => "unknown key",
            Code::Revoked => "key was revoked",
            Code::Expired => "key has expired",
            Code::Disabled => "key is disabled",
            Code::InsufficientScope => "a required scope is not granted",
            Code::IpNotAllowed => "client_ip is missing or not allowed",
            Code::ReferrerNotAllowed => "referrer is missing or not allowed",
            Code::ResourceNotAllowed => "resource is missing or not allowed",
            Code::RateLimited => "rate limit exceeded",
            Code::UsageExceeded => "usage limit exceeded: no credits left",
            Code::FormatRetired => "this key format is retired: rotate to a new key",
        }
    }

    /// The code's name in ext_authz bodies and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Code::Valid => "valid",
            Code::Malformed => "malformed",
            Code::NotFound => "not_found",
            Code::Revoked => "revoked",
            Code::Expired => "expired",
            Code::Disabled => "disabled",
            Code::InsufficientScope => "insufficient_scope",
            Code::IpNotAllowed => "ip_not_allowed",
            Code::ReferrerNotAllowed => "referrer_not_allowed",
            Code::ResourceNotAllowed => "resource_not_allowed",
            Code::RateLimited => "rate_limited",
            Code::UsageExceeded => "usage_exceeded",
            Code::FormatRetired => "format_retired",
        }
    }

    pub const fn class(self) -> Class {
        match self {
            Code::Valid => Class::Allowed,
            Code::Malformed
            | Code::NotFound
            | Code::Revoked
            | Code::Expired
            | Code::Disabled
            | Code::FormatRetired => Class::Unauthenticated,
            Code::InsufficientScope
            | Code::IpNotAllowed
            | Code::ReferrerNotAllowed
            | Code::ResourceNotAllowed => Class::Forbidden,
            Code::RateLimited | Code::UsageExceeded => Class::TooMany,
        }
    }
}

/// Report-only restrictions that failed, as a small set of codes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WouldDeny(u16);

impl WouldDeny {
    pub fn insert(&mut self, code: Code) {
        self.0 |= 1 << code.index();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Code> {
        Code::ALL
            .into_iter()
            .filter(move |c| self.0 & (1 << c.index()) != 0)
    }
}

/// The outcome of a decision. Borrows the request, so deciding allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub code: Code,
    /// For `InsufficientScope`: the first of `required_scopes` not granted.
    pub missing_scope: Option<&'a str>,
    /// For `InsufficientScope` from `required_any`: the first group of which
    /// nothing is granted.
    pub missing_any: Option<Unmet<'a>>,
    pub would_deny: WouldDeny,
}

impl Decision<'_> {
    pub const fn of(code: Code) -> Self {
        Self {
            code,
            missing_scope: None,
            missing_any: None,
            would_deny: WouldDeny(0),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.code == Code::Valid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_in_all_once_and_in_order() {
        for (i, c) in Code::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        assert!(WouldDeny::default().is_empty());
        let mut w = WouldDeny::default();
        w.insert(Code::UsageExceeded);
        assert_eq!(w.iter().collect::<Vec<_>>(), [Code::UsageExceeded]);
    }
}
