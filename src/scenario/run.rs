//! Running a scenario: pick the scenario, its environment and federation from the applied
//! commit's desired state (`prepare`), then send each step as a real HTTP request to the
//! daemon's own gateway listener (`execute`), so the gateway routes it by reality level and
//! the traffic record tags it with the scenario and persona. A failing step stops the run; the
//! steps after it are reported as skipped.
//!
//! Bounds: at most [`super::MAX_STEPS`] steps, [`Limits::body_kept`] bytes of each response
//! body kept in the result, [`Limits::read_body`] read for assertions, and one deadline for the
//! whole run. Secrets are redacted from what is kept: credential headers, body fields and saved
//! values whose names say they are secret, and every occurrence of such a saved value.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use super::catalog::Catalog;
use super::resolve::{self, Planned};
use crate::config::state::DesiredState;
use crate::gateway::grpc::ProtoService;
use crate::gateway::routes::RouteTable;
use crate::model::{ScenarioSpec, ScenarioStep};

/// The header the gateway tags exchanges with.
pub const SCENARIO_HEADER: &str = "x-mockops-scenario";
pub const PERSONA_HEADER: &str = "x-mockops-persona";

/// How much a run may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The whole run.
    pub overall: Duration,
    /// Bytes of a response body read (for assertions and saved values).
    pub read_body: usize,
    /// Bytes of a response body kept in the stored result.
    pub body_kept: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            overall: Duration::from_secs(20),
            read_body: 1024 * 1024,
            body_kept: 16 * 1024,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunRequest {
    #[serde(default, alias = "env")]
    pub environment: Option<String>,
    #[serde(default)]
    pub federation: Option<String>,
}

/// Why a run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("scenario `{name}` is not defined{}", env.as_ref().map(|e| format!(" in environment `{e}`")).unwrap_or_default())]
    UnknownScenario {
        name: String,
        env: Option<String>,
        hint: Option<String>,
    },
    #[error("scenario `{name}` is defined in environments {envs}; say which with --env")]
    AmbiguousEnvironment { name: String, envs: String },
    #[error("federation `{0}` is not defined")]
    UnknownFederation(String, Option<String>),
    #[error(
        "no single federation serves every service of scenario `{0}`; say which with --federation"
    )]
    NoFederation(String),
    #[error("step {step}: service `{service}` is not in federation `{federation}`")]
    NotInFederation {
        step: usize,
        service: String,
        federation: String,
    },
    #[error("scenario `{0}` has more than {max} steps", max = super::MAX_STEPS)]
    TooManySteps(String),
}

impl RunError {
    pub fn hint(&self) -> Option<String> {
        match self {
            RunError::UnknownScenario { hint, .. } | RunError::UnknownFederation(_, hint) => {
                hint.clone()
            }
            _ => None,
        }
    }
}

/// A scenario ready to run against one federation.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario_id: String,
    pub environment: String,
    pub federation: String,
    pub spec: Arc<ScenarioSpec>,
    /// Per step: the service's base path in the federation and its operations.
    pub services: Vec<(String, Option<Arc<Catalog>>)>,
    /// Per step: the compiled `.proto` of the service, for gRPC steps (see [`Prepared::attach`]).
    pub protos: Vec<Option<Arc<ProtoService>>>,
    /// The gateway's address (set by [`execute`]).
    pub gateway: SocketAddr,
}

impl Prepared {
    /// Takes each step's compiled `.proto` from the gateway's routes.
    pub fn attach(&mut self, table: &RouteTable) {
        let fed = table.federations.get(&self.federation);
        self.protos = self
            .spec
            .steps
            .iter()
            .map(|s| {
                let name = s.service.as_deref()?;
                let route = fed?.services.iter().find(|r| r.name == name)?;
                route.proto.as_ref()?.as_ref().ok().cloned()
            })
            .collect();
    }
}

