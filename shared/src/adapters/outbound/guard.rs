//! Which addresses flows may call. By default only public ones: a bot must
//! not become a way into the network it runs in (cloud metadata, VPC
//! services, the host itself). Names are resolved here and the connection is
//! made to the addresses checked, so DNS rebinding cannot slip past.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                addresses.into_iter().filter(|a| allow_private || is_public(a.ip())).collect();
            if allowed.is_empty() {
                return Err(
                    format!("{host} resolves to no public address; calls to private networks are not allowed").into()
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Scheme and literal-address checks (names are checked when resolved).
pub fn check_url(url: &reqwest::Url, allow_private: bool) -> Result<(), String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs may be called, not {}", url.scheme()));
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err("the URL has no host".into()),
    };
    match literal {
        Some(ip) if !allow_private && !is_public(ip) => {
            Err(format!("{ip} is not a public address; calls to private networks are not allowed"))
        }
        _ => Ok(()),
    }
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first == 0x64 && ip.segments()[1] == 0xff9b) // NAT64 to any IPv4
        || first == 0x2002 // 6to4, embeds an IPv4 address
        || (first == 0x2001 && ip.segments()[1] == 0) // Teredo
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || ip.segments()[..6].iter().all(|s| *s == 0) // IPv4-compatible (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0xdb8) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn urls_must_be_http_and_literal_addresses_public() {
        let check = |u: &str, allow| check_url(&reqwest::Url::parse(u).unwrap(), allow);
        assert!(check("file:///etc/passwd", true).is_err());
        assert!(check("ftp://example.com/x", true).is_err());
        assert!(check("http://169.254.169.254/latest/meta-data", false).is_err());
        assert!(check("http://[::1]:8080/", false).is_err());
        assert!(check("http://127.0.0.1:8080/", true).is_ok());
        assert!(check("https://api.example.com/orders", false).is_ok());
    }
}
