//! `real` for gRPC: the call goes to the service's upstream over HTTP/2, with prior knowledge
//! for an `http://` upstream (h2c) and through TLS with ALPN `h2` for an `https://` one
//! (certificates checked by the platform's verifier, like every other client of the daemon),
//! on one pooled connection per upstream origin, trailers and all. Every address goes through the daemon's outbound policy first; the request headers
//! are the HTTP proxy's (`proxy::upstream_headers`: hop-by-hop, control headers and the
//! daemon's secrets removed, forwarding headers set) plus `te: trailers`, the remaining
//! `grpc-timeout`, and the service's `upstream_headers` resolved now.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::wire::{self, Code, Status};
use crate::gateway::proxy as http_proxy;
use crate::gateway::routes::Upstream;
use crate::outbound::{OutboundPolicy, Refused};
use crate::secret::Secrets;

/// Open HTTP/2 connections to gRPC upstreams, by origin.
#[derive(Default)]
pub struct Clients {
    conns: Mutex<HashMap<String, SendRequest<Full<Bytes>>>>,
}

/// Why an upstream call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Refused(Refused),
    #[error("upstream `{0}` is neither http:// nor https://")]
    Scheme(String),
    #[error("TLS with the upstream failed: {0}")]
    Tls(String),
    #[error("the upstream URL `{0}` has no host")]
    NoHost(String),
    #[error("cannot reach the upstream: {0}")]
    Unreachable(String),
    #[error("the upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the call's deadline ({0:?}) passed before the upstream answered")]
    Deadline(Duration),
    #[error("the upstream's answer is larger than the gateway's limit of {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Credential(String),
    #[error("{0}")]
    NoUpstream(String),
}

impl CallError {
    /// The status the caller gets.
    pub fn status(&self) -> Status {
        let code = match self {
            CallError::Timeout(_) | CallError::Deadline(_) => Code::DeadlineExceeded,
            CallError::TooLarge(_) => Code::ResourceExhausted,
            CallError::Credential(_) => Code::Internal,
            _ => Code::Unavailable,
        };
        Status::new(code, self.to_string())
    }
}

/// The upstream's answer, read whole (unary calls only).
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub trailers: HeaderMap,
}

impl Reply {
    /// The call's status: `grpc-status` from the trailers (or the headers of a Trailers-Only
    /// answer), else what the HTTP status stands for.
    pub fn code(&self) -> Code {
        let from = |h: &HeaderMap| {
            h.get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u16>().ok())
        };
        if self.status != StatusCode::OK {
            return Code::of_http(self.status);
        }
        match from(&self.trailers).or_else(|| from(&self.headers)) {
            Some(n) => Code::from_u16(n),
            None => Code::Unknown,
        }
    }

    /// The answer as it goes back to the caller (hop-by-hop headers removed).
    pub fn into_response(self) -> Response<Body> {
        if self.status != StatusCode::OK {
            let code = self.code();
            return Status::new(
                code,
                format!("the upstream answered HTTP {}", self.status.as_u16()),
            )
            .response();
        }
        let mut headers = self.headers;
        http_proxy::strip_hop_by_hop(&mut headers);
        headers.remove(http::header::CONTENT_LENGTH);
        let frames = if self.body.is_empty() {
            Vec::new()
        } else {
            vec![self.body]
        };
        if self.trailers.is_empty() {
            // Trailers-Only: the status is in the headers already.
            let mut r = Response::new(Body::from(frames.concat()));
            *r.headers_mut() = headers;
            return r;
        }
        wire::with_trailers(headers, frames, self.trailers)
    }
}

/// What one upstream call needs.
pub struct Call<'a> {
    pub policy: &'a OutboundPolicy,
    pub secrets: &'a Secrets,
    pub upstream: &'a Upstream,
    pub service: &'a str,
    /// `/<package.Service>/<Method>`.
    pub path: &'a str,
    pub incoming: &'a HeaderMap,
    pub peer: SocketAddr,
    /// The whole request body (length-prefixed messages).
    pub body: Bytes,
    pub deadline: Option<Duration>,
    /// Largest answer read.
    pub limit: usize,
}

impl Clients {
    /// Sends `call` to its upstream and reads the answer.
    pub async fn call(&self, call: Call<'_>) -> Result<Reply, CallError> {
        let url = &call.upstream.url;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return Err(CallError::Scheme(url.to_string())),
        };
        call.policy
            .check_url(&format!("the upstream of `{}`", call.service), url)
            .map_err(CallError::Refused)?;
        let host = url
            .host_str()
            .ok_or_else(|| CallError::NoHost(url.to_string()))?
            .to_string();
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let prefix = url.path().trim_end_matches('/');
        let uri = format!("{}://{authority}{prefix}{}", url.scheme(), call.path);

