//! The HTTP API of pipelines: executions (read) and manual runs (bearer token).
//!
//! - `GET /api/v1/executions?pipeline=&limit=&before=`: newest first; `next_before` pages on.
//! - `GET /api/v1/executions/{id}`: one execution with its steps, logs and outputs.
//! - `POST /api/v1/pipelines/{name}/trigger`: body = the event as JSON (may be empty).
//!
//! Management ([`manage_router`], write token; see [`crate::pipeline::manage`]): each verb is
//! validated on the followed branch's head and written to the config repository, never to
//! the store; it takes effect when the daemon reconciles the commit.
//! - `POST /api/v1/pipelines`: body = the pipeline file (YAML, or JSON, which is YAML too;
//!   `?path=pipelines/<file>.yaml` to choose its path), or JSON `{"path"?: "...", "content":
//!   "<the file's text>"}` (`Content-Type: application/json`).
//! - `POST /api/v1/pipelines/{name}/enable`, `.../disable`: changes only the `enabled:` line.
//!
//! A change answers 201 with what was written (`mode`: `direct` | `pull_request` | `branch`,
//! `commit`, `pull_request: {number, url}`, `base`), or 200 with `action: unchanged`; an
//! invalid one 422 with the diagnostics `mockops validate --format json` prints; a taken name
//! or path 409; an unknown pipeline 404; a path outside `pipelines/` or through a symbolic
//! link 400.

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

use super::manage::{Change, ManageError, Manager};
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

/// The query of `GET /api/v1/pipelines` (served by the daemon's router): `workspace=W` keeps
/// the pipelines that run for events of workspace `W` (those with `workspace_id: W` and those
/// without a `workspace_id`); `enabled=true|false` keeps the enabled or the disabled ones.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFilter {
    pub workspace: Option<String>,
    pub enabled: Option<bool>,
}

impl PipelineFilter {
    /// Whether the applied pipeline `spec` (its row's JSON) passes.
    pub fn keeps(&self, spec: &Value) -> bool {
        let workspace_ok = match (&self.workspace, spec.get("workspace_id")) {
            (None, _) => true,
            (Some(_), None | Some(Value::Null)) => true,
            (Some(w), Some(v)) => v.as_str() == Some(w.as_str()),
        };
        let enabled = spec["definition"]["enabled"].as_bool().unwrap_or(true);
        workspace_ok && self.enabled.is_none_or(|want| want == enabled)
    }
}

#[derive(Clone)]
struct ManageState {
    manager: std::sync::Arc<Manager>,
    auth: ApiAuth,
}

/// The management routes (write token), to merge into the daemon's router.
pub fn manage_router(manager: std::sync::Arc<Manager>, auth: ApiAuth) -> Router {
    Router::new()
        .route("/api/v1/pipelines", post(create))
        .route(
            "/api/v1/pipelines/{name}/enable",
            post(|s, n, h| set_enabled(s, n, h, true)),
        )
        .route(
            "/api/v1/pipelines/{name}/disable",
            post(|s, n, h| set_enabled(s, n, h, false)),
        )
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(180),
        ))
        .with_state(ManageState { manager, auth })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    path: Option<String>,
    content: String,
}

#[derive(Debug, Deserialize)]
struct CreateQuery {
    path: Option<String>,
}

async fn create(
    State(s): State<ManageState>,
    Query(q): Query<CreateQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    s.auth.check_write(&headers)?;
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let text = std::str::from_utf8(&body)
        .map_err(|_| bad("the body is not UTF-8 text".into()))?
        .to_string();
    if text.trim().is_empty() {
        return Err(bad(
            "the body is empty: send the pipeline file (YAML), or JSON {\"path\"?, \"content\"}"
                .into(),
        ));
    }
    let is_json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    let change = if is_json {
        let v: Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("invalid JSON: {e}")))?;
        if v.get("content").is_some() {
            let b: CreateBody = serde_json::from_value(v).map_err(|e| {
                bad(format!(
                    "invalid body: {e}; send {{\"path\"?: \"pipelines/<file>.yaml\", \"content\": \"<the file>\"}}"
                ))
            })?;
            Change::Create {
                path: b.path.or(q.path),
                content: b.content,
            }
        } else {
            // The pipeline itself as JSON: written as it came, pretty-printed (YAML reads it).
            let pretty = serde_json::to_string_pretty(&v).map_err(internal)?;
            Change::Create {
                path: q.path,
                content: format!("{pretty}\n"),
            }
        }
    } else {
        Change::Create {
            path: q.path,
            content: text,
        }
    };
    managed(&s.manager, change).await
}

async fn set_enabled(
    State(s): State<ManageState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    enabled: bool,
) -> Result<Response, ApiError> {
    s.auth.check_write(&headers)?;
    managed(&s.manager, Change::SetEnabled { name, enabled }).await
}

async fn managed(manager: &std::sync::Arc<Manager>, change: Change) -> Result<Response, ApiError> {
    match manager.apply(change).await {
        Ok(outcome) => {
            let status = if outcome.commit.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(json!(outcome))).into_response())
        }
        Err(ManageError::Invalid {
            path,
            base,
            diagnostics,
        }) => {
            let (errors, warnings) = crate::config::diag::counts(&diagnostics);
            let message = format!(
                "{path}: the repository with this change does not validate ({errors} error(s)); nothing was written"
            );
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({
                    "error": message,
                    "path": path,
                    "base": base,
                    "valid": false,
                    "errors": errors,
                    "warnings": warnings,
                    "diagnostics": diagnostics,
                })),
            )
                .into_response())
        }
        Err(e) => {
            let status = match &e {
                ManageError::BadRequest(_) => StatusCode::BAD_REQUEST,
                ManageError::NotFound(_) => StatusCode::NOT_FOUND,
                ManageError::Conflict(_) => StatusCode::CONFLICT,
                ManageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ManageError::Write(_) | ManageError::Invalid { .. } => StatusCode::BAD_GATEWAY,
            };
            Err(ApiError(status, e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_filter_keeps_what_runs_for_a_workspace_and_the_asked_state() {
        let scoped = json!({"workspace_id": "ws-1", "definition": {"enabled": false}});
        let global = json!({"definition": {"enabled": true}});
        let f = |workspace: Option<&str>, enabled: Option<bool>| PipelineFilter {
            workspace: workspace.map(str::to_string),
            enabled,
        };
        assert!(f(None, None).keeps(&scoped) && f(None, None).keeps(&global));
        assert!(f(Some("ws-1"), None).keeps(&scoped));
        assert!(!f(Some("ws-2"), None).keeps(&scoped));
        assert!(f(Some("ws-2"), None).keeps(&global));
        assert!(f(None, Some(false)).keeps(&scoped) && !f(None, Some(false)).keeps(&global));
        assert!(!f(Some("ws-1"), Some(true)).keeps(&scoped));
    }
}
