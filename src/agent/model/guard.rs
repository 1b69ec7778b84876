//! Keeping a shared service's model requests off private networks and off the host itself. A
//! team of a multi-team service could otherwise point `base_url` at an internal address (a
//! metadata endpoint, an admin port, a listener on this host) and read the start of its answer
//! back in the run's error: server-side request forgery. Checked twice: the base URL when a run
//! is asked for (an IP literal, or every address its host resolves to), and every connection's
//! addresses as they are resolved, so a name that changes its answer later (DNS rebinding)
//! cannot get through either.
//!
//! The rule is an allow-list in spirit: an address must be globally reachable (outside every
//! block of IANA's IPv4 and IPv6 special-purpose address registries, and for IPv6 inside global
//! unicast 2000::/3) and must not be one of the host's own interface addresses, read afresh at
//! every check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// IPv4 blocks refused: IANA's IPv4 special-purpose registry (every entry, the few globally
/// reachable ones such as AS112 included, since no model server lives there), multicast and
/// the limited broadcast address (inside 240.0.0.0/4).
const V4_REFUSED: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local (cloud metadata)
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 31, 196, 0), 24), // AS112-v4
    (Ipv4Addr::new(192, 52, 193, 0), 24), // AMT
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(192, 175, 48, 0), 24), // direct delegation AS112
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, and 255.255.255.255
];

/// IPv6 blocks refused inside global unicast 2000::/3 (everything outside it is refused
/// already: ::/128, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8, 100::/64, 64:ff9b:1::/48,
/// 5f00::/16, the deprecated IPv4-compatible ::/96, ...).
const V6_REFUSED: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments (Teredo, ORCHID, ...)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48), // direct delegation AS112
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation (RFC 9637)
];

fn in_v4(ip: Ipv4Addr, (net, len): (Ipv4Addr, u8)) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, (net, len): (Ipv6Addr, u8)) -> bool {
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn v4_in(bits: u32) -> Ipv4Addr {
    Ipv4Addr::from(bits)
}

/// The IPv4 address an IPv6 address stands for, where it stands for one that could be reached
/// through it: IPv4-mapped (::ffff:0:0/96), NAT64's well-known prefix (64:ff9b::/96) and 6to4
/// (2002::/16, the IPv4 address in bits 16..48).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if in_v6(ip, (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)) {
        return Some(v4_in(bits as u32));
    }
    if in_v6(ip, (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16)) {
        return Some(v4_in((bits >> 80) as u32));
    }
    None
}

/// Whether `ip` is a globally reachable address: outside every special-purpose block (IPv4
/// inside IPv6 is judged as IPv4). The host's own addresses are a separate question
/// ([`refusal`]).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_REFUSED.iter().any(|b| in_v4(v4, *b)),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                in_v6(v6, (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3))
                    && !V6_REFUSED.iter().any(|b| in_v6(v6, *b))
            }
        },
    }
}

/// Every address assigned to one of the host's interfaces, read now (addresses come and go).
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(ifaces) = nix::ifaddrs::getifaddrs() else {
        tracing::warn!("cannot list the host's interface addresses; only special-purpose addresses are refused");
        return Vec::new();
    };
    ifaces
        .filter_map(|i| i.address)
        .filter_map(|a| match (a.as_sockaddr_in(), a.as_sockaddr_in6()) {
            (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
            (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
            _ => None,
        })
        .collect()
}

/// Why `ip` may not be called, if it may not: not globally reachable, or the host's own
/// (directly, or as the IPv4 address inside an IPv6 one).
pub fn refusal(ip: IpAddr, host: &[IpAddr]) -> Option<&'static str> {
    if !is_public(ip) {
        return Some("a private or reserved address");
    }
    let v4 = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    if host.iter().any(|h| *h == ip || Some(*h) == v4) {
        return Some("an address of this host");
    }
    None
}

