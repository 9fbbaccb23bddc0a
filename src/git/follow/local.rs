//! A repository on local disk: its branch head read with git2, and a notify watcher on the
//! refs that turns ref updates into "look now" hints.
//!
//! Only `HEAD`, `packed-refs` and `refs/` are watched, never the objects or the work tree, so
//! the cost does not grow with the repository. Worktrees and bare repositories are handled by
//! asking git2 for the Git directory and the common directory (where shared refs live).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{ErrorKind, RecursiveMode};
use notify_debouncer_full::{
    DebounceEventResult, Debouncer, RecommendedCache, new_debouncer, notify,
};

use super::{FollowError, Hints};

type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// Default quiet period before a burst of ref changes becomes one hint.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(30);

/// A local repository and the branch followed in it. Cheap to clone; clones share the watcher
/// and the hints.
#[derive(Clone)]
pub struct LocalFollower {
    inner: Arc<LocalInner>,
}

struct LocalInner {
    path: PathBuf,
    git_dir: PathBuf,
    common_dir: PathBuf,
    branch: String,
    refname: String,
    hints: Hints,
    watcher: Mutex<Option<Watcher>>,
}

impl LocalFollower {
    /// Opens the repository at `path` (a work tree, a linked worktree or a bare repository) and
    /// follows `branch`, or the branch its `HEAD` names when `branch` is `None`.
    pub fn open(path: &Path, branch: Option<&str>) -> Result<Self, FollowError> {
        let open_err = |detail: String| FollowError::Open {
            path: path.to_path_buf(),
            detail,
        };
        let path = std::fs::canonicalize(path).map_err(|e| open_err(e.to_string()))?;
        let repo = git2::Repository::open(&path).map_err(|e| {
            open_err(format!(
                "{} (give the path of a Git work tree or bare repository)",
                e.message()
            ))
        })?;
        let branch = match branch {
            Some(b) => b.strip_prefix("refs/heads/").unwrap_or(b).to_string(),
            None => head_branch(&repo)
                .ok_or_else(|| FollowError::DetachedHead { path: path.clone() })?,
        };
        let refname = format!("refs/heads/{branch}");
        if branch.is_empty() || !git2::Reference::is_valid_name(&refname) {
            return Err(FollowError::InvalidBranch { branch });
        }
        let git_dir = repo.path().to_path_buf();
        let common_dir = repo.commondir().to_path_buf();
        Ok(Self {
            inner: Arc::new(LocalInner {
                path,
                git_dir,
                common_dir,
                branch,
                refname,
                hints: Hints::new(),
                watcher: Mutex::new(None),
            }),
        })
    }

