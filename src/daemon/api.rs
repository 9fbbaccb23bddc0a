//! The HTTP API (axum): health, readiness, metrics, status, desired state, events, revisions,
//! coverage analytics (`analytics::api`, under `/api/v2/analytics`)
//! (the GitHub push webhook is `sources::webhook`, mounted by the daemon).
//!
//! Reads go to the store through MVCC read transactions; the only writes are event ingestion
//! (bearer token), drift observations handed to the drift writer's queue (bearer token), and the
//! webhook's wake-up.
//!
//! Who may do what (`crate::http::ApiAuth`): `/healthz`, `/readyz` and `/metrics` are open; every other
//! read (status, desired state, events, revisions, executions) needs the write token or the
//! read-only token, unless the daemon runs with `--anonymous-read`; writes need the write
//! token. Desired state is served with secrets written inline in the repository masked.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::http::ApiError;
use crate::http::require_read;

use super::Shared;
use crate::store::{EventFilter, NewEvent, Origin};

/// Largest request body accepted (events, webhooks).
const MAX_BODY: usize = 1024 * 1024;
/// Most events or revisions returned per page.
const MAX_PAGE: usize = 1000;

pub fn router(shared: Arc<Shared>) -> Router {
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    let guarded = Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/services", get(|s| list(s, "service")))
        .route("/api/v1/services/{name}", get(|s, n| one(s, "service", n)))
        .route("/api/v1/federations", get(|s| list(s, "federation")))
        .route(
            "/api/v1/federations/{name}",
            get(|s, n| one(s, "federation", n)),
        )
        .route("/api/v1/federations/{name}/health", get(federation_health))
        .route("/api/v1/traffic", get(traffic))
        .route("/api/v1/pipelines", get(list_pipelines))
        .route(
            "/api/v1/pipelines/{name}",
            get(|s, n| one(s, "pipeline", n)),
        )
        .route("/api/v1/events", get(events).post(post_event))
        .route("/api/v1/sync", post(sync))
        .route("/api/v1/events/{id}", get(event))
        .route("/api/v1/revisions", get(revisions))
        .route("/api/v1/revisions/{seq}", get(revision))
        .merge(crate::drift::api::routes())
        .merge(crate::analytics::api::routes())
        .merge(crate::scenario::api::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            shared.auth.clone(),
            require_read,
        ));
    // Observations take larger bodies than the rest of the API: their handler bounds its own.
    let observations = Router::new().route(
        "/api/v1/drift/observations",
        post(post_observations).layer(axum::extract::DefaultBodyLimit::disable()),
    );
    open.merge(guarded)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .merge(observations)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(shared.clone())
        .merge(crate::ui::router(shared))
}

