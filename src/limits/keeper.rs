//! The limiter's store side: leasing a pool's next block (on the caller's
//! path only for an empty pool), and the keeper task that leases ahead of
//! need, settles and renews credit leases, gives back what idle pools hold,
//! sweeps the leases of dead replicas and reloads owners.

use std::{
    sync::{Arc, PoisonError, atomic::Ordering::Relaxed},
    time::Duration,
};

use tokio_util::sync::CancellationToken;

use super::{LEASE_TTL, Limiter, OwnerQuota, Pool, pool::Kind};
use crate::{
    domain::Timestamp,
    store::{Store, StoreError},
};

/// How often the keeper looks at every pool.
const TICK: Duration = Duration::from_millis(50);
/// A pool unused this long gives back what it holds.
const IDLE_MS: i64 = 1_000;
/// A pool unused this long, holding nothing, is dropped.
const FORGET_MS: i64 = 60_000;
/// After a credit lease came back short, how long a pool that runs out
/// denies before asking the store again (a top-up shows within this).
const CREDITS_DRY_MS: i64 = 250;

/// The most a burst raises a block to before the rate estimate catches up.
const MAX_BOOST: i64 = 65_536;

/// A block's size: this many ms of the pool's recent rate, at least `min`.
fn block(pool: &Pool, min: i64) -> i64 {
    let rate = pool.rate.load(Relaxed);
    let ms = match pool.kind {
        Kind::Credits => 500,
        Kind::Tokens { .. } => 100,
    };
    let want = (rate * ms / 1000)
        .max(min)
        .max(pool.boost.load(Relaxed))
        .max(1);
    match &pool.kind {
        Kind::Credits => want,
        Kind::Tokens { rate, .. } => want.min(i64::from(rate.burst())).max(min),
    }
}

/// Leases a block of at least `min` for `pool`, or waits for the lease in
/// flight. `waited`: a call is waiting for it (not the keeper's lease ahead
/// of need), so the next lease asks for more.
///
/// The lease runs in a task of its own: a caller that gives up (its
/// deadline, or a client that went away) never leaves the pool marked as
/// leasing, and a grant the store committed always reaches the pool.
pub(super) async fn fetch(lim: &Limiter, pool: &Arc<Pool>, min: i64, waited: bool) {
    if pool.begin_fetch() {
        let want = block(pool, min.max(pool.demand.swap(0, Relaxed)));
        if waited {
            let _ = pool
                .boost
                .fetch_update(Relaxed, Relaxed, |b| Some((b * 8).min(MAX_BOOST)));
        }
        let (store, replica, clock) = (
            Arc::clone(&lim.store),
            lim.replica.clone(),
            lim.clock.clone(),
        );
        let pool = Arc::clone(pool);
        tokio::spawn(async move {
            if let Err(e) = lease(&*store, &replica, &clock, &pool, want).await {
                tracing::warn!(error = %e, "usage limit lease failed");
            }
            pool.end_fetch();
        });
    }
    pool.fetch_done().await;
}

async fn lease(
    store: &dyn Store,
    replica: &str,
    clock: &crate::domain::Clock,
    pool: &Pool,
    want: i64,
) -> Result<(), StoreError> {
    let now = clock.now();
    match &pool.kind {
        Kind::Credits => {
            let expires = now.saturating_add(LEASE_TTL);
            let grant = store
                .lease_credits(&pool.subject, replica, want, now, expires)
                .await?;
            let Some(g) = grant else {
                // No balance at all: nothing to spend, ever, until one is set.
                pool.granted(0, 0, Some(now.as_millis() + CREDITS_DRY_MS));
                return Ok(());
            };
            pool.next_refill
                .store(g.next_refill.map_or(0, Timestamp::as_millis), Relaxed);
            let dry = (g.granted < want).then_some(now.as_millis() + CREDITS_DRY_MS);
            pool.granted(g.granted, g.left, dry);
        }
        Kind::Tokens { name, rate } => {
            let want = u32::try_from(want).unwrap_or(u32::MAX);
            let g = store
                .lease_tokens(&pool.subject, name.as_str(), *rate, want, now.as_millis())
                .await?;
            // Short: the bucket is empty until it earns the next token.
            // Asking again sooner than half the time it takes to fill (at
            // most 100 ms) would only load the store, which grants what
            // accrued meanwhile, up to the burst; never longer than a
            // second, to see tokens another replica gave back.
            let period = rate.period().as_millis() as i64;
            let per_token = period / i64::from(rate.requests());
            let fill = i64::from(rate.burst()) * period / i64::from(rate.requests());
            let wait = (fill / 2).clamp(5, 100).max(per_token).min(1_000);
            let dry = (g.granted < want).then_some(now.as_millis() + wait);
            pool.granted(i64::from(g.granted), i64::from(g.left), dry);
        }
    }
    Ok(())
}

/// Gives back what `pool` holds (or settles and ends its credit lease).
async fn give_back(store: &dyn Store, replica: &str, pool: &Pool) -> Result<(), StoreError> {
    let n = pool.drain();
    let spent = pool.unsettled.swap(0, Relaxed);
    match &pool.kind {
        Kind::Credits => {
            store
                .settle_credits(&pool.subject, replica, spent, n, None)
                .await?;
        }
        Kind::Tokens { name, rate } if n > 0 => {
            let n = u32::try_from(n).unwrap_or(u32::MAX);
            store
                .return_tokens(&pool.subject, name.as_str(), *rate, n)
                .await?;
        }
        Kind::Tokens { .. } => {}
    }
    Ok(())
}

