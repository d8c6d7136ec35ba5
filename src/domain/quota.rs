//! Usage limits a key or an owner can carry: a balance of credits with an
//! optional refill, and named rate limits. Both are enforced across every
//! replica (see `crate::limits`); these are the parsed settings.

use std::time::Duration;

use super::{Timestamp, restriction::rate::RateLimit};

/// The largest balance, refill or adjustment: far beyond any plan, and far
/// from overflowing an `i64` when added to.
pub const MAX_CREDITS: i64 = 1_000_000_000_000_000;
/// The largest cost of one call, for credits or for a named limit.
pub const MAX_COST: u32 = 1_000_000;
/// Named limits on one key, or on one owner.
pub const MAX_LIMITS: usize = 8;
const MAX_NAME: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    #[error("must be between 0 and {MAX_CREDITS}")]
    Credits,
    #[error("must be between 1 and {MAX_CREDITS}")]
    RefillAmount,
    #[error("must be between 1 and 31")]
    RefillDay,
    #[error("must be between 1 minute and 366 days")]
    RefillEvery,
    #[error("must be 1 to 32 of a-z, 0-9, '_', '-' and '.'")]
    Name,
    #[error("names {0} twice")]
    Duplicate(String),
    #[error("at most {MAX_LIMITS} limits")]
    TooMany,
    #[error("must be at most {MAX_COST}")]
    Cost,
}

/// When a balance refills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefillInterval {
    /// At 00:00 UTC every day.
    Daily,
    /// At 00:00 UTC on this day of every month; a day past the month's end
    /// (31 in April) is the month's last day.
    Monthly { day: u8 },
    /// Every this long after the last refill.
    Every(Duration),
}

/// A refill: the balance is set to `amount` (not added to) at each interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refill {
    amount: i64,
    interval: RefillInterval,
}

