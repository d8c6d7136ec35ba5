//! Usage limits held across replicas: credits and named rate limits, each
//! an authoritative count in the store that replicas lease blocks of
//! (`pool.rs`). The Verify path spends from a block with one atomic
//! compare-and-swap per counter; the keeper (`keeper.rs`) leases the next
//! block before this one runs out, sized from this replica's own recent
//! rate, and gives back what it holds when idle or shutting down.
//!
//! Why this holds:
//! - a unit is taken out of the store's count when it is leased, and a
//!   replica spends only what it leased: a balance is never overspent and a
//!   bucket never admits more than `burst + rate × time`, with any number of
//!   replicas;
//! - a credit lease expires ([`LEASE_TTL`]) unless renewed: a replica that
//!   died holding credits forfeits them then (counted as spent, never handed
//!   out twice); rate tokens it held simply lapse, the bucket refills;
//! - only an empty pool waits on the store, for one lease, with a deadline.

mod keeper;
mod pool;

use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicI64, Ordering::Relaxed},
    },
    time::Duration,
};

use dashmap::DashMap;

pub use pool::{Kind, Pool, Take};

use crate::{
    domain::{
        Clock, Metadata, Timestamp,
        quota::{Limits, Subject},
        verdict::Code,
    },
    store::{Owner, Store},
};

/// How long a credit lease lasts unless its replica renews it (every second
/// while it holds credits). A replica killed holding credits forfeits them
/// at most this long after it died.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How long a call may wait for a lease before the replica answers UNAVAILABLE.
pub const LEASE_WAIT: Duration = Duration::from_millis(500);

/// An owner's limits and metadata, as this replica last read them.
#[derive(Debug, Default)]
pub struct OwnerQuota {
    pub metadata: Metadata,
    pub limits: Limits,
    pub credits: bool,
    /// Its pools, made on its first charge.
    pub pools: Pools,
}

/// Which counter of a subject: its credits, or its named limit at an index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PoolKey {
    subject: Subject,
    slot: u8,
}

/// Whose limit a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    Key,
    Owner,
}

/// One limit's state after a call, for the response.
#[derive(Clone, Debug)]
pub struct Report {
    pub pool: Arc<Pool>,
    pub holder: Holder,
    /// Remaining units (credits, or tokens of a named limit).
    pub remaining: i64,
    /// When the count is next whole again: a bucket full, a balance refilled.
    pub reset_at: Option<Timestamp>,
    /// For RATE_LIMITED: when one call's worth will be there again.
    pub retry_after: Option<Duration>,
}

/// How a charge went.
#[derive(Debug)]
pub enum Charge {
    /// Every counter paid; their states.
    Paid(Vec<Report>),
    /// One could not: its code, and every counter's state (nothing spent).
    Denied(Code, Vec<Report>),
    /// These pools must lease before the call can be decided.
    Lease(Vec<(Arc<Pool>, i64)>),
}

/// Which attempt at a charge this is.
#[derive(Clone, Copy, Debug)]
pub enum Round<'a> {
    First,
    /// After a lease of these pools.
    Again(&'a [Arc<Pool>]),
}

impl Round<'_> {
    /// Whether a short pool denies the call: only one this call just
    /// leased, whose store count is fresh. Another pool's count may be old
    /// (a top-up, or a give-back, since it was read): it leases first.
    fn denies_short(self, pool: &Arc<Pool>) -> bool {
        matches!(self, Round::Again(leased) if leased.iter().any(|p| Arc::ptr_eq(p, pool)))
            && !pool.is_cold()
            && pool.store_empty()
    }
}

/// What a call costs: credits, and tokens of each named limit (1 unless named).
#[derive(Clone, Copy, Debug)]
pub struct Costs<'a> {
    pub credits: u32,
    pub limits: Option<&'a HashMap<String, u32>>,
}

impl Default for Costs<'_> {
    fn default() -> Self {
        Self {
            credits: 1,
            limits: None,
        }
    }
}

impl Costs<'_> {
    fn of(&self, name: &str) -> i64 {
        i64::from(self.limits.and_then(|m| m.get(name)).copied().unwrap_or(1))
    }
}

/// The limits a call answers to: its key's pools and its owner's.
pub struct Charges<'a> {
    pub key: Option<&'a [Arc<Pool>]>,
    pub owner: Option<&'a [Arc<Pool>]>,
}

/// A holder's pools, made on its first charge ([`Limiter::pools_of`]).
#[derive(Debug, Default)]
pub struct Pools(std::sync::OnceLock<Box<[Arc<Pool>]>>);

