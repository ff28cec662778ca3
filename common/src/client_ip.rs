//! The client's address: the TCP peer, unless the peer is a trusted proxy, in which case
//! X-Forwarded-For is read from the right, skipping trusted hops. A spoofed header from an
//! untrusted peer therefore never changes the address.

use std::net::IpAddr;

use ipnet::IpNet;

/// The client address for a request from `peer` carrying `forwarded_for` (all
/// X-Forwarded-For values joined by commas).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    if !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    client_behind_trusted_peer(peer, forwarded_for, trusted)
}

/// [`client_ip`] for a `peer` the caller has already found in `trusted` (the proxy does,
/// once per request, for the country header too).
pub fn client_behind_trusted_peer(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in header.rsplit(',') {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // A malformed entry ends the chain: everything left of it is unverifiable.
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted() -> Vec<IpNet> {
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ]
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("1.2.3.4"), &trusted()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_peer_forwards_the_rightmost_untrusted_hop() {
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("198.51.100.7"), &trusted()),
            ip("198.51.100.7")
        );
        // The left entry was supplied by the client itself: not believed.
        assert_eq!(
            client_ip(
                ip("10.0.0.2"),
                Some("6.6.6.6, 198.51.100.7, 10.0.0.5"),
                &trusted()
            ),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn garbage_in_the_header_stops_the_walk() {
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("1.1.1.1, nonsense"), &trusted()),
            ip("10.0.0.2")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), Some("\r\n"), &trusted()),
            ip("10.0.0.2")
        );
        assert_eq!(client_ip(ip("10.0.0.2"), None, &trusted()), ip("10.0.0.2"));
    }

    #[test]
    fn ipv6_hops_are_understood() {
        assert_eq!(
            client_ip(ip("127.0.0.1"), Some("2001:db8::1"), &trusted()),
            ip("2001:db8::1")
        );
    }
}
