//! Per-commit processing: from the last applied commit to the head of the followed branch,
//! each commit on the first-parent chain is loaded, validated, compared with the applied
//! state and applied, with its events, in one store transaction.
//!
//! Invariants:
//! - A commit is compared with the last *applied* state (never with an invalid commit), so a
//!   bad commit followed by a fixing one produces the events of the net change once.
//! - Nothing of an invalid commit is applied; it is recorded with all its diagnostics.
//! - The cursor moves in the same transaction as the state and events it stands for, so after
//!   a crash the daemon starts again at the first commit not recorded.

pub mod plan;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::load::Loader;
use crate::git::Oid;
use crate::git::history::{CommitHeader, History, RevisionError};
use crate::git::revision::{GitFiles, RevisionFiles};
use crate::store::{
    Commit, Committed, CursorUpdate, Opened, Revision, RevisionStatus, Store, StoreError,
};
use plan::{CommitInfo, Mode, Plan, PlanInput, Rows, Sides};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("git: {0}")]
    Git(#[from] crate::git::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot load commit {sha}: {message}")]
    Load { sha: String, message: String },
    #[error("--replay-from {rev}: {message}")]
    Replay { rev: String, message: String },
}

/// Resolves `--replay-from REV` in the repository at `git_dir`: it must name a commit on the
/// history of `head` (the head itself included). Done before anything is stored, so a typo is
/// an error at start rather than a silent baseline.
pub fn resolve_replay_from(
    git_dir: &Path,
    rev: &str,
    head: Oid,
    branch: &str,
) -> Result<Oid, ReconcileError> {
    let repo = History::open(git_dir)?;
    let bad = |message: String| ReconcileError::Replay {
        rev: rev.to_string(),
        message,
    };
    let hint = format!(
        "give a commit sha, tag or branch of {} that is on the history of `{branch}`",
        git_dir.display()
    );
    let c = repo
        .resolve(rev)
        .map_err(|e: RevisionError| bad(format!("{e}; {hint}")))?;
    if !repo.is_on_history_of(head, c)? {
        return Err(bad(format!(
            "commit {c} is not an ancestor of the head of `{branch}` ({head}); {hint}"
        )));
    }
    Ok(c)
}

/// What one call to [`Reconciler::sync`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    pub processed: Vec<Processed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Processed {
    pub sha: String,
    pub status: RevisionStatus,
    pub forced: bool,
    pub events: Vec<u64>,
    pub event_types: Vec<String>,
    pub errors: usize,
    pub duration_ms: f64,
}

/// Sees each plan before it is applied.
pub type PlanHook = Box<dyn FnMut(&Plan) + Send>;

/// A test-only hook run as passes and commits start (see `Reconciler::fault`).
#[cfg(test)]
pub(crate) type FaultHook = Box<dyn FnMut(&str) + Send>;

/// Follows one branch of one repository into one store.
pub struct Reconciler {
    store: Store,
    loader: Loader,
    git_dir: PathBuf,
    branch: String,
    /// The applied rows, as in the store.
    rows: Rows,
    /// Start from this revision instead of the head (first run only).
    replay_from: Option<String>,
    rebuilt: Option<String>,
    /// The daemon's shutdown: once cancelled, a pass stops between two commits.
    shutdown: CancellationToken,
    /// Signs the daemon's promotion commits; without it no promotion trailer is trusted.
    promotion_key: Option<crate::promotion::PromotionKey>,
    /// Called whenever processing moves on (a commit started, loaded, stored): the daemon's
    /// watchdog tells a busy reconciler from a stuck one by it.
    progress: Option<Arc<dyn Fn() + Send + Sync>>,
    /// The commit being processed, for reports of a pass that failed in the middle.
    current: Option<String>,
    /// Shown every plan before it is applied (see [`Reconciler::inspect_plans`]).
    inspect: Option<PlanHook>,
    /// Test-only fault injection, run as each pass starts (with "") and as each commit starts
    /// (with its sha). Never compiled into the daemon.
    #[cfg(test)]
    pub(crate) fault: Option<FaultHook>,
}

