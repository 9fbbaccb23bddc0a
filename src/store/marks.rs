//! The marks file (`mockops.redb.marks` beside the store): what must survive the store
//! itself, so that a store rebuilt after corruption carries on where the old one stood.
//!
//! - `event_ids_below`: every event id the store ever gave is below it. It is raised (in
//!   blocks of [`ID_BLOCK`]) *before* a transaction that uses higher ids commits, so it never
//!   lags: a rebuilt store starts its ids there, past every old one.
//! - `branch` and `last_applied`: the cursor, written *after* the transaction that moved it
//!   commits, so it may lag by one commit but never leads: a rebuilt store replays from it and
//!   skips nothing.
//!
//! The file is replaced atomically (write, then rename). A missing or unreadable file only
//! means a rebuild starts from the head with fresh ids, as before the file existed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Cursor, Store, StoreError};

/// File name of the marks, in the state directory.
pub const MARKS_FILE: &str = "mockops.redb.marks";
/// How far ahead event ids are reserved with each write of the file.
pub const ID_BLOCK: u64 = 1000;

/// What the marks file records of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marks {
    #[serde(default)]
    pub branch: Option<String>,
    /// The last applied commit.
    #[serde(default)]
    pub last_applied: Option<String>,
    /// Every event id given so far is below this.
    #[serde(default)]
    pub event_ids_below: u64,
}

impl Marks {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(MARKS_FILE)
    }

    /// The marks in `dir`, if the file exists and reads.
    pub fn read(dir: &Path) -> Option<Marks> {
        let text = std::fs::read(Self::path(dir)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    fn write(&self, dir: &Path) -> std::io::Result<()> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{MARKS_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())?;
        std::fs::rename(&tmp, &path)
    }
}

impl Store {
    fn save_marks(&self, marks: &Marks) {
        if let Err(e) = marks.write(&self.inner.dir) {
            tracing::warn!(
                error = %e, dir = %self.inner.dir.display(),
                "cannot write the store's marks file (a store rebuilt later may restart event ids)"
            );
        }
    }

    /// Makes the marks file agree with the store after opening it, keeping from `previous`
    /// (the file as read before) what the store does not know yet.
    pub(super) fn sync_marks(&self, previous: Option<Marks>) -> Result<(), StoreError> {
        let cursor = self.cursor()?;
        let next = self.next_event_id()?;
        let mut m = previous.unwrap_or_default();
        if let Some(applied) = &cursor.last_applied {
            m.last_applied = Some(applied.sha.clone());
            m.branch = cursor.branch.clone();
        }
        m.event_ids_below = m.event_ids_below.max(next);
        self.save_marks(&m);
        *self.inner.marks.lock().unwrap_or_else(|e| e.into_inner()) = m;
        Ok(())
    }

    /// Called before a write transaction commits, with the id its next event would get.
    pub(super) fn reserve_event_ids(&self, next_id: u64) {
        let mut m = self.inner.marks.lock().unwrap_or_else(|e| e.into_inner());
        if next_id <= m.event_ids_below {
            return;
        }
        m.event_ids_below = next_id.div_ceil(ID_BLOCK) * ID_BLOCK + ID_BLOCK;
        // Written under the lock, so a concurrent cursor note cannot put back a lower mark.
        self.save_marks(&m);
    }

    /// Called after a transaction that moved the cursor committed.
    pub(super) fn note_cursor(&self, cursor: &Cursor) {
        let Some(applied) = &cursor.last_applied else {
            return;
        };
        let mut m = self.inner.marks.lock().unwrap_or_else(|e| e.into_inner());
        if m.last_applied.as_deref() == Some(applied.sha.as_str()) && m.branch == cursor.branch {
            return;
        }
        m.last_applied = Some(applied.sha.clone());
        m.branch = cursor.branch.clone();
        self.save_marks(&m);
    }
}
