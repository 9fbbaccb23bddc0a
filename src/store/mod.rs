//! The embedded store: one redb file in the state directory.
//!
//! It holds the applied desired state (one row per entity), the revision history with the
//! cursor (last applied and last attempted commit), the append-only event log with its
//! indexes, the outbox of events not yet dispatched to pipelines, and pipeline executions.
//! Everything a commit changes is written in one write transaction, so a crash leaves either
//! all of it or none. Everything here can be derived again from Git: a corrupt store is moved
//! aside and rebuilt; a store that cannot be opened for another reason (permissions, a newer
//! format) is an error, never a rebuild.
//!
//! Faults: after an I/O error (a full disk) redb refuses every later call on the same handle,
//! so the store reopens its file, reports the fault ([`Store::fault`]) and keeps reporting it
//! until a write succeeds again. A failed transaction leaves what was committed before intact.
//!
//! Values are JSON: readable with any redb tool, and tolerant of added fields.

pub mod analytics;
mod deliveries;
pub mod drift;
mod events;
pub mod executions;
mod marks;
pub mod retention;
pub mod scenarios;
#[cfg(test)]
pub(crate) mod testing;
pub mod traffic;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use events::{Event, EventFilter, NewEvent, Origin};
pub use marks::Marks;
pub use retention::{Keep, Pruned, RetentionPolicy};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities");
const REVISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revisions");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Format 1's dedup table (key → event id); migrated into [`DEDUP`].
const DEDUP_V1: TableDefinition<&str, u64> = TableDefinition::new("event_dedup");
/// Dedup key → (event id, unix seconds when the key was stored).
const DEDUP: TableDefinition<&str, (u64, u64)> = TableDefinition::new("event_dedup_at");
/// (event type, id): the events of one type, in id order.
const EVENTS_BY_TYPE: TableDefinition<(&str, u64), ()> = TableDefinition::new("events_by_type");
/// (timestamp in microseconds since the epoch, id): events by time. An event whose timestamp
/// does not parse is filed under `u64::MAX`, so every time query looks at it.
const EVENTS_BY_TIME: TableDefinition<(u64, u64), ()> = TableDefinition::new("events_by_time");
/// Counters that must survive the rows they count (`event`: the lowest id the next event may
/// take, kept when old events are pruned or the store is rebuilt).
const SEQUENCES: TableDefinition<&str, u64> = TableDefinition::new("sequences");
const OUTBOX: TableDefinition<u64, ()> = TableDefinition::new("outbox");
const WORKSPACES: TableDefinition<&str, u64> = TableDefinition::new("workspaces");
pub(crate) const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");

const CURSOR_KEY: &str = "cursor";
const FORMAT_KEY: &str = "format";
const PROBE_KEY: &str = "write_probe";
const EVENT_SEQ: &str = "event";
/// The store format this version writes. 1: the first; 2: event indexes by type and time,
/// dedup keys with their age, the event id floor. Older formats are migrated on open; a newer
/// one is refused.
pub const FORMAT: u64 = 2;

/// File name of the store inside the state directory.
pub const FILE_NAME: &str = "mockops.redb";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state directory {dir} is in use by another mockops process; one daemon owns a \
         state directory (stop the other one, or give this one its own --state-dir)"
    )]
    InUse { dir: PathBuf },
    #[error("cannot create the state directory {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the store {path} is in format {found}, newer than format {FORMAT} that this mockops \
         ({}) reads: it was written by a newer mockops. Run that version, or move the file \
         aside to have this one rebuild the store from Git (its events, revisions and \
         executions are then not carried over)", env!("CARGO_PKG_VERSION")
    )]
    NewerFormat { path: PathBuf, found: u64 },
    #[error(
        "cannot open the store {path}: {reason}. It is left as it is (it may be intact): check \
         that it is a regular file the daemon's user can read and write, in a writable \
         directory"
    )]
    Unopenable { path: PathBuf, reason: String },
    #[error(
        "the store is unavailable after an I/O error ({reason}); it is reopened on the next \
         access (free disk space if the disk is full)"
    )]
    Unavailable { reason: String },
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store: a stored value is unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// An error of the disk or the file rather than of the data: the handle must be reopened,
    /// and the store is unhealthy until a write succeeds.
    pub fn is_io(&self) -> bool {
        matches!(
            self,
            StoreError::Db(redb::Error::Io(_) | redb::Error::PreviousIo)
                | StoreError::Unavailable { .. }
        )
    }
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Where the daemon stands: the last commit applied and the last one looked at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Branch the store follows; a store is not reused for another branch.
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub last_applied: Option<RevisionRef>,
    #[serde(default)]
    pub last_attempted: Option<RevisionRef>,
    /// Set when the store was rebuilt from Git, with the reason.
    #[serde(default)]
    pub rebuilt: Option<String>,
    /// A rebuilt store that could read the old store's cursor (from the marks file) starts
    /// from this commit, so the commits after it are replayed rather than skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRef {
    pub sha: String,
    pub seq: u64,
    /// RFC 3339, when the daemon processed it.
    pub at: String,
}

/// What the daemon did with one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevisionStatus {
    /// Taken as the starting point: stored without producing events.
    Baseline,
    /// Valid and applied, with its events.
    Applied,
    /// Invalid: diagnostics recorded, nothing applied.
    Invalid,
}

/// One processed commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    #[serde(default)]
    pub seq: u64,
    pub sha: String,
    pub status: RevisionStatus,
    /// The last applied commit this one was compared with.
    pub compared_with: Option<String>,
    /// The previous applied commit is not an ancestor: compared tree to tree.
    #[serde(default)]
    pub forced: bool,
    pub author: String,
    pub summary: String,
    /// RFC 3339 commit time.
    pub committed_at: String,
    /// RFC 3339 processing time.
    pub processed_at: String,
    #[serde(default)]
    pub diagnostics: Vec<Json>,
    #[serde(default)]
    pub errors: usize,
    #[serde(default)]
    pub warnings: usize,
    #[serde(default)]
    pub events: Vec<u64>,
    /// Entities added, removed and modified.
    #[serde(default)]
    pub changed_entities: usize,
}

/// One entity of the applied desired state, keyed `kind/name` (see `reconcile::rows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub kind: String,
    pub name: String,
    pub path: String,
    pub blob: String,
    pub value: Json,
}

