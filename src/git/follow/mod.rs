//! Where the daemon learns which commit is the head of the branch it follows: a local
//! repository (watched with notify) or a remote URL (mirrored into the state directory with
//! git2), plus the "look now" hints that watchers and the push webhook produce.
//!
//! Hints are only hints: the daemon always re-reads the branch with [`BranchFollower::head`] and keeps
//! a periodic resync, because watch events can be lost and webhooks can be missed.

pub mod local;
pub mod remote;
pub mod webhook;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use local::LocalFollower;
pub use remote::{FetchError, HostKeyPolicy, RemoteAuth, RemoteConfig, RemoteFollower};

/// A source of head commits the daemon can use without caring where the repository lives.
#[derive(Clone)]
pub enum BranchFollower {
    Local(LocalFollower),
    Remote(RemoteFollower),
}

impl BranchFollower {
    /// The commit the followed branch points at, read from disk without network access
    /// (the local repository, or the mirror as of the last successful fetch). Blocking.
    pub fn head(&self) -> Result<git2::Oid, FollowError> {
        match self {
            BranchFollower::Local(s) => s.head(),
            BranchFollower::Remote(s) => s.head(),
        }
    }

    /// The Git directory to read commits from (`source::GitFiles::open`): the local repository
    /// itself, or the bare mirror of the remote.
    pub fn repo_path(&self) -> &Path {
        match self {
            BranchFollower::Local(s) => s.repo_path(),
            BranchFollower::Remote(s) => s.repo_path(),
        }
    }

    /// The branch followed (a short name such as `main`).
    pub fn branch(&self) -> &str {
        match self {
            BranchFollower::Local(s) => s.branch(),
            BranchFollower::Remote(s) => s.branch(),
        }
    }

    /// Brings the head up to date and returns it: nothing to do for a local repository (the head
    /// is read again), a fetch for a remote. Blocking; see [`BranchFollower::refresh_async`].
    pub fn refresh(&self) -> Result<git2::Oid, FollowError> {
        match self {
            BranchFollower::Local(s) => s.head(),
            BranchFollower::Remote(s) => s.fetch().map_err(FollowError::Fetch),
        }
    }

    /// [`BranchFollower::refresh`] on the blocking pool. A remote fetch is also bounded by its deadline
    /// here: if libgit2 is stuck past it (plus a grace second), this returns
    /// [`FetchError::Timeout`] while the blocking thread finishes on its own.
    pub async fn refresh_async(&self) -> Result<git2::Oid, FollowError> {
        match self {
            BranchFollower::Local(s) => {
                let s = s.clone();
                tokio::task::spawn_blocking(move || s.head())
                    .await
                    .map_err(|e| FollowError::Task(e.to_string()))?
            }
            BranchFollower::Remote(s) => s.fetch_async().await.map_err(FollowError::Fetch),
        }
    }

    /// "Look now" hints for this source: file-system events of a local repository, and the
    /// push webhook (which calls [`Hints::poke`]) for either kind.
    pub fn hints(&self) -> &Hints {
        match self {
            BranchFollower::Local(s) => s.hints(),
            BranchFollower::Remote(s) => s.hints(),
        }
    }

    /// For logs and status: `local /path (branch main)` or `remote URL (branch main)`, with any
    /// password in the URL redacted.
    pub fn describe(&self) -> String {
        match self {
            BranchFollower::Local(s) => {
                format!("local {} (branch {})", s.repo_path().display(), s.branch())
            }
            BranchFollower::Remote(s) => {
                format!("remote {} (branch {})", s.url_redacted(), s.branch())
            }
        }
    }
}

/// Why the head of a source could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FollowError {
    #[error("cannot open the Git repository at {path}: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error(
        "HEAD of {path} is detached, so there is no branch to follow; name the branch to follow explicitly"
    )]
    DetachedHead { path: PathBuf },
    #[error("branch `{branch}` does not exist in {location}")]
    BranchMissing { branch: String, location: String },
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch { branch: String },
    #[error(
        "the mirror of {url} has no copy of branch `{branch}` yet: the first fetch has not succeeded"
    )]
    NotFetched { url: String, branch: String },
    #[error("reading branch `{branch}` in {path}: {detail}")]
    Git {
        branch: String,
        path: PathBuf,
        detail: String,
    },
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("background task failed: {0}")]
    Task(String),
}

