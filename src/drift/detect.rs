//! The drift writer: the one task that turns observations into incidents.
//!
//! It receives observations from the queue (gateway, probes, API), validates them against the
//! applied commit's contracts on the blocking pool (one batch at a time: bounded), folds the
//! findings into incidents (deduplicated by signature; counts, first/last seen, a few distinct
//! redacted samples) and stores them in batches. A failed observation is not drift: it marks
//! the service's upstream unreachable. On a new applied commit the contracts are rebuilt and
//! every open incident's evidence is validated again: when the new spec accepts it all, the
//! incident is resolved by the spec. Incidents not seen for the resolution window resolve
//! quietly; an incident seen again reopens under the same id. Budgets are evaluated after
//! every change (`budget`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::contracts::{self, Contract, Contracts};
use super::incident::{Incident, IncidentKind, IncidentState, MAX_SAMPLE_BYTES, MAX_SAMPLES};
use super::observation::{
    Observation, ObservationSender, ObservedBody, ObservedRequest, ObservedResponse, Outcome,
};
use super::validate::{self, Finding, Validated};
use crate::metrics::Metrics;
use crate::outbound::OutboundPolicy;
use crate::secret::Secrets;
use crate::store::Store;
use crate::store::drift::IncidentFilter;

/// Default largest body validated (`--drift-max-body`).
pub const DEFAULT_MAX_BODY: usize = 8 * 1024 * 1024;
/// Most observations validated in one blocking task.
const BATCH: usize = 64;
/// How long observations gather before the writer takes them.
const GATHER: Duration = Duration::from_millis(20);
/// How often quiet incidents and budgets are looked at without new observations.
const TICK: Duration = Duration::from_secs(60);
/// What redacted values are replaced by.
pub const REDACTED: &str = "[redacted]";

/// Whether a service's upstream answered its last observed request.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Reach {
    pub reachable: bool,
    /// Why the last request failed, when it did.
    pub error: Option<String>,
    /// Unix milliseconds of the last observation.
    pub at_ms: u64,
}

/// The drift metrics (shared with the daemon's registry).
#[derive(Clone)]
pub struct DriftMetrics {
    pub drift_incidents_open: prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >,
    pub drift_budget_exceeded: prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::gauge::Gauge,
    >,
    pub drift_observations: prometheus_client::metrics::family::Family<
        Vec<(&'static str, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
    pub drift_bodies_skipped: prometheus_client::metrics::counter::Counter,
}

impl DriftMetrics {
    pub fn of(m: &Metrics) -> Self {
        DriftMetrics {
            drift_incidents_open: m.drift_incidents_open.clone(),
            drift_budget_exceeded: m.drift_budget_exceeded.clone(),
            drift_observations: m.drift_observations.clone(),
            drift_bodies_skipped: m.drift_bodies_skipped.clone(),
        }
    }
}

/// The drift side of the daemon: contracts, reachability, the probe client, the queue.
pub struct Drift {
    pub store: Store,
    repo: PathBuf,
    contracts: RwLock<Arc<Contracts>>,
    reach: Mutex<BTreeMap<String, Reach>>,
    metrics: DriftMetrics,
    /// Bodies larger than this are not validated.
    pub max_body: usize,
    pub observations: ObservationSender,
    pub(crate) outbound: Arc<OutboundPolicy>,
    pub(crate) secrets: Secrets,
    /// Wakes pipeline dispatch after budget events are stored.
    events_stored: Arc<Notify>,
    /// Contracts were replaced (the probe scheduler re-plans).
    pub(crate) contracts_changed: Notify,
}

impl Drift {
    /// The Git directory applied commits are read from.
    pub fn repo(&self) -> &std::path::Path {
        &self.repo
    }

    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Store,
        repo: PathBuf,
        metrics: DriftMetrics,
        max_body: usize,
        observations: ObservationSender,
        outbound: Arc<OutboundPolicy>,
        secrets: Secrets,
        events_stored: Arc<Notify>,
    ) -> Drift {
        Drift {
            store,
            repo,
            contracts: RwLock::new(Arc::new(Contracts::default())),
            reach: Mutex::new(BTreeMap::new()),
            metrics,
            max_body,
            observations,
            outbound,
            secrets,
            events_stored,
            contracts_changed: Notify::new(),
        }
    }

