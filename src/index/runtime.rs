use std::{
    net::IpAddr,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, AtomicI64, AtomicU64},
    },
};

use crate::domain::{
    PackedKeyId,
    restriction::{RateLimit, Take, TokenBucket},
    verdict::Code,
};

/// One key's counts since the last flush.
#[derive(Debug, Default)]
pub struct KeyCounters {
    pub(crate) by_code: [AtomicU64; Code::ALL.len()],
    pub(crate) would_deny: AtomicU64,
    /// Unix ms of the last Verify that passed; 0 for none since the last flush.
    pub(crate) last_used: AtomicI64,
    pub(crate) last_ip: Mutex<Option<IpAddr>>,
    /// Set when the key is queued for the next flush.
    pub(crate) dirty: AtomicBool,
}

/// A key's live state on this replica: usage counters and its rate-limit
/// bucket. Shared by every version of the key's record, so an update keeps
/// the counts and the bucket.
#[derive(Debug)]
pub struct KeyRuntime {
    pub key_id: PackedKeyId,
    pub usage: KeyCounters,
    bucket: Mutex<Option<TokenBucket>>,
}

impl KeyRuntime {
    pub fn new(key_id: PackedKeyId) -> Self {
        Self {
            key_id,
            usage: KeyCounters::default(),
            bucket: Mutex::new(None),
        }
    }

    /// Takes one token at `now` (monotonic nanoseconds). A bucket whose limit
    /// changed starts again full. The lock is held for a few arithmetic
    /// operations and never across an await.
    pub fn take_token(&self, limit: RateLimit, now: u64) -> Take {
        let mut slot = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = match &mut *slot {
            Some(b) if b.limit() == limit => b,
            other => other.insert(TokenBucket::new(limit, now)),
        };
        bucket.take(now)
    }
}
