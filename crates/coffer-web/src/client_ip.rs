//! The client's IP address for per-IP limits. `X-Forwarded-For` is believed
//! only when the connection comes from a configured trusted proxy (a client
//! can write any header); then the rightmost address that is not itself a
//! trusted proxy is the client.

use axum::http::HeaderMap;
use std::net::IpAddr;

/// Addresses are compared in canonical form: on a dual-stack socket an IPv4
/// peer arrives as `::ffff:a.b.c.d`, which must match `a.b.c.d`.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    let trusted = |ip: &IpAddr| is_trusted_proxy(*ip, trusted_proxies);
    if !trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    hops.iter().rev().find(|ip| !trusted(ip)).or(hops.first()).copied().unwrap_or(peer)
}

/// Whether an address is one of the trusted proxies (canonical compare).
pub fn is_trusted_proxy(ip: IpAddr, trusted_proxies: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    trusted_proxies.iter().any(|t| t.to_canonical() == ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let stranger: IpAddr = "198.51.100.9".parse().unwrap();
        // A direct client cannot pick its own address.
        assert_eq!(client_ip(stranger, &headers("203.0.113.7"), &[proxy]), stranger);
        // Through the proxy: the rightmost untrusted hop, not a spoofed first one.
        assert_eq!(client_ip(proxy, &headers("1.2.3.4, 203.0.113.7"), &[proxy]), client);
        assert_eq!(client_ip(proxy, &headers("203.0.113.7, 10.0.0.2"), &[proxy]), client);
        assert_eq!(client_ip(proxy, &HeaderMap::new(), &[proxy]), proxy);
        assert_eq!(client_ip(proxy, &headers("garbage"), &[proxy]), proxy);
        // A dual-stack socket shows an IPv4 proxy as ::ffff:10.0.0.2.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(client_ip(mapped, &headers("203.0.113.7"), &[proxy]), client);
        assert_eq!(client_ip(proxy, &headers("::ffff:203.0.113.7"), &[proxy]), client);
    }
}
