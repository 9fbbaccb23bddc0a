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

use git2::{Oid, Repository};
use serde::Serialize;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::config::load::Loader;
use crate::diag::Severity;
use crate::source::{GitFiles, SourceFiles};
use crate::store::{
    Commit, Committed, CursorUpdate, Opened, Revision, RevisionStatus, Store, StoreError,
};
use plan::{CommitInfo, Rows, Sides};

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("git: {0}")]
    Git(#[from] git2::Error),
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
    let repo = Repository::open(git_dir)?;
    let bad = |message: String| ReconcileError::Replay {
        rev: rev.to_string(),
        message,
    };
    let hint = format!(
        "give a commit sha, tag or branch of {} that is on the history of `{branch}`",
        git_dir.display()
    );
    let obj = repo
        .revparse_single(rev)
        .map_err(|e| bad(format!("no such revision ({}); {hint}", e.message())))?;
    let c = obj
        .peel_to_commit()
        .map_err(|e| bad(format!("does not name a commit ({}); {hint}", e.message())))?;
    if c.id() != head && !repo.graph_descendant_of(head, c.id())? {
        return Err(bad(format!(
            "commit {} is not an ancestor of the head of `{branch}` ({head}); {hint}",
            c.id()
        )));
    }
    Ok(c.id())
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
            #[cfg(test)]
            fault: None,
        })
    }

    /// Trusts promotion trailers signed with `key` (see `crate::promotion`).
    pub fn with_promotion_key(mut self, key: crate::promotion::PromotionKey) -> Self {
        self.promotion_key = Some(key);
        self
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
        let repo = Repository::open(&self.git_dir)?;
        let commit = repo.find_commit(Oid::from_str(sha)?)?;
        let author = commit.author();
        let revision = Revision {
            seq: 0,
            sha: sha.to_string(),
            status: RevisionStatus::Invalid,
            compared_with: self.store.cursor()?.last_applied.map(|r| r.sha),
            forced: false,
            author: format!(
                "{} <{}>",
                String::from_utf8_lossy(author.name_bytes()),
                String::from_utf8_lossy(author.email_bytes())
            ),
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into(),
            committed_at: crate::time::unix_rfc3339(commit.time().seconds()),
            processed_at: crate::time::now_rfc3339(),
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
        let repo = Repository::open(&self.git_dir)?;
        let Some(applied) = cursor.last_applied.as_ref() else {
            // A fresh store: take a baseline without replaying history, unless asked to
            // (`--replay-from`, or the old cursor of a store rebuilt after corruption).
            let base = match self.replay_from.as_deref() {
                // Validated before it is consumed: a bad revision stays an error.
                Some(rev) => resolve_replay_from(&self.git_dir, rev, head, &self.branch)?,
                None => match cursor.resume_from.as_deref() {
                    Some(old) => match Oid::from_str(old).ok().filter(|o| {
                        repo.find_commit(*o).is_ok()
                            && (*o == head || repo.graph_descendant_of(head, *o).unwrap_or(false))
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
            let p = self.process(&repo, base, Step::Baseline)?;
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
        let descends = repo.find_commit(applied_oid).is_ok()
            && (applied_oid == head || repo.graph_descendant_of(head, applied_oid)?);
        if !descends {
            // Force-push (or another branch): the applied commit is gone from the chain.
            let p = self.process(&repo, head, Step::Forced)?;
            report.processed.push(p);
            return Ok(report);
        }
        let attempted = cursor.last_attempted.map(|r| r.sha);
        self.walk(&repo, applied_oid, head, attempted, report)
    }

    fn walk(
        &mut self,
        repo: &Repository,
        from: Oid,
        head: Oid,
        attempted: Option<String>,
        mut report: SyncReport,
    ) -> Result<SyncReport, ReconcileError> {
        let mut chain = first_parent_chain(repo, from, head)?;
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
            report.processed.push(self.process(repo, oid, Step::Next)?);
        }
        Ok(report)
    }

    fn process(
        &mut self,
        repo: &Repository,
        oid: Oid,
        step: Step,
    ) -> Result<Processed, ReconcileError> {
        let started = std::time::Instant::now();
        let sha = oid.to_string();
        self.current = Some(sha.clone());
        self.tick();
        #[cfg(test)]
        if let Some(f) = self.fault.as_mut() {
            f(&sha);
        }
        let commit = repo.find_commit(oid)?;
        let author = {
            let a = commit.author();
            format!(
                "{} <{}>",
                String::from_utf8_lossy(a.name_bytes()),
                String::from_utf8_lossy(a.email_bytes())
            )
        };
        let summary = String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into();
        let committed_at = crate::time::unix_rfc3339(commit.time().seconds());
        let files = GitFiles::open(&self.git_dir, &sha)?;
        let loaded = self.loader.load(&files).map_err(|e| ReconcileError::Load {
            sha: sha.clone(),
            message: e.to_string(),
        })?;
        self.tick();
        let (errors, warnings) = crate::diag::counts(&loaded.diagnostics);
        let previous = self.store.cursor()?.last_applied.map(|r| r.sha);
        let mut revision = Revision {
            seq: 0,
            sha: sha.clone(),
            status: RevisionStatus::Applied,
            compared_with: previous.clone(),
            forced: step == Step::Forced,
            author: author.clone(),
            summary,
            committed_at,
            processed_at: crate::time::now_rfc3339(),
            diagnostics: loaded
                .diagnostics
                .iter()
                .map(|d| serde_json::to_value(d).unwrap_or(Json::Null))
                .collect(),
            errors,
            warnings,
            events: Vec::new(),
            changed_entities: 0,
        };
        let cursor_update = match self.rebuilt.take() {
            Some(reason) => CursorUpdate::Rebuilt {
                branch: self.branch.clone(),
                reason,
            },
            None => CursorUpdate::Branch(self.branch.clone()),
        };
        if loaded
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            revision.status = RevisionStatus::Invalid;
            tracing::warn!(commit = %sha, errors, "commit is invalid; the last good state stays");
            let c = self.store.commit(
                Commit {
                    revision: Some(revision),
                    ..Commit::default()
                },
                cursor_update,
            )?;
            self.current = None;
            self.tick();
            return Ok(processed(
                &sha,
                RevisionStatus::Invalid,
                step,
                &c,
                errors,
                started,
            ));
        }
        let new_rows = plan::rows(&loaded.state, &self.rows);
        let changes = plan::entity_changes(&self.rows, &new_rows);
        let known = plan::workspaces(&new_rows);
        let mut fresh_ws = Vec::new();
        for (id, (name, service)) in &known {
            if !self.store.workspace_known(id)? {
                fresh_ws.push((id.clone(), name.clone(), service.clone()));
            }
        }
        let mut events = Vec::new();
        if step != Step::Baseline {
            let old_files = previous
                .as_deref()
                .and_then(|p| GitFiles::open(&self.git_dir, p).ok());
            let blob = |id: &str| Oid::from_str(id).ok().and_then(|o| files.read_blob(o).ok());
            let sides = Sides {
                old: old_files.as_ref().map(|f| f as &dyn SourceFiles),
                new: &files,
                blob: &blob,
            };
            let info = CommitInfo {
                sha: sha.clone(),
                author,
            };
            events = plan::events(&changes, &new_rows, &fresh_ws, &info, &sides);
            if let Some(key) = &self.promotion_key {
                events.extend(promotions(repo, &commit, &info, key));
            }
        } else {
            revision.status = RevisionStatus::Baseline;
        }
        revision.changed_entities = changes.len();
        let mut put = Vec::new();
        let mut delete = Vec::new();
        for c in &changes {
            match &c.new {
                Some(r) => put.push((c.key.clone(), Arc::clone(r))),
                None => delete.push(c.key.clone()),
            }
        }
        let status = revision.status;
        self.tick();
        let c = self.store.commit(
            Commit {
                revision: Some(revision),
                put,
                delete,
                events,
                workspaces: fresh_ws.into_iter().map(|w| w.0).collect(),
                replace_all: false,
            },
            cursor_update,
        )?;
        self.rows = new_rows;
        self.current = None;
        self.tick();
        tracing::info!(
            commit = %sha, status = ?status, events = c.events.len(),
            changed = changes.len(), "commit applied"
        );
        Ok(processed(&sha, status, step, &c, errors, started))
    }
}

fn processed(
    sha: &str,
    status: RevisionStatus,
    step: Step,
    c: &Committed,
    errors: usize,
    started: std::time::Instant,
) -> Processed {
    Processed {
        sha: sha.to_string(),
        status,
        forced: step == Step::Forced,
        events: c.events.iter().map(|e| e.id).collect(),
        event_types: c.events.iter().map(|e| e.event_type.clone()).collect(),
        errors,
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Baseline,
    Next,
    Forced,
}

/// Commits on the first-parent chain of `head` after `from`, oldest first.
fn first_parent_chain(repo: &Repository, from: Oid, head: Oid) -> Result<Vec<Oid>, git2::Error> {
    let mut chain = Vec::new();
    let mut cur = repo.find_commit(head)?;
    while cur.id() != from {
        chain.push(cur.id());
        if cur.parent_count() == 0 {
            break;
        }
        // Stop once the chain has reached history the applied commit already contains.
        let parent = cur.parent(0)?;
        if parent.id() != from && repo.graph_descendant_of(from, parent.id())? {
            break;
        }
        cur = parent;
    }
    chain.reverse();
    Ok(chain)
}

/// `promotion.completed` for every promotion commit this commit brings in: the commit itself,
/// or for a merge the commits of the merged side (the trailers survive merge commits and
/// GitHub's squash messages). Only trailers signed with the daemon's key count: a hand-written
/// trailer cannot forge a promotion.
fn promotions(
    repo: &Repository,
    commit: &git2::Commit<'_>,
    info: &plan::CommitInfo,
    key: &crate::promotion::PromotionKey,
) -> Vec<crate::store::NewEvent> {
    let mut messages = vec![String::from_utf8_lossy(commit.message_bytes()).into_owned()];
    if commit.parent_count() > 1
        && let Ok(mut walk) = repo.revwalk()
        && walk.push(commit.id()).is_ok()
        && commit.parent_id(0).is_ok_and(|p| walk.hide(p).is_ok())
    {
        for oid in walk.flatten().take(1000) {
            if oid != commit.id()
                && let Ok(c) = repo.find_commit(oid)
            {
                messages.push(String::from_utf8_lossy(c.message_bytes()).into_owned());
            }
        }
    }
    let mut out = Vec::new();
    for m in messages {
        let Some((id, what)) = crate::promotion::verified(&m, key) else {
            if m.contains(crate::promotion::ID_TRAILER) {
                tracing::warn!(
                    commit = %info.sha,
                    "a commit carries a promotion trailer without this daemon's signature; ignored"
                );
            }
            continue;
        };
        let parts: Vec<&str> = what.split_whitespace().collect();
        let [entity_type, entity_id, from, to] = parts[..] else {
            continue;
        };
        let mut e = crate::store::NewEvent::new(
            "promotion.completed",
            crate::store::Source::commit(&info.sha),
        )
        .with("promotion_id", id.clone())
        .with("entity_type", entity_type)
        .with("entity_id", entity_id)
        .with("from_environment", from)
        .with("to_environment", to)
        .with("commit", info.sha.clone())
        .with("author", info.author.clone());
        e.dedup_key = Some(format!("promotion:{id}"));
        out.push(e);
    }
    out
}