/// Finds scenario `name` (its id, else its `name`) and the federation it runs in.
pub fn prepare(state: &DesiredState, name: &str, req: &RunRequest) -> Result<Prepared, RunError> {
    let matches: Vec<(&String, &String, &Arc<ScenarioSpec>)> = state
        .scenarios
        .iter()
        .filter(|((_, id), e)| id == name || e.spec.name == name)
        .map(|((env, id), e)| (env, id, &e.spec))
        .collect();
    let chosen = match &req.environment {
        Some(env) => matches.iter().find(|(e, _, _)| *e == env),
        None if matches.len() == 1 => matches.first(),
        None => matches.iter().find(|(e, _, _)| e.as_str() == "dev"),
    };
    let Some((env, id, spec)) = chosen.copied() else {
        if matches.is_empty() || req.environment.is_some() {
            let ids: Vec<&str> = state
                .scenarios
                .keys()
                .filter(|(e, _)| req.environment.as_ref().is_none_or(|want| want == e))
                .map(|(_, id)| id.as_str())
                .collect();
            let hint = crate::config::diag::did_you_mean(name, ids.iter().copied())
                .map(|c| format!("did you mean `{c}`?"))
                .or_else(|| {
                    (!matches.is_empty()).then(|| {
                        format!(
                            "it is defined in {}",
                            matches
                                .iter()
                                .map(|(e, _, _)| e.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                });
            return Err(RunError::UnknownScenario {
                name: name.to_string(),
                env: req.environment.clone(),
                hint,
            });
        }
        return Err(RunError::AmbiguousEnvironment {
            name: name.to_string(),
            envs: matches
                .iter()
                .map(|(e, _, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    if spec.steps.len() > super::MAX_STEPS {
        return Err(RunError::TooManySteps(id.clone()));
    }
    let step_services: Vec<&str> = spec
        .steps
        .iter()
        .filter_map(|s| s.service.as_deref())
        .collect();
    let federation = match req.federation.as_ref().or(spec.federation.as_ref()) {
        Some(f) => {
            if !state.federations.contains_key(f) {
                let hint = crate::config::diag::did_you_mean(
                    f,
                    state.federations.keys().map(String::as_str),
                )
                .map(|c| format!("did you mean `{c}`?"));
                return Err(RunError::UnknownFederation(f.clone(), hint));
            }
            f.clone()
        }
        None => {
            let serving: Vec<&String> = state
                .federations
                .iter()
                .filter(|(_, f)| {
                    step_services
                        .iter()
                        .all(|s| f.spec.services.iter().any(|m| m.name == *s))
                })
                .map(|(n, _)| n)
                .collect();
            match serving.as_slice() {
                [one] => (*one).clone(),
                _ => return Err(RunError::NoFederation(id.clone())),
            }
        }
    };
    let fed = &state.federations[&federation].spec;
    let mut services = Vec::new();
    for (i, step) in spec.steps.iter().enumerate() {
        let svc = step.service.as_deref().unwrap_or_default();
        let Some(m) = fed.services.iter().find(|m| m.name == svc) else {
            return Err(RunError::NotInFederation {
                step: i,
                service: svc.to_string(),
                federation: federation.clone(),
            });
        };
        let catalog = state
            .services
            .get(m.service.as_ref().unwrap_or(&m.name))
            .and_then(|s| s.spec.spec.as_deref())
            .and_then(|p| crate::git::revision::normalize(p).ok())
            .and_then(|p| state.specs.get(&p))
            .and_then(|f| f.operations.clone());
        services.push((m.base_path.clone(), catalog));
    }
    Ok(Prepared {
        scenario_id: id.clone(),
        environment: env.clone(),
        federation,
        spec: spec.clone(),
        protos: vec![None; services.len()],
        services,
        gateway: SocketAddr::from(([127, 0, 0, 1], 0)),
    })
}

/// How a run or a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
        }
    }
}

/// One assertion of a step: what was expected, what came, and whether they agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assertion {
    /// `status`, or the JSON pointer into the body.
    pub what: String,
    pub expected: Json,
    pub actual: Json,
    pub passed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentRequest {
    pub method: String,
    pub url: String,
    pub headers: IndexMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub status: u16,
    /// The body: JSON when it parses, else text; cut at the kept size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// The body was longer than what is kept.
    #[serde(default)]
    pub truncated: bool,
    /// A gRPC step's status code and message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_message: Option<String>,
    /// `X-Mockops-Source` of the gateway's answer (upstream, mock, blended, gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub index: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub service: String,
    /// The operation called (`createCharge`, or `METHOD /path`).
    pub operation: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Received>,
    #[serde(default)]
    pub assertions: Vec<Assertion>,
    /// Values saved for later steps (secret ones masked).
    #[serde(default)]
    pub saved: Map<String, Json>,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A finished run, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Set by the store.
    pub id: u64,
    pub scenario_id: String,
    pub scenario_name: String,
    pub environment: String,
    pub federation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    /// The applied commit the run resolved its steps in.
    pub commit: String,
    pub outcome: Outcome,
    pub started_at: String,
    /// Microseconds since the Unix epoch (ordering, retention).
    pub started_micros: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub steps: Vec<StepResult>,
}

/// Where the gateway is reached from this process: its listening address, with an unspecified
/// IP replaced by loopback.
pub fn reachable(addr: SocketAddr) -> SocketAddr {
    let mut a = addr;
    if a.ip().is_unspecified() {
        a.set_ip(match a {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    a
}

fn micros_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs a prepared scenario through the gateway at `gateway`.
pub async fn execute(p: &Prepared, gateway: SocketAddr, commit: &str, limits: Limits) -> RunRecord {
    let p = &Prepared {
        gateway: reachable(gateway),
        ..p.clone()
    };
    let started = Instant::now();
    let deadline = started + limits.overall;
    let mut record = RunRecord {
        id: 0,
        scenario_id: p.scenario_id.clone(),
        scenario_name: p.spec.name.clone(),
        environment: p.environment.clone(),
        federation: p.federation.clone(),
        persona: p.spec.persona.clone(),
        commit: commit.to_string(),
        outcome: Outcome::Passed,
        started_at: crate::util::time::now_rfc3339(),
        started_micros: micros_now(),
        duration_ms: 0,
        failed_step: None,
        error: None,
        steps: Vec::new(),
    };
    let client = match reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            record.outcome = Outcome::Failed;
            record.error = Some(format!("cannot build the HTTP client: {e}"));
            return record;
        }
    };
    let base = format!("http://{}", reachable(gateway));
    // Saved values by step id and by index.
    let mut saved: std::collections::HashMap<String, Map<String, Json>> = Default::default();
    // Saved values that are secrets: redacted wherever they appear in the result.
    let mut secrets: Vec<String> = Vec::new();
    let mut failed = false;
    for (i, step) in p.spec.steps.iter().enumerate() {
        let service = step.service.clone().unwrap_or_default();
        let (base_path, catalog) = &p.services[i];
        let proto = p.protos.get(i).cloned().flatten();
        let mut result = StepResult {
            index: i,
            id: step.step.clone(),
            service: service.clone(),
            operation: step
                .action
                .clone()
                .or_else(|| {
                    step.request
                        .as_ref()
                        .map(|r| format!("{} {}", r.method.as_deref().unwrap_or("GET"), r.path))
                })
                .unwrap_or_default(),
            outcome: Outcome::Skipped,
            request: None,
            response: None,
            assertions: Vec::new(),
            saved: Map::new(),
            duration_ms: 0,
            error: None,
        };
        if failed {
            record.steps.push(result);
            continue;
        }
        let step_started = Instant::now();
        let outcome = run_step(
            &client,
            &base,
            p,
            step,
            base_path,
            catalog.as_deref(),
            proto.as_deref(),
            &saved,
            deadline,
            limits,
            &mut result,
        )
        .await;
        result.duration_ms = millis(step_started.elapsed());
        match outcome {
            Ok(values) => {
                result.outcome = Outcome::Passed;
                for (name, v) in &values {
                    let text = resolve::text(v);
                    let secret = crate::config::inline_secrets::is_inline_secret(name, &text);
                    if secret && text.len() >= 4 {
                        secrets.push(text);
                    }
                    result.saved.insert(
                        name.clone(),
                        if secret {
                            Json::String(crate::secret::MASK.into())
                        } else {
                            v.clone()
                        },
                    );
                }
                saved.insert(i.to_string(), values.clone());
                if let Some(id) = &step.step {
                    saved.insert(id.clone(), values);
                }
            }
            Err(e) => {
                result.outcome = Outcome::Failed;
                result.error = Some(e.to_string());
                failed = true;
                record.outcome = Outcome::Failed;
                record.failed_step = Some(i);
                record.error = result.error.clone();
            }
        }
        record.steps.push(result);
    }
    record.duration_ms = millis(started.elapsed());
    redact_record(&mut record, &secrets);
    record
}

/// The `detail` of an `application/problem+json` body the gateway wrote itself.
fn gateway_problem(body: Option<&Json>) -> Option<&str> {
    let b = body?;
    if !b
        .get("type")?
        .as_str()?
        .starts_with(crate::gateway::problem::TYPE_BASE)
    {
        return None;
    }
    b.get("detail")?.as_str()
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Reference(#[from] resolve::SubstituteError),
    /// The step does not resolve against the service's spec (every problem, joined).
    #[error("{0}")]
    Unresolved(String),
    #[error("`{0}` is a gRPC method the gateway does not serve (its .proto did not compile)")]
    Grpc(String),
    #[error("cannot build the request: {0}")]
    Request(String),
    #[error("the gateway did not answer: {0}")]
    Unanswered(String),
    #[error("the run's time limit ({0} s) was reached")]
    Deadline(u64),
    #[error("assertion failed: {0}")]
    Assertion(String),
    #[error("save.{name}: the response body has nothing at `{pointer}`")]
    NothingToSave { name: String, pointer: String },
}

/// Runs one step; the values it saves, or why it failed (`result` gets the request, response
/// and assertions either way).
#[allow(clippy::too_many_arguments)]
async fn run_step(
    client: &reqwest::Client,
    base: &str,
    p: &Prepared,
    step: &ScenarioStep,
    base_path: &str,
    catalog: Option<&Catalog>,
    proto: Option<&ProtoService>,
    saved: &std::collections::HashMap<String, Map<String, Json>>,
    deadline: Instant,
    limits: Limits,
    result: &mut StepResult,
) -> Result<Map<String, Json>, StepError> {
    let lookup = |s: &str, n: &str| saved.get(s).and_then(|m| m.get(n)).cloned();
    let step = substitute_step(step, &lookup)?;
    let planned: Planned = resolve::plan(&step, &result.service, catalog).map_err(|problems| {
        StepError::Unresolved(
            problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    result.operation = planned.operation.clone();
    let mut headers: IndexMap<String, String> = IndexMap::new();
    for (k, v) in &planned.headers {
        headers.insert(k.clone(), v.clone());
    }
    headers.insert(SCENARIO_HEADER.into(), p.scenario_id.clone());
    if let Some(persona) = &p.spec.persona {
        headers.insert(PERSONA_HEADER.into(), persona.clone());
    }
    let mut header_map = reqwest::header::HeaderMap::new();
    for (k, v) in &headers {
        let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| StepError::Request(format!("`{k}` is not a header name")))?;
        let value = reqwest::header::HeaderValue::from_str(v).map_err(|_| {
            StepError::Request(format!("header `{k}` has a value that cannot be sent"))
        })?;
        header_map.insert(name, value);
    }
    let remaining = deadline.saturating_duration_since(Instant::now());
    if remaining.is_zero() {
        return Err(StepError::Deadline(limits.overall.as_secs()));
    }
    let (parsed, grpc) = match &planned.grpc {
        Some(_) => {
            let Some(proto) = proto else {
                return Err(StepError::Grpc(planned.operation));
            };
            let (service, method) = planned
                .path
                .trim_start_matches('/')
                .split_once('/')
                .unwrap_or_default();
            let md = proto
                .method(service, method)
                .ok_or_else(|| StepError::Grpc(planned.operation.clone()))?;
            let body = match &planned.body {
                Some(Json::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            let message = super::grpc::to_message(&md.input(), &body)
                .map_err(|e| StepError::Request(e.to_string()))?;
            result.request = Some(SentRequest {
                method: "POST".into(),
                url: format!("{base}{}", planned.path),
                headers: headers.clone(),
                body: planned.body.clone(),
            });
            let answer = super::grpc::call(
                p.gateway,
                &planned.path,
                &header_map,
                &message,
                limits.read_body,
                remaining,
            )
            .await
            .map_err(|e| StepError::Unanswered(e.to_string()))?;
            let parsed = match &answer.body {
                Some(b) => Some(
                    super::grpc::decode(&md.output(), b)
                        .map(|m| super::grpc::to_json(&m))
                        .map_err(|e| StepError::Unanswered(e.to_string()))?,
                ),
                None => None,
            };
            let text = parsed.as_ref().map(Json::to_string).unwrap_or_default();
            result.response = Some(Received {
                status: 200,
                grpc_status: Some(answer.code),
                grpc_message: answer.message,
                body: if text.len() <= limits.body_kept {
                    parsed.clone()
                } else {
                    Some(Json::String(text.chars().take(limits.body_kept).collect()))
                },
                truncated: text.len() > limits.body_kept,
                source: answer.source,
            });
            (parsed, Some(answer.code))
        }
        None => {
            let url = format!(
                "{base}/{}{}{}",
                p.federation,
                base_path.trim_end_matches('/'),
                planned.path
            );
            let mut url = reqwest::Url::parse(&url)
                .map_err(|e| StepError::Request(format!("the URL {url}: {e}")))?;
            // Values saved from earlier answers never lead a step out of its service.
            let prefix = format!("/{}{}", p.federation, base_path.trim_end_matches('/'));
            if !inside(url.path(), &prefix) {
                return Err(StepError::Request(format!(
                    "the path `{}` leaves the service's base path `{prefix}`",
                    url.path()
                )));
            }
            if !planned.query.is_empty() {
                url.query_pairs_mut().extend_pairs(planned.query.iter());
            }
            let method = reqwest::Method::from_bytes(planned.method.as_bytes()).map_err(|_| {
                StepError::Request(format!("`{}` is not an HTTP method", planned.method))
            })?;
            result.request = Some(SentRequest {
                method: planned.method.clone(),
                url: url.to_string(),
                headers: headers.clone(),
                body: planned.body.clone(),
            });
            let mut req = client.request(method, url).headers(header_map);
            if let Some(body) = &planned.body {
                req = req.json(body);
            }
            let send = async {
                let resp = req
                    .send()
                    .await
                    .map_err(|e| StepError::Unanswered(e.to_string()))?;
                let status = resp.status().as_u16();
                let source = resp
                    .headers()
                    .get("x-mockops-source")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut bytes = Vec::new();
                let mut over = false;
                let mut stream = resp.bytes_stream();
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| {
                        StepError::Unanswered(format!("reading the answer failed: {e}"))
                    })?;
                    let room = limits.read_body.saturating_sub(bytes.len());
                    if chunk.len() > room {
                        bytes.extend_from_slice(&chunk[..room]);
                        over = true;
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok::<_, StepError>((status, source, bytes, over))
            };
            let (status, source, bytes, over) = tokio::time::timeout(remaining, send)
                .await
                .map_err(|_| StepError::Deadline(limits.overall.as_secs()))??;
            let parsed: Option<Json> = if over {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let kept = if bytes.len() <= limits.body_kept && !over {
                match &parsed {
                    Some(j) => Some(j.clone()),
                    None if bytes.is_empty() => None,
                    None => Some(Json::String(String::from_utf8_lossy(&bytes).into_owned())),
                }
            } else {
                let cut = &bytes[..limits.body_kept.min(bytes.len())];
                Some(Json::String(String::from_utf8_lossy(cut).into_owned()))
            };
            result.response = Some(Received {
                status,
                grpc_status: None,
                grpc_message: None,
                body: kept,
                truncated: over || bytes.len() > limits.body_kept,
                source,
            });
            (parsed, None)
        }
    };
    let status = result.response.as_ref().map_or(0, |r| r.status);
    let expect = step.expect.clone();
    let expected_status = expect.as_ref().and_then(|e| e.status);
    match grpc {
        // A gRPC step's `status` is the call's status code (0, OK, by default).
        Some(code) => result.assertions.push(Assertion {
            what: "grpc_status".into(),
            expected: json!(expected_status.unwrap_or(0)),
            actual: json!(code),
            passed: code == expected_status.unwrap_or(0),
        }),
        None => result.assertions.push(Assertion {
            what: "status".into(),
            expected: expected_status.map_or_else(|| json!("2xx or 3xx"), |s| json!(s)),
            actual: json!(status),
            passed: match expected_status {
                Some(s) => s == status,
                None => (200..400).contains(&status),
            },
        }),
    }
    for (pointer, want) in expect.iter().flat_map(|e| e.body.iter()) {
        let actual = parsed.as_ref().and_then(|b| b.pointer(pointer)).cloned();
        let passed = actual.as_ref().is_some_and(|a| same(a, want));
        result.assertions.push(Assertion {
            what: pointer.clone(),
            expected: want.clone(),
            actual: actual.unwrap_or(Json::Null),
            passed,
        });
    }
    let failed: Vec<String> = result
        .assertions
        .iter()
        .filter(|a| !a.passed)
        .map(|a| format!("{}: expected {}, got {}", a.what, a.expected, a.actual))
        .collect();
    if !failed.is_empty() {
        let mut why = failed.join("; ");
        // A problem the gateway answered itself (an unreachable upstream, no route, a refused
        // request) says why in its `detail`: the failure carries it.
        if let Some(detail) = gateway_problem(parsed.as_ref()) {
            why.push_str(&format!(" (the gateway: {detail})"));
        }
        return Err(StepError::Assertion(why));
    }
    let mut values = Map::new();
    for (name, pointer) in &step.save {
        match parsed.as_ref().and_then(|b| b.pointer(pointer)) {
            Some(v) => {
                values.insert(name.clone(), v.clone());
            }
            None => {
                return Err(StepError::NothingToSave {
                    name: name.clone(),
                    pointer: pointer.clone(),
                });
            }
        }
    }
    Ok(values)
}

/// Whether `path` is `prefix` or below it, by whole segments.
fn inside(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Equal as JSON, with numbers compared by value (`100` equals `100.0`).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The step with every `{{steps.…}}` reference replaced.
fn substitute_step(
    step: &ScenarioStep,
    lookup: &dyn Fn(&str, &str) -> Option<Json>,
) -> Result<ScenarioStep, resolve::SubstituteError> {
    let mut out = step.clone();
    for v in out.params.values_mut() {
        *v = resolve::substitute(v, lookup)?;
    }
    if let Some(r) = &step.request {
        let v = serde_json::to_value(r)
            .map_err(|e| resolve::SubstituteError::Request(e.to_string()))?;
        out.request = Some(
            serde_json::from_value(resolve::substitute(&v, lookup)?)
                .map_err(|e| resolve::SubstituteError::Request(e.to_string()))?,
        );
    }
    if let Some(e) = &mut out.expect {
        for v in e.body.values_mut() {
            *v = resolve::substitute(v, lookup)?;
        }
    }
    Ok(out)
}

/// Headers whose values are credentials.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "set-cookie"
    ) || ["token", "secret", "password", "api-key", "apikey"]
        .iter()
        .any(|k| n.contains(k))
}

fn redact_record(r: &mut RunRecord, secrets: &[String]) {
    let mask = crate::secret::MASK;
    for s in &mut r.steps {
        if let Some(req) = &mut s.request {
            for (k, v) in req.headers.iter_mut() {
                if secret_header(k) {
                    *v = mask.to_string();
                }
            }
            if let Some(b) = &mut req.body {
                crate::config::inline_secrets::mask_inline_json(b);
            }
        }
        if let Some(b) = s.response.as_mut().and_then(|r| r.body.as_mut()) {
            crate::config::inline_secrets::mask_inline_json(b);
        }
        if !secrets.is_empty() {
            let mut v = serde_json::to_value(&*s).unwrap_or(Json::Null);
            replace_secrets(&mut v, secrets);
            if let Ok(cleaned) = serde_json::from_value(v) {
                *s = cleaned;
            }
        }
    }
    if let Some(e) = &mut r.error {
        for secret in secrets {
            *e = e.replace(secret.as_str(), mask);
        }
    }
}

fn replace_secrets(v: &mut Json, secrets: &[String]) {
    match v {
        Json::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), crate::secret::MASK);
                }
            }
        }
        Json::Array(a) => a.iter_mut().for_each(|i| replace_secrets(i, secrets)),
        Json::Object(m) => m.values_mut().for_each(|i| replace_secrets(i, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_secrets_are_masked() {
        assert!(same(&json!(100), &json!(100.0)));
        assert!(!same(&json!("100"), &json!(100)));
        let mut v = json!({"h": "Bearer abcd1234", "n": ["abcd1234"]});
        replace_secrets(&mut v, &["abcd1234".to_string()]);
        assert_eq!(
            v,
            json!({"h": format!("Bearer {}", crate::secret::MASK), "n": [crate::secret::MASK]})
        );
        assert!(secret_header("Authorization"));
        assert!(secret_header("X-Api-Key"));
        assert!(!secret_header("Accept"));
    }

    #[test]
    fn a_step_stays_below_its_base_path() {
        assert!(inside("/shop/payments/charges/1", "/shop/payments"));
        assert!(inside("/shop/payments", "/shop/payments"));
        assert!(!inside("/shop/paymentsx/1", "/shop/payments"));
        assert!(!inside("/shop/admin", "/shop/payments"));
        // What URL parsing makes of a saved `..` that was not encoded.
        let url = reqwest::Url::parse("http://127.0.0.1:1/shop/payments/charges/../../admin")
            .expect("url");
        assert!(!inside(url.path(), "/shop/payments"));
    }

    #[test]
    fn unspecified_addresses_are_reached_on_loopback() {
        let a: SocketAddr = "0.0.0.0:8481".parse().expect("addr");
        assert_eq!(reachable(a).to_string(), "127.0.0.1:8481");
    }
}