/// Everything one applied commit writes, in one transaction.
#[derive(Debug, Default)]
pub struct Commit {
    pub revision: Option<Revision>,
    pub put: Vec<(String, Arc<Row>)>,
    pub delete: Vec<String>,
    pub events: Vec<NewEvent>,
    /// Workspace ids seen for the first time (recorded whether or not they produce events).
    pub workspaces: Vec<String>,
    /// Replace the whole entity table (baseline and rebuild).
    pub replace_all: bool,
}

/// What a committed transaction produced.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub revision_seq: u64,
    pub events: Vec<Event>,
}

/// The store. Cheap to clone; readers run concurrently with the one writer. Clones share one
/// database handle, which the store replaces after an I/O error.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    dir: PathBuf,
    /// The handle and its generation (one more per reopen); `None` while a reopen after an
    /// I/O error has not succeeded yet.
    db: RwLock<Option<(u64, Arc<Database>)>>,
    generation: std::sync::atomic::AtomicU64,
    /// Why writes are failing, and since when (RFC 3339); cleared by the next write that
    /// commits.
    fault: Mutex<Option<Fault>>,
    /// When the handle was last reopened (reopens are spaced out).
    reopened: Mutex<Option<Instant>>,
    /// What the marks file last said (see [`Marks`]).
    marks: Mutex<Marks>,
    /// Step outputs of finished executions are cut to this many bytes (0: no limit).
    output_budget: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone)]
struct Fault {
    reason: String,
    since: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

/// How opening went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Existing,
    Created,
    /// The old file was corrupt and moved aside to the path given; a new one was made.
    /// `previous` is what the marks file recorded of the old store (its cursor and the event
    /// ids it had used), when it could be read.
    Rebuilt {
        moved_to: PathBuf,
        reason: String,
        previous: Option<Marks>,
    },
}

/// Why `Database::create` failed, as far as what to do about it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenFailure {
    /// The file is not a readable redb database: move it aside and rebuild from Git.
    Corrupt,
    /// The file could not be opened (permissions, not a regular file, a read-only or full
    /// file system): an error; the file may be intact.
    Inaccessible,
    /// Another process holds it.
    InUse,
}

/// Classifies an error of `Database::create`. Only damage to the file itself is `Corrupt`:
/// an operating-system error opening or reading it is not evidence that its data is bad.
pub fn classify_open_error(e: &redb::DatabaseError) -> OpenFailure {
    use std::io::ErrorKind;
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => OpenFailure::InUse,
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_))
        | redb::DatabaseError::Storage(redb::StorageError::ValueTooLarge(_)) => {
            OpenFailure::Corrupt
        }
        // A short or garbled header reads as an unexpected end of file or invalid data.
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(io.kind(), ErrorKind::UnexpectedEof | ErrorKind::InvalidData) =>
        {
            OpenFailure::Corrupt
        }
        _ => OpenFailure::Inaccessible,
    }
}

/// How a store format marker reads.
enum FormatCheck {
    Ok,
    Newer(u64),
    Corrupt(String),
}

