//! The coverage rollup: counters per UTC day kept beside the traffic record, updated in the
//! same write transaction as [`Store::append_traffic`] and pruned with it, so the analytics
//! views (`crate::analytics`) read a few rows per day and never the raw exchanges.
//!
//! Three tables, each keyed by (day, a key of parts joined by `\0`), valued by a count:
//!
//! - `analytics_operations`: federation, service, operation, status class (`0` for no
//!   response, `1` to `5` for 1xx to 5xx);
//! - `analytics_personas`: federation, service, persona, `ci` (`1` when the exchange said it
//!   came from CI, else `0`);
//! - `analytics_scenarios`: federation, service, scenario.
//!
//! An exchange without a service or operation is counted under an empty part. Persona and
//! scenario values come from request headers (at most 200 characters each), so a client could
//! make up a new key with every request: each table takes at most [`MAX_KEYS_PER_DAY`]
//! distinct keys per day, and an exchange that would add one more is counted under the key
//! with its last free part replaced by [`OTHER`].
//!
//! Retention follows the traffic record at day granularity: a day's counters stay as long as
//! the record keeps an exchange of that day or a later one (a day the record has partly pruned
//! keeps its whole count), and go when the record is empty.
//!
//! A store written before the rollup existed is rolled up from its record once, in the first
//! `append_traffic` transaction (the marker is `rolled_up` in `analytics_meta`).

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::traffic::Exchange;
use super::{Store, StoreError};

/// Microseconds per day.
const DAY_MICROS: u64 = 86_400_000_000;

const OPERATIONS: TableDefinition<(u32, &str), u64> = TableDefinition::new("analytics_operations");
const PERSONAS: TableDefinition<(u32, &str), u64> = TableDefinition::new("analytics_personas");
const SCENARIOS: TableDefinition<(u32, &str), u64> = TableDefinition::new("analytics_scenarios");
/// `rolled_up` -> 1 once the record was rolled up; `keys\0<table>\0<day>` -> distinct keys.
const META: TableDefinition<&str, u64> = TableDefinition::new("analytics_meta");

/// Most distinct keys one rollup table takes per day.
pub const MAX_KEYS_PER_DAY: u64 = 10_000;
/// What a persona, scenario or operation becomes past [`MAX_KEYS_PER_DAY`].
pub const OTHER: &str = "(other)";

/// Which rollup to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollup {
    Operations,
    Personas,
    Scenarios,
}

impl Rollup {
    fn table(self) -> TableDefinition<'static, (u32, &'static str), u64> {
        match self {
            Rollup::Operations => OPERATIONS,
            Rollup::Personas => PERSONAS,
            Rollup::Scenarios => SCENARIOS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Rollup::Operations => "operations",
            Rollup::Personas => "personas",
            Rollup::Scenarios => "scenarios",
        }
    }
}

/// One counter of a rollup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    /// Days since 1970-01-01 (UTC).
    pub day: u32,
    pub federation: String,
    /// Empty when no route matched.
    pub service: String,
    /// The operation, persona or scenario (empty operation: none matched).
    pub key: String,
    /// Operations: the status class (0 to 5). Personas: 1 for CI. Scenarios: 0.
    pub detail: u8,
    pub count: u64,
}

/// The UTC day of Unix microseconds.
pub fn day_of_micros(micros: u64) -> u32 {
    u32::try_from(micros / DAY_MICROS).unwrap_or(u32::MAX)
}

/// The status class an exchange is counted under: 0 for no response, else the hundreds digit
/// (1 to 5). A gRPC call counts as 2xx when its status is OK, 4xx for a status the caller
/// causes (invalid argument, not found, already exists, permission denied, failed
/// precondition, out of range, unauthenticated), else 5xx.
pub fn status_class(e: &Exchange) -> u8 {
    if let Some(code) = e.grpc_status {
        return match code {
            0 => 2,
            3 | 5 | 6 | 7 | 9 | 11 | 16 => 4,
            _ => 5,
        };
    }
    match e.status {
        100..=599 => (e.status / 100) as u8,
        _ => 0,
    }
}

