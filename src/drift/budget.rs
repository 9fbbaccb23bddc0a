//! Drift budgets: how much drift a service (and each endpoint it names) tolerates within a
//! window before `drift.threshold_exceeded` is emitted, once per crossing; returning under
//! the budget emits `drift.recovered`.
//!
//! A service's budget is its `drift_budget`, else `drift.budget` of `mockops.yaml`. Counted:
//! open incidents last seen within `window_hours` and seen at least `drift.min_samples` times
//! (what a spec patch needs, so the pull request a crossing opens has something to fix). The seed-shaped fields keep their meaning:
//! `max_breaking_changes` bounds breaking incidents (missing required property, type
//! mismatch, undeclared status, missing required header, enum value not in spec),
//! `max_non_breaking_changes` the others (undocumented property, format violation,
//! undeclared content type); `max_open_incidents`, when set, bounds all of them instead.
//! `max_drifting_share` bounds the share of the spec's operations with open incidents. The
//! service budget (`endpoint: "*"`) counts every incident of the service; an endpoint listed
//! under `endpoints` is also held to its own budget, its fields falling back to the service's.
//!
//! The state of every budget is stored (`store::drift`), and each crossing's event carries
//! the dedup key `drift:<service>:<endpoint>:<crossing number>`: a crash between the event and
//! the state, or a restart, never emits a crossing twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::detect::{Book, Drift, rfc3339};
use super::incident::{Incident, IncidentKind};
use crate::metrics::Metrics;
use crate::model::DriftBudget;
use crate::store::drift::BudgetState;
use crate::store::{NewEvent, Origin};

/// Most incidents listed in an event's `drift_data`.
const MAX_LISTED: usize = 50;

/// True for the kinds the seed's `max_breaking_changes` counts.
pub fn is_breaking(kind: IncidentKind) -> bool {
    matches!(
        kind,
        IncidentKind::MissingRequiredProperty
            | IncidentKind::TypeMismatch
            | IncidentKind::UndeclaredStatus
            | IncidentKind::MissingRequiredHeader
            | IncidentKind::EnumValueNotInSpec
    )
}

/// One budget's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub service: String,
    /// `"GET /pets/{id}"` or `"*"`.
    pub endpoint: String,
    pub exceeded: bool,
    pub drift_count: u64,
    pub threshold: u64,
    pub incidents: Vec<Incident>,
}

/// The key of a budget's stored state.
pub fn key(service: &str, endpoint: &str) -> String {
    format!("{service}\0{endpoint}")
}

fn verdict(
    service: &str,
    endpoint: &str,
    incidents: Vec<Incident>,
    max_open: Option<u32>,
    max_breaking: u32,
    max_non_breaking: u32,
) -> Verdict {
    let total = incidents.len() as u64;
    let breaking = incidents.iter().filter(|i| is_breaking(i.kind)).count() as u64;
    let non_breaking = total - breaking;
    let (exceeded, drift_count, threshold) = match max_open {
        Some(m) => (total > u64::from(m), total, u64::from(m)),
        None if breaking > u64::from(max_breaking) => (true, breaking, u64::from(max_breaking)),
        None if non_breaking > u64::from(max_non_breaking) => {
            (true, non_breaking, u64::from(max_non_breaking))
        }
        None => (false, total, u64::from(max_breaking)),
    };
    Verdict {
        service: service.to_string(),
        endpoint: endpoint.to_string(),
        exceeded,
        drift_count,
        threshold,
        incidents,
    }
}