impl Reconciler {
    /// `opened` tells whether the store was just rebuilt (recorded in the cursor).
    pub fn new(
        store: Store,
        git_dir: &Path,
        branch: &str,
        replay_from: Option<String>,
        opened: &Opened,
    ) -> Result<Self, ReconcileError> {
        let rows = store.rows()?;
        let cursor = store.cursor()?;
        let rebuilt = match opened {
            Opened::Rebuilt {
                moved_to,
                reason,
                previous,
            } => Some(format!(
                "the store was unreadable ({reason}); it was moved to {} and rebuilt from Git; {}",
                moved_to.display(),
                match previous {
                    Some(m) => format!(
                        "event ids go on from {} (past every id of the old store){}",
                        m.event_ids_below,
                        match &m.last_applied {
                            Some(sha) => format!(
                                ", and the commits after {sha} (the old store's last applied \
                                 commit) are replayed"
                            ),
                            None => String::new(),
                        }
                    ),
                    None => "its marks file could not be read, so event ids restarted at 1 and \
                             the head was taken as the new baseline"
                        .to_string(),
                }
            )),
            _ => None,
        };
        if replay_from.is_some() && cursor.last_applied.is_some() {
            tracing::warn!(
                "--replay-from is ignored: the store already has an applied revision (it only \
                 applies to a fresh state directory)"
            );
        }
        if let Some(b) = &cursor.branch
            && b != branch
            && cursor.last_applied.is_some()
        {
            tracing::warn!(
                stored = %b, following = %branch,
                "the store followed another branch; comparing tree to tree"
            );
        }
        Ok(Self {
            store,
            loader: Loader::new(),
            git_dir: git_dir.to_path_buf(),
            branch: branch.to_string(),
            rows,
            replay_from,
            rebuilt,
            shutdown: CancellationToken::new(),
            promotion_key: None,
            progress: None,
            current: None,
            inspect: None,
            #[cfg(test)]
            fault: None,
        })
    }

    /// Trusts promotion trailers signed with `key` (see `crate::promotion`).
    pub fn with_promotion_key(mut self, key: crate::promotion::PromotionKey) -> Self {
        self.promotion_key = Some(key);
        self
    }

    /// Calls `f` with the plan of every commit, before it is applied (plan snapshots, tools).
    pub fn inspect_plans(&mut self, f: PlanHook) {
        self.inspect = Some(f);
    }

    /// Calls `f` whenever processing moves on (see [`Reconciler::sync`]).
    pub fn set_progress(&mut self, f: Arc<dyn Fn() + Send + Sync>) {
        self.progress = Some(f);
    }

    fn tick(&self) {
        if let Some(f) = &self.progress {
            f();
        }
    }

