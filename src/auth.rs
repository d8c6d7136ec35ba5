//! Admin authentication: bearer tokens, stored as SHA-256 only, and a limit
//! on failures per peer.

mod failures;

use std::{net::IpAddr, sync::Arc, time::Instant};

pub use failures::{AuthLimits, FailedAuth, Failure};
use serde_json::json;

use crate::{
    domain::{
        Timestamp,
        admin_token::{self, AdminToken},
    },
    error::{Error, Result},
    keys::Actor,
    store::{AdminTokenInfo, NewAuditEvent, Store, WriteBatch},
};

#[derive(Clone)]
pub struct AdminAuth {
    store: Arc<dyn Store>,
    failures: Arc<FailedAuth>,
}

impl AdminAuth {
    pub fn new(store: Arc<dyn Store>, limits: AuthLimits) -> Self {
        Self {
            store,
            failures: Arc::new(FailedAuth::new(limits)),
        }
    }

    /// Resolves a presented bearer token to the actor it names. `peer` is
    /// the caller's address, for the limit on failures.
    ///
    /// No comparison ever runs over a secret: a token of the wrong shape is
    /// refused on its shape alone, and a well-formed one is looked up by its
    /// SHA-256. An index lookup's timing can only tell how much of an
    /// attacker's own hash matched a stored hash, which gives nothing
    /// without a preimage.
    pub async fn authenticate(&self, bearer: Option<&str>, peer: Option<IpAddr>) -> Result<Actor> {
        if let Err(retry_after) = self.failures.check(peer, Instant::now()) {
            return Err(Error::ResourceExhausted(format!(
                "too many failed authentications from this address; retry in {} s",
                retry_after.as_secs().max(1)
            )));
        }
        let (found, why) = match bearer {
            None => (None, "no token"),
            Some(t) if !admin_token::well_formed(t) => (None, "malformed token"),
            Some(t) => (
                self.store
                    .find_admin_token(&admin_token::hash_presented(t))
                    .await?,
                "unknown token",
            ),
        };
        match found {
            Some(info) => Ok(Actor(format!("admin:{}", info.id))),
            None => {
                self.failed(peer, why).await;
                Err(Error::Unauthenticated)
            }
        }
    }

    /// Counts a failure and audits the first of a peer's window and the
    /// one that blocks it. A failed audit write is logged, not returned:
    /// the caller gets UNAUTHENTICATED either way.
    async fn failed(&self, peer: Option<IpAddr>, why: &'static str) {
        let failure = self.failures.fail(peer, Instant::now());
        let action = match failure {
            Failure::First => "admin.auth_failed",
            Failure::Blocking => "admin.auth_blocked",
            Failure::Again => return,
        };
        let peer = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tracing::warn!(%peer, reason = why, action, "admin authentication failed");
        let event = NewAuditEvent {
            at: Timestamp::now(),
            actor: format!("peer:{peer}"),
            action,
            key_id: None,
            owner_id: None,
            reason: Some(why.to_owned()),
            changes: json!({ "peer": peer }),
            request_id: None,
        };
        let batch = WriteBatch {
            audit: vec![event],
            ..WriteBatch::default()
        };
        if let Err(e) = self.store.write(batch).await {
            tracing::warn!(error = %e, "cannot audit a failed authentication");
        }
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