/// The verdicts of one service's budget over its open incidents at `now_ms`.
pub fn verdicts(
    service: &str,
    budget: &DriftBudget,
    operations: &[String],
    open: &[&Incident],
    now_ms: u64,
) -> Vec<Verdict> {
    if !budget.enabled {
        return Vec::new();
    }
    let window = u64::from(budget.window_hours).saturating_mul(3_600_000);
    let counted: Vec<Incident> = open
        .iter()
        .filter(|i| {
            i.location.service == service && now_ms.saturating_sub(i.last_seen_ms) <= window
        })
        .map(|i| (*i).clone())
        .collect();
    let endpoint_of = |i: &Incident| format!("{} {}", i.location.method, i.location.path);
    let mut out = Vec::new();
    let mut whole = verdict(
        service,
        "*",
        counted.clone(),
        budget.max_open_incidents,
        budget.max_breaking_changes,
        budget.max_non_breaking_changes,
    );
    if let Some(share) = budget.max_drifting_share
        && !whole.exceeded
        && !operations.is_empty()
    {
        let mut drifting: Vec<String> = counted.iter().map(endpoint_of).collect();
        drifting.sort();
        drifting.dedup();
        let allowed = (share.clamp(0.0, 1.0) * operations.len() as f64).floor() as u64;
        if drifting.len() as u64 > allowed {
            whole.exceeded = true;
            whole.drift_count = drifting.len() as u64;
            whole.threshold = allowed;
        }
    }
    out.push(whole);
    for (endpoint, eb) in &budget.endpoints {
        let mine: Vec<Incident> = counted
            .iter()
            .filter(|i| endpoint_of(i).eq_ignore_ascii_case(endpoint))
            .cloned()
            .collect();
        out.push(verdict(
            service,
            endpoint,
            mine,
            eb.max_open_incidents.or(budget.max_open_incidents),
            eb.max_breaking_changes
                .unwrap_or(budget.max_breaking_changes),
            eb.max_non_breaking_changes
                .unwrap_or(budget.max_non_breaking_changes),
        ));
    }
    out
}

fn summary(v: &Verdict) -> Value {
    let listed: Vec<Value> = v
        .incidents
        .iter()
        .take(MAX_LISTED)
        .map(|i| {
            json!({
                "id": i.id,
                "kind": i.kind,
                "location": i.location,
                "expected": i.expected,
                "observed": i.observed,
                "count": i.count,
            })
        })
        .collect();
    json!({
        "incidents": listed,
        "open_incidents": v.incidents.len(),
        "breaking": v.incidents.iter().filter(|i| is_breaking(i.kind)).count(),
    })
}

/// Evaluates every budget and emits the events of crossings (blocking pool).
pub(crate) async fn evaluate(drift: &Arc<Drift>, book: &Book, now_ms: u64) {
    let contracts = drift.contracts();
    // An incident counts once it has been seen as often as a patch needs (`min_samples`):
    // one stray response neither exceeds a budget nor could be fixed by the pull request the
    // crossing's pipeline opens.
    let confirmed = u64::from(contracts.settings.min_samples).max(super::patch::FLOOR_MIN_SAMPLES);
    let open: Vec<&Incident> = book
        .incidents
        .values()
        .filter(|i| i.is_open() && i.count >= confirmed)
        .collect();
    let mut all = Vec::new();
    let mut workspaces = BTreeMap::new();
    for (name, c) in &contracts.services {
        let Some(budget) = c.budget.as_ref().or(contracts.settings.budget.as_ref()) else {
            continue;
        };
        let operations: Vec<String> = c.operations.iter().map(|o| o.endpoint()).collect();
        all.extend(verdicts(name, budget, &operations, &open, now_ms));
        workspaces.insert(
            name.clone(),
            (c.workspace_id.clone(), c.workspace_name.clone()),
        );
    }
    if all.is_empty() {
        return;
    }
    let d = drift.clone();
    let emitted = tokio::task::spawn_blocking(move || apply(&d, all, &workspaces))
        .await
        .unwrap_or(false);
    if emitted {
        drift.events_stored();
    }
}

