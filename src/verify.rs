//! The one Verify core: [`Verifier`] owns the index, the usage limits, the
//! usage recorder, the replica state and the clock, and answers every
//! verification: the unary and streaming RPCs and Envoy's ext_authz are
//! thin adapters over [`Verifier::verify`] (in `grpc/`).
//!
//! A verification, in order:
//! 1. the replica's gate: the index is loaded, and the change log was read
//!    recently enough (`--fail-closed-after`), or UNAVAILABLE;
//! 2. [`evaluate`]: parse, look up, the caller's keyspaces and owners,
//!    [`decide`] (pure), and the per-replica token bucket of
//!    `restrictions.rate_limit`;
//! 3. for a call that passed: the key's and its owner's named limits and
//!    credits, all or nothing (`crate::limits`);
//! 4. the usage count, and the latency metric.
//!
//! Nothing here touches the database, except step 3 for a pool that is
//! empty on this replica: that call waits for one lease, with a deadline.

mod decide;

use std::{sync::Arc, time::Duration};

pub use crate::domain::{
    required::{AnyOf, NoGroups, Unmet, granted},
    verdict::{Class, Code, Decision, WouldDeny},
};
pub use decide::{Request, decide};

use crate::{
    domain::{Clock, KeyId, Timestamp, TokenLimits, mono_nanos, quota::Subject, restriction::Take},
    error::Error,
    index::{Entry, KeyIndex, Legacy, ReplicaState},
    limits::{Charge, Charges, Costs, Limiter, OwnerQuota, Report, Round},
    metrics::Metrics,
    usage::Recorder,
};

/// Why a stale replica refuses under `--fail-closed-after`.
pub const FAIL_CLOSED: &str = "this replica lost contact with the database (fail-closed)";
/// Why a call on a key with usage limits could not be decided.
pub const LIMITS_UNAVAILABLE: &str = "usage limits could not be read from the database";

/// What Verify answers: the decision, the key when it exists, and the state
/// of its limits.
#[derive(Debug)]
pub struct Outcome<'a> {
    pub decision: Decision<'a>,
    pub entry: Option<Arc<Entry>>,
    /// A fixed explanation for denials; empty when valid.
    pub detail: &'static str,
    /// The per-replica bucket of `restrictions.rate_limit`, when the key has one.
    pub rate_limit_remaining: Option<u32>,
    pub retry_after: Option<Duration>,
    /// Each named limit and balance the call answered to (empty for none).
    pub limits: Vec<Report>,
    /// The key's owner, when it has metadata or limits set.
    pub owner: Option<Arc<OwnerQuota>>,
}

/// The parts a [`Verifier`] is made of.
pub struct Parts {
    pub index: Arc<KeyIndex>,
    pub usage: Arc<Recorder>,
    pub limiter: Arc<Limiter>,
    pub replica: Arc<ReplicaState>,
    pub clock: Clock,
    pub metrics: Metrics,
    /// Refuse to answer when the change log was last read longer ago.
    pub fail_closed_after: Option<Duration>,
}

/// The one Verify core. Cheap to clone.
#[derive(Clone)]
pub struct Verifier(Arc<Parts>);

impl Verifier {
    pub fn new(parts: Parts) -> Self {
        Self(Arc::new(parts))
    }

    pub fn index(&self) -> &KeyIndex {
        &self.0.index
    }

    /// The replica's gate: UNAVAILABLE while the index loads, or while the
    /// replica fails closed.
    pub fn ready(&self) -> Result<(), Error> {
        if !self.0.index.is_ready() {
            return Err(Error::Unavailable("the key index is still loading"));
        }
        if self.0.replica.fail_closed(self.0.fail_closed_after) {
            return Err(Error::Unavailable(FAIL_CLOSED));
        }
        Ok(())
    }