impl Store {
    /// Opens (or creates) the store in `dir`. A corrupt store is moved aside and replaced by
    /// an empty one; the caller rebuilds it from Git. A store in use by another process, one
    /// in a newer format, and one the operating system will not open are errors.
    pub fn open(dir: &Path) -> Result<(Store, Opened), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let existed = std::fs::symlink_metadata(&path).is_ok();
        let marks = Marks::read(dir);
        let in_use = || StoreError::InUse {
            dir: dir.to_path_buf(),
        };
        let corrupt: Option<String> = match Database::create(&path) {
            Ok(db) => match check_format(&db) {
                FormatCheck::Ok => {
                    let how = if existed {
                        Opened::Existing
                    } else {
                        Opened::Created
                    };
                    let store = Store::with_db(dir, path, db, marks.clone());
                    store.init(match &how {
                        Opened::Created => marks.as_ref().map(|m| m.event_ids_below),
                        _ => None,
                    })?;
                    store.sync_marks(marks)?;
                    return Ok((store, how));
                }
                FormatCheck::Newer(found) => return Err(StoreError::NewerFormat { path, found }),
                FormatCheck::Corrupt(reason) => Some(reason),
            },
            Err(e) => match classify_open_error(&e) {
                OpenFailure::InUse => return Err(in_use()),
                OpenFailure::Inaccessible => {
                    return Err(StoreError::Unopenable {
                        path,
                        reason: e.to_string(),
                    });
                }
                OpenFailure::Corrupt => Some(e.to_string()),
            },
        };
        let reason = corrupt.unwrap_or_default();
        let moved_to = dir.join(format!(
            "{FILE_NAME}.unreadable-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default()
        ));
        std::fs::rename(&path, &moved_to)?;
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(in_use()),
            Err(e) => return Err(e.into()),
        };
        let store = Store::with_db(dir, path, db, marks.clone());
        store.init(marks.as_ref().map(|m| m.event_ids_below))?;
        if let Some(m) = &marks {
            // Recorded in the new store at once, so a restart before its first commit still
            // replays from the old cursor.
            store.write(|tx| {
                let mut meta = tx.open_table(META)?;
                let cursor = Cursor {
                    branch: m.branch.clone(),
                    resume_from: m.last_applied.clone(),
                    ..Cursor::default()
                };
                meta.insert(CURSOR_KEY, serde_json::to_vec(&cursor)?.as_slice())?;
                Ok(())
            })?;
        }
        store.sync_marks(marks.clone())?;
        Ok((
            store,
            Opened::Rebuilt {
                moved_to,
                reason,
                previous: marks,
            },
        ))
    }

    /// `marks`: the marks file as read before opening, so the writes of opening keep what it
    /// says until [`Store::sync_marks`] merges it with the store.
    fn with_db(dir: &Path, path: PathBuf, db: Database, marks: Option<Marks>) -> Store {
        Store {
            inner: Arc::new(Inner {
                path,
                dir: dir.to_path_buf(),
                db: RwLock::new(Some((0, Arc::new(db)))),
                generation: std::sync::atomic::AtomicU64::new(0),
                fault: Mutex::new(None),
                reopened: Mutex::new(None),
                marks: Mutex::new(marks.unwrap_or_default()),
                output_budget: std::sync::atomic::AtomicUsize::new(0),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Creates the tables, migrates an older format, and (for a new store that replaces an
    /// old one) makes event ids continue at `event_floor`.
    fn init(&self, event_floor: Option<u64>) -> Result<(), StoreError> {
        self.write(|tx| {
            let format = {
                let meta = tx.open_table(META)?;
                let v = meta.get(FORMAT_KEY)?;
                match v {
                    Some(v) => Some(serde_json::from_slice::<u64>(v.value())?),
                    None => None,
                }
            };
            tx.open_table(ENTITIES)?;
            tx.open_table(REVISIONS)?;
            let had_events = !tx.open_table(EVENTS)?.is_empty()?;
            tx.open_table(DEDUP)?;
            tx.open_table(EVENTS_BY_TYPE)?;
            tx.open_table(EVENTS_BY_TIME)?;
            tx.open_table(OUTBOX)?;
            tx.open_table(WORKSPACES)?;
            tx.open_table(EXECUTIONS)?;
            let mut seq = tx.open_table(SEQUENCES)?;
            if let Some(floor) = event_floor {
                let cur = seq.get(EVENT_SEQ)?.map(|v| v.value()).unwrap_or(1);
                seq.insert(EVENT_SEQ, cur.max(floor))?;
            }
            drop(seq);
            // A store without a marker but with events predates the marker: format 1.
            let from = match format {
                Some(f) => f,
                None if had_events => 1,
                None => FORMAT,
            };
            if from < FORMAT {
                migrate(tx, from)?;
            }
            if format != Some(FORMAT) {
                let mut meta = tx.open_table(META)?;
                meta.insert(FORMAT_KEY, serde_json::to_vec(&FORMAT)?.as_slice())?;
            }
            Ok(())
        })
    }

    /// The handle and its generation, reopening it first if an I/O error dropped it.
    fn handle(&self) -> Result<(u64, Arc<Database>), StoreError> {
        if let Some((generation, db)) = self
            .inner
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            return Ok((*generation, db.clone()));
        }
        self.reopen(None)?;
        self.inner
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable {
                reason: self.fault().unwrap_or_else(|| "reopening failed".into()),
            })
    }

    /// Replaces the handle of generation `seen` (or a missing one) with a fresh one: redb
    /// answers every call on a handle that saw an I/O error with `PreviousIo`. Waits for other
    /// users of the old handle to let go. A missing handle is retried at most once a second.
    fn reopen(&self, seen: Option<u64>) -> Result<(), StoreError> {
        let unavailable = || StoreError::Unavailable {
            reason: self.fault().unwrap_or_else(|| "reopening failed".into()),
        };
        let mut slot = self.inner.db.write().unwrap_or_else(|e| e.into_inner());
        let generation = match (slot.as_ref(), seen) {
            // Someone else reopened it already.
            (Some((g, _)), Some(s)) if *g != s => return Ok(()),
            (Some(_), None) => return Ok(()),
            (Some((g, _)), Some(_)) => *g,
            (None, _) => {
                let mut last = self
                    .inner
                    .reopened
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                    return Err(unavailable());
                }
                *last = Some(Instant::now());
                self.inner
                    .generation
                    .load(std::sync::atomic::Ordering::Relaxed)
            }
        };
        if let Some((_, mut old)) = slot.take() {
            // Readers and writers hold the handle for one transaction only.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still) => {
                        *slot = Some((generation, still));
                        return Err(StoreError::Unavailable {
                            reason: "the old store handle is still in use".into(),
                        });
                    }
                }
            }
        }
        match Database::create(&self.inner.path) {
            Ok(db) => {
                let next = generation + 1;
                self.inner
                    .generation
                    .store(next, std::sync::atomic::Ordering::Relaxed);
                *slot = Some((next, Arc::new(db)));
                tracing::warn!(path = %self.inner.path.display(), "store reopened after an I/O error");
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %self.inner.path.display(), error = %e, "cannot reopen the store; retrying");
                let e: StoreError = e.into();
                self.set_fault(&e);
                Err(e)
            }
        }
    }

    /// Why writes are failing (with the time the fault was first seen), or `None` when the
    /// last write committed.
    pub fn fault(&self) -> Option<String> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| format!("{} (since {})", f.reason, f.since))
    }

    fn set_fault(&self, e: &StoreError) {
        let mut fault = self.inner.fault.lock().unwrap_or_else(|e| e.into_inner());
        match fault.as_mut() {
            None => {
                tracing::error!(error = %e, "store I/O error: the store is reopened, and the daemon reports itself unhealthy until writes succeed again");
                *fault = Some(Fault {
                    reason: e.to_string(),
                    since: crate::util::time::now_rfc3339(),
                });
            }
            // Keep the first cause rather than its echoes.
            Some(f)
                if !matches!(
                    e,
                    StoreError::Db(redb::Error::PreviousIo) | StoreError::Unavailable { .. }
                ) =>
            {
                f.reason = e.to_string();
            }
            Some(_) => {}
        }
    }

    fn observe<T>(&self, generation: Option<u64>, r: &Result<T, StoreError>, write: bool) {
        match r {
            Ok(_) if write => {
                let mut fault = self.inner.fault.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(f) = fault.take() {
                    tracing::info!(since = %f.since, "store writes succeed again");
                }
            }
            Ok(_) => {}
            Err(e) if e.is_io() => {
                self.set_fault(e);
                if let Some(g) = generation {
                    let _ = self.reopen(Some(g));
                }
            }
            Err(_) => {}
        }
    }

    /// Runs `f` in one write transaction and commits it; nothing `f` did is kept if it
    /// fails. Every write of the store goes through here (fault tracking, the marks file).
    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut generation = None;
        let r = (|| {
            let (g, db) = self.handle()?;
            generation = Some(g);
            let tx = db.begin_write()?;
            let out = f(&tx)?;
            let next_event = tx
                .open_table(EVENTS)?
                .last()?
                .map(|(k, _)| k.value() + 1)
                .unwrap_or(1);
            self.reserve_event_ids(next_event);
            tx.commit()?;
            Ok(out)
        })();
        self.observe(generation, &r, true);
        r
    }

    /// Runs `f` in one read transaction.
    pub(crate) fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut generation = None;
        let r = (|| {
            let (g, db) = self.handle()?;
            generation = Some(g);
            let tx = db.begin_read()?;
            f(&tx)
        })();
        self.observe(generation, &r, false);
        r
    }

    /// Writes a marker value, to find out whether writes work again after a fault.
    pub fn probe_write(&self) -> Result<(), StoreError> {
        self.write(|tx| {
            let mut meta = tx.open_table(META)?;
            meta.insert(PROBE_KEY, crate::util::time::now_rfc3339().as_bytes())?;
            Ok(())
        })
    }

    /// Step outputs of finished executions are cut to `bytes` (0: no limit).
    pub fn set_output_budget(&self, bytes: usize) {
        self.inner
            .output_budget
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn output_budget(&self) -> usize {
        self.inner
            .output_budget
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn cursor(&self) -> Result<Cursor, StoreError> {
        self.read(|tx| {
            let meta = tx.open_table(META)?;
            match meta.get(CURSOR_KEY)? {
                Some(v) => Ok(serde_json::from_slice(v.value())?),
                None => Ok(Cursor::default()),
            }
        })
    }

    /// Every entity row, keyed `kind/name`.
    pub fn rows(&self) -> Result<BTreeMap<String, Arc<Row>>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(ENTITIES)?;
            let mut out = BTreeMap::new();
            for item in t.iter()? {
                let (k, v) = item?;
                out.insert(
                    k.value().to_string(),
                    Arc::new(serde_json::from_slice(v.value())?),
                );
            }
            Ok(out)
        })
    }

    /// Rows of one kind (`service`, `pipeline`, ...), by name.
    pub fn rows_of(&self, kind: &str) -> Result<Vec<Row>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(ENTITIES)?;
            let prefix = format!("{kind}/");
            let mut out = Vec::new();
            for item in t.range(prefix.as_str()..)? {
                let (k, v) = item?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                out.push(serde_json::from_slice(v.value())?);
            }
            Ok(out)
        })
    }

    pub fn row(&self, key: &str) -> Result<Option<Row>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(ENTITIES)?;
            Ok(match t.get(key)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            })
        })
    }

    /// Every workspace id seen so far (read before a commit is planned).
    pub fn workspace_ids(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(WORKSPACES)?;
            let mut out = std::collections::BTreeSet::new();
            for entry in t.iter()? {
                let (k, _) = entry?;
                out.insert(k.value().to_string());
            }
            Ok(out)
        })
    }

    pub fn workspace_known(&self, id: &str) -> Result<bool, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(WORKSPACES)?;
            Ok(t.get(id)?.is_some())
        })
    }

    /// Applies one commit: rows, revision, events (and their outbox entries), workspaces and
    /// the cursor, in one transaction.
    pub fn commit(&self, c: Commit, cursor_update: CursorUpdate) -> Result<Committed, StoreError> {
        let (committed, cursor) = self.write(|tx| {
            let mut committed = Committed::default();
            let mut meta = tx.open_table(META)?;
            let mut cursor: Cursor = match meta.get(CURSOR_KEY)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => Cursor::default(),
            };
            let now = crate::util::time::now_rfc3339();

            let mut entities = tx.open_table(ENTITIES)?;
            if c.replace_all {
                entities.retain(|_, _| false)?;
            }
            for key in &c.delete {
                entities.remove(key.as_str())?;
            }
            for (key, row) in &c.put {
                entities.insert(key.as_str(), serde_json::to_vec(row.as_ref())?.as_slice())?;
            }

            let mut workspaces = tx.open_table(WORKSPACES)?;
            let mut log = EventLog::open(tx)?;
            for ev in c.events {
                if let Some(event) = log.append(ev, &now, true)? {
                    committed.events.push(event);
                }
            }
            for ws in &c.workspaces {
                if workspaces.get(ws.as_str())?.is_none() {
                    workspaces.insert(ws.as_str(), log.next_id().saturating_sub(1))?;
                }
            }

            let mut revisions = tx.open_table(REVISIONS)?;
            if let Some(mut rev) = c.revision {
                let seq = revisions.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
                rev.seq = seq;
                rev.events = committed.events.iter().map(|e| e.id).collect();
                revisions.insert(seq, serde_json::to_vec(&rev)?.as_slice())?;
                committed.revision_seq = seq;
                let r = RevisionRef {
                    sha: rev.sha.clone(),
                    seq,
                    at: now.clone(),
                };
                cursor.last_attempted = Some(r.clone());
                if rev.status != RevisionStatus::Invalid {
                    cursor.last_applied = Some(r);
                    // A rebuilt store has taken its baseline: nothing left to resume.
                    cursor.resume_from = None;
                }
            }
            match cursor_update {
                CursorUpdate::Keep => {}
                CursorUpdate::Branch(b) => cursor.branch = Some(b),
                CursorUpdate::Rebuilt { branch, reason } => {
                    cursor.branch = Some(branch);
                    cursor.rebuilt = Some(reason);
                }
            }
            meta.insert(CURSOR_KEY, serde_json::to_vec(&cursor)?.as_slice())?;
            Ok((committed, cursor))
        })?;
        self.note_cursor(&cursor);
        Ok(committed)
    }

    /// Appends events that come from outside a commit (the API, pipelines).
    pub fn append_events(&self, events: Vec<NewEvent>) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .commit(
                Commit {
                    events,
                    ..Commit::default()
                },
                CursorUpdate::Keep,
            )?
            .events)
    }

    /// Revisions, newest first, starting below `before` (exclusive) when given.
    pub fn revisions(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Revision>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(REVISIONS)?;
            let mut out = Vec::new();
            let range = match before {
                Some(b) => t.range(..b)?,
                None => t.range(0..)?,
            };
            for item in range.rev() {
                let (_, v) = item?;
                out.push(serde_json::from_slice(v.value())?);
                if out.len() >= limit {
                    break;
                }
            }
            Ok(out)
        })
    }

    pub fn revision(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(REVISIONS)?;
            Ok(match t.get(seq)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            })
        })
    }

    /// Events matching `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        Ok(self.query_events(filter)?.events)
    }

    /// [`Store::events`], with how many stored events the query read. A query by type reads
    /// only events of that type (the type index), one by time only events at or after that
    /// time (the time index); others read the log from `after` on.
    pub fn query_events(&self, filter: &EventFilter) -> Result<EventPage, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(EVENTS)?;
            let mut page = EventPage::default();
            let start = filter.after.map(|a| a.saturating_add(1)).unwrap_or(0);
            let take = |id: u64, page: &mut EventPage| -> Result<bool, StoreError> {
                if let Some(v) = t.get(id)? {
                    page.rows_read += 1;
                    let ev: Event = serde_json::from_slice(v.value())?;
                    if filter.matches(&ev) {
                        page.events.push(ev);
                    }
                }
                Ok(page.events.len() >= filter.limit)
            };
            if filter.limit == 0 {
                return Ok(page);
            }
            if let Some(ty) = &filter.event_type {
                let by_type = tx.open_table(EVENTS_BY_TYPE)?;
                for item in by_type.range((ty.as_str(), start)..=(ty.as_str(), u64::MAX))? {
                    let id = item?.0.value().1;
                    if take(id, &mut page)? {
                        break;
                    }
                }
            } else if let Some(key) = filter.since.as_deref().and_then(events::time_key) {
                let by_time = tx.open_table(EVENTS_BY_TIME)?;
                let mut ids = Vec::new();
                for item in by_time.range((key, 0)..)? {
                    let id = item?.0.value().1;
                    if id >= start {
                        ids.push(id);
                    }
                }
                ids.sort_unstable();
                for id in ids {
                    if take(id, &mut page)? {
                        break;
                    }
                }
            } else {
                for item in t.range(start..)? {
                    let (_, v) = item?;
                    page.rows_read += 1;
                    let ev: Event = serde_json::from_slice(v.value())?;
                    if filter.matches(&ev) {
                        page.events.push(ev);
                        if page.events.len() >= filter.limit {
                            break;
                        }
                    }
                }
            }
            Ok(page)
        })
    }

    /// Events newest first, below id `before` (exclusive) when given, of one type when given
    /// (read through the type index): the dashboard's pages of recent events.
    pub fn recent_events(
        &self,
        event_type: Option<&str>,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(EVENTS)?;
            let end = before.unwrap_or(u64::MAX);
            let mut out = Vec::new();
            let mut push = |v: &[u8]| -> Result<bool, StoreError> {
                out.push(serde_json::from_slice(v)?);
                Ok(out.len() >= limit)
            };
            if limit == 0 {
                return Ok(out);
            }
            if let Some(ty) = event_type {
                let by_type = tx.open_table(EVENTS_BY_TYPE)?;
                for item in by_type.range((ty, 0)..(ty, end))?.rev() {
                    let id = item?.0.value().1;
                    if let Some(v) = t.get(id)?
                        && push(v.value())?
                    {
                        break;
                    }
                }
            } else {
                for item in t.range(..end)?.rev() {
                    if push(item?.1.value())? {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    pub fn event(&self, id: u64) -> Result<Option<Event>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(EVENTS)?;
            Ok(match t.get(id)? {
                Some(v) => Some(serde_json::from_slice(v.value())?),
                None => None,
            })
        })
    }

    /// Counts of the tables, for status and metrics.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        self.read(|tx| {
            Ok(Counts {
                entities: tx.open_table(ENTITIES)?.len()?,
                revisions: tx.open_table(REVISIONS)?.len()?,
                events: tx.open_table(EVENTS)?.len()?,
                outbox: tx.open_table(OUTBOX)?.len()?,
                executions: tx.open_table(EXECUTIONS)?.len()?,
            })
        })
    }

    /// Event ids waiting in the outbox, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        self.read(|tx| {
            let t = tx.open_table(OUTBOX)?;
            let mut out = Vec::new();
            for item in t.iter()?.take(limit) {
                out.push(item?.0.value());
            }
            Ok(out)
        })
    }

    /// The id the next event will get.
    pub fn next_event_id(&self) -> Result<u64, StoreError> {
        self.read(|tx| {
            let events = tx.open_table(EVENTS)?;
            let after_last = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
            let floor = match tx.open_table(SEQUENCES) {
                Ok(t) => t.get(EVENT_SEQ)?.map(|v| v.value()).unwrap_or(1),
                Err(redb::TableError::TableDoesNotExist(_)) => 1,
                Err(e) => return Err(e.into()),
            };
            Ok(after_last.max(floor))
        })
    }
}

