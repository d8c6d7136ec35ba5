//! A client address as per-address limits see it: an IPv4 address, or an
//! IPv6 /64 (one subscriber's allocation, typically), which one host can
//! fill. The admin failure limit and the public listener's limits both
//! count by it.

use std::net::IpAddr;

/// A peer as the limit sees it: an IPv4 address, or an IPv6 /64 (one
/// subscriber's allocation, typically). Callers without an address share
/// one peer.
///
/// IPv4 is held as its mapped IPv6 form (`::ffff:a.b.c.d`), whose low 64
/// bits are never zero, and a /64 prefix as itself, whose low 64 bits are:
/// the two never meet, and the unknown peer is neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer(u128);

const UNKNOWN_PEER: u128 = u128::MAX;
const MAPPED_V4: u128 = 0xffff << 32;

impl From<Option<IpAddr>> for Peer {
    fn from(ip: Option<IpAddr>) -> Self {
        match ip.map(|ip| ip.to_canonical()) {
            Some(IpAddr::V4(v4)) => Peer(MAPPED_V4 | u128::from(u32::from(v4))),
            Some(IpAddr::V6(v6)) => Peer(u128::from(v6) & (u128::MAX << 64)),
            None => Peer(UNKNOWN_PEER),
        }
    }
}

/// `192.0.2.1`, `2001:db8:1:2::/64` or `unknown`, for the audit log.
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == UNKNOWN_PEER {
            f.write_str("unknown")
        } else if self.0 >> 32 == MAPPED_V4 >> 32 {
            std::net::Ipv4Addr::from(self.0 as u32).fmt(f)
        } else {
            write!(f, "{}/64", std::net::Ipv6Addr::from(self.0))
        }
    }
}

impl From<IpAddr> for Peer {
    fn from(ip: IpAddr) -> Self {
        Self::from(Some(ip))
    }
}
