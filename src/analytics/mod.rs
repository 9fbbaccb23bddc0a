//! Coverage analytics: five views computed from the coverage rollup (`store::analytics`, kept
//! with the traffic record), the applied commit's specs (`catalog`), Git history
//! (`staleness`) and the drift incidents, served by `api` and exported as metrics by `export`.
//!
//! Every view takes a time range (`from`, `to`: RFC 3339 dates or UTC times; a time counts
//! for its whole UTC day, `to` included; default the last 7 days, today included) and the
//! filters `federation` (a federation of the applied commit), `service` (a member of one) and
//! `environment` (a federation belongs to an environment where the configuration says so;
//! nothing in the configuration assigns one today, so each federation is its own environment,
//! named like it). A filter naming nothing that exists, or an unknown parameter, is an error.
//! Staleness and drift percentage describe the present; they take the range for uniformity and
//! apply only the filters.

pub mod api;
pub mod catalog;
pub mod export;
pub mod staleness;

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::store::analytics::{Rollup, RollupRef};
use crate::store::{Store, StoreError};
use catalog::{Catalog, CatalogError};
use staleness::{Histories, HistoryError, Since};

/// Days in the default range (today included).
pub const DEFAULT_DAYS: u32 = 7;
/// Longest range, in days.
pub const MAX_DAYS: u32 = 366;
/// The parameters every view takes.
pub const PARAMETERS: [&str; 5] = ["from", "to", "federation", "service", "environment"];

/// Why a view cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(
        "unknown parameter `{0}`; the analytics take from, to, federation, service and environment"
    )]
    UnknownParameter(String),
    #[error(
        "{name}=`{value}` is not an RFC 3339 date or UTC time (e.g. 2026-12-01 or 2026-12-01T10:00:00Z)"
    )]
    BadTime { name: &'static str, value: String },
    #[error("from ({from}) is after to ({to})")]
    Reversed { from: String, to: String },
    #[error("the range spans {days} days; at most {MAX_DAYS}")]
    TooLong { days: u64 },
    #[error("no federation `{name}` in the applied commit; known: {known}")]
    UnknownFederation { name: String, known: String },
    #[error("no service `{name}` in any federation of the applied commit; known: {known}")]
    UnknownService { name: String, known: String },
    #[error(
        "no environment `{name}`: each federation is its own environment (no federation is \
         assigned one in the configuration); known: {known}"
    )]
    UnknownEnvironment { name: String, known: String },
    #[error("no commit is applied yet")]
    NotApplied,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AnalyticsError {
    /// Whether the caller asked for something wrong (rather than the daemon failing).
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            AnalyticsError::UnknownParameter(_)
                | AnalyticsError::BadTime { .. }
                | AnalyticsError::Reversed { .. }
                | AnalyticsError::TooLong { .. }
                | AnalyticsError::UnknownFederation { .. }
                | AnalyticsError::UnknownService { .. }
                | AnalyticsError::UnknownEnvironment { .. }
        )
    }
}

/// A resolved request: a range of UTC days and the filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Days since 1970-01-01, both included.
    pub from_day: u32,
    pub to_day: u32,
    pub federation: Option<String>,
    pub service: Option<String>,
    pub environment: Option<String>,
}

/// `YYYY-MM-DD` of a day number.
pub fn day_name(day: u32) -> String {
    let t = UNIX_EPOCH + std::time::Duration::from_secs(u64::from(day) * 86_400);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// The UTC day of `t`.
pub fn day_of(t: SystemTime) -> u32 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    u32::try_from(secs / 86_400).unwrap_or(u32::MAX)
}

fn parse_day(name: &'static str, value: &str) -> Result<u32, AnalyticsError> {
    let bad = || AnalyticsError::BadTime {
        name,
        value: value.chars().take(100).collect(),
    };
    let t = if value.len() == 10 {
        crate::util::time::parse(&format!("{value}T00:00:00"))
    } else if value.len() > 10 && value.as_bytes().get(10) == Some(&b'T') {
        crate::util::time::parse(value)
    } else {
        None
    };
    t.map(day_of).ok_or_else(bad)
}