    /// Verifies `key` for a caller confined to `within`. Awaits only to
    /// lease for an empty limit pool.
    pub async fn verify<'a>(
        &self,
        key: &str,
        request: &Request<'a>,
        within: &TokenLimits,
    ) -> Result<Outcome<'a>, Error> {
        let started = std::time::Instant::now();
        self.ready()?;
        let p = &*self.0;
        let now = p.clock.now();
        let mut o = evaluate(&p.index, &p.usage, key, request, within, now, mono_nanos);
        // Taken out and put back, so the call's one `Arc` of the entry is
        // the one `evaluate` made.
        if let Some(entry) = o.entry.take() {
            let owner = p.limiter.owner(entry.owner_id());
            if o.decision.is_valid() {
                self.charge(&mut o, &entry, owner.as_deref(), request, now)
                    .await?;
            }
            o.owner = owner;
            p.usage
                .record(entry.runtime(), &o.decision, request.client_ip, now);
            o.entry = Some(entry);
        }
        p.metrics
            .verify_latency
            .record(started.elapsed().as_secs_f64(), &[]);
        Ok(o)
    }

    /// Charges the key's and its owner's limits, all or nothing.
    async fn charge(
        &self,
        o: &mut Outcome<'_>,
        entry: &Entry,
        owner: Option<&OwnerQuota>,
        request: &Request<'_>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let key = entry.restrictions().quota.as_deref();
        let owner = owner.filter(|q| q.credits || !q.limits.is_empty());
        if key.is_none() && owner.is_none() {
            return Ok(());
        }
        let lim = &self.0.limiter;
        let key_pools = match (key, entry.pools()) {
            (Some(q), Some(cache)) => {
                let pool = q.pool.as_ref().map_or(entry.packed_id(), KeyId::pack);
                Some(lim.pools_of(cache, &Subject::Key(pool), &q.limits, q.credits))
            }
            _ => None,
        };
        let owner_pools = owner.map(|q| {
            let subject = Subject::Owner(entry.owner_arc());
            lim.pools_of(&q.pools, &subject, &q.limits, q.credits)
        });
        let charges = Charges {
            key: key_pools,
            owner: owner_pools,
        };
        let costs = Costs {
            credits: request.cost,
            limits: request.limit_costs,
        };
        // The first round may lease what it found short; the next ones deny
        // what the store had no more of, and lease again what other calls
        // here spent first. A call that cannot be decided within the lease
        // deadline (the store is slow, or gone) is UNAVAILABLE: fail closed.
        let mut deadline = None;
        let mut leased: Vec<Arc<crate::limits::Pool>> = Vec::new();
        loop {
            let round = match leased.is_empty() {
                true => Round::First,
                false => Round::Again(&leased),
            };
            match lim.charge(&charges, &costs, round, now.as_millis()) {
                Charge::Paid(reports) => {
                    o.limits = reports;
                    return Ok(());
                }
                Charge::Denied(code, reports) => {
                    o.decision.code = code;
                    o.detail = code.detail();
                    o.retry_after = reports.iter().find_map(|r| r.retry_after).or(o.retry_after);
                    o.limits = reports;
                    return Ok(());
                }
                Charge::Lease(pools) => {
                    // The clock is read only once a call has to wait.
                    let now = tokio::time::Instant::now();
                    let until = *deadline.get_or_insert(now + crate::limits::LEASE_WAIT);
                    leased = pools.iter().map(|(p, _)| Arc::clone(p)).collect();
                    if now >= until || !self.0.limiter.lease(pools).await {
                        return Err(Error::Unavailable(LIMITS_UNAVAILABLE));
                    }
                }
            }
        }
    }
}

/// [`evaluate`] and the usage count, for a caller with no credential
/// limits and keys without usage limits: what the benches and the unit
/// tests drive. Never touches the database.
pub fn verify<'a>(
    index: &KeyIndex,
    usage: &Recorder,
    key: &str,
    request: &Request<'a>,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Outcome<'a> {
    let o = evaluate(
        index,
        usage,
        key,
        request,
        &TokenLimits::NONE,
        now,
        mono_nanos,
    );
    if let Some(entry) = &o.entry {
        usage.record(entry.runtime(), &o.decision, request.client_ip, now);
    }
    o
}