type ApiResult<T> = Result<T, ApiError>;

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    // What counts as unhealthy is `Shared::health` (store faults, a stuck loop, repeated
    // failed passes).
    let health = s.health();
    if health.healthy {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy: {}\n", health.problems.join("; ")),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    match s.store.cursor() {
        Ok(c) if c.last_applied.is_some() => (StatusCode::OK, "ready\n").into_response(),
        Ok(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no revision applied yet\n",
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    crate::analytics::export::refresh(&s).await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn status(State(s): State<Arc<Shared>>) -> ApiResult<Json<Value>> {
    let cursor = s.store.cursor()?;
    let counts = s.store.counts()?;
    let live = s.live.read().unwrap_or_else(|e| e.into_inner()).clone();
    let last_attempted = match &cursor.last_attempted {
        Some(r) => s.store.revision(r.seq)?,
        None => None,
    };
    Ok(Json(json!({
        "source": live.source,
        "branch": live.branch,
        "head": live.head,
        "in_sync": live.head.is_some()
            && live.head.as_deref() == cursor.last_attempted.as_ref().map(|r| r.sha.as_str()),
        "last_applied": cursor.last_applied,
        "last_attempted": cursor.last_attempted,
        "last_attempted_status": last_attempted.as_ref().map(|r| r.status),
        "last_attempted_errors": last_attempted.as_ref().map(|r| r.errors),
        "last_sync_at": live.last_sync_at,
        "last_error": live.last_error,
        "consecutive_failures": live.consecutive_failures,
        "watcher_degraded": live.watcher_degraded,
        "rebuilt": cursor.rebuilt,
        "health": s.health(),
        "counts": counts,
        "sync_served": s.sync_served.load(std::sync::atomic::Ordering::SeqCst),
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// "Look now": the reconcile loop fetches and applies at once instead of at its next poll.
/// Answers 202 with the request's number; `status.sync_served` reaches it once a pass that
/// started after the request has finished.
async fn sync(State(s): State<Arc<Shared>>, headers: HeaderMap) -> ApiResult<Response> {
    s.auth.check_write(&headers)?;
    let request = s
        .sync_requested
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        + 1;
    s.hints.poke();
    Ok((StatusCode::ACCEPTED, Json(json!({"request": request}))).into_response())
}

async fn list(State(s): State<Arc<Shared>>, kind: &'static str) -> ApiResult<Json<Value>> {
    let rows = s.store.rows_of(kind)?;
    let items: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"name": r.name, "path": r.path, "spec": masked(r.value)}))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn one(
    State(s): State<Arc<Shared>>,
    kind: &'static str,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    match s.store.row(&format!("{kind}/{name}"))? {
        Some(r) => Ok(Json(
            json!({"name": r.name, "path": r.path, "blob": r.blob, "spec": masked(r.value)}),
        )),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no {kind} named `{name}` in the applied state"),
        )),
    }
}

/// `GET /api/v1/pipelines?workspace=&enabled=`: the applied pipelines, filtered as
/// `crate::pipeline::api::PipelineFilter` says.
async fn list_pipelines(
    State(s): State<Arc<Shared>>,
    Query(q): Query<crate::pipeline::api::PipelineFilter>,
) -> ApiResult<Json<Value>> {
    let rows = s.store.rows_of("pipeline")?;
    let items: Vec<Value> = rows
        .into_iter()
        .filter(|r| q.keeps(&r.value))
        .map(|r| json!({"name": r.name, "path": r.path, "spec": masked(r.value)}))
        .collect();
    Ok(Json(json!({ "items": items })))
}

/// Desired state as served: secrets written inline in the repository masked.
fn masked(mut v: Value) -> Value {
    crate::config::inline_secrets::mask_inline_json(&mut v);
    v
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    workspace: Option<String>,
    since: Option<String>,
    after: Option<u64>,
    limit: Option<usize>,
}

async fn events(
    State(s): State<Arc<Shared>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Json<Value>> {
    if let Some(since) = &q.since
        && crate::util::time::parse(since).is_none()
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("since=`{since}` is not an RFC 3339 time (e.g. 2026-11-21T10:00:00Z)"),
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = EventFilter {
        event_type: q.event_type,
        workspace_id: q.workspace,
        after: q.after,
        since: q.since,
        limit,
    };
    let events = s.store.events(&filter)?;
    let next = if events.len() == limit {
        events.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(json!({"events": events, "next_after": next})))
}

/// `GET /api/v1/federations/NAME/health`: each service's readiness in the gateway's routes.
async fn federation_health(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let Some(gateway) = s.gateway.get() else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "the gateway is not running: start the daemon with --gateway ADDR".into(),
        ));
    };
    match gateway.health(&name).await {
        Some(h) => {
            let code = if h["ready"] == true {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            Ok((code, Json(h)).into_response())
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no federation `{name}` in the applied commit"),
        )),
    }
}

