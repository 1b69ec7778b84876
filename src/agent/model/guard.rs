//! Keeping a shared service's model requests off private networks. A team of a multi-team
//! service could otherwise point `base_url` at an internal address (a metadata endpoint, an
//! admin port) and read the start of its answer back in the run's error: server-side request
//! forgery. Checked twice: the base URL when a run is asked for (an IP literal, or every
//! address its host resolves to), and every connection's addresses as they are resolved, so a
//! name that changes its answer later (DNS rebinding) cannot get through either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address of the public internet: not loopback, private, link-local,
/// shared (CGNAT), unspecified, multicast, broadcast or reserved, in IPv4 or IPv6 (IPv4 inside
/// IPv6 is judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return public_v4(v4);
    }
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
    }
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
}

/// Refuse a base URL whose host is, or resolves to, an address that is not public.
pub async fn check(base_url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(base_url).map_err(|e| format!("base_url {base_url} is not a URL: {e}"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    let refused = |addr: &str| {
        format!("base_url {base_url} reaches {addr}, a private or reserved address, which this shared service does not call; an operator may list the URL in agent.allowed_base_urls")
    };
    let Some(host) = url.host_str() else { return Err(format!("base_url {base_url} has no host")) };
    let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
    let addrs: Vec<IpAddr> = match literal {
        Ok(ip) => vec![ip],
        Err(_) => tokio::net::lookup_host((host, port)).await.map_err(|e| format!("base_url {base_url}: cannot resolve {host}: {e}"))?.map(|a| a.ip()).collect(),
    };
    match addrs.into_iter().find(|ip| !is_public(*ip)) {
        Some(ip) => Err(refused(&ip.to_string())),
        None => Ok(()),
    }
}

/// A resolver that answers only public addresses, for the clients of a shared service.
pub struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
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

    #[test]
    fn private_and_reserved_addresses_are_not_public() {
        for ip in [
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "100.64.0.1", "255.255.255.255", "224.0.0.1",
            "198.18.0.1", "240.0.0.1", "::1", "::", "fc00::1", "fd12::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe", "::127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "8.8.8.8", "104.18.6.192", "2606:4700::1111", "::ffff:1.1.1.1", "64:ff9b::101:101"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn literals_and_names_of_private_addresses_are_refused() {
        for url in ["http://127.0.0.1:8080/v1", "http://[::1]:1/v1", "http://169.254.169.254/latest", "http://10.0.0.1/v1", "http://localhost:11434/v1"] {
            let err = check(url).await.unwrap_err();
            assert!(err.contains("private or reserved address"), "{url}: {err}");
        }
        let name: Name = "localhost".parse().unwrap();
        let err = PublicOnly.resolve(name).await.err().expect("localhost is refused");
        assert!(err.to_string().contains("no public address"), "{err}");
    }
}
