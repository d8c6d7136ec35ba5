//! Admin tokens as resources: mint, list, get and revoke, for the holders
//! of `tokens.manage`. Each call is audited with the acting token in the
//! transaction that does it, reads included.
//!
//! - A token never mints one with more power than its own: permissions,
//!   keyspaces and owners within its own, an expiry no later than its own
//!   ([`TokenGrant::covers`]). A request that asks for more is refused on
//!   the field that asks.
//! - An unlimited token sees every token. A token limited to some owners or
//!   keyspaces sees itself and the tokens it minted, which are within its
//!   limits by construction; any other is NOT_FOUND.
//! - A token may revoke itself: that is how the bootstrap token retires
//!   once a narrower one took over.

use serde_json::json;
use tokio::time::Instant;

use super::AdminAuth;
use crate::{
    domain::{
        KeyName, KeyspaceId, PageTokens, Reason, Timestamp, TokenGrant,
        admin_token::{AdminToken, AdminTokenRecord, TokenId},
    },
    error::{Error, Result},
    keys::{Actor, Page, open_page_token},
    store::TokenFilter,
};

/// The furthest ahead a token may expire, as for keys.
const MAX_EXPIRY_MS: i64 = 10 * 365 * 24 * 3600 * 1000;

/// A parsed CreateAdminToken.
#[derive(Clone, Debug)]
pub struct NewToken {
    pub name: KeyName,
    pub grant: TokenGrant,
}

/// What the audit log records of a minted token: never its secret.
fn described(t: &AdminTokenRecord) -> serde_json::Value {
    let g = &t.grant;
    json!({
        "token_id": t.id.as_str(),
        "name": t.name.as_str(),
        "permissions": g.permissions().iter().map(|p| p.as_str()).collect::<Vec<_>>(),
        "keyspaces": g.limits().keyspaces(),
        "owners": g.limits().owners().map(|o| o.iter().map(|o| o.as_str()).collect::<Vec<_>>()),
        "expires_at": g.expires_at().map(Timestamp::as_millis),
    })
}

/// Which tokens `actor` may see: `None` for all.
fn visible_to(actor: &Actor) -> Option<&str> {
    if actor.limits().is_unlimited() {
        None
    } else {
        // A limited actor is always a token: system actors are unlimited.
        Some(actor.token_id().unwrap_or(actor.name()))
    }
}

fn not_found(id: &TokenId) -> Error {
    Error::NotFound(format!("admin token {id}"))
}

/// What a ListAdminTokens page token is sealed to: the list, and which
/// tokens the caller may see.
fn canonical(visible_to: Option<&str>) -> String {
    json!(["admin_tokens", visible_to]).to_string()
}

impl AdminAuth {
    /// Mints a token on `actor`'s authority; the secret is shown once, by
    /// the caller. Takes effect on this replica at once, and on the others
    /// on their next miss or reload.
    pub async fn create_token(
        &self,
        new: NewToken,
        actor: &Actor,
    ) -> Result<(AdminToken, AdminTokenRecord)> {
        let now = self.clock.now();
        if let Some(at) = new.grant.expires_at() {
            if at <= now {
                return Err(Error::invalid("expire_time", "must be in the future"));
            }
            if at.as_millis() - now.as_millis() > MAX_EXPIRY_MS {
                return Err(Error::invalid(
                    "expire_time",
                    "must be at most 10 years ahead",
                ));
            }
        }
        actor
            .grant()
            .covers(&new.grant)
            .map_err(|e| Error::invalid(e.field, e.reason))?;
        for id in new.grant.limits().keyspaces().into_iter().flatten() {
            let exists = match id.parse::<KeyspaceId>() {
                Ok(id) => self.store.get_keyspace(&id).await?.is_some(),
                Err(_) => false,
            };
            if !exists {
                return Err(Error::invalid(
                    "keyspaces",
                    format!("`{id}` is not a keyspace"),
                ));
            }
        }
        let secret = AdminToken::generate().map_err(|e| Error::Internal(e.to_string()))?;
        let record = AdminTokenRecord {
            id: TokenId::generate(),
            name: new.name,
            grant: new.grant,
            created_at: now,
            created_by: Some(actor.minter().to_owned()),
            last_used_at: None,
            revoked_at: None,
            revoke_reason: None,
        };
        let audit = actor.event(now, "admin_token.created", described(&record));
        self.store
            .insert_token(&record, &secret.hash(), &audit)
            .await?;
        self.tokens.insert_local(secret.hash(), &record).await;
        tracing::info!(token_id = %record.id, by = actor.name(), "admin token minted");
        Ok((secret, record))
    }

    pub async fn get_token(&self, id: &TokenId, actor: &Actor) -> Result<AdminTokenRecord> {
        let audit = actor.event(
            self.clock.now(),
            "admin_token.read",
            json!({ "token_id": id.as_str() }),
        );
        self.store
            .read_token(id, visible_to(actor), &audit)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// A page of the tokens `actor` may see, by id. `page_token` is as the
    /// client sent it (empty for the first page), sealed by `tokens`.
    pub async fn list_tokens(
        &self,
        page_size: u32,
        page_token: &str,
        tokens: &PageTokens,
        actor: &Actor,
    ) -> Result<Page<AdminTokenRecord>> {
        let visible = visible_to(actor);
        let filter = canonical(visible);
        let after = open_page_token(tokens, page_token, &filter, |p| TokenId::parse(p).ok())?;
        let query = TokenFilter {
            visible_to: visible.map(str::to_owned),
            after,
            limit: page_size + 1,
        };
        let audit = actor.event(self.clock.now(), "admin_token.listed", json!({}));
        let items = self.store.list_tokens(&query, &audit).await?;
        Ok(Page::from_overfetch(items, page_size, |t| {
            tokens.seal(&filter, t.id.as_str())
        }))
    }

    /// Revokes token `id`. Revoking a revoked token changes nothing. This
    /// replica refuses the token once this returns; the others are woken
    /// by NOTIFY (PostgreSQL) and reload within one round trip, or within
    /// their reload interval if the wake-up is lost.
    /// With `include_minted`, also every token minted from it (see
    /// `TokenStore::revoke_token`); the token, and how many of those.
    pub async fn revoke_token(
        &self,
        id: &TokenId,
        reason: Reason,
        include_minted: bool,
        actor: &Actor,
    ) -> Result<(AdminTokenRecord, i64)> {
        let now = self.clock.now();
        let mut revoked = actor.event(
            now,
            "admin_token.revoked",
            json!({ "token_id": id.as_str(), "revoked_at": { "old": null, "new": now.as_millis() } }),
        );
        revoked.reason = Some(reason.as_str().to_owned());
        let unchanged = actor.event(
            now,
            "admin_token.read",
            json!({ "token_id": id.as_str(), "already_revoked": true }),
        );
        let token = self
            .store
            .revoke_token(
                id,
                visible_to(actor),
                include_minted,
                &reason,
                &revoked,
                &unchanged,
            )
            .await?
            .ok_or_else(|| not_found(id))?;
        // A read that starts after the commit: this replica no longer
        // knows the token when the caller hears back.
        self.tokens.reload_after(Instant::now()).await?;
        tracing::info!(token_id = %id, by = actor.name(), "admin token revoked");
        Ok(token)
    }
}
