//! The federation gateway (`mockops daemon --gateway ADDR`): serves every federation of the
//! applied commit at `/<federation>/…`, and at the root for the hosts a federation claims.
//! Within a federation the longest base path wins by whole segments; the service's reality
//! level decides who answers (`real`: the upstream; `mock_v3`: the mock engine; `blended`:
//! the upstream with the mock behind it; `chaos_driven`: faults over the mock or the
//! upstream). Every response carries `X-Mockops-Source` (`upstream`, `mock`, `blended`, or
//! `gateway` for what the gateway answers itself before any service: no route, a refused
//! request) and every exchange goes to the traffic record.
//!
//! Routes come from the applied commit only: the daemon's reconcile loop publishes each new
//! applied sha on a watch channel, [`Gateway::follow`] builds that commit's table off the
//! request path and swaps it in (`arc-swap`): a request keeps the table it started with, and a
//! commit that fails to build leaves the previous table serving.

pub mod chaos;
pub mod grpc;
pub mod mock;
pub mod problem;
pub mod proxy;
pub mod record;
pub mod routes;
pub mod tee;

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::body::Body;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use serde_json::{Value as Json, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::model::RealityLevel;
use crate::outbound::OutboundPolicy;
use crate::secret::Secrets;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use record::{Exchange, Recorder};
use routes::{FederationRoutes, PersonaProblem, RouteTable, ServiceRoute};

/// Default largest request body (`--gateway-max-body`).
pub const DEFAULT_MAX_BODY: usize = 10 * 1024 * 1024;
/// Largest JSON response of a `blended` upstream that is completed from the mock; larger ones
/// stream through unchanged.
pub const BLENDED_JSON_CAP: usize = 1024 * 1024;
/// Largest request head (request line and headers) a client may send.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Where the demo serves its gateway when `--gateway` is not given.
pub const DEMO_ADDR: &str = "127.0.0.1:8481";

const SOURCE: &str = "x-mockops-source";

/// How the gateway is set up.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub addr: SocketAddr,
    /// Largest request body; larger ones are answered 413.
    pub max_body: usize,
    /// Share of exchanges kept in the traffic record (0 to 1).
    pub traffic_sample: f64,
    /// Largest body kept in a drift observation; larger ones are recorded as skipped.
    pub drift_max_body: usize,
    /// Share of upstream exchanges observed for drift (0 to 1).
    pub drift_sample: f64,
    /// Whether failing to listen stops the daemon (an explicit `--gateway`) or is only
    /// logged (the demo's default address may be taken).
    pub required: bool,
    /// Serving threads (see [`serve`]).
    pub threads: usize,
}

/// The gateway's share of the daemon's metrics.
#[derive(Clone)]
pub struct GatewayMetrics {
    requests: Family<Vec<(&'static str, String)>, Counter>,
    duration: Histogram,
    dropped: Counter,
    drift_observed: Family<Vec<(&'static str, String)>, Counter>,
}

impl GatewayMetrics {
    pub fn of(m: &Metrics) -> Self {
        Self {
            requests: m.gateway_requests.clone(),
            duration: m.gateway_duration.clone(),
            dropped: m.traffic_dropped.clone(),
            drift_observed: m.drift_observations.clone(),
        }
    }
}

/// The gateway's state: the current route table and what serving needs.
pub struct Gateway {
    table: ArcSwap<RouteTable>,
    repo: PathBuf,
    outbound: Arc<OutboundPolicy>,
    secrets: Secrets,
    /// Upstream clients (their connection pools) per serving thread and connect timeout.
    clients: Mutex<HashMap<(std::thread::ThreadId, Duration), reqwest::Client>>,
    /// Request counters of chaos services, by (federation, service), kept across reloads.
    counters: Mutex<HashMap<(String, String), Arc<AtomicU64>>>,
    recorder: Recorder,
    /// Observations of upstream exchanges for the drift writer; `None`: not observed.
    drift: Option<tee::DriftTap>,
    metrics: GatewayMetrics,
    max_body: usize,
    /// Why the last applied commit's table could not be built, if it could not.
    last_error: Mutex<Option<String>>,
    /// Connections to gRPC upstreams.
    grpc: grpc::proxy::Clients,
    /// The address the listener is bound to (scenario runs send their requests there).
    listen: std::sync::OnceLock<SocketAddr>,
}

/// The source header's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Upstream,
    Mock,
    Blended,
    Gateway,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Upstream => "upstream",
            Source::Mock => "mock",
            Source::Blended => "blended",
            Source::Gateway => "gateway",
        }
    }
}

/// What a handler produced, before the common headers and the record.
struct Answer {
    response: Response<Body>,
    source: Source,
    operation: Option<String>,
}

impl Answer {
    fn gateway(response: Response<Body>) -> Answer {
        Answer {
            response,
            source: Source::Gateway,
            operation: None,
        }
    }
}

