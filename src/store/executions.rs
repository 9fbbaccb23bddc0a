//! Pipeline executions in the store: one record per (event, pipeline), its steps' state, and
//! the indexes that make creation idempotent, listing cheap and restarts find unfinished runs.
//!
//! The pipeline engine is the only writer. Dispatching an event (creating its executions,
//! appending `pipeline.triggered`, taking the event out of the outbox) is one write
//! transaction, [`Store::dispatch`]; so is finishing an execution together with its
//! `pipeline.completed` / `pipeline.failed` event, [`Store::finish_execution`].

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::retention::{BATCH, Keep};
use super::{ENTITIES, EVENTS, EXECUTIONS, Event, EventLog, NewEvent, Row, Store, StoreError};
use crate::model::StepType;

/// `"<event id>/<pipeline>"` → execution id: an event starts a pipeline at most once.
pub(super) const TRIGGERS: TableDefinition<&str, &str> = TableDefinition::new("execution_triggers");
/// Creation order → execution id (listing, newest first).
const ORDER: TableDefinition<u64, &str> = TableDefinition::new("execution_order");
/// (pipeline, creation order) → execution id.
const BY_PIPELINE: TableDefinition<(&str, u64), &str> =
    TableDefinition::new("execution_by_pipeline");
/// Executions not finished yet (pending or running): resumed after a restart.
pub(super) const ACTIVE: TableDefinition<&str, ()> = TableDefinition::new("execution_active");

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Created; no step started yet.
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Not started, with the reason (a runaway chain of pipeline events).
    Skipped,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Skipped => "skipped",
        }
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, ExecutionStatus::Pending | ExecutionStatus::Running)
    }
}

/// Where a step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    /// An attempt is under way (or was, when the daemon stopped: it runs again on restart).
    Running,
    Succeeded,
    Failed,
    /// Not run: an earlier step failed.
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// Most log lines kept per step; older ones are dropped and counted.
pub const MAX_LOG_LINES: usize = 50;
/// Longest log line kept, in bytes.
pub const MAX_LOG_LINE: usize = 2000;

/// One step of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub step_type: StepType,
    pub status: StepStatus,
    /// Attempts started so far (an attempt interrupted by a restart counts).
    pub attempts: u32,
    /// Seconds an attempt may take, resolved when the execution was created.
    pub timeout_secs: u64,
    /// Retries after a failed attempt, resolved when the execution was created.
    pub retries: u32,
    pub continue_on_error: bool,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// Bounded to [`MAX_LOG_LINES`]; secrets redacted.
    #[serde(default)]
    pub logs: Vec<String>,
    #[serde(default)]
    pub logs_dropped: u64,
    /// Secrets redacted.
    #[serde(default)]
    pub outputs: Map<String, Json>,
    pub error: Option<String>,
}

impl StepRecord {
    /// Adds a log line (truncated), dropping the oldest beyond [`MAX_LOG_LINES`].
    pub fn log(&mut self, line: String) {
        let mut line = line;
        if line.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            line.truncate(cut);
            line.push('…');
        }
        self.logs
            .push(format!("{} {line}", crate::util::time::now_rfc3339()));
        if self.logs.len() > MAX_LOG_LINES {
            let extra = self.logs.len() - MAX_LOG_LINES;
            self.logs.drain(..extra);
            self.logs_dropped += extra as u64;
        }
    }
}

/// One run of one pipeline for one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// `<seq>-<random>`: unique even across a store rebuilt from Git, so idempotency keys
    /// derived from it never collide with those of an earlier store.
    pub id: String,
    /// Creation order, for paging.
    pub seq: u64,
    pub pipeline: String,
    pub status: ExecutionStatus,
    pub trigger_event_id: u64,
    pub trigger_event_type: String,
    /// Started by `pipelines trigger` rather than by a matching event.
    #[serde(default)]
    pub manual: bool,
    /// 1 for an execution started by an ordinary event; one more than the triggering
    /// pipeline event's `chain_depth` otherwise.
    pub chain_depth: u32,
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub skipped_reason: Option<String>,
    pub failed_step: Option<String>,
    pub error: Option<String>,
    pub steps: Vec<StepRecord>,
    /// The pipeline as applied when the event matched: later commits do not change a run.
    pub pipeline_spec: Json,
    /// Template variables at trigger time: the settings' overlaid by the pipeline's.
    #[serde(default)]
    pub variables: Map<String, Json>,
}

