//! Per-peer rate limits of the public listener: a token bucket per client
//! address (IPv6: per /64, which one host can fill), in a map of bounded
//! size.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::domain::Peer;

/// A bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Most addresses tracked. Past it, idle buckets are swept (at most once a
/// second, so a spray of new addresses does not make every call scan the
/// map), and when none is idle an arbitrary one is dropped for the
/// newcomer: memory stays bounded, and no address ever shares a bucket
/// with another (an attacker could otherwise drain the one GitHub uses).
const MAX_PEERS: usize = 65_536;
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A bucket idle this long is full again: dropping it changes nothing.
const IDLE: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct PeerLimiter {
    rate: Rate,
    buckets: Mutex<Buckets>,
}

#[derive(Default)]
struct Buckets {
    map: HashMap<Peer, Bucket>,
    swept: Option<Instant>,
}

impl PeerLimiter {
    pub fn new(rate: Rate) -> Self {
        Self {
            rate,
            buckets: Mutex::default(),
        }
    }

    /// Takes one request from `ip`'s bucket: `false` when it is empty.
    pub fn admit(&self, ip: IpAddr) -> bool {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(&self, ip: IpAddr, now: Instant) -> bool {
        let mut guard = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Buckets { map, swept } = &mut *guard;
        let key = Peer::from(ip);
        if map.len() >= MAX_PEERS && !map.contains_key(&key) {
            if swept.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
                map.retain(|_, b| now.duration_since(b.at) < IDLE);
                *swept = Some(now);
            }
            if map.len() >= MAX_PEERS
                && let Some(victim) = map.keys().next().copied()
            {
                map.remove(&victim);
            }
        }
        let rate = self.rate;
        let b = map.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        let earned = now.duration_since(b.at).as_secs_f64() * rate.per_second;
        b.tokens = (b.tokens + earned).min(rate.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Open connections per address, at most `max` each.
pub struct OpenConnections {
    max: usize,
    open: Mutex<HashMap<Peer, usize>>,
}

/// One open connection; dropping it frees the address's share.
pub struct Share {
    of: std::sync::Arc<OpenConnections>,
    key: Peer,
}

impl OpenConnections {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::default(),
        }
    }

    /// A share for a new connection from `ip`, or `None` when it holds its
    /// `max` already.
    pub fn hold(self: &std::sync::Arc<Self>, ip: IpAddr) -> Option<Share> {
        let key = Peer::from(ip);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Share {
            of: self.clone(),
            key,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self
            .of
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_apart() {
        let l = PeerLimiter::new(Rate {
            per_second: 2.0,
            burst: 3.0,
        });
        let t0 = Instant::now();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        for _ in 0..3 {
            assert!(l.admit_at(a, t0));
        }
        assert!(!l.admit_at(a, t0));
        assert!(l.admit_at(b, t0), "another peer has its own bucket");
        assert!(l.admit_at(a, t0 + Duration::from_millis(500)));
        assert!(!l.admit_at(a, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn an_address_holds_at_most_its_share_of_connections() {
        let open = std::sync::Arc::new(OpenConnections::new(2));
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let (one, two) = (open.hold(a).unwrap(), open.hold(a).unwrap());
        assert!(open.hold(a).is_none());
        assert!(open.hold("203.0.113.2".parse().unwrap()).is_some());
        drop(one);
        assert!(
            open.hold(a).is_some(),
            "a closed connection frees its share"
        );
        drop(two);
    }

    #[test]
    fn a_full_table_never_makes_addresses_share_a_bucket() {
        let l = PeerLimiter::new(Rate {
            per_second: 0.0,
            burst: 1.0,
        });
        let t0 = Instant::now();
        for i in 0..MAX_PEERS as u32 {
            assert!(l.admit_at(IpAddr::V4(i.into()), t0));
        }
        // The table is full and nothing is idle: a newcomer still gets a
        // bucket of its own, full.
        let newcomer: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(l.admit_at(newcomer, t0));
        assert!(!l.admit_at(newcomer, t0));
        assert!(l.buckets.lock().unwrap().map.len() <= MAX_PEERS);
    }

    #[test]
    fn one_ipv6_slash_64_is_one_peer() {
        let l = PeerLimiter::new(Rate {
            per_second: 0.0,
            burst: 1.0,
        });
        let t0 = Instant::now();
        assert!(l.admit_at("2001:db8:1:2::1".parse().unwrap(), t0));
        assert!(!l.admit_at("2001:db8:1:2::ffff".parse().unwrap(), t0));
        assert!(l.admit_at("2001:db8:1:3::1".parse().unwrap(), t0));
    }
}
