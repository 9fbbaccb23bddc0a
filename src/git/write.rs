//! Writing to Git, for pull-request branches and promotion commits alike: one way to build a
//! commit (the parent's tree with some paths written or deleted), one push with a lease (the
//! remote branch must still be where it was read, or absent), one compare-and-swap of a local
//! branch, and one retry loop for the races they lose ([`retry_races`]).
//!
//! Network calls go through a [`Session`] of the remote's [`Access`](super::access::Access):
//! the same credentials, host-key pins, timeouts and deadline as the followed branch's fetches.

use std::path::{Path, PathBuf};

use git2::{Direction, ErrorCode, FetchOptions, PushOptions, Repository};

use super::Oid;
use super::access::{FetchError, Session};

/// A path to write (`Some(bytes)`) or delete (`None`) in a commit.
pub type Edit<'a> = (&'a str, Option<&'a [u8]>);

/// Who makes a commit (author and committer).
#[derive(Debug, Clone, Copy)]
pub struct Identity<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Why a Git write failed. Each variant keeps its cause (`source`), and whether trying again
/// may help follows from it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Reaching the remote failed (credentials, host key, network, deadline).
    #[error(transparent)]
    Remote(#[from] FetchError),
    /// A Git operation failed: `what` was being done in `place`.
    #[error("{what} {place}: {}", source.message())]
    Git {
        what: String,
        place: String,
        #[source]
        source: git2::Error,
    },
    /// Reading or writing a file of a work tree failed.
    #[error("{what} {place}: {source}")]
    Io {
        what: String,
        place: String,
        #[source]
        source: std::io::Error,
    },
    /// The repository has no work tree to update.
    #[error("{place} has no work tree")]
    NoWorkTree { place: String },
}

impl WriteError {
    /// Whether trying again soon may help: a network fault or a timeout, or a Git operation
    /// that failed on the network or the operating system.
    pub fn is_transient(&self) -> bool {
        match self {
            WriteError::Remote(e) => e.is_transient(),
            WriteError::Git { source, .. } => matches!(
                source.class(),
                git2::ErrorClass::Net
                    | git2::ErrorClass::Ssl
                    | git2::ErrorClass::Os
                    | git2::ErrorClass::Http
            ),
            WriteError::Io { .. } | WriteError::NoWorkTree { .. } => false,
        }
    }

    fn git(what: &str, place: &str, source: git2::Error) -> Self {
        WriteError::Git {
            what: what.to_string(),
            place: place.to_string(),
            source,
        }
    }

    /// A file of `place` could not be read or written.
    pub fn io(what: &str, place: &str, source: std::io::Error) -> Self {
        WriteError::Io {
            what: what.to_string(),
            place: place.to_string(),
            source,
        }
    }
}

/// What a push with a lease did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The remote branch now points at the commit.
    Done,
    /// The remote branch was no longer where it was read: nothing changed.
    Moved,
    /// The remote refused the update (a hook, a protected branch): its reason.
    Refused(String),
}

/// The committer and message of a commit.
#[derive(Debug, Clone)]
pub struct CommitMeta {
    pub committer_name: String,
    pub committer_email: String,
    pub message: String,
}

/// Runs `attempt` (1, 2, ...) until it returns `Some`, at most `attempts` times: each `None`
/// is a race lost (the branch moved between reading its tip and moving it), logged and tried
/// again on the new tip. `None` when every attempt lost.
pub fn retry_races<T, E>(
    attempts: u32,
    place: &str,
    branch: &str,
    mut attempt: impl FnMut(u32) -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    for n in 1..=attempts.max(1) {
        if let Some(done) = attempt(n)? {
            return Ok(Some(done));
        }
        tracing::info!(%branch, repository = %place, attempt = n, "the branch moved meanwhile; re-applying on the new tip");
    }
    Ok(None)
}

pub use super::blob_id;

const MOVED: &str = "the branch moved on the remote since it was read";

/// A repository to write in: a temporary bare one that works against a remote (removed when
/// dropped), or a repository on this machine.
pub struct Repo {
    repo: Repository,
    /// Where errors say the work happened (a redacted URL or a path).
    place: String,
    scratch: Option<PathBuf>,
}