/// Which executions to list.
#[derive(Debug, Clone)]
pub struct ExecutionFilter {
    pub pipeline: Option<String>,
    /// Only executions created before this one (its `seq`; paging cursor).
    pub before: Option<u64>,
    pub limit: usize,
}

impl Default for ExecutionFilter {
    fn default() -> Self {
        Self {
            pipeline: None,
            before: None,
            limit: 50,
        }
    }
}

/// One write transaction of the dispatcher: the event log, the applied pipelines and the
/// executions, changed together or not at all.
pub struct DispatchTx<'t> {
    log: EventLog<'t>,
    entities: redb::Table<'t, &'static str, &'static [u8]>,
    executions: redb::Table<'t, &'static str, &'static [u8]>,
    triggers: redb::Table<'t, &'static str, &'static str>,
    order: redb::Table<'t, u64, &'static str>,
    by_pipeline: redb::Table<'t, (&'static str, u64), &'static str>,
    active: redb::Table<'t, &'static str, ()>,
    now: String,
}

impl DispatchTx<'_> {
    /// The time of this transaction (RFC 3339).
    pub fn now(&self) -> &str {
        &self.now
    }

    /// Event ids waiting in the outbox, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self.log.outbox.iter()?.take(limit) {
            out.push(item?.0.value());
        }
        Ok(out)
    }

    pub fn event(&self, id: u64) -> Result<Option<Event>, StoreError> {
        self.log.get(id)
    }

    /// Takes an event out of the outbox.
    pub fn dispatched(&mut self, id: u64) -> Result<(), StoreError> {
        self.log.dispatched(id)?;
        Ok(())
    }

    /// Puts a stored event back in the outbox, to dispatch it again: pipelines it already
    /// started are not started again. Returns false when there is no such event.
    pub fn requeue(&mut self, id: u64) -> Result<bool, StoreError> {
        if self.log.get(id)?.is_none() {
            return Ok(false);
        }
        self.log.outbox.insert(id, ())?;
        Ok(true)
    }

    /// Appends an event; with `dispatch` it goes to the outbox to trigger pipelines.
    pub fn append_event(
        &mut self,
        ev: NewEvent,
        dispatch: bool,
    ) -> Result<Option<Event>, StoreError> {
        let now = self.now.clone();
        self.log.append(ev, &now, dispatch)
    }

    /// An applied entity row (`pipeline/<name>`, `settings/mockops`), as of this transaction.
    pub fn row(&self, key: &str) -> Result<Option<Row>, StoreError> {
        Ok(match self.entities.get(key)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Every applied row of one kind, as of this transaction.
    pub fn rows_of(&self, kind: &str) -> Result<Vec<Row>, StoreError> {
        let prefix = format!("{kind}/");
        let mut out = Vec::new();
        for item in self.entities.range(prefix.as_str()..)? {
            let (k, v) = item?;
            if !k.value().starts_with(&prefix) {
                break;
            }
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The execution an event already started for a pipeline, if any.
    pub fn execution_for(
        &self,
        event_id: u64,
        pipeline: &str,
    ) -> Result<Option<String>, StoreError> {
        let key = trigger_key(event_id, pipeline);
        Ok(self
            .triggers
            .get(key.as_str())?
            .map(|v| v.value().to_string()))
    }

    /// Stores a new execution for (its trigger event, its pipeline), giving it its id and
    /// sequence number. Returns `None`, storing nothing, when that event already started
    /// that pipeline.
    pub fn create_execution(
        &mut self,
        mut exec: Execution,
    ) -> Result<Option<Execution>, StoreError> {
        let key = trigger_key(exec.trigger_event_id, &exec.pipeline);
        if self.triggers.get(key.as_str())?.is_some() {
            return Ok(None);
        }
        let seq = self.order.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        exec.seq = seq;
        exec.id = format!("{seq}-{:08x}", fastrand::u32(..));
        exec.created_at = self.now.clone();
        let id = exec.id.as_str();
        self.executions
            .insert(id, serde_json::to_vec(&exec)?.as_slice())?;
        self.triggers.insert(key.as_str(), id)?;
        self.order.insert(seq, id)?;
        self.by_pipeline.insert((exec.pipeline.as_str(), seq), id)?;
        if !exec.status.is_finished() {
            self.active.insert(id, ())?;
        }
        Ok(Some(exec))
    }
}

fn trigger_key(event_id: u64, pipeline: &str) -> String {
    format!("{event_id}/{pipeline}")
}

impl Store {
    /// Creates the execution tables (the store's own tables are made when it opens).
    pub fn ensure_execution_tables(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.open_table(TRIGGERS)?;
            tx.open_table(ORDER)?;
            tx.open_table(BY_PIPELINE)?;
            tx.open_table(ACTIVE)?;
            Ok(())
        })
    }

    /// Runs `f` in one write transaction over the event log, the applied rows and the
    /// executions; nothing `f` did is kept if it fails.
    pub fn dispatch<T>(
        &self,
        f: impl FnOnce(&mut DispatchTx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|tx| {
            let mut d = DispatchTx {
                log: EventLog::open(tx)?,
                entities: tx.open_table(ENTITIES)?,
                executions: tx.open_table(EXECUTIONS)?,
                triggers: tx.open_table(TRIGGERS)?,
                order: tx.open_table(ORDER)?,
                by_pipeline: tx.open_table(BY_PIPELINE)?,
                active: tx.open_table(ACTIVE)?,
                now: crate::util::time::now_rfc3339(),
            };
            f(&mut d)
        })
    }

    /// Writes an execution's current state (its record already exists).
    pub fn put_execution(&self, exec: &Execution) -> Result<(), StoreError> {
        self.finish_execution(exec, None).map(|_| ())
    }

    /// Writes an execution's state and, in the same transaction, appends `event` (to the
    /// outbox, so it can trigger pipelines). An execution no longer pending or running leaves
    /// the set resumed at restart.
    pub fn finish_execution(
        &self,
        exec: &Execution,
        event: Option<NewEvent>,
    ) -> Result<Option<Event>, StoreError> {
        // Outputs are kept whole while the execution may still need them (a later or resumed
        // step reads them); once it is finished they are held to the budget.
        let budget = self.output_budget();
        let trimmed;
        let exec = if exec.status.is_finished() && budget > 0 {
            let mut e = exec.clone();
            for s in &mut e.steps {
                truncate_outputs(&mut s.outputs, budget);
            }
            trimmed = e;
            &trimmed
        } else {
            exec
        };
        self.write(|tx| {
            let mut executions = tx.open_table(EXECUTIONS)?;
            let mut active = tx.open_table(ACTIVE)?;
            executions.insert(exec.id.as_str(), serde_json::to_vec(exec)?.as_slice())?;
            if exec.status.is_finished() {
                active.remove(exec.id.as_str())?;
            } else {
                active.insert(exec.id.as_str(), ())?;
            }
            drop((executions, active));
            match event {
                Some(ev) => {
                    let mut log = EventLog::open(tx)?;
                    log.append(ev, &crate::util::time::now_rfc3339(), true)
                }
                None => Ok(None),
            }
        })
    }

    pub fn execution(&self, id: &str) -> Result<Option<Execution>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(EXECUTIONS)?;
            Ok(match t.get(id)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            })
        })
    }

    /// Executions, newest first.
    pub fn executions(&self, filter: &ExecutionFilter) -> Result<Vec<Execution>, StoreError> {
        self.read(|tx| {
            let executions = tx.open_table(EXECUTIONS)?;
            let before = filter.before.unwrap_or(u64::MAX);
            let mut ids: Vec<String> = Vec::new();
            match &filter.pipeline {
                Some(p) => {
                    let t = match tx.open_table(BY_PIPELINE) {
                        Ok(t) => t,
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                        Err(e) => return Err(e.into()),
                    };
                    for item in t.range((p.as_str(), 0)..(p.as_str(), before))?.rev() {
                        ids.push(item?.1.value().to_string());
                        if ids.len() >= filter.limit {
                            break;
                        }
                    }
                }
                None => {
                    let t = match tx.open_table(ORDER) {
                        Ok(t) => t,
                        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                        Err(e) => return Err(e.into()),
                    };
                    for item in t.range(..before)?.rev() {
                        ids.push(item?.1.value().to_string());
                        if ids.len() >= filter.limit {
                            break;
                        }
                    }
                }
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(v) = executions.get(id.as_str())? {
                    out.push(serde_json::from_slice(v.value())?);
                }
            }
            Ok(out)
        })
    }

    /// Ids of executions pending or running, oldest first: what a restart resumes.
    pub fn active_executions(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let t = match tx.open_table(ACTIVE) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut out: Vec<(u64, String)> = Vec::new();
            for item in t.iter()? {
                let id = item?.0.value().to_string();
                let seq = id
                    .split('-')
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                out.push((seq, id));
            }
            out.sort();
            Ok(out.into_iter().map(|(_, id)| id).collect())
        })
    }

    /// Removes up to [`BATCH`] finished executions that `keep` no longer covers (oldest
    /// first); pending and running ones always stay.
    pub(super) fn prune_executions_batch(
        &self,
        keep: &Keep,
        now: std::time::SystemTime,
    ) -> Result<usize, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        let cutoff = keep
            .max_age
            .map(|a| now.checked_sub(a).unwrap_or(std::time::UNIX_EPOCH));
        let older =
            |ts: &str| cutoff.is_some_and(|c| crate::util::time::parse(ts).is_some_and(|t| t < c));
        self.write(|tx| {
            let mut executions = tx.open_table(EXECUTIONS)?;
            let mut order = tx.open_table(ORDER)?;
            let mut by_pipeline = tx.open_table(BY_PIPELINE)?;
            let mut triggers = tx.open_table(TRIGGERS)?;
            let active = tx.open_table(ACTIVE)?;
            let events = tx.open_table(EVENTS)?;
            let total = order.len()?;
            let over = keep.max_count.map_or(0, |m| total.saturating_sub(m));
            let mut victims: Vec<(u64, Execution)> = Vec::new();
            for (i, item) in order.iter()?.enumerate() {
                let (seq, id) = item?;
                let by_count = (i as u64) < over;
                let Some(v) = executions.get(id.value())? else {
                    continue;
                };
                let exec: Execution = serde_json::from_slice(v.value())?;
                if !by_count && !older(&exec.created_at) {
                    // Created in order: every later one is younger still.
                    break;
                }
                let finished_long_ago =
                    older(exec.finished_at.as_deref().unwrap_or(&exec.created_at));
                if (by_count || finished_long_ago)
                    && exec.status.is_finished()
                    && active.get(id.value())?.is_none()
                {
                    victims.push((seq.value(), exec));
                    if victims.len() >= BATCH {
                        break;
                    }
                }
            }
            for (seq, exec) in &victims {
                executions.remove(exec.id.as_str())?;
                order.remove(seq)?;
                by_pipeline.remove((exec.pipeline.as_str(), *seq))?;
                // While the trigger event is in the log, the record that it started this
                // pipeline stays, so dispatching it again cannot start a second run.
                if events.get(exec.trigger_event_id)?.is_none() {
                    triggers.remove(trigger_key(exec.trigger_event_id, &exec.pipeline).as_str())?;
                }
            }
            Ok(victims.len())
        })
    }
}