/// Compares verdicts with the stored states; appends the events of changes. True when an
/// event was stored.
fn apply(
    drift: &Drift,
    verdicts: Vec<Verdict>,
    workspaces: &BTreeMap<String, (Option<String>, Option<String>)>,
) -> bool {
    let states = match drift.store.budget_states() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "drift: cannot read budget states");
            return false;
        }
    };
    let mut emitted = false;
    let mut exceeded_services: BTreeMap<String, bool> = BTreeMap::new();
    for v in verdicts {
        *exceeded_services.entry(v.service.clone()).or_default() |= v.exceeded;
        let k = key(&v.service, &v.endpoint);
        let state = states.get(&k).cloned().unwrap_or_default();
        if v.exceeded == state.exceeded {
            continue;
        }
        let (event_type, crossings, dedup) = if v.exceeded {
            let n = state.crossings + 1;
            (
                "drift.threshold_exceeded",
                n,
                format!("drift:{}:{}:{n}", v.service, v.endpoint),
            )
        } else {
            (
                "drift.recovered",
                state.crossings,
                format!(
                    "drift:{}:{}:{}:recovered",
                    v.service, v.endpoint, state.crossings
                ),
            )
        };
        let (ws_id, ws_name) = workspaces.get(&v.service).cloned().unwrap_or_default();
        let mut ev = NewEvent::new(event_type, Origin(format!("drift:{}", v.service)))
            .with("service", v.service.clone())
            .with("endpoint", v.endpoint.clone())
            .with("drift_count", v.drift_count)
            .with("threshold", v.threshold)
            .workspace(ws_id, ws_name);
        if v.exceeded {
            ev = ev.with("drift_data", summary(&v));
        }
        ev.dedup_key = Some(dedup);
        if let Err(e) = drift.store.append_events(vec![ev]) {
            tracing::error!(error = %e, "drift: cannot store the budget event");
            continue;
        }
        emitted = true;
        let next = BudgetState {
            exceeded: v.exceeded,
            crossings,
            since: Some(rfc3339(super::detect::now_ms())),
            drift_count: v.drift_count,
            threshold: v.threshold,
        };
        if let Err(e) = drift.store.put_budget_state(&k, &next) {
            tracing::error!(error = %e, "drift: cannot store the budget state");
        }
        tracing::info!(service = %v.service, endpoint = %v.endpoint, event = event_type, drift_count = v.drift_count, threshold = v.threshold, "drift budget");
    }
    for (service, exceeded) in exceeded_services {
        drift
            .metrics()
            .drift_budget_exceeded
            .get_or_create(&Metrics::label("service", service))
            .set(i64::from(exceeded));
    }
    emitted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::{Direction, IncidentState, Location};

    fn incident(kind: IncidentKind, path: &str, pointer: &str, seen: u64) -> Incident {
        let location = Location {
            service: "pets".into(),
            method: "GET".into(),
            path: path.into(),
            operation_id: None,
            direction: Direction::Response,
            status: 200,
            content_type: None,
            pointer: pointer.into(),
            spec_file: "p.yaml".into(),
            spec_pointer: String::new(),
        };
        Incident {
            id: Incident::signature(kind, &location),
            kind,
            location,
            expected: String::new(),
            observed: String::new(),
            count: 1,
            first_seen: String::new(),
            last_seen: String::new(),
            last_seen_ms: seen,
            samples: Vec::new(),
            state: IncidentState::Open,
            resolved_at: None,
            spec_sha: None,
        }
    }

    fn budget(yaml: &str) -> DriftBudget {
        serde_saphyr::from_str(yaml).expect("budget")
    }

    #[test]
    fn seed_fields_split_breaking_and_non_breaking() {
        let hour = 3_600_000;
        let a = incident(IncidentKind::UndocumentedProperty, "/pets", "/a", 10 * hour);
        let b = incident(IncidentKind::FormatViolation, "/pets", "/b", 10 * hour);
        let c = incident(IncidentKind::TypeMismatch, "/pets/{id}", "/c", hour);
        let ops = vec!["GET /pets".to_string(), "GET /pets/{id}".to_string()];
        let b1 = budget("max_breaking_changes: 0\nmax_non_breaking_changes: 1\nwindow_hours: 24\n");
        let v = verdicts("pets", &b1, &ops, &[&a, &b], 10 * hour);
        assert!(v[0].exceeded);
        assert_eq!((v[0].drift_count, v[0].threshold), (2, 1));
        // The breaking one, outside the window, is not counted.
        let v = verdicts("pets", &b1, &ops, &[&a, &c], 30 * hour);
        assert!(!v[0].exceeded);
        let v = verdicts("pets", &b1, &ops, &[&c], 2 * hour);
        assert!(v[0].exceeded);
        assert_eq!((v[0].drift_count, v[0].threshold), (1, 0));
        // The most specific budget: the endpoint's own.
        let b2 =
            budget("max_open_incidents: 5\nendpoints:\n  GET /pets:\n    max_open_incidents: 1\n");
        let v = verdicts("pets", &b2, &ops, &[&a, &b, &c], 10 * hour);
        assert_eq!(v.len(), 2);
        assert!(!v[0].exceeded);
        assert_eq!(v[1].endpoint, "GET /pets");
        assert!(v[1].exceeded);
        // Share of drifting operations.
        let b3 = budget("max_open_incidents: 10\nmax_drifting_share: 0.5\n");
        let v = verdicts("pets", &b3, &ops, &[&a, &c], 2 * hour);
        assert!(v[0].exceeded);
        assert_eq!((v[0].drift_count, v[0].threshold), (2, 1));
        assert!(verdicts("pets", &budget("enabled: false\n"), &ops, &[&c], 2 * hour).is_empty());
    }
}