/// A cache beside a value, not part of it: two holders with equal limits
/// are equal whatever their pools.
impl PartialEq for Pools {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Pools {}

pub struct Limiter {
    store: Arc<dyn Store>,
    replica: String,
    clock: Clock,
    pools: DashMap<PoolKey, Arc<Pool>>,
    owners: RwLock<HashMap<Arc<str>, Arc<OwnerQuota>>>,
    /// Whether any owner has anything set: until then, Verify reads this
    /// flag and takes no lock.
    has_owners: AtomicBool,
    /// Wall-clock ms of the last owner reload.
    owners_read: AtomicI64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("replica", &self.replica)
            .field("pools", &self.pools.len())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, replica: String, clock: Clock) -> Self {
        Self {
            store,
            replica,
            clock,
            pools: DashMap::new(),
            owners: RwLock::default(),
            has_owners: AtomicBool::new(false),
            owners_read: AtomicI64::new(0),
        }
    }

    /// The owner's limits and metadata, if it has any set.
    #[inline]
    pub fn owner(&self, id: &str) -> Option<Arc<OwnerQuota>> {
        if !self.has_owners.load(Relaxed) {
            return None;
        }
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        if owners.is_empty() {
            return None;
        }
        owners.get(id).cloned()
    }

    /// Applies an owner written here at once (other replicas reload it).
    pub fn put_owner(&self, o: &Owner) {
        let q = Arc::new(OwnerQuota {
            metadata: o.metadata.clone(),
            limits: o.limits.clone(),
            credits: o.credits,
            pools: Pools::default(),
        });
        self.owners
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(o.id.as_str().into(), q);
        self.has_owners.store(true, Relaxed);
    }

    /// An admin changed the balance named `subject` (the store's name): a
    /// pool that found it empty asks again at once, and after a set or a
    /// decrement, which ended every lease, drops what it holds. Other
    /// replicas do the same at their next settle (within a second) or when
    /// their pool's empty spell ends (`CREDITS_DRY_MS`).
    pub fn credits_changed(&self, subject: &str, leases_ended: bool) {
        for p in self.pools.iter() {
            if p.subject == subject && p.kind == Kind::Credits {
                if leases_ended {
                    p.reset();
                } else {
                    p.dry_until.store(0, Relaxed);
                }
            }
        }
    }

    fn pool(&self, subject: &Subject, slot: u8, kind: Kind) -> Arc<Pool> {
        let key = PoolKey {
            subject: subject.clone(),
            slot,
        };
        if let Some(p) = self.pools.get(&key)
            && p.kind == kind
        {
            return Arc::clone(&p);
        }
        // First use, or the limit changed: a fresh pool. What the old one
        // held is given back by the keeper when it finds it orphaned.
        let p = Arc::new(Pool::new(subject.to_db(), kind));
        if let Some(old) = self.pools.insert(key, Arc::clone(&p)) {
            keeper::orphan(self, old);
        }
        p
    }