/// Tags of a request for the record.
struct Tags {
    persona: Option<String>,
    scenario: Option<String>,
    ci: bool,
}

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect())
}

/// Why a request path is refused before routing, if it is: percent-encoding that does not
/// decode, or a `.`/`..` segment (written or encoded).
pub fn path_problem(path: &str) -> Option<&'static str> {
    let b = path.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let ok =
                b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit();
            if !ok {
                return Some("has a `%` that is not followed by two hex digits");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    for seg in path.split('/') {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        if decoded == "." || decoded == ".." {
            return Some("has a `.` or `..` segment");
        }
        if seg.to_ascii_lowercase().contains("%2f") || seg.to_ascii_lowercase().contains("%5c") {
            return Some("has an encoded `/` or `\\` in a segment");
        }
    }
    None
}

impl Gateway {
    pub fn new(
        repo: PathBuf,
        outbound: Arc<OutboundPolicy>,
        secrets: Secrets,
        metrics: GatewayMetrics,
        recorder: Recorder,
        drift: Option<tee::DriftTap>,
        max_body: usize,
    ) -> Gateway {
        Gateway {
            table: ArcSwap::from_pointee(RouteTable::default()),
            repo,
            outbound,
            secrets,
            clients: Mutex::new(HashMap::new()),
            counters: Mutex::new(HashMap::new()),
            recorder,
            drift,
            metrics,
            max_body,
            last_error: Mutex::new(None),
            grpc: grpc::proxy::Clients::default(),
            listen: std::sync::OnceLock::new(),
        }
    }