    /// The contracts of the applied commit (empty before the first).
    pub fn contracts(&self) -> Arc<Contracts> {
        self.contracts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reachability by service, as last observed.
    pub fn reachability(&self) -> BTreeMap<String, Reach> {
        self.reach.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn metrics(&self) -> &DriftMetrics {
        &self.metrics
    }

    fn note_reach(&self, service: &str, reach: Reach) {
        self.reach
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(service.to_string(), reach);
    }

    /// Loads the contracts of `sha` (blocking pool); a commit that does not build keeps the
    /// last good contracts. True when they were replaced.
    async fn load(&self, sha: String) -> bool {
        let repo = self.repo.clone();
        let s = sha.clone();
        match tokio::task::spawn_blocking(move || contracts::build(&repo, &s)).await {
            Ok(Ok(c)) => {
                for (name, why) in &c.broken {
                    // A protobuf service is not a fault: drift holds OpenAPI services only.
                    if matches!(why, contracts::ContractError::NotOpenapi { .. }) {
                        tracing::info!(service = %name, %why, "drift: the service is not checked (drift holds OpenAPI services to their specs)");
                        continue;
                    }
                    tracing::warn!(service = %name, %why, "drift: the service's spec cannot be checked");
                }
                *self.contracts.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(c);
                self.contracts_changed.notify_waiters();
                true
            }
            Ok(Err(e)) => {
                tracing::warn!(%sha, error = %e, "drift: contracts not rebuilt; the previous ones stay");
                false
            }
            Err(e) => {
                tracing::error!(%sha, error = %e, "drift: building the contracts panicked");
                false
            }
        }
    }

    /// Validates `batch` on the blocking pool.
    async fn validate_batch(
        &self,
        batch: Vec<Observation>,
    ) -> (Arc<Contracts>, Vec<(Observation, Option<Validated>)>) {
        let contracts = self.contracts();
        let c = contracts.clone();
        let cap = self.max_body;
        let results = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|mut o| {
                    cap_bodies(&mut o, cap);
                    let v = c
                        .services
                        .get(&o.service)
                        .map(|k| validate::validate(k, &o));
                    (o, v)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        (contracts, results)
    }
}

/// Bodies over `cap` become [`ObservedBody::Skipped`]: recorded, not validated.
fn cap_bodies(o: &mut Observation, cap: usize) {
    if let ObservedBody::Bytes(x) = &o.request.body
        && x.len() > cap
    {
        o.request.body = ObservedBody::Skipped {
            size: x.len() as u64,
        };
    }
    if let Outcome::Answered(r) = &mut o.outcome
        && let ObservedBody::Bytes(x) = &r.body
        && x.len() > cap
    {
        r.body = ObservedBody::Skipped {
            size: x.len() as u64,
        };
    }
}

/// Incidents being folded, with their evidence, loaded once from the store.
pub(crate) struct Book {
    pub incidents: HashMap<String, Incident>,
    evidence: HashMap<String, Vec<Value>>,
}

impl Book {
    fn load(store: &Store) -> Book {
        let incidents = store
            .incidents(&IncidentFilter::default())
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.id.clone(), i))
            .collect();
        Book {
            incidents,
            evidence: HashMap::new(),
        }
    }

    fn evidence_of(&mut self, store: &Store, id: &str) -> &mut Vec<Value> {
        self.evidence
            .entry(id.to_string())
            .or_insert_with(|| store.incident_evidence(id).unwrap_or_default())
    }
}

/// RFC 3339 (UTC, seconds) of Unix milliseconds.
pub fn rfc3339(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// True for property names that look like secrets or personal data.
pub fn sensitive(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    const WORDS: [&str; 24] = [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "apikey",
        "accesskey",
        "privatekey",
        "credential",
        "cookie",
        "session",
        "email",
        "phone",
        "mobile",
        "ssn",
        "socialsecurity",
        "card",
        "cvv",
        "cvc",
        "iban",
        "accountnumber",
        "birthdate",
        "dateofbirth",
        "passport",
    ];
    WORDS.iter().any(|w| n.contains(w))
}

/// `v` with the values of sensitive-looking properties replaced by [`REDACTED`].
pub fn redact(v: &Value) -> Value {
    fn walk(v: &Value, depth: usize) -> Value {
        if depth > 64 {
            return Value::String(REDACTED.into());
        }
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| {
                        let x = if sensitive(k) {
                            Value::String(REDACTED.into())
                        } else {
                            walk(x, depth + 1)
                        };
                        (k.clone(), x)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, depth + 1)).collect()),
            other => other.clone(),
        }
    }
    walk(v, 0)
}

