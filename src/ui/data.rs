//! What the coverage and usage pages count, computed from the applied route table and the
//! newest part of the gateway's traffic record: the coverage grid (every operation of every
//! compiled spec, hit or not, with hits by status class) and the day heatmaps (scenario × day,
//! persona × day of CI requests). A small adapter for the dashboard; the analytics module
//! serves the same numbers over any time range.

use std::collections::{BTreeMap, HashMap};

use super::svg::{Heatmap, OpCell};
use crate::gateway::routes::RouteTable;
use crate::store::traffic::Exchange;

/// How many of the newest exchanges the pages count.
pub const TRAFFIC_WINDOW: usize = 100_000;
/// Days shown in the usage heatmaps (today included).
pub const DAYS: u64 = 14;
/// Most rows of a usage heatmap (the busiest keys).
pub const MAX_KEYS: usize = 40;

const DAY_MICROS: u64 = 86_400_000_000;

/// The status class index of an exchange: 2xx, 3xx, 4xx, 5xx, anything else.
fn class_of(status: u16) -> usize {
    match status {
        200..=299 => 0,
        300..=399 => 1,
        400..=499 => 2,
        500..=599 => 3,
        _ => 4,
    }
}

/// One service's operations: `federation/service` and its cells, in spec order.
pub type CoverageRow = (String, Vec<OpCell>);

/// Every operation of every service the route table compiled (gRPC services have no mock
/// operations and are left out), with the hits `traffic` recorded for it.
pub fn coverage(table: &RouteTable, traffic: &[Exchange]) -> Vec<CoverageRow> {
    let mut hits: HashMap<(&str, &str, &str), [u64; 5]> = HashMap::new();
    for e in traffic {
        let (Some(service), Some(op)) = (e.service.as_deref(), e.operation.as_deref()) else {
            continue;
        };
        hits.entry((e.federation.as_str(), service, op))
            .or_default()[class_of(e.status)] += 1;
    }
    let mut rows = Vec::new();
    for (fed_name, fed) in &table.federations {
        let mut services: Vec<_> = fed.services.iter().collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        for svc in services {
            let Ok(mock) = &svc.mock else { continue };
            let cells = (0..mock.operation_count())
                .filter_map(|i| mock.operation_name(i))
                .map(|label| {
                    let by_class = hits
                        .get(&(fed_name.as_str(), svc.name.as_str(), label))
                        .copied()
                        .unwrap_or_default();
                    OpCell {
                        label: label.to_string(),
                        hits: by_class.iter().sum(),
                        by_class,
                    }
                })
                .collect();
            rows.push((format!("{fed_name}/{}", svc.name), cells));
        }
    }
    rows
}

/// The UTC day labels of the last [`DAYS`] days ending on the day of `now_micros`, and the
/// day number of the first.
fn days(now_micros: u64) -> (u64, Vec<String>) {
    let today = now_micros / DAY_MICROS;
    let first = today.saturating_sub(DAYS - 1);
    let labels = (first..=today)
        .map(|d| {
            let t = crate::util::time::unix_rfc3339(i64::try_from(d * 86_400).unwrap_or(0));
            t.chars().take(10).collect()
        })
        .collect();
    (first, labels)
}

/// A key × day heatmap of the exchanges `key` picks, busiest keys first.
fn per_day(
    traffic: &[Exchange],
    now_micros: u64,
    key: impl Fn(&Exchange) -> Option<&str>,
) -> Heatmap {
    let (first, columns) = days(now_micros);
    let mut rows: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in traffic {
        let Some(k) = key(e) else { continue };
        let day = e.at_micros / DAY_MICROS;
        if day < first || day >= first + DAYS {
            continue;
        }
        rows.entry(k).or_insert_with(|| vec![0; columns.len()])
            [usize::try_from(day - first).unwrap_or(0)] += 1;
    }
    let mut rows: Vec<(String, Vec<u64>)> =
        rows.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    rows.sort_by(|a, b| {
        b.1.iter()
            .sum::<u64>()
            .cmp(&a.1.iter().sum::<u64>())
            .then(a.0.cmp(&b.0))
    });
    rows.truncate(MAX_KEYS);
    Heatmap { columns, rows }
}

/// Scenario × day: the requests each scenario tagged.
pub fn scenario_usage(traffic: &[Exchange], now_micros: u64) -> Heatmap {
    per_day(traffic, now_micros, |e| e.scenario.as_deref())
}

/// Persona × day of the requests that said they came from CI.
pub fn persona_ci_hits(traffic: &[Exchange], now_micros: u64) -> Heatmap {
    per_day(traffic, now_micros, |e| {
        if e.ci { e.persona.as_deref() } else { None }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(at_micros: u64, scenario: Option<&str>, persona: Option<&str>, ci: bool) -> Exchange {
        Exchange {
            at: String::new(),
            at_micros,
            federation: "f".into(),
            service: Some("s".into()),
            operation: Some("op".into()),
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            latency_ms: 1.0,
            source: "mock".into(),
            persona: persona.map(str::to_string),
            scenario: scenario.map(str::to_string),
            ci,
            grpc_status: None,
        }
    }

    #[test]
    fn usage_counts_per_day_and_skips_old_days() {
        let now = 20_000 * DAY_MICROS + 5;
        let traffic = vec![
            ex(now, Some("checkout"), Some("p"), true),
            ex(now - DAY_MICROS, Some("checkout"), Some("p"), false),
            ex(now - DAY_MICROS, Some("login"), None, false),
            ex(now - 20 * DAY_MICROS, Some("old"), Some("p"), true),
        ];
        let s = scenario_usage(&traffic, now);
        assert_eq!(s.columns.len(), DAYS as usize);
        assert_eq!(s.columns.last().map(String::as_str), Some("2024-10-04"));
        assert_eq!(s.rows[0].0, "checkout");
        assert_eq!(s.rows[0].1[12..], [1, 1]);
        assert_eq!(s.rows.len(), 2);
        let p = persona_ci_hits(&traffic, now);
        assert_eq!(
            p.rows,
            vec![("p".to_string(), {
                let mut v = vec![0; DAYS as usize];
                v[13] = 1;
                v
            })]
        );
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            [200, 304, 404, 503, 0, 101].map(class_of),
            [0, 1, 2, 3, 4, 4]
        );
    }
}