    /// The commit the branch points at. Opens the repository for each call, so nothing is
    /// cached between calls and no `Repository` is shared across threads. Blocking.
    pub fn head(&self) -> Result<git2::Oid, FollowError> {
        let inner = &self.inner;
        let git_err = |e: git2::Error| FollowError::Git {
            branch: inner.branch.clone(),
            path: inner.path.clone(),
            detail: e.message().to_string(),
        };
        let repo = git2::Repository::open(&inner.path).map_err(|e| FollowError::Open {
            path: inner.path.clone(),
            detail: e.message().to_string(),
        })?;
        let reference = match repo.find_reference(&inner.refname) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => {
                return Err(FollowError::BranchMissing {
                    branch: inner.branch.clone(),
                    location: inner.path.display().to_string(),
                });
            }
            Err(e) => return Err(git_err(e)),
        };
        let commit = reference.peel_to_commit().map_err(git_err)?;
        Ok(commit.id())
    }

    /// The path to open commits from (the repository as given, canonicalised).
    pub fn repo_path(&self) -> &Path {
        &self.inner.path
    }

    /// The Git directory (`.git`, `.git/worktrees/<name>`, or the bare repository itself).
    pub fn git_dir(&self) -> &Path {
        &self.inner.git_dir
    }

    pub fn branch(&self) -> &str {
        &self.inner.branch
    }

    pub fn hints(&self) -> &Hints {
        &self.inner.hints
    }

    /// Starts (or restarts) watching the refs; a change pokes [`LocalFollower::hints`] after
    /// `debounce` of quiet. Never fails: if the watcher cannot be set up, or later loses
    /// events, the hints are marked degraded with the reason, it is logged, and the caller's
    /// periodic resync carries on alone. Returns whether every watch was installed.
    pub fn start_watching(&self, debounce: Duration) -> bool {
        let inner = &self.inner;
        let filter = RefFilter {
            refs_dir: inner.common_dir.join("refs"),
            git_dirs: dedup(vec![inner.git_dir.clone(), inner.common_dir.clone()]),
        };
        let hints = inner.hints.clone();
        let debounce = debounce.max(Duration::from_millis(3));
        let created = new_debouncer(debounce, Some(debounce / 3), {
            let hints = hints.clone();
            move |result: DebounceEventResult| handle(&hints, &filter, result)
        });
        let mut watcher = match created {
            Ok(w) => w,
            Err(e) => {
                let reason = watch_failure("cannot start the file watcher", &e);
                tracing::warn!(repo = %inner.path.display(), "{reason}");
                hints.mark_degraded(reason);
                return false;
            }
        };
        let mut all = true;
        let mut targets = vec![(inner.common_dir.join("refs"), RecursiveMode::Recursive)];
        for dir in dedup(vec![inner.git_dir.clone(), inner.common_dir.clone()]) {
            targets.push((dir, RecursiveMode::NonRecursive));
        }
        for (target, mode) in targets {
            if let Err(e) = watcher.watch(&target, mode) {
                let reason = watch_failure(&format!("cannot watch {}", target.display()), &e);
                tracing::warn!(repo = %inner.path.display(), "{reason}");
                hints.mark_degraded(reason);
                all = false;
            }
        }
        *inner.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(watcher);
        all
    }

    /// Tries to watch again after the watcher degraded (a raised inotify limit, a recreated
    /// directory): a new watcher replaces the old one, and the degraded mark is cleared if every
    /// watch is installed. Returns whether it is.
    pub fn rearm_watching(&self, debounce: Duration) -> bool {
        self.stop_watching();
        self.inner.hints.clear_degraded();
        let ok = self.start_watching(debounce);
        if ok {
            tracing::info!(repo = %self.inner.path.display(), "file watcher re-armed");
        }
        ok
    }

    /// Stops the watcher (dropping the last clone of the source does too).
    pub fn stop_watching(&self) {
        self.inner
            .watcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// The short name of the branch `HEAD` points at, if `HEAD` is symbolic (an unborn branch
/// counts).
fn head_branch(repo: &git2::Repository) -> Option<String> {
    let head = repo.find_reference("HEAD").ok()?;
    let target = head.symbolic_target().ok()??;
    target.strip_prefix("refs/heads/").map(str::to_string)
}

fn dedup(mut v: Vec<PathBuf>) -> Vec<PathBuf> {
    v.dedup();
    v
}

fn watch_failure(what: &str, e: &notify::Error) -> String {
    match e.kind {
        ErrorKind::MaxFilesWatch => format!(
            "{what}: the OS limit on file watches is reached (raise fs.inotify.max_user_watches); \
             falling back to the periodic resync"
        ),
        _ => format!("{what}: {e}; falling back to the periodic resync"),
    }
}

/// Which paths are ref changes: anything under `refs/` and `HEAD` / `packed-refs` in a Git
/// directory, but not the lock files Git writes before renaming them into place.
struct RefFilter {
    refs_dir: PathBuf,
    git_dirs: Vec<PathBuf>,
}

impl RefFilter {
    fn is_ref_change(&self, path: &Path) -> bool {
        if path.extension().is_some_and(|e| e == "lock") {
            return false;
        }
        if path.starts_with(&self.refs_dir) {
            return true;
        }
        let named = path
            .file_name()
            .is_some_and(|n| n == "HEAD" || n == "packed-refs");
        named
            && path
                .parent()
                .is_some_and(|p| self.git_dirs.iter().any(|d| d == p))
    }
}

/// Reads (including this process's own reads of the refs) are not changes; counting them would
/// make every look at the head cause another.
fn is_write(kind: &notify::EventKind) -> bool {
    !matches!(kind, notify::EventKind::Access(_))
}

fn handle(hints: &Hints, filter: &RefFilter, result: DebounceEventResult) {
    match result {
        Ok(events) => {
            let mut look = false;
            for event in &events {
                if event.need_rescan() {
                    hints.count_rescan();
                    tracing::warn!(
                        "file watcher queue overflowed; events were lost, looking at the refs again"
                    );
                    look = true;
                } else if is_write(&event.kind)
                    && event.paths.iter().any(|p| filter.is_ref_change(p))
                {
                    look = true;
                }
            }
            if look {
                hints.poke();
            }
        }
        Err(errors) => {
            for e in &errors {
                hints.count_watch_error();
                let reason = watch_failure("file watcher error", e);
                tracing::warn!("{reason}");
                if matches!(e.kind, ErrorKind::MaxFilesWatch) {
                    hints.mark_degraded(reason);
                }
            }
            // Whatever the error hid, the refs may have moved.
            hints.poke();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> RefFilter {
        RefFilter {
            refs_dir: PathBuf::from("/r/.git/refs"),
            git_dirs: vec![
                PathBuf::from("/r/.git/worktrees/wt"),
                PathBuf::from("/r/.git"),
            ],
        }
    }

    #[test]
    fn ref_paths_are_changes() {
        let f = filter();
        for p in [
            "/r/.git/refs/heads/main",
            "/r/.git/refs/heads/feature/x",
            "/r/.git/refs/remotes/origin/main",
            "/r/.git/HEAD",
            "/r/.git/packed-refs",
            "/r/.git/worktrees/wt/HEAD",
        ] {
            assert!(f.is_ref_change(Path::new(p)), "{p}");
        }
    }

    #[test]
    fn other_paths_are_not() {
        let f = filter();
        for p in [
            "/r/.git/refs/heads/main.lock",
            "/r/.git/HEAD.lock",
            "/r/.git/packed-refs.lock",
            "/r/.git/index",
            "/r/.git/ORIG_HEAD",
            "/r/.git/objects/ab/cdef",
            "/r/.git/logs/HEAD",
            "/r/HEAD",
        ] {
            assert!(!f.is_ref_change(Path::new(p)), "{p}");
        }
    }

    fn repo_with_commit(dir: &Path) -> git2::Oid {
        let repo = git2::Repository::init(dir).expect("init");
        let sig = git2::Signature::now("T", "t@example.com").expect("sig");
        let tree = repo
            .find_tree(repo.index().expect("index").write_tree().expect("tree"))
            .expect("find tree");
        repo.commit(Some("HEAD"), &sig, &sig, "first", &tree, &[])
            .expect("commit")
    }

    #[tokio::test]
    async fn a_degraded_watcher_is_rearmed_and_sees_commits_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = repo_with_commit(dir.path());
        let src = LocalFollower::open(dir.path(), None).expect("open source");
        src.hints()
            .mark_degraded("file watcher error: queue lost".into());
        assert!(src.hints().is_degraded());
        assert!(src.rearm_watching(Duration::from_millis(20)));
        assert!(!src.hints().is_degraded());
        assert_eq!(src.hints().degraded_reason(), None);

        let repo = git2::Repository::open(dir.path()).expect("open");
        let parent = repo.find_commit(first).expect("first");
        let sig = git2::Signature::now("T", "t@example.com").expect("sig");
        repo.commit(
            Some("HEAD"),
            &sig,
            &sig,
            "second",
            &parent.tree().expect("tree"),
            &[&parent],
        )
        .expect("commit");
        assert!(
            src.hints().wait_timeout(Duration::from_secs(5)).await,
            "the re-armed watcher sees the commit"
        );
    }

    #[test]
    fn follows_head_branch_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = repo_with_commit(dir.path());
        let repo = git2::Repository::open(dir.path()).expect("open");
        let name = head_branch(&repo).expect("symbolic head");
        let src = LocalFollower::open(dir.path(), None).expect("open source");
        assert_eq!(src.branch(), name);
        assert_eq!(src.head().expect("head"), id);
    }

    #[test]
    fn missing_branch_and_detached_head_are_explained() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = repo_with_commit(dir.path());
        let src = LocalFollower::open(dir.path(), Some("nope")).expect("open source");
        let e = src.head().expect_err("missing");
        assert!(matches!(e, FollowError::BranchMissing { .. }), "{e}");
        assert!(e.to_string().contains("`nope`"), "{e}");

        let repo = git2::Repository::open(dir.path()).expect("open");
        repo.set_head_detached(id).expect("detach");
        let e = LocalFollower::open(dir.path(), None)
            .err()
            .expect("detached head");
        assert!(e.to_string().contains("detached"), "{e}");

        let e = LocalFollower::open(dir.path(), Some("bad..name"))
            .err()
            .expect("invalid");
        assert!(matches!(e, FollowError::InvalidBranch { .. }), "{e}");

        let e = LocalFollower::open(&dir.path().join("absent"), None)
            .err()
            .expect("absent");
        assert!(matches!(e, FollowError::Open { .. }), "{e}");
    }
}
