//! The drift API: `GET /api/v1/drift` (per service: reachability, budgets, open incidents by
//! kind), `GET /api/v1/drift/incidents[?service=&state=open|resolved|all&limit=]`,
//! `GET /api/v1/drift/incidents/{id}`, and `POST /api/v1/drift/probe/{service}` (write token:
//! runs one probe round now and answers what it found). Reads need a read token like the
//! daemon's other reads (the router mounts these behind the same guard).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::detect::{ALL_KINDS, Drift};
use super::incident::IncidentState;
use super::probe::{self, ProbeError};
use crate::daemon::Shared;
use crate::http::ApiError;
use crate::store::drift::IncidentFilter;

/// Most incidents listed per request.
const MAX_LIMIT: usize = 1000;

/// The drift routes (mounted behind the read guard).
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/drift", get(status))
        .route("/api/v1/drift/incidents", get(incidents))
        .route("/api/v1/drift/incidents/{id}", get(incident))
        .route("/api/v1/drift/probe/{service}", post(probe_now))
        .route("/api/v1/drift/patch/{service}", get(patch))
}

fn drift(s: &Shared) -> Result<&Arc<Drift>, ApiError> {
    s.drift.get().ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "drift detection is not running yet".into(),
        )
    })
}

async fn status(State(s): State<Arc<Shared>>) -> Result<Json<Value>, ApiError> {
    let d = drift(&s)?;
    let contracts = d.contracts();
    let reach = d.reachability();
    let open = s.store.incidents(&IncidentFilter {
        service: None,
        open_only: true,
    })?;
    let budgets = s.store.budget_states()?;
    let mut services = Vec::new();
    for (name, c) in &contracts.services {
        let mut by_kind: BTreeMap<&str, u64> = ALL_KINDS.iter().map(|k| (k.as_str(), 0)).collect();
        let mut total = 0u64;
        for i in open.iter().filter(|i| i.location.service == *name) {
            *by_kind.entry(i.kind.as_str()).or_default() += 1;
            total += 1;
        }
        let r = reach.get(name);
        let budget = c.budget.as_ref().or(contracts.settings.budget.as_ref());
        let states: Vec<Value> = budgets
            .iter()
            .filter_map(|(k, st)| {
                let (svc, endpoint) = k.split_once('\0')?;
                (svc == name).then(|| {
                    json!({
                        "endpoint": endpoint,
                        "exceeded": st.exceeded,
                        "crossings": st.crossings,
                        "since": st.since,
                        "drift_count": st.drift_count,
                        "threshold": st.threshold,
                    })
                })
            })
            .collect();
        services.push(json!({
            "service": name,
            "spec": c.spec_file,
            "upstream": match &c.upstream {
                Ok(u) => json!({"url": u.url.as_str()}),
                Err(why) => json!({"error": why.to_string()}),
            },
            "status": match r {
                None => "unobserved",
                Some(r) if r.reachable => "reachable",
                Some(_) => "unreachable",
            },
            "unreachable_reason": r.and_then(|r| r.error.clone()),
            "last_observed": r.map(|r| super::detect::rfc3339(r.at_ms)),
            "budget": budget,
            "budget_state": states,
            "exceeded": states.iter().any(|s| s["exceeded"] == true),
            "open_incidents": total,
            "open_by_kind": by_kind,
            "probe": c.probe.as_ref().map(|p| json!({
                "enabled": p.enabled,
                "interval_seconds": p.interval_seconds,
                "operations": probe::selected(c).iter().map(|&i| c.operations[i].endpoint()).collect::<Vec<_>>(),
            })),
        }));
    }
    let broken: BTreeMap<&String, String> = contracts
        .broken
        .iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    Ok(Json(json!({
        "sha": contracts.sha,
        "services": services,
        "unchecked": broken,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentQuery {
    service: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

async fn incidents(
    State(s): State<Arc<Shared>>,
    Query(q): Query<IncidentQuery>,
) -> Result<Json<Value>, ApiError> {
    let state = q.state.as_deref().unwrap_or("open");
    let keep: fn(IncidentState) -> bool = match state {
        "open" => |s| s == IncidentState::Open,
        "resolved" => |s| s != IncidentState::Open,
        "all" => |_| true,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("state `{other}` is not one of open, resolved, all"),
            ));
        }
    };
    let limit = q.limit.unwrap_or(100).min(MAX_LIMIT);
    let items: Vec<Value> = s
        .store
        .incidents(&IncidentFilter {
            service: q.service.clone(),
            open_only: state == "open",
        })?
        .into_iter()
        .filter(|i| keep(i.state))
        .take(limit)
        .map(|i| serde_json::to_value(i).unwrap_or(Value::Null))
        .collect();
    Ok(Json(json!({ "items": items })))
}

async fn incident(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    match s.store.incident(&id)? {
        Some(i) => Ok(Json(serde_json::to_value(i).unwrap_or(Value::Null))),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no incident {id}"))),
    }
}

async fn probe_now(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    s.auth.check_write(&headers)?;
    let d = drift(&s)?;
    match probe::round(d, &service).await {
        Ok(report) => Ok(Json(serde_json::to_value(report).unwrap_or(Value::Null))),
        Err(e @ ProbeError::UnknownService(_)) => {
            Err(ApiError(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e @ ProbeError::Unprobeable { .. }) => {
            Err(ApiError(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// The spec patch mockops would propose for a service's open drift incidents, without opening
/// anything: the unified diff, the accepted and skipped incidents, the evidence and the
/// `mockops diff` changes.
async fn patch(
    State(s): State<Arc<Shared>>,
    Path(service): Path<String>,
) -> Result<Json<Value>, ApiError> {
    use crate::drift::patch::ServicePatchError as E;
    let repo = drift(&s)?.repo().to_path_buf();
    let store = s.store.clone();
    let name = service.clone();
    let proposal =
        tokio::task::spawn_blocking(move || crate::drift::patch::for_service(&store, &repo, &name))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                let status = match &e {
                    E::UnknownService(_) => StatusCode::NOT_FOUND,
                    E::NoSpec(_) => StatusCode::UNPROCESSABLE_ENTITY,
                    E::NotApplied => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                ApiError(status, e.to_string())
            })?;
    Ok(Json(json!({
        "service": service,
        "diff": proposal.diff(),
        "files": proposal.files.iter().map(|f| f.path.clone()).collect::<Vec<_>>(),
        "accepted": proposal.accepted,
        "skipped": proposal.skipped,
        "summary": proposal.summary,
        "changes": proposal.changes,
    })))
}