        let mut headers = http_proxy::upstream_headers(
            call.incoming,
            call.peer,
            call.incoming
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok()),
            call.secrets.redactor(),
        );
        headers.remove(http::header::CONTENT_LENGTH);
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.remove("grpc-timeout");
        let wait = match call.deadline {
            Some(d) if d < call.upstream.response_timeout => d,
            _ => call.upstream.response_timeout,
        };
        if let Ok(v) = HeaderValue::from_str(&wire::format_timeout(wait)) {
            headers.insert("grpc-timeout", v);
        }
        for (name, sealed) in &call.upstream.headers {
            let value = call.secrets.resolve(sealed).map_err(|e| {
                CallError::Credential(format!(
                    "upstream header `{name}` of `{}`: {e}",
                    call.service
                ))
            })?;
            let value = HeaderValue::from_str(value.expose()).map_err(|_| {
                CallError::Credential(format!(
                    "upstream header `{name}` of `{}` is not a valid header value",
                    call.service
                ))
            })?;
            headers.insert(name.clone(), value);
        }
        let mut request = Request::post(uri.as_str())
            .body(Full::new(call.body.clone()))
            .map_err(|e| CallError::Unreachable(format!("bad upstream URI `{uri}`: {e}")))?;
        *request.headers_mut() = headers;

        let origin = format!("{}://{host}:{port}", url.scheme());
        let limit = call.limit;
        let exchange = async {
            let mut sender = self
                .sender(
                    call.policy,
                    &origin,
                    &host,
                    port,
                    tls,
                    call.upstream.connect_timeout,
                )
                .await?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| CallError::Unreachable(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let collected = http_body_util::Limited::new(body, limit)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        CallError::TooLarge(limit)
                    } else {
                        CallError::Unreachable(format!("the answer broke off: {e}"))
                    }
                })?;
            let trailers = collected.trailers().cloned().unwrap_or_default();
            Ok(Reply {
                status: parts.status,
                headers: parts.headers,
                body: collected.to_bytes(),
                trailers,
            })
        };
        match tokio::time::timeout(wait, exchange).await {
            Ok(r) => r,
            Err(_) if call.deadline == Some(wait) => Err(CallError::Deadline(wait)),
            Err(_) => Err(CallError::Timeout(wait)),
        }
    }

    /// A ready connection to `origin`: the pooled one, or a new one through the policy.
    async fn sender(
        &self,
        policy: &OutboundPolicy,
        origin: &str,
        host: &str,
        port: u16,
        tls: bool,
        connect_timeout: Duration,
    ) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let pooled = self
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(origin)
            .cloned();
        if let Some(mut s) = pooled
            && !s.is_closed()
            && s.ready().await.is_ok()
        {
            return Ok(s);
        }
        let connect = async {
            let addrs = policy.resolve(host, port).await.map_err(|r| {
                if r.unresolved {
                    CallError::Unreachable(format!("{}: {}", r.target, r.why))
                } else {
                    CallError::Refused(r)
                }
            })?;
            let mut last = None;
            for a in addrs {
                match tokio::net::TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = Some(format!("{a}: {e}")),
                }
            }
            Err(CallError::Unreachable(last.unwrap_or_else(|| {
                format!("{host} resolves to no address")
            })))
        };
        let tcp = tokio::time::timeout(connect_timeout, connect)
            .await
            .map_err(|_| {
                CallError::Unreachable(format!("no connection within {connect_timeout:?}"))
            })??;
        let _ = tcp.set_nodelay(true);
        let sender = if tls {
            let config = tls_config()?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| CallError::Tls(format!("`{host}` is not a server name: {e}")))?;
            let stream = tokio::time::timeout(
                connect_timeout,
                tokio_rustls::TlsConnector::from(config).connect(name, tcp),
            )
            .await
            .map_err(|_| CallError::Tls(format!("no TLS session within {connect_timeout:?}")))?
            .map_err(|e| CallError::Tls(e.to_string()))?;
            if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(CallError::Tls(format!(
                    "{host}:{port} does not speak HTTP/2 (ALPN h2)"
                )));
            }
            handshake(stream).await?
        } else {
            handshake(tcp).await?
        };
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(origin.to_string(), sender.clone());
        Ok(sender)
    }
}

/// An HTTP/2 connection over `io`, driven by its own task.
async fn handshake<I>(io: I) -> Result<SendRequest<Full<Bytes>>, CallError>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| CallError::Unreachable(format!("HTTP/2 handshake failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "gateway: gRPC upstream connection ended");
        }
    });
    Ok(sender)
}

/// The TLS client settings of gRPC upstreams (the platform's verifier, ALPN `h2`), built once.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, CallError> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            use rustls_platform_verifier::BuilderVerifierExt as _;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let built = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .and_then(|b| b.with_platform_verifier());
            match built {
                Ok(b) => {
                    let mut c = b.with_no_client_auth();
                    c.alpn_protocols = vec![b"h2".to_vec()];
                    Some(Arc::new(c))
                }
                Err(e) => {
                    tracing::error!(error = %e, "gateway: cannot set up TLS for gRPC upstreams");
                    None
                }
            }
        })
        .clone()
        .ok_or_else(|| CallError::Tls("TLS could not be set up (see the daemon's log)".into()))
}
