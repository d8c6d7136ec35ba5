//! What an admin token may do: a fixed catalogue of permissions, and a set
//! of them as a bitset.
//!
//! The catalogue is closed. A name outside it is an error that names it, so
//! a typo never mints a token with less (or, worse, silently more) power
//! than was asked for. Stores keep the names, not the bits, so the order
//! here may change; a new permission is only ever added.

use std::{fmt, str::FromStr};

/// One thing an admin token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    KeysRead,
    KeysWrite,
    KeysRevoke,
    KeyspacesRead,
    KeyspacesManage,
    WebhooksRead,
    WebhooksManage,
    AuditRead,
    UsageRead,
    PoliciesManage,
    ReplicasRead,
    TokensManage,
    /// Verify, VerifyStream and ext_authz's Check, when the verify listener
    /// requires a credential.
    Verify,
    /// WatchRevocations, when the verify listener requires a credential.
    Watch,
}

impl Permission {
    pub const ALL: [Self; 14] = [
        Self::KeysRead,
        Self::KeysWrite,
        Self::KeysRevoke,
        Self::KeyspacesRead,
        Self::KeyspacesManage,
        Self::WebhooksRead,
        Self::WebhooksManage,
        Self::AuditRead,
        Self::UsageRead,
        Self::PoliciesManage,
        Self::ReplicasRead,
        Self::TokensManage,
        Self::Verify,
        Self::Watch,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeysRead => "keys.read",
            Self::KeysWrite => "keys.write",
            Self::KeysRevoke => "keys.revoke",
            Self::KeyspacesRead => "keyspaces.read",
            Self::KeyspacesManage => "keyspaces.manage",
            Self::WebhooksRead => "webhooks.read",
            Self::WebhooksManage => "webhooks.manage",
            Self::AuditRead => "audit.read",
            Self::UsageRead => "usage.read",
            Self::PoliciesManage => "policies.manage",
            Self::ReplicasRead => "replicas.read",
            Self::TokensManage => "tokens.manage",
            Self::Verify => "verify",
            Self::Watch => "watch",
        }
    }

    /// The refusal of a call that needs this permission. A fixed string per
    /// permission, so refusing allocates nothing.
    pub const fn denial(self) -> &'static str {
        match self {
            Self::KeysRead => "this token lacks keys.read",
            Self::KeysWrite => "this token lacks keys.write",
            Self::KeysRevoke => "this token lacks keys.revoke",
            Self::KeyspacesRead => "this token lacks keyspaces.read",
            Self::KeyspacesManage => "this token lacks keyspaces.manage",
            Self::WebhooksRead => "this token lacks webhooks.read",
            Self::WebhooksManage => "this token lacks webhooks.manage",
            Self::AuditRead => "this token lacks audit.read",
            Self::UsageRead => "this token lacks usage.read",
            Self::PoliciesManage => "this token lacks policies.manage",
            Self::ReplicasRead => "this token lacks replicas.read",
            Self::TokensManage => "this token lacks tokens.manage",
            Self::Verify => "this token lacks verify",
            Self::Watch => "this token lacks watch",
        }
    }

    /// Whether the permission reaches resources that belong to no owner and
    /// no keyspace (webhook endpoints and their payloads, which carry every
    /// owner's events; replica status, which counts every key; owner
    /// policies, which span keyspaces). A token limited to some owners or
    /// keyspaces cannot hold one: it would see past its limits.
    pub const fn is_global(self) -> bool {
        matches!(
            self,
            Self::WebhooksRead | Self::WebhooksManage | Self::ReplicasRead | Self::PoliciesManage
        )
    }

    /// Whether the permission reaches every owner's keys at once (a role
    /// changes each key that holds it; a keyspace's defaults apply to every
    /// owner's new keys). A token limited to some owners cannot hold one.
    pub const fn spans_owners(self) -> bool {
        matches!(self, Self::KeyspacesManage) || self.is_global()
    }

    const fn bit(self) -> u16 {
        1 << self as u16
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name outside the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a permission; use one of {list}", list = names(PermissionSet::ALL))]
pub struct UnknownPermission(String);

fn names(set: PermissionSet) -> String {
    set.iter()
        .map(Permission::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Permission {
    type Err = UnknownPermission;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            // Quoted back in an error: bounded, so a huge name stays small.
            .ok_or_else(|| UnknownPermission(s.chars().take(64).collect()))
    }
}

/// A set of permissions.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub const EMPTY: Self = Self(0);
    /// Every permission: the bootstrap token's, and what tokens minted
    /// before permissions existed were given.
    pub const ALL: Self = {
        let mut bits = 0;
        let mut i = 0;
        while i < Permission::ALL.len() {
            bits |= Permission::ALL[i].bit();
            i += 1;
        }
        Self(bits)
    };

    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    #[must_use]
    pub const fn with(self, p: Permission) -> Self {
        Self(self.0 | p.bit())
    }

    #[must_use]
    pub const fn without(self, p: Permission) -> Self {
        Self(self.0 & !p.bit())
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The first permission of `self` that `other` lacks, in catalogue order.
    pub fn first_not_in(self, other: Self) -> Option<Permission> {
        self.iter().find(|p| !other.contains(*p))
    }

    /// The first permission of the set that reaches past owner and keyspace
    /// limits ([`Permission::is_global`]).
    pub fn first_global(self) -> Option<Permission> {
        self.iter().find(|p| p.is_global())
    }

    /// The first permission of the set that reaches past owner limits
    /// ([`Permission::spans_owners`]).
    pub fn first_spanning_owners(self) -> Option<Permission> {
        self.iter().find(|p| p.spans_owners())
    }

    /// In catalogue order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |p| self.contains(*p))
    }

    /// Parses names, each at most once. On error, the index of the bad name.
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, (usize, PermissionError)> {
        let mut set = Self::EMPTY;
        for (i, name) in names.into_iter().enumerate() {
            let p: Permission = name.parse().map_err(|e| (i, PermissionError::Unknown(e)))?;
            if set.contains(p) {
                return Err((i, PermissionError::Duplicate));
            }
            set = set.with(p);
        }
        Ok(set)
    }
}

/// Why a list of permission names was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error(transparent)]
    Unknown(#[from] UnknownPermission),
    #[error("is a duplicate")]
    Duplicate,
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter().fold(Self::EMPTY, Self::with)
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Permission::as_str))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
            assert!(p.denial().ends_with(p.as_str()), "{p}");
        }
        assert_eq!(PermissionSet::ALL.iter().count(), Permission::ALL.len());
    }

    #[test]
    fn an_unknown_name_is_named_in_the_error() {
        let err = PermissionSet::parse(["keys.read", "keys.delete"]).unwrap_err();
        assert_eq!(err.0, 1);
        let msg = err.1.to_string();
        assert!(msg.contains("`keys.delete` is not a permission"), "{msg}");
        assert!(
            msg.contains("keys.revoke"),
            "the catalogue is listed: {msg}"
        );
        assert_eq!(
            PermissionSet::parse(["verify", "verify"]).unwrap_err(),
            (1, PermissionError::Duplicate)
        );
        let long = "x".repeat(10_000);
        let msg = PermissionSet::parse([long.as_str()])
            .unwrap_err()
            .1
            .to_string();
        assert!(msg.len() < 1000, "{} bytes", msg.len());
    }

    #[test]
    fn subsets_name_the_first_missing_permission() {
        let parent: PermissionSet = [Permission::KeysRead, Permission::TokensManage]
            .into_iter()
            .collect();
        let child = parent.with(Permission::KeysWrite);
        assert_eq!(parent.first_not_in(parent), None);
        assert_eq!(child.first_not_in(parent), Some(Permission::KeysWrite));
        assert_eq!(PermissionSet::EMPTY.first_not_in(parent), None);
        assert_eq!(
            PermissionSet::ALL
                .without(Permission::Watch)
                .first_not_in(PermissionSet::ALL),
            None
        );
        assert!(
            !PermissionSet::ALL
                .without(Permission::Watch)
                .contains(Permission::Watch)
        );
    }
}
