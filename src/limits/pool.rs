//! One counter a replica spends locally: a block of credits or of rate
//! tokens leased from the store's authoritative count. Spending is a
//! compare-and-swap on `held`; only the lease (and its refill ahead of need)
//! touches the store, and never on the caller's path unless the pool is
//! empty.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

use tokio::sync::Notify;

use crate::domain::{quota::LimitName, restriction::RateLimit};

/// What a pool counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Credits,
    Tokens { name: LimitName, rate: RateLimit },
}

#[derive(Debug)]
pub struct Pool {
    /// The store's name of the balance or bucket's subject.
    pub(super) subject: String,
    pub kind: Kind,
    /// Leased and not yet spent.
    held: AtomicI64,
    /// Spent since the keeper's last tick (its rate estimate's input).
    pub(super) used: AtomicI64,
    /// Credits spent since the lease was last settled with the store.
    pub(super) unsettled: AtomicI64,
    /// Units spent per second on this replica, smoothed.
    pub(super) rate: AtomicI64,
    /// Wall-clock ms of the last spend.
    pub(super) last_use: AtomicI64,
    /// Until then (wall-clock ms) the store had no more to lease: a pool
    /// that runs out denies instead of asking again.
    pub(super) dry_until: AtomicI64,
    /// No lease was ever answered: a first call waits for one.
    cold: AtomicBool,
    fetching: AtomicBool,
    fetched: Notify,
    /// The store's count after the last lease: what other replicas may
    /// still take. With `held`, what the response reports as remaining.
    pub(super) left: AtomicI64,
    /// Credits: the next refill (ms), 0 for none.
    pub(super) next_refill: AtomicI64,
    /// The least block the next lease asks for: multiplied by 8 by each
    /// lease a call had to wait for (a burst that the rate estimate has not
    /// seen yet), halved by each keeper tick.
    pub(super) boost: AtomicI64,
    /// What calls waiting for a lease want, summed: the next lease asks for
    /// at least this.
    pub(super) demand: AtomicI64,
}

/// How a take went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    Taken,
    /// The store is known to be out: deny.
    Out,
    /// Not enough here, but the store may have more: lease, then retry.
    Lease,
}

impl Pool {
    pub fn new(subject: String, kind: Kind) -> Self {
        Self {
            subject,
            kind,
            held: AtomicI64::new(0),
            used: AtomicI64::new(0),
            unsettled: AtomicI64::new(0),
            rate: AtomicI64::new(0),
            last_use: AtomicI64::new(0),
            dry_until: AtomicI64::new(0),
            cold: AtomicBool::new(true),
            fetching: AtomicBool::new(false),
            fetched: Notify::new(),
            left: AtomicI64::new(0),
            next_refill: AtomicI64::new(0),
            boost: AtomicI64::new(1),
            demand: AtomicI64::new(0),
        }
    }

    pub fn held(&self) -> i64 {
        self.held.load(Relaxed)
    }

    pub fn is_cold(&self) -> bool {
        self.cold.load(Relaxed)
    }

    /// Takes `cost` from what this replica holds, or says why not. A cost
    /// of 0 takes nothing and passes while anything is left.
    pub fn take(&self, cost: i64, now_ms: i64) -> Take {
        // Any call keeps the pool in use, so the keeper leaves its block.
        self.touch(now_ms);
        if self.is_cold() {
            return Take::Lease;
        }
        let mut held = self.held.load(Relaxed);
        loop {
            if held < cost.max(1) {
                let out = cost == 0 && held + self.left.load(Relaxed) > 0;
                if out {
                    return Take::Taken;
                }
                return if self.dry_until.load(Relaxed) > now_ms {
                    Take::Out
                } else {
                    Take::Lease
                };
            }
            match self
                .held
                .compare_exchange_weak(held, held - cost, Relaxed, Relaxed)
            {
                Ok(_) => break,
                Err(h) => held = h,
            }
        }
        if cost > 0 {
            self.used.fetch_add(cost, Relaxed);
            self.unsettled.fetch_add(cost, Relaxed);
        }
        Take::Taken
    }

    /// Puts back what a take took, when a later check of the same call failed.
    pub fn untake(&self, cost: i64) {
        if cost > 0 {
            self.held.fetch_add(cost, Relaxed);
            self.used.fetch_sub(cost, Relaxed);
            self.unsettled.fetch_sub(cost, Relaxed);
        }
    }

    /// Adds a lease's grant.
    pub(super) fn granted(&self, n: i64, left: i64, dry_until: Option<i64>) {
        self.held.fetch_add(n, Relaxed);
        self.left.store(left, Relaxed);
        if let Some(t) = dry_until {
            self.dry_until.store(t, Relaxed);
        }
        self.cold.store(false, Relaxed);
    }

    /// Takes everything held, to give it back or drop it.
    pub(super) fn drain(&self) -> i64 {
        // What goes back is there to lease again.
        self.dry_until.store(0, Relaxed);
        self.held.swap(0, Relaxed)
    }

    /// A call is using the pool at `now_ms`: the keeper leaves its block.
    pub(super) fn touch(&self, now_ms: i64) {
        self.last_use.fetch_max(now_ms, Relaxed);
    }

    /// Forgets the lease (an admin change ended it): the next call leases anew.
    pub(super) fn reset(&self) {
        self.held.store(0, Relaxed);
        self.unsettled.store(0, Relaxed);
        self.cold.store(true, Relaxed);
        self.dry_until.store(0, Relaxed);
    }

    /// Claims the right to lease; `false` when a lease is in flight.
    pub(super) fn begin_fetch(&self) -> bool {
        !self.fetching.swap(true, Relaxed)
    }

    pub(super) fn end_fetch(&self) {
        self.fetching.store(false, Relaxed);
        self.fetched.notify_waiters();
    }

    /// Waits for the lease in flight, if any.
    pub(super) async fn fetch_done(&self) {
        let notified = self.fetched.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.fetching.load(Relaxed) {
            notified.await;
        }
    }

    /// Whether the store had nothing left after this pool's last lease.
    pub fn store_empty(&self) -> bool {
        self.left.load(Relaxed) <= 0
    }

    /// What to report as remaining: held here plus the store's count.
    pub fn remaining(&self) -> i64 {
        self.held().max(0) + self.left.load(Relaxed).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_are_exact_and_all_or_nothing_is_undone() {
        let p = Pool::new("key:x".into(), Kind::Credits);
        assert_eq!(p.take(1, 0), Take::Lease, "cold: lease first");
        p.granted(5, 0, None);
        assert_eq!(p.take(3, 1), Take::Taken);
        assert_eq!(
            p.take(3, 1),
            Take::Lease,
            "two left, the store may have more"
        );
        p.untake(3);
        assert_eq!(p.held(), 5);
        p.dry_until.store(10, Relaxed);
        assert_eq!(p.take(6, 1), Take::Out, "the store is out");
        assert_eq!(
            p.take(0, 1),
            Take::Taken,
            "cost 0 passes while credits are left"
        );
        p.drain();
        assert_eq!(
            p.take(0, 1),
            Take::Lease,
            "given back: the store has them again"
        );
        p.dry_until.store(10, Relaxed);
        assert_eq!(
            p.take(0, 1),
            Take::Out,
            "and not once none are left anywhere"
        );
    }
}
