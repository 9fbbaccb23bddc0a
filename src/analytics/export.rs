//! The analytics as Prometheus metrics, refreshed when `/metrics` is scraped (at most every
//! [`REFRESH`]), so a fleet of daemons aggregates in Prometheus rather than in mockops.
//!
//! Labels are bounded: only names the applied commit declares (federation, service member,
//! `of` = `reality_level` or `spec`), never a path, operation, persona or scenario (those
//! come from requests). At most [`MAX_MEMBERS`] (federation, member) pairs get series; the
//! rest are counted in `mockops_analytics_members_not_exported`.
//!
//! - `mockops_analytics_operations{federation,service}`: operations the spec declares;
//! - `mockops_analytics_operations_hit{federation,service}`: of those, hit in the last
//!   [`super::DEFAULT_DAYS`] days (sum both across a fleet for a coverage ratio);
//! - `mockops_analytics_coverage_ratio{federation,service}`: the one daemon's ratio;
//! - `mockops_analytics_drift_ratio{service}`: share of operations with open incidents;
//! - `mockops_analytics_staleness_seconds{federation,service,of}`: age of the member's
//!   current reality level or spec content (from Git history).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::daemon::Shared;
use crate::metrics::Metrics;

/// Shortest time between two refreshes.
pub const REFRESH: Duration = Duration::from_secs(15);
/// Most (federation, member) pairs exported.
pub const MAX_MEMBERS: usize = 500;

static LAST: Mutex<Option<Instant>> = Mutex::new(None);

/// Refreshes the analytics gauges of `s.metrics` if the last refresh is older than
/// [`REFRESH`]; failures are logged and leave the gauges as they were.
pub async fn refresh(s: &std::sync::Arc<Shared>) {
    {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < REFRESH) {
            return;
        }
        *last = Some(Instant::now());
    }
    let Ok((sha, repo)) = super::api::applied(s) else {
        return;
    };
    let s = s.clone();
    let r = tokio::task::spawn_blocking(move || {
        update(&s.metrics, &s.store, &repo, &sha, SystemTime::now())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "analytics metrics: not refreshed"),
        Err(e) => tracing::warn!(error = %e, "analytics metrics: the refresh failed"),
    }
}

/// Sets the analytics gauges from the store and the applied commit `sha`.
pub fn update(
    metrics: &Metrics,
    store: &crate::store::Store,
    repo: &std::path::Path,
    sha: &str,
    now: SystemTime,
) -> Result<(), super::AnalyticsError> {
    let catalog = super::catalog::cached(repo, sha)?;
    let q = super::Query::resolve(&BTreeMap::new(), &catalog, super::day_of(now))?;
    let coverage = super::endpoint_coverage(store, &catalog, &q)?;
    let drift = super::drift_percentage(store, &catalog, &q)?;
    let histories = super::staleness::cached(repo, sha)?;
    let now_secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
    let stale = super::staleness(&catalog, &histories, &BTreeMap::new(), &q, now_secs);
    let pair = |f: &str, s: &str| vec![("federation", f.to_string()), ("service", s.to_string())];
    metrics.analytics_operations.clear();
    metrics.analytics_operations_hit.clear();
    metrics.analytics_coverage_ratio.clear();
    metrics.analytics_drift_ratio.clear();
    metrics.analytics_staleness_seconds.clear();
    let mut left_out = 0usize;
    for (i, c) in coverage.services.iter().enumerate() {
        if i >= MAX_MEMBERS {
            left_out += 1;
            continue;
        }
        let l = pair(&c.federation, &c.service);
        metrics
            .analytics_operations
            .get_or_create(&l)
            .set(i64::try_from(c.operations).unwrap_or(i64::MAX));
        metrics
            .analytics_operations_hit
            .get_or_create(&l)
            .set(i64::try_from(c.hit).unwrap_or(i64::MAX));
        if let Some(r) = c.ratio {
            metrics.analytics_coverage_ratio.get_or_create(&l).set(r);
        }
    }
    for d in drift.services.iter().take(MAX_MEMBERS) {
        if let Some(p) = d.percentage {
            metrics
                .analytics_drift_ratio
                .get_or_create(&vec![("service", d.service.clone())])
                .set(p / 100.0);
        }
    }
    for m in stale.services.iter().take(MAX_MEMBERS) {
        for (of, age) in [
            ("reality_level", m.reality_level_age_seconds),
            ("spec", m.spec_age_seconds),
        ] {
            let mut l = pair(&m.federation, &m.service);
            l.push(("of", of.to_string()));
            metrics
                .analytics_staleness_seconds
                .get_or_create(&l)
                .set(age);
        }
    }
    metrics
        .analytics_members_not_exported
        .set(i64::try_from(left_out).unwrap_or(i64::MAX));
    Ok(())
}
