//! gRPC on the gateway's listener: a service whose spec is a `.proto` is served over HTTP/2
//! (h2c prior knowledge, or HTTP/2 negotiated by the listener), unary methods only, routed by
//! the fully qualified service name of the path `/<package.Service>/<Method>`.
//!
//! The federation is the one whose `hosts:` claim the `:authority`, else the only federation,
//! else the one federation that serves the service; a name that several serve is refused
//! (`NOT_FOUND`, naming them). Within a federation a fully qualified service name is served
//! by one member (`mockops validate` refuses a federation where two serve the same name).
//!
//! Levels: `mock_v3` answers with a message generated from the output descriptor (`mock`);
//! `real` proxies the call to the upstream over h2c or TLS (`proxy`); `blended` proxies and
//! answers from the mock when the upstream is unreachable, times out or answers `UNAVAILABLE`;
//! `chaos_driven` injects latency, dropped connections and errors (`UNAVAILABLE` for a 429 or
//! 5xx gateway status of the chaos settings, `INTERNAL` for others) over the mock, or over the
//! upstream with `chaos.over: real`. Slow bodies are not applied to gRPC answers. Streaming
//! methods answer `UNIMPLEMENTED`. Server reflection (`reflection`) lists the services of the
//! federation picked.
//!
//! The traffic record gets one exchange per call: `method` `POST`, `path` and `operation`
//! `/<package.Service>/<Method>` and `package.Service/Method`, `status` the HTTP status (200
//! for every gRPC answer) and `grpc_status` the call's status code.

pub mod mock;
pub mod proxy;
pub mod reflection;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor};
use tokio::sync::Notify;

use super::routes::{FederationRoutes, RouteTable, ServiceRoute};
use super::{Gateway, SOURCE, Source, header_str};
use crate::git::revision::RevisionFiles;
use crate::model::RealityLevel;
use crate::store::traffic::Exchange;
use wire::{Code, Status};

/// Whether a request is a gRPC call: `content-type: application/grpc`, alone or with a
/// `+format` or parameters (`application/grpc-web` is not).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(http::header::CONTENT_TYPE).is_some_and(|v| {
        match v.as_bytes().strip_prefix(b"application/grpc") {
            Some(rest) => rest.is_empty() || rest[0] == b'+' || rest[0] == b';',
            None => false,
        }
    })
}

/// A compiled `.proto` spec: its descriptors (imports included) and the services its own
/// file declares.
#[derive(Debug)]
pub struct ProtoService {
    pub pool: DescriptorPool,
    /// The spec's import name (`inventory/v1/inventory.proto`).
    pub file: String,
    /// Fully qualified names of the services the spec declares.
    pub services: Vec<String>,
}

impl ProtoService {
    /// Compiles the spec at `path` of a revision with its imports; nothing else is read.
    pub fn compile(
        files: &dyn RevisionFiles,
        path: &str,
    ) -> Result<ProtoService, crate::schema_diff::proto::ProtoError> {
        let c = crate::schema_diff::proto::compile(files, path, &Default::default())?;
        Ok(Self::from_pool(c.pool().clone(), c.target().to_string()))
    }

    pub fn from_pool(pool: DescriptorPool, file: String) -> ProtoService {
        let services = pool
            .get_file_by_name(&file)
            .map(|f| f.services().map(|s| s.full_name().to_string()).collect())
            .unwrap_or_default();
        ProtoService {
            pool,
            file,
            services,
        }
    }

    /// The method `method` of service `service`.
    pub fn method(&self, service: &str, method: &str) -> Option<MethodDescriptor> {
        self.pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)
    }
}