    /// The commit a pass was processing when it failed or panicked, if any.
    pub fn current_commit(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Makes the reconciler consistent with the store again after a pass that did not finish
    /// (a panic): the applied rows are read back and the loader starts empty.
    pub fn recover(&mut self) -> Result<(), ReconcileError> {
        self.rows = self.store.rows()?;
        self.loader = Loader::new();
        self.current = None;
        Ok(())
    }

    /// Records `sha` as a commit mockops could not process (an internal error, such as a
    /// panic on every attempt): like an invalid commit, nothing of it is applied, its
    /// revision says why, and the next commit is compared with the last applied state.
    pub fn record_internal_error(
        &mut self,
        sha: &str,
        message: &str,
    ) -> Result<(), ReconcileError> {
        let header = History::open(&self.git_dir)?.header(Oid::from_str(sha)?)?;
        let revision = Revision {
            seq: 0,
            sha: sha.to_string(),
            status: RevisionStatus::Invalid,
            compared_with: self.store.cursor()?.last_applied.map(|r| r.sha),
            forced: false,
            author: format!("{} <{}>", header.author_name, header.author_email),
            summary: header.summary,
            committed_at: crate::util::time::unix_rfc3339(header.time),
            processed_at: crate::util::time::now_rfc3339(),
            diagnostics: vec![serde_json::json!({
                "severity": "error",
                "code": "internal-error",
                "file": "",
                "line": 0,
                "column": 0,
                "message": format!("mockops failed while processing this commit: {message}"),
                "hint": "this is a bug in mockops, not in the commit: please report it with \
                         the daemon's log. The commit is skipped; the next one is compared \
                         with the last applied state",
            })],
            errors: 1,
            warnings: 0,
            events: Vec::new(),
            changed_entities: 0,
        };
        self.store.commit(
            Commit {
                revision: Some(revision),
                ..Commit::default()
            },
            CursorUpdate::Branch(self.branch.clone()),
        )?;
        self.current = None;
        Ok(())
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stops [`Reconciler::sync`] between two commits once `shutdown` is cancelled (the
    /// daemon's one shutdown token).
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Processes every commit between the last applied one and `head`, in order.
    pub fn sync(&mut self, head: Oid) -> Result<SyncReport, ReconcileError> {
        self.current = None;
        #[cfg(test)]
        if let Some(f) = self.fault.as_mut() {
            f("");
        }
        let mut report = SyncReport::default();
        let cursor = self.store.cursor()?;
        if cursor.last_attempted.as_ref().map(|r| r.sha.as_str()) == Some(&head.to_string()) {
            return Ok(report);
        }
        let repo = History::open(&self.git_dir)?;
        let Some(applied) = cursor.last_applied.as_ref() else {
            // A fresh store: take a baseline without replaying history, unless asked to
            // (`--replay-from`, or the old cursor of a store rebuilt after corruption).
            let base = match self.replay_from.as_deref() {
                // Validated before it is consumed: a bad revision stays an error.
                Some(rev) => resolve_replay_from(&self.git_dir, rev, head, &self.branch)?,
                None => match cursor.resume_from.as_deref() {
                    Some(old) => match Oid::from_str(old).ok().filter(|o| {
                        repo.has_commit(*o) && repo.is_on_history_of(head, *o).unwrap_or(false)
                    }) {
                        Some(o) => {
                            tracing::info!(
                                from = %o, "the rebuilt store replays the commits after the old store's cursor"
                            );
                            o
                        }
                        None => {
                            tracing::warn!(
                                old_cursor = %old,
                                "the old store's cursor is not on the history of the head; taking the head as the baseline"
                            );
                            head
                        }
                    },
                    None => head,
                },
            };
            let p = self.process(&repo, base, Mode::Baseline)?;
            self.replay_from = None;
            let baseline_applied = p.status == RevisionStatus::Baseline;
            report.processed.push(p);
            if base == head || !baseline_applied {
                return Ok(report);
            }
            return self.walk(
                &repo,
                base,
                head,
                cursor.last_attempted.map(|r| r.sha),
                report,
            );
        };
        let applied_oid = Oid::from_str(&applied.sha)?;
        let descends = repo.has_commit(applied_oid) && repo.is_on_history_of(head, applied_oid)?;
        if !descends {
            // Force-push (or another branch): the applied commit is gone from the chain.
            let p = self.process(&repo, head, Mode::Forced)?;
            report.processed.push(p);
            return Ok(report);
        }
        let attempted = cursor.last_attempted.map(|r| r.sha);
        self.walk(&repo, applied_oid, head, attempted, report)
    }

    fn walk(
        &mut self,
        repo: &History,
        from: Oid,
        head: Oid,
        attempted: Option<String>,
        mut report: SyncReport,
    ) -> Result<SyncReport, ReconcileError> {
        let mut chain = repo.first_parent_chain(from, head)?;
        // Commits up to the last attempted one were already recorded (invalid ones).
        if let Some(a) = attempted
            && let Some(pos) = chain.iter().position(|c| c.to_string() == a)
        {
            chain.drain(..=pos);
        }
        for oid in chain {
            if self.shutdown.is_cancelled() {
                break;
            }
            report.processed.push(self.process(repo, oid, Mode::Next)?);
        }
        Ok(report)
    }

    /// Loads `oid` and what its plan needs (IO), plans it (pure), and applies the plan (the
    /// one write). Everything logged meanwhile carries the commit.
    #[tracing::instrument(skip_all, fields(commit = %oid, mode = ?mode))]
    fn process(
        &mut self,
        repo: &History,
        oid: Oid,
        mode: Mode,
    ) -> Result<Processed, ReconcileError> {
        let started = std::time::Instant::now();
        let sha = oid.to_string();
        self.current = Some(sha.clone());
        self.tick();
        #[cfg(test)]
        if let Some(f) = self.fault.as_mut() {
            f(&sha);
        }
        let info = commit_info(&repo.header(oid)?);
        let files = GitFiles::open(&self.git_dir, &sha)?;
        let loaded = self.loader.load(&files).map_err(|e| ReconcileError::Load {
            sha: sha.clone(),
            message: e.to_string(),
        })?;
        self.tick();
        let compared_with = self.store.cursor()?.last_applied.map(|r| r.sha);
        let known_workspaces = self.store.workspace_ids()?;
        let old_files = match mode {
            Mode::Baseline => None,
            _ => compared_with
                .as_deref()
                .and_then(|p| GitFiles::open(&self.git_dir, p).ok()),
        };
        let promotion_messages = match (mode, &self.promotion_key) {
            (Mode::Baseline, _) | (_, None) => Vec::new(),
            (_, Some(_)) => repo.messages_brought_in(oid).unwrap_or_default(),
        };
        let blob = |id: &str| Oid::from_str(id).ok().and_then(|o| files.read_blob(o).ok());
        let sides = Sides {
            old: old_files.as_ref().map(|f| f as &dyn RevisionFiles),
            new: &files,
            blob: &blob,
        };
        let plan = plan::plan(PlanInput {
            commit: &info,
            mode,
            processed_at: crate::util::time::now_rfc3339(),
            compared_with,
            loaded: &loaded,
            applied: &self.rows,
            known_workspaces: &known_workspaces,
            sides: &sides,
            promotion_messages: &promotion_messages,
            promotion_key: self.promotion_key.as_ref(),
        });
        if let Some(f) = self.inspect.as_mut() {
            f(&plan);
        }
        let (status, errors, changed) = (
            plan.revision.status,
            plan.revision.errors,
            plan.changes.len(),
        );
        if status == RevisionStatus::Invalid {
            tracing::warn!(commit = %sha, errors, "commit is invalid; the last good state stays");
        }
        self.tick();
        let c = self.apply(plan)?;
        self.current = None;
        self.tick();
        if status != RevisionStatus::Invalid {
            tracing::info!(
                commit = %sha, status = ?status, events = c.events.len(),
                changed, "commit applied"
            );
        }
        Ok(processed(&sha, status, mode, &c, errors, started))
    }

    /// Writes `plan` in one store transaction (with the cursor) and takes its rows as the
    /// applied ones. The only write of a commit.
    fn apply(&mut self, plan: Plan) -> Result<Committed, ReconcileError> {
        let cursor_update = match self.rebuilt.take() {
            Some(reason) => CursorUpdate::Rebuilt {
                branch: self.branch.clone(),
                reason,
            },
            None => CursorUpdate::Branch(self.branch.clone()),
        };
        let (commit, rows) = plan.into_commit();
        let c = self.store.commit(commit, cursor_update)?;
        if let Some(rows) = rows {
            self.rows = rows;
        }
        Ok(c)
    }
}

fn commit_info(h: &CommitHeader) -> CommitInfo {
    CommitInfo {
        sha: h.sha.clone(),
        author: format!("{} <{}>", h.author_name, h.author_email),
        summary: h.summary.clone(),
        committed_at: crate::util::time::unix_rfc3339(h.time),
    }
}

fn processed(
    sha: &str,
    status: RevisionStatus,
    mode: Mode,
    c: &Committed,
    errors: usize,
    started: std::time::Instant,
) -> Processed {
    Processed {
        sha: sha.to_string(),
        status,
        forced: mode == Mode::Forced,
        events: c.events.iter().map(|e| e.id).collect(),
        event_types: c.events.iter().map(|e| e.event_type.clone()).collect(),
        errors,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}
