//! Admin authentication: bearer tokens, stored as SHA-256 only.

use std::sync::Arc;

use crate::{
    domain::{
        Timestamp,
        admin_token::{self, AdminToken},
    },
    error::{Error, Result},
    keys::Actor,
    store::{AdminTokenInfo, Store},
};

#[derive(Clone)]
pub struct AdminAuth {
    store: Arc<dyn Store>,
}

impl AdminAuth {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Resolves a presented bearer token to the actor it names.
    ///
    /// The token is hashed and looked up by hash, so no comparison ever runs
    /// over the secret itself.
    pub async fn authenticate(&self, bearer: Option<&str>) -> Result<Actor> {
        let token = bearer.ok_or(Error::Unauthenticated)?;
        let info = self
            .store
            .find_admin_token(&admin_token::hash_presented(token))
            .await?
            .ok_or(Error::Unauthenticated)?;
        Ok(Actor(format!("admin:{}", info.id)))
    }

    /// Mints a token and stores its hash. The caller shows it once.
    pub async fn mint(&self, name: &str) -> Result<(AdminToken, AdminTokenInfo)> {
        let token = AdminToken::generate().map_err(|e| Error::Internal(e.to_string()))?;
        let info = AdminTokenInfo {
            id: admin_token::new_token_id(),
            name: name.to_owned(),
        };
        self.store
            .insert_admin_token(&info, &token.hash(), Timestamp::now())
            .await?;
        Ok((token, info))
    }

    /// Mints the first token of an empty installation, so a newcomer can
    /// start without reading docs. `None` when tokens already exist.
    pub async fn mint_bootstrap(&self) -> Result<Option<AdminToken>> {
        if self.store.count_admin_tokens().await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.mint("bootstrap").await?.0))
    }
}