/// The federation a call goes to, or the status saying why none.
fn pick<'t>(
    table: &'t RouteTable,
    host: Option<&str>,
    service: Option<&str>,
) -> Result<&'t Arc<FederationRoutes>, Status> {
    if let Some(f) = host.and_then(|h| table.by_host(h)) {
        return Ok(f);
    }
    if table.federations.len() == 1
        && let Some(f) = table.federations.values().next()
    {
        return Ok(f);
    }
    if table.federations.is_empty() {
        return Err(Status::new(
            Code::Unavailable,
            "the gateway serves no federation yet",
        ));
    }
    let Some(service) = service else {
        return Err(Status::new(
            Code::NotFound,
            format!(
                "several federations are served ({}); call with the :authority of a host one claims (`hosts:`)",
                table
                    .federations
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let serving: Vec<&Arc<FederationRoutes>> = table
        .federations
        .values()
        .filter(|f| f.grpc.contains_key(service))
        .collect();
    match serving.as_slice() {
        [one] => Ok(one),
        [] => Err(Status::new(
            Code::Unimplemented,
            format!("no federation serves gRPC service `{service}`"),
        )),
        many => Err(Status::new(
            Code::NotFound,
            format!(
                "gRPC service `{service}` is served by several federations ({}); call with the :authority of a host one claims (`hosts:`)",
                many.iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// What the record and the metrics need of a call.
struct Outcome {
    federation: Option<String>,
    service: Option<String>,
    operation: Option<String>,
    source: Source,
    code: Code,
    persona: Option<String>,
    scenario: Option<String>,
    ci: bool,
}

impl Gateway {
    /// Answers one gRPC call (see the module's documentation).
    pub(super) async fn grpc(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        drop_connection: Arc<Notify>,
    ) -> Response<Body> {
        let started = Instant::now();
        let table = self.table();
        let persona_key = header_str(req.headers(), "x-mockops-persona");
        let scenario = header_str(req.headers(), "x-mockops-scenario");
        let ci = header_str(req.headers(), "x-mockops-ci")
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no"));
        let path: String = req.uri().path().chars().take(512).collect();
        let mut out = Outcome {
            federation: None,
            service: None,
            operation: None,
            source: Source::Gateway,
            code: Code::Ok,
            persona: persona_key.clone(),
            scenario,
            ci,
        };
        let mut response = match self
            .grpc_answer(
                &table,
                req,
                peer,
                &drop_connection,
                &mut out,
                persona_key.as_deref(),
                &path,
            )
            .await
        {
            Ok(r) => r,
            Err(status) => {
                out.code = status.code;
                status.response()
            }
        };
        response
            .headers_mut()
            .insert(SOURCE, HeaderValue::from_static(out.source.as_str()));
        let elapsed = started.elapsed();
        self.metrics
            .requests
            .get_or_create(&vec![
                (
                    "federation",
                    out.federation.clone().unwrap_or_else(|| "(none)".into()),
                ),
                (
                    "service",
                    out.service.clone().unwrap_or_else(|| "(none)".into()),
                ),
                ("source", out.source.as_str().to_string()),
                ("status_class", out.code.status_class().to_string()),
            ])
            .inc();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        self.record_grpc(
            &out,
            &path,
            response.status().as_u16(),
            Some(out.code.as_u16()),
            elapsed,
        );
        response
    }

    /// Records a call; `status` 0 and no `grpc_status` when a chaos fault closed the
    /// connection without an answer.
    fn record_grpc(
        &self,
        out: &Outcome,
        path: &str,
        status: u16,
        grpc_status: Option<u16>,
        elapsed: Duration,
    ) {
        let now = std::time::SystemTime::now();
        self.recorder.record(Exchange {
            at: crate::util::time::now_rfc3339(),
            at_micros: now
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            federation: out.federation.clone().unwrap_or_default(),
            service: out.service.clone(),
            operation: out.operation.clone(),
            method: "POST".into(),
            path: path.to_string(),
            status,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            source: out.source.as_str().into(),
            persona: out.persona.clone(),
            scenario: out.scenario.clone(),
            ci: out.ci,
            grpc_status,
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn grpc_answer(
        &self,
        table: &RouteTable,
        req: Request<Incoming>,
        peer: SocketAddr,
        drop_connection: &Notify,
        out: &mut Outcome,
        persona_key: Option<&str>,
        path: &str,
    ) -> Result<Response<Body>, Status> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        if req.method() != http::Method::POST {
            return Err(Status::new(
                Code::Unimplemented,
                format!("gRPC calls are POST requests, not {}", req.method()),
            ));
        }
        if reflection::is_reflection(path) {
            let fed = pick(table, host.as_deref(), None)?;
            out.federation = Some(fed.name.clone());
            out.operation = Some(path.trim_start_matches('/').to_string());
            let catalog = reflection::Catalog {
                protos: fed
                    .grpc
                    .iter()
                    .filter_map(|(name, svc)| {
                        svc.proto
                            .as_ref()
                            .and_then(|p| p.as_ref().ok())
                            .map(|p| (name.clone(), p.clone()))
                    })
                    .collect(),
            };
            return Ok(reflection::serve(catalog, req.into_body(), self.max_body));
        }
        let Some((service_name, method_name)) = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
        else {
            return Err(Status::new(
                Code::Unimplemented,
                format!("`{path}` is not a gRPC method path (/<package.Service>/<Method>)"),
            ));
        };
        let fed = pick(table, host.as_deref(), Some(service_name))?;
        out.federation = Some(fed.name.clone());
        let Some(svc) = fed.grpc.get(service_name) else {
            let mut known: Vec<&str> = fed.grpc.keys().map(String::as_str).collect();
            known.sort_unstable();
            return Err(Status::new(
                Code::Unimplemented,
                format!(
                    "federation `{}` serves no gRPC service `{service_name}`; its gRPC services: {}",
                    fed.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        out.service = Some(svc.name.clone());
        let proto = match &svc.proto {
            Some(Ok(p)) => p.clone(),
            Some(Err(why)) => return Err(Status::new(Code::Unavailable, why.to_string())),
            None => {
                return Err(Status::new(
                    Code::Unavailable,
                    format!("service `{}` has no .proto spec", svc.name),
                ));
            }
        };
        let Some(method) = proto.method(service_name, method_name) else {
            return Err(Status::new(
                Code::Unimplemented,
                format!("service `{service_name}` has no method `{method_name}`"),
            ));
        };
        out.operation = Some(format!("{service_name}/{method_name}"));
        if method.is_client_streaming() || method.is_server_streaming() {
            let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                (true, true) => "bidirectional streaming",
                (true, false) => "client streaming",
                _ => "server streaming",
            };
            return Err(Status::new(
                Code::Unimplemented,
                format!(
                    "`{service_name}/{method_name}` is a {kind} method: the gateway serves unary gRPC methods only, streaming is not served"
                ),
            ));
        }
        let persona = match persona_key {
            None => None,
            Some(key) => match table.personas.lookup(key) {
                Ok(t) => Some(t),
                Err(_) => {
                    return Err(Status::new(
                        Code::InvalidArgument,
                        format!(
                            "persona `{key}` (X-Mockops-Persona) does not exist in the applied commit, or exists in several environments: name one as <environment>/<id>"
                        ),
                    ));
                }
            },
        };
        let deadline =
            match req.headers().get("grpc-timeout") {
                None => None,
                Some(v) => Some(v.to_str().ok().and_then(wire::parse_timeout).ok_or_else(
                    || {
                        Status::new(
                            Code::InvalidArgument,
                            "grpc-timeout is not at most 8 digits followed by H, M, S, m, u or n",
                        )
                    },
                )?),
            };
        let work = self.grpc_call(
            fed,
            svc,
            &method,
            req,
            peer,
            drop_connection,
            out,
            persona.as_deref(),
            persona_key,
            deadline,
        );
        match deadline {
            None => work.await,
            Some(d) => match tokio::time::timeout(d, work).await {
                Ok(r) => r,
                Err(_) => Err(Status::new(
                    Code::DeadlineExceeded,
                    format!("the call's deadline ({d:?}) passed"),
                )),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn grpc_call(
        &self,
        fed: &FederationRoutes,
        svc: &Arc<ServiceRoute>,
        method: &MethodDescriptor,
        req: Request<Incoming>,
        peer: SocketAddr,
        drop_connection: &Notify,
        out: &mut Outcome,
        persona: Option<&indexmap::IndexMap<String, serde_json::Value>>,
        persona_key: Option<&str>,
        deadline: Option<Duration>,
    ) -> Result<Response<Body>, Status> {
        if crate::http::declared_length(req.headers()).is_some_and(|n| n > self.max_body as u64) {
            return Err(too_large(self.max_body));
        }
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, self.max_body)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(too_large(self.max_body));
            }
            Err(e) => {
                return Err(Status::new(
                    Code::Cancelled,
                    format!("cannot read the request: {e}"),
                ));
            }
        };
        let messages = wire::messages(&body, self.max_body).map_err(|e| e.status())?;
        let [message] = messages.as_slice() else {
            return Err(Status::new(
                Code::InvalidArgument,
                format!(
                    "a unary call carries exactly one request message, this one {}",
                    messages.len()
                ),
            ));
        };
        DynamicMessage::decode(method.input(), message.clone()).map_err(|e| {
            Status::new(
                Code::InvalidArgument,
                format!(
                    "the request is not a valid `{}`: {e}",
                    method.input().full_name()
                ),
            )
        })?;
        let path = parts.uri.path().to_string();
        let mock = |out: &mut Outcome| {
            out.source = Source::Mock;
            let seed = mock::seed_of(&path, message, persona_key);
            let reply = mock::generate(&method.output(), seed, persona).encode_to_vec();
            Ok(wire::ok_response(Bytes::from(reply)))
        };
        let upstream =
            |body: Bytes| self.grpc_upstream(svc, &path, &parts.headers, peer, body, deadline);
        match svc.level {
            RealityLevel::MockV3 => mock(out),
            RealityLevel::Real => {
                out.source = Source::Upstream;
                let reply = upstream(body).await.map_err(|e| self.call_status(e))?;
                out.code = reply.code();
                Ok(reply.into_response())
            }
            RealityLevel::Blended => match upstream(body).await {
                Ok(r) if r.code() != Code::Unavailable => {
                    out.source = Source::Upstream;
                    out.code = r.code();
                    Ok(r.into_response())
                }
                _ => mock(out),
            },
            RealityLevel::ChaosDriven => {
                let Some(chaos) = &svc.chaos else {
                    return mock(out);
                };
                let n = self
                    .counter(&fed.name, &svc.name)
                    .fetch_add(1, Ordering::SeqCst);
                let d = chaos.decide(n);
                out.source = if chaos.over_real {
                    Source::Upstream
                } else {
                    Source::Mock
                };
                if d.drop {
                    tracing::debug!(federation = %fed.name, service = %svc.name, n, "chaos: dropping the gRPC connection");
                    self.record_grpc(out, &path, 0, None, Duration::ZERO);
                    drop_connection.notify_one();
                    std::future::pending::<()>().await;
                }
                if !d.latency.is_zero() {
                    tokio::time::sleep(d.latency).await;
                }
                let mut response = match d.error {
                    Some(status) => {
                        let code = match status.as_u16() {
                            429 | 502..=504 => Code::Unavailable,
                            _ => Code::Internal,
                        };
                        Err(Status::new(
                            code,
                            format!(
                                "chaos: service `{}` failed (request {n} of this service, as HTTP {})",
                                svc.name,
                                status.as_u16()
                            ),
                        ))
                    }
                    None if chaos.over_real => match upstream(body).await {
                        Ok(reply) => {
                            out.code = reply.code();
                            Ok(reply.into_response())
                        }
                        Err(e) => Err(self.call_status(e)),
                    },
                    None => mock(out),
                }
                .unwrap_or_else(|s| {
                    out.code = s.code;
                    s.response()
                });
                if let Ok(v) = HeaderValue::from_str(&d.describe()) {
                    response.headers_mut().insert("x-mockops-chaos", v);
                }
                Ok(response)
            }
        }
    }

    /// The upstream's answer to the call.
    async fn grpc_upstream(
        &self,
        svc: &ServiceRoute,
        path: &str,
        incoming: &HeaderMap,
        peer: SocketAddr,
        body: Bytes,
        deadline: Option<Duration>,
    ) -> Result<proxy::Reply, proxy::CallError> {
        let upstream = svc
            .upstream
            .as_ref()
            .map_err(|why| proxy::CallError::NoUpstream(why.to_string()))?;
        self.grpc
            .call(proxy::Call {
                policy: &self.outbound,
                secrets: &self.secrets,
                upstream,
                service: &svc.name,
                path,
                incoming,
                peer,
                body,
                deadline,
                limit: self.max_body,
            })
            .await
    }

    /// The status a failed upstream call is answered with (the daemon's secrets masked).
    fn call_status(&self, e: proxy::CallError) -> Status {
        let mut s = e.status();
        s.message = self.secrets.redactor().redact(&s.message).into_owned();
        s
    }
}

fn too_large(limit: usize) -> Status {
    Status::new(
        Code::ResourceExhausted,
        format!("the gateway takes requests up to {limit} bytes (--gateway-max-body)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_is_told_by_its_content_type() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(v));
            m
        };
        assert!(is_grpc(&h("application/grpc")));
        assert!(is_grpc(&h("application/grpc+proto")));
        assert!(is_grpc(&h("application/grpc;charset=utf-8")));
        assert!(!is_grpc(&h("application/grpc-web")));
        assert!(!is_grpc(&h("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
