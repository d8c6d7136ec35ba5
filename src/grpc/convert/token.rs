//! Admin tokens: CreateAdminToken's request, and tokens as the API shows them.

use super::{page_size, pb, timestamp, to_timestamp};
use crate::{
    auth::NewToken,
    domain::{
        GrantError, KeyName, PermissionSet, Reason, Timestamp, TokenGrant, TokenLimits,
        admin_token::{AdminTokenRecord, TokenId, TokenState},
    },
    error::{Error, Result},
    keys::Page,
};

fn invalid(e: GrantError) -> Error {
    Error::invalid(e.field, e.reason)
}

/// An empty repeated field is no limit.
fn limit(raw: Vec<String>) -> Option<Vec<String>> {
    (!raw.is_empty()).then_some(raw)
}

pub fn create_token_request(req: pb::CreateAdminTokenRequest) -> Result<NewToken> {
    let pb::CreateAdminTokenRequest {
        name,
        permissions,
        keyspaces,
        owners,
        expire_time,
    } = req;
    if name.is_empty() {
        return Err(Error::invalid("name", "is required"));
    }
    let name = KeyName::parse(&name).map_err(|e| Error::invalid("name", e))?;
    let permissions = PermissionSet::parse(permissions.iter().map(String::as_str))
        .map_err(|(i, e)| Error::invalid(format!("permissions[{i}]"), e))?;
    let limits = TokenLimits::parse(limit(keyspaces), limit(owners)).map_err(invalid)?;
    let expires_at = expire_time
        .map(|t| timestamp("expire_time", t))
        .transpose()?;
    let grant = TokenGrant::new(permissions, limits, expires_at).map_err(invalid)?;
    Ok(NewToken { name, grant })
}

pub fn token_id(field: &str, s: &str) -> Result<TokenId> {
    if s.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    TokenId::parse(s).map_err(|e| Error::invalid(field, e))
}

pub fn token_reason(field: &str, s: &str) -> Result<Reason> {
    Reason::parse(s).map_err(|e| Error::invalid(field, e))
}

/// ListAdminTokens' page size, and its page token as sent (it is opened
/// against the caller's filter when the list runs).
pub fn token_list_query(req: pb::ListAdminTokensRequest) -> Result<(u32, String)> {
    let pb::ListAdminTokensRequest {
        page_size: size,
        page_token,
    } = req;
    Ok((page_size(size)?, page_token))
}

fn state(s: TokenState) -> pb::AdminTokenState {
    match s {
        TokenState::Active => pb::AdminTokenState::Active,
        TokenState::Expired => pb::AdminTokenState::Expired,
        TokenState::Revoked => pb::AdminTokenState::Revoked,
    }
}

pub fn admin_token(t: &AdminTokenRecord, now: Timestamp) -> pb::AdminToken {
    let limits = t.grant.limits();
    pb::AdminToken {
        id: t.id.to_string(),
        name: t.name.to_string(),
        permissions: t
            .grant
            .permissions()
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        keyspaces: limits
            .keyspaces()
            .map(<[String]>::to_vec)
            .unwrap_or_default(),
        owners: limits
            .owners()
            .map(|o| o.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
        state: state(t.state(now)).into(),
        create_time: Some(to_timestamp(t.created_at)),
        expire_time: t.grant.expires_at().map(to_timestamp),
        last_used_time: t.last_used_at.map(to_timestamp),
        revoke_time: t.revoked_at.map(to_timestamp),
        revoke_reason: t
            .revoke_reason
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        created_by: t.created_by.clone().unwrap_or_default(),
    }
}

pub fn tokens_page(page: Page<AdminTokenRecord>, now: Timestamp) -> pb::ListAdminTokensResponse {
    pb::ListAdminTokensResponse {
        tokens: page.items.iter().map(|t| admin_token(t, now)).collect(),
        next_page_token: page.next_page_token.unwrap_or_default(),
    }
}
