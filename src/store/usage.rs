//! Usage storage types and the trait the usage flusher writes through.

use async_trait::async_trait;

use super::StoreError;
use crate::domain::{KeyId, Timestamp};

/// Verify counts for one key and hour, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageCounts {
    pub total: i64,
    pub valid: i64,
    pub revoked: i64,
    pub expired: i64,
    pub disabled: i64,
    pub insufficient_scope: i64,
    pub ip_not_allowed: i64,
    pub referrer_not_allowed: i64,
    pub resource_not_allowed: i64,
    pub rate_limited: i64,
    pub usage_exceeded: i64,
    /// Calls that passed but a report-only restriction would have denied.
    pub would_deny: i64,
}

impl UsageCounts {
    pub fn add(&mut self, o: &UsageCounts) {
        self.total += o.total;
        self.valid += o.valid;
        self.revoked += o.revoked;
        self.expired += o.expired;
        self.disabled += o.disabled;
        self.insufficient_scope += o.insufficient_scope;
        self.ip_not_allowed += o.ip_not_allowed;
        self.referrer_not_allowed += o.referrer_not_allowed;
        self.resource_not_allowed += o.resource_not_allowed;
        self.rate_limited += o.rate_limited;
        self.usage_exceeded += o.usage_exceeded;
        self.would_deny += o.would_deny;
    }
}

/// One key's counts since the last flush, as the flusher writes them.
#[derive(Clone, Debug)]
pub struct UsageWrite {
    pub key_id: KeyId,
    pub counts: UsageCounts,
    pub last_used_at: Option<Timestamp>,
    pub last_client_ip: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageRow {
    /// Start of the hour.
    pub hour: Timestamp,
    pub counts: UsageCounts,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownRow {
    pub hour: Timestamp,
    pub malformed: i64,
    pub not_found: i64,
}

/// The start of the hour `t` falls in.
pub fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp::from_millis(t.as_millis().div_euclid(3_600_000) * 3_600_000)
}

#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Adds usage counts to the hourly buckets of `at`, and moves each key's
    /// last use forward; one transaction.
    async fn flush_usage(
        &self,
        at: Timestamp,
        keys: &[UsageWrite],
        unknown: (i64, i64),
    ) -> Result<(), StoreError>;
    /// Hourly buckets of key `id` whose hour starts in `[from, to)`.
    async fn key_usage(
        &self,
        id: &KeyId,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UsageRow>, StoreError>;
    /// Hourly counts of malformed and unknown keys in `[from, to)`.
    async fn unknown_attempts(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<UnknownRow>, StoreError>;
}
