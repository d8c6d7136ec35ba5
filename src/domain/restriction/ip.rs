use std::{net::IpAddr, str::FromStr};

use ipnet::IpNet;

use super::MAX_ALLOWLIST;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IpError {
    #[error("`{0}` is not an IP address or CIDR block")]
    Syntax(String),
    #[error("an allowlist needs at least one entry")]
    Empty,
    #[error("at most {MAX_ALLOWLIST} entries")]
    TooMany,
}

/// CIDR blocks, IPv4 and IPv6. A bare address is a /32 or /128. An IPv4
/// address written as IPv4-mapped IPv6 (`::ffff:10.0.0.1`) matches IPv4 blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpNet>);

impl IpAllowlist {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, (usize, IpError)> {
        if entries.is_empty() {
            return Err((0, IpError::Empty));
        }
        if entries.len() > MAX_ALLOWLIST {
            return Err((MAX_ALLOWLIST, IpError::TooMany));
        }
        entries
            .iter()
            .enumerate()
            .map(|(i, e)| parse_net(e.as_ref()).map_err(|err| (i, err)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn entries(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(ToString::to_string)
    }
}

fn parse_net(s: &str) -> Result<IpNet, IpError> {
    let net = match IpNet::from_str(s) {
        Ok(net) => net,
        Err(_) => IpAddr::from_str(s)
            .map(IpNet::from)
            .map_err(|_| IpError::Syntax(s.chars().take(64).collect()))?,
    };
    // Store the block, not the address it was written with: `10.1.2.3/8`
    // means `10.0.0.0/8`.
    Ok(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(e: &[&str]) -> IpAllowlist {
        IpAllowlist::parse(e).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn ipv4_cidr_edges() {
        let l = list(&["10.0.0.0/8", "192.168.1.7"]);
        assert!(l.contains(ip("10.0.0.0")));
        assert!(l.contains(ip("10.255.255.255")));
        assert!(!l.contains(ip("11.0.0.0")));
        assert!(!l.contains(ip("9.255.255.255")));
        assert!(l.contains(ip("192.168.1.7")));
        assert!(!l.contains(ip("192.168.1.8")));
        assert!(l.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
    }

    #[test]
    fn ipv6_cidr_edges() {
        let l = list(&["2001:db8::/32"]);
        assert!(l.contains(ip("2001:db8::1")));
        assert!(l.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!l.contains(ip("2001:db9::")));
        assert!(!l.contains(ip("10.0.0.1")));
    }

    #[test]
    fn host_bits_are_masked_and_bad_entries_named() {
        assert!(list(&["10.1.2.3/8"]).contains(ip("10.9.9.9")));
        assert_eq!(
            IpAllowlist::parse(&["10.0.0.0/8", "10.0.0.0/33"])
                .unwrap_err()
                .0,
            1
        );
        assert_eq!(IpAllowlist::parse(&["nope"]).unwrap_err().0, 0);
        assert_eq!(
            IpAllowlist::parse::<&str>(&[]).unwrap_err().1,
            IpError::Empty
        );
    }
}
