//! The verify listener's own credential (`--verify-auth required`): an
//! admin token with `verify` (Verify, VerifyStream, ext_authz's Check) or
//! `watch` (WatchRevocations), presented as `authorization: Bearer` on the
//! gRPC call itself.
//!
//! Off by default, so deployments that rely on the network (or on mTLS) to
//! keep the listener private keep working. The check is a hash and a map
//! lookup in the admin token set, in memory: no database, no await, no
//! allocation. A miss does not reload the set (an unknown token on the hot
//! path must not reach the database); a token minted on another replica
//! works here after the next reload, within the reload interval.

use std::sync::Arc;

use super::{TokenEntry, TokenSet};
use crate::{
    domain::{Clock, Permission, TokenLimits, admin_token},
    error::{Error, Result},
};

/// Whether the verify listener asks callers for a credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyAuth {
    /// Anyone who reaches the listener may call it (the default).
    #[default]
    Off,
    /// Every call needs an admin token with the call's permission.
    Required,
}

static NO_LIMITS: TokenLimits = TokenLimits::NONE;

/// Checks the verify listener's credential.
#[derive(Clone)]
pub struct VerifyGate {
    auth: VerifyAuth,
    tokens: Arc<TokenSet>,
    clock: Clock,
}

/// Who a verify-listener call was let in as: nobody in particular (the
/// gate is off), or a token, held for the call (or the stream).
#[derive(Clone, Debug)]
pub struct Admitted(Option<Arc<TokenEntry>>);

impl Admitted {
    /// The token's keyspaces and owners; a key outside them answers
    /// NOT_FOUND, an event outside them is not sent.
    pub fn limits(&self) -> &TokenLimits {
        self.0.as_ref().map_or(&NO_LIMITS, |e| e.grant.limits())
    }
}

impl VerifyGate {
    pub(super) fn new(auth: VerifyAuth, tokens: Arc<TokenSet>, clock: Clock) -> Self {
        Self {
            auth,
            tokens,
            clock,
        }
    }

    /// Lets a call in, or refuses it: UNAUTHENTICATED for a missing,
    /// malformed, unknown, expired or revoked token (one answer, so nothing
    /// tells them apart), PERMISSION_DENIED naming `needed` for a token
    /// without it.
    #[inline]
    pub fn admit(&self, bearer: Option<&str>, needed: Permission) -> Result<Admitted> {
        if self.auth == VerifyAuth::Off {
            return Ok(Admitted(None));
        }
        let token = bearer
            .filter(|t| admin_token::well_formed(t))
            .ok_or(Error::Unauthenticated)?;
        let entry = self
            .tokens
            .get(&admin_token::hash_presented(token))
            .ok_or(Error::Unauthenticated)?;
        let now = self.clock.now();
        if !entry.is_live(now) {
            return Err(Error::Unauthenticated);
        }
        if !entry.grant.permissions().contains(needed) {
            return Err(Error::PermissionDenied(needed.denial()));
        }
        entry.touch(now);
        Ok(Admitted(Some(entry)))
    }

    /// Whether a stream let in earlier may go on: its token is neither
    /// revoked (as of the last reload) nor expired. One atomic load.
    #[inline]
    pub fn still_admitted(&self, admitted: &Admitted) -> bool {
        admitted
            .0
            .as_ref()
            .is_none_or(|e| e.is_live(self.clock.now()))
    }
}