fn join(parts: &[&str]) -> String {
    parts.join("\0")
}

/// Adds `counts` (by (day, key)) into `table`, folding new keys past the day's budget into
/// their `OTHER` form.
fn add(
    tx: &WriteTransaction,
    rollup: Rollup,
    counts: BTreeMap<(u32, Vec<String>), u64>,
) -> Result<(), StoreError> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut table = tx.open_table(rollup.table())?;
    let mut meta = tx.open_table(META)?;
    for ((day, mut parts), n) in counts {
        let mut key = join(&parts.iter().map(String::as_str).collect::<Vec<_>>());
        let mut current = table.get((day, key.as_str()))?.map(|v| v.value());
        if current.is_none() {
            let budget_key = format!("keys\0{}\0{day}", rollup.name());
            let used = meta.get(budget_key.as_str())?.map_or(0, |v| v.value());
            // The last slot is kept for `OTHER`.
            if used + 1 >= MAX_KEYS_PER_DAY && parts.get(2).is_some_and(|p| p != OTHER) {
                // The free-text part (operation, persona or scenario) folds.
                if let Some(p) = parts.get_mut(2) {
                    *p = OTHER.to_string();
                }
                key = join(&parts.iter().map(String::as_str).collect::<Vec<_>>());
                current = table.get((day, key.as_str()))?.map(|v| v.value());
            }
            if current.is_none() {
                meta.insert(budget_key.as_str(), used + 1)?;
            }
        }
        table.insert((day, key.as_str()), current.unwrap_or(0) + n)?;
    }
    Ok(())
}

/// Counts `batch` into the rollup tables (called inside `append_traffic`'s transaction).
pub(super) fn roll_up<'a>(
    tx: &WriteTransaction,
    batch: impl IntoIterator<Item = &'a Exchange>,
) -> Result<(), StoreError> {
    let mut ops: BTreeMap<(u32, Vec<String>), u64> = BTreeMap::new();
    let mut personas: BTreeMap<(u32, Vec<String>), u64> = BTreeMap::new();
    let mut scenarios: BTreeMap<(u32, Vec<String>), u64> = BTreeMap::new();
    for e in batch {
        let day = day_of_micros(e.at_micros);
        let fed = e.federation.clone();
        let svc = e.service.clone().unwrap_or_default();
        let op = e.operation.clone().unwrap_or_default();
        *ops.entry((
            day,
            vec![fed.clone(), svc.clone(), op, status_class(e).to_string()],
        ))
        .or_default() += 1;
        if let Some(p) = &e.persona {
            let ci = if e.ci { "1" } else { "0" };
            *personas
                .entry((
                    day,
                    vec![fed.clone(), svc.clone(), p.clone(), ci.to_string()],
                ))
                .or_default() += 1;
        }
        if let Some(s) = &e.scenario {
            *scenarios
                .entry((day, vec![fed, svc, s.clone()]))
                .or_default() += 1;
        }
    }
    add(tx, Rollup::Operations, ops)?;
    add(tx, Rollup::Personas, personas)?;
    add(tx, Rollup::Scenarios, scenarios)?;
    Ok(())
}

/// Whether the record was rolled up already; marks it so.
pub(super) fn take_backfill(tx: &WriteTransaction) -> Result<bool, StoreError> {
    let mut meta = tx.open_table(META)?;
    let done = meta.get("rolled_up")?.is_some();
    if !done {
        meta.insert("rolled_up", 1)?;
    }
    Ok(!done)
}

/// Drops every counter of a day before `floor` (the day of the oldest exchange the record
/// keeps; `u32::MAX` when it keeps none).
pub(super) fn prune_before(tx: &WriteTransaction, floor: u32) -> Result<(), StoreError> {
    for rollup in [Rollup::Operations, Rollup::Personas, Rollup::Scenarios] {
        let mut table = tx.open_table(rollup.table())?;
        table.retain_in((0u32, "")..(floor, ""), |_, _| false)?;
    }
    let mut meta = tx.open_table(META)?;
    meta.retain(|k, _| {
        k.strip_prefix("keys\0")
            .and_then(|rest| rest.rsplit_once('\0'))
            .and_then(|(_, day)| day.parse::<u32>().ok())
            .is_none_or(|day| day >= floor)
    })?;
    Ok(())
}

