//! The unused-key policy's thresholds, per server and per owner.

use std::time::Duration;

/// Staged handling of unused keys: flag (`key.stale`), then optionally
/// disable, then optionally revoke. `dry_run` reports the disable and revoke
/// stages without acting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StalePolicy {
    pub flag_after: Duration,
    pub disable_after: Option<Duration>,
    pub revoke_after: Option<Duration>,
    pub dry_run: bool,
}

impl StalePolicy {
    /// Checks the stages are in order: flag, then disable, then revoke.
    pub fn new(
        flag_after: Duration,
        disable_after: Option<Duration>,
        revoke_after: Option<Duration>,
        dry_run: bool,
    ) -> Result<Self, (&'static str, &'static str)> {
        if flag_after < Duration::from_secs(86_400) {
            return Err(("flag_after", "must be at least a day"));
        }
        if disable_after.is_some_and(|d| d < flag_after) {
            return Err(("disable_after", "must not come before flag_after"));
        }
        if revoke_after.is_some_and(|r| r < flag_after || disable_after.is_some_and(|d| r < d)) {
            return Err((
                "revoke_after",
                "must not come before flag_after or disable_after",
            ));
        }
        Ok(Self {
            flag_after,
            disable_after,
            revoke_after,
            dry_run,
        })
    }
}
