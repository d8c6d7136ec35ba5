//! Admin authentication: bearer tokens, stored as SHA-256 only and held in
//! memory (`tokens.rs`); a limit on failures per peer (`failures.rs`);
//! failures audited in aggregate (`summary.rs`); tokens as resources, with
//! permissions and limits (`manage.rs`); and the verify listener's optional
//! credential, checked from the same memory (`gate.rs`).

mod failures;
mod gate;
mod manage;
mod refresher;
mod summary;
mod tokens;

use std::{net::IpAddr, sync::Arc, time::Instant};

pub use failures::{AuthLimits, FailedAuth, Failure};
pub use gate::{Admitted, VerifyAuth, VerifyGate};
pub use manage::NewToken;
pub use refresher::TokenRefresher;
pub use summary::{AuthAuditor, FailureLog, SAMPLE_PEERS};
pub use tokens::{TokenEntry, TokenSet};

use crate::{
    domain::{
        Clock, KeyName, TokenGrant,
        admin_token::{self, AdminToken, AdminTokenRecord},
    },
    error::{Error, Result},
    keys::Actor,
    store::Store,
};

#[derive(Clone)]
pub struct AdminAuth {
    store: Arc<dyn Store>,
    limits: AuthLimits,
    tokens: Arc<TokenSet>,
    failures: Arc<FailedAuth>,
    log: Arc<FailureLog>,
    /// "Now" for token expiry and minting.
    clock: Clock,
}

impl AdminAuth {
    pub fn new(store: Arc<dyn Store>, limits: AuthLimits, clock: Clock) -> Self {
        Self {
            tokens: Arc::new(TokenSet::new(store.clone(), limits.min_reload_gap)),
            failures: Arc::new(FailedAuth::new(limits)),
            log: Arc::new(FailureLog::new(limits.max_peers)),
            store,
            limits,
            clock,
        }
    }

    /// Resolves a presented bearer token to the actor it names. `peer` is
    /// the caller's address, for the limit on failures.
    ///
    /// No comparison ever runs over a secret: a token of the wrong shape is
    /// refused on its shape alone, and a well-formed one is looked up in
    /// memory by its SHA-256. A known token is accepted whatever its
    /// address did before; only a miss consults the limit. An expired token
    /// is refused like an unknown one.
    pub async fn authenticate(&self, bearer: Option<&str>, peer: Option<IpAddr>) -> Result<Actor> {
        let hash = match bearer {
            None => return Err(self.refuse(peer, "no token")),
            Some(t) if !admin_token::well_formed(t) => {
                return Err(self.refuse(peer, "malformed token"));
            }
            Some(t) => admin_token::hash_presented(t),
        };
        if let Some(entry) = self.tokens.get(&hash) {
            return self.admit(&entry, peer);
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
            Some(entry) => self.admit(&entry, peer),
            None => Err(self.refuse(peer, "unknown token")),
        }
    }

    fn admit(&self, entry: &TokenEntry, peer: Option<IpAddr>) -> Result<Actor> {
        let now = self.clock.now();
        if !entry.is_live(now) {
            return Err(self.refuse(peer, "expired token"));
        }
        entry.touch(now);
        Ok(entry.actor())
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

    /// Reads the token set from the store (at startup; later reloads are
    /// the refresher's).
    pub async fn load(&self) -> Result<(), crate::store::StoreError> {
        self.tokens.reload_after(tokio::time::Instant::now()).await
    }

    /// The verify listener's credential check, over this token set.
    pub fn verify_gate(&self, auth: VerifyAuth) -> VerifyGate {
        VerifyGate::new(auth, self.tokens.clone(), self.clock.clone())
    }

    /// The background tasks authentication needs: the reload of the token
    /// set (periodic, and woken by revocations on `replica`'s peers), and
    /// the writer of failure summaries.
    pub fn tasks(&self, replica: &str) -> (TokenRefresher, AuthAuditor) {
        let refresher = TokenRefresher {
            tokens: self.tokens.clone(),
            interval: self.limits.token_reload_interval,
            wakeups: self.store.wakeups(),
            replica: replica.to_owned(),
        };
        let auditor = AuthAuditor {
            store: self.store.clone(),
            log: self.log.clone(),
            interval: self.limits.audit_interval,
        };
        (refresher, auditor)
    }

    /// Mints a token with every permission, as `system:cli` (the offline
    /// command, and tests). The caller shows it once.
    pub async fn mint(&self, name: &str) -> Result<(AdminToken, AdminTokenRecord)> {
        let name = KeyName::parse(name).map_err(|e| Error::invalid("name", e))?;
        let new = NewToken {
            name,
            grant: TokenGrant::FULL,
        };
        self.create_token(new, &Actor::system("system:cli")).await
    }

    /// Mints the first token of an empty installation, with every
    /// permission, so a newcomer can start without reading docs. `None`
    /// when tokens already exist.
    pub async fn mint_bootstrap(&self) -> Result<Option<AdminToken>> {
        if self.store.count_admin_tokens().await? > 0 {
            return Ok(None);
        }
        let new = NewToken {
            name: KeyName::parse("bootstrap").map_err(|e| Error::Internal(e.to_string()))?,
            grant: TokenGrant::FULL,
        };
        let actor = Actor::system("system:bootstrap");
        Ok(Some(self.create_token(new, &actor).await?.0))
    }
}
