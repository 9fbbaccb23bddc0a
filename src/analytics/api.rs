//! The analytics API: `GET /api/v2/analytics/scenarios/usage`, `/personas/ci-hits`,
//! `/endpoints/coverage`, `/reality-levels/staleness` and `/drift/percentage`, each with the
//! parameters `from`, `to`, `federation`, `service` and `environment` (see the module above).
//! Reads need a read token like `/api/v1` (the daemon mounts these behind the same guard).
//! A wrong parameter is a 400 naming what would do; before the first applied commit, 503.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{AnalyticsError, Observed, catalog, staleness};
use crate::daemon::Shared;
use crate::http::ApiError;

/// The five views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    ScenarioUsage,
    PersonaCiHits,
    EndpointCoverage,
    Staleness,
    DriftPercentage,
}

/// The analytics routes (mounted behind the read guard).
pub fn routes() -> Router<Arc<Shared>> {
    let r = |v: View| {
        get(move |s: State<Arc<Shared>>, q: Query<BTreeMap<String, String>>| view(s, q, v))
    };
    Router::new()
        .route("/api/v2/analytics/scenarios/usage", r(View::ScenarioUsage))
        .route("/api/v2/analytics/personas/ci-hits", r(View::PersonaCiHits))
        .route(
            "/api/v2/analytics/endpoints/coverage",
            r(View::EndpointCoverage),
        )
        .route(
            "/api/v2/analytics/reality-levels/staleness",
            r(View::Staleness),
        )
        .route(
            "/api/v2/analytics/drift/percentage",
            r(View::DriftPercentage),
        )
}

impl From<AnalyticsError> for ApiError {
    fn from(e: AnalyticsError) -> Self {
        let status = if e.is_bad_request() {
            StatusCode::BAD_REQUEST
        } else if matches!(e, AnalyticsError::NotApplied) {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError(status, e.to_string())
    }
}

/// What drift last saw of each service's upstream (empty when drift does not run).
pub fn observed(s: &Shared) -> BTreeMap<String, Observed> {
    s.drift
        .get()
        .map(|d| {
            d.reachability()
                .into_iter()
                .map(|(k, r)| {
                    (
                        k,
                        Observed {
                            at_ms: r.at_ms,
                            reachable: r.reachable,
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Answers `view` for the query string `params` (blocking: call from a blocking task).
pub fn answer(
    store: &crate::store::Store,
    repo: &std::path::Path,
    sha: &str,
    observed: &BTreeMap<String, Observed>,
    params: &BTreeMap<String, String>,
    view: View,
    now: std::time::SystemTime,
) -> Result<Value, AnalyticsError> {
    let catalog = catalog::cached(repo, sha)?;
    let q = super::Query::resolve(params, &catalog, super::day_of(now))?;
    let json = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    Ok(match view {
        View::ScenarioUsage => json(serde_json::to_value(super::scenario_usage(
            store, &catalog, &q,
        )?)),
        View::PersonaCiHits => json(serde_json::to_value(super::persona_ci_hits(
            store, &catalog, &q,
        )?)),
        View::EndpointCoverage => json(serde_json::to_value(super::endpoint_coverage(
            store, &catalog, &q,
        )?)),
        View::Staleness => {
            let histories = staleness::cached(repo, sha)?;
            let now_secs = now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            json(serde_json::to_value(super::staleness(
                &catalog, &histories, observed, &q, now_secs,
            )))
        }
        View::DriftPercentage => json(serde_json::to_value(super::drift_percentage(
            store, &catalog, &q,
        )?)),
    })
}

/// The applied commit and the repository it is read from.
pub fn applied(s: &Shared) -> Result<(String, std::path::PathBuf), ApiError> {
    let sha = s
        .store
        .cursor()?
        .last_applied
        .map(|r| r.sha)
        .ok_or(AnalyticsError::NotApplied)?;
    let repo = s
        .repo_path()
        .map(std::path::Path::to_path_buf)
        .ok_or(AnalyticsError::NotApplied)?;
    Ok((sha, repo))
}

async fn view(
    State(s): State<Arc<Shared>>,
    Query(params): Query<BTreeMap<String, String>>,
    view: View,
) -> Result<Json<Value>, ApiError> {
    let (sha, repo) = applied(&s)?;
    let observed = observed(&s);
    let store = s.store.clone();
    let out = tokio::task::spawn_blocking(move || {
        answer(
            &store,
            &repo,
            &sha,
            &observed,
            &params,
            view,
            std::time::SystemTime::now(),
        )
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(out))
}