impl Drop for Repo {
    fn drop(&mut self) {
        if let Some(dir) = &self.scratch {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Repo {
    /// A fresh temporary bare repository for work against `place` (a redacted URL).
    pub fn scratch(purpose: &str, place: &str) -> Result<Self, WriteError> {
        let dir = std::env::temp_dir().join(format!(
            "mockops-{purpose}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let repo = Repository::init_bare(&dir)
            .map_err(|e| WriteError::git("creating a work repository for", place, e))?;
        Ok(Self {
            repo,
            place: place.to_string(),
            scratch: Some(dir),
        })
    }

    /// A new repository at `dir` whose first commit, on `branch`, has every file already in
    /// `dir` (a work tree), or a bare one with the single file `seed` (path, content).
    pub fn init_with_commit(
        dir: &Path,
        branch: &str,
        seed: Option<(&str, &[u8])>,
        message: &str,
        who: Identity<'_>,
    ) -> Result<Oid, WriteError> {
        let place = dir.display().to_string();
        let err = |e: git2::Error| WriteError::git("creating a repository in", &place, e);
        let mut opts = git2::RepositoryInitOptions::new();
        opts.initial_head(branch).bare(seed.is_some());
        let repo = Repository::init_opts(dir, &opts).map_err(err)?;
        let tree = match seed {
            None => {
                let mut index = repo.index().map_err(err)?;
                index
                    .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
                    .map_err(err)?;
                index.write().map_err(err)?;
                index.write_tree().map_err(err)?
            }
            Some((path, content)) => {
                let blob = repo.blob(content).map_err(err)?;
                let mut tb = repo.treebuilder(None).map_err(err)?;
                tb.insert(path, blob, 0o100_644).map_err(err)?;
                tb.write().map_err(err)?
            }
        };
        let tree = repo.find_tree(tree).map_err(err)?;
        let sig = git2::Signature::now(who.name, who.email).map_err(err)?;
        repo.commit(
            Some(&format!("refs/heads/{branch}")),
            &sig,
            &sig,
            message,
            &tree,
            &[],
        )
        .map_err(err)
    }

    /// The repository at `dir` (bare or not).
    pub fn open(dir: &Path) -> Result<Self, WriteError> {
        let place = dir.display().to_string();
        let repo = Repository::open(dir).map_err(|e| WriteError::git("opening", &place, e))?;
        Ok(Self {
            repo,
            place,
            scratch: None,
        })
    }

    /// The Git directory (what [`GitFiles`](super::revision::GitFiles) reads a commit from).
    pub fn git_dir(&self) -> &Path {
        self.repo.path()
    }

    fn err(&self, what: &str) -> impl Fn(git2::Error) -> WriteError + '_ {
        let what = what.to_string();
        move |e| WriteError::git(&what, &self.place, e)
    }

    // -----------------------------------------------------------------------------------------
    // The remote

    /// The commits the remote's `refs` (full names) point at, `None` for an absent one.
    pub fn remote_heads(
        &self,
        session: &Session<'_>,
        refs: &[&str],
    ) -> Result<Vec<Option<Oid>>, WriteError> {
        let mut remote = self
            .repo
            .remote_anonymous(session.access().url())
            .map_err(self.err("opening remote"))?;
        let conn = remote
            .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
            .map_err(|e| session.classify(e))?;
        let heads = conn.list().map_err(|e| session.classify(e))?;
        Ok(refs
            .iter()
            .map(|name| heads.iter().find(|h| h.name() == *name).map(|h| h.oid()))
            .collect())
    }

    /// Fetches `refspecs` from the remote.
    pub fn fetch(&self, session: &Session<'_>, refspecs: &[String]) -> Result<(), WriteError> {
        let mut remote = self
            .repo
            .remote_anonymous(session.access().url())
            .map_err(self.err("opening remote"))?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(session.callbacks());
        remote
            .fetch(refspecs, Some(&mut fo), None)
            .map_err(|e| session.classify(e).into())
    }

    /// Moves the remote's `dst` (a full ref name) to `commit`, only if it is still at
    /// `expected` (`None`: absent). The one push mockops makes.
    pub fn push_with_lease(
        &self,
        session: &Session<'_>,
        commit: Oid,
        dst: &str,
        expected: Option<Oid>,
    ) -> Result<Pushed, WriteError> {
        self.repo
            .reference("refs/mockops/push", commit, true, "mockops: push")
            .map_err(self.err("committing for"))?;
        let mut remote = self
            .repo
            .remote_anonymous(session.access().url())
            .map_err(self.err("opening remote"))?;
        let expected = expected.unwrap_or(Oid::ZERO_SHA1);
        let mut rejected: Option<String> = None;
        let pushed = {
            let mut cb = session.callbacks();
            let dst_name = dst.to_string();
            cb.push_negotiation(move |updates| {
                for u in updates {
                    if u.dst_refname().ok() == Some(dst_name.as_str()) && u.src() != expected {
                        return Err(git2::Error::from_str(MOVED));
                    }
                }
                Ok(())
            });
            cb.push_update_reference(|name, status| {
                if let Some(s) = status {
                    rejected = Some(format!("{name}: {s}"));
                }
                Ok(())
            });
            let mut po = PushOptions::new();
            po.remote_callbacks(cb);
            remote.push(&[format!("+refs/mockops/push:{dst}")], Some(&mut po))
        };
        match pushed {
            Ok(()) => Ok(rejected.map_or(Pushed::Done, Pushed::Refused)),
            Err(e) if e.message().contains(MOVED) || e.code() == ErrorCode::NotFastForward => {
                Ok(Pushed::Moved)
            }
            Err(e) => Err(session.classify(e).into()),
        }
    }

    // -----------------------------------------------------------------------------------------
    // Objects

    /// The committer and message of `commit`.
    pub fn commit_meta(&self, commit: Oid) -> Result<CommitMeta, WriteError> {
        let c = self
            .repo
            .find_commit(commit)
            .map_err(self.err("reading a commit of"))?;
        let committer = c.committer();
        Ok(CommitMeta {
            committer_name: String::from_utf8_lossy(committer.name_bytes()).into_owned(),
            committer_email: String::from_utf8_lossy(committer.email_bytes()).into_owned(),
            message: String::from_utf8_lossy(c.message_bytes()).into_owned(),
        })
    }

    /// Every file path of `commit` under the directories `dirs`.
    pub fn paths_under(&self, commit: Oid, dirs: &[&str]) -> Result<Vec<String>, WriteError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(self.err("reading the tree of"))?;
        let mut out = Vec::new();
        for dir in dirs {
            let Ok(entry) = tree.get_path(Path::new(dir)) else {
                continue;
            };
            let Ok(sub) = entry.to_object(&self.repo).and_then(|o| o.peel_to_tree()) else {
                continue;
            };
            sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
                if e.kind() == Some(git2::ObjectType::Blob)
                    && let Ok(name) = e.name()
                {
                    out.push(format!("{dir}/{root}{name}"));
                }
                git2::TreeWalkResult::Ok
            })
            .map_err(self.err("reading the tree of"))?;
        }
        Ok(out)
    }

    /// Whether `commit` has exactly the wanted content at each path (a blob id, or `None` for
    /// absent).
    pub fn has_content(
        &self,
        commit: Oid,
        wanted: &[(String, Option<String>)],
    ) -> Result<bool, WriteError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(self.err("reading the tree of"))?;
        Ok(wanted.iter().all(|(path, id)| {
            let there = tree
                .get_path(Path::new(path))
                .ok()
                .map(|e| e.id().to_string());
            there == *id
        }))
    }