/// A redacted sample of at most [`MAX_SAMPLE_BYTES`].
fn sample(pointer: &str, v: &Value) -> Value {
    let last = pointer.rsplit('/').next().unwrap_or_default();
    let v = if !last.is_empty() && sensitive(last) {
        Value::String(REDACTED.into())
    } else {
        redact(v)
    };
    let size = serde_json::to_vec(&v).map_or(0, |b| b.len());
    if size > MAX_SAMPLE_BYTES {
        Value::String(format!("[sample of {size} bytes, too large to keep]"))
    } else {
        v
    }
}

/// The exchange kept as evidence of an incident (redacted; `None` when its body is too
/// large to keep).
fn evidence(o: &Observation, v: &Validated) -> Option<Value> {
    let Outcome::Answered(r) = &o.outcome else {
        return None;
    };
    let body = match &r.body {
        ObservedBody::None => Value::Null,
        ObservedBody::Skipped { .. } => return None,
        ObservedBody::Bytes(b) if b.is_empty() => Value::Null,
        ObservedBody::Bytes(b) => match &v.response_json {
            Some(j) => json!({"json": redact(j)}),
            None => json!({"text": String::from_utf8_lossy(&b[..b.len().min(1024)])}),
        },
    };
    if serde_json::to_vec(&body).map_or(0, |b| b.len()) > MAX_SAMPLE_BYTES * 4 {
        return None;
    }
    let request_body = match &o.request.body {
        ObservedBody::Bytes(b) if !b.is_empty() => validate::parse(b)
            .ok()
            .map(|j| redact(&j))
            .filter(|j| serde_json::to_vec(j).map_or(0, |b| b.len()) <= MAX_SAMPLE_BYTES),
        _ => None,
    };
    Some(json!({
        "source": o.source,
        "method": o.request.method,
        "path": o.request.path,
        "request_headers": o.request.headers.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "request_body": request_body,
        "status": r.status,
        "headers": r.headers.iter()
            .filter(|(k, _)| k == "content-type" || !sensitive(k))
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect::<Vec<_>>(),
        "body": body,
    }))
}