impl Refill {
    pub fn new(amount: i64, interval: RefillInterval) -> Result<Self, (&'static str, QuotaError)> {
        if !(1..=MAX_CREDITS).contains(&amount) {
            return Err(("amount", QuotaError::RefillAmount));
        }
        match interval {
            RefillInterval::Monthly { day } if !(1..=31).contains(&day) => {
                return Err(("day", QuotaError::RefillDay));
            }
            RefillInterval::Every(d)
                if d < Duration::from_secs(60) || d > Duration::from_secs(366 * 86_400) =>
            {
                return Err(("every", QuotaError::RefillEvery));
            }
            _ => {}
        }
        Ok(Self { amount, interval })
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn interval(&self) -> RefillInterval {
        self.interval
    }

    /// The first refill strictly after `last`.
    pub fn next_after(&self, last: Timestamp) -> Timestamp {
        const DAY: i64 = 86_400_000;
        let ms = last.as_millis();
        match self.interval {
            RefillInterval::Every(d) => last.saturating_add(d),
            RefillInterval::Daily => Timestamp::from_millis((ms.div_euclid(DAY) + 1) * DAY),
            RefillInterval::Monthly { day } => {
                let (mut y, mut m, _) = civil(ms.div_euclid(DAY));
                // This month's refill day, or next month's if it has passed.
                for _ in 0..2 {
                    let d = u32::from(day).min(days_in_month(y, m));
                    let at = days_from_civil(y, m, d) * DAY;
                    if at > ms {
                        return Timestamp::from_millis(at);
                    }
                    (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                }
                unreachable!("next month's refill day is after any day of this one")
            }
        }
    }
}

/// How a balance is kept: its refill, and the level under which a
/// `key.credits_low` webhook fires (once per crossing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreditPolicy {
    pub refill: Option<Refill>,
    pub low_at: Option<i64>,
}

/// Checks a balance or an adjustment.
pub fn check_credits(n: i64) -> Result<i64, QuotaError> {
    if (0..=MAX_CREDITS).contains(&n) {
        Ok(n)
    } else {
        Err(QuotaError::Credits)
    }
}

/// Checks a call's cost.
pub fn check_cost(n: u32) -> Result<u32, QuotaError> {
    if n <= MAX_COST {
        Ok(n)
    } else {
        Err(QuotaError::Cost)
    }
}

/// A named limit's name, such as `requests` or `tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitName(Box<str>);

impl LimitName {
    pub fn parse(s: &str) -> Result<Self, QuotaError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NAME
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
            });
        if ok {
            Ok(Self(s.into()))
        } else {
            Err(QuotaError::Name)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One named rate limit: a token bucket of `rate`, shared by every replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamedLimit {
    pub name: LimitName,
    pub rate: RateLimit,
}

/// A key's or an owner's named limits: at most [`MAX_LIMITS`], names unique,
/// in the order given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits(Box<[NamedLimit]>);

impl Limits {
    pub fn new(limits: Vec<NamedLimit>) -> Result<Self, QuotaError> {
        if limits.len() > MAX_LIMITS {
            return Err(QuotaError::TooMany);
        }
        for (i, l) in limits.iter().enumerate() {
            if limits[..i].iter().any(|o| o.name == l.name) {
                return Err(QuotaError::Duplicate(l.name.as_str().to_owned()));
            }
        }
        Ok(Self(limits.into()))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, NamedLimit> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What a key or an owner is limited by: credits when `credits` is set (the
/// balance itself is kept by the store), and its named limits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    pub credits: Option<CreditPolicy>,
    pub limits: Limits,
}

impl Quota {
    pub fn is_empty(&self) -> bool {
        self.credits.is_none() && self.limits.is_empty()
    }
}

/// A key's usage limits, as its record carries them. `pool` names the
/// balance and buckets it draws on: the id of the key that first had them,
/// handed on to every successor by rotation, so a lineage shares one
/// balance and one set of buckets (an old key in its grace period spends
/// from the same plan as its successor).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyQuota {
    /// `None` until the key is created (then its own id).
    pub pool: Option<super::KeyId>,
    /// Whether the key spends credits (its balance is kept by the store).
    pub credits: bool,
    pub limits: Limits,
}

/// Whose balance or bucket: a key lineage's (by its pool) or an owner's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    Key(super::PackedKeyId),
    Owner(std::sync::Arc<str>),
}

impl Subject {
    /// The store's name for it: `key:<id>` or `owner:<id>`.
    pub fn to_db(&self) -> String {
        match self {
            Subject::Key(k) => format!("key:{}", k.unpack().as_str()),
            Subject::Owner(o) => format!("owner:{o}"),
        }
    }
}

impl KeyQuota {
    /// The quota a key's update leaves it: the new limits (none when the
    /// update sets none), with what only creation sets kept from the old
    /// record: whether it spends credits, and its pool, which is the key's
    /// own id when it had none (so its successors share it). `None` when
    /// the key ends with neither limits nor credits.
    pub fn carried(
        new: Option<&KeyQuota>,
        old: Option<&KeyQuota>,
        key: &super::KeyId,
    ) -> Option<Box<KeyQuota>> {
        let limits = new.map(|q| q.limits.clone()).unwrap_or_default();
        let credits = old.is_some_and(|q| q.credits);
        if limits.is_empty() && !credits {
            return None;
        }
        let pool = old
            .and_then(|q| q.pool.clone())
            .unwrap_or_else(|| key.clone());
        Some(Box::new(KeyQuota {
            pool: Some(pool),
            credits,
            limits,
        }))
    }
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day since 1970-01-01.
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i64, m: u32, d: u32, h: i64) -> Timestamp {
        Timestamp::from_millis(days_from_civil(y, m, d) * 86_400_000 + h * 3_600_000)
    }

    #[test]
    fn civil_dates_round_trip() {
        for z in [-1, 0, 59, 10_957, 20_000, 20_454, 100_000] {
            let (y, m, d) = civil(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn monthly_refills_clamp_to_the_months_end() {
        let r = Refill::new(10, RefillInterval::Monthly { day: 31 }).unwrap();
        assert_eq!(r.next_after(at(2026, 1, 31, 1)), at(2026, 2, 28, 0));
        assert_eq!(r.next_after(at(2026, 2, 28, 0)), at(2026, 3, 31, 0));
        assert_eq!(r.next_after(at(2024, 2, 1, 0)), at(2024, 2, 29, 0));
        assert_eq!(r.next_after(at(2026, 12, 31, 5)), at(2027, 1, 31, 0));
        let fifteenth = Refill::new(10, RefillInterval::Monthly { day: 15 }).unwrap();
        assert_eq!(
            fifteenth.next_after(at(2026, 3, 14, 23)),
            at(2026, 3, 15, 0)
        );
        assert_eq!(fifteenth.next_after(at(2026, 3, 15, 0)), at(2026, 4, 15, 0));
    }

    #[test]
    fn daily_and_every_refills() {
        let daily = Refill::new(5, RefillInterval::Daily).unwrap();
        assert_eq!(daily.next_after(at(2026, 12, 2, 7)), at(2026, 12, 3, 0));
        assert_eq!(daily.next_after(at(2026, 12, 31, 0)), at(2027, 1, 1, 0));
        let hourly = Refill::new(5, RefillInterval::Every(Duration::from_secs(3600))).unwrap();
        assert_eq!(hourly.next_after(at(2026, 12, 2, 7)), at(2026, 12, 2, 8));
    }

    #[test]
    fn an_update_keeps_credits_and_the_lineage_pool() {
        let key = crate::domain::KeyId::generate();
        let origin = crate::domain::KeyId::generate();
        let rate = RateLimit::new(1, Duration::from_secs(1), 1).unwrap();
        let limits = Limits::new(vec![NamedLimit {
            name: LimitName::parse("requests").unwrap(),
            rate,
        }])
        .unwrap();
        let old = KeyQuota {
            pool: Some(origin.clone()),
            credits: true,
            limits: Limits::default(),
        };
        // Restrictions sent without credits (say, only a new IP allowlist).
        let kept = KeyQuota::carried(None, Some(&old), &key).expect("still spends credits");
        assert!(kept.credits && kept.pool == Some(origin.clone()));
        // New limits on a key that had none: the key's own id becomes the pool.
        let new = KeyQuota {
            pool: None,
            credits: true,
            limits: limits.clone(),
        };
        let first = KeyQuota::carried(Some(&new), None, &key).expect("limits");
        assert_eq!(first.pool, Some(key.clone()));
        assert!(!first.credits, "credits start only at creation");
        assert_eq!(KeyQuota::carried(None, None, &key), None);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let day = |d| Refill::new(1, RefillInterval::Monthly { day: d }).map(|_| ());
        assert_eq!(day(0), Err(("day", QuotaError::RefillDay)));
        assert_eq!(day(32), Err(("day", QuotaError::RefillDay)));
        assert!(day(1).is_ok() && day(31).is_ok());
        assert_eq!(
            Refill::new(0, RefillInterval::Daily).map(|_| ()),
            Err(("amount", QuotaError::RefillAmount))
        );
        assert_eq!(check_credits(-1), Err(QuotaError::Credits));
        assert_eq!(check_credits(MAX_CREDITS + 1), Err(QuotaError::Credits));
        assert_eq!(check_cost(MAX_COST + 1), Err(QuotaError::Cost));
        assert!(LimitName::parse("tokens").is_ok());
        assert!(LimitName::parse("Tokens").is_err() && LimitName::parse("").is_err());
        let l = |n: &str| NamedLimit {
            name: LimitName::parse(n).unwrap(),
            rate: RateLimit::new(1, Duration::from_secs(1), 1).unwrap(),
        };
        assert_eq!(
            Limits::new(vec![l("a"), l("a")]),
            Err(QuotaError::Duplicate("a".into()))
        );
        let nine = (0..9).map(|i| l(&format!("l{i}"))).collect();
        assert_eq!(Limits::new(nine), Err(QuotaError::TooMany));
    }
}