    /// The newest commit within `depth` commits of `tip` whose message `matches`.
    pub fn find_commit_where(
        &self,
        tip: Oid,
        depth: usize,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Option<Oid>, WriteError> {
        let err = self.err("reading the history of");
        let mut walk = self.repo.revwalk().map_err(&err)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
            .map_err(&err)?;
        walk.push(tip).map_err(&err)?;
        for oid in walk.take(depth) {
            let oid = oid.map_err(&err)?;
            let c = self.repo.find_commit(oid).map_err(&err)?;
            if matches(&String::from_utf8_lossy(c.message_bytes())) {
                return Ok(Some(oid));
            }
        }
        Ok(None)
    }

    /// A commit on top of `parent` with `edits` applied to its tree (objects written, no ref
    /// moved). A deletion of an absent path is nothing.
    pub fn commit_on(
        &self,
        parent: Oid,
        edits: &[Edit<'_>],
        message: &str,
        who: Identity<'_>,
    ) -> Result<Oid, WriteError> {
        let err = self.err("committing in");
        let parent = self.repo.find_commit(parent).map_err(&err)?;
        let base = parent.tree().map_err(&err)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (path, content) in edits {
            match content {
                Some(bytes) => {
                    let oid = self.repo.blob(bytes).map_err(&err)?;
                    update.upsert(*path, oid, git2::FileMode::Blob);
                }
                None => {
                    if base.get_path(Path::new(path)).is_ok() {
                        update.remove(*path);
                    }
                }
            }
        }
        let tree = self
            .repo
            .find_tree(update.create_updated(&self.repo, &base).map_err(&err)?)
            .map_err(&err)?;
        let sig = git2::Signature::now(who.name, who.email).map_err(&err)?;
        self.repo
            .commit(None, &sig, &sig, message, &tree, &[&parent])
            .map_err(err)
    }

    // -----------------------------------------------------------------------------------------
    // Branches of a repository on this machine

    /// The commit `refs/heads/<branch>` points at, `None` when there is no such branch.
    pub fn branch_tip(&self, branch: &str) -> Result<Option<Oid>, WriteError> {
        match self.repo.refname_to_id(&format!("refs/heads/{branch}")) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(WriteError::git("reading the branch of", &self.place, e)),
        }
    }

    /// Moves `branch` from `expected` to `commit` as a compare-and-swap: false (and nothing
    /// moved) when the branch is no longer at `expected`.
    pub fn move_branch(
        &self,
        branch: &str,
        commit: Oid,
        expected: Oid,
        log: &str,
    ) -> Result<bool, WriteError> {
        match self.repo.reference_matching(
            &format!("refs/heads/{branch}"),
            commit,
            true,
            expected,
            log,
        ) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == ErrorCode::Modified => Ok(false),
            Err(e) => Err(WriteError::git("moving the branch of", &self.place, e)),
        }
    }