/// The observation an evidence record describes (for validation against another spec).
fn from_evidence(service: &str, e: &Value) -> Option<Observation> {
    let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let body = match e.get("body") {
        Some(b) if b.get("json").is_some() => {
            ObservedBody::Bytes(serde_json::to_vec(&b["json"]).ok()?.into())
        }
        Some(b) if b.get("text").is_some() => ObservedBody::Bytes(
            b["text"]
                .as_str()
                .unwrap_or_default()
                .as_bytes()
                .to_vec()
                .into(),
        ),
        _ => ObservedBody::None,
    };
    let request_body = match e.get("request_body") {
        Some(Value::Null) | None => ObservedBody::None,
        Some(j) => ObservedBody::Bytes(serde_json::to_vec(j).ok()?.into()),
    };
    Some(Observation {
        service: service.to_string(),
        federation: None,
        source: serde_json::from_value(e.get("source")?.clone()).ok()?,
        at_ms: 0,
        request: ObservedRequest {
            method: s("method")?,
            path: s("path")?,
            query: None,
            headers: e
                .get("request_headers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| (k.to_string(), String::new()))
                .collect(),
            body: request_body,
        },
        outcome: Outcome::Answered(ObservedResponse {
            status: u16::try_from(e.get("status")?.as_u64()?).ok()?,
            headers: e
                .get("headers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p.get(0)?.as_str()?.to_string(),
                        p.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect(),
            body,
        }),
    })
}

/// Folds one finding into the book; returns the incident's id.
pub(crate) fn fold(
    book: &mut Book,
    store: &Store,
    f: &Finding,
    at_ms: u64,
    sha: Option<&str>,
    evidence: Option<&Value>,
) -> String {
    let id = Incident::signature(f.kind, &f.location);
    let s = sample(&f.location.pointer, &f.value);
    let seen = rfc3339(at_ms);
    let incident = book
        .incidents
        .entry(id.clone())
        .or_insert_with(|| Incident {
            id: id.clone(),
            kind: f.kind,
            location: f.location.clone(),
            expected: f.expected.clone(),
            observed: f.observed.clone(),
            count: 0,
            first_seen: seen.clone(),
            last_seen: seen.clone(),
            last_seen_ms: at_ms,
            samples: Vec::new(),
            state: IncidentState::Open,
            resolved_at: None,
            spec_sha: None,
        });
    incident.count += 1;
    if at_ms >= incident.last_seen_ms {
        incident.last_seen_ms = at_ms;
        incident.last_seen = seen;
        incident.observed = f.observed.clone();
        incident.expected = f.expected.clone();
        incident.location = f.location.clone();
    }
    incident.spec_sha = sha.map(str::to_string);
    if !incident.is_open() {
        incident.state = IncidentState::Open;
        incident.resolved_at = None;
    }
    let new_sample = !incident.samples.contains(&s);
    if new_sample && incident.samples.len() < MAX_SAMPLES {
        incident.samples.push(s);
    }
    if let Some(e) = evidence {
        let kept = book.evidence_of(store, &id);
        if kept.len() < MAX_SAMPLES && (new_sample || kept.is_empty()) {
            kept.push(e.clone());
        }
    }
    id
}

/// Runs the drift writer until `cancel`; then drains what is queued and returns.
pub async fn writer(
    drift: Arc<Drift>,
    mut rx: mpsc::Receiver<Observation>,
    mut applied: watch::Receiver<Option<String>>,
    cancel: CancellationToken,
) {
    let store = drift.store.clone();
    let mut book = tokio::task::spawn_blocking(move || Book::load(&store))
        .await
        .unwrap_or_else(|_| Book {
            incidents: HashMap::new(),
            evidence: HashMap::new(),
        });
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sha = applied.borrow_and_update().clone();
        if let Some(sha) = sha
            && drift.contracts().sha.as_deref() != Some(sha.as_str())
            && drift.load(sha).await
        {
            resolve_by_spec(&drift, &mut book).await;
            super::budget::evaluate(&drift, &book, now_ms()).await;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            changed = applied.changed() => if changed.is_err() { break },
            first = rx.recv() => {
                let Some(first) = first else { break };
                // Let observations gather without waiting on the queue (a waiting receiver
                // is woken by each one: a thread wake-up per proxied request).
                tokio::select! {
                    _ = tokio::time::sleep(GATHER) => {}
                    _ = cancel.cancelled() => {}
                }
                let mut batch = vec![first];
                // A bounded number of batches, then a look at commits and cancellation.
                for _ in 0..16 {
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(o) => batch.push(o),
                            Err(_) => break,
                        }
                    }
                    let full = batch.len() == BATCH;
                    process(&drift, &mut book, std::mem::take(&mut batch)).await;
                    if !full || cancel.is_cancelled() {
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                resolve_quiet(&drift, &mut book, now_ms()).await;
                super::budget::evaluate(&drift, &book, now_ms()).await;
            }
        }
    }
    // Drain: what was queued before the shutdown is still folded.
    let mut rest = Vec::new();
    while let Ok(o) = rx.try_recv() {
        rest.push(o);
        if rest.len() == BATCH {
            process(&drift, &mut book, std::mem::take(&mut rest)).await;
        }
    }
    if !rest.is_empty() {
        process(&drift, &mut book, rest).await;
    }
}

/// Validates a batch and folds what it found.
pub(crate) async fn process(drift: &Arc<Drift>, book: &mut Book, batch: Vec<Observation>) {
    let (contracts, results) = drift.validate_batch(batch).await;
    let m = drift.metrics();
    let mut touched: Vec<String> = Vec::new();
    for (o, v) in results {
        // `mockops_drift_observations_total` is counted where the queue accepts an
        // observation (the gateway's tee, the API, a probe), not here.
        match &o.outcome {
            Outcome::Failed { reason } => {
                drift.note_reach(
                    &o.service,
                    Reach {
                        reachable: false,
                        error: Some(reason.clone()),
                        at_ms: o.at_ms,
                    },
                );
                continue;
            }
            Outcome::Answered(_) => drift.note_reach(
                &o.service,
                Reach {
                    reachable: true,
                    error: None,
                    at_ms: o.at_ms,
                },
            ),
        }
        let Some(v) = v else { continue };
        for _ in &v.skipped {
            m.drift_bodies_skipped.inc();
        }
        let ev = if v.findings.is_empty() {
            None
        } else {
            evidence(&o, &v)
        };
        for f in &v.findings {
            touched.push(fold(
                book,
                &drift.store,
                f,
                o.at_ms,
                contracts.sha.as_deref(),
                ev.as_ref(),
            ));
        }
    }
    if touched.is_empty() {
        return;
    }
    touched.sort();
    touched.dedup();
    save(drift, book, &touched).await;
    super::budget::evaluate(drift, book, now_ms()).await;
}

/// Stores the incidents `ids` of `book` (with their evidence) in one transaction.
async fn save(drift: &Drift, book: &mut Book, ids: &[String]) {
    let rows: Vec<(Incident, Vec<Value>)> = ids
        .iter()
        .filter_map(|id| {
            let i = book.incidents.get(id)?.clone();
            let e = book.evidence_of(&drift.store, id).clone();
            Some((i, e))
        })
        .collect();
    let store = drift.store.clone();
    match tokio::task::spawn_blocking(move || store.put_incidents_with_evidence(&rows)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "drift: cannot store incidents"),
        Err(e) => tracing::error!(error = %e, "drift: storing incidents panicked"),
    }
    refresh_gauges(drift, book);
}