fn known(list: impl IntoIterator<Item = String>) -> String {
    let v: Vec<String> = list.into_iter().collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

impl Query {
    /// Checks `params` (the query string) against `catalog`; `today` is the UTC day now.
    pub fn resolve(
        params: &BTreeMap<String, String>,
        catalog: &Catalog,
        today: u32,
    ) -> Result<Query, AnalyticsError> {
        if let Some(k) = params.keys().find(|k| !PARAMETERS.contains(&k.as_str())) {
            return Err(AnalyticsError::UnknownParameter(
                k.chars().take(100).collect(),
            ));
        }
        let get = |k: &str| params.get(k).filter(|v| !v.is_empty());
        let to_day = match get("to") {
            Some(v) => parse_day("to", v)?,
            None => today,
        };
        let from_day = match get("from") {
            Some(v) => parse_day("from", v)?,
            None => to_day.saturating_sub(DEFAULT_DAYS - 1),
        };
        if from_day > to_day {
            return Err(AnalyticsError::Reversed {
                from: day_name(from_day),
                to: day_name(to_day),
            });
        }
        let days = u64::from(to_day - from_day) + 1;
        if days > u64::from(MAX_DAYS) {
            return Err(AnalyticsError::TooLong { days });
        }
        let federation = get("federation").cloned();
        if let Some(f) = &federation
            && !catalog.federations.contains_key(f)
        {
            return Err(AnalyticsError::UnknownFederation {
                name: f.chars().take(100).collect(),
                known: known(catalog.federations.keys().cloned()),
            });
        }
        let service = get("service").cloned();
        if let Some(s) = &service
            && !catalog.member_names().contains(s)
        {
            return Err(AnalyticsError::UnknownService {
                name: s.chars().take(100).collect(),
                known: known(catalog.member_names()),
            });
        }
        let environment = get("environment").cloned();
        if let Some(e) = &environment
            && !catalog.environments().contains(e)
        {
            return Err(AnalyticsError::UnknownEnvironment {
                name: e.chars().take(100).collect(),
                known: known(catalog.environments()),
            });
        }
        Ok(Query {
            from_day,
            to_day,
            federation,
            service,
            environment,
        })
    }

    /// Whether the filters keep federation `fed` (environment by the catalog).
    fn keeps_federation(&self, catalog: &Catalog, fed: &str) -> bool {
        if self.federation.as_deref().is_some_and(|f| f != fed) {
            return false;
        }
        match &self.environment {
            None => true,
            Some(e) => catalog
                .federations
                .get(fed)
                .is_some_and(|f| f.environment == *e),
        }
    }

    /// Whether the filters keep the exchanges of member `svc` of federation `fed`.
    fn keeps(&self, catalog: &Catalog, fed: &str, svc: &str) -> bool {
        self.keeps_federation(catalog, fed) && self.service.as_deref().is_none_or(|s| s == svc)
    }

    fn days(&self) -> Vec<String> {
        (self.from_day..=self.to_day).map(day_name).collect()
    }
}

/// A heatmap: one row per key, one count per day (the dashboard renders this shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heatmap {
    pub from: String,
    pub to: String,
    pub days: Vec<String>,
    pub rows: Vec<HeatRow>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeatRow {
    pub key: String,
    pub counts: Vec<u64>,
    pub total: u64,
}

/// A heatmap of `rollup` over the range: the counters the filters and `keep` keep, by key.
fn heatmap(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
    rollup: Rollup,
    keep: impl Fn(&RollupRef<'_>) -> bool,
) -> Result<Heatmap, AnalyticsError> {
    let width = (q.to_day - q.from_day) as usize + 1;
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    store.visit_rollup(rollup, q.from_day, q.to_day, |r| {
        if !keep(&r) || !q.keeps(catalog, r.federation, r.service) {
            return;
        }
        let i = r.day.saturating_sub(q.from_day) as usize;
        if i >= width {
            return;
        }
        match by_key.get_mut(r.key) {
            Some(counts) => counts[i] += r.count,
            None => {
                let mut counts = vec![0; width];
                counts[i] = r.count;
                by_key.insert(r.key.to_string(), counts);
            }
        }
    })?;
    let mut rows: Vec<HeatRow> = by_key
        .into_iter()
        .map(|(key, counts)| HeatRow {
            total: counts.iter().sum(),
            key,
            counts,
        })
        .collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Heatmap {
        from: day_name(q.from_day),
        to: day_name(q.to_day),
        days: q.days(),
        rows,
    })
}

/// Scenario usage: requests tagged with each scenario (`X-Mockops-Scenario`), per day.
pub fn scenario_usage(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
) -> Result<Heatmap, AnalyticsError> {
    heatmap(store, catalog, q, Rollup::Scenarios, |_| true)
}

/// Persona CI hits: requests from CI (`X-Mockops-CI`) tagged with each persona, per day.
pub fn persona_ci_hits(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
) -> Result<Heatmap, AnalyticsError> {
    heatmap(store, catalog, q, Rollup::Personas, |r| r.detail == 1)
}

/// Requests by status class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Classes {
    #[serde(rename = "2xx")]
    pub c2xx: u64,
    #[serde(rename = "3xx")]
    pub c3xx: u64,
    #[serde(rename = "4xx")]
    pub c4xx: u64,
    #[serde(rename = "5xx")]
    pub c5xx: u64,
    /// 1xx, and exchanges without a response (a dropped connection).
    pub other: u64,
}