/// One page of an event query, with how many stored events it read.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub rows_read: u64,
}

/// Brings a store of format `from` to [`FORMAT`], inside the opening transaction.
fn migrate(tx: &WriteTransaction, from: u64) -> Result<(), StoreError> {
    tracing::info!(from, to = FORMAT, "migrating the store format");
    if from < 2 {
        // Index every event by type and time.
        let events = tx.open_table(EVENTS)?;
        let mut by_type = tx.open_table(EVENTS_BY_TYPE)?;
        let mut by_time = tx.open_table(EVENTS_BY_TIME)?;
        let mut times = BTreeMap::new();
        for item in events.iter()? {
            let (k, v) = item?;
            let id = k.value();
            let ev: Event = serde_json::from_slice(v.value())?;
            by_type.insert((ev.event_type.as_str(), id), ())?;
            by_time.insert((events::time_key_of(&ev.timestamp), id), ())?;
            times.insert(id, events::unix_secs(&ev.timestamp));
        }
        // Dedup keys get the time of their event.
        let now = retention::unix_now();
        let mut dedup = tx.open_table(DEDUP)?;
        match tx.open_table(DEDUP_V1) {
            Ok(old) => {
                for item in old.iter()? {
                    let (k, v) = item?;
                    let id = v.value();
                    let at = times.get(&id).copied().flatten().unwrap_or(now);
                    dedup.insert(k.value(), (id, at))?;
                }
                drop(old);
                tx.delete_table(DEDUP_V1)?;
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The event log, its indexes, the dedup keys and the outbox, open in one write transaction:
/// every producer of events (commits, the API, the pipeline engine) appends through it, so an
/// event and whatever caused it are stored together, indexed.
pub(crate) struct EventLog<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    by_type: redb::Table<'t, (&'static str, u64), ()>,
    by_time: redb::Table<'t, (u64, u64), ()>,
    dedup: redb::Table<'t, &'static str, (u64, u64)>,
    pub(crate) outbox: redb::Table<'t, u64, ()>,
    next_id: u64,
}

impl<'t> EventLog<'t> {
    pub(crate) fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        let events = tx.open_table(EVENTS)?;
        let after_last = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        let floor = tx
            .open_table(SEQUENCES)?
            .get(EVENT_SEQ)?
            .map(|v| v.value())
            .unwrap_or(1);
        Ok(Self {
            events,
            by_type: tx.open_table(EVENTS_BY_TYPE)?,
            by_time: tx.open_table(EVENTS_BY_TIME)?,
            dedup: tx.open_table(DEDUP)?,
            outbox: tx.open_table(OUTBOX)?,
            next_id: after_last.max(floor),
        })
    }

    /// The id the next appended event gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Appends `ev`, and puts it in the outbox when `dispatch` is set. An event whose dedup
    /// key is already stored is not stored again: the stored one is returned (it may be gone
    /// from the log only if the log was pruned, then `None`).
    pub(crate) fn append(
        &mut self,
        ev: NewEvent,
        now: &str,
        dispatch: bool,
    ) -> Result<Option<Event>, StoreError> {
        if let Some(key) = &ev.dedup_key
            && let Some(existing) = self.dedup.get(key.as_str())?
        {
            let (id, _) = existing.value();
            return self.get(id);
        }
        let id = self.next_id;
        let event = ev.into_event(id, now);
        self.events
            .insert(id, serde_json::to_vec(&event)?.as_slice())?;
        self.by_type.insert((event.event_type.as_str(), id), ())?;
        self.by_time
            .insert((events::time_key_of(&event.timestamp), id), ())?;
        if let Some(key) = &event.dedup_key {
            self.dedup
                .insert(key.as_str(), (id, retention::unix_now()))?;
        }
        if dispatch {
            self.outbox.insert(id, ())?;
        }
        self.next_id += 1;
        Ok(Some(event))
    }

    pub(crate) fn get(&self, id: u64) -> Result<Option<Event>, StoreError> {
        Ok(match self.events.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Takes an event out of the outbox: it has been dispatched.
    pub(crate) fn dispatched(&mut self, id: u64) -> Result<bool, StoreError> {
        Ok(self.outbox.remove(id)?.is_some())
    }
}

/// How a commit changes the cursor besides the revision it records.
#[derive(Debug, Clone)]
pub enum CursorUpdate {
    Keep,
    Branch(String),
    Rebuilt { branch: String, reason: String },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub entities: u64,
    pub revisions: u64,
    pub events: u64,
    pub outbox: u64,
    pub executions: u64,
}

fn check_format(db: &Database) -> FormatCheck {
    let tx = match db.begin_read() {
        Ok(tx) => tx,
        Err(e) => return FormatCheck::Corrupt(e.to_string()),
    };
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return FormatCheck::Ok,
        Err(e) => return FormatCheck::Corrupt(e.to_string()),
    };
    match meta.get(FORMAT_KEY) {
        Err(e) => FormatCheck::Corrupt(e.to_string()),
        Ok(None) => FormatCheck::Ok,
        Ok(Some(v)) => match serde_json::from_slice::<u64>(v.value()) {
            Ok(f) if f > FORMAT => FormatCheck::Newer(f),
            Ok(_) => FormatCheck::Ok,
            Err(e) => FormatCheck::Corrupt(format!("store format marker unreadable: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(sha: &str, status: RevisionStatus) -> Revision {
        Revision {
            seq: 0,
            sha: sha.into(),
            status,
            compared_with: None,
            forced: false,
            author: "a <a@example.com>".into(),
            summary: "s".into(),
            committed_at: "2026-01-01T00:00:00Z".into(),
            processed_at: "2026-01-01T00:00:00Z".into(),
            diagnostics: vec![],
            errors: 0,
            warnings: 0,
            events: vec![],
            changed_entities: 0,
        }
    }

    fn row(name: &str) -> Arc<Row> {
        Arc::new(Row {
            kind: "service".into(),
            name: name.into(),
            path: format!("services/{name}.yaml"),
            blob: "b".into(),
            value: serde_json::json!({"name": name}),
        })
    }

    #[test]
    fn commit_is_durable_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, how) = Store::open(dir.path()).unwrap();
            assert_eq!(how, Opened::Created);
            let c = store
                .commit(
                    Commit {
                        revision: Some(rev("abc", RevisionStatus::Applied)),
                        put: vec![("service/auth".into(), row("auth"))],
                        events: vec![NewEvent::new("config.changed", Origin::commit("abc"))],
                        workspaces: vec!["ws-1".into()],
                        ..Commit::default()
                    },
                    CursorUpdate::Branch("main".into()),
                )
                .unwrap();
            assert_eq!(c.events.len(), 1);
            assert_eq!(c.events[0].id, 1);
        }
        let (store, how) = Store::open(dir.path()).unwrap();
        assert_eq!(how, Opened::Existing);
        let cursor = store.cursor().unwrap();
        assert_eq!(cursor.last_applied.unwrap().sha, "abc");
        assert_eq!(cursor.branch.as_deref(), Some("main"));
        assert_eq!(store.rows().unwrap().len(), 1);
        assert!(store.workspace_known("ws-1").unwrap());
        assert_eq!(store.outbox(10).unwrap(), vec![1]);
        assert_eq!(store.revisions(None, 10).unwrap()[0].events, vec![1]);
    }

    #[test]
    fn invalid_revision_moves_only_last_attempted() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store
            .commit(
                Commit {
                    revision: Some(rev("good", RevisionStatus::Applied)),
                    ..Commit::default()
                },
                CursorUpdate::Keep,
            )
            .unwrap();
        store
            .commit(
                Commit {
                    revision: Some(rev("bad", RevisionStatus::Invalid)),
                    ..Commit::default()
                },
                CursorUpdate::Keep,
            )
            .unwrap();
        let cursor = store.cursor().unwrap();
        assert_eq!(cursor.last_applied.unwrap().sha, "good");
        assert_eq!(cursor.last_attempted.unwrap().sha, "bad");
    }

    #[test]
    fn dedup_key_makes_ingestion_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mk = || {
            let mut e = NewEvent::new("release.published", Origin::api("ci"));
            e.dedup_key = Some("release-1".into());
            e
        };
        let a = store.append_events(vec![mk()]).unwrap();
        let b = store.append_events(vec![mk()]).unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(store.counts().unwrap().events, 1);
    }

    #[test]
    fn second_open_in_same_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, _) = Store::open(dir.path()).unwrap();
        match Store::open(dir.path()) {
            Err(StoreError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
    }

    #[test]
    fn garbage_file_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"not a database at all").unwrap();
        let (store, how) = Store::open(dir.path()).unwrap();
        match how {
            Opened::Rebuilt { moved_to, .. } => assert!(moved_to.exists()),
            other => panic!("expected Rebuilt, got {other:?}"),
        }
        assert_eq!(store.counts().unwrap(), Counts::default());
    }

    #[test]
    fn a_newer_format_is_an_error_and_the_file_stays() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .write(|tx| {
                    tx.open_table(META)?
                        .insert(FORMAT_KEY, serde_json::to_vec(&99u64)?.as_slice())?;
                    Ok(())
                })
                .unwrap();
        }
        let err = Store::open(dir.path()).expect_err("newer format");
        assert!(
            matches!(err, StoreError::NewerFormat { found: 99, .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("format 99") && text.contains("newer"),
            "{text}"
        );
        assert!(dir.path().join(FILE_NAME).exists());
        let aside = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains("unreadable"));
        assert!(!aside, "nothing is moved aside");
    }

    #[test]
    fn a_file_the_system_will_not_open_is_an_error_not_a_rebuild() {
        // Tests run as root, so permission bits do not stop them: a directory in the file's
        // place fails `open` with an operating-system error just as EACCES would.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        let err = Store::open(dir.path()).expect_err("unopenable");
        assert!(matches!(err, StoreError::Unopenable { .. }), "{err}");
        assert!(err.to_string().contains("read and write"), "{err}");
        assert!(dir.path().join(FILE_NAME).is_dir(), "left in place");

        use std::io::{Error, ErrorKind};
        let io =
            |k: ErrorKind| redb::DatabaseError::Storage(redb::StorageError::Io(Error::from(k)));
        assert_eq!(
            classify_open_error(&io(ErrorKind::PermissionDenied)),
            OpenFailure::Inaccessible
        );
        assert_eq!(
            classify_open_error(&io(ErrorKind::ReadOnlyFilesystem)),
            OpenFailure::Inaccessible
        );
        assert_eq!(
            classify_open_error(&io(ErrorKind::UnexpectedEof)),
            OpenFailure::Corrupt
        );
        assert_eq!(
            classify_open_error(&redb::DatabaseError::Storage(
                redb::StorageError::Corrupted("bad page".into())
            )),
            OpenFailure::Corrupt
        );
        assert_eq!(
            classify_open_error(&redb::DatabaseError::DatabaseAlreadyOpen),
            OpenFailure::InUse
        );
    }

    #[test]
    fn a_rebuilt_store_continues_event_ids_and_replays_from_the_old_cursor() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .commit(
                    Commit {
                        revision: Some(rev("abc", RevisionStatus::Applied)),
                        events: (0..3)
                            .map(|_| NewEvent::new("config.changed", Origin::commit("abc")))
                            .collect(),
                        ..Commit::default()
                    },
                    CursorUpdate::Branch("main".into()),
                )
                .unwrap();
        }
        std::fs::write(dir.path().join(FILE_NAME), b"damaged beyond reading").unwrap();
        let (store, how) = Store::open(dir.path()).unwrap();
        let Opened::Rebuilt { previous, .. } = how else {
            panic!("expected a rebuild, got {how:?}");
        };
        let previous = previous.expect("the marks file was read");
        assert_eq!(previous.last_applied.as_deref(), Some("abc"));
        assert_eq!(previous.branch.as_deref(), Some("main"));
        let cursor = store.cursor().unwrap();
        assert_eq!(cursor.resume_from.as_deref(), Some("abc"));
        assert!(cursor.last_applied.is_none());
        let ev = store
            .append_events(vec![NewEvent::new("x.y", Origin::api("t"))])
            .unwrap();
        assert!(ev[0].id > 3, "ids go on past the old store's: {}", ev[0].id);
        drop(store);

        // A store deleted by hand starts afresh, but its ids still go on.
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        let (store, how) = Store::open(dir.path()).unwrap();
        assert_eq!(how, Opened::Created);
        let again = store
            .append_events(vec![NewEvent::new("x.y", Origin::api("t"))])
            .unwrap();
        assert!(again[0].id > ev[0].id, "{} then {}", ev[0].id, again[0].id);
    }

    /// A format-1 store (no indexes, dedup keys without age) is migrated when opened.
    #[test]
    fn a_format_1_store_gets_its_indexes_built_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .write(|tx| {
                    tx.delete_table(EVENTS_BY_TYPE)?;
                    tx.delete_table(EVENTS_BY_TIME)?;
                    tx.delete_table(DEDUP)?;
                    let mut events = tx.open_table(EVENTS)?;
                    let mut dedup = tx.open_table(DEDUP_V1)?;
                    for id in 1..=20u64 {
                        let mut e = NewEvent::new(
                            if id % 4 == 0 {
                                "rare.one"
                            } else {
                                "common.one"
                            },
                            Origin::api("t"),
                        );
                        if id == 7 {
                            e.dedup_key = Some("seven".into());
                            dedup.insert("seven", id)?;
                        }
                        let ev = e.into_event(id, &format!("2026-01-01T00:00:{id:02}Z"));
                        events.insert(id, serde_json::to_vec(&ev)?.as_slice())?;
                    }
                    tx.open_table(META)?
                        .insert(FORMAT_KEY, serde_json::to_vec(&1u64)?.as_slice())?;
                    Ok(())
                })
                .unwrap();
        }
        let (store, how) = Store::open(dir.path()).unwrap();
        assert_eq!(how, Opened::Existing);
        let format: u64 = store
            .read(|tx| {
                Ok(serde_json::from_slice(
                    tx.open_table(META)?.get(FORMAT_KEY)?.unwrap().value(),
                )?)
            })
            .unwrap();
        assert_eq!(format, FORMAT);
        let rare = store
            .query_events(&EventFilter {
                event_type: Some("rare.one".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(
            rare.events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 8, 12, 16, 20]
        );
        assert_eq!(rare.rows_read, 5);
        let since = store
            .query_events(&EventFilter {
                since: Some("2026-01-01T00:00:18Z".into()),
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(since.events.len(), 3);
        assert_eq!(since.rows_read, 3);
        // The migrated dedup key still deduplicates.
        let mut e = NewEvent::new("common.one", Origin::api("t"));
        e.dedup_key = Some("seven".into());
        assert_eq!(store.append_events(vec![e]).unwrap()[0].id, 7);
    }

    /// Queries through the indexes return exactly what a scan of the whole log does, for
    /// types, times (producer times out of order, and one that does not parse), workspaces,
    /// paging and limits.
    #[test]
    fn indexed_queries_equal_a_scan() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut rng = fastrand::Rng::with_seed(11);
        let types = ["a.one", "b.two", "c.three", "d.four", "e.five"];
        let mut batch = Vec::new();
        for i in 0..600 {
            let mut e = NewEvent::new(types[rng.usize(..types.len())], Origin::api("t"))
                .workspace(Some(format!("ws-{}", rng.usize(..3))), None);
            e.timestamp = match i % 50 {
                0 => None,
                1 => Some("not-a-time".into()),
                _ => Some(format!(
                    "2026-0{}-{:02}T{:02}:00:00.{:03}Z",
                    rng.u32(1..=9),
                    rng.u32(1..=28),
                    rng.u32(0..24),
                    rng.u32(0..1000)
                )),
            };
            batch.push(e);
            if batch.len() == 100 {
                store.append_events(std::mem::take(&mut batch)).unwrap();
            }
        }
        let all = store
            .events(&EventFilter {
                limit: usize::MAX,
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(all.len(), 600);
        for _ in 0..400 {
            let filter = EventFilter {
                event_type: match rng.usize(..7) {
                    5 | 6 => None,
                    i if i < types.len() => Some(types[i].to_string()),
                    _ => Some("none.such".into()),
                },
                workspace_id: rng.bool().then(|| format!("ws-{}", rng.usize(..4))),
                after: rng.bool().then(|| rng.u64(0..650)),
                since: match rng.usize(..4) {
                    0 | 1 => Some(format!(
                        "2026-0{}-{:02}T{:02}:30:00Z",
                        rng.u32(1..=9),
                        rng.u32(1..=28),
                        rng.u32(0..24)
                    )),
                    2 => Some("2026-05-01T00:00:00.0005Z".into()),
                    _ => None,
                },
                limit: rng.usize(1..80),
            };
            let scanned: Vec<u64> = all
                .iter()
                .filter(|e| filter.after.is_none_or(|a| e.id > a) && filter.matches(e))
                .take(filter.limit)
                .map(|e| e.id)
                .collect();
            let page = store.query_events(&filter).unwrap();
            let got: Vec<u64> = page.events.iter().map(|e| e.id).collect();
            assert_eq!(got, scanned, "{filter:?}");
        }
    }

    /// A query by type or by time reads only the events that match, not the whole log.
    #[test]
    fn type_and_time_queries_read_only_matching_events() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let mut batch = Vec::new();
        for i in 0..2000u32 {
            let rare = i % 200 == 0;
            let mut e = NewEvent::new(
                if rare { "rare.kind" } else { "bulk.kind" },
                Origin::api("t"),
            );
            e.timestamp = Some(if i >= 1990 {
                format!("2026-06-01T00:00:{:02}Z", i - 1990)
            } else {
                format!("2025-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60)
            });
            batch.push(e);
        }
        store.append_events(batch).unwrap();
        let rare = store
            .query_events(&EventFilter {
                event_type: Some("rare.kind".into()),
                limit: 1000,
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(rare.events.len(), 10);
        assert_eq!(rare.rows_read, 10, "only the rare events were read");
        let recent = store
            .query_events(&EventFilter {
                since: Some("2026-01-01T00:00:00Z".into()),
                limit: 1000,
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(recent.events.len(), 10);
        assert_eq!(recent.rows_read, 10, "only the recent events were read");
        // A page of a type query reads no more than the page.
        let page = store
            .query_events(&EventFilter {
                event_type: Some("bulk.kind".into()),
                after: Some(1000),
                limit: 5,
                ..EventFilter::default()
            })
            .unwrap();
        assert_eq!(page.events.len(), 5);
        assert_eq!(page.rows_read, 5);
    }

    /// A real full file system (a small tmpfs): the failing write is an error, the store
    /// reports the fault and reopens itself, nothing committed before is lost, and once
    /// there is room again writes work and the fault clears.
    #[test]
    fn a_full_disk_fails_writes_then_recovers_without_losing_anything() {
        let mnt = testing::Tmpfs::mount("32m");
        let (store, _) = Store::open(mnt.path()).unwrap();
        let small = || NewEvent::new("small.one", Origin::api("t"));
        store
            .append_events((0..10).map(|_| small()).collect())
            .unwrap();
        let filler = mnt.path().join("filler");
        testing::fill(&filler);
        let big = || NewEvent::new("big.one", Origin::api("t")).with("blob", "x".repeat(2 << 20));
        let err = store.append_events(vec![big()]).expect_err("disk is full");
        assert!(err.is_io(), "{err}");
        let fault = store.fault().expect("fault reported");
        assert!(fault.contains("space") || fault.contains("I/O"), "{fault}");
        // Still full: still failing, still reported.
        assert!(store.append_events(vec![big()]).is_err());
        assert!(store.fault().is_some());

        std::fs::remove_file(&filler).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let stored = loop {
            match store.append_events(vec![big()]) {
                Ok(e) => break e,
                Err(e) if Instant::now() < deadline => {
                    assert!(e.is_io(), "{e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "writes do not recover: {e}; files: {:?}",
                    std::fs::read_dir(mnt.path())
                        .unwrap()
                        .filter_map(|e| e.ok())
                        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                        .collect::<Vec<_>>()
                ),
            }
        };
        assert_eq!(stored[0].id, 11);
        assert!(store.fault().is_none(), "fault cleared by a good write");
        drop(store);
        let (store, how) = Store::open(mnt.path()).unwrap();
        assert_eq!(how, Opened::Existing);
        let ids: Vec<u64> = store
            .events(&EventFilter::default())
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, (1..=11).collect::<Vec<_>>());
    }
}