    /// The address the gateway listens on, once it does.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listen.get().copied()
    }

    /// The table requests are served from now.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Builds the table of `sha` and swaps it in; on failure the previous table stays.
    pub async fn load(self: &Arc<Self>, sha: String) {
        let repo = self.repo.clone();
        let s = sha.clone();
        let built = tokio::task::spawn_blocking(move || routes::build(&repo, &s)).await;
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match built {
            Ok(Ok(table)) => {
                let federations = table.federations.len();
                self.table.store(table);
                *last_error = None;
                tracing::info!(commit = %sha, federations, "gateway: routes of the applied commit are serving");
            }
            Ok(Err(e)) => {
                tracing::error!(commit = %sha, error = %e, "gateway: cannot build the routes; the previous ones keep serving");
                *last_error = Some(e.to_string());
            }
            Err(e) => {
                tracing::error!(commit = %sha, error = %e, "gateway: building the routes failed; the previous ones keep serving");
                *last_error = Some(format!("building the routes failed: {e}"));
            }
        }
    }

    /// Loads every applied commit `applied` announces, until `cancel`.
    pub async fn follow(
        self: Arc<Self>,
        mut applied: watch::Receiver<Option<String>>,
        cancel: CancellationToken,
    ) {
        loop {
            let sha = applied.borrow_and_update().clone();
            if let Some(sha) = sha
                && self.table().sha.as_deref() != Some(sha.as_str())
            {
                self.load(sha).await;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                changed = applied.changed() => if changed.is_err() { return },
            }
        }
    }

    /// The upstream client for `connect`, one per thread: a pooled connection is driven by a
    /// task on the runtime that opened it, so each serving thread (see [`serve`]) keeps its
    /// own pool and never hands a request to another thread's connection.
    fn client(&self, connect: Duration) -> Result<reqwest::Client, reqwest::Error> {
        let key = (std::thread::current().id(), connect);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .connect_timeout(connect)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(crate::outbound::GuardedResolver::new(self.outbound.clone()))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .no_proxy()
            .build()?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    fn counter(&self, federation: &str, service: &str) -> Arc<AtomicU64> {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.entry((federation.to_string(), service.to_string()))
            .or_default()
            .clone()
    }

    /// Answers one request. `drop_connection` closes the connection without a response.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        drop_connection: Arc<Notify>,
    ) -> Response<Body> {
        // gRPC (a header test, before anything else).
        if grpc::is_grpc(req.headers()) {
            return self.grpc(req, peer, drop_connection).await;
        }
        let started = Instant::now();
        let table = self.table();
        let method = req.method().clone();
        let tags = Tags {
            persona: header_str(req.headers(), "x-mockops-persona"),
            scenario: header_str(req.headers(), "x-mockops-scenario"),
            ci: header_str(req.headers(), "x-mockops-ci").is_some_and(|v| {
                !matches!(v.to_ascii_lowercase().as_str(), "" | "0" | "false" | "no")
            }),
        };
        let full_path = req.uri().path().to_string();
        // HTTP/1.1 `Host`, or HTTP/2 `:authority`.
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        let mut federation = None;
        let mut service = None;
        let mut rest = full_path.clone();
        let answer = match path_problem(&full_path) {
            Some(why) => Answer::gateway(problem::response(
                StatusCode::BAD_REQUEST,
                "bad-path",
                "Bad request path",
                &format!("the request path {why}"),
                Default::default(),
            )),
            None => match self.route(&table, host.as_deref(), &full_path) {
                Err(resp) => Answer::gateway(resp),
                Ok((fed, svc, svc_path)) => {
                    federation = Some(fed.name.clone());
                    service = Some(svc.name.clone());
                    rest = svc_path.clone();
                    self.serve(
                        &table,
                        &fed,
                        svc,
                        svc_path,
                        req,
                        peer,
                        &tags,
                        &drop_connection,
                    )
                    .await
                }
            },
        };
        let Answer {
            mut response,
            source,
            operation,
        } = answer;
        response
            .headers_mut()
            .insert(SOURCE, HeaderValue::from_static(source.as_str()));
        let elapsed = started.elapsed();
        let status = response.status();
        let fed_label = federation.clone().unwrap_or_else(|| "(none)".into());
        self.metrics
            .requests
            .get_or_create(&vec![
                ("federation", fed_label),
                (
                    "service",
                    service.clone().unwrap_or_else(|| "(none)".into()),
                ),
                ("source", source.as_str().to_string()),
                ("status_class", format!("{}xx", status.as_u16() / 100)),
            ])
            .inc();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        self.record(
            federation,
            service,
            operation,
            &method,
            &rest,
            status.as_u16(),
            elapsed,
            source,
            tags,
        );
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        federation: Option<String>,
        service: Option<String>,
        operation: Option<String>,
        method: &Method,
        path: &str,
        status: u16,
        elapsed: Duration,
        source: Source,
        tags: Tags,
    ) {
        let now = std::time::SystemTime::now();
        let mut path = path.to_string();
        if path.len() > 512 {
            let mut cut = 512;
            while !path.is_char_boundary(cut) {
                cut -= 1;
            }
            path.truncate(cut);
        }
        self.recorder.record(Exchange {
            at: crate::util::time::now_rfc3339(),
            at_micros: now
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            federation: federation.unwrap_or_default(),
            service,
            operation,
            method: method.to_string(),
            path,
            status,
            latency_ms: elapsed.as_secs_f64() * 1000.0,
            source: source.as_str().into(),
            persona: tags.persona,
            scenario: tags.scenario,
            ci: tags.ci,
            grpc_status: None,
        });
    }

    /// Records an exchange whose connection a chaos fault closed (status 0: no response).
    fn record_drop(
        &self,
        fed: &FederationRoutes,
        svc: &ServiceRoute,
        operation: Option<String>,
        method: &Method,
        path: &str,
        tags: &Tags,
    ) {
        self.record(
            Some(fed.name.clone()),
            Some(svc.name.clone()),
            operation,
            method,
            path,
            0,
            Duration::ZERO,
            Source::Mock,
            Tags {
                persona: tags.persona.clone(),
                scenario: tags.scenario.clone(),
                ci: tags.ci,
            },
        );
    }

    /// The federation and service of a request, and the path left for the service; or the
    /// 404 problem saying what exists.
    #[allow(clippy::result_large_err)]
    fn route(
        &self,
        table: &RouteTable,
        host: Option<&str>,
        path: &str,
    ) -> Result<(Arc<FederationRoutes>, Arc<ServiceRoute>, String), Response<Body>> {
        let (fed, within) = match host.and_then(|h| table.by_host(h)) {
            Some(f) => (f.clone(), path.to_string()),
            None => {
                let trimmed = path.trim_start_matches('/');
                let (name, after) = trimmed.split_once('/').unwrap_or((trimmed, ""));
                match table.federations.get(name) {
                    Some(f) => (f.clone(), format!("/{after}")),
                    None => {
                        let names: Vec<&String> = table.federations.keys().collect();
                        return Err(problem::response(
                            StatusCode::NOT_FOUND,
                            "no-federation",
                            "No such federation",
                            &format!(
                                "no federation serves this path; the gateway serves /<federation>/… for: {}",
                                if names.is_empty() {
                                    "none yet".to_string()
                                } else {
                                    names
                                        .iter()
                                        .map(|s| s.as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                }
                            ),
                            problem::ext([("federations", json!(names))]),
                        ));
                    }
                }
            }
        };
        match fed.find(&within) {
            Some((svc, rest)) => {
                let (svc, rest) = (svc.clone(), rest.to_string());
                Ok((fed, svc, rest))
            }
            None => Err(problem::response(
                StatusCode::NOT_FOUND,
                "no-route",
                "No route",
                &format!(
                    "no service of federation `{}` has a base path that {within} starts with; its base paths: {}",
                    fed.name,
                    fed.base_paths().join(", ")
                ),
                problem::ext([
                    ("federation", json!(fed.name)),
                    ("base_paths", json!(fed.base_paths())),
                ]),
            )),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &self,
        table: &RouteTable,
        fed: &FederationRoutes,
        svc: Arc<ServiceRoute>,
        path: String,
        req: Request<Incoming>,
        peer: SocketAddr,
        tags: &Tags,
        drop_connection: &Notify,
    ) -> Answer {
        if crate::http::declared_length(req.headers()).is_some_and(|n| n > self.max_body as u64) {
            return Answer::gateway(too_large(self.max_body));
        }
        let persona = match &tags.persona {
            None => None,
            Some(key) => match table.personas.lookup(key) {
                Ok(t) => Some(t),
                Err(p) => return Answer::gateway(persona_problem(key, p)),
            },
        };
        let operation = svc
            .mock
            .as_ref()
            .ok()
            .and_then(|m| m.operation_for(req.method(), &path));
        let cx = Cx {
            federation: &fed.name,
            svc: &svc,
            path: &path,
            peer,
            persona: persona.as_deref(),
        };
        let mut answer = match svc.level {
            RealityLevel::MockV3 => self.mock(&cx, req).await,
            RealityLevel::Real => self.real(&cx, req).await,
            RealityLevel::Blended => self.blended(&cx, req).await,
            RealityLevel::ChaosDriven => {
                let Some(chaos) = &svc.chaos else {
                    return self.mock(&cx, req).await;
                };
                let n = self
                    .counter(&fed.name, &svc.name)
                    .fetch_add(1, Ordering::SeqCst);
                let d = chaos.decide(n);
                if d.drop {
                    tracing::debug!(federation = %fed.name, service = %svc.name, n, "chaos: dropping the connection");
                    self.record_drop(fed, &svc, operation.clone(), req.method(), &path, tags);
                    drop_connection.notify_one();
                    std::future::pending::<()>().await;
                }
                if !d.latency.is_zero() {
                    tokio::time::sleep(d.latency).await;
                }
                let source = if chaos.over_real {
                    Source::Upstream
                } else {
                    Source::Mock
                };
                let mut answer = match d.error {
                    Some(status) => Answer {
                        response: problem::response(
                            status,
                            "chaos-injected",
                            "Injected fault",
                            &format!(
                                "chaos: service `{}` answered {} (request {n} of this service)",
                                svc.name,
                                status.as_u16()
                            ),
                            Default::default(),
                        ),
                        source,
                        operation: None,
                    },
                    None if chaos.over_real => self.real(&cx, req).await,
                    None => self.mock(&cx, req).await,
                };
                if let Some(bps) = d.slow_body_bytes_per_sec {
                    let (parts, body) = answer.response.into_parts();
                    let slow = chaos::throttle(body.into_data_stream(), bps);
                    answer.response = Response::from_parts(parts, Body::from_stream(slow));
                    answer
                        .response
                        .headers_mut()
                        .remove(http::header::CONTENT_LENGTH);
                }
                if let Ok(v) = HeaderValue::from_str(&d.describe()) {
                    answer.response.headers_mut().insert("x-mockops-chaos", v);
                }
                answer
            }
        };
        if answer.operation.is_none() {
            answer.operation = operation;
        }
        answer
    }

    async fn read_body(&self, body: Incoming) -> Result<Bytes, Box<Response<Body>>> {
        match http_body_util::Limited::new(body, self.max_body)
            .collect()
            .await
        {
            Ok(c) => Ok(c.to_bytes()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Box::new(too_large(self.max_body)))
            }
            Err(e) => Err(Box::new(problem::response(
                StatusCode::BAD_REQUEST,
                "bad-body",
                "Unreadable request body",
                &format!("cannot read the request body: {e}"),
                Default::default(),
            ))),
        }
    }

    async fn mock(&self, cx: &Cx<'_>, req: Request<Incoming>) -> Answer {
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(r) => return Answer::gateway(*r),
        };
        self.mock_answer(cx, &parts, &body)
    }

    fn mock_answer(&self, cx: &Cx<'_>, parts: &http::request::Parts, body: &[u8]) -> Answer {
        let mock = match &cx.svc.mock {
            Ok(m) => m,
            Err(why) => {
                return Answer {
                    response: problem::response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "mock-unavailable",
                        "The service's mock is not available",
                        &why.to_string(),
                        problem::ext([("service", json!(cx.svc.name))]),
                    ),
                    source: Source::Mock,
                    operation: None,
                };
            }
        };
        let r = mock.respond(&mock::MockRequest {
            method: &parts.method,
            path: cx.path,
            query: parts.uri.query(),
            headers: &parts.headers,
            body,
            persona: cx.persona,
        });
        let mut response = Response::new(Body::from(r.body));
        *response.status_mut() = r.status;
        *response.headers_mut() = r.headers;
        Answer {
            response,
            source: Source::Mock,
            operation: r.operation,
        }
    }

    /// The upstream's response head, or the problem saying why there is none (with the
    /// transport's reason when the upstream was tried and did not answer).
    async fn upstream(
        &self,
        cx: &Cx<'_>,
        parts: &http::request::Parts,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, NoAnswer> {
        let upstream = match &cx.svc.upstream {
            Ok(u) => u,
            Err(why) => {
                return Err(NoAnswer::before(problem::response(
                    StatusCode::BAD_GATEWAY,
                    "no-upstream",
                    "The service has no usable upstream",
                    &why.to_string(),
                    problem::ext([("service", json!(cx.svc.name))]),
                )));
            }
        };
        let client = self.client(upstream.connect_timeout).map_err(|e| {
            NoAnswer::before(problem::response(
                StatusCode::BAD_GATEWAY,
                "upstream-client",
                "Cannot build the upstream client",
                &e.to_string(),
                Default::default(),
            ))
        })?;
        let url = proxy::target_url(&upstream.url, cx.path, parts.uri.query()).map_err(|e| {
            NoAnswer::before(problem::response(
                StatusCode::BAD_GATEWAY,
                "upstream-url",
                "Bad upstream URL",
                &format!("cannot build the upstream URL: {e}"),
                Default::default(),
            ))
        })?;
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        let headers =
            proxy::upstream_headers(&parts.headers, cx.peer, host, self.secrets.redactor());
        proxy::send(
            &client,
            &self.outbound,
            &self.secrets,
            upstream,
            &cx.svc.name,
            parts.method.clone(),
            url,
            headers,
            body,
        )
        .await
        .map_err(|e| {
            let mut ext = problem::ext([("service", json!(cx.svc.name))]);
            if let proxy::ProxyError::Refused(r) = &e {
                ext.insert(
                    "allow_with".into(),
                    json!(format!("--allow-outbound {}", r.suggest)),
                );
            }
            let reason = self.secrets.redactor().redact(&e.to_string()).into_owned();
            NoAnswer {
                response: problem::response(e.status(), e.slug(), e.title(), &reason, ext),
                transport: Some(reason),
            }
        })
    }

    /// The drift observation of this request, when its service's upstream exchanges are
    /// observed and the sample keeps it.
    fn observe(&self, cx: &Cx<'_>, parts: &http::request::Parts) -> Option<tee::Pending> {
        let tap = self.drift.as_ref().filter(|t| t.sampled())?;
        Some(tap.begin(
            cx.federation,
            &cx.svc.name,
            cx.path,
            parts,
            self.secrets.redactor(),
        ))
    }

    async fn real(&self, cx: &Cx<'_>, req: Request<Incoming>) -> Answer {
        let (parts, body) = req.into_parts();
        let mut pending = self.observe(cx, &parts);
        // A request without a body (most GETs) goes upstream without one: wrapped as a
        // stream it would be sent chunked, and the upstream connection would wait on it.
        let body = if hyper::body::Body::is_end_stream(&body) {
            if let Some(p) = pending.as_mut() {
                p.request_read(&Bytes::new());
            }
            None
        } else {
            Some(match pending.as_mut() {
                None => limited_upload(body, self.max_body),
                Some(p) => limited_upload(p.tee_request(body), self.max_body),
            })
        };
        match self.upstream(cx, &parts, body).await {
            Err(no) => {
                if let (Some(p), Some(reason)) = (pending, no.transport) {
                    p.failed(reason);
                }
                Answer {
                    response: no.response,
                    source: Source::Upstream,
                    operation: None,
                }
            }
            Ok(up) => Answer {
                response: self.streamed(up, pending),
                source: Source::Upstream,
                operation: None,
            },
        }
    }

    async fn blended(&self, cx: &Cx<'_>, req: Request<Incoming>) -> Answer {
        // The body is kept: the mock answers with it when the upstream fails.
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body).await {
            Ok(b) => b,
            Err(r) => return Answer::gateway(*r),
        };
        let mut pending = self.observe(cx, &parts);
        if let Some(p) = pending.as_mut() {
            p.request_read(&body);
        }
        let up = match self
            .upstream(cx, &parts, Some(reqwest::Body::from(body.clone())))
            .await
        {
            Ok(up) if !up.status().is_server_error() => up,
            Ok(up) => {
                tracing::debug!(service = %cx.svc.name, status = %up.status(), "blended: the upstream failed; the mock answers");
                if let (Some(p), Ok(u)) = (pending, &cx.svc.upstream) {
                    p.answered_in_background(up, self.secrets.redactor(), u.response_timeout);
                }
                return self.mock_answer(cx, &parts, &body);
            }
            Err(no) => {
                tracing::debug!(service = %cx.svc.name, status = %no.response.status(), "blended: the upstream is unreachable; the mock answers");
                if let (Some(p), Some(reason)) = (pending, no.transport) {
                    p.failed(reason);
                }
                return self.mock_answer(cx, &parts, &body);
            }
        };
        let json_body = up.status().is_success()
            && up
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|c| c.contains("json"))
            && up
                .content_length()
                .is_some_and(|n| n as usize <= BLENDED_JSON_CAP);
        let Ok(mock) = &cx.svc.mock else {
            return Answer {
                response: self.streamed(up, pending),
                source: Source::Upstream,
                operation: None,
            };
        };
        if !json_body {
            return Answer {
                response: self.streamed(up, pending),
                source: Source::Upstream,
                operation: None,
            };
        }
        let status = up.status();
        let mut headers = up.headers().clone();
        strip_response_headers(&mut headers);
        let bytes = match up.bytes().await {
            Ok(b) => b,
            Err(e) => {
                if let Some(p) = pending {
                    p.failed(format!(
                        "the upstream's response body broke off: {}",
                        e.without_url()
                    ));
                }
                return self.mock_answer(cx, &parts, &body);
            }
        };
        // What the upstream said, before the mock completes it.
        if let Some(p) = pending {
            p.answered(status.as_u16(), &headers, self.secrets.redactor(), &bytes);
        }
        let (out, source) = match serde_json::from_slice::<Json>(&bytes) {
            Ok(v) => {
                let completed = mock.complete(&parts.method, cx.path, status, v.clone());
                if completed == v {
                    (bytes, Source::Upstream)
                } else {
                    (Bytes::from(completed.to_string()), Source::Blended)
                }
            }
            Err(_) => (bytes, Source::Upstream),
        };
        headers.remove(http::header::CONTENT_LENGTH);
        let mut response = Response::new(Body::from(out));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Answer {
            response,
            source,
            operation: None,
        }
    }

    /// The upstream's response, its body streamed through (and teed into `pending`'s
    /// observation when there is one).
    fn streamed(&self, up: reqwest::Response, pending: Option<tee::Pending>) -> Response<Body> {
        let status = up.status();
        let mut headers = up.headers().clone();
        strip_response_headers(&mut headers);
        // The body as it comes (its size known when the upstream said it), not re-wrapped as
        // a stream of unknown length.
        let body = Body::new(http::Response::<reqwest::Body>::from(up).into_body());
        let body = match pending {
            None => body,
            Some(p) => {
                Body::new(p.tee_response(status.as_u16(), &headers, self.secrets.redactor(), body))
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }

    /// `GET /api/v1/federations/NAME/health`: each service's own check (a mock: its spec
    /// compiled; an upstream: a bounded connect through the outbound policy), then readiness
    /// in start order (`FederationRoutes::start_order`): a service is `ready` when its check
    /// passes and the members it depends on are ready, `waiting` (naming them) when only they
    /// are not, `down` when its own check fails. The federation is ready when every service
    /// is. `None`: no such federation in the applied routes.
    pub async fn health(&self, name: &str) -> Option<Json> {
        let table = self.table();
        let fed = table.federations.get(name)?.clone();
        let checks: Vec<(String, bool, String)> =
            futures_util::future::join_all(fed.services.iter().map(|svc| async move {
                let needs_upstream = match svc.level {
                    RealityLevel::Real | RealityLevel::Blended => true,
                    RealityLevel::ChaosDriven => svc.chaos.as_ref().is_some_and(|c| c.over_real),
                    RealityLevel::MockV3 => false,
                };
                let (ok, detail) = if needs_upstream {
                    match &svc.upstream {
                        Err(why) => (false, why.to_string()),
                        Ok(u) => match self.reachable(u).await {
                            Ok(()) => (true, format!("upstream {} reachable", origin(&u.url))),
                            Err(why) => (false, why.to_string()),
                        },
                    }
                } else {
                    match (&svc.mock, &svc.proto) {
                        (Ok(_), _) => (true, "spec compiled".to_string()),
                        (_, Some(Ok(_))) => (true, "spec compiled (served over gRPC)".to_string()),
                        (_, Some(Err(why))) | (Err(why), None) => (false, why.to_string()),
                    }
                };
                (svc.name.clone(), ok, detail)
            }))
            .await;
        // Readiness follows the start order: a service is ready when its own check passes
        // and every member it depends on is ready; until then it is `waiting`.
        let own = |n: &str| checks.iter().find(|c| c.0 == n).is_some_and(|c| c.1);
        let member = |n: &str| fed.services.iter().any(|s| s.name == n);
        let order = fed.start_order();
        let mut ready: BTreeMap<&str, bool> = BTreeMap::new();
        for n in &order {
            let deps_ready = fed
                .services
                .iter()
                .filter(|s| s.name == *n)
                .flat_map(|s| s.dependencies.iter())
                .filter(|d| member(d) && d.as_str() != *n)
                .all(|d| ready.get(d.as_str()).copied().unwrap_or(false));
            ready.insert(n, own(n) && deps_ready);
        }
        let ready_of = |n: &str| ready.get(n).copied().unwrap_or(false);
        let mut services = Vec::new();
        for svc in &fed.services {
            let (ok, detail) = checks
                .iter()
                .find(|c| c.0 == svc.name)
                .map(|c| (c.1, c.2.clone()))
                .unwrap_or_default();
            let deps: Vec<Json> = svc
                .dependencies
                .iter()
                .map(|d| {
                    if member(d) {
                        json!({"name": d, "ready": ready_of(d)})
                    } else {
                        json!({"name": d, "ready": null, "in_federation": false})
                    }
                })
                .collect();
            let waiting_for: Vec<&str> = svc
                .dependencies
                .iter()
                .filter(|d| member(d) && !ready_of(d))
                .map(String::as_str)
                .collect();
            let state = if !ok {
                "down"
            } else if !waiting_for.is_empty() {
                "waiting"
            } else {
                "ready"
            };
            services.push(json!({
                "name": svc.name,
                "base_path": svc.base_path,
                "reality_level": svc.level,
                "ready": ready_of(&svc.name),
                "state": state,
                "detail": detail,
                "dependencies": deps,
                "dependencies_ready": waiting_for.is_empty(),
                "waiting_for": waiting_for,
            }));
        }
        services.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        Some(json!({
            "federation": fed.name,
            "commit": table.sha,
            "ready": order.iter().all(|n| ready_of(n)),
            "start_order": order,
            "services": services,
            "routes_error": self.last_error(),
        }))
    }

    /// A TCP connect to the upstream's address through the outbound policy, bounded by its
    /// connect timeout.
    async fn reachable(&self, u: &routes::Upstream) -> Result<(), Unreachable> {
        self.outbound
            .check_url("the upstream", &u.url)
            .map_err(Unreachable::Refused)?;
        let host = u.url.host_str().ok_or(Unreachable::NoHost)?;
        let port = u.url.port_or_known_default().unwrap_or(80);
        let connect = async {
            let addrs = self.outbound.resolve(host, port).await.map_err(|r| {
                if r.unresolved {
                    Unreachable::Unresolved {
                        host: r.target,
                        why: r.why,
                    }
                } else {
                    Unreachable::Refused(r)
                }
            })?;
            let mut last = None;
            for a in addrs {
                match tokio::net::TcpStream::connect(a).await {
                    Ok(_) => return Ok(()),
                    Err(e) => last = Some((a, e)),
                }
            }
            Err(match last {
                Some((addr, source)) => Unreachable::Connect { addr, source },
                None => Unreachable::NoAddress,
            })
        };
        tokio::time::timeout(u.connect_timeout, connect)
            .await
            .map_err(|_| Unreachable::Timeout(u.connect_timeout))?
    }

    /// Why the last applied commit's routes could not be built, if they could not.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Why a health check found an upstream unreachable.
#[derive(Debug, thiserror::Error)]
enum Unreachable {
    #[error(transparent)]
    Refused(crate::outbound::Refused),
    #[error("the upstream URL has no host")]
    NoHost,
    #[error("{host}: {why}")]
    Unresolved { host: String, why: String },
    #[error("the upstream's name resolves to no address")]
    NoAddress,
    #[error("cannot connect: {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

fn origin(u: &reqwest::Url) -> String {
    u.origin().ascii_serialization()
}

/// What a handler needs of the request's route.
struct Cx<'a> {
    federation: &'a str,
    svc: &'a ServiceRoute,
    path: &'a str,
    peer: SocketAddr,
    persona: Option<&'a indexmap::IndexMap<String, Json>>,
}

fn too_large(limit: usize) -> Response<Body> {
    problem::response(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "Request body too large",
        &format!("the gateway takes request bodies up to {limit} bytes (--gateway-max-body)"),
        problem::ext([("limit", json!(limit))]),
    )
}

fn persona_problem(key: &str, p: PersonaProblem) -> Response<Body> {
    let (detail, ext) = match p {
        PersonaProblem::Unknown { known } => (
            format!("persona `{key}` does not exist in the applied commit"),
            problem::ext([("known_personas", json!(known))]),
        ),
        PersonaProblem::Ambiguous { candidates } => (
            format!(
                "persona `{key}` exists in several environments: name one as <environment>/<id>"
            ),
            problem::ext([("candidates", json!(candidates))]),
        ),
    };
    problem::response(
        StatusCode::BAD_REQUEST,
        "unknown-persona",
        "Unknown persona",
        &detail,
        ext,
    )
}

fn strip_response_headers(h: &mut HeaderMap) {
    proxy::strip_hop_by_hop(h);
}

/// Why an upstream gave no response: the problem the client gets, and the transport's reason
/// when the upstream was tried (a drift observation of a failed exchange).
struct NoAnswer {
    response: Response<Body>,
    transport: Option<String>,
}

impl NoAnswer {
    /// Refused before the upstream was tried (no upstream, a bad URL).
    fn before(response: Response<Body>) -> NoAnswer {
        NoAnswer {
            response,
            transport: None,
        }
    }
}

/// A request body streamed upstream, refused past `limit` bytes.
fn limited_upload<B>(body: B, limit: usize) -> reqwest::Body
where
    B: hyper::body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut seen = 0usize;
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .and_then(move |chunk| {
            seen += chunk.len();
            let over = seen > limit;
            async move {
                if over {
                    Err(std::io::Error::other(
                        "the request body is larger than the gateway's limit",
                    ))
                } else {
                    Ok(chunk)
                }
            }
        });
    reqwest::Body::wrap_stream(stream)
}

/// Accepts connections on `listener` and serves them until `cancel`; then stops accepting and
/// lets in-flight requests finish (the daemon bounds the wait by its drain timeout).
///
/// Connections are served thread per core, as event-driven proxies are: `threads` threads,
/// each with its own single-threaded runtime accepting from the shared listener. A request, the
/// pooled upstream connection it is proxied on (upstream clients are per thread, see
/// [`Gateway::client`]) and the response stay on one thread, so a proxied exchange costs no
/// hand-offs between threads.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    cancel: CancellationToken,
    threads: usize,
) {
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "gateway: cannot share the listener");
            return;
        }
    };
    let mut done = Vec::new();
    for i in 0..threads.max(1) {
        let listener = match std_listener.try_clone() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "gateway: cannot share the listener");
                break;
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let gateway = gateway.clone();
        let cancel = cancel.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("gateway-{i}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "gateway: cannot start a serving thread");
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => serve_on(l, gateway, cancel).await,
                        Err(e) => tracing::error!(error = %e, "gateway: cannot listen"),
                    }
                });
                drop(tx);
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(error = %e, "gateway: cannot start a serving thread"),
        }
    }
    drop(std_listener);
    // Each thread drops its sender when it has drained.
    for rx in done {
        let _ = rx.await;
    }
}