    /// Points `branch` at `commit`, wherever it was.
    pub fn set_branch(&self, branch: &str, commit: Oid, log: &str) -> Result<(), WriteError> {
        self.repo
            .reference(&format!("refs/heads/{branch}"), commit, true, log)
            .map(|_| ())
            .map_err(self.err("moving the branch of"))
    }

    /// Whether `branch` is checked out in this repository's work tree.
    pub fn checked_out(&self, branch: &str) -> bool {
        let refname = format!("refs/heads/{branch}");
        !self.repo.is_bare()
            && self
                .repo
                .head()
                .ok()
                .is_some_and(|h| h.is_branch() && h.name().ok() == Some(refname.as_str()))
    }

    /// Each of `paths` that has uncommitted changes in the work tree or index, or is reached
    /// through a symbolic link (writing there could land outside the work tree), with what is
    /// in the way.
    pub fn uncommitted(&self, paths: &[&str]) -> Result<Vec<String>, WriteError> {
        let mut dirty = Vec::new();
        let root = self
            .repo
            .workdir()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for path in paths {
            let mut at = root.clone();
            let mut linked = None;
            for seg in path.split('/') {
                at.push(seg);
                if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                    linked = Some(at.strip_prefix(&root).unwrap_or(&at).display().to_string());
                    break;
                }
            }
            if let Some(link) = linked {
                dirty.push(format!("{path} (`{link}` is a symbolic link)"));
                continue;
            }
            match self.repo.status_file(Path::new(path)) {
                Ok(s) if s.is_empty() => {}
                Ok(s) => dirty.push(format!("{path} ({})", describe_status(s))),
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(WriteError::git("reading the status of", &self.place, e)),
            }
        }
        Ok(dirty)
    }

    /// Writes `edits` into the work tree and the index (after a commit of them was put on the
    /// checked-out branch).
    pub fn update_work_tree(&self, edits: &[Edit<'_>]) -> Result<(), WriteError> {
        let err = self.err("updating the work tree of");
        let io = |e: std::io::Error| WriteError::io("updating the work tree of", &self.place, e);
        let root = self
            .repo
            .workdir()
            .ok_or_else(|| WriteError::NoWorkTree {
                place: self.place.clone(),
            })?
            .to_path_buf();
        let mut index = self.repo.index().map_err(&err)?;
        index.read(false).map_err(&err)?;
        for (path, content) in edits {
            let file = root.join(path);
            match content {
                Some(bytes) => {
                    if let Some(parent) = file.parent() {
                        std::fs::create_dir_all(parent).map_err(io)?;
                    }
                    std::fs::write(&file, bytes).map_err(io)?;
                    index.add_path(Path::new(path)).map_err(&err)?;
                }
                None => {
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(e)),
                    }
                    let _ = index.remove_path(Path::new(path));
                }
            }
        }
        index.write().map_err(err)
    }
}

fn describe_status(s: git2::Status) -> &'static str {
    if s.intersects(
        git2::Status::INDEX_NEW
            | git2::Status::INDEX_MODIFIED
            | git2::Status::INDEX_DELETED
            | git2::Status::INDEX_RENAMED
            | git2::Status::INDEX_TYPECHANGE,
    ) {
        "staged changes"
    } else if s.contains(git2::Status::WT_NEW) {
        "an untracked file"
    } else if s.contains(git2::Status::IGNORED) {
        "an ignored file"
    } else if s.contains(git2::Status::CONFLICTED) {
        "a merge conflict"
    } else {
        "modified"
    }
}