/// `mockops_drift_incidents_open{service,kind}` from the book (services of the config only).
fn refresh_gauges(drift: &Drift, book: &Book) {
    let contracts = drift.contracts();
    let m = drift.metrics();
    let mut counts: BTreeMap<(String, IncidentKind), i64> = BTreeMap::new();
    for i in book.incidents.values().filter(|i| i.is_open()) {
        if contracts.services.contains_key(&i.location.service) {
            *counts
                .entry((i.location.service.clone(), i.kind))
                .or_default() += 1;
        }
    }
    for service in contracts.services.keys() {
        for kind in ALL_KINDS {
            let n = counts.get(&(service.clone(), kind)).copied().unwrap_or(0);
            m.drift_incidents_open
                .get_or_create(&vec![
                    ("service", service.clone()),
                    ("kind", kind.as_str().to_string()),
                ])
                .set(n);
        }
    }
}

/// Every incident kind.
pub const ALL_KINDS: [IncidentKind; 8] = [
    IncidentKind::UndeclaredStatus,
    IncidentKind::UndeclaredContentType,
    IncidentKind::MissingRequiredProperty,
    IncidentKind::UndocumentedProperty,
    IncidentKind::TypeMismatch,
    IncidentKind::EnumValueNotInSpec,
    IncidentKind::FormatViolation,
    IncidentKind::MissingRequiredHeader,
];