impl Classes {
    /// Requests of every class.
    pub fn total(&self) -> u64 {
        self.c2xx + self.c3xx + self.c4xx + self.c5xx + self.other
    }

    fn add(&mut self, class: u8, n: u64) {
        match class {
            2 => self.c2xx += n,
            3 => self.c3xx += n,
            4 => self.c4xx += n,
            5 => self.c5xx += n,
            _ => self.other += n,
        }
    }
}

/// One operation of a spec and the requests it received.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointCoverage {
    pub operation: String,
    pub method: String,
    pub path: String,
    pub requests: u64,
    pub by_class: Classes,
}

/// One member of a federation: how much of its spec traffic touched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceCoverage {
    pub federation: String,
    pub environment: String,
    pub service: String,
    pub reality_level: String,
    pub spec: Option<String>,
    /// Operations the spec declares (the denominator).
    pub operations: usize,
    /// Operations with at least one request.
    pub hit: usize,
    /// `hit / operations`, none when the spec declares no operation.
    pub ratio: Option<f64>,
    /// Requests to the member that matched no operation of the spec.
    pub unmatched_requests: u64,
    /// Why the spec's operations could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub endpoints: Vec<EndpointCoverage>,
}

/// Endpoint coverage: every operation of every spec of the applied commit, hit or not.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Coverage {
    pub from: String,
    pub to: String,
    pub operations: usize,
    pub hit: usize,
    pub ratio: Option<f64>,
    pub services: Vec<ServiceCoverage>,
}

fn ratio(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}

/// Endpoint coverage over the range.
pub fn endpoint_coverage(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
) -> Result<Coverage, AnalyticsError> {
    // Every operation of every member the filters keep gets a slot; requests of a kept
    // member that match none of them count as unmatched.
    let mut members: Vec<(&catalog::Federation, &catalog::Member)> = Vec::new();
    let mut member_slot: HashMap<(&str, &str), usize> = HashMap::new();
    let mut op_slot: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut slots = 0usize;
    for fed in catalog.federations.values() {
        for m in &fed.members {
            if !q.keeps(catalog, &fed.name, &m.name) {
                continue;
            }
            member_slot.insert((&fed.name, &m.name), members.len());
            members.push((fed, m));
            for op in &m.operations {
                op_slot.insert((&fed.name, &m.name, &op.name), slots);
                slots += 1;
            }
        }
    }
    let mut classes = vec![Classes::default(); slots];
    let mut unmatched = vec![0u64; members.len()];
    store.visit_rollup(Rollup::Operations, q.from_day, q.to_day, |r| {
        if let Some(&i) = op_slot.get(&(r.federation, r.service, r.key)) {
            classes[i].add(r.detail, r.count);
        } else if let Some(&i) = member_slot.get(&(r.federation, r.service)) {
            unmatched[i] += r.count;
        }
    })?;
    let mut services = Vec::new();
    let mut slot = 0usize;
    for (i, (fed, m)) in members.iter().enumerate() {
        let mut endpoints = Vec::new();
        for op in &m.operations {
            let by_class = std::mem::take(&mut classes[slot]);
            slot += 1;
            endpoints.push(EndpointCoverage {
                operation: op.name.clone(),
                method: op.method.clone(),
                path: op.path.clone(),
                requests: by_class.total(),
                by_class,
            });
        }
        let hit = endpoints.iter().filter(|e| e.requests > 0).count();
        services.push(ServiceCoverage {
            federation: fed.name.clone(),
            environment: fed.environment.clone(),
            service: m.name.clone(),
            reality_level: m.reality_level.clone(),
            spec: m.spec.clone(),
            operations: endpoints.len(),
            hit,
            ratio: ratio(hit, endpoints.len()),
            unmatched_requests: unmatched[i],
            error: m.error.clone(),
            endpoints,
        });
    }
    let operations = services.iter().map(|s| s.operations).sum();
    let hit = services.iter().map(|s| s.hit).sum();
    Ok(Coverage {
        from: day_name(q.from_day),
        to: day_name(q.to_day),
        operations,
        hit,
        ratio: ratio(hit, operations),
        services,
    })
}

