//! Destination safety: which subscriber URLs and addresses bouncewatch may connect to.
//!
//! A subscription URL is set by an administrator, so without these checks the forwarder could
//! be aimed at cloud metadata, loopback services or hosts on the internal network. The checks
//! run when a URL is stored ([`check_url`]) and again before every attempt
//! ([`resolve_destination`]), whose checked addresses the sender pins so that a second DNS
//! answer cannot swap them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

/// The maximum length of a subscriber URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// The reason a destination is invalid or not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error("the URL is not valid: {0}")]
    InvalidUrl(String),
    #[error("the URL is longer than 2048 bytes")]
    TooLong,
    #[error(
        "the scheme {0:?} is not allowed; use https (http only with private destinations allowed)"
    )]
    SchemeNotAllowed(String),
    #[error("the URL must not contain a user name or password")]
    UserInfo,
    #[error("the URL has no host")]
    MissingHost,
    #[error("the host {0:?} is a loopback name")]
    LoopbackName(String),
    #[error("the host {host:?} is or resolves to {address}, a private or reserved address")]
    ForbiddenAddress { host: String, address: IpAddr },
    #[error("resolving {host:?} failed: {reason}")]
    ResolveFailed { host: String, reason: String },
    #[error("resolving {0:?} returned no addresses")]
    NoAddresses(String),
}

impl DestinationError {
    /// Returns `true` when the guard rejected the destination, as opposed to a resolution failure that a
    /// later attempt may not see.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            DestinationError::ResolveFailed { .. } | DestinationError::NoAddresses(_)
        )
    }
}

/// Checks a URL before it is stored: https only (http too when `allow_private`), no user info,
/// a host, and a literal IP host that [`is_forbidden_ip`] accepts. The url crate has already
/// normalised hex, octal and decimal IPv4 spellings such as `http://0x7f000001/` to dotted form.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, DestinationError> {
    if url.len() > MAX_URL_LEN {
        return Err(DestinationError::TooLong);
    }
    let parsed = Url::parse(url).map_err(|err| DestinationError::InvalidUrl(err.to_string()))?;

    let scheme_allowed = match parsed.scheme() {
        "https" => true,
        "http" => allow_private,
        _ => false,
    };
    if !scheme_allowed {
        return Err(DestinationError::SchemeNotAllowed(
            parsed.scheme().to_string(),
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(DestinationError::UserInfo);
    }

    let host = parsed.host().ok_or(DestinationError::MissingHost)?;
    if allow_private {
        return Ok(parsed);
    }
    match host {
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            // RFC 6761 reserves `localhost` and its subdomains for loopback.
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(DestinationError::LoopbackName(name));
            }
        }
        Host::Ipv4(address) => check_ip(&address.to_string(), IpAddr::V4(address))?,
        Host::Ipv6(address) => check_ip(&address.to_string(), IpAddr::V6(address))?,
    }
    Ok(parsed)
}

fn check_ip(host: &str, address: IpAddr) -> Result<(), DestinationError> {
    if is_forbidden_ip(address) {
        return Err(DestinationError::ForbiddenAddress {
            host: host.to_string(),
            address,
        });
    }
    Ok(())
}

/// The addresses an attempt may connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// The URL's host is an IP address, so there is nothing to resolve or pin.
    Literal,
    /// The URL's host is a name whose checked addresses the client must be pinned to.
    Resolved {
        host: String,
        addrs: Vec<SocketAddr>,
    },
    /// Private destinations are allowed, so the client resolves the name itself.
    Unchecked,
}

/// Checks a URL and resolves its host for one attempt. The attempt is refused if any resolved
/// address is forbidden, because the HTTP client may try each of them in turn.
pub async fn resolve_destination(
    url: &Url,
    allow_private: bool,
) -> Result<Destination, DestinationError> {
    check_url(url.as_str(), allow_private)?;
    let host = match url.host() {
        Some(Host::Domain(name)) => name.to_string(),
        Some(_) => return Ok(Destination::Literal),
        None => return Err(DestinationError::MissingHost),
    };
    if allow_private {
        return Ok(Destination::Unchecked);
    }

    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| DestinationError::ResolveFailed {
            host: host.clone(),
            reason: err.to_string(),
        })?
        .collect();
    check_resolved(&host, &addrs)?;
    Ok(Destination::Resolved { host, addrs })
}

/// Rejects a resolution result that is empty or contains any forbidden address.
fn check_resolved(host: &str, addrs: &[SocketAddr]) -> Result<(), DestinationError> {
    if addrs.is_empty() {
        return Err(DestinationError::NoAddresses(host.to_string()));
    }
    for addr in addrs {
        check_ip(host, addr.ip())?;
    }
    Ok(())
}

/// IPv4 networks no subscriber may be on: (network, prefix length).
const FORBIDDEN_V4: [(Ipv4Addr, u8); 16] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),     // "this network", includes 0.0.0.0
    (Ipv4Addr::new(10, 0, 0, 0), 8),    // RFC 1918 private
    (Ipv4Addr::new(100, 64, 0, 0), 10), // carrier-grade NAT (RFC 6598)
    (Ipv4Addr::new(127, 0, 0, 0), 8),   // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link-local, where cloud metadata lives
    (Ipv4Addr::new(172, 16, 0, 0), 12), // RFC 1918 private
    (Ipv4Addr::new(192, 0, 0, 0), 24),  // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),  // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24), // deprecated 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16), // RFC 1918 private
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),   // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),   // reserved, includes broadcast
    (Ipv4Addr::new(255, 255, 255, 255), 32), // broadcast
];

/// IPv6 networks no subscriber may be on. Networks that embed an IPv4 address are handled in
/// [`embedded_ipv4`] instead, so that a public IPv4 address embedded there stays reachable.
const FORBIDDEN_V6: [(Ipv6Addr, u8); 11] = [
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128), // unspecified
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128), // loopback
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64 (RFC 8215)
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    // IETF protocol assignments, including Teredo, whose embedded IPv4 address is obfuscated.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),     // documentation (RFC 9637)
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),      // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),     // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),     // deprecated site-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),      // multicast
];

/// Returns `true` when an address is loopback, private, link-local, shared, multicast, broadcast,
/// unspecified, reserved for documentation or benchmarking, or an IPv6 form that embeds such
/// an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
/// `64:ff9b::a.b.c.d` and 6to4 `2002:aabb:ccdd::`).
pub fn is_forbidden_ip(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if FORBIDDEN_V6
                .iter()
                .any(|&(net, len)| in_v6_net(v6, net, len))
            {
                return true;
            }
            embedded_ipv4(v6).is_some_and(is_forbidden_v4)
        }
    }
}

fn is_forbidden_v4(address: Ipv4Addr) -> bool {
    FORBIDDEN_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        u32::from(address) & mask == u32::from(net) & mask
    })
}

fn in_v6_net(address: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(address) & mask == u128::from(net) & mask
}

/// Returns the IPv4 address that an IPv6 address carries, for the forms that carry one.
fn embedded_ipv4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(address);
    let low32 = Ipv4Addr::from(bits as u32);
    let mapped = Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0);
    let compatible = Ipv6Addr::UNSPECIFIED;
    let nat64 = Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0);
    let six_to_four = Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0);

    if in_v6_net(address, mapped, 96)
        || in_v6_net(address, compatible, 96)
        || in_v6_net(address, nat64, 96)
    {
        return Some(low32);
    }
    if in_v6_net(address, six_to_four, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests;
