//! Which webhook targets Holdfast may POST to. A webhook URL is chosen by whoever registers it,
//! so without a rule any party could make the server call its own loopback, the cloud
//! metadata service (169.254.169.254) or the private network behind it, and read in the
//! delivery log what answered (server-side request forgery).
//!
//! The rule is an allow list: an address is fine only if it is ordinary public unicast. Refused:
//! loopback, private (RFC 1918, IPv6 ULA `fc00::/7`), link-local (`169.254/16`, `fe80::/10`),
//! unspecified, shared address space (`100.64/10`), multicast, broadcast, documentation and
//! benchmarking ranges, reserved and special-purpose ranges, IPv4-mapped, NAT64 and 6to4 IPv6
//! forms of those, the deprecated IPv4-compatible and site-local IPv6 forms, and the names
//! `localhost` and `*.localhost`.
//!
//! Hosts are parsed the way the WHATWG URL standard (and so every browser, and reqwest) parses
//! them, through the `url` crate: `2130706433`, `0x7f000001`, `0177.0.0.1` and `127.1` are all
//! the IPv4 address 127.0.0.1 and are classified as such. A host name is checked again after
//! it is resolved, by the sender (it can resolve anywhere, and differently each time).
//!
//! Pure: no I/O here.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether private targets are allowed (development and tests only: a receiver on the
/// developer's machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TargetPolicy {
    /// Only public unicast addresses (the default).
    #[default]
    PublicOnly,
    /// Anything, loopback and private networks included.
    AllowPrivate,
}

/// Why an address or name is not a webhook target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    Loopback,
    Private,
    LinkLocal,
    Unspecified,
    SharedAddressSpace,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Reserved, deprecated or special-purpose ranges (IETF assignments, 240/4, Teredo, …).
    Reserved,
    /// `localhost` or a name under it.
    LocalName,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Loopback => "a loopback address",
            Forbidden::Private => "a private-network address",
            Forbidden::LinkLocal => "a link-local address",
            Forbidden::Unspecified => "the unspecified address",
            Forbidden::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            Forbidden::Multicast => "a multicast address",
            Forbidden::Broadcast => "the broadcast address",
            Forbidden::Documentation => "a documentation address",
            Forbidden::Benchmarking => "a benchmarking address",
            Forbidden::Reserved => "a reserved or special-purpose address",
            Forbidden::LocalName => "a local host name",
        })
    }
}

/// `None` if `ip` is a public unicast address a webhook may go to.
pub fn classify_ip(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, network: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(network)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    const RANGES: &[([u8; 4], u32, Forbidden)] = &[
        ([0, 0, 0, 0], 32, Forbidden::Unspecified),
        // "This network": only meaningful as a source address.
        ([0, 0, 0, 0], 8, Forbidden::Reserved),
        ([10, 0, 0, 0], 8, Forbidden::Private),
        ([100, 64, 0, 0], 10, Forbidden::SharedAddressSpace),
        ([127, 0, 0, 0], 8, Forbidden::Loopback),
        ([169, 254, 0, 0], 16, Forbidden::LinkLocal),
        ([172, 16, 0, 0], 12, Forbidden::Private),
        ([192, 0, 0, 0], 24, Forbidden::Reserved),
        ([192, 0, 2, 0], 24, Forbidden::Documentation),
        ([192, 88, 99, 0], 24, Forbidden::Reserved),
        ([192, 168, 0, 0], 16, Forbidden::Private),
        ([198, 18, 0, 0], 15, Forbidden::Benchmarking),
        ([198, 51, 100, 0], 24, Forbidden::Documentation),
        ([203, 0, 113, 0], 24, Forbidden::Documentation),
        ([224, 0, 0, 0], 4, Forbidden::Multicast),
        ([255, 255, 255, 255], 32, Forbidden::Broadcast),
        ([240, 0, 0, 0], 4, Forbidden::Reserved),
    ];
    RANGES
        .iter()
        .find(|(network, prefix, _)| in_v4(ip, *network, *prefix))
        .map(|(_, _, why)| *why)
}

fn in_v6(ip: Ipv6Addr, network: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(network)) & mask
}