/// What drift last saw of a service's upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Unix milliseconds.
    pub at_ms: u64,
    pub reachable: bool,
}

/// One member's staleness.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberStaleness {
    pub federation: String,
    pub environment: String,
    pub service: String,
    pub reality_level: String,
    pub reality_level_since: Since,
    pub reality_level_age_seconds: i64,
    pub spec: Option<String>,
    pub spec_since: Since,
    pub spec_age_seconds: i64,
    /// The Git walk stopped before the run of either began.
    pub truncated: bool,
    /// When drift last observed the service's upstream (gateway traffic, a probe or the
    /// observation API), since the daemon started; none when it has not.
    pub upstream_last_observed: Option<String>,
    /// `reachable`, `unreachable` or `unobserved`.
    pub upstream_status: &'static str,
    pub upstream_unobserved_seconds: Option<i64>,
}

/// Reality-level staleness of every member the filters keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Staleness {
    pub sha: String,
    pub services: Vec<MemberStaleness>,
}

/// Reality-level staleness at `now_secs` (Unix seconds).
pub fn staleness(
    catalog: &Catalog,
    histories: &Histories,
    observed: &BTreeMap<String, Observed>,
    q: &Query,
    now_secs: i64,
) -> Staleness {
    let mut services = Vec::new();
    for fed in catalog.federations.values() {
        for m in &fed.members {
            if !q.keeps(catalog, &fed.name, &m.name) {
                continue;
            }
            let Some(h) = histories.get(&(fed.name.clone(), m.name.clone())) else {
                continue;
            };
            let seen = observed.get(&m.service);
            services.push(MemberStaleness {
                federation: fed.name.clone(),
                environment: fed.environment.clone(),
                service: m.name.clone(),
                reality_level: h.reality_level.clone(),
                reality_level_since: h.reality_level_since.clone(),
                reality_level_age_seconds: (now_secs - h.reality_level_since.unix).max(0),
                spec: h.spec.clone(),
                spec_since: h.spec_since.clone(),
                spec_age_seconds: (now_secs - h.spec_since.unix).max(0),
                truncated: h.truncated,
                upstream_last_observed: seen.map(|o| crate::drift::detect::rfc3339(o.at_ms)),
                upstream_status: match seen {
                    None => "unobserved",
                    Some(o) if o.reachable => "reachable",
                    Some(_) => "unreachable",
                },
                upstream_unobserved_seconds: seen
                    .map(|o| (now_secs - i64::try_from(o.at_ms / 1000).unwrap_or(0)).max(0)),
            });
        }
    }
    Staleness {
        sha: catalog.sha.clone(),
        services,
    }
}

/// One service's share of operations with open drift incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceDrift {
    /// The service (`services/`), as drift incidents name it.
    pub service: String,
    /// The federations it is a member of (the filters keep).
    pub federations: Vec<String>,
    pub operations: usize,
    /// Operations with at least one open incident.
    pub drifting: usize,
    /// `drifting / operations` in percent (two decimals); none without operations.
    pub percentage: Option<f64>,
    pub open_incidents: usize,
}

/// Drift percentage per service, and over all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftShare {
    pub operations: usize,
    pub drifting: usize,
    pub percentage: Option<f64>,
    pub services: Vec<ServiceDrift>,
}

fn percent(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 100.0)
}

