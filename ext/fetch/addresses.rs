//! Where a granted host name may lead: a function's outgoing requests resolve names through
//! [`GrantedResolver`], which refuses addresses of this machine and its private networks
//! (loopback, link-local, private and other non-public ranges) unless the function was granted
//! that address itself. Without it, a name the function was granted could be pointed (by its
//! DNS records) at the host's own API or at services on the private network.

use std::collections::HashMap;
use std::collections::HashSet;
use std::io;
use std::net::IpAddr;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;
use std::net::SocketAddr;
use std::sync::Arc;

use deno_fetch::dns::Resolve;
use deno_fetch::dns::Resolving;
use hyper_util::client::legacy::connect::dns::Name;

/// Resolves names with the system's resolver and keeps only the addresses a function may reach.
#[derive(Clone, Debug)]
pub(crate) struct GrantedResolver {
    /// Addresses granted as such in `allow_net`, with their ports.
    addresses: HashSet<(IpAddr, u16)>,
    /// The ports each granted name may be reached on.
    names: HashMap<String, Vec<u16>>,
}

impl GrantedResolver {
    /// The resolver for `allow_net`, each entry with its port ([`with_default_ports`]).
    pub fn new(allow_net: &[String]) -> Arc<Self> {
        let mut addresses = HashSet::new();
        let mut names: HashMap<String, Vec<u16>> = HashMap::new();
        for (host, port) in allow_net.iter().filter_map(|entry| host_and_port(entry)) {
            match host.parse::<IpAddr>() {
                Ok(address) => {
                    addresses.insert((address, port));
                }
                Err(_) => names
                    .entry(host.to_ascii_lowercase())
                    .or_default()
                    .push(port),
            }
        }
        Arc::new(Self { addresses, names })
    }

    /// Whether a request to `name` may go to `address`: a public address, or one granted as
    /// such on every port the name is granted with (the request's port is one of them).
    fn reachable(&self, name: &str, address: IpAddr) -> bool {
        if is_public(address) {
            return true;
        }
        self.names
            .get(&name.to_ascii_lowercase())
            .is_some_and(|ports| {
                ports
                    .iter()
                    .all(|port| self.addresses.contains(&(address, *port)))
            })
    }
}

impl Resolve for GrantedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            let (reachable, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
                .into_iter()
                .partition(|address| this.reachable(host, address.ip()));
            match refused.first() {
                Some(private) if reachable.is_empty() => Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves to {}, an address of this machine or a private network, \
                         which a function reaches only when granted that address itself in allow_net",
                        private.ip()
                    ),
                )),
                _ => Ok(reachable.into_iter()),
            }
        })
    }
}

/// The host and port of an `allow_net` entry with a port (`example.com:443`,
/// `[fd00::1]:80`); the host of an IPv6 address without its brackets.
fn host_and_port(entry: &str) -> Option<(&str, u16)> {
    let (host, port) = entry.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|host| host.strip_suffix(']'))
        .unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// Whether `address` is on the public internet: not this machine (loopback, unspecified), not a
/// private, shared (carrier NAT), link-local, benchmarking, multicast or reserved range, and
/// not one of those inside an IPv6 address (IPv4-mapped, NAT64).
pub(crate) fn is_public(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    !(a == 0
        || a == 10
        || a == 127
        || (a == 100 && (64..128).contains(&b))
        || (a == 169 && b == 254)
        || (a == 172 && (16..32).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 192 && b == 168)
        || (a == 198 && (18..20).contains(&b))
        || a >= 224)
}

