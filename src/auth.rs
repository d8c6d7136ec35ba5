//! Admin authentication: bearer tokens, stored as SHA-256 only and held in
//! memory (`tokens.rs`); a limit on failures per peer (`failures.rs`); and
//! failures audited in aggregate (`summary.rs`).

mod failures;
mod summary;
mod tokens;

use std::{net::IpAddr, sync::Arc, time::Instant};

pub use failures::{AuthLimits, FailedAuth, Failure};
pub use summary::{AuthAuditor, FailureLog, SAMPLE_PEERS};
pub use tokens::{TokenRefresher, TokenSet};

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
    limits: AuthLimits,
    tokens: Arc<TokenSet>,
    failures: Arc<FailedAuth>,
    log: Arc<FailureLog>,
}

impl AdminAuth {
    pub fn new(store: Arc<dyn Store>, limits: AuthLimits) -> Self {
        Self {
            tokens: Arc::new(TokenSet::new(store.clone(), limits.min_reload_gap)),
            failures: Arc::new(FailedAuth::new(limits)),
            log: Arc::new(FailureLog::new(limits.max_peers)),
            store,
            limits,
        }
    }

    /// Resolves a presented bearer token to the actor it names. `peer` is
    /// the caller's address, for the limit on failures.
    ///
    /// No comparison ever runs over a secret: a token of the wrong shape is
    /// refused on its shape alone, and a well-formed one is looked up in
    /// memory by its SHA-256. A known token is accepted whatever its
    /// address did before; only a miss consults the limit.
    pub async fn authenticate(&self, bearer: Option<&str>, peer: Option<IpAddr>) -> Result<Actor> {
        let hash = match bearer {
            None => return Err(self.refuse(peer, "no token")),
            Some(t) if !admin_token::well_formed(t) => {
                return Err(self.refuse(peer, "malformed token"));
            }
            Some(t) => admin_token::hash_presented(t),
        };
        if let Some(info) = self.tokens.get(&hash) {
            return Ok(actor(&info));
        }
        // A miss may be a token minted since the last reload. A blocked
        // peer's miss waits for the periodic reload instead of causing one.
        let asked = tokio::time::Instant::now();
        if self.failures.check(peer, Instant::now()).is_ok() {
            self.tokens.reload_after(asked).await?;
        } else {
            let patience = self.limits.token_reload_interval * 2;
            self.tokens.wait_for_reload_after(asked, patience).await;
        }
        match self.tokens.get(&hash) {
            Some(info) => Ok(actor(&info)),
            None => Err(self.refuse(peer, "unknown token")),
        }
    }

    /// Counts a refusal, and answers it: UNAUTHENTICATED, or
    /// RESOURCE_EXHAUSTED once the peer is blocked.
    fn refuse(&self, peer: Option<IpAddr>, why: &'static str) -> Error {
        let now = Instant::now();
        if let Err(retry_after) = self.failures.check(peer, now) {
            self.log.record(peer, why, None);
            return Error::ResourceExhausted(format!(
                "too many failed authentications from this address; retry in {} s",
                retry_after.as_secs().max(1)
            ));
        }
        let failure = self.failures.fail(peer, now);
        self.log.record(peer, why, Some(failure));
        Error::Unauthenticated
    }

    /// The background tasks authentication needs: the periodic reload of
    /// the token set, and the writer of failure summaries.
    pub fn tasks(&self) -> (TokenRefresher, AuthAuditor) {
        let refresher = TokenRefresher {
            tokens: self.tokens.clone(),
            interval: self.limits.token_reload_interval,
        };
        let auditor = AuthAuditor {
            store: self.store.clone(),
            log: self.log.clone(),
            interval: self.limits.audit_interval,
        };
        (refresher, auditor)
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

fn actor(info: &AdminTokenInfo) -> Actor {
    Actor(format!("admin:{}", info.id))
}
