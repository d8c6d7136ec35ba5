use super::{
    ApiKey, Environment, KeyHash, KeyId, KeyName, KeyType, KeyspaceId, Metadata, OwnerId, Reason,
    Restrictions, RoleName, Scope, Timestamp,
};

/// Everything keysmith knows about one key. Never holds the secret.
///
/// Records are immutable once built: a change makes a new record with a
/// higher `version`, so readers holding an `Arc` never see a half-update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: KeyId,
    pub hash: KeyHash,
    /// The keyspace the key belongs to, for good: a rotation keeps it.
    pub keyspace_id: KeyspaceId,
    pub owner_id: OwnerId,
    pub name: KeyName,
    pub key_type: KeyType,
    pub environment: Environment,
    /// The scopes the key holds itself.
    pub scopes: Vec<Scope>,
    /// The roles the key holds, by name in its keyspace: sorted, none
    /// repeated, at most [`super::role::MAX_KEY_ROLES`].
    pub roles: Vec<RoleName>,
    /// What those roles grant, as resolved when the record was read or
    /// built: the union of their scopes, in the order of `roles`. Not a
    /// column of the key: a role's change reaches every key holding it.
    pub role_scopes: Vec<Scope>,
    pub metadata: Metadata,
    /// Prefix and last four characters of the key, e.g. `sk_live_…a1B2`.
    pub hint: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    /// The absolute end of this key and of every successor rotated from it:
    /// a rotation copies it, so rotating never extends a key's life. Set at
    /// creation and by an admin's explicit expiry (UpdateKey); scheduled
    /// expiries and grace periods move `expires_at` only.
    pub lineage_expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub revoke_reason: Option<Reason>,
    pub disabled_at: Option<Timestamp>,
    pub disable_reason: Option<Reason>,
    pub rotated_from: Option<KeyId>,
    pub rotated_to: Option<KeyId>,
    /// Starts at 1; every committed change adds 1.
    pub version: i64,
    pub restrictions: Restrictions,
    /// When Verify last saw the key, as of the last usage flush. Written by
    /// the usage flusher, not by key changes, and not versioned.
    pub last_used_at: Option<Timestamp>,
    pub last_client_ip: Option<String>,
    /// Set on a rotated key: revoke it early once it has been idle this
    /// long while its successor is in use.
    pub end_grace_when_idle: Option<std::time::Duration>,
    /// This key's rotation policy; `None` follows the server's default.
    pub rotation: Option<super::KeyRotation>,
    /// For an imported key: the platform's own id for it, kept for reference.
    pub external_id: Option<String>,
    /// When the key was imported; `None` for a key made here.
    pub imported_at: Option<Timestamp>,
}

/// Why a key's settings break the rules for its type.
#[derive(Debug, PartialEq, Eq)]
pub struct PolicyViolation {
    pub field: &'static str,
    pub reason: &'static str,
}

/// Publishable keys ship to browsers, where anyone can read them. So they
/// must be bound to their callers (an enforced IP or referrer allowlist),
/// and may only hold concrete `…:read` scopes.
pub fn check_type_policy(
    key_type: KeyType,
    scopes: &[Scope],
    restrictions: &Restrictions,
) -> Result<(), PolicyViolation> {
    if key_type != KeyType::Publishable {
        return Ok(());
    }
    if !restrictions.binds_caller() {
        return Err(PolicyViolation {
            field: "restrictions",
            reason: "publishable keys need an enforced ip or referrer restriction",
        });
    }
    if scopes.iter().any(|s| !s.as_str().ends_with(":read")) {
        return Err(PolicyViolation {
            field: "scopes",
            reason: "publishable keys may only hold `…:read` scopes",
        });
    }
    Ok(())
}

/// What a key's state is at a given moment. Precedence follows the verify
/// decision: revoked beats disabled beats expired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Active,
    Expired,
    Revoked,
    Disabled,
}

impl KeyRecord {
    /// The first version of a freshly minted key: a new id, in the default
    /// keyspace, no expiry, restrictions or metadata. Set the rest with
    /// struct update syntax.
    pub fn new(
        key: &ApiKey,
        owner_id: OwnerId,
        name: KeyName,
        scopes: Vec<Scope>,
        now: Timestamp,
    ) -> Self {
        Self {
            id: KeyId::generate(),
            hash: key.hash(),
            keyspace_id: KeyspaceId::default_id(),
            owner_id,
            name,
            key_type: key.key_type(),
            environment: key.environment(),
            scopes,
            roles: Vec::new(),
            role_scopes: Vec::new(),
            metadata: Metadata::default(),
            hint: key.hint(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            lineage_expires_at: None,
            revoked_at: None,
            revoke_reason: None,
            disabled_at: None,
            disable_reason: None,
            rotated_from: None,
            rotated_to: None,
            version: 1,
            restrictions: Restrictions::default(),
            last_used_at: None,
            last_client_ip: None,
            end_grace_when_idle: None,
            rotation: None,
            external_id: None,
            imported_at: None,
        }
    }

    /// When the key came to be here: made, or imported (an imported key's
    /// creation time is its old system's). Schedules start from it.
    pub fn arrived_at(&self) -> Timestamp {
        self.imported_at
            .map_or(self.created_at, |i| i.max(self.created_at))
    }

    /// Since when the key has gone unused here: its last use, and never
    /// before it arrived (a key imported unused is not stale at once).
    pub fn unused_since(&self) -> Timestamp {
        self.last_used_at
            .unwrap_or(self.created_at)
            .max(self.arrived_at())
    }

    /// What the key grants: its own scopes, then those its roles add.
    pub fn effective_scopes(&self) -> Vec<Scope> {
        super::role::union_scopes(self.scopes.iter().chain(&self.role_scopes))
    }

    /// [`Self::effective_scopes`], borrowed when the key holds no role's.
    pub fn granted_scopes(&self) -> std::borrow::Cow<'_, [Scope]> {
        if self.role_scopes.is_empty() {
            std::borrow::Cow::Borrowed(&self.scopes)
        } else {
            std::borrow::Cow::Owned(self.effective_scopes())
        }
    }

    pub fn state(&self, now: Timestamp) -> KeyState {
        KeyState::of(
            self.revoked_at.is_some(),
            self.disabled_at.is_some(),
            self.expires_at,
            now,
        )
    }

    /// A key expires at its expiry instant: `now >= expires_at`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

impl KeyState {
    /// The one place state precedence lives; records, index entries and
    /// the verify decision all judge through it.
    #[inline]
    pub fn of(
        revoked: bool,
        disabled: bool,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Self {
        if revoked {
            Self::Revoked
        } else if disabled {
            Self::Disabled
        } else if expires_at.is_some_and(|at| now >= at) {
            Self::Expired
        } else {
            Self::Active
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Disabled => "disabled",
        }
    }
}
