//! Per-peer rate limits of the public listener: a token bucket per client
//! address (IPv6: per /64, which one host can fill), in a map of bounded
//! size.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A bucket's refill rate and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

/// Most addresses tracked; past it, idle ones are dropped, and when none
/// is idle every address shares one bucket (so memory stays bounded under
/// a spray of addresses, and the spray is limited as one peer).
const MAX_PEERS: usize = 65_536;
/// A bucket idle this long is full again: dropping it changes nothing.
const IDLE: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    at: Instant,
}

pub struct PeerLimiter {
    rate: Rate,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The address a peer is limited by: IPv4 as is, IPv6 by its /64.
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
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
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut key = peer_key(ip);
        if buckets.len() >= MAX_PEERS && !buckets.contains_key(&key) {
            buckets.retain(|_, b| now.duration_since(b.at) < IDLE);
            if buckets.len() >= MAX_PEERS {
                key = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
            }
        }
        let rate = self.rate;
        let b = buckets.entry(key).or_insert(Bucket {
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
