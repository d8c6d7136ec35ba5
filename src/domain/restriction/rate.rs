//! Per-key rate limits: a token bucket local to each replica.

use std::time::Duration;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RateLimitError {
    #[error("requests must be at least 1")]
    Requests,
    #[error("period must be between 1 ms and 1 day")]
    Period,
    #[error("burst must be between 1 and 1000000")]
    Burst,
}

/// `requests` per `period`, with up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    requests: u32,
    period: Duration,
    burst: u32,
}

impl RateLimit {
    pub fn new(requests: u32, period: Duration, burst: u32) -> Result<Self, RateLimitError> {
        if requests == 0 {
            return Err(RateLimitError::Requests);
        }
        if period < Duration::from_millis(1) || period > Duration::from_secs(86_400) {
            return Err(RateLimitError::Period);
        }
        if burst == 0 || burst > 1_000_000 {
            return Err(RateLimitError::Burst);
        }
        Ok(Self {
            requests,
            period,
            burst,
        })
    }

    pub fn requests(&self) -> u32 {
        self.requests
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Nanoseconds it takes to fill the bucket from empty.
    fn full(&self) -> i128 {
        i128::from(self.burst) * i128::from(self.nanos_per_token())
    }

    /// Nanoseconds it takes to earn one token.
    fn nanos_per_token(&self) -> u64 {
        (self.period.as_nanos() / u128::from(self.requests)).max(1) as u64
    }
}

/// A token bucket's state, in nanoseconds of a monotonic clock the caller
/// supplies, so the arithmetic is exact and testable.
///
/// Tokens are kept as "the time at which the bucket was empty": the bucket
/// holds `(now - empty_at) / nanos_per_token` tokens, capped at `burst`.
/// Signed, because a full bucket early in the clock's life was empty before
/// the clock's zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    limit: RateLimit,
    empty_at: i128,
}

/// The outcome of taking one token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Take {
    /// Allowed; this many whole tokens remain.
    Allowed { remaining: u32 },
    /// Refused; a token will be available after this long.
    Limited { retry_after: Duration },
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(limit: RateLimit, now: u64) -> Self {
        Self {
            limit,
            empty_at: i128::from(now) - limit.full(),
        }
    }

    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    pub fn take(&mut self, now: u64) -> Take {
        let now = i128::from(now);
        let per = i128::from(self.limit.nanos_per_token());
        // Never more than a full bucket, however long it sat idle.
        let empty_at = self.empty_at.max(now - self.limit.full());
        let next = empty_at + per;
        if next > now {
            let wait = u64::try_from(next - now).unwrap_or(u64::MAX);
            return Take::Limited {
                retry_after: Duration::from_nanos(wait),
            };
        }
        self.empty_at = next;
        let remaining = ((now - next) / per).min(i128::from(self.limit.burst)) as u32;
        Take::Allowed { remaining }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn bucket(requests: u32, period: Duration, burst: u32) -> TokenBucket {
        TokenBucket::new(
            RateLimit::new(requests, period, burst).expect("valid"),
            10 * SEC,
        )
    }

    fn allowed_between(b: &mut TokenBucket, from: u64, to: u64, step: u64) -> u64 {
        (0..)
            .map(|i| from + i * step)
            .take_while(|t| *t <= to)
            .filter(|t| matches!(b.take(*t), Take::Allowed { .. }))
            .count() as u64
    }

    #[test]
    fn grants_burst_then_rate_times_elapsed() {
        // 10 per second, burst 5; hammer it every millisecond for 3 s.
        let mut b = bucket(10, Duration::from_secs(1), 5);
        let start = 10 * SEC;
        let granted = allowed_between(&mut b, start, start + 3 * SEC, SEC / 1000);
        // burst + rate × t = 5 + 10 × 3, give or take the token in flight.
        assert!((35..=36).contains(&granted), "granted {granted}");
    }

    #[test]
    fn reports_remaining_and_retry_after() {
        let mut b = bucket(1, Duration::from_secs(2), 2);
        let t = 10 * SEC;
        assert_eq!(b.take(t), Take::Allowed { remaining: 1 });
        assert_eq!(b.take(t), Take::Allowed { remaining: 0 });
        assert_eq!(
            b.take(t),
            Take::Limited {
                retry_after: Duration::from_secs(2)
            }
        );
        assert_eq!(
            b.take(t + SEC / 2),
            Take::Limited {
                retry_after: Duration::from_millis(1500)
            }
        );
        assert_eq!(b.take(t + 2 * SEC), Take::Allowed { remaining: 0 });
    }

    #[test]
    fn idle_time_never_exceeds_the_burst() {
        let mut b = bucket(100, Duration::from_secs(1), 3);
        let later = 1_000 * SEC;
        let granted = allowed_between(&mut b, later, later, 1);
        assert_eq!(granted, 1);
        assert_eq!(b.take(later), Take::Allowed { remaining: 1 });
        assert_eq!(b.take(later), Take::Allowed { remaining: 0 });
        assert!(matches!(b.take(later), Take::Limited { .. }));
    }

    #[test]
    fn a_new_bucket_is_full_even_at_clock_zero() {
        let limit = RateLimit::new(1, Duration::from_secs(3600), 3).expect("valid");
        let mut b = TokenBucket::new(limit, 0);
        assert_eq!(b.take(0), Take::Allowed { remaining: 2 });
    }

    #[test]
    fn invalid_limits_are_rejected() {
        assert_eq!(
            RateLimit::new(0, Duration::from_secs(1), 1),
            Err(RateLimitError::Requests)
        );
        assert_eq!(
            RateLimit::new(1, Duration::ZERO, 1),
            Err(RateLimitError::Period)
        );
        assert_eq!(
            RateLimit::new(1, Duration::from_secs(1), 0),
            Err(RateLimitError::Burst)
        );
    }
}
