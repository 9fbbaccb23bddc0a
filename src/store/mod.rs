//! The embedded store: one redb file in the state directory.
//!
//! It holds the applied desired state (one row per entity), the revision history with the
//! cursor (last applied and last attempted commit), the append-only event log, the outbox of
//! events not yet dispatched to pipelines, and pipeline executions. Everything a commit
//! changes is written in one write transaction, so a crash leaves either all of it or none.
//! Everything here can be derived again from Git: a corrupt store is moved aside and rebuilt.
//!
//! Values are JSON: readable with any redb tool, and tolerant of added fields.

mod deliveries;
mod events;
pub mod executions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use events::{Event, EventFilter, NewEvent, Source};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities");
const REVISIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("revisions");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const DEDUP: TableDefinition<&str, u64> = TableDefinition::new("event_dedup");
const OUTBOX: TableDefinition<u64, ()> = TableDefinition::new("outbox");
const WORKSPACES: TableDefinition<&str, u64> = TableDefinition::new("workspaces");
pub(crate) const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");

const CURSOR_KEY: &str = "cursor";
const FORMAT_KEY: &str = "format";
const FORMAT: u64 = 1;

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
    #[error("store: {0}")]
    Db(#[from] redb::Error),
    #[error("store: a stored value is unreadable: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("store: {0}")]
    Io(#[from] std::io::Error),
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

/// The store. Cheap to clone; readers run concurrently with the one writer.
#[derive(Clone)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// How opening went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    Existing,
    Created,
    /// The old file was unreadable and moved aside to the path given; a new one was made.
    Rebuilt {
        moved_to: PathBuf,
        reason: String,
    },
}

impl Store {
    /// Opens (or creates) the store in `dir`. A store that cannot be read is moved aside and
    /// replaced by an empty one; the caller rebuilds it from Git. A store in use by another
    /// process is refused.
    pub fn open(dir: &Path) -> Result<(Store, Opened), StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let existed = path.exists();
        let opened = match Database::create(&path) {
            Ok(db) => match check_format(&db) {
                Ok(()) => Ok(db),
                Err(reason) => Err(reason),
            },
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::InUse {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => Err(e.to_string()),
        };
        let (db, how) = match opened {
            Ok(db) if existed => (db, Opened::Existing),
            Ok(db) => (db, Opened::Created),
            Err(reason) => {
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
                    Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                        return Err(StoreError::InUse {
                            dir: dir.to_path_buf(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                (db, Opened::Rebuilt { moved_to, reason })
            }
        };
        let store = Store {
            db: Arc::new(db),
            path,
        };
        store.init()?;
        Ok((store, how))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            if meta.get(FORMAT_KEY)?.is_none() {
                meta.insert(FORMAT_KEY, serde_json::to_vec(&FORMAT)?.as_slice())?;
            }
            tx.open_table(ENTITIES)?;
            tx.open_table(REVISIONS)?;
            tx.open_table(EVENTS)?;
            tx.open_table(DEDUP)?;
            tx.open_table(OUTBOX)?;
            tx.open_table(WORKSPACES)?;
            tx.open_table(EXECUTIONS)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The database, for modules of the store that add their own tables.
    pub(crate) fn db(&self) -> &Database {
        &self.db
    }

    pub fn cursor(&self) -> Result<Cursor, StoreError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        match meta.get(CURSOR_KEY)? {
            Some(v) => Ok(serde_json::from_slice(v.value())?),
            None => Ok(Cursor::default()),
        }
    }

    /// Every entity row, keyed `kind/name`.
    pub fn rows(&self) -> Result<BTreeMap<String, Arc<Row>>, StoreError> {
        let tx = self.db.begin_read()?;
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
    }

    /// Rows of one kind (`service`, `pipeline`, ...), by name.
    pub fn rows_of(&self, kind: &str) -> Result<Vec<Row>, StoreError> {
        let tx = self.db.begin_read()?;
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
    }

    pub fn row(&self, key: &str) -> Result<Option<Row>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ENTITIES)?;
        Ok(match t.get(key)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    pub fn workspace_known(&self, id: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(WORKSPACES)?;
        Ok(t.get(id)?.is_some())
    }

    /// Applies one commit: rows, revision, events (and their outbox entries), workspaces and
    /// the cursor, in one transaction.
    pub fn commit(&self, c: Commit, cursor_update: CursorUpdate) -> Result<Committed, StoreError> {
        let tx = self.db.begin_write()?;
        let mut committed = Committed::default();
        {
            let mut meta = tx.open_table(META)?;
            let mut cursor: Cursor = match meta.get(CURSOR_KEY)? {
                Some(v) => serde_json::from_slice(v.value())?,
                None => Cursor::default(),
            };
            let now = crate::time::now_rfc3339();

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
            let mut log = EventLog::open(&tx)?;
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
        }
        tx.commit()?;
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
        let tx = self.db.begin_read()?;
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
    }

    pub fn revision(&self, seq: u64) -> Result<Option<Revision>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(REVISIONS)?;
        Ok(match t.get(seq)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Events matching `filter`, oldest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(EVENTS)?;
        let mut out = Vec::new();
        let start = filter.after.map(|a| a + 1).unwrap_or(0);
        for item in t.range(start..)? {
            let (_, v) = item?;
            let ev: Event = serde_json::from_slice(v.value())?;
            if filter.matches(&ev) {
                out.push(ev);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn event(&self, id: u64) -> Result<Option<Event>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(EVENTS)?;
        Ok(match t.get(id)? {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    /// Counts of the tables, for status and metrics.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(Counts {
            entities: tx.open_table(ENTITIES)?.len()?,
            revisions: tx.open_table(REVISIONS)?.len()?,
            events: tx.open_table(EVENTS)?.len()?,
            outbox: tx.open_table(OUTBOX)?.len()?,
            executions: tx.open_table(EXECUTIONS)?.len()?,
        })
    }

    /// Event ids waiting in the outbox, oldest first.
    pub fn outbox(&self, limit: usize) -> Result<Vec<u64>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(OUTBOX)?;
        let mut out = Vec::new();
        for item in t.iter()?.take(limit) {
            out.push(item?.0.value());
        }
        Ok(out)
    }
}

/// The event log, its dedup index and the outbox, open in one write transaction: every
/// producer of events (commits, the API, the pipeline engine) appends through it, so an event
/// and whatever caused it are stored together.
pub(crate) struct EventLog<'t> {
    events: redb::Table<'t, u64, &'static [u8]>,
    dedup: redb::Table<'t, &'static str, u64>,
    outbox: redb::Table<'t, u64, ()>,
    next_id: u64,
}

impl<'t> EventLog<'t> {
    pub(crate) fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        let events = tx.open_table(EVENTS)?;
        let next_id = events.last()?.map(|(k, _)| k.value() + 1).unwrap_or(1);
        Ok(Self {
            events,
            dedup: tx.open_table(DEDUP)?,
            outbox: tx.open_table(OUTBOX)?,
            next_id,
        })
    }

    /// The id the next appended event gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Appends `ev`, and puts it in the outbox when `dispatch` is set. An event whose dedup
    /// key is already stored is not stored again: the stored one is returned (it may be gone
    /// from the log only if the log was trimmed, then `None`).
    pub(crate) fn append(
        &mut self,
        ev: NewEvent,
        now: &str,
        dispatch: bool,
    ) -> Result<Option<Event>, StoreError> {
        if let Some(key) = &ev.dedup_key
            && let Some(existing) = self.dedup.get(key.as_str())?
        {
            let id = existing.value();
            return self.get(id);
        }
        let id = self.next_id;
        let event = ev.into_event(id, now);
        self.events
            .insert(id, serde_json::to_vec(&event)?.as_slice())?;
        if let Some(key) = &event.dedup_key {
            self.dedup.insert(key.as_str(), id)?;
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

fn check_format(db: &Database) -> Result<(), String> {
    let tx = db.begin_read().map_err(|e| e.to_string())?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    match meta.get(FORMAT_KEY).map_err(|e| e.to_string())? {
        None => Ok(()),
        Some(v) => match serde_json::from_slice::<u64>(v.value()) {
            Ok(FORMAT) => Ok(()),
            Ok(other) => Err(format!(
                "store format {other} is not the format {FORMAT} this version reads"
            )),
            Err(e) => Err(format!("store format marker unreadable: {e}")),
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
                        events: vec![NewEvent::new("config.changed", Source::commit("abc"))],
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
            let mut e = NewEvent::new("release.published", Source::api("ci"));
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
}
