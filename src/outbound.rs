//! Where requests the repository asks for may go. A notify webhook, a Slack URL or an SMTP host
//! is written by whoever can commit to the config repository, so by default none of them may
//! reach the daemon's own network: loopback, link-local (cloud metadata at 169.254.169.254),
//! private, shared (CGNAT), unique-local, multicast and unspecified addresses are refused. The
//! operator opens exceptions with `--allow-outbound HOST|CIDR` (env `MOCKOPS_ALLOW_OUTBOUND`).
//!
//! The check runs where addresses are known: [`GuardedResolver`] filters what DNS answers for
//! every connection of an HTTP client (so a name that resolves to a private address, or starts
//! to later, is refused at connect time), and [`OutboundPolicy::check_url`] refuses a literal
//! IP in a URL before any request. Clients built here follow no redirects; a caller that
//! follows one must check its target again.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// What may be reached besides public addresses.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Host names allowed whatever they resolve to (lower case, no trailing dot).
    hosts: Vec<String>,
    /// Networks allowed (a bare address is a /32 or /128).
    nets: Vec<IpNet>,
}

impl fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A refused destination.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{target} is refused: {why}; the daemon only reaches public addresses unless it is started \
     with `--allow-outbound {suggest}` (or MOCKOPS_ALLOW_OUTBOUND)"
)]
pub struct Refused {
    pub target: String,
    pub why: String,
    pub suggest: String,
    /// The name did not resolve at all (nothing was refused by the policy): callers that tell
    /// an unreachable destination from a forbidden one read this, not the text.
    pub unresolved: bool,
}

/// An `--allow-outbound` entry that is neither a host name nor an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--allow-outbound `{0}`: give a host name (`hooks.internal.example`), an address \
     (`10.1.2.3`) or a network (`10.0.0.0/8`, `::1/128`)"
)]
pub struct BadEntry(pub String);

impl OutboundPolicy {
    /// Public addresses only.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Allows any destination (for tests and for operators who write `--allow-outbound *`).
    pub fn any() -> Self {
        Self {
            hosts: vec!["*".into()],
            nets: vec![
                "0.0.0.0/0".parse().expect("a network"),
                "::/0".parse().expect("a network"),
            ],
        }
    }

    /// Parses allow-list entries: host names, addresses, networks, or `*` for anything. Empty
    /// entries are skipped (so `MOCKOPS_ALLOW_OUTBOUND=a,,b` works).
    pub fn parse<S: AsRef<str>>(entries: impl IntoIterator<Item = S>) -> Result<Self, BadEntry> {
        let mut p = Self::default();
        for e in entries {
            let e = e.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                return Ok(Self::any());
            }
            if let Ok(net) = e.parse::<IpNet>() {
                p.nets.push(net);
            } else if let Ok(ip) = e.trim_matches(['[', ']']).parse::<IpAddr>() {
                p.nets.push(IpNet::from(ip));
            } else if is_host_name(e) {
                p.hosts.push(normalize_host(e));
            } else {
                return Err(BadEntry(e.to_string()));
            }
        }
        Ok(p)
    }

    /// Also allows `ip` (the demo's own inbox on loopback).
    pub fn allow_ip(&mut self, ip: IpAddr) {
        let net = IpNet::from(canonical(ip));
        if !self.nets.contains(&net) {
            self.nets.push(net);
        }
    }

    /// Whether `host` (a name) is allowed whatever it resolves to.
    pub fn allows_host(&self, host: &str) -> bool {
        let h = normalize_host(host);
        self.hosts.iter().any(|a| a == "*" || *a == h)
    }

    /// Why `ip` may not be reached, or `None` when it may.
    pub fn check_ip(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = canonical(ip);
        if self.nets.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        special(ip)
    }

    /// Refuses a URL whose host is a literal address that may not be reached (a name is checked
    /// when it is resolved, by [`GuardedResolver`] or [`OutboundPolicy::resolve`]).
    pub fn check_url(&self, what: &str, url: &reqwest::Url) -> Result<(), Refused> {
        let Some(ip) = url
            .host_str()
            .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok())
        else {
            return Ok(());
        };
        match self.check_ip(ip) {
            None => Ok(()),
            Some(why) => Err(Refused {
                target: what.to_string(),
                why: format!("{ip} is {why}"),
                suggest: ip.to_string(),
                unresolved: false,
            }),
        }
    }

    /// Resolves `host` and keeps the addresses that may be reached; refuses when none may.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let addrs: Vec<SocketAddr> = match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| Refused {
                    target: host.to_string(),
                    why: format!("it does not resolve ({e})"),
                    suggest: host.to_string(),
                    unresolved: true,
                })?
                .collect(),
        };
        self.filter(host, addrs)
    }

    fn filter(&self, host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        if self.allows_host(host) {
            return Ok(addrs);
        }
        let mut first_refusal = None;
        let kept: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| match self.check_ip(a.ip()) {
                None => true,
                Some(why) => {
                    first_refusal.get_or_insert((a.ip(), why));
                    false
                }
            })
            .collect();
        if !kept.is_empty() {
            return Ok(kept);
        }
        let (ip, why) = first_refusal.unwrap_or((IpAddr::from([0, 0, 0, 0]), "not an address"));
        Err(Refused {
            target: host.to_string(),
            why: format!("it resolves to {ip}, which is {why}"),
            suggest: host.to_string(),
            unresolved: false,
        })
    }

    /// The allow-list as given, for logs.
    pub fn describe(&self) -> String {
        if self.hosts.is_empty() && self.nets.is_empty() {
            return "public addresses only".into();
        }
        let mut parts: Vec<String> = self.hosts.clone();
        parts.extend(self.nets.iter().map(IpNet::to_string));
        format!("public addresses and {}", parts.join(", "))
    }
}

