//! Reading usage: per-key hourly buckets and unknown-key attempts.

use std::time::Duration;

use super::{Actor, Keys};
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
        actor: &Actor,
    ) -> Result<KeyUsage> {
        let (from, to) = self.range(from, to)?;
        let key = self.get_visible(id, actor).await?;
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

/// Old-key against new-key traffic since a rotation.
#[derive(Debug)]
pub struct Overlap {
    pub old: KeyRecord,
    pub new: KeyRecord,
    pub old_usage: UsageCounts,
    pub new_usage: UsageCounts,
}

impl Keys {
    /// The rotation `id` took part in, old key or new.
    /// A rotation's keys share their owner, so `actor` sees both or neither.
    pub async fn overlap(&self, id: &KeyId, actor: &Actor) -> Result<Overlap> {
        let key = self.get_visible(id, actor).await?;
        let (old, new) = match (&key.rotated_to, &key.rotated_from) {
            (Some(next), _) => {
                let next = self.get(next).await?;
                (key, next)
            }
            (None, Some(prev)) => (self.get(prev).await?, key),
            (None, None) => {
                return Err(Error::FailedPrecondition(format!(
                    "key {id} was not rotated"
                )));
            }
        };
        let now = self.config.clock.now();
        let since = hour_of(new.created_at);
        let to = now.saturating_add(Duration::from_secs(3600));
        let total = |rows: Vec<UsageRow>| {
            let mut t = UsageCounts::default();
            rows.iter().for_each(|r| t.add(&r.counts));
            t
        };
        let old_usage = total(self.store.key_usage(&old.id, since, to).await?);
        let new_usage = total(self.store.key_usage(&new.id, since, to).await?);
        Ok(Overlap {
            old,
            new,
            old_usage,
            new_usage,
        })
    }
}