fn is_public_v6(address: Ipv6Addr) -> bool {
    if let Some(v4) = address.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = address.segments();
    // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [.., high, low] = segments;
        return is_public_v4(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its second and third segments.
    if segments[0] == 0x2002 {
        return is_public_v4(Ipv4Addr::from(
            (u32::from(segments[1]) << 16) | u32::from(segments[2]),
        ));
    }
    !(address.is_unspecified()
        || address.is_loopback()
        // Unique local fc00::/7, link-local fe80::/10, site-local (deprecated) fec0::/10,
        // multicast ff00::/8.
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || (segments[0] & 0xff00) == 0xff00
        // Local-use NAT64 64:ff9b:1::/48, which translates to any IPv4 address.
        || segments[..3] == [0x64, 0xff9b, 1]
        // Teredo 2001::/32 (tunnels to an IPv4 address), documentation 2001:db8::/32,
        // discard-only 100::/64.
        || segments[..2] == [0x2001, 0]
        || segments[..2] == [0x2001, 0xdb8]
        || segments[..4] == [0x100, 0, 0, 0]
        // Benchmarking 2001:2::/48, documentation 3fff::/20.
        || segments[..3] == [0x2001, 2, 0]
        || (segments[0] == 0x3fff && segments[1] & 0xf000 == 0)
        // IPv4-compatible (deprecated) ::a.b.c.d, and IPv4-translated ::ffff:0:a.b.c.d.
        || segments[..6] == [0; 6]
        || segments[..6] == [0, 0, 0, 0, 0xffff, 0])
}

/// `allow_net` as Deno's permissions read it: an entry without a port grants the default ports
/// of http and https (80 and 443), not every port.
pub(crate) fn with_default_ports(allow_net: &[String]) -> Vec<String> {
    allow_net
        .iter()
        .flat_map(|entry| {
            if has_port(entry) {
                return vec![entry.clone()];
            }
            let host = if entry.parse::<Ipv6Addr>().is_ok() {
                format!("[{entry}]")
            } else {
                entry.clone()
            };
            vec![format!("{host}:80"), format!("{host}:443")]
        })
        .collect()
}

/// Whether an `allow_net` entry names a port (`host:8080`, `[::1]:8080`; a bare IPv6 address
/// has colons but no port).
fn has_port(entry: &str) -> bool {
    if entry.starts_with('[') {
        return entry.contains("]:");
    }
    entry.matches(':').count() == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b:1::808:808",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
            "fec0::1",
            "2001:0:4136:e378::1",
            "2001:db8::1",
            "100::1",
            "2001:2::1",
            "3fff:ff::1",
            "::ffff:0:a00:1",
            "::127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn an_entry_without_a_port_grants_the_default_ports() {
        let entries = |list: &[&str]| {
            with_default_ports(&list.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            entries(&[
                "example.com",
                "api.example.com:8443",
                "[::1]:8080",
                "[fd00::1]",
                "fd00::2",
                "10.0.0.1"
            ]),
            [
                "example.com:80",
                "example.com:443",
                "api.example.com:8443",
                "[::1]:8080",
                "[fd00::1]:80",
                "[fd00::1]:443",
                "[fd00::2]:80",
                "[fd00::2]:443",
                "10.0.0.1:80",
                "10.0.0.1:443"
            ]
        );
    }

    #[test]
    fn a_private_address_is_reachable_through_a_name_only_where_granted_itself() {
        let grants = [
            "db.internal:5432",
            "127.0.0.1:5432",
            "web.internal",
            "10.0.0.9:80",
            "[fd00::1]:5432",
        ]
        .map(str::to_owned);
        let resolver = GrantedResolver::new(&with_default_ports(&grants));
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        assert!(resolver.reachable("db.internal", ip("127.0.0.1")));
        assert!(resolver.reachable("DB.internal", ip("fd00::1")));
        assert!(resolver.reachable("db.internal", ip("93.184.215.14")));
        assert!(!resolver.reachable("db.internal", ip("10.0.0.1")));
        // web.internal may be reached on 80 and 443, but 10.0.0.9 only on 80.
        assert!(!resolver.reachable("web.internal", ip("10.0.0.9")));
        assert!(!resolver.reachable("unknown.example", ip("127.0.0.1")));
    }
}
