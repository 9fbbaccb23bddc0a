//! Retention: how long events, revisions, executions and dedup keys are kept, and the pruning
//! that applies it.
//!
//! Pruning never removes what is still needed:
//! - an event in the outbox (not dispatched yet) or the trigger event of an execution that is
//!   pending or running;
//! - an execution that is pending or running (its step outputs feed its later steps);
//! - the revisions the cursor points at (last applied, last attempted);
//! - a dedup key whose event is still in the log;
//! - the record that an event started a pipeline, while that event is in the log (so a
//!   re-dispatched event never starts the same pipeline twice).
//!
//! Event ids keep increasing after pruning (the floor is kept in the `sequences` table).
//! Pruning runs in transactions of at most [`BATCH`] rows, so readers and the writer are never
//! held up for long.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::executions::{ACTIVE, TRIGGERS};
use super::{
    CURSOR_KEY, Cursor, DEDUP, EVENT_SEQ, EVENTS, EVENTS_BY_TIME, EVENTS_BY_TYPE, EXECUTIONS,
    Event, META, OUTBOX, REVISIONS, SEQUENCES, Store, StoreError, events,
};

/// Rows removed per transaction.
pub const BATCH: usize = 2000;

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How much of something to keep: rows younger than `max_age`, and at most `max_count` of
/// the newest; either or both, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Keep {
    pub max_age: Option<Duration>,
    pub max_count: Option<u64>,
}

impl Keep {
    /// Keep everything.
    pub const FOREVER: Keep = Keep {
        max_age: None,
        max_count: None,
    };

    pub fn age(d: Duration) -> Keep {
        Keep {
            max_age: Some(d),
            max_count: None,
        }
    }

    pub fn count(n: u64) -> Keep {
        Keep {
            max_age: None,
            max_count: Some(n),
        }
    }

    fn cutoff(&self, now: SystemTime) -> Option<SystemTime> {
        self.max_age
            .map(|a| now.checked_sub(a).unwrap_or(UNIX_EPOCH))
    }
}

const KEEP_USAGE: &str = "write an age such as `30d` or `12h`, a count such as `100000` (keep \
                          the newest that many), both as `30d,100000`, or `forever`";

/// Why a retention setting does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeepError {
    #[error("`{0}` has an empty part; {KEEP_USAGE}")]
    EmptyPart(String),
    #[error("`{0}` is too large a count; {KEEP_USAGE}")]
    CountTooLarge(String),
    #[error("a count of 0 would keep nothing; {KEEP_USAGE}")]
    ZeroCount,
    #[error("`{0}` gives two counts; {KEEP_USAGE}")]
    TwoCounts(String),
    #[error("`{part}` is neither an age nor a count ({cause}); {KEEP_USAGE}")]
    NotAnAge {
        part: String,
        cause: humantime::DurationError,
    },
    #[error("an age of 0 would keep nothing; {KEEP_USAGE}")]
    ZeroAge,
    #[error("`{0}` gives two ages; {KEEP_USAGE}")]
    TwoAges(String),
}

/// `30d`, `12h` (an age), `100000` (a count of the newest to keep), both separated by a comma
/// (`30d,100000`), or `forever`.
impl FromStr for Keep {
    type Err = KeepError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("forever") {
            return Ok(Keep::FOREVER);
        }
        let mut keep = Keep::FOREVER;
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(KeepError::EmptyPart(s.to_string()));
            }
            if part.bytes().all(|b| b.is_ascii_digit()) {
                let n: u64 = part
                    .parse()
                    .map_err(|_| KeepError::CountTooLarge(part.to_string()))?;
                if n == 0 {
                    return Err(KeepError::ZeroCount);
                }
                if keep.max_count.replace(n).is_some() {
                    return Err(KeepError::TwoCounts(s.to_string()));
                }
            } else {
                let d = humantime::parse_duration(part).map_err(|cause| KeepError::NotAnAge {
                    part: part.to_string(),
                    cause,
                })?;
                if d.is_zero() {
                    return Err(KeepError::ZeroAge);
                }
                if keep.max_age.replace(d).is_some() {
                    return Err(KeepError::TwoAges(s.to_string()));
                }
            }
        }
        Ok(keep)
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.max_age, self.max_count) {
            (None, None) => f.write_str("forever"),
            (Some(a), None) => write!(f, "{}", humantime::format_duration(a)),
            (None, Some(n)) => write!(f, "{n}"),
            (Some(a), Some(n)) => write!(f, "{},{n}", humantime::format_duration(a)),
        }
    }
}