/// A pool replaced by a new one (its limit changed): give back what it held.
pub(super) fn orphan(lim: &Limiter, old: Arc<Pool>) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        let (store, replica) = (Arc::clone(&lim.store), lim.replica.clone());
        handle.spawn(async move {
            if let Err(e) = give_back(&*store, &replica, &old).await {
                tracing::warn!(error = %e, "giving back a replaced limit's block failed");
            }
        });
    }
}

impl Limiter {
    /// Runs the keeper until `shutdown`, then gives back everything held.
    pub async fn keep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            n += 1;
            self.tick(n % 20 == 0).await;
            if n % 20 == 1 {
                let now = self.clock.now();
                if let Err(e) = self.store.sweep_credits(now).await {
                    tracing::warn!(error = %e, "sweeping credit leases failed");
                }
                if let Err(e) = self.reload_owners().await {
                    tracing::warn!(error = %e, "reloading owners failed");
                }
            }
        }
        self.give_back_all().await;
    }

    /// Reads owners written since the last read (with a margin for clocks
    /// of other writers), first all of them.
    pub async fn reload_owners(&self) -> Result<(), StoreError> {
        let now = self.clock.now().as_millis();
        let last = self.owners_read.load(Relaxed);
        let since = if last == 0 { 0 } else { last - 5_000 };
        let owners = self
            .store
            .owners_since(Timestamp::from_millis(since))
            .await?;
        self.owners_read.store(now, Relaxed);
        if owners.is_empty() {
            return Ok(());
        }
        self.has_owners.store(true, Relaxed);
        let mut map = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        for o in owners {
            map.insert(
                o.id.as_str().into(),
                Arc::new(OwnerQuota {
                    metadata: o.metadata,
                    limits: o.limits,
                    credits: o.credits,
                    pools: Default::default(),
                }),
            );
        }
        Ok(())
    }

    async fn tick(&self, settle: bool) {
        let now = self.clock.now().as_millis();
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|p| Arc::clone(p.value())).collect();
        for pool in pools {
            let used = pool.used.swap(0, Relaxed);
            let per_s = used * (1000 / TICK.as_millis() as i64);
            let rate = pool.rate.load(Relaxed);
            pool.rate.store((rate * 3 + per_s) / 4, Relaxed);
            let boost = pool.boost.load(Relaxed);
            pool.boost.store((boost / 2).max(1), Relaxed);
            let idle = now - pool.last_use.load(Relaxed);
            let result = if idle > IDLE_MS && (pool.held() > 0 || pool.unsettled.load(Relaxed) > 0)
            {
                give_back(&*self.store, &self.replica, &pool).await
            } else if idle <= IDLE_MS && !pool.is_cold() && self.low(&pool, now) {
                // Bounded, so one slow lease never stalls the keeper.
                let _ = tokio::time::timeout(super::LEASE_WAIT, fetch(self, &pool, 1, false)).await;
                Ok(())
            } else {
                Ok(())
            };
            let busy = pool.held() > 0 || pool.unsettled.load(Relaxed) > 0;
            let renewed = if settle && pool.kind == Kind::Credits && busy {
                self.renew(&pool, now).await
            } else {
                Ok(())
            };
            if let Err(e) = result.and(renewed) {
                tracing::warn!(error = %e, "usage limit upkeep failed");
            }
        }
        // A pool an entry or an owner still holds stays, so the keeper
        // keeps looking after it.
        self.pools.retain(|_, p| {
            Arc::strong_count(p) > 1 || now - p.last_use.load(Relaxed) < FORGET_MS || p.held() > 0
        });
    }

    /// Whether the pool is below its low-water mark and may lease more.
    fn low(&self, pool: &Pool, now: i64) -> bool {
        let rate = pool.rate.load(Relaxed);
        let ms = match pool.kind {
            Kind::Credits => 200,
            Kind::Tokens { .. } => 60,
        };
        pool.dry_until.load(Relaxed) <= now && pool.held() <= rate * ms / 1000
    }

    /// Settles what was spent and renews the credit lease; a lease an admin
    /// change ended is dropped here, and the next call leases anew.
    async fn renew(&self, pool: &Pool, now: i64) -> Result<(), StoreError> {
        let spent = pool.unsettled.swap(0, Relaxed);
        let until = Timestamp::from_millis(now).saturating_add(LEASE_TTL);
        let alive = self
            .store
            .settle_credits(&pool.subject, &self.replica, spent, 0, Some(until))
            .await?;
        if !alive {
            pool.reset();
        }
        Ok(())
    }

    /// Gives back what every pool holds: at shutdown.
    pub async fn give_back_all(&self) {
        let pools: Vec<Arc<Pool>> = self.pools.iter().map(|p| Arc::clone(p.value())).collect();
        for pool in pools {
            if let Err(e) = give_back(&*self.store, &self.replica, &pool).await {
                tracing::warn!(error = %e, "giving back a limit's block failed");
            }
        }
    }
}
