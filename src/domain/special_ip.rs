//! Which IP addresses a webhook may reach: one table of special-purpose
//! ranges, used for URL literals and for resolved addresses alike (SSRF).
//!
//! The tables are the IANA IPv4 and IPv6 Special-Purpose Address Registries,
//! whole, plus multicast and the deprecated site-local range. Entries the
//! registry marks globally reachable (AS112, the PCP and TURN anycasts, AMT)
//! are refused too: no webhook receiver lives there, and one rule is easier
//! to trust than a list of exceptions. IPv6 outside 2000::/3, the only space
//! IANA allocates for global unicast, is refused as well.
//!
//! Addresses that carry an IPv4 address inside them (IPv4-mapped and
//! -compatible, NAT64, 6to4, Teredo) are judged by that IPv4 address, since
//! that is where a packet to them ends up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// (network, prefix length) of every IPv4 range a webhook must not reach.
const V4_SPECIAL: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private use
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link local
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private use
    (Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments (DS-Lite, PCP, TURN, NAT64 discovery)
    (Ipv4Addr::new(192, 0, 2, 0), 24), // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 31, 196, 0), 24), // AS112-v4
    (Ipv4Addr::new(192, 52, 193, 0), 24), // AMT
    (Ipv4Addr::new(192, 88, 99, 0), 24), // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private use
    (Ipv4Addr::new(192, 175, 48, 0), 24), // direct delegation AS112
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),  // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),  // reserved, and the limited broadcast 255.255.255.255
];

/// (network, prefix length) of every IPv6 range a webhook must not reach,
/// apart from the forms that embed IPv4 (see [`embedded_v4`]).
const V6_SPECIAL: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128), // unspecified
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128), // loopback
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64: where the IPv4 sits is local policy
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard only
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64),     // dummy prefix
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments: Teredo, benchmarking, ORCHID, …
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48), // direct delegation AS112
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16), // segment routing (SRv6) SIDs
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),  // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // site local (deprecated, still routed by some)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),  // multicast
];

/// Whether `ip` is a public unicast address a webhook may reach.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_public(v4),
        IpAddr::V6(v6) => v6_is_public(v6),
    }
}

fn v4_is_public(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !V4_SPECIAL
        .iter()
        .any(|&(net, len)| prefix_matches_u32(bits, u32::from(net), len))
}

fn v6_is_public(ip: Ipv6Addr) -> bool {
    // ::/128 and ::1/128 sit inside the IPv4-compatible form; the table
    // names them, so judge the table first.
    let bits = u128::from(ip);
    let special = V6_SPECIAL
        .iter()
        .any(|&(net, len)| prefix_matches_u128(bits, u128::from(net), len));
    if special {
        return false;
    }
    if let Some(embedded) = embedded_v4(ip) {
        return v4_is_public(embedded);
    }
    in_global_unicast(bits)
}

/// 2000::/3, the only IPv6 space allocated for global unicast.
fn in_global_unicast(bits: u128) -> bool {
    prefix_matches_u128(bits, 0x2000 << 112, 3)
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one:
/// IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64
/// `64:ff9b::/96` (the last 32 bits) and 6to4 `2002::/16` (bits 16..48).
/// Teredo (`2001::/32`, server and inverted client inside) lies in
/// 2001::/23 and is refused whole by the table, as is local-use NAT64.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from(bits as u32);
    if prefix_matches_u128(bits, 0xffff_0000_0000, 96)
        || prefix_matches_u128(bits, 0, 96)
        || prefix_matches_u128(
            bits,
            u128::from(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
            96,
        )
    {
        return Some(low32);
    }
    (ip.segments()[0] == 0x2002).then(|| Ipv4Addr::from((bits >> 80) as u32))
}

fn prefix_matches_u32(addr: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

fn prefix_matches_u128(addr: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    addr & mask == net & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(s: &str) -> bool {
        is_public(s.parse().expect("ip"))
    }

    #[test]
    fn every_special_purpose_v4_range_is_refused_at_both_ends() {
        for &(net, len) in V4_SPECIAL {
            let first = u32::from(net);
            let last = first | (u32::MAX.checked_shr(u32::from(len)).unwrap_or(0));
            for ip in [first, last] {
                assert!(!v4_is_public(Ipv4Addr::from(ip)), "{}", Ipv4Addr::from(ip));
            }
        }
    }

    #[test]
    fn every_special_purpose_v6_range_is_refused_at_both_ends() {
        for &(net, len) in V6_SPECIAL {
            let first = u128::from(net);
            let last = first | (u128::MAX.checked_shr(u32::from(len)).unwrap_or(0));
            for ip in [first, last] {
                assert!(!v6_is_public(Ipv6Addr::from(ip)), "{}", Ipv6Addr::from(ip));
            }
        }
    }

    #[test]
    fn the_addresses_the_review_named_are_refused() {
        for ip in [
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "2001:0:4136:e378:8000:63bf:80ff:fffe", // Teredo, client 127.0.0.1
            "2001:0:7f00:1::1",                     // Teredo, server 127.0.0.1
            "2001:0:808:808::f7f7:f7f7",            // Teredo, even with public ends
            "fec0::1",
            "feff::1",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.1",
            "192.0.0.170",
            "240.0.0.1",
            "255.255.255.255",
            "0.1.2.3",
            "100::1",
            "2001:2::1",
            "3fff::1",
            "5f00::1",
            "::2",
            "4000::1",
        ] {
            assert!(!public(ip), "{ip}");
        }
    }

    #[test]
    fn public_addresses_pass_in_every_form() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "198.17.255.255",
            "198.20.0.0",
            "192.0.1.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(public(ip), "{ip}");
        }
    }
}