#[derive(Deserialize)]
struct TrafficQuery {
    federation: Option<String>,
    service: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/traffic`: the gateway's recorded exchanges, newest first.
async fn traffic(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TrafficQuery>,
) -> ApiResult<Json<Value>> {
    let filter = crate::store::traffic::TrafficFilter {
        federation: q.federation,
        service: q.service,
        limit: q.limit.unwrap_or(100).clamp(1, MAX_PAGE),
    };
    let exchanges = s.store.traffic(&filter)?;
    Ok(Json(json!({"exchanges": exchanges})))
}

async fn event(State(s): State<Arc<Shared>>, Path(id): Path<u64>) -> ApiResult<Json<Value>> {
    match s.store.event(id)? {
        Some(e) => Ok(Json(serde_json::to_value(e).unwrap_or(Value::Null))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no event {id}"))),
    }
}

/// The body of `POST /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostedEvent {
    pub event_type: String,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub workspace_name: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
    #[serde(default)]
    pub payload: Map<String, Value>,
    /// Posting again with the same key returns the stored event instead of a new one.
    #[serde(default)]
    pub dedup_key: Option<String>,
    /// Who posts (shown as the event's source `api:<caller>`).
    #[serde(default)]
    pub caller: Option<String>,
}

async fn post_event(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    s.auth.check_write(&headers)?;
    let posted: PostedEvent = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid event: {e}")))?;
    validate_event_type(&posted.event_type)?;
    let mut e = NewEvent::new(
        &posted.event_type,
        Origin::api(posted.caller.as_deref().unwrap_or("api")),
    )
    .workspace(posted.workspace_id, posted.workspace_name);
    e.org_id = posted.org_id;
    e.payload = posted.payload;
    e.dedup_key = posted.dedup_key;
    let store = s.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.append_events(vec![e]))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    s.events_stored.notify_one();
    for ev in &stored {
        s.metrics
            .events
            .get_or_create(&crate::metrics::Metrics::label(
                "type",
                ev.event_type.clone(),
            ))
            .inc();
    }
    let ev = stored.into_iter().next();
    Ok((StatusCode::CREATED, Json(json!(ev))).into_response())
}

/// Events produced by the daemon itself cannot be posted; names are dotted lower-case words.
fn validate_event_type(t: &str) -> Result<(), ApiError> {
    let bad = |m: String| Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, m));
    if crate::model::events::EventType::parse(t).is_some() {
        return bad(format!(
            "`{t}` is produced by mockops itself and cannot be posted; use a custom name such as `release.published`"
        ));
    }
    let ok = !t.is_empty()
        && t.len() <= 100
        && t.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        });
    if !ok {
        return bad(format!(
            "`{t}` is not an event name: use dotted lower-case words, e.g. `release.published`"
        ));
    }
    Ok(())
}

/// Largest body of `POST /api/v1/drift/observations`.
pub const MAX_OBSERVATIONS_BODY: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct ObservationsQuery {
    service: Option<String>,
    federation: Option<String>,
}

fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    ext: Map<String, Value>,
) -> Response {
    crate::gateway::problem::response(status, slug, title, detail, ext).into_response()
}