/// Validates every open incident's evidence against the new contracts: an incident none of
/// whose evidence still produces it is resolved by the spec.
async fn resolve_by_spec(drift: &Arc<Drift>, book: &mut Book) {
    let contracts = drift.contracts();
    let open: Vec<Incident> = book
        .incidents
        .values()
        .filter(|i| i.is_open())
        .cloned()
        .collect();
    let mut work: Vec<(Incident, Vec<Value>)> = Vec::new();
    for i in open {
        let e = book.evidence_of(&drift.store, &i.id).clone();
        if !e.is_empty() {
            work.push((i, e));
        }
    }
    let c = contracts.clone();
    let resolved: Vec<String> = tokio::task::spawn_blocking(move || {
        work.into_iter()
            .filter(|(i, evidence)| {
                let Some(contract) = c.services.get(&i.location.service) else {
                    return false;
                };
                evidence.iter().all(|e| accepts(contract, i, e))
            })
            .map(|(i, _)| i.id)
            .collect()
    })
    .await
    .unwrap_or_default();
    if resolved.is_empty() {
        refresh_gauges(drift, book);
        return;
    }
    let at = rfc3339(now_ms());
    for id in &resolved {
        if let Some(i) = book.incidents.get_mut(id) {
            i.state = IncidentState::ResolvedBySpec;
            i.resolved_at = Some(at.clone());
            i.spec_sha = contracts.sha.clone();
        }
    }
    tracing::info!(count = resolved.len(), sha = ?contracts.sha, "drift: incidents resolved by the new spec");
    save(drift, book, &resolved).await;
}

/// True when `contract` no longer finds incident `i` in the exchange `e`.
fn accepts(contract: &Contract, i: &Incident, e: &Value) -> bool {
    let Some(o) = from_evidence(&i.location.service, e) else {
        return false;
    };
    let v = validate::validate(contract, &o);
    !v.findings
        .iter()
        .any(|f| Incident::signature(f.kind, &f.location) == i.id)
}

/// Resolves open incidents not seen for the resolution window.
pub(crate) async fn resolve_quiet(drift: &Arc<Drift>, book: &mut Book, now: u64) {
    let hours = u64::from(drift.contracts().settings.resolve_after_hours);
    let window = hours.saturating_mul(3_600_000);
    let at = rfc3339(now);
    let mut quiet = Vec::new();
    for i in book.incidents.values_mut() {
        if i.is_open() && now.saturating_sub(i.last_seen_ms) > window {
            i.state = IncidentState::ResolvedQuiet;
            i.resolved_at = Some(at.clone());
            quiet.push(i.id.clone());
        }
    }
    if !quiet.is_empty() {
        save(drift, book, &quiet).await;
    }
}

impl Drift {
    /// Appends budget events and wakes pipeline dispatch.
    pub(crate) fn events_stored(&self) {
        self.events_stored.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_over_the_cap_are_skipped_not_validated() {
        let mut o = Observation {
            service: "s".into(),
            federation: None,
            source: crate::drift::ObservationSource::Api,
            at_ms: 0,
            request: ObservedRequest {
                method: "POST".into(),
                path: "/".into(),
                query: None,
                headers: Vec::new(),
                body: ObservedBody::Bytes(vec![b'1'; 10].into()),
            },
            outcome: Outcome::Answered(ObservedResponse {
                status: 200,
                headers: Vec::new(),
                body: ObservedBody::Bytes(vec![b'1'; 11].into()),
            }),
        };
        cap_bodies(&mut o, 10);
        assert_eq!(o.request.body, ObservedBody::Bytes(vec![b'1'; 10].into()));
        match &o.outcome {
            Outcome::Answered(r) => assert_eq!(r.body, ObservedBody::Skipped { size: 11 }),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_and_personal_data_are_redacted() {
        let v = json!({"name": "Rex", "owner_email": "a@b.c", "Api-Key": "k",
                       "nested": [{"password": "p", "phoneNumber": "1", "id": 2}]});
        assert_eq!(
            redact(&v),
            json!({"name": "Rex", "owner_email": REDACTED, "Api-Key": REDACTED,
                   "nested": [{"password": REDACTED, "phoneNumber": REDACTED, "id": 2}]})
        );
        assert_eq!(sample("/user/email", &json!("x@y.z")), json!(REDACTED));
        let big = Value::String("x".repeat(MAX_SAMPLE_BYTES + 1));
        assert!(
            sample("/a", &big)
                .as_str()
                .is_some_and(|s| s.contains("too large"))
        );
    }
}