    /// The pools of a subject's limits (in order) and then its credits,
    /// made once per `cache` (an index entry's, or an owner's) and shared
    /// through the pool map by every holder of the same subject.
    pub fn pools_of<'c>(
        &self,
        cache: &'c Pools,
        subject: &Subject,
        limits: &Limits,
        credits: bool,
    ) -> &'c [Arc<Pool>] {
        cache.0.get_or_init(|| {
            let mut out: Vec<Arc<Pool>> = limits
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let kind = Kind::Tokens {
                        name: l.name.clone(),
                        rate: l.rate,
                    };
                    self.pool(subject, u8::try_from(i + 1).unwrap_or(u8::MAX), kind)
                })
                .collect();
            if credits {
                out.push(self.pool(subject, 0, Kind::Credits));
            }
            out.into()
        })
    }

    /// Charges a call to every counter it answers to, all or nothing: the
    /// key's pools, then its owner's. `now_ms` is the call's wall clock.
    /// After a lease ([`Round::Again`]), a pool that is short again denies
    /// when the store had nothing more to give at that lease: another round
    /// would only queue the call behind more leases. Short with more in the
    /// store (other calls here spent the new block first), it leases again.
    pub fn charge(
        &self,
        charges: &Charges<'_>,
        costs: &Costs<'_>,
        round: Round<'_>,
        now_ms: i64,
    ) -> Charge {
        let cost = |p: &Pool| match &p.kind {
            Kind::Credits => i64::from(costs.credits),
            Kind::Tokens { name, .. } => costs.of(name.as_str()),
        };
        let items = || {
            let key = charges
                .key
                .iter()
                .flat_map(|p| p.iter().map(|p| (p, Holder::Key)));
            let owner = charges
                .owner
                .iter()
                .flat_map(|p| p.iter().map(|p| (p, Holder::Owner)));
            key.chain(owner)
        };
        let mut lease = Vec::new();
        let mut denied = None;
        let mut taken = 0;
        let mut n = 0;
        for (i, (pool, _)) in items().enumerate() {
            n = i + 1;
            let c = cost(pool);
            if !lease.is_empty() {
                // Already leasing: lease for every other cold pool too, so
                // one wait covers the call.
                if pool.is_cold() {
                    lease.push((Arc::clone(pool), c));
                }
                continue;
            }
            match pool.take(c, now_ms) {
                Take::Taken => taken = i + 1,
                Take::Lease if round.denies_short(pool) => {
                    denied = Some(i);
                    break;
                }
                Take::Lease => lease.push((Arc::clone(pool), c)),
                Take::Out => {
                    denied = Some(i);
                    break;
                }
            }
        }
        if denied.is_some() || !lease.is_empty() {
            for (pool, _) in items().take(taken) {
                pool.untake(cost(pool));
            }
        }
        if !lease.is_empty() {
            return Charge::Lease(lease);
        }
        let mut reports = Vec::with_capacity(n.max(taken));
        let mut code = Code::Valid;
        for (i, (pool, holder)) in items().enumerate() {
            let failed = denied == Some(i);
            if failed {
                code = match pool.kind {
                    Kind::Credits => Code::UsageExceeded,
                    Kind::Tokens { .. } => Code::RateLimited,
                };
            }
            reports.push(report(pool, holder, cost(pool), failed, now_ms));
        }
        match denied {
            None => Charge::Paid(reports),
            Some(_) => Charge::Denied(code, reports),
        }
    }

    /// Leases for each pool at least its cost (one lease in flight per
    /// pool; others wait for it). `false` when the store did not answer in
    /// time.
    pub async fn lease(&self, pools: Vec<(Arc<Pool>, i64)>) -> bool {
        for (pool, cost) in &pools {
            pool.demand.fetch_add((*cost).max(1), Relaxed);
        }
        let leased: Vec<Arc<Pool>> = pools.iter().map(|(p, _)| Arc::clone(p)).collect();
        let all = async {
            for (pool, cost) in pools {
                keeper::fetch(self, &pool, cost, true).await;
                // The call is still using what it leased: a lease slow
                // enough to outlast the keeper's idle time (SQLite's one
                // writer, busy) must not see its block given back before
                // the call takes from it.
                let now_ms = self.clock.now().as_millis();
                for p in &leased {
                    p.touch(now_ms);
                }
                if pool.is_cold() {
                    // The store did not answer with a grant.
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(LEASE_WAIT, all)
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(wait = ?LEASE_WAIT, "usage limit lease timed out");
                false
            })
    }
}

fn report(pool: &Arc<Pool>, holder: Holder, cost: i64, failed: bool, now_ms: i64) -> Report {
    let remaining = pool.remaining();
    let (reset_at, retry_after) = match &pool.kind {
        Kind::Credits => {
            let next = pool.next_refill.load(Relaxed);
            ((next > 0).then(|| Timestamp::from_millis(next)), None)
        }
        Kind::Tokens { rate, .. } => {
            let per_token = rate.period().as_millis() as i64 / i64::from(rate.requests()).max(1);
            let missing = (i64::from(rate.burst()) - remaining).max(0);
            let retry = failed.then(|| {
                let wait = (cost - remaining).max(1) * per_token.max(1);
                Duration::from_millis(u64::try_from(wait).unwrap_or(0))
            });
            (
                Some(Timestamp::from_millis(now_ms + missing * per_token)),
                retry,
            )
        }
    };
    Report {
        pool: Arc::clone(pool),
        holder,
        remaining,
        reset_at,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// After a lease, a short pool denies only if that lease was its own:
    /// another pool's store count may be older than a top-up or a
    /// give-back, so it leases first.
    #[test]
    fn only_a_pool_just_leased_denies_short() {
        let credits = Arc::new(Pool::new("key:x".into(), Kind::Credits));
        let tokens = Arc::new(Pool::new("key:x".into(), Kind::Credits));
        // Leased long ago: 1 held, the store said 0 were left.
        credits.granted(1, 0, None);
        assert!(credits.store_empty() && !credits.is_cold());
        assert!(!Round::First.denies_short(&credits));
        let others = [Arc::clone(&tokens)];
        assert!(
            !Round::Again(&others).denies_short(&credits),
            "its count is old: lease again"
        );
        let own = [Arc::clone(&credits)];
        assert!(Round::Again(&own).denies_short(&credits));
    }
}