/// `POST /api/v1/drift/observations`: exchanges seen elsewhere, in the shape of
/// `drift::har`, handed to the drift writer. 202 `{accepted, dropped}` (dropped: the writer's
/// queue was full).
async fn post_observations(
    State(s): State<Arc<Shared>>,
    Query(q): Query<ObservationsQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    use crate::drift::har::{self, HarError};
    use http_body_util::BodyExt as _;
    use serde_json::json as j;
    // The token before the body: nobody without one makes the daemon read 16 MiB.
    s.auth.check_write(&headers)?;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            &format!(
                "observations are taken up to {MAX_OBSERVATIONS_BODY} bytes per request; post them in batches"
            ),
            crate::gateway::problem::ext([("limit", j!(MAX_OBSERVATIONS_BODY))]),
        )
    };
    // A declared length over the cap is answered before any of the body is read.
    if crate::http::declared_length(&headers).is_some_and(|n| n > MAX_OBSERVATIONS_BODY as u64) {
        return Ok(too_large());
    }
    let body = match http_body_util::Limited::new(body, MAX_OBSERVATIONS_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Ok(too_large()),
        Err(e) => {
            return Ok(problem(
                StatusCode::BAD_REQUEST,
                "bad-body",
                "Unreadable request body",
                &format!("cannot read the request body: {e}"),
                Map::new(),
            ));
        }
    };
    // The same cap as the gateway's observations (`--drift-max-body`).
    let max_body = s
        .drift
        .get()
        .map_or(crate::gateway::tee::DEFAULT_DRIFT_MAX_BODY, |d| d.max_body);
    let parsed = tokio::task::spawn_blocking(move || {
        har::parse(
            &body,
            q.service.as_deref(),
            q.federation.as_deref(),
            max_body,
        )
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let batch = match parsed {
        Ok(b) => b,
        Err(e) => {
            let detail = e.to_string();
            return Ok(match e {
                HarError::NotJson(_) => problem(
                    StatusCode::BAD_REQUEST,
                    "bad-observations",
                    "The observations are not JSON",
                    &detail,
                    Map::new(),
                ),
                HarError::Shape { field, .. } => problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad-observations",
                    "The observations are not in the documented shape",
                    &detail,
                    crate::gateway::problem::ext([("field", j!(field))]),
                ),
                HarError::Entry { index, field, .. } => problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "bad-observation",
                    "An entry is not in the documented shape",
                    &detail,
                    crate::gateway::problem::ext([("entry", j!(index)), ("field", j!(field))]),
                ),
                HarError::TooMany { count, max } => problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-many-observations",
                    "Too many entries",
                    &detail,
                    crate::gateway::problem::ext([("entries", j!(count)), ("limit", j!(max))]),
                ),
            });
        }
    };
    let known = |kind: &str| -> ApiResult<Vec<String>> {
        Ok(s.store.rows_of(kind)?.into_iter().map(|r| r.name).collect())
    };
    let services = known("service")?;
    if !services.contains(&batch.service) {
        return Ok(problem(
            StatusCode::NOT_FOUND,
            "unknown-service",
            "No such service",
            &format!(
                "no service `{}` in the applied commit; known: {}",
                batch.service,
                if services.is_empty() {
                    "none".to_string()
                } else {
                    services.join(", ")
                }
            ),
            crate::gateway::problem::ext([("known_services", j!(services))]),
        ));
    }
    if let Some(f) = &batch.federation {
        let federations = known("federation")?;
        if !federations.contains(f) {
            return Ok(problem(
                StatusCode::NOT_FOUND,
                "unknown-federation",
                "No such federation",
                &format!("no federation `{f}` in the applied commit"),
                crate::gateway::problem::ext([("known_federations", j!(federations))]),
            ));
        }
    }
    let (mut accepted, mut dropped) = (0usize, 0usize);
    for o in batch.observations {
        if s.observations.send(o) {
            accepted += 1;
        } else {
            dropped += 1;
        }
    }
    if accepted > 0 {
        s.metrics
            .drift_observations
            .get_or_create(&crate::metrics::Metrics::label("source", "api"))
            .inc_by(accepted as u64);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(j!({"accepted": accepted, "dropped": dropped})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct RevisionsQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

async fn revisions(
    State(s): State<Arc<Shared>>,
    Query(q): Query<RevisionsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let revs = s.store.revisions(q.before, limit)?;
    let next = if revs.len() == limit {
        revs.last().map(|r| r.seq)
    } else {
        None
    };
    Ok(Json(json!({"revisions": revs, "next_before": next})))
}

async fn revision(State(s): State<Arc<Shared>>, Path(seq): Path<u64>) -> ApiResult<Json<Value>> {
    match s.store.revision(seq)? {
        Some(r) => Ok(Json(serde_json::to_value(r).unwrap_or(Value::Null))),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no revision {seq}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names() {
        assert!(validate_event_type("release.published").is_ok());
        assert!(validate_event_type("schema.changed").is_err());
        assert!(validate_event_type("Release").is_err());
        assert!(validate_event_type("a..b").is_err());
    }
}
