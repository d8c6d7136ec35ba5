//! Domain types. Each parses its input, so a value of the type is valid.

pub mod admin_token;
pub mod api_key;
mod base62;
mod fields;
mod key;
mod key_hash;
mod key_id;
pub mod keyspace;
mod kind;
pub mod leak;
pub mod page_token;
mod permission;
mod policy;
#[cfg(test)]
mod props;
pub mod quota;
mod random;
pub mod required;
pub mod restriction;
pub mod role;
mod rotation;
pub mod scope;
mod special_ip;
mod time;
mod token_grant;
pub mod verdict;
pub mod webhook;

pub use api_key::{ApiKey, KeyFormatError, PresentedKey};
pub use fields::MAX_SCOPES;
pub use fields::{FieldError, KeyName, Metadata, MetadataError, OwnerId, Reason, RequestId};
pub use key::{KeyRecord, KeyState, PolicyViolation, check_type_policy};
pub use key_hash::KeyHash;
pub use key_id::{KeyId, KeyIdError, PackedKeyId};
pub use keyspace::{KeyPrefix, Keyspace, KeyspaceDefaults, KeyspaceId, KeyspaceName, PrefixError};
pub use kind::{Environment, KeyType, UnknownVariant};
pub use page_token::{PageTokenError, PageTokens};
pub use permission::{Permission, PermissionError, PermissionSet, UnknownPermission};
pub use policy::StalePolicy;
pub use random::RandomnessError;
pub use restriction::{Mode, Restrictions, Rule};
pub use role::{Role, RoleDescription, RoleName};
pub use rotation::{KeyRotation, MIN_ROTATION_PERIOD};
pub use scope::{Scope, ScopeError};
pub use time::{Clock, Timestamp, mono_nanos};
pub use token_grant::{DEFAULT_KEYSPACE, GrantError, MAX_LIMIT_ENTRIES, TokenGrant, TokenLimits};
