//! `real` (and the upstream half of `blended` and `chaos.over: real`): the request goes to the
//! service's upstream with its body streamed, hop-by-hop headers removed, `Forwarded` and
//! `X-Forwarded-*` set, the gateway's own control headers and anything carrying one of the
//! daemon's secrets dropped, and the service's `upstream_headers` (references resolved now)
//! added. Every address it connects to goes through the daemon's outbound policy.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::routes::Upstream;
use crate::outbound::{OutboundPolicy, Refused};
use crate::secret::{Redactor, Secrets};

/// Headers that describe one connection, never forwarded (RFC 9110 7.6.1), besides those the
/// `Connection` header names.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Removes hop-by-hop headers: the fixed list, `Proxy-*`, and every header `Connection`
/// names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for n in named {
        headers.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        headers.remove(n);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for k in proxy {
        headers.remove(k);
    }
}

/// The request headers as they go upstream: hop-by-hop removed, `x-mockops-*` (the gateway's
/// control headers) removed, any header holding a secret the daemon knows (its API tokens,
/// resolved references) removed, forwarding headers set.
pub fn upstream_headers(
    incoming: &HeaderMap,
    peer: SocketAddr,
    host: Option<&str>,
    redactor: &Redactor,
) -> HeaderMap {
    let mut h = incoming.clone();
    strip_hop_by_hop(&mut h);
    let own: Vec<HeaderName> = h
        .iter()
        .filter(|(k, v)| {
            k.as_str().starts_with("x-mockops-")
                || v.to_str().is_ok_and(|s| redactor.redact(s).as_ref() != s)
        })
        .map(|(k, _)| k.clone())
        .collect();
    for k in own {
        h.remove(k);
    }
    let ip = peer.ip().to_string();
    let xff = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    let for_part = if peer.is_ipv6() {
        format!("for=\"[{ip}]\"")
    } else {
        format!("for={ip}")
    };
    let mut forwarded = format!("{for_part};proto=http");
    if let Some(host) = host.filter(|h| h.chars().all(|c| c.is_ascii_graphic())) {
        forwarded.push_str(&format!(";host=\"{host}\""));
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert("x-forwarded-host", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        h.append(http::header::FORWARDED, v);
    }
    h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    h
}

/// The upstream URL of a request: the upstream's base URL (its path prefix kept) followed by
/// the path after the base path and the query, as received.
pub fn target_url(
    upstream: &reqwest::Url,
    rest: &str,
    query: Option<&str>,
) -> Result<reqwest::Url, url::ParseError> {
    let mut base = upstream.clone();
    base.set_query(None);
    base.set_fragment(None);
    let prefix = base.path().trim_end_matches('/').to_string();
    let path = if rest == "/" && !prefix.is_empty() {
        prefix
    } else {
        format!("{prefix}{rest}")
    };
    let mut s = format!(
        "{}://{}{path}",
        base.scheme(),
        &base.as_str()[url_host_start(&base)..url_host_end(&base)]
    );
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    reqwest::Url::parse(&s)
}

fn url_host_start(u: &reqwest::Url) -> usize {
    // After "scheme://" (and any user info, which upstream URLs should not carry anyway).
    u.as_str().find("://").map_or(0, |i| i + 3)
}

fn url_host_end(u: &reqwest::Url) -> usize {
    let start = url_host_start(u);
    u.as_str()[start..]
        .find(['/', '?', '#'])
        .map_or(u.as_str().len(), |i| start + i)
}

/// Why an upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    Refused(Refused),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Credential(String),
    #[error("{0}")]
    Url(String),
}

