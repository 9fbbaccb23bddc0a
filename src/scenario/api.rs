//! The scenario API: `POST /api/v1/scenarios/{name}/runs` (write token; `{"environment",
//! "federation"}` in the body or `?env=&federation=`) runs a scenario of the applied commit
//! through the daemon's gateway and answers the stored result; `GET
//! /api/v1/scenarios/{name}/runs[?before=&limit=]` lists its runs, newest first, and `GET
//! /api/v1/scenarios/{name}/runs/{id}` reads one. A finished run is stored, then announced as
//! `scenario.completed` or `scenario.failed` through the event log (pipelines trigger on it).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::run::{self, Limits, RunError, RunRecord, RunRequest};
use crate::daemon::Shared;
use crate::http::ApiError;
use crate::store::{NewEvent, Origin};

/// How long a run waits for the gateway to serve the applied commit.
const GATEWAY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most runs listed per request.
const MAX_LIMIT: usize = 200;

/// The scenario routes (mounted behind the read guard; running checks the write token).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/scenarios/{name}/runs", get(list).post(start))
        .route("/api/v1/scenarios/{name}/runs/{id}", get(one))
}

fn unavailable(msg: impl Into<String>) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, msg.into())
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[derive(Debug, Default, Deserialize)]
struct RunQuery {
    #[serde(default, alias = "environment")]
    env: Option<String>,
    #[serde(default)]
    federation: Option<String>,
}

async fn start(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<RunQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    s.auth.check_write(&headers)?;
    let mut req: RunRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RunRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid run request: {e}")))?
    };
    req.environment = req.environment.or(q.env);
    req.federation = req.federation.or(q.federation);
    let gateway = s.gateway.get().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "scenarios run through the gateway, which is not enabled: start the daemon with --gateway ADDR".into(),
        )
    })?;
    let addr = gateway
        .local_addr()
        .ok_or_else(|| unavailable("the gateway is not listening yet"))?;
    let sha = s
        .applied
        .borrow()
        .clone()
        .ok_or_else(|| unavailable("no commit is applied yet"))?;
    let repo = s
        .repo_path()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| unavailable("the config repository is not open yet"))?;
    let load_sha = sha.clone();
    let state = tokio::task::spawn_blocking(move || {
        crate::config::load::valid_state(&repo, &load_sha).map_err(internal)
    })
    .await
    .map_err(internal)??;
    let mut prepared = run::prepare(&state, &name, &req).map_err(|e| {
        let status = match &e {
            RunError::UnknownScenario { .. } => StatusCode::NOT_FOUND,
            _ => StatusCode::BAD_REQUEST,
        };
        let msg = match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        };
        ApiError(status, msg)
    })?;
    // The run resolves its steps in the applied commit: wait (briefly) until the gateway
    // serves that commit too.
    let deadline = tokio::time::Instant::now() + GATEWAY_WAIT;
    let table = loop {
        let table = gateway.table();
        if table.sha.as_deref() == Some(sha.as_str()) {
            break table;
        }
        if tokio::time::Instant::now() >= deadline {
            let why = gateway
                .last_error()
                .map(|e| format!(": {e}"))
                .unwrap_or_default();
            return Err(unavailable(format!(
                "the gateway does not serve the applied commit {sha} yet{why}"
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };
    prepared.attach(&table);
    let record = run::execute(&prepared, addr, &sha, Limits::default()).await;
    let store = s.store.clone();
    let workspace = prepared.spec.workspace_id.clone();
    let (record, stored) = tokio::task::spawn_blocking(move || {
        let record = store.put_scenario_run(record)?;
        let events = store.append_events(vec![event(&record, workspace)])?;
        Ok::<_, crate::store::StoreError>((record, events))
    })
    .await
    .map_err(internal)??;
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
    let mut out = serde_json::to_value(&record).map_err(internal)?;
    if let (Some(o), Some(ev)) = (out.as_object_mut(), stored.first()) {
        o.insert("event_id".into(), json!(ev.id));
    }
    Ok((StatusCode::CREATED, Json(out)))
}

/// `scenario.completed` or `scenario.failed` for a stored run.
fn event(r: &RunRecord, workspace_id: Option<String>) -> NewEvent {
    let event_type = match r.outcome {
        run::Outcome::Passed => "scenario.completed",
        _ => "scenario.failed",
    };
    let mut e = NewEvent::new(event_type, Origin(format!("scenario:{}", r.scenario_id)));
    e.workspace_id = workspace_id;
    e.dedup_key = Some(format!("scenario-run:{}", r.id));
    let steps: Vec<Value> = r
        .steps
        .iter()
        .map(|s| {
            json!({
                "index": s.index,
                "id": s.id,
                "service": s.service,
                "operation": s.operation,
                "outcome": s.outcome,
                "status": s.response.as_ref().map(|r| r.status),
                "duration_ms": s.duration_ms,
            })
        })
        .collect();
    let mut p = Map::new();
    p.insert("scenario_id".into(), json!(r.scenario_id));
    p.insert("scenario_name".into(), json!(r.scenario_name));
    p.insert("run_id".into(), json!(r.id));
    p.insert("environment".into(), json!(r.environment));
    p.insert("federation".into(), json!(r.federation));
    if let Some(persona) = &r.persona {
        p.insert("persona".into(), json!(persona));
    }
    p.insert("status".into(), json!(r.outcome));
    p.insert("duration_ms".into(), json!(r.duration_ms));
    p.insert("commit".into(), json!(r.commit));
    p.insert("steps".into(), Value::Array(steps));
    if let Some(i) = r.failed_step {
        p.insert("failed_step".into(), json!(i));
    }
    if let Some(err) = &r.error {
        p.insert("error".into(), json!(err));
    }
    e.payload = p;
    e
}

#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let runs = s.store.scenario_runs(&name, q.before, limit)?;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({"runs": runs, "next_before": next})))
}

async fn one(
    State(s): State<Arc<Shared>>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<RunRecord>, ApiError> {
    match s.store.scenario_run(id)? {
        Some(r) if r.scenario_id == name => Ok(Json(r)),
        _ => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("scenario `{name}` has no run {id}"),
        )),
    }
}
