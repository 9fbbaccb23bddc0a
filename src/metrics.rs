//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric the daemon exports. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    pub reconcile_duration: Histogram,
    pub commits: Family<Labels, Counter>,
    pub failures: Family<Labels, Counter>,
    pub events: Family<Labels, Counter>,
    pub last_applied: Gauge<f64, AtomicU64>,
    pub watcher_degraded: Gauge,
    pub executions: Family<Labels, Counter>,
    pub steps: Family<Labels, Counter>,
    pub step_duration: Histogram,
    /// Gateway exchanges by federation, service, source and status class (labels come from
    /// the configuration, never from the request: unknown routes count as `(none)`).
    pub gateway_requests: Family<Labels, Counter>,
    pub gateway_duration: Histogram,
    /// Exchanges the traffic record dropped because its writer was behind.
    pub traffic_dropped: Counter,
    /// Open drift incidents by service (from the configuration) and kind.
    pub drift_incidents_open: Family<Labels, Gauge>,
    /// 1 while a service's drift budget is exceeded.
    pub drift_budget_exceeded: Family<Labels, Gauge>,
    /// Drift observations the drift writer's queue accepted, by source (gateway, probe, api).
    pub drift_observations: Family<Labels, Counter>,
    /// Observations dropped because the drift writer was behind.
    pub drift_observations_dropped: Counter,
    /// Bodies not validated (over the cap, too deep, not JSON).
    pub drift_bodies_skipped: Counter,
    /// Coverage analytics (`analytics::export`): labels from the configuration only.
    pub analytics_operations: Family<Labels, Gauge>,
    pub analytics_operations_hit: Family<Labels, Gauge>,
    pub analytics_coverage_ratio: Family<Labels, Gauge<f64, AtomicU64>>,
    pub analytics_drift_ratio: Family<Labels, Gauge<f64, AtomicU64>>,
    pub analytics_staleness_seconds: Family<Labels, Gauge>,
    pub analytics_members_not_exported: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mockops");
        let reconcile_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time to load, validate, diff and apply one commit",
            reconcile_duration.clone(),
        );
        let commits = Family::<Labels, Counter>::default();
        registry.register(
            "commits_processed",
            "Commits processed, by outcome (applied, invalid, baseline)",
            commits.clone(),
        );
        let failures = Family::<Labels, Counter>::default();
        registry.register(
            "failures",
            "Failures by kind (fetch, reconcile, store, watch)",
            failures.clone(),
        );
        let events = Family::<Labels, Counter>::default();
        registry.register("events", "Events stored, by type", events.clone());
        let last_applied = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "last_applied_timestamp_seconds",
            "Unix time at which the last commit was applied",
            last_applied.clone(),
        );
        let watcher_degraded = Gauge::default();
        registry.register(
            "watcher_degraded",
            "1 when file watching failed and the daemon relies on polling alone",
            watcher_degraded.clone(),
        );
        let executions = Family::<Labels, Counter>::default();
        registry.register(
            "pipeline_executions",
            "Pipeline executions finished, by pipeline and status",
            executions.clone(),
        );
        let steps = Family::<Labels, Counter>::default();
        registry.register(
            "pipeline_steps",
            "Pipeline step attempts, by step type and status",
            steps.clone(),
        );
        let step_duration = Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0]);
        registry.register(
            "pipeline_step_duration_seconds",
            "Duration of step attempts",
            step_duration.clone(),
        );
        let gateway_requests = Family::<Labels, Counter>::default();
        registry.register(
            "gateway_requests",
            "Gateway exchanges, by federation, service, source and status class",
            gateway_requests.clone(),
        );
        let gateway_duration = Histogram::new([
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
        ]);
        registry.register(
            "gateway_request_duration_seconds",
            "Time from a gateway request to its response head",
            gateway_duration.clone(),
        );
        let traffic_dropped = Counter::default();
        registry.register(
            "traffic_record_dropped",
            "Exchanges the traffic record dropped because its writer was behind",
            traffic_dropped.clone(),
        );
        let drift_incidents_open = Family::<Labels, Gauge>::default();
        registry.register(
            "drift_incidents_open",
            "Open contract drift incidents, by service and kind",
            drift_incidents_open.clone(),
        );
        let drift_budget_exceeded = Family::<Labels, Gauge>::default();
        registry.register(
            "drift_budget_exceeded",
            "1 while the service's drift budget is exceeded",
            drift_budget_exceeded.clone(),
        );
        let drift_observations = Family::<Labels, Counter>::default();
        registry.register(
            "drift_observations",
            "Drift observations the drift writer's queue accepted, by source",
            drift_observations.clone(),
        );
        let drift_observations_dropped = Counter::default();
        registry.register(
            "drift_observations_dropped",
            "Observations dropped because the drift writer was behind",
            drift_observations_dropped.clone(),
        );
        let drift_bodies_skipped = Counter::default();
        registry.register(
            "drift_bodies_skipped",
            "Observed bodies not validated (over the size cap, too deep, not JSON)",
            drift_bodies_skipped.clone(),
        );
        let analytics_operations = Family::<Labels, Gauge>::default();
        registry.register(
            "analytics_operations",
            "Operations a federation member's spec declares",
            analytics_operations.clone(),
        );
        let analytics_operations_hit = Family::<Labels, Gauge>::default();
        registry.register(
            "analytics_operations_hit",
            "Operations of a member's spec the gateway served in the last 7 days",
            analytics_operations_hit.clone(),
        );
        let analytics_coverage_ratio = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "analytics_coverage_ratio",
            "Share of a member's spec operations hit in the last 7 days",
            analytics_coverage_ratio.clone(),
        );
        let analytics_drift_ratio = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "analytics_drift_ratio",
            "Share of a service's operations with open drift incidents",
            analytics_drift_ratio.clone(),
        );
        let analytics_staleness_seconds = Family::<Labels, Gauge>::default();
        registry.register(
            "analytics_staleness_seconds",
            "Age of a member's current reality level or spec content, from Git history",
            analytics_staleness_seconds.clone(),
        );
        let analytics_members_not_exported = Gauge::default();
        registry.register(
            "analytics_members_not_exported",
            "Federation members left out of the analytics metrics by the series cap",
            analytics_members_not_exported.clone(),
        );
        Self {
            registry,
            analytics_operations,
            analytics_operations_hit,
            analytics_coverage_ratio,
            analytics_drift_ratio,
            analytics_staleness_seconds,
            analytics_members_not_exported,
            drift_incidents_open,
            drift_budget_exceeded,
            drift_observations,
            drift_observations_dropped,
            drift_bodies_skipped,
            gateway_requests,
            gateway_duration,
            traffic_dropped,
            reconcile_duration,
            commits,
            failures,
            events,
            last_applied,
            watcher_degraded,
            executions,
            steps,
            step_duration,
        }
    }

    pub fn label(k: &'static str, v: impl Into<String>) -> Labels {
        vec![(k, v.into())]
    }

    pub fn failure(&self, kind: &str) {
        self.failures
            .get_or_create(&Self::label("kind", kind))
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
