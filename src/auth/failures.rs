//! Failed admin authentications, counted per peer, so that one address (or
//! one IPv6 /64) that keeps failing is refused outright.
//!
//! Guessing a 256-bit token is hopeless anyway; what the limit buys is that
//! a peer's flood of bad tokens stops costing anything: no reload of the
//! token set, no audit count. A blocked peer is refused only what fails:
//! a valid token is answered from memory before the limit is consulted, so
//! nobody sharing an address (a proxy, a NAT) can lock the admins out.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::domain::Peer;

#[derive(Clone, Copy, Debug)]
pub struct AuthLimits {
    /// Failures one peer may have in a window before its failing attempts
    /// are refused outright; 0 turns the limit off.
    pub max_failures: u32,
    pub window: Duration,
    /// Peers tracked at once; past this, expired windows are dropped first,
    /// and a new peer goes untracked if none has expired.
    pub max_peers: usize,
    /// How often the token set is reloaded from the store regardless of
    /// misses: the most a token revoked elsewhere stays usable.
    pub token_reload_interval: Duration,
    /// The least time between two reloads of the token set, all callers
    /// together.
    pub min_reload_gap: Duration,
    /// The least time between two `admin.auth_failed` summaries, all peers
    /// together; the first of a quiet spell is written at once.
    pub audit_interval: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            max_failures: 10,
            window: Duration::from_secs(60),
            max_peers: 10_000,
            token_reload_interval: Duration::from_secs(1),
            min_reload_gap: Duration::from_millis(250),
            audit_interval: Duration::from_secs(20),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Window {
    started: Instant,
    failures: u32,
}

/// What a failure meant to the peer's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The first in this peer's window.
    First,
    /// One more.
    Again,
    /// The one that blocks the peer.
    Blocking,
}

#[derive(Debug)]
pub struct FailedAuth {
    limits: AuthLimits,
    peers: Mutex<HashMap<Peer, Window>>,
}

impl FailedAuth {
    pub fn new(limits: AuthLimits) -> Self {
        Self {
            limits,
            peers: Mutex::default(),
        }
    }

    /// `Err(retry_after)` while `ip` is blocked.
    pub fn check(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        if self.limits.max_failures == 0 {
            return Ok(());
        }
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        match peers.get(&Peer::from(ip)) {
            Some(w) if w.failures >= self.limits.max_failures => {
                let left = self.limits.window.saturating_sub(now - w.started);
                if left.is_zero() { Ok(()) } else { Err(left) }
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure from `ip`. With the limit off nothing is counted.
    pub fn fail(&self, ip: Option<IpAddr>, now: Instant) -> Failure {
        if self.limits.max_failures == 0 {
            return Failure::Again;
        }
        let window = self.limits.window;
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        let peer = Peer::from(ip);
        if !peers.contains_key(&peer) && peers.len() >= self.limits.max_peers {
            peers.retain(|_, w| now - w.started < window);
            if peers.len() >= self.limits.max_peers {
                return Failure::Again;
            }
        }
        let w = peers.entry(peer).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now - w.started >= window {
            *w = Window {
                started: now,
                failures: 0,
            };
        }
        w.failures += 1;
        match w.failures {
            1 => Failure::First,
            n if n == self.limits.max_failures => Failure::Blocking,
            _ => Failure::Again,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_peers: usize) -> FailedAuth {
        FailedAuth::new(AuthLimits {
            max_failures: 3,
            window: Duration::from_secs(60),
            max_peers,
            ..AuthLimits::default()
        })
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn a_peer_is_blocked_after_its_failures_until_the_window_ends() {
        let l = limiter(10);
        let t0 = Instant::now();
        let a = ip("203.0.113.7");
        assert_eq!(l.fail(a, t0), Failure::First);
        assert_eq!(l.fail(a, t0), Failure::Again);
        assert!(l.check(a, t0).is_ok());
        assert_eq!(l.fail(a, t0), Failure::Blocking);
        let left = l
            .check(a, t0 + Duration::from_secs(10))
            .expect_err("blocked");
        assert_eq!(left, Duration::from_secs(50));
        assert!(l.check(ip("203.0.113.8"), t0).is_ok(), "others are not");
        assert!(l.check(a, t0 + Duration::from_secs(60)).is_ok());
        assert_eq!(l.fail(a, t0 + Duration::from_secs(61)), Failure::First);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_peer_and_mapped_ipv4_is_ipv4() {
        let l = limiter(10);
        let t0 = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            l.fail(ip(host), t0);
        }
        assert!(l.check(ip("2001:db8:1:2::77"), t0).is_err());
        assert!(l.check(ip("2001:db8:1:3::1"), t0).is_ok());
        for _ in 0..3 {
            l.fail(ip("::ffff:198.51.100.1"), t0);
        }
        assert!(l.check(ip("198.51.100.1"), t0).is_err());
    }

    #[test]
    fn callers_without_an_address_share_one_peer() {
        let l = limiter(10);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.fail(None, t0);
        }
        assert!(l.check(None, t0).is_err());
        assert!(l.check(ip("::ffff:ffff:ffff"), t0).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let l = limiter(2);
        let t0 = Instant::now();
        l.fail(ip("192.0.2.1"), t0);
        l.fail(ip("192.0.2.2"), t0);
        assert_eq!(l.fail(ip("192.0.2.3"), t0), Failure::Again, "untracked");
        assert_eq!(l.peers.lock().expect("lock").len(), 2);
        // Once windows expire, new peers take their place.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(l.fail(ip("192.0.2.3"), later), Failure::First);
        assert_eq!(l.peers.lock().expect("lock").len(), 1);
    }

    #[test]
    fn peers_print_as_the_address_or_prefix_they_stand_for() {
        let shown = |s: Option<IpAddr>| Peer::from(s).to_string();
        assert_eq!(shown(ip("203.0.113.7")), "203.0.113.7");
        assert_eq!(shown(ip("::ffff:203.0.113.7")), "203.0.113.7");
        assert_eq!(shown(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(shown(ip("::1")), "::/64");
        assert_eq!(shown(ip("0.0.0.0")), "0.0.0.0");
        assert_eq!(shown(None), "unknown");
    }

    #[test]
    fn zero_turns_the_limit_off() {
        let l = FailedAuth::new(AuthLimits {
            max_failures: 0,
            ..AuthLimits::default()
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(l.fail(ip("192.0.2.1"), t0), Failure::Again, "not counted");
        }
        assert!(l.check(ip("192.0.2.1"), t0).is_ok());
    }
}
