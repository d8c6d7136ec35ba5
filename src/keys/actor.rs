//! [`Actor`]: who performs an admin call, what it may do, and what it may
//! see. Resolved once per call (admin authentication builds it from the
//! token), then asked: `actor.require(Permission::KeysWrite)?` before the
//! work, `actor.may_see(keyspace, owner)` for each resource.

use std::sync::Arc;

use crate::{
    domain::{KeyId, OwnerId, Permission, PermissionSet, Timestamp, TokenGrant, TokenLimits},
    error::{Error, Result},
    store::NewAuditEvent,
};

/// Who performs an admin call, as audit events name them, and what it may
/// do. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// As audit events name the actor: `admin:<token id>`, `key:<id>`,
    /// `system:scheduler`, …
    name: String,
    /// The admin token behind the call, if one is.
    token_id: Option<String>,
    grant: Arc<TokenGrant>,
}

/// The refusal of a call that spans every owner and keyspace, from a token
/// confined to some.
const LIMITED: &str =
    "this token is limited to some owners or keyspaces; this call spans all of them";

/// A shared grant with no permission and no limit.
fn nothing() -> Arc<TokenGrant> {
    Arc::new(TokenGrant::from_stored(
        PermissionSet::EMPTY,
        TokenLimits::NONE,
        None,
    ))
}

impl Actor {
    /// The holder of admin token `id`; audited as `admin:<id>`.
    pub fn token(id: &str, grant: Arc<TokenGrant>) -> Self {
        Self {
            name: format!("admin:{id}"),
            token_id: Some(id.to_owned()),
            grant,
        }
    }

    /// keysmith itself (`system:scheduler`, `system:bootstrap`,
    /// `system:cli` for the offline commands): every permission, no limit.
    pub fn system(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            token_id: None,
            grant: Arc::new(TokenGrant::FULL),
        }
    }

    /// A key acting on itself (RotateSelf), by proof of possession. It
    /// holds no admin permission.
    pub fn key(id: &KeyId) -> Self {
        Self {
            name: format!("key:{id}"),
            token_id: None,
            grant: nothing(),
        }
    }

    /// The actor as audit events record it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An audit event of this actor about no one key (a keyspace, a role,
    /// an admin token, a webhook): `changes` says what it was about.
    pub fn event(
        &self,
        at: Timestamp,
        action: &'static str,
        changes: impl Into<serde_json::Value>,
    ) -> NewAuditEvent {
        NewAuditEvent {
            at,
            actor: self.name.clone(),
            action,
            key_id: None,
            owner_id: None,
            reason: None,
            changes: changes.into(),
            request_id: None,
        }
    }

    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// What minted tokens record as their minter: the token id, or the
    /// system actor's name.
    pub fn minter(&self) -> &str {
        self.token_id.as_deref().unwrap_or(&self.name)
    }

    pub fn grant(&self) -> &TokenGrant {
        &self.grant
    }

    pub fn permissions(&self) -> PermissionSet {
        self.grant.permissions()
    }

    pub fn limits(&self) -> &TokenLimits {
        self.grant.limits()
    }

    /// PERMISSION_DENIED, naming `p`, unless the actor holds it.
    pub fn require(&self, p: Permission) -> Result<()> {
        if self.grant.permissions().contains(p) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(p.denial()))
        }
    }

    /// [`Self::require`], for a call whose answer spans every owner and
    /// keyspace (the whole audit chain, say): a limited token is refused
    /// too, as it would learn about what lies outside its limits.
    pub fn require_global(&self, p: Permission) -> Result<()> {
        self.require(p)?;
        if self.grant.limits().is_unlimited() {
            Ok(())
        } else {
            Err(Error::PermissionDenied(LIMITED))
        }
    }

    /// Whether a resource in `keyspace` held by `owner` exists for this
    /// actor. Outside its limits a resource is NOT_FOUND, never listed and
    /// never counted.
    pub fn may_see(&self, keyspace: &str, owner: &OwnerId) -> bool {
        self.grant.limits().admits(keyspace, owner.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DEFAULT_KEYSPACE;

    fn limited(owners: &[&str]) -> Actor {
        let limits = TokenLimits::parse(None, Some(owners.iter().map(|s| s.to_string()).collect()))
            .expect("limits");
        let perms = [Permission::KeysRead, Permission::AuditRead]
            .into_iter()
            .collect();
        let grant = TokenGrant::new(perms, limits, None).expect("grant");
        Actor::token("adm_x", Arc::new(grant))
    }

    #[test]
    fn require_names_the_missing_permission() {
        let a = limited(&["acct_1"]);
        assert!(a.require(Permission::KeysRead).is_ok());
        let err = a.require(Permission::KeysWrite).unwrap_err();
        assert_eq!(err.to_string(), "this token lacks keys.write");
        assert!(matches!(
            a.require_global(Permission::AuditRead),
            Err(Error::PermissionDenied(LIMITED))
        ));
        assert!(
            Actor::system("system:scheduler")
                .require_global(Permission::AuditRead)
                .is_ok()
        );
        assert!(
            Actor::key(&KeyId::generate())
                .require(Permission::KeysRead)
                .is_err()
        );
    }

    #[test]
    fn a_limited_actor_sees_only_its_owners() {
        let a = limited(&["acct_1"]);
        let mine = OwnerId::parse("acct_1").expect("owner");
        let theirs = OwnerId::parse("acct_2").expect("owner");
        assert!(a.may_see(DEFAULT_KEYSPACE, &mine));
        assert!(!a.may_see(DEFAULT_KEYSPACE, &theirs));
        assert_eq!(a.name(), "admin:adm_x");
        assert_eq!(a.minter(), "adm_x");
    }
}