/// Marker key put in the outputs of a step whose outputs were cut to the budget.
pub const TRUNCATED_MARKER: &str = "mockops_truncated";

/// Cuts `outputs` to about `budget` bytes of JSON: outputs are kept in order while they fit;
/// a string that does not fit is cut and ends with a note; anything else that does not fit is
/// replaced by a note. A [`TRUNCATED_MARKER`] entry says how large the outputs were.
pub fn truncate_outputs(outputs: &mut Map<String, Json>, budget: usize) -> bool {
    let size = |v: &Json| serde_json::to_vec(v).map_or(0, |b| b.len());
    let total: usize = outputs.iter().map(|(k, v)| k.len() + size(v) + 4).sum();
    if total <= budget {
        return false;
    }
    let mut left = budget;
    let mut out = Map::new();
    for (k, v) in std::mem::take(outputs) {
        let n = k.len() + size(&v) + 4;
        if n <= left {
            left -= n;
            out.insert(k, v);
            continue;
        }
        let note = format!(
            "[truncated by mockops: {} bytes over the step output budget]",
            size(&v)
        );
        let cut = match v {
            Json::String(text) => {
                let mut keep = left
                    .saturating_sub(k.len() + note.len() + 8)
                    .min(text.len());
                while !text.is_char_boundary(keep) {
                    keep -= 1;
                }
                Json::String(format!("{}{note}", &text[..keep]))
            }
            _ => Json::String(note),
        };
        left = left.saturating_sub(k.len() + size(&cut) + 4);
        out.insert(k, cut);
    }
    out.insert(
        TRUNCATED_MARKER.to_string(),
        serde_json::json!({"original_bytes": total, "budget_bytes": budget}),
    );
    *outputs = out;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Origin;

    fn exec(pipeline: &str, event_id: u64) -> Execution {
        Execution {
            id: String::new(),
            seq: 0,
            pipeline: pipeline.into(),
            status: ExecutionStatus::Pending,
            trigger_event_id: event_id,
            trigger_event_type: "release.published".into(),
            manual: false,
            chain_depth: 1,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            skipped_reason: None,
            failed_step: None,
            error: None,
            steps: vec![],
            pipeline_spec: Json::Null,
            variables: Map::new(),
        }
    }

    #[test]
    fn one_execution_per_event_and_pipeline() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.ensure_execution_tables().unwrap();
        let a = store
            .dispatch(|tx| tx.create_execution(exec("p", 1)))
            .unwrap()
            .unwrap();
        assert_eq!(a.seq, 1);
        let again = store
            .dispatch(|tx| tx.create_execution(exec("p", 1)))
            .unwrap();
        assert!(again.is_none());
        let b = store
            .dispatch(|tx| tx.create_execution(exec("q", 1)))
            .unwrap()
            .unwrap();
        assert_eq!(
            store.active_executions().unwrap(),
            vec![a.id.clone(), b.id.clone()]
        );
        assert_eq!(
            store
                .dispatch(|tx| tx.execution_for(1, "p"))
                .unwrap()
                .as_deref(),
            Some(a.id.as_str())
        );

        let mut done = store.execution(&a.id).unwrap().unwrap();
        done.status = ExecutionStatus::Succeeded;
        let ev = store
            .finish_execution(
                &done,
                Some(NewEvent::new(
                    "pipeline.completed",
                    Origin::pipeline(&done.id),
                )),
            )
            .unwrap()
            .unwrap();
        assert_eq!(store.outbox(10).unwrap(), vec![ev.id]);
        assert_eq!(store.active_executions().unwrap(), vec![b.id.clone()]);

        let all = store.executions(&ExecutionFilter::default()).unwrap();
        assert_eq!(
            all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            vec![b.id.as_str(), a.id.as_str()]
        );
        let only_p = store
            .executions(&ExecutionFilter {
                pipeline: Some("p".into()),
                ..ExecutionFilter::default()
            })
            .unwrap();
        assert_eq!(only_p.len(), 1);
        assert_eq!(only_p[0].status, ExecutionStatus::Succeeded);
        let page = store
            .executions(&ExecutionFilter {
                before: Some(b.seq),
                ..ExecutionFilter::default()
            })
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].id, a.id);
    }

    #[test]
    fn a_failed_dispatch_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.ensure_execution_tables().unwrap();
        store
            .append_events(vec![NewEvent::new("release.published", Origin::api("t"))])
            .unwrap();
        let r: Result<(), StoreError> = store.dispatch(|tx| {
            tx.dispatched(1)?;
            tx.create_execution(exec("p", 1))?;
            Err(StoreError::Io(std::io::Error::other("boom")))
        });
        assert!(r.is_err());
        assert_eq!(store.outbox(10).unwrap(), vec![1]);
        assert!(
            store
                .executions(&ExecutionFilter::default())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn logs_are_bounded() {
        let mut s = StepRecord {
            name: "n".into(),
            step_type: StepType::Notify,
            status: StepStatus::Pending,
            attempts: 0,
            timeout_secs: 1,
            retries: 0,
            continue_on_error: false,
            started_at: None,
            finished_at: None,
            logs: vec![],
            logs_dropped: 0,
            outputs: Map::new(),
            error: None,
        };
        for i in 0..(MAX_LOG_LINES + 5) {
            s.log(format!("line {i}"));
        }
        s.log("é".repeat(MAX_LOG_LINE));
        assert_eq!(s.logs.len(), MAX_LOG_LINES);
        assert_eq!(s.logs_dropped, 6);
        assert!(s.logs.last().unwrap().len() < MAX_LOG_LINE + 64);
    }
}
