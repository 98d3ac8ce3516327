//! Where the gateway may connect to on an operator's behalf (SSRF protection):
//! registering an upstream makes the gateway open connections to the URL given, so
//! the addresses it may reach are a policy. By default the cloud metadata services
//! and link-local networks are refused (`169.254.169.254` hands out credentials on most
//! clouds); an operator may also confine upstreams to some networks or host names.
//! The registry checks URLs when they are registered; the transport checks every
//! address a name resolves to when it connects, so DNS rebinding cannot get around it.

use std::net::IpAddr;

use url::Url;

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    address: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses `address/prefix` (a bare address is a /32 or /128).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let address: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("`{}` is not an IP address or network", text.escape_debug()))?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| {
                    format!("`{}`: the prefix must be 0 to {max}", text.escape_debug())
                })?,
            None => max,
        };
        Ok(Self { address, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Networks refused unless the operator says otherwise: "this network", link-local
/// (where cloud metadata services live: 169.254.169.254, fd00:ec2::254 on AWS) and
/// Alibaba Cloud's metadata address.
pub const DEFAULT_DENIED: &[&str] = &[
    "0.0.0.0/8",
    "169.254.0.0/16",
    "100.100.100.200/32",
    "fe80::/10",
    "fd00:ec2::254/128",
];

/// Where upstream connections may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Never connect to these (wins over `allowed`).
    pub denied: Vec<Network>,
    /// When not empty, connect only to addresses in these.
    pub allowed: Vec<Network>,
    /// When not empty, only URLs whose host matches one of these globs
    /// (`*.internal.example.com`).
    pub hosts: Vec<String>,
}

impl Default for EgressPolicy {
    fn default() -> Self {
        Self {
            denied: DEFAULT_DENIED
                .iter()
                .filter_map(|n| Network::parse(n).ok())
                .collect(),
            allowed: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl EgressPolicy {
    /// Whether the gateway may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(network) = self.denied.iter().find(|n| n.contains(ip)) {
            return Err(format!(
                "{ip} is in {network}, which upstreams may not use (upstreams.denied_networks)"
            ));
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|n| n.contains(ip)) {
            return Err(format!(
                "{ip} is outside the networks upstreams may use (upstreams.allowed_networks)"
            ));
        }
        Ok(())
    }

    /// Whether an upstream URL is acceptable before any lookup: an http(s) URL whose
    /// host is allowed, and, for an IP literal, whose address is.
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "`{}:` URLs are not upstreams; use http(s)",
                url.scheme()
            ));
        }
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if self.hosts.is_empty()
                    || self.hosts.iter().any(|pattern| {
                        crate::access::glob_match(&pattern.to_ascii_lowercase(), &name)
                    })
                {
                    Ok(())
                } else {
                    Err(format!(
                        "host `{name}` is not among the hosts upstreams may use (upstreams.allowed_hosts)"
                    ))
                }
            }
            None => Err("the URL has no host".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_by_default_in_every_spelling() {
        let policy = EgressPolicy::default();
        for refused in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fd00:ec2::254]/",
            "http://100.100.100.200/",
            "http://0.0.0.0:8080/mcp",
            "http://[fe80::1]/mcp",
            "http://2852039166/",
            "http://0xa9fea9fe/",
        ] {
            assert!(policy.check_url(&url(refused)).is_err(), "{refused}");
        }
        for allowed in [
            "http://127.0.0.1:9000/mcp",
            "https://mcp.example.com/mcp",
            "http://10.1.2.3/mcp",
        ] {
            assert!(policy.check_url(&url(allowed)).is_ok(), "{allowed}");
        }
        assert!(policy.check_url(&url("file:///etc/passwd")).is_err());
    }

    proptest::proptest! {
        /// Any URL or network text: an answer, never a panic.
        #[test]
        fn any_input_gets_an_answer(text in "\\PC{0,80}") {
            let _ = Network::parse(&text);
            if let Ok(parsed) = Url::parse(&text) {
                let _ = EgressPolicy::default().check_url(&parsed);
            }
        }

        /// Every address in a denied network is refused, however it is spelled.
        #[test]
        fn link_local_is_refused_in_every_form(last in 0u8..=255, third in 0u8..=255) {
            let v4 = std::net::Ipv4Addr::new(169, 254, third, last);
            let policy = EgressPolicy::default();
            proptest::prop_assert!(policy.check_ip(IpAddr::V4(v4)).is_err());
            proptest::prop_assert!(policy.check_ip(IpAddr::V6(v4.to_ipv6_mapped())).is_err());
            let decimal = format!("http://{}/", u32::from(v4));
            proptest::prop_assert!(policy.check_url(&url(&decimal)).is_err());
        }
    }

    #[test]
    fn an_operator_can_confine_upstreams_to_networks_and_hosts() {
        let policy = EgressPolicy {
            allowed: vec![Network::parse("10.0.0.0/8").expect("net")],
            hosts: vec!["*.corp.example".into()],
            ..EgressPolicy::default()
        };
        assert!(policy.check_url(&url("http://10.9.8.7/mcp")).is_ok());
        assert!(policy.check_url(&url("http://192.168.1.1/mcp")).is_err());
        assert!(
            policy
                .check_url(&url("https://tools.corp.example/mcp"))
                .is_ok()
        );
        assert!(policy.check_url(&url("https://evil.example/mcp")).is_err());
        assert!(policy.check_ip("10.0.0.1".parse().expect("ip")).is_ok());
        assert!(
            policy
                .check_ip("169.254.169.254".parse().expect("ip"))
                .is_err(),
            "deny wins"
        );
        for bad in ["10.0.0.0/33", "nope", "::/129", "1.2.3.4/x"] {
            assert!(Network::parse(bad).is_err(), "{bad}");
        }
    }
}
