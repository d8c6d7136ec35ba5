//! What an admin token is allowed: its permissions, the keyspaces and owners
//! it is confined to, and when it stops working. And the rule that no token
//! mints one with more power than its own.

use super::{KeyspaceId, OwnerId, PermissionSet, Timestamp};

/// The keyspace every key belongs to until keys carry their own.
pub const DEFAULT_KEYSPACE: &str = "ks_default";

/// Most keyspaces, and most owners, one token may be limited to.
pub const MAX_LIMIT_ENTRIES: usize = 100;

/// The keyspaces and owners a token is confined to. `None` in a dimension
/// means every one; a token limited in both sees what both admit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenLimits {
    /// Sorted, without duplicates.
    keyspaces: Option<Box<[String]>>,
    /// Sorted, without duplicates.
    owners: Option<Box<[OwnerId]>>,
}

/// A field of a token request that was refused, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct GrantError {
    /// The request field, with an index for a list entry (`owners[2]`).
    pub field: String,
    pub reason: String,
}

impl GrantError {
    fn new(field: impl Into<String>, reason: impl ToString) -> Self {
        Self {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// Parses one limit list: at most [`MAX_LIMIT_ENTRIES`], none repeated, at
/// least one (an empty list would admit nothing; `None` admits all).
fn limit_list<T: Ord, E: std::fmt::Display>(
    field: &str,
    raw: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<Box<[T]>>, GrantError> {
    let Some(raw) = raw else { return Ok(None) };
    if raw.is_empty() {
        return Err(GrantError::new(
            field,
            "must name at least one, or be unset",
        ));
    }
    if raw.len() > MAX_LIMIT_ENTRIES {
        return Err(GrantError::new(
            field,
            format!("at most {MAX_LIMIT_ENTRIES} entries"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, s) in raw.iter().enumerate() {
        let v = parse(s).map_err(|e| GrantError::new(format!("{field}[{i}]"), e))?;
        if out.contains(&v) {
            return Err(GrantError::new(format!("{field}[{i}]"), "is a duplicate"));
        }
        out.push(v);
    }
    out.sort();
    Ok(Some(out.into_boxed_slice()))
}

/// Whether `child` admits only what `parent` admits, in one dimension.
fn list_within<T: PartialEq + std::fmt::Display>(
    field: &str,
    child: Option<&[T]>,
    parent: Option<&[T]>,
) -> Result<(), GrantError> {
    match (child, parent) {
        (_, None) => Ok(()),
        (None, Some(_)) => Err(GrantError::new(
            field,
            "the calling token is limited here, so the new token must name some of its entries",
        )),
        (Some(child), Some(parent)) => match child.iter().find(|c| !parent.contains(c)) {
            None => Ok(()),
            Some(outside) => Err(GrantError::new(
                field,
                format!("`{outside}` is outside the calling token's limits"),
            )),
        },
    }
}

impl TokenLimits {
    /// No limits: every keyspace and every owner.
    pub const NONE: Self = Self {
        keyspaces: None,
        owners: None,
    };

    /// Parses the limits of a token request; `None` is no limit.
    pub fn parse(
        keyspaces: Option<Vec<String>>,
        owners: Option<Vec<String>>,
    ) -> Result<Self, GrantError> {
        Ok(Self {
            // A keyspace id's shape; whether it names a keyspace that
            // exists is the minting's check, against the store.
            keyspaces: limit_list("keyspaces", keyspaces, |s| {
                KeyspaceId::check(s).map(|()| s.to_owned())
            })?,
            owners: limit_list("owners", owners, OwnerId::parse)?,
        })
    }

    pub fn keyspaces(&self) -> Option<&[String]> {
        self.keyspaces.as_deref()
    }

    pub fn owners(&self) -> Option<&[OwnerId]> {
        self.owners.as_deref()
    }

    pub fn is_unlimited(&self) -> bool {
        self.keyspaces.is_none() && self.owners.is_none()
    }

    pub fn admits_keyspace(&self, keyspace: &str) -> bool {
        self.keyspaces
            .as_deref()
            .is_none_or(|ks| ks.iter().any(|k| k == keyspace))
    }

    pub fn admits_owner(&self, owner: &str) -> bool {
        self.owners
            .as_deref()
            .is_none_or(|os| os.iter().any(|o| o.as_str() == owner))
    }

    /// Whether a resource in `keyspace`, held by `owner`, is inside the
    /// limits. Outside, it does not exist for the token: NOT_FOUND, never
    /// listed, never counted.
    pub fn admits(&self, keyspace: &str, owner: &str) -> bool {
        self.admits_keyspace(keyspace) && self.admits_owner(owner)
    }

    /// Refuses limits that admit anything `parent` does not. An unlimited
    /// dimension under a limited parent is wider, so it is refused.
    pub fn within(&self, parent: &Self) -> Result<(), GrantError> {
        list_within("keyspaces", self.keyspaces(), parent.keyspaces())?;
        list_within("owners", self.owners(), parent.owners())
    }
}

/// Everything a token may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenGrant {
    permissions: PermissionSet,
    limits: TokenLimits,
    /// From then on, the token is refused like an unknown one.
    expires_at: Option<Timestamp>,
}

impl TokenGrant {
    /// Every permission, no limit, no expiry: the bootstrap token's, and
    /// what tokens minted before permissions existed were given.
    pub const FULL: Self = Self {
        permissions: PermissionSet::ALL,
        limits: TokenLimits::NONE,
        expires_at: None,
    };

    /// A consistent grant: at least one permission, and none that reaches
    /// past the limits of a limited token ([`crate::domain::Permission::is_global`]).
    pub fn new(
        permissions: PermissionSet,
        limits: TokenLimits,
        expires_at: Option<Timestamp>,
    ) -> Result<Self, GrantError> {
        if permissions.is_empty() {
            return Err(GrantError::new(
                "permissions",
                "name at least one permission",
            ));
        }
        if limits.owners().is_some()
            && let Some(p) = permissions.first_spanning_owners()
        {
            return Err(GrantError::new(
                "permissions",
                format!("{p} reaches every owner's keys; a token limited to owners cannot hold it"),
            ));
        }
        if !limits.is_unlimited()
            && let Some(global) = permissions.first_global()
        {
            return Err(GrantError::new(
                "permissions",
                format!(
                    "{global} spans every owner and keyspace; a token limited to some cannot \
                     hold it"
                ),
            ));
        }
        Ok(Self {
            permissions,
            limits,
            expires_at,
        })
    }

    /// A grant as stored, trusted as it was checked when minted.
    pub fn from_stored(
        permissions: PermissionSet,
        limits: TokenLimits,
        expires_at: Option<Timestamp>,
    ) -> Self {
        Self {
            permissions,
            limits,
            expires_at,
        }
    }

    pub fn permissions(&self) -> PermissionSet {
        self.permissions
    }

    pub fn limits(&self) -> &TokenLimits {
        &self.limits
    }

    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// Whether the grant still holds at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }

    /// Refuses a grant that `self`, the minting token's, does not cover:
    /// more permissions, wider limits, or a later (or no) expiry. The error
    /// names the request field.
    pub fn covers(&self, child: &Self) -> Result<(), GrantError> {
        if let Some(p) = child.permissions.first_not_in(self.permissions) {
            return Err(GrantError::new(
                "permissions",
                format!("asks for {p}, which the calling token lacks"),
            ));
        }
        child.limits.within(&self.limits)?;
        match (self.expires_at, child.expires_at) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(GrantError::new(
                "expire_time",
                "is required: the calling token expires, and the new token may not outlive it",
            )),
            (Some(mine), Some(theirs)) if theirs > mine => Err(GrantError::new(
                "expire_time",
                "is after the calling token's own expiry",
            )),
            (Some(_), Some(_)) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Permission;

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    fn grant(perms: &[Permission], owners: Option<&[&str]>, exp: Option<i64>) -> TokenGrant {
        let limits = TokenLimits::parse(None, owners.and_then(list)).expect("limits");
        TokenGrant::new(
            perms.iter().copied().collect(),
            limits,
            exp.map(Timestamp::from_millis),
        )
        .expect("grant")
    }

    #[test]
    fn limits_parse_with_field_named_errors() {
        let err = TokenLimits::parse(None, list(&["acct_1", "bad owner"])).unwrap_err();
        assert_eq!(err.field, "owners[1]");
        let err = TokenLimits::parse(list(&["ks_a", "ks_a"]), None).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.reason.as_str()),
            ("keyspaces[1]", "is a duplicate")
        );
        let err = TokenLimits::parse(list(&[]), None).unwrap_err();
        assert_eq!(err.field, "keyspaces");
        let many: Vec<String> = (0..=MAX_LIMIT_ENTRIES).map(|i| format!("o{i}")).collect();
        assert_eq!(
            TokenLimits::parse(None, Some(many)).unwrap_err().field,
            "owners"
        );
        let l = TokenLimits::parse(list(&["ks_b", "ks_a"]), list(&["o2", "o1"])).expect("ok");
        assert_eq!(
            l.keyspaces(),
            Some(&["ks_a".to_owned(), "ks_b".to_owned()][..])
        );
        assert!(l.admits("ks_a", "o1") && !l.admits("ks_c", "o1") && !l.admits("ks_a", "o3"));
        assert!(TokenLimits::NONE.admits("anything", "anyone"));
    }

    #[test]
    fn a_limited_token_cannot_hold_a_global_permission() {
        let limits = TokenLimits::parse(None, list(&["acct_1"])).expect("limits");
        let perms: PermissionSet = [Permission::KeysRead, Permission::WebhooksRead]
            .into_iter()
            .collect();
        let err = TokenGrant::new(perms, limits.clone(), None).unwrap_err();
        assert_eq!(err.field, "permissions");
        assert!(err.reason.contains("webhooks.read"), "{err}");
        assert!(TokenGrant::new(PermissionSet::ALL, TokenLimits::NONE, None).is_ok());
        let err = TokenGrant::new(PermissionSet::EMPTY, limits, None).unwrap_err();
        assert_eq!(err.field, "permissions");
    }

    #[test]
    fn a_grant_covers_only_weaker_grants() {
        use Permission::{KeysRead, KeysWrite, TokensManage};
        let parent = grant(&[KeysRead, TokensManage], Some(&["a", "b"]), Some(1000));
        let ok = grant(&[KeysRead], Some(&["a"]), Some(1000));
        assert_eq!(parent.covers(&ok), Ok(()));
        let cases = [
            (grant(&[KeysWrite], Some(&["a"]), Some(10)), "permissions"),
            (grant(&[KeysRead], Some(&["a", "c"]), Some(10)), "owners"),
            (grant(&[KeysRead], None, Some(10)), "owners"),
            (grant(&[KeysRead], Some(&["a"]), None), "expire_time"),
            (grant(&[KeysRead], Some(&["a"]), Some(1001)), "expire_time"),
        ];
        for (child, field) in cases {
            assert_eq!(parent.covers(&child).unwrap_err().field, field, "{child:?}");
        }
        assert_eq!(TokenGrant::FULL.covers(&parent), Ok(()));
        assert!(parent.is_live(Timestamp::from_millis(999)));
        assert!(!parent.is_live(Timestamp::from_millis(1000)));
    }
}