/// Parses `key`, looks it up in `index`, decides and takes a token of the
/// key's per-replica bucket, for a caller confined to `within` (the verify
/// listener's credential): a key outside it answers `NOT_FOUND`, exactly as
/// a key that does not exist. Malformed and unknown keys are counted here;
/// a found key's call is counted by the caller, once its limits are charged.
/// Allocates nothing but the `Arc` clone of the entry.
pub fn evaluate<'a>(
    index: &KeyIndex,
    usage: &Recorder,
    key: &str,
    request: &Request<'a>,
    within: &TokenLimits,
    now: Timestamp,
    mono_nanos: impl FnOnce() -> u64,
) -> Outcome<'a> {
    let found = match crate::domain::api_key::parse(key) {
        Ok(presented) => index.get(&presented.hash),
        // Not a keysmith key: perhaps one of a declared legacy format.
        Err(e) => match index.legacy(key, now, |slot| {
            request.keyspaces.admits(slot) && admits_slot(index, within, slot)
        }) {
            Legacy::Found(entry) => Some(entry),
            Legacy::Missing => None,
            Legacy::NoShape => {
                usage.unknown(Code::Malformed);
                return bare(Code::Malformed, e.detail());
            }
            Legacy::Retired => {
                return bare(Code::FormatRetired, Code::FormatRetired.detail());
            }
        },
    };
    let Some(entry) = found.filter(|e| request.keyspaces.admits(e.keyspace())) else {
        usage.unknown(Code::NotFound);
        return bare(Code::NotFound, Code::NotFound.detail());
    };
    if !within.is_unlimited() && !admitted(index, within, &entry) {
        usage.unknown(Code::NotFound);
        return bare(Code::NotFound, Code::NotFound.detail());
    }
    let mut decision = decide(&entry, request, now);
    let (mut remaining, mut retry_after) = (None, None);
    if let (true, Some(rule)) = (decision.is_valid(), &entry.restrictions().rate_limit) {
        // The monotonic clock is read only for keys with a rate limit.
        match entry.runtime().take_token(rule.allow, mono_nanos()) {
            Take::Allowed { remaining: r } => remaining = Some(r),
            Take::Limited { retry_after: after } if rule.enforced() => {
                decision.code = Code::RateLimited;
                (remaining, retry_after) = (Some(0), Some(after));
            }
            Take::Limited { .. } => {
                decision.would_deny.insert(Code::RateLimited);
                remaining = Some(0);
            }
        }
    }
    Outcome {
        detail: decision.code.detail(),
        decision,
        entry: Some(entry),
        rate_limit_remaining: remaining,
        retry_after,
        limits: Vec::new(),
        owner: None,
    }
}

fn bare(code: Code, detail: &'static str) -> Outcome<'static> {
    Outcome {
        decision: Decision::of(code),
        entry: None,
        detail,
        rate_limit_remaining: None,
        retry_after: None,
        limits: Vec::new(),
        owner: None,
    }
}

#[cfg(test)]
mod alloc;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

/// Whether keys of `slot` are inside a limited credential's keyspaces.
fn admits_slot(index: &KeyIndex, within: &TokenLimits, slot: crate::index::KeyspaceSlot) -> bool {
    within
        .keyspaces()
        .is_none_or(|ks| ks.iter().any(|k| index.keyspace_slot(k) == Some(slot)))
}

/// Whether `entry` is inside a limited credential's keyspaces and owners. A
/// few map lookups, made only for a limited credential.
fn admitted(index: &KeyIndex, within: &TokenLimits, entry: &Entry) -> bool {
    within.admits_owner(entry.owner_id()) && admits_slot(index, within, entry.keyspace())
}