/// Drift percentage of every service the filters keep.
pub fn drift_percentage(
    store: &Store,
    catalog: &Catalog,
    q: &Query,
) -> Result<DriftShare, AnalyticsError> {
    let open = store.incidents(&crate::store::drift::IncidentFilter {
        service: None,
        open_only: true,
    })?;
    // service -> (its operations, its federations).
    let mut by_service: BTreeMap<&str, (&[catalog::Operation], Vec<String>)> = BTreeMap::new();
    for fed in catalog.federations.values() {
        for m in &fed.members {
            if !q.keeps(catalog, &fed.name, &m.name) {
                continue;
            }
            let e = by_service
                .entry(m.service.as_str())
                .or_insert((&m.operations, Vec::new()));
            if e.0.is_empty() {
                e.0 = &m.operations;
            }
            e.1.push(fed.name.clone());
        }
    }
    let mut services = Vec::new();
    for (service, (ops, federations)) in by_service {
        let mine: Vec<_> = open
            .iter()
            .filter(|i| i.location.service == service)
            .collect();
        let drifting = ops
            .iter()
            .filter(|op| {
                mine.iter().any(|i| {
                    (i.location.method.eq_ignore_ascii_case(&op.method)
                        && i.location.path == op.path)
                        || i.location.operation_id.as_deref() == Some(op.name.as_str())
                })
            })
            .count();
        services.push(ServiceDrift {
            service: service.to_string(),
            federations,
            operations: ops.len(),
            drifting,
            percentage: percent(drifting, ops.len()),
            open_incidents: mine.len(),
        });
    }
    let operations = services.iter().map(|s| s.operations).sum();
    let drifting = services.iter().map(|s| s.drifting).sum();
    Ok(DriftShare {
        operations,
        drifting,
        percentage: percent(drifting, operations),
        services,
    })
}

/// Builds the catalog and the Git history of each applied commit as soon as it is applied, so
/// the first analytics request or dashboard page after a commit does not pay for them.
pub async fn warm(
    repo: std::path::PathBuf,
    mut applied: tokio::sync::watch::Receiver<Option<String>>,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let sha = applied.borrow_and_update().clone();
        if let Some(sha) = sha {
            let repo = repo.clone();
            let task = tokio::task::spawn_blocking(move || {
                catalog::cached(&repo, &sha).map_err(|e| e.to_string())?;
                staleness::cached(&repo, &sha).map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            });
            let warmed = tokio::select! {
                _ = cancel.cancelled() => return,
                w = task => w,
            };
            if let Ok(Err(e)) = warmed {
                tracing::debug!(error = %e, "analytics: cannot prepare the applied commit");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = applied.changed() => if changed.is_err() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let member = |name: &str| catalog::Member {
            name: name.into(),
            service: name.into(),
            reality_level: "mock_v3".into(),
            spec: Some(format!("specs/{name}.yaml")),
            operations: vec![catalog::Operation {
                name: "getPet".into(),
                method: "GET".into(),
                path: "/pets/{id}".into(),
            }],
            error: None,
        };
        let mut c = Catalog {
            sha: "abc".into(),
            ..Default::default()
        };
        c.federations.insert(
            "shop".into(),
            catalog::Federation {
                name: "shop".into(),
                environment: "shop".into(),
                members: vec![member("pets")],
            },
        );
        c
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ranges_default_to_seven_days_and_accept_dates_and_times() {
        let c = catalog();
        let today = day_of(crate::util::time::parse("2026-12-04T12:00:00Z").expect("t"));
        let q = Query::resolve(&params(&[]), &c, today).expect("default");
        assert_eq!(q.to_day - q.from_day, 6);
        assert_eq!(day_name(q.to_day), "2026-12-04");
        let q = Query::resolve(
            &params(&[("from", "2026-12-01"), ("to", "2026-12-02T23:59:59Z")]),
            &c,
            today,
        )
        .expect("explicit");
        assert_eq!(
            (day_name(q.from_day), day_name(q.to_day)),
            ("2026-12-01".into(), "2026-12-02".into())
        );
    }

    #[test]
    fn bad_parameters_are_refused_with_what_would_do() {
        let c = catalog();
        let bad = |p: &[(&str, &str)]| {
            let e = Query::resolve(&params(p), &c, 20_000).expect_err("refused");
            assert!(e.is_bad_request(), "{e}");
            e.to_string()
        };
        assert!(bad(&[("fed", "shop")]).contains("unknown parameter `fed`"));
        assert!(bad(&[("from", "yesterday")]).contains("not an RFC 3339"));
        assert!(bad(&[("from", "2026-12-01T10:00:00+02:00")]).contains("not an RFC 3339"));
        assert!(bad(&[("from", "2026-12-05"), ("to", "2026-12-01")]).contains("after"));
        assert!(bad(&[("from", "2020-01-01"), ("to", "2026-12-01")]).contains("at most 366"));
        assert!(bad(&[("federation", "nope")]).contains("known: shop"));
        assert!(bad(&[("service", "nope")]).contains("known: pets"));
        assert!(bad(&[("environment", "prod")]).contains("each federation is its own"));
        assert!(Query::resolve(&params(&[("environment", "shop")]), &c, 20_000).is_ok());
    }
}