impl ProxyError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            ProxyError::Timeout(_) => http::StatusCode::GATEWAY_TIMEOUT,
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            ProxyError::Refused(_) => "The upstream's address is refused",
            ProxyError::Timeout(_) => "The upstream timed out",
            ProxyError::Unreachable(_) => "The upstream is unreachable",
            ProxyError::Credential(_) => "The upstream's credential cannot be read",
            ProxyError::Url(_) => "Bad upstream URL",
        }
    }

    pub fn slug(&self) -> &'static str {
        match self {
            ProxyError::Refused(_) => "upstream-refused",
            ProxyError::Timeout(_) => "upstream-timeout",
            ProxyError::Unreachable(_) => "upstream-unreachable",
            ProxyError::Credential(_) => "upstream-credential",
            ProxyError::Url(_) => "upstream-url",
        }
    }
}

/// The outbound policy's refusal somewhere in `e`'s causes.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut s = e.source();
    while let Some(x) = s {
        let t = x.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        s = x.source();
    }
    parts.join(": ")
}

/// One request to the upstream, up to its response head.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    client: &reqwest::Client,
    policy: &OutboundPolicy,
    secrets: &Secrets,
    upstream: &Upstream,
    service: &str,
    method: Method,
    url: reqwest::Url,
    mut headers: HeaderMap,
    body: Option<reqwest::Body>,
) -> Result<reqwest::Response, ProxyError> {
    policy
        .check_url(&format!("the upstream of `{service}`"), &url)
        .map_err(ProxyError::Refused)?;
    for (name, sealed) in &upstream.headers {
        let value = secrets.resolve(sealed).map_err(|e| {
            ProxyError::Credential(format!("upstream header `{name}` of `{service}`: {e}"))
        })?;
        let value = HeaderValue::from_str(value.expose()).map_err(|_| {
            ProxyError::Credential(format!(
                "upstream header `{name}` of `{service}` is not a valid header value"
            ))
        })?;
        headers.insert(name.clone(), value);
    }
    let mut request = client.request(method, url).headers(headers);
    if let Some(body) = body {
        request = request.body(body);
    }
    match tokio::time::timeout(upstream.response_timeout, request.send()).await {
        Err(_) => Err(ProxyError::Timeout(upstream.response_timeout)),
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => {
            if let Some(r) = refusal(&e) {
                if r.unresolved {
                    // A name that does not resolve is unreachable, not refused.
                    Err(ProxyError::Unreachable(format!("{}: {}", r.target, r.why)))
                } else {
                    Err(ProxyError::Refused(r))
                }
            } else if e.is_timeout() {
                Err(ProxyError::Timeout(upstream.connect_timeout))
            } else {
                Err(ProxyError::Unreachable(chain(&e.without_url())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed_with_those_connection_names() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("proxy-foo", "y"),
            ("accept", "application/json"),
            ("x-request-id", "abc"),
        ] {
            h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-request-id"]);
    }

    #[test]
    fn forwarding_headers_and_secrets() {
        let redactor = Redactor::new();
        redactor.register("the-daemon-api-token");
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer the-daemon-api-token"),
        );
        h.insert("x-mockops-persona", HeaderValue::from_static("p"));
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let peer: SocketAddr = "127.0.0.1:5555".parse().unwrap();
        let out = upstream_headers(&h, peer, Some("shop.test"), &redactor);
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-mockops-persona").is_none());
        assert_eq!(out["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(out["x-forwarded-host"], "shop.test");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(
            out["forwarded"],
            "for=127.0.0.1;proto=http;host=\"shop.test\""
        );
        assert_eq!(out["accept"], "*/*");
    }

    #[test]
    fn the_upstream_prefix_is_kept() {
        let u = reqwest::Url::parse("http://127.0.0.1:9000/v1/").unwrap();
        assert_eq!(
            target_url(&u, "/pets/1", Some("a=%20b")).unwrap().as_str(),
            "http://127.0.0.1:9000/v1/pets/1?a=%20b"
        );
        assert_eq!(
            target_url(&u, "/", None).unwrap().as_str(),
            "http://127.0.0.1:9000/v1"
        );
        let bare = reqwest::Url::parse("http://up.example").unwrap();
        assert_eq!(
            target_url(&bare, "/", None).unwrap().as_str(),
            "http://up.example/"
        );
    }
}