/// A shared "look now" signal with the health of the watcher that feeds it.
///
/// Pokes coalesce: however many arrive while the consumer is busy, it wakes once. There is one
/// consumer (the daemon's loop); any number of producers (watcher, webhook, API).
#[derive(Clone, Default)]
pub struct Hints {
    inner: Arc<HintsInner>,
}

#[derive(Default)]
struct HintsInner {
    notify: tokio::sync::Notify,
    pokes: AtomicU64,
    watch_errors: AtomicU64,
    rescans: AtomicU64,
    degraded: AtomicBool,
    degraded_reason: Mutex<Option<String>>,
}

/// Counters for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HintStats {
    /// Hints produced so far.
    pub pokes: u64,
    /// Errors the file watcher reported (each one may mean missed events).
    pub watch_errors: u64,
    /// Times the kernel's event queue overflowed (`Flag::Rescan`).
    pub rescans: u64,
    /// The watcher could not be started or lost watches: only the periodic resync is reliable.
    pub degraded: bool,
}

impl Hints {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the consumer to look now. Callable from any thread, including non-async ones.
    pub fn poke(&self) {
        self.inner.pokes.fetch_add(1, Ordering::Relaxed);
        self.inner.notify.notify_one();
    }

    /// Waits for the next hint (returns at once if one arrived since the last wait).
    pub async fn wait(&self) {
        self.inner.notify.notified().await;
    }

    /// Waits for a hint or `timeout`, whichever comes first; true if a hint came.
    pub async fn wait_timeout(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.wait()).await.is_ok()
    }

    /// True once the file watcher failed in a way that may lose events for good.
    pub fn is_degraded(&self) -> bool {
        self.inner.degraded.load(Ordering::Relaxed)
    }

    /// Why the watcher is degraded, for status output.
    pub fn degraded_reason(&self) -> Option<String> {
        self.inner
            .degraded_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn stats(&self) -> HintStats {
        HintStats {
            pokes: self.inner.pokes.load(Ordering::Relaxed),
            watch_errors: self.inner.watch_errors.load(Ordering::Relaxed),
            rescans: self.inner.rescans.load(Ordering::Relaxed),
            degraded: self.is_degraded(),
        }
    }

    pub(crate) fn mark_degraded(&self, reason: String) {
        self.inner.degraded.store(true, Ordering::Relaxed);
        *self
            .inner
            .degraded_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }

    pub(crate) fn clear_degraded(&self) {
        self.inner.degraded.store(false, Ordering::Relaxed);
        *self
            .inner
            .degraded_reason
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    pub(crate) fn count_watch_error(&self) {
        self.inner.watch_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_rescan(&self) {
        self.inner.rescans.fetch_add(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Hints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hints")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_coalesce_and_wake() {
        let hints = Hints::new();
        assert!(!hints.wait_timeout(Duration::from_millis(20)).await);
        hints.poke();
        hints.poke();
        hints.poke();
        assert!(hints.wait_timeout(Duration::from_millis(20)).await);
        // Three pokes while nobody waited make one wake-up.
        assert!(!hints.wait_timeout(Duration::from_millis(20)).await);
        assert_eq!(hints.stats().pokes, 3);

        let h = hints.clone();
        let waiter = tokio::spawn(async move { h.wait_timeout(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        std::thread::spawn({
            let h = hints.clone();
            move || h.poke()
        })
        .join()
        .expect("poke thread");
        assert!(waiter.await.expect("join"));
    }

    #[test]
    fn degraded_is_reported() {
        let hints = Hints::new();
        assert!(!hints.is_degraded());
        hints.mark_degraded("OS file watch limit reached".into());
        assert!(hints.stats().degraded);
        assert_eq!(
            hints.degraded_reason().as_deref(),
            Some("OS file watch limit reached")
        );
    }
}