/// The IPv4 address in the low 32 bits.
fn low_v4(ip: Ipv6Addr) -> Ipv4Addr {
    Ipv4Addr::from((u128::from(ip) & 0xffff_ffff) as u32)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    if ip.is_unspecified() {
        return Some(Forbidden::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Forbidden::Loopback);
    }
    // Forms that carry an IPv4 address: judged by that address.
    // IPv4-mapped ::ffff:a.b.c.d
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return classify_v4(low_v4(ip));
    }
    // NAT64 well-known prefix 64:ff9b::a.b.c.d (RFC 6052).
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(low_v4(ip));
    }
    // 6to4 2002:aabb:ccdd::/48 (RFC 3056).
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let embedded = ((u128::from(ip) >> 80) & 0xffff_ffff) as u32;
        return classify_v4(Ipv4Addr::from(embedded));
    }
    const RANGES: &[([u16; 8], u32, Forbidden)] = &[
        // Local-use NAT64 (RFC 8215): translates into the operator's own network.
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Forbidden::Private),
        // IPv4-compatible ::a.b.c.d (deprecated by RFC 4291) and the rest of ::/8.
        ([0, 0, 0, 0, 0, 0, 0, 0], 8, Forbidden::Reserved),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Forbidden::Reserved),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            Forbidden::Documentation,
        ),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Forbidden::Benchmarking),
        // IETF protocol assignments: Teredo, ORCHID, AMT, …
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, Forbidden::Reserved),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Forbidden::Documentation),
        ([0x5f00, 0, 0, 0, 0, 0, 0, 0], 16, Forbidden::Reserved),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, Forbidden::Private),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, Forbidden::LinkLocal),
        // Site-local, deprecated by RFC 3879.
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Forbidden::Private),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Forbidden::Multicast),
    ];
    if let Some((_, _, why)) = RANGES
        .iter()
        .find(|(network, prefix, _)| in_v6(ip, *network, *prefix))
    {
        return Some(*why);
    }
    // Global unicast is 2000::/3; everything else is unassigned or reserved.
    if in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        None
    } else {
        Some(Forbidden::Reserved)
    }
}

/// `localhost` and names under it always mean this machine (RFC 6761).
pub fn classify_name(name: &str) -> Option<Forbidden> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost")).then_some(Forbidden::LocalName)
}

/// Why a URL cannot be a webhook target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// Not an absolute http(s) URL with a host.
    Malformed(&'static str),
    /// The host is an address or name webhooks may not go to.
    Forbidden(Forbidden),
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetError::Malformed(why) => f.write_str(why),
            TargetError::Forbidden(why) => {
                write!(f, "webhooks may not be sent to {why}")
            }
        }
    }
}

