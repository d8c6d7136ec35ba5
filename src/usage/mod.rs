//! Usage monitoring: in-memory counters on the Verify path, flushed to the
//! store in batches by [`UsageFlusher`].
//!
//! The hot path only bumps atomics; it never waits on the database. A crash
//! loses at most one flush interval of counts.

mod flusher;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU64, Ordering::Relaxed},
    },
};

pub use flusher::UsageFlusher;

use crate::{
    domain::verdict::{Code, Decision},
    domain::{KeyId, Timestamp},
    index::KeyRuntime,
    store::{UsageCounts, UsageWrite},
};

/// What a flush writes for one key.
#[derive(Clone, Debug)]
pub struct UsageDelta {
    pub key_id: KeyId,
    /// Where the counts go back to if the flush fails.
    runtime: Arc<KeyRuntime>,
    pub by_code: [u64; Code::ALL.len()],
    pub would_deny: u64,
    pub last_used_at: Option<Timestamp>,
    pub last_ip: Option<IpAddr>,
}

impl UsageDelta {
    pub fn count(&self, code: Code) -> u64 {
        self.by_code[code.index()]
    }

    pub fn total(&self) -> u64 {
        self.by_code.iter().sum()
    }

    /// The row the flusher writes.
    pub fn to_write(&self) -> UsageWrite {
        let n = |c: Code| i64::try_from(self.count(c)).unwrap_or(i64::MAX);
        UsageWrite {
            key_id: self.key_id.clone(),
            counts: UsageCounts {
                total: i64::try_from(self.total()).unwrap_or(i64::MAX),
                valid: n(Code::Valid),
                revoked: n(Code::Revoked),
                expired: n(Code::Expired),
                disabled: n(Code::Disabled),
                insufficient_scope: n(Code::InsufficientScope),
                ip_not_allowed: n(Code::IpNotAllowed),
                referrer_not_allowed: n(Code::ReferrerNotAllowed),
                resource_not_allowed: n(Code::ResourceNotAllowed),
                rate_limited: n(Code::RateLimited),
                usage_exceeded: n(Code::UsageExceeded),
                would_deny: i64::try_from(self.would_deny).unwrap_or(i64::MAX),
            },
            last_used_at: self.last_used_at,
            last_client_ip: self.last_ip.map(|ip| ip.to_string()),
        }
    }
}

/// Attempts with malformed or unknown keys since the last flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnknownDelta {
    pub malformed: u64,
    pub not_found: u64,
}

impl UnknownDelta {
    pub fn is_empty(&self) -> bool {
        self.malformed == 0 && self.not_found == 0
    }
}

/// An atomic on a cache line of its own: read by every Verify, so the
/// counters beside it (bumped by floods of unknown keys) do not evict it.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicI64);

/// Shared by every Verify and the flusher.
#[derive(Debug, Default)]
pub struct Recorder {
    malformed: AtomicU64,
    not_found: AtomicU64,
    /// The last millisecond a call on a known key was counted: whether
    /// this replica is answering Verify traffic now (imports yield to it).
    last_call: Padded,
    /// Keys with counts since the last flush; each is queued once.
    dirty: Mutex<Vec<Arc<KeyRuntime>>>,
}

impl Recorder {
    /// Counts a call with a malformed or unknown key: globally, by code, with
    /// no per-key state, so a flood of random keys grows nothing.
    #[inline]
    pub fn unknown(&self, code: Code) {
        let counter = if code == Code::Malformed {
            &self.malformed
        } else {
            &self.not_found
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Whether a call on a known key was counted within `window` of `now`.
    pub fn answered_within(&self, now: Timestamp, window: std::time::Duration) -> bool {
        let window = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        now.as_millis()
            .saturating_sub(self.last_call.0.load(Relaxed))
            <= window
    }

    /// Counts a call on a known key; only a call that passes moves its
    /// last use and last client IP.
    #[inline]
    pub fn record(
        &self,
        runtime: &Arc<KeyRuntime>,
        d: &Decision<'_>,
        ip: Option<IpAddr>,
        now: Timestamp,
    ) {
        // A load first, as for the key's last use below: under load most
        // calls share a millisecond, and skip the store.
        if self.last_call.0.load(Relaxed) < now.as_millis() {
            self.last_call.0.store(now.as_millis(), Relaxed);
        }
        let c = &runtime.usage;
        c.by_code[d.code.index()].fetch_add(1, Relaxed);
        if !d.would_deny.is_empty() {
            c.would_deny.fetch_add(1, Relaxed);
        }
        // Only a call that passes is a use. Anyone can present a dead or
        // restricted key; if denials counted, they would keep it "in use"
        // for the stale-key and idle-grace jobs. Denials are still counted
        // above, by code. A report-only would-deny call passes, so it counts.
        if d.is_valid() {
            // A load first: under load most calls share a millisecond, and a
            // store they skip is a cache line they do not bounce between
            // cores. Racing writers may leave a value a millisecond behind;
            // fine for "last used".
            if c.last_used.load(Relaxed) < now.as_millis() {
                c.last_used.store(now.as_millis(), Relaxed);
            }
            if let Some(ip) = ip
                && let Ok(mut last) = c.last_ip.try_lock()
            {
                // Contended means another call is writing a "last" IP right
                // now: either one is as good.
                *last = Some(ip);
            }
        }
        if !c.dirty.load(Relaxed) && !c.dirty.swap(true, Relaxed) {
            self.dirty
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Arc::clone(runtime));
        }
    }

    /// Takes every count since the last drain.
    pub fn drain(&self) -> (Vec<UsageDelta>, UnknownDelta) {
        let queued =
            std::mem::take(&mut *self.dirty.lock().unwrap_or_else(PoisonError::into_inner));
        let deltas = queued
            .into_iter()
            .map(|rt| {
                let c = &rt.usage;
                // Clear the flag first: a call after this re-queues the key,
                // so no count is stranded.
                c.dirty.store(false, Relaxed);
                let last_used = c.last_used.swap(0, Relaxed);
                UsageDelta {
                    key_id: rt.key_id.unpack(),
                    runtime: Arc::clone(&rt),
                    by_code: std::array::from_fn(|i| c.by_code[i].swap(0, Relaxed)),
                    would_deny: c.would_deny.swap(0, Relaxed),
                    last_used_at: (last_used > 0).then(|| Timestamp::from_millis(last_used)),
                    last_ip: c
                        .last_ip
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take(),
                }
            })
            .filter(|d| d.total() > 0)
            .collect();
        let unknown = UnknownDelta {
            malformed: self.malformed.swap(0, Relaxed),
            not_found: self.not_found.swap(0, Relaxed),
        };
        (deltas, unknown)
    }

    /// Puts back counts a failed flush could not write.
    pub fn restore(&self, deltas: Vec<UsageDelta>, unknown: UnknownDelta) {
        self.malformed.fetch_add(unknown.malformed, Relaxed);
        self.not_found.fetch_add(unknown.not_found, Relaxed);
        for d in deltas {
            let rt = d.runtime;
            let c = &rt.usage;
            for (i, n) in d.by_code.iter().enumerate() {
                c.by_code[i].fetch_add(*n, Relaxed);
            }
            c.would_deny.fetch_add(d.would_deny, Relaxed);
            if let Some(t) = d.last_used_at {
                c.last_used.fetch_max(t.as_millis(), Relaxed);
            }
            if !c.dirty.swap(true, Relaxed) {
                self.dirty
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(rt);
            }
        }
    }
}