/// Refuse a base URL whose host is, or resolves to, an address that is not public or is the
/// host's own.
pub async fn check(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url)
        .map_err(|e| format!("base_url {base_url} is not a URL: {e}"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let Some(host) = url.host_str() else {
        return Err(format!("base_url {base_url} has no host"));
    };
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    let addrs: Vec<IpAddr> = match literal {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("base_url {base_url}: cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    let own = host_addresses();
    match addrs.into_iter().find_map(|ip| refusal(ip, &own).map(|why| (ip, why))) {
        Some((ip, why)) => Err(format!(
            "base_url {base_url} reaches {ip}, {why}, which this shared service does not call; an operator may list the URL in agent.allowed_base_urls"
        )),
        None => Ok(()),
    }
}

/// A resolver that answers only public addresses that are not the host's own, for the clients
/// of a shared service.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let own = host_addresses();
            let public: Vec<SocketAddr> = all
                .into_iter()
                .filter(|a| refusal(a.ip(), &own).is_none())
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address; this shared service calls only public ones").into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        !is_public(ip.parse().unwrap())
    }

    #[test]
    fn every_ipv4_special_purpose_block_is_refused_at_both_ends() {
        for (first, last) in [
            ("0.0.0.0", "0.255.255.255"),
            ("10.0.0.0", "10.255.255.255"),
            ("100.64.0.0", "100.127.255.255"),
            ("127.0.0.0", "127.255.255.255"),
            ("169.254.0.0", "169.254.255.255"),
            ("172.16.0.0", "172.31.255.255"),
            ("192.0.0.0", "192.0.0.255"),
            ("192.0.2.0", "192.0.2.255"),
            ("192.31.196.0", "192.31.196.255"),
            ("192.52.193.0", "192.52.193.255"),
            ("192.88.99.0", "192.88.99.255"),
            ("192.168.0.0", "192.168.255.255"),
            ("192.175.48.0", "192.175.48.255"),
            ("198.18.0.0", "198.19.255.255"),
            ("198.51.100.0", "198.51.100.255"),
            ("203.0.113.0", "203.0.113.255"),
            ("224.0.0.0", "239.255.255.255"),
            ("240.0.0.0", "255.255.255.254"),
            ("255.255.255.255", "255.255.255.255"),
        ] {
            assert!(refused(first) && refused(last), "{first} .. {last}");
        }
        // Just outside the blocks.
        for ip in [
            "1.0.0.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
            "8.8.8.8",
            "104.18.6.192",
        ] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn every_ipv6_special_purpose_block_is_refused() {
        for ip in [
            "::",
            "::1",
            "::2",
            "::127.0.0.1",
            "::8.8.8.8", // unspecified, loopback, IPv4-compatible
            "64:ff9b:1::1",
            "64:ff9b:1:ffff::1", // local-use NAT64
            "100::",
            "100::ffff:ffff:ffff:ffff",
            "100:0:0:1::1", // discard, dummy prefix
            "2001::",
            "2001:1ff:ffff::1",
            "2001:20::1",
            "2001:0:4136:e378::1", // IETF assignments, ORCHIDv2, Teredo
            "2001:db8::",
            "2001:db8:ffff:ffff::1", // documentation
            "2620:4f:8000::1",
            "3fff::1",
            "3fff:fff::1", // AS112, documentation
            "5f00::1",     // SRv6 SIDs
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff02::1",
            "ff0e::1",
            "4000::1",
            "1fff:ffff::1", // outside global unicast
        ] {
            assert!(refused(ip), "{ip}");
        }
        for ip in [
            "2606:4700::1111",
            "2001:200::1",
            "2a00:1450::1",
            "2620:4f:8001::1",
            "3ffe::1",
        ] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_as_ipv4() {
        // IPv4-mapped, NAT64's well-known prefix and 6to4.
        for ip in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:192.0.2.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::c000:201",
            "2002:7f00:1::1",
            "2002:c633:6401::1",
            "2002:a00:1::",
        ] {
            assert!(refused(ip), "{ip}");
        }
        for ip in ["::ffff:1.1.1.1", "64:ff9b::101:101", "2002:808:808::1"] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn the_hosts_own_addresses_are_refused_even_when_public() {
        let host: Vec<IpAddr> = vec![
            "8.8.4.4".parse().unwrap(),
            "2606:4700::6810:1".parse().unwrap(),
        ];
        for ip in [
            "8.8.4.4",
            "::ffff:8.8.4.4",
            "64:ff9b::808:404",
            "2002:808:404::1",
            "2606:4700::6810:1",
        ] {
            assert_eq!(
                refusal(ip.parse().unwrap(), &host),
                Some("an address of this host"),
                "{ip}"
            );
        }
        assert_eq!(refusal("8.8.8.8".parse().unwrap(), &host), None);
        assert_eq!(
            refusal("127.0.0.1".parse().unwrap(), &host),
            Some("a private or reserved address")
        );
        // The real host: each of its addresses (loopback at least) is refused.
        let own = host_addresses();
        assert!(own.iter().any(|a| a.is_loopback()), "{own:?}");
        for a in &own {
            assert!(refusal(*a, &own).is_some(), "{a}");
        }
    }

    #[tokio::test]
    async fn literals_and_names_of_private_addresses_are_refused() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://[::1]:1/v1",
            "http://169.254.169.254/latest",
            "http://10.0.0.1/v1",
            "http://localhost:11434/v1",
            "http://192.0.2.10/v1",
            "http://198.51.100.7/v1",
            "http://203.0.113.9/v1",
            "http://198.18.0.1/v1",
            "http://240.0.0.1/v1",
            "http://[2001:db8::1]/v1",
            "http://[fec0::1]/v1",
            "http://[64:ff9b:1::a00:1]/v1",
        ] {
            let err = check(url).await.unwrap_err();
            assert!(err.contains("private or reserved address"), "{url}: {err}");
        }
        let name: Name = "localhost".parse().unwrap();
        let err = PublicOnly
            .resolve(name)
            .await
            .err()
            .expect("localhost is refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