/// What the store keeps. The defaults are what the daemon's flags default to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub events: Keep,
    pub revisions: Keep,
    /// Finished executions (with their step outputs and logs).
    pub executions: Keep,
    pub dedup_keys: Keep,
}

pub const DEFAULT_EVENTS: &str = "90d";
pub const DEFAULT_REVISIONS: &str = "90d";
pub const DEFAULT_EXECUTIONS: &str = "30d";
pub const DEFAULT_DEDUP_KEYS: &str = "90d";

impl RetentionPolicy {
    /// Keep everything.
    pub const KEEP_ALL: RetentionPolicy = RetentionPolicy {
        events: Keep::FOREVER,
        revisions: Keep::FOREVER,
        executions: Keep::FOREVER,
        dedup_keys: Keep::FOREVER,
    };
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        let day = Duration::from_secs(24 * 3600);
        Self {
            events: Keep::age(90 * day),
            revisions: Keep::age(90 * day),
            executions: Keep::age(30 * day),
            dedup_keys: Keep::age(90 * day),
        }
    }
}

/// How many rows one pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub events: u64,
    pub revisions: u64,
    pub executions: u64,
    pub dedup_keys: u64,
}

impl Pruned {
    pub fn is_empty(&self) -> bool {
        *self == Pruned::default()
    }
}

fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Applies `policy` now.
    pub fn prune(&self, policy: &RetentionPolicy) -> Result<Pruned, StoreError> {
        self.prune_at(policy, SystemTime::now())
    }

    /// Applies `policy` as if the time were `now`.
    pub fn prune_at(
        &self,
        policy: &RetentionPolicy,
        now: SystemTime,
    ) -> Result<Pruned, StoreError> {
        let mut out = Pruned::default();
        // Executions first: an event that triggered a finished, pruned execution then needs no
        // trigger record of its own.
        loop {
            let n = self.prune_executions_batch(&policy.executions, now)?;
            out.executions += n as u64;
            if n < BATCH {
                break;
            }
        }
        loop {
            let n = self.prune_events_batch(&policy.events, now)?;
            out.events += n as u64;
            if n < BATCH {
                break;
            }
        }
        loop {
            let n = self.prune_revisions_batch(&policy.revisions, now)?;
            out.revisions += n as u64;
            if n < BATCH {
                break;
            }
        }
        out.dedup_keys = self.prune_dedup_keys(&policy.dedup_keys, now)? as u64;
        Ok(out)
    }

    fn prune_events_batch(&self, keep: &Keep, now: SystemTime) -> Result<usize, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        self.write(|tx| {
            let protected = protected_events(tx)?;
            let mut events = tx.open_table(EVENTS)?;
            let mut by_type = tx.open_table(EVENTS_BY_TYPE)?;
            let mut by_time = tx.open_table(EVENTS_BY_TIME)?;
            let total = events.len()?;
            let mut victims = Vec::new();
            if let Some(max) = keep.max_count {
                let over = usize::try_from(total.saturating_sub(max)).unwrap_or(usize::MAX);
                for item in events.iter()?.take(over) {
                    let id = item?.0.value();
                    if !protected.contains(&id) {
                        victims.push(id);
                        if victims.len() >= BATCH {
                            break;
                        }
                    }
                }
            }
            if let Some(cutoff) = keep.cutoff(now) {
                for item in by_time.range(..(micros(cutoff), 0))? {
                    let id = item?.0.value().1;
                    if !protected.contains(&id) {
                        victims.push(id);
                        if victims.len() >= 2 * BATCH {
                            break;
                        }
                    }
                }
            }
            victims.sort_unstable();
            victims.dedup();
            victims.truncate(BATCH);
            if victims.is_empty() {
                return Ok(0);
            }
            // Ids go on from the highest ever given, even when the newest event goes.
            let after_last = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            let mut seq = tx.open_table(SEQUENCES)?;
            let floor = seq.get(EVENT_SEQ)?.map(|v| v.value()).unwrap_or(1);
            seq.insert(EVENT_SEQ, floor.max(after_last))?;
            let executions = tx.open_table(EXECUTIONS)?;
            let mut triggers = tx.open_table(TRIGGERS)?;
            for id in &victims {
                let Some(v) = events.remove(id)? else {
                    continue;
                };
                let ev: Event = serde_json::from_slice(v.value())?;
                drop(v);
                by_type.remove((ev.event_type.as_str(), *id))?;
                by_time.remove((events::time_key_of(&ev.timestamp), *id))?;
                // "This event started that pipeline" records whose execution is gone.
                let prefix = format!("{id}/");
                let mut stale = Vec::new();
                for item in triggers.range(prefix.as_str()..)? {
                    let (k, exec) = item?;
                    if !k.value().starts_with(&prefix) {
                        break;
                    }
                    if executions.get(exec.value())?.is_none() {
                        stale.push(k.value().to_string());
                    }
                }
                for k in stale {
                    triggers.remove(k.as_str())?;
                }
            }
            Ok(victims.len())
        })
    }

    fn prune_revisions_batch(&self, keep: &Keep, now: SystemTime) -> Result<usize, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        #[derive(Deserialize)]
        struct Processed {
            processed_at: String,
        }
        let cutoff = keep.cutoff(now);
        self.write(|tx| {
            let cursor: Cursor = match tx.open_table(META)?.get(CURSOR_KEY)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => Cursor::default(),
            };
            let pinned: Vec<u64> = [&cursor.last_applied, &cursor.last_attempted]
                .into_iter()
                .flatten()
                .map(|r| r.seq)
                .collect();
            let mut revisions = tx.open_table(REVISIONS)?;
            let total = revisions.len()?;
            let over = keep.max_count.map_or(0, |m| total.saturating_sub(m));
            let mut victims = Vec::new();
            for (i, item) in revisions.iter()?.enumerate() {
                let (k, v) = item?;
                let seq = k.value();
                let by_count = (i as u64) < over;
                let by_age = match cutoff {
                    Some(c) => {
                        let p: Processed = serde_json::from_slice(v.value())?;
                        crate::util::time::parse(&p.processed_at).is_some_and(|t| t < c)
                    }
                    None => false,
                };
                if !by_count && !by_age {
                    // Revisions are processed in order: the rest are younger still.
                    break;
                }
                if !pinned.contains(&seq) {
                    victims.push(seq);
                    if victims.len() >= BATCH {
                        break;
                    }
                }
            }
            for seq in &victims {
                revisions.remove(seq)?;
            }
            Ok(victims.len())
        })
    }

    fn prune_dedup_keys(&self, keep: &Keep, now: SystemTime) -> Result<usize, StoreError> {
        if *keep == Keep::FOREVER {
            return Ok(0);
        }
        let cutoff = keep
            .cutoff(now)
            .map(|c| c.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()));
        self.write(|tx| {
            let events = tx.open_table(EVENTS)?;
            let mut dedup = tx.open_table(DEDUP)?;
            let mut all: Vec<(u64, u64, String)> = Vec::new();
            for item in dedup.iter()? {
                let (k, v) = item?;
                let (id, at) = v.value();
                all.push((at, id, k.value().to_string()));
            }
            all.sort();
            let over = keep.max_count.map_or(0, |m| {
                all.len()
                    .saturating_sub(usize::try_from(m).unwrap_or(usize::MAX))
            });
            let mut removed = 0;
            for (i, (at, id, key)) in all.iter().enumerate() {
                let expired = i < over || cutoff.is_some_and(|c| *at < c);
                if expired && events.get(id)?.is_none() {
                    dedup.remove(key.as_str())?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
    }
}

/// Events pruning must keep: those in the outbox, and the triggers of unfinished executions.
fn protected_events(tx: &WriteTransaction) -> Result<std::collections::HashSet<u64>, StoreError> {
    let mut out = std::collections::HashSet::new();
    for item in tx.open_table(OUTBOX)?.iter()? {
        out.insert(item?.0.value());
    }
    let executions = tx.open_table(EXECUTIONS)?;
    for item in tx.open_table(ACTIVE)?.iter()? {
        let (id, _) = item?;
        if let Some(v) = executions.get(id.value())? {
            let exec: super::executions::Execution = serde_json::from_slice(v.value())?;
            out.insert(exec.trigger_event_id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_parses_ages_counts_and_both() {
        let day = Duration::from_secs(86400);
        assert_eq!("30d".parse::<Keep>().unwrap(), Keep::age(30 * day));
        assert_eq!("100000".parse::<Keep>().unwrap(), Keep::count(100_000));
        assert_eq!(
            "30d, 500".parse::<Keep>().unwrap(),
            Keep {
                max_age: Some(30 * day),
                max_count: Some(500)
            }
        );
        assert_eq!("forever".parse::<Keep>().unwrap(), Keep::FOREVER);
        for bad in ["", "0", "0s", "30x", "1d,2d", "3,4", "30d,"] {
            let e = bad.parse::<Keep>().expect_err(bad);
            assert!(e.to_string().contains("30d"), "{bad}: {e}");
        }
        for s in ["30days", "12h", "7", "1day,3"] {
            let k: Keep = s.parse().unwrap();
            assert_eq!(k.to_string().parse::<Keep>().unwrap(), k);
        }
    }

    use crate::store::executions::{
        Execution, ExecutionStatus, StepRecord, StepStatus, TRUNCATED_MARKER,
    };
    use crate::store::{
        Commit, CursorUpdate, EventFilter, NewEvent, Origin, Revision, RevisionStatus,
    };
    use serde_json::{Map, Value as Json};

    fn far_future() -> SystemTime {
        SystemTime::now() + Duration::from_secs(10 * 365 * 86400)
    }

    fn exec(pipeline: &str, event_id: u64, status: ExecutionStatus) -> Execution {
        Execution {
            id: String::new(),
            seq: 0,
            pipeline: pipeline.into(),
            status,
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

    fn ids(store: &Store) -> Vec<u64> {
        store
            .events(&EventFilter {
                limit: usize::MAX,
                ..EventFilter::default()
            })
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect()
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store.ensure_execution_tables().unwrap();
        (dir, store)
    }

    #[test]
    fn events_are_pruned_but_not_the_outbox_nor_what_a_running_execution_needs() {
        let (_dir, store) = open();
        store
            .append_events(
                (0..10)
                    .map(|_| NewEvent::new("release.published", Origin::api("t")))
                    .collect(),
            )
            .unwrap();
        // 1..=8 dispatched; 9 and 10 still in the outbox; 2 triggered a running execution.
        store
            .dispatch(|tx| {
                for id in 1..=8 {
                    tx.dispatched(id)?;
                }
                tx.create_execution(exec("p", 2, ExecutionStatus::Running))
            })
            .unwrap();
        let policy = RetentionPolicy {
            events: Keep::count(1),
            ..RetentionPolicy::KEEP_ALL
        };
        let pruned = store.prune(&policy).unwrap();
        assert_eq!(pruned.events, 7);
        assert_eq!(ids(&store), vec![2, 9, 10]);
        // The indexes forget them too.
        let by_type = store
            .query_events(&EventFilter {
                event_type: Some("release.published".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(by_type.events.len(), 3);
        assert_eq!(by_type.rows_read, 3);
        let by_time = store
            .query_events(&EventFilter {
                since: Some("2000-01-01T00:00:00Z".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(by_time.rows_read, 3);

        // Once nothing needs them, age prunes every one; ids still go on.
        store
            .dispatch(|tx| {
                tx.dispatched(9)?;
                tx.dispatched(10)
            })
            .unwrap();
        let running = store.active_executions().unwrap();
        let mut done = store.execution(&running[0]).unwrap().unwrap();
        done.status = ExecutionStatus::Succeeded;
        store.finish_execution(&done, None).unwrap();
        let all = RetentionPolicy {
            events: Keep::age(Duration::from_secs(60)),
            ..RetentionPolicy::KEEP_ALL
        };
        assert_eq!(store.prune_at(&all, far_future()).unwrap().events, 3);
        assert!(ids(&store).is_empty());
        let next = store
            .append_events(vec![NewEvent::new("release.published", Origin::api("t"))])
            .unwrap();
        assert_eq!(next[0].id, 11, "ids are never given twice");
    }

    #[test]
    fn revisions_the_cursor_points_at_are_kept() {
        let (_dir, store) = open();
        let rev = |sha: &str, status| Revision {
            seq: 0,
            sha: sha.into(),
            status,
            compared_with: None,
            forced: false,
            author: "a".into(),
            summary: "s".into(),
            committed_at: "2026-01-01T00:00:00Z".into(),
            processed_at: crate::util::time::now_rfc3339(),
            diagnostics: vec![],
            errors: 0,
            warnings: 0,
            events: vec![],
            changed_entities: 0,
        };
        for (sha, status) in [
            ("a", RevisionStatus::Baseline),
            ("b", RevisionStatus::Applied),
            ("c", RevisionStatus::Applied),
            ("d", RevisionStatus::Applied),
            ("e", RevisionStatus::Invalid),
        ] {
            store
                .commit(
                    Commit {
                        revision: Some(rev(sha, status)),
                        ..Commit::default()
                    },
                    CursorUpdate::Keep,
                )
                .unwrap();
        }
        let policy = RetentionPolicy {
            revisions: Keep::age(Duration::from_secs(3600)),
            ..RetentionPolicy::KEEP_ALL
        };
        assert_eq!(store.prune(&policy).unwrap().revisions, 0, "all young");
        assert_eq!(store.prune_at(&policy, far_future()).unwrap().revisions, 3);
        let left: Vec<String> = store
            .revisions(None, 10)
            .unwrap()
            .into_iter()
            .map(|r| r.sha)
            .collect();
        assert_eq!(left, vec!["e", "d"], "last attempted and last applied stay");
        let cursor = store.cursor().unwrap();
        assert_eq!(cursor.last_applied.unwrap().sha, "d");
    }

    #[test]
    fn finished_executions_go_running_ones_stay_and_no_event_starts_a_pipeline_twice() {
        let (_dir, store) = open();
        store
            .append_events(
                (0..3)
                    .map(|_| NewEvent::new("release.published", Origin::api("t")))
                    .collect(),
            )
            .unwrap();
        let mut created = Vec::new();
        for (event, status) in [
            (1, ExecutionStatus::Succeeded),
            (2, ExecutionStatus::Failed),
            (3, ExecutionStatus::Running),
        ] {
            let e = store
                .dispatch(|tx| {
                    tx.dispatched(event)?;
                    tx.create_execution(exec("p", event, status))
                })
                .unwrap()
                .unwrap();
            created.push(e);
        }
        let policy = RetentionPolicy {
            executions: Keep::age(Duration::from_secs(60)),
            ..RetentionPolicy::KEEP_ALL
        };
        let pruned = store.prune_at(&policy, far_future()).unwrap();
        assert_eq!(pruned.executions, 2);
        let left = store
            .executions(&crate::store::executions::ExecutionFilter::default())
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, created[2].id);
        // Event 1 is still in the log: its "started p" record stays, so dispatching it again
        // does not start p again.
        assert!(
            store
                .dispatch(|tx| tx.execution_for(1, "p"))
                .unwrap()
                .is_some()
        );
        let again = store
            .dispatch(|tx| tx.create_execution(exec("p", 1, ExecutionStatus::Pending)))
            .unwrap();
        assert!(again.is_none());
        // Once the event goes, so does the record.
        let events = RetentionPolicy {
            events: Keep::age(Duration::from_secs(60)),
            ..RetentionPolicy::KEEP_ALL
        };
        store.prune_at(&events, far_future()).unwrap();
        assert!(
            store
                .dispatch(|tx| tx.execution_for(1, "p"))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            ids(&store),
            vec![3],
            "the running execution's trigger stays"
        );
    }

    #[test]
    fn dedup_keys_outlive_their_retention_while_their_event_is_kept() {
        let (_dir, store) = open();
        let keyed = || {
            let mut e = NewEvent::new("release.published", Origin::api("t"));
            e.dedup_key = Some("release-1".into());
            e
        };
        let first = store.append_events(vec![keyed()]).unwrap()[0].id;
        store.dispatch(|tx| tx.dispatched(first)).unwrap();
        let keys_only = RetentionPolicy {
            dedup_keys: Keep::age(Duration::from_secs(60)),
            ..RetentionPolicy::KEEP_ALL
        };
        assert_eq!(
            store.prune_at(&keys_only, far_future()).unwrap().dedup_keys,
            0
        );
        assert_eq!(store.append_events(vec![keyed()]).unwrap()[0].id, first);
        let both = RetentionPolicy {
            events: Keep::age(Duration::from_secs(60)),
            dedup_keys: Keep::age(Duration::from_secs(60)),
            ..RetentionPolicy::KEEP_ALL
        };
        let pruned = store.prune_at(&both, far_future()).unwrap();
        assert_eq!((pruned.events, pruned.dedup_keys), (1, 1));
        let again = store.append_events(vec![keyed()]).unwrap();
        assert_eq!(again[0].id, first + 1, "the key was forgotten");
    }

    #[test]
    fn step_outputs_are_held_to_the_budget_once_the_execution_finished() {
        let (_dir, store) = open();
        store.set_output_budget(1000);
        store
            .append_events(vec![NewEvent::new("release.published", Origin::api("t"))])
            .unwrap();
        let mut e = store
            .dispatch(|tx| tx.create_execution(exec("p", 1, ExecutionStatus::Running)))
            .unwrap()
            .unwrap();
        let mut outputs = Map::new();
        outputs.insert("small".into(), Json::from("ok"));
        outputs.insert("files".into(), Json::from("é".repeat(10_000)));
        outputs.insert("more".into(), serde_json::json!({"list": vec![1; 2000]}));
        e.steps.push(StepRecord {
            name: "gen".into(),
            step_type: crate::model::StepType::RegenerateSdk,
            status: StepStatus::Succeeded,
            attempts: 1,
            timeout_secs: 1,
            retries: 0,
            continue_on_error: false,
            started_at: None,
            finished_at: None,
            logs: vec![],
            logs_dropped: 0,
            outputs: outputs.clone(),
            error: None,
        });
        // Running: a later step (or a resumed one) still needs them whole.
        store.put_execution(&e).unwrap();
        let stored = store.execution(&e.id).unwrap().unwrap();
        assert_eq!(stored.steps[0].outputs, outputs);
        e.status = ExecutionStatus::Succeeded;
        store.finish_execution(&e, None).unwrap();
        let stored = store.execution(&e.id).unwrap().unwrap();
        let out = &stored.steps[0].outputs;
        assert_eq!(out["small"], "ok");
        let files = out["files"].as_str().unwrap();
        assert!(files.ends_with("over the step output budget]"), "{files}");
        assert!(files.starts_with("éé"));
        assert!(
            out["more"]
                .as_str()
                .unwrap()
                .starts_with("[truncated by mockops")
        );
        assert!(out[TRUNCATED_MARKER]["original_bytes"].as_u64().unwrap() > 20_000);
        let size = serde_json::to_vec(out).unwrap().len();
        assert!(size < 1400, "{size} bytes");
    }
}
