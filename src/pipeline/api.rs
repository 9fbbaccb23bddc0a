//! The HTTP API of pipelines: executions (read) and manual runs (bearer token).
//!
//! - `GET /api/v1/executions?pipeline=&limit=&before=`: newest first; `next_before` pages on.
//! - `GET /api/v1/executions/{id}`: one execution with its steps, logs and outputs.
//! - `POST /api/v1/pipelines/{name}/trigger`: body = the event as JSON (may be empty).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use super::{Engine, TriggerError};
use crate::http::{ApiAuth, ApiError, require_read};
use crate::store::executions::{Execution, ExecutionFilter};

/// Largest event accepted for a manual run.
const MAX_BODY: usize = 1024 * 1024;
/// Most executions per page.
const MAX_PAGE: usize = 500;

#[derive(Clone)]
struct ApiState {
    engine: Engine,
    auth: ApiAuth,
}

/// The routes, to merge into the daemon's router. Reads need a read (or write) token unless
/// `auth` opens them; the manual trigger needs the write token, and without one it is refused.
pub fn router(engine: Engine, auth: ApiAuth) -> Router {
    let reads = Router::new()
        .route("/api/v1/executions", get(list))
        .route("/api/v1/executions/{id}", get(one))
        .route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            require_read,
        ));
    Router::new()
        .route("/api/v1/pipelines/{name}/trigger", post(trigger))
        .merge(reads)
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(ApiState { engine, auth })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    pipeline: Option<String>,
    limit: Option<usize>,
    before: Option<u64>,
}

/// An execution without its pipeline snapshot, variables and logs.
pub fn summary(e: &Execution) -> Value {
    json!({
        "id": e.id,
        "seq": e.seq,
        "pipeline": e.pipeline,
        "status": e.status,
        "trigger_event_id": e.trigger_event_id,
        "trigger_event_type": e.trigger_event_type,
        "manual": e.manual,
        "created_at": e.created_at,
        "started_at": e.started_at,
        "finished_at": e.finished_at,
        "failed_step": e.failed_step,
        "error": e.error,
        "skipped_reason": e.skipped_reason,
        "steps": e.steps.iter().map(|s| json!({
            "name": s.name,
            "step_type": s.step_type,
            "status": s.status,
            "attempts": s.attempts,
        })).collect::<Vec<_>>(),
    })
}

async fn list(
    State(s): State<ApiState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let filter = ExecutionFilter {
        pipeline: q.pipeline,
        before: q.before,
        limit,
    };
    let store = s.engine.store().clone();
    let items = tokio::task::spawn_blocking(move || store.executions(&filter))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let next = if items.len() == limit {
        items.last().map(|e| e.seq)
    } else {
        None
    };
    let items: Vec<Value> = items.iter().map(summary).collect();
    Ok(Json(json!({"executions": items, "next_before": next})))
}

async fn one(State(s): State<ApiState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let store = s.engine.store().clone();
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || store.execution(&lookup))
        .await
        .map_err(internal)?
        .map_err(internal)?
    {
        Some(e) => {
            let mut v = serde_json::to_value(e).map_err(internal)?;
            // The pipeline snapshot is config as the repository wrote it.
            crate::config::inline_secrets::mask_inline_json(&mut v);
            Ok(Json(v))
        }
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no execution `{id}` (list them with `mockops pipelines executions`)"),
        )),
    }
}

async fn trigger(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    s.auth.check_write(&headers)?;
    let event: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid event JSON: {e}")))?
    };
    let engine = s.engine.clone();
    let pipeline = name.clone();
    let result = tokio::task::spawn_blocking(move || engine.trigger_manual(&pipeline, event))
        .await
        .map_err(internal)?;
    match result {
        Ok(id) => Ok((
            StatusCode::CREATED,
            Json(json!({"execution_id": id, "pipeline": name})),
        )
            .into_response()),
        Err(e @ TriggerError::NoPipeline(_)) => Err(ApiError(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ TriggerError::Disabled(_)) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e @ TriggerError::BadEvent(_)) => {
            Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))
        }
        Err(TriggerError::Store(e)) => Err(internal(e)),
    }
}