/// One serving thread's accept loop (see [`serve`]).
async fn serve_on(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    cancel: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(200);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let drop_connection = Arc::new(Notify::new());
        let gw = gateway.clone();
        let d = drop_connection.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let gw = gw.clone();
            let d = d.clone();
            async move { Ok::<_, Infallible>(gw.handle(req, peer, d).await) }
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let watched = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::select! {
                r = watched => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "gateway: connection ended with an error");
                    }
                }
                _ = drop_connection.notified() => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Starts the gateway: binds `opts.addr`, loads the applied routes, follows `applied`, and
/// serves until `cancel`. Returns the tasks to await on shutdown, or `None` when the demo's
/// default address is taken.
#[allow(clippy::too_many_arguments)]
pub async fn start(
    opts: &GatewayOptions,
    repo: PathBuf,
    store: crate::store::Store,
    outbound: Arc<OutboundPolicy>,
    secrets: Secrets,
    metrics: GatewayMetrics,
    observations: crate::drift::ObservationSender,
    applied: watch::Receiver<Option<String>>,
    cancel: CancellationToken,
) -> anyhow::Result<Option<(Arc<Gateway>, Vec<tokio::task::JoinHandle<()>>)>> {
    let listener = match tokio::net::TcpListener::bind(opts.addr).await {
        Ok(l) => l,
        Err(e) if !opts.required => {
            tracing::warn!(addr = %opts.addr, error = %e, "demo: cannot listen for the gateway; it is off (give --gateway ADDR)");
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot listen for the gateway on {}: {e}",
                opts.addr
            ));
        }
    };
    let (recorder, rx) = Recorder::new(opts.traffic_sample, metrics.dropped.clone());
    let drift = tee::DriftTap::new(
        observations,
        metrics.drift_observed.clone(),
        opts.drift_max_body,
        opts.drift_sample,
    );
    let gateway = Arc::new(Gateway::new(
        repo,
        outbound,
        secrets,
        metrics,
        recorder,
        Some(drift),
        opts.max_body,
    ));
    let _ = gateway.listen.set(listener.local_addr()?);
    tracing::info!(addr = %listener.local_addr()?, "gateway: serving federations");
    let writer = tokio::spawn(record::writer(store, rx, cancel.clone()));
    let follow = tokio::spawn(gateway.clone().follow(applied, cancel.clone()));
    let server = tokio::spawn(serve(listener, gateway.clone(), cancel, opts.threads));
    Ok(Some((gateway, vec![server, follow, writer])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        assert_eq!(path_problem("/shop/pets/1"), None);
        assert_eq!(path_problem("/shop/pets/a%20b"), None);
        assert!(path_problem("/shop/%zz").is_some());
        assert!(path_problem("/shop/%4").is_some());
        assert!(path_problem("/shop/../admin").is_some());
        assert!(path_problem("/shop/%2e%2E/admin").is_some());
        assert!(path_problem("/shop/./x").is_some());
        assert!(path_problem("/shop/a%2fb").is_some());
    }
}