fn normalize_host(h: &str) -> String {
    h.trim_end_matches('.').to_ascii_lowercase()
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        })
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_link_local() {
                Some("a link-local address (cloud metadata lives there)")
            } else if v4.is_private() {
                Some("a private address")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("an unspecified address")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("a multicast, broadcast or reserved address")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("an IETF protocol address")
            } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
                Some("a benchmarking address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if (seg[0] & 0xffc0) == 0xfe80 {
                Some("a link-local address")
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                Some("a unique-local (private) address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 maps IPv4 into 64:ff9b::/96; judge the IPv4 address it carries.
                let v4 = std::net::Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                special(IpAddr::V4(v4))
            } else {
                None
            }
        }
    }
}

/// A DNS resolver for reqwest that drops the addresses the policy refuses, so every connection
/// an HTTP client makes is checked, whatever the URL said.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { policy }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = policy
                .resolve(&host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn non_public_ranges_are_refused_by_default() {
        let p = OutboundPolicy::public_only();
        for bad in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(p.check_ip(ip(bad)).is_some(), "{bad} must be refused");
        }
        for good in ["1.1.1.1", "140.82.112.3", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(p.check_ip(ip(good)), None, "{good} is public");
        }
    }

    #[test]
    fn allow_list_entries() {
        let p = OutboundPolicy::parse(["127.0.0.1", "10.0.0.0/8", "Hooks.Internal.", " ", "::1"])
            .expect("parses");
        assert_eq!(p.check_ip(ip("127.0.0.1")), None);
        assert!(p.check_ip(ip("127.0.0.2")).is_some());
        assert_eq!(p.check_ip(ip("10.200.3.4")), None);
        assert_eq!(p.check_ip(ip("::1")), None);
        assert!(p.allows_host("hooks.internal"));
        assert!(!p.allows_host("other.internal"));
        assert!(OutboundPolicy::parse(["not a host!"]).is_err());
        assert!(OutboundPolicy::parse(["10.0.0.0/33"]).is_err());
        let any = OutboundPolicy::parse(["*"]).expect("parses");
        assert_eq!(any.check_ip(ip("169.254.169.254")), None);
    }

    #[test]
    fn literal_addresses_in_urls_are_checked() {
        let p = OutboundPolicy::public_only();
        let url = reqwest::Url::parse("http://169.254.169.254/latest/meta-data/").expect("url");
        let e = p.check_url("webhook URL", &url).expect_err("metadata");
        assert!(e.to_string().contains("link-local"), "{e}");
        assert!(
            e.to_string().contains("--allow-outbound 169.254.169.254"),
            "{e}"
        );
        let url = reqwest::Url::parse("http://[::ffff:7f00:1]:8080/").expect("url");
        assert!(p.check_url("u", &url).is_err());
        let url = reqwest::Url::parse("https://hooks.slack.com/services/x").expect("url");
        assert!(p.check_url("u", &url).is_ok());
    }

    #[tokio::test]
    async fn names_are_judged_by_what_they_resolve_to() {
        let p = OutboundPolicy::public_only();
        let e = p.resolve("localhost", 80).await.expect_err("loopback");
        assert!(e.to_string().contains("loopback"), "{e}");
        let allowed = OutboundPolicy::parse(["localhost"]).expect("parses");
        assert!(
            !allowed
                .resolve("localhost", 80)
                .await
                .expect("allowed")
                .is_empty()
        );
        let by_net = OutboundPolicy::parse(["127.0.0.0/8", "::1"]).expect("parses");
        assert!(
            !by_net
                .resolve("localhost", 80)
                .await
                .expect("allowed")
                .is_empty()
        );
    }
}
