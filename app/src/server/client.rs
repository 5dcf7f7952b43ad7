//! Who sent a request: the client's address, taken from `X-Forwarded-For` only when the
//! direct peer is a trusted proxy, and the network that address belongs to (the unit
//! sign-in throttling counts by).

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::request::Parts;
use ipnet::IpNet;

/// The proxies whose `X-Forwarded-For` is believed (`SALVAGE_TRUSTED_PROXIES`). Empty:
/// the direct peer is the client, and the header is ignored.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

/// An entry of `SALVAGE_TRUSTED_PROXIES` that is neither an address nor a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or a network like 10.0.0.0/8")]
pub struct NotAProxy(pub String);

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and networks
    /// (`10.0.0.0/8, 192.0.2.7, fd00::/8`). The error names the entry that is wrong.
    pub fn parse(list: &str) -> Result<Self, NotAProxy> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| NotAProxy(entry.to_owned()))?;
            nets.push(net);
        }
        Ok(Self(Arc::new(nets)))
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`: when `peer` is trusted, the right-most address of
    /// `forwarded_for` that is not itself a trusted proxy (the left part of the header is
    /// whatever the client wrote, so it is never believed). Otherwise `peer`.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|header| header.split(','))
            .map(str::trim)
            .rev();
        let mut client = peer;
        for hop in hops {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                // Garbage in the chain: stop at the last address we could trust.
                break;
            };
            client = canonical(ip);
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network `ip` stands for when counting failures: an IPv4 address itself, an IPv6
/// address's /64 (one host usually holds a whole /64, so counting single IPv6 addresses
/// would let it pick a fresh one per attempt).
pub fn network_of(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = ipnet::Ipv6Net::new(v6, 64)
                .map(|net| net.trunc())
                .unwrap_or_else(|_| ipnet::Ipv6Net::from(v6));
            net.to_string()
        }
    }
}

/// The client address of a request: the connection's peer, or the address a trusted
/// proxy forwarded for. `None` only when the listener gave no peer (never in `serve`).
pub fn client_ip(proxies: &TrustedProxies, parts: &Parts) -> Option<IpAddr> {
    let peer = super::client_addr(parts)?.ip();
    let forwarded: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    Some(proxies.client(peer, &forwarded))
}

/// The network of a request's client ([`network_of`] of [`client_ip`]), `unknown` when
/// the listener gave no peer.
pub fn client_network(state: &super::AppState, parts: &Parts) -> String {
    client_ip(&state.trusted_proxies, parts).map_or_else(|| "unknown".to_owned(), network_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_unless_the_peer_is_trusted() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("192.0.2.1"), &["203.0.113.9"]),
            ip("192.0.2.1")
        );
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap();
        assert_eq!(
            proxies.client(ip("192.0.2.8"), &["203.0.113.9"]),
            ip("192.0.2.8")
        );
        assert_eq!(
            proxies.client(ip("192.0.2.7"), &["203.0.113.9"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client wrote "1.1.1.1" itself; the load balancers appended the rest.
        let chain = ["1.1.1.1, 203.0.113.9", "10.1.2.3"];
        assert_eq!(proxies.client(ip("10.0.0.1"), &chain), ip("203.0.113.9"));
        // Only proxies in the chain: the left-most of them.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["10.9.9.9"]),
            ip("10.9.9.9")
        );
        // No header at all: the proxy itself.
        assert_eq!(proxies.client(ip("10.0.0.1"), &[]), ip("10.0.0.1"));
        // Garbage stops the walk at the last good hop.
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &["203.0.113.9, nonsense, 10.2.2.2"]),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn networks_group_ipv6_by_64_and_unmap_ipv4() {
        assert_eq!(network_of(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(network_of(ip("::ffff:203.0.113.9")), "203.0.113.9");
        assert_eq!(network_of(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            network_of(ip("2001:db8:1:2:bbbb::9")),
            network_of(ip("2001:db8:1:2:aaaa::1"))
        );
        assert_ne!(
            network_of(ip("2001:db8:1:3::1")),
            network_of(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn a_bad_proxy_entry_is_named() {
        let error = TrustedProxies::parse("10.0.0.0/8, ten").unwrap_err();
        assert_eq!(error, super::NotAProxy("ten".into()));
        assert!(error.to_string().contains("\"ten\""), "{error}");
    }
}