/// Parses `raw` as the sender will (WHATWG) and checks its host under `policy`.
pub fn check_url(raw: &str, policy: TargetPolicy) -> Result<url::Url, TargetError> {
    let url = url::Url::parse(raw).map_err(|_| TargetError::Malformed("not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Malformed("a webhook URL is http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Malformed(
            "a webhook URL carries no user name or password",
        ));
    }
    let host = url
        .host()
        .ok_or(TargetError::Malformed("a webhook URL names a host"))?;
    if policy == TargetPolicy::AllowPrivate {
        return Ok(url);
    }
    let forbidden = match host {
        url::Host::Domain(name) => classify_name(name),
        url::Host::Ipv4(ip) => classify_v4(ip),
        url::Host::Ipv6(ip) => classify_v6(ip),
    };
    match forbidden {
        Some(why) => Err(TargetError::Forbidden(why)),
        None => Ok(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_refused(raw: &str) -> bool {
        matches!(
            check_url(raw, TargetPolicy::PublicOnly),
            Err(TargetError::Forbidden(_))
        )
    }

    fn ip(text: &str) -> Option<Forbidden> {
        classify_ip(text.parse().unwrap())
    }

    #[test]
    fn public_ipv4_and_ipv6_addresses_are_allowed() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(ip(text), None, "{text}");
        }
    }

    #[test]
    fn every_non_public_ipv4_range_is_refused() {
        for (text, why) in [
            ("127.0.0.1", Forbidden::Loopback),
            ("127.255.255.254", Forbidden::Loopback),
            ("10.0.0.1", Forbidden::Private),
            ("172.16.0.1", Forbidden::Private),
            ("172.31.255.255", Forbidden::Private),
            ("192.168.1.1", Forbidden::Private),
            ("169.254.169.254", Forbidden::LinkLocal),
            ("0.0.0.0", Forbidden::Unspecified),
            ("0.1.2.3", Forbidden::Reserved),
            ("100.64.0.1", Forbidden::SharedAddressSpace),
            ("100.127.255.255", Forbidden::SharedAddressSpace),
            ("224.0.0.1", Forbidden::Multicast),
            ("239.255.255.250", Forbidden::Multicast),
            ("255.255.255.255", Forbidden::Broadcast),
            ("240.0.0.1", Forbidden::Reserved),
            ("192.0.0.8", Forbidden::Reserved),
            ("192.88.99.1", Forbidden::Reserved),
            ("192.0.2.1", Forbidden::Documentation),
            ("198.51.100.7", Forbidden::Documentation),
            ("203.0.113.9", Forbidden::Documentation),
            ("198.18.0.1", Forbidden::Benchmarking),
            ("198.19.255.255", Forbidden::Benchmarking),
        ] {
            assert_eq!(ip(text), Some(why), "{text}");
        }
    }

    #[test]
    fn every_non_public_ipv6_range_is_refused() {
        for (text, why) in [
            ("::1", Forbidden::Loopback),
            ("::", Forbidden::Unspecified),
            ("fc00::1", Forbidden::Private),
            ("fd12:3456:789a::1", Forbidden::Private),
            ("fe80::1", Forbidden::LinkLocal),
            ("febf::1", Forbidden::LinkLocal),
            ("fec0::1", Forbidden::Private),
            ("ff02::1", Forbidden::Multicast),
            ("2001:db8::1", Forbidden::Documentation),
            ("3fff::1", Forbidden::Documentation),
            ("2001:2::1", Forbidden::Benchmarking),
            ("2001::1", Forbidden::Reserved),
            ("100::1", Forbidden::Reserved),
            ("64:ff9b:1::1", Forbidden::Private),
            ("4000::1", Forbidden::Reserved),
            // IPv4-mapped, IPv4-compatible, NAT64 and 6to4 forms of forbidden IPv4 addresses.
            ("::ffff:127.0.0.1", Forbidden::Loopback),
            ("::ffff:7f00:1", Forbidden::Loopback),
            ("::ffff:169.254.169.254", Forbidden::LinkLocal),
            ("::ffff:10.0.0.1", Forbidden::Private),
            ("::127.0.0.1", Forbidden::Reserved),
            ("::8.8.8.8", Forbidden::Reserved),
            ("64:ff9b::127.0.0.1", Forbidden::Loopback),
            ("64:ff9b::a9fe:a9fe", Forbidden::LinkLocal),
            ("2002:7f00:1::", Forbidden::Loopback),
            ("2002:c0a8:101::1", Forbidden::Private),
        ] {
            assert_eq!(ip(text), Some(why), "{text}");
        }
    }

    #[test]
    fn obfuscated_numeric_hosts_are_read_as_the_address_they_are() {
        for raw in [
            "http://127.0.0.1:8080/hook",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0x7F.0.0.1/",
            "http://0177.0.0.1/",
            "http://0177.0000.0000.0001/",
            "http://127.1/",
            "http://127.0.1/",
            "http://017700000001/",
            "http://0/",
            "http://0.0.0.0/",
            "http://169.254.169.254/latest/meta-data/",
            "http://2852039166/",
            "http://0xa9.0xfe.0xa9.0xfe/",
            "http://10.1/",
            "http://192.168.0.1./",
            "https://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[fd00::1]:443/",
            "http://%31%32%37.0.0.1/",
            "http://127.0.0.1%2e/",
        ] {
            assert!(url_refused(raw), "{raw} should be refused");
        }
    }

    #[test]
    fn localhost_names_are_refused_in_any_case_and_with_a_trailing_dot() {
        for raw in [
            "http://localhost/",
            "http://LOCALHOST:3000/",
            "http://localhost./",
            "http://api.localhost/",
            "http://a.b.LocalHost/",
        ] {
            assert!(url_refused(raw), "{raw} should be refused");
        }
        assert_eq!(classify_name("localhost.example.com"), None);
        assert_eq!(classify_name("mylocalhost"), None);
    }

    #[test]
    fn public_urls_pass_and_malformed_ones_are_not_targets() {
        for raw in [
            "https://supplier.example/holdfast-events",
            "http://8.8.8.8:8080/x",
            "https://[2606:4700:4700::1111]/",
        ] {
            assert!(check_url(raw, TargetPolicy::PublicOnly).is_ok(), "{raw}");
        }
        for raw in [
            "ftp://supplier.example/",
            "file:///etc/passwd",
            "http://",
            "not a url",
            "https://user:pass@supplier.example/",
            // Zone ids are not part of URLs (WHATWG): refused as malformed.
            "http://[fe80::1%25eth0]/",
        ] {
            assert!(
                matches!(
                    check_url(raw, TargetPolicy::PublicOnly),
                    Err(TargetError::Malformed(_))
                ),
                "{raw}"
            );
        }
    }

    #[test]
    fn the_development_policy_allows_private_targets() {
        for raw in ["http://127.0.0.1:9/", "http://localhost/", "http://[::1]/"] {
            assert!(check_url(raw, TargetPolicy::AllowPrivate).is_ok(), "{raw}");
        }
    }
}