/// One counter of a rollup, borrowed from the store while it is visited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupRef<'a> {
    pub day: u32,
    pub federation: &'a str,
    pub service: &'a str,
    pub key: &'a str,
    pub detail: u8,
    pub count: u64,
}

impl Store {
    /// Calls `f` with each counter of `rollup` for the days `from..=to` (UTC day numbers), in
    /// key order, without copying it.
    pub fn visit_rollup(
        &self,
        rollup: Rollup,
        from: u32,
        to: u32,
        mut f: impl FnMut(RollupRef<'_>),
    ) -> Result<(), StoreError> {
        self.read(|tx| {
            let table = match tx.open_table(rollup.table()) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            if from > to {
                return Ok(());
            }
            let rows = match to.checked_add(1) {
                Some(end) => table.range((from, "")..(end, ""))?,
                None => table.range((from, "")..)?,
            };
            for row in rows {
                let (k, v) = row?;
                let (day, key) = k.value();
                let mut parts = key.split('\0');
                let federation = parts.next().unwrap_or_default();
                let service = parts.next().unwrap_or_default();
                let name = parts.next().unwrap_or_default();
                let detail = parts.next().and_then(|d| d.parse().ok()).unwrap_or(0);
                f(RollupRef {
                    day,
                    federation,
                    service,
                    key: name,
                    detail,
                    count: v.value(),
                });
            }
            Ok(())
        })
    }

    /// The counters of `rollup` for the days `from..=to` (UTC day numbers), in key order.
    pub fn rollup(&self, rollup: Rollup, from: u32, to: u32) -> Result<Vec<RollupRow>, StoreError> {
        let mut out = Vec::new();
        self.visit_rollup(rollup, from, to, |r| {
            out.push(RollupRow {
                day: r.day,
                federation: r.federation.to_string(),
                service: r.service.to_string(),
                key: r.key.to_string(),
                detail: r.detail,
                count: r.count,
            })
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::retention::Keep;
    use std::time::{Duration, UNIX_EPOCH};

    fn exchange(micros: u64, op: &str, status: u16) -> Exchange {
        Exchange {
            at: String::new(),
            at_micros: micros,
            federation: "shop".into(),
            service: Some("pets".into()),
            operation: Some(op.into()),
            method: "GET".into(),
            path: "/".into(),
            status,
            latency_ms: 1.0,
            source: "mock".into(),
            persona: None,
            scenario: None,
            ci: false,
            grpc_status: None,
        }
    }

    const DAY: u64 = DAY_MICROS;

    #[test]
    fn counts_by_day_key_and_class_and_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let (store, _) = Store::open(dir.path()).expect("store");
            let mut tagged = exchange(10 * DAY + 5, "getPet", 200);
            tagged.persona = Some("gold".into());
            tagged.scenario = Some("checkout".into());
            tagged.ci = true;
            store
                .append_traffic(&[
                    exchange(10 * DAY + 1, "getPet", 200),
                    exchange(10 * DAY + 2, "getPet", 404),
                    tagged,
                ])
                .expect("append");
            store
                .append_traffic(&[exchange(11 * DAY, "getPet", 503)])
                .expect("append");
        }
        let (store, _) = Store::open(dir.path()).expect("reopen");
        let ops = store.rollup(Rollup::Operations, 10, 11).expect("rows");
        let got: Vec<(u32, &str, u8, u64)> = ops
            .iter()
            .map(|r| (r.day, r.key.as_str(), r.detail, r.count))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, "getPet", 2, 2),
                (10, "getPet", 4, 1),
                (11, "getPet", 5, 1)
            ]
        );
        assert_eq!(
            store
                .rollup(Rollup::Operations, 11, 11)
                .expect("rows")
                .len(),
            1
        );
        assert!(
            store
                .rollup(Rollup::Operations, 12, 11)
                .expect("rows")
                .is_empty()
        );
        let personas = store.rollup(Rollup::Personas, 0, 100).expect("rows");
        assert_eq!(personas.len(), 1);
        assert_eq!((personas[0].key.as_str(), personas[0].detail), ("gold", 1));
        let scenarios = store.rollup(Rollup::Scenarios, 0, 100).expect("rows");
        assert_eq!(scenarios[0].key, "checkout");
        assert_eq!(scenarios[0].service, "pets");
    }

    #[test]
    fn new_keys_past_the_daily_budget_fold_into_other() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = Store::open(dir.path()).expect("store");
        let batch: Vec<Exchange> = (0..MAX_KEYS_PER_DAY + 5)
            .map(|i| {
                let mut e = exchange(DAY + i, "op", 200);
                e.scenario = Some(format!("s{i}"));
                e
            })
            .collect();
        store.append_traffic(&batch).expect("append");
        let rows = store.rollup(Rollup::Scenarios, 1, 1).expect("rows");
        assert_eq!(rows.len() as u64, MAX_KEYS_PER_DAY);
        let total: u64 = rows.iter().map(|r| r.count).sum();
        assert_eq!(total, MAX_KEYS_PER_DAY + 5);
        let other = rows.iter().find(|r| r.key == OTHER).expect("other");
        assert_eq!(other.count, 6, "the last budgeted key is (other) itself");
    }

    #[test]
    fn pruning_the_record_prunes_whole_days_before_its_oldest_exchange() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = Store::open(dir.path()).expect("store");
        store
            .append_traffic(&[
                exchange(20 * DAY, "a", 200),
                exchange(21 * DAY, "a", 200),
                exchange(21 * DAY + 10, "a", 200),
                exchange(22 * DAY, "a", 200),
            ])
            .expect("append");
        // Keep three: the oldest day goes, day 21 stays whole.
        store
            .prune_traffic(&Keep::count(3), UNIX_EPOCH)
            .expect("prune");
        let days: Vec<u32> = store
            .rollup(Rollup::Operations, 0, 100)
            .expect("rows")
            .iter()
            .map(|r| r.day)
            .collect();
        assert_eq!(days, vec![21, 22]);
        // Everything older than now: nothing is left in either.
        store
            .prune_traffic(
                &Keep::age(Duration::from_secs(1)),
                UNIX_EPOCH + Duration::from_secs(100 * 86_400),
            )
            .expect("prune");
        assert!(
            store
                .rollup(Rollup::Operations, 0, 100)
                .expect("rows")
                .is_empty()
        );
    }

    #[test]
    fn a_record_written_before_the_rollup_is_rolled_up_once() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = Store::open(dir.path()).expect("store");
        store
            .append_traffic_without_rollup(&[exchange(DAY, "a", 200), exchange(DAY, "a", 500)])
            .expect("old append");
        store
            .append_traffic(&[exchange(DAY + 1, "a", 200)])
            .expect("append");
        store
            .append_traffic(&[exchange(DAY + 2, "a", 200)])
            .expect("append");
        let rows = store.rollup(Rollup::Operations, 1, 1).expect("rows");
        let got: Vec<(u8, u64)> = rows.iter().map(|r| (r.detail, r.count)).collect();
        assert_eq!(got, vec![(2, 3), (5, 1)]);
    }

    #[test]
    fn status_classes() {
        let mut e = exchange(0, "a", 0);
        assert_eq!(status_class(&e), 0);
        e.status = 302;
        assert_eq!(status_class(&e), 3);
        e.status = 200;
        e.grpc_status = Some(5);
        assert_eq!(status_class(&e), 4);
        e.grpc_status = Some(14);
        assert_eq!(status_class(&e), 5);
        e.grpc_status = Some(0);
        assert_eq!(status_class(&e), 2);
    }
}
