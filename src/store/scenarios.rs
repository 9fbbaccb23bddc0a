//! Scenario runs (`scenario::run::RunRecord`): one row per run, numbered in the order runs
//! finished, with an index by scenario; pruned with the executions' retention.

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::retention::Keep;
use super::{Store, StoreError};
use crate::scenario::run::RunRecord;

/// Run id -> the run as JSON.
const RUNS: TableDefinition<u64, &[u8]> = TableDefinition::new("scenario_runs");
/// (scenario id, run id) -> ().
const BY_SCENARIO: TableDefinition<(&str, u64), ()> =
    TableDefinition::new("scenario_runs_by_scenario");

impl Store {
    /// Stores a finished run and returns it with its id.
    pub fn put_scenario_run(&self, mut run: RunRecord) -> Result<RunRecord, StoreError> {
        self.write(|tx| {
            let mut runs = tx.open_table(RUNS)?;
            let id = runs.last()?.map_or(1, |(k, _)| k.value() + 1);
            run.id = id;
            let json = serde_json::to_vec(&run)?;
            runs.insert(id, json.as_slice())?;
            let mut by = tx.open_table(BY_SCENARIO)?;
            by.insert((run.scenario_id.as_str(), id), ())?;
            Ok(())
        })?;
        Ok(run)
    }

    /// One run.
    pub fn scenario_run(&self, id: u64) -> Result<Option<RunRecord>, StoreError> {
        self.read(|tx| {
            let runs = match tx.open_table(RUNS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            Ok(match runs.get(id)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            })
        })
    }

    /// Runs of `scenario`, newest first, below `before` (exclusive) when given.
    pub fn scenario_runs(
        &self,
        scenario: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.read(|tx| {
            let (runs, by) = match (tx.open_table(RUNS), tx.open_table(BY_SCENARIO)) {
                (Ok(r), Ok(b)) => (r, b),
                (Err(redb::TableError::TableDoesNotExist(_)), _)
                | (_, Err(redb::TableError::TableDoesNotExist(_))) => return Ok(Vec::new()),
                (Err(e), _) | (_, Err(e)) => return Err(e.into()),
            };
            let upper = before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            for row in by.range((scenario, 0)..(scenario, upper))?.rev() {
                if out.len() >= limit {
                    break;
                }
                let (k, _) = row?;
                let (_, id) = k.value();
                if let Some(v) = runs.get(id)? {
                    out.push(serde_json::from_slice(v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Drops runs older than `keep` allows (by start time) and beyond its count; returns how
    /// many went.
    pub fn prune_scenario_runs(
        &self,
        keep: &Keep,
        now: std::time::SystemTime,
    ) -> Result<u64, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        let cutoff = keep
            .max_age
            .and_then(|age| now.checked_sub(age))
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.write(|tx| {
            let mut runs = match tx.open_table(RUNS) {
                Ok(t) => t,
                Err(e) => return Err(e.into()),
            };
            let mut by = tx.open_table(BY_SCENARIO)?;
            let total = runs.len()?;
            let mut excess = keep.max_count.map_or(0, |m| total.saturating_sub(m));
            let mut dropped = 0u64;
            loop {
                let Some((id, scenario, started)) = runs.first()?.map(|(k, v)| {
                    let r: Option<RunRecord> = serde_json::from_slice(v.value()).ok();
                    (
                        k.value(),
                        r.as_ref()
                            .map(|r| r.scenario_id.clone())
                            .unwrap_or_default(),
                        r.map_or(0, |r| r.started_micros),
                    )
                }) else {
                    break;
                };
                let old = cutoff.is_some_and(|c| started < c);
                if excess == 0 && !old {
                    break;
                }
                runs.remove(id)?;
                by.remove((scenario.as_str(), id))?;
                excess = excess.saturating_sub(1);
                dropped += 1;
            }
            Ok(dropped)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::scenario::run::Outcome;

    fn run(scenario: &str, started_micros: u64) -> RunRecord {
        RunRecord {
            id: 0,
            scenario_id: scenario.into(),
            scenario_name: scenario.into(),
            environment: "dev".into(),
            federation: "f".into(),
            persona: None,
            commit: "c".into(),
            outcome: Outcome::Passed,
            started_at: String::new(),
            started_micros,
            duration_ms: 1,
            failed_step: None,
            error: None,
            steps: Vec::new(),
        }
    }

    #[test]
    fn runs_are_numbered_listed_per_scenario_and_pruned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = Store::open(dir.path()).expect("open");
        let now = SystemTime::now();
        let micros = |t: SystemTime| {
            u64::try_from(
                t.duration_since(std::time::UNIX_EPOCH)
                    .expect("after epoch")
                    .as_micros(),
            )
            .expect("fits")
        };
        let old = micros(now - Duration::from_secs(3600));
        let a = store.put_scenario_run(run("a", old)).expect("put");
        let b = store.put_scenario_run(run("b", micros(now))).expect("put");
        let a2 = store.put_scenario_run(run("a", micros(now))).expect("put");
        assert_eq!((a.id, b.id, a2.id), (1, 2, 3));
        let listed: Vec<u64> = store
            .scenario_runs("a", None, 10)
            .expect("list")
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, vec![3, 1]);
        assert_eq!(
            store.scenario_runs("a", Some(3), 10).expect("page").len(),
            1
        );
        assert_eq!(
            store
                .prune_scenario_runs(&Keep::age(Duration::from_secs(60)), now)
                .expect("prune"),
            1
        );
        assert!(store.scenario_run(1).expect("read").is_none());
        assert_eq!(store.scenario_runs("a", None, 10).expect("list").len(), 1);
        assert_eq!(
            store
                .prune_scenario_runs(&Keep::count(1), now)
                .expect("prune"),
            1
        );
        assert_eq!(store.scenario_run(3).expect("read").map(|r| r.id), Some(3));
    }
}
