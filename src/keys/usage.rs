//! Reading usage: per-key hourly buckets and unknown-key attempts.

use std::time::Duration;

use super::Keys;
use crate::{
    domain::{KeyId, KeyRecord, Timestamp},
    error::{Error, Result},
    store::{UnknownRow, UsageCounts, UsageRow, hour_of},
};

/// Longest period one usage query may span: bounds the answer's size.
pub const MAX_USAGE_RANGE: Duration = Duration::from_secs(400 * 24 * 3600);
const DEFAULT_USAGE_RANGE: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub struct KeyUsage {
    pub key: KeyRecord,
    pub buckets: Vec<UsageRow>,
    pub totals: UsageCounts,
}

impl Keys {
    /// Resolves an optional `[from, to)`: `to` defaults to now, `from` to a
    /// day before `to`; `from` is rounded down to its hour.
    fn range(
        &self,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<(Timestamp, Timestamp)> {
        let to = to.unwrap_or_else(|| self.config.clock.now());
        let span = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let from = from.unwrap_or(Timestamp::from_millis(
            to.as_millis() - span(DEFAULT_USAGE_RANGE),
        ));
        if from >= to {
            return Err(Error::invalid("from", "must be before `to`"));
        }
        if to.as_millis() - from.as_millis() > span(MAX_USAGE_RANGE) {
            return Err(Error::invalid(
                "from",
                "the range may span at most 400 days",
            ));
        }
        Ok((hour_of(from), to))
    }

    pub async fn usage(
        &self,
        id: &KeyId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<KeyUsage> {
        let (from, to) = self.range(from, to)?;
        let key = self.get(id).await?;
        let buckets = self.store.key_usage(id, from, to).await?;
        let mut totals = UsageCounts::default();
        for b in &buckets {
            totals.add(&b.counts);
        }
        Ok(KeyUsage {
            key,
            buckets,
            totals,
        })
    }

    pub async fn unknown_stats(
        &self,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Result<Vec<UnknownRow>> {
        let (from, to) = self.range(from, to)?;
        Ok(self.store.unknown_attempts(from, to).await?)
    }
}
