//! A remote repository, mirrored into the state directory: a bare repository holding only the
//! followed branch (`refs/remotes/origin/<branch>`), created on the first fetch and updated by
//! later ones. Reading the head needs no network once a fetch has succeeded, so the daemon keeps
//! serving the last good commit while the remote is down.
//!
//! Fetches are blocking (git2) and reach the remote through its [`Access`] (`git::access`),
//! the policy every network Git call shares: libgit2's connect and I/O timeouts, a per-fetch
//! deadline checked in every callback and, in [`RemoteFollower::fetch_async`], a timer around
//! the blocking task; SSH host keys accepted only when pinned ([`HostKeyPolicy`]); tokens read
//! at each fetch and never in an error.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::{Direction, FetchOptions};

use super::{FollowError, Hints};
use crate::git::access::Access;
pub use crate::git::access::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT, DEFAULT_TOKEN_USERNAME, FetchError, HostKeyPolicy,
    RemoteAuth, network_timeouts, redact_url, set_network_timeouts,
};

/// Default bound on one fetch, from connecting to writing the ref.
pub const DEFAULT_FETCH_DEADLINE: Duration = crate::git::access::DEFAULT_DEADLINE;

/// A file in the mirror directory that marks it as ours, so a damaged mirror may be deleted
/// and rebuilt without risk of deleting a directory somebody else owns.
const MIRROR_MARKER: &str = "mockops-mirror";

/// What to follow and how to reach it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// `https://`, `http://` (loopback only when a token is sent), `ssh://`, scp-like
    /// `git@host:path`, `git://`, `file://` or a local path.
    pub url: String,
    /// Short branch name (`main`).
    pub branch: String,
    /// Where the bare mirror lives (usually `<state dir>/mirror.git`).
    pub mirror_dir: PathBuf,
    pub auth: RemoteAuth,
    pub host_keys: HostKeyPolicy,
    /// Bound on one fetch.
    pub fetch_deadline: Duration,
    /// Every credential read is registered here, so logs and outputs mask it.
    pub redactor: crate::secret::Redactor,
    /// Objects of the mirror that are no longer reachable are dropped once they have been
    /// unreachable this long (see [`consolidate_packs`]).
    pub prune_unreachable_after: Duration,
}

/// Default of [`RemoteConfig::prune_unreachable_after`].
pub const DEFAULT_PRUNE_UNREACHABLE_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);

impl RemoteConfig {
    /// A configuration with no credentials, no host key pins and the default deadline.
    pub fn new(url: impl Into<String>, branch: impl Into<String>, mirror_dir: PathBuf) -> Self {
        Self {
            url: url.into(),
            branch: branch.into(),
            mirror_dir,
            auth: RemoteAuth::None,
            host_keys: HostKeyPolicy::default(),
            fetch_deadline: DEFAULT_FETCH_DEADLINE,
            redactor: crate::secret::Redactor::new(),
            prune_unreachable_after: DEFAULT_PRUNE_UNREACHABLE_AFTER,
        }
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &redact_url(&self.url))
            .field("branch", &self.branch)
            .field("mirror_dir", &self.mirror_dir)
            .field("auth", &self.auth)
            .field("host_keys", &self.host_keys)
            .field("fetch_deadline", &self.fetch_deadline)
            .finish()
    }
}

/// A followed branch of a remote repository and its local mirror. Cheap to clone.
#[derive(Clone)]
pub struct RemoteFollower {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    config: RemoteConfig,
    /// How the remote is reached (credentials, pinned host keys, deadline).
    access: Access,
    url_redacted: String,
    mirror_ref: String,
    hints: Hints,
    /// One fetch (or repack) at a time per mirror.
    fetch_lock: Mutex<()>,
    /// Commits to keep in the mirror even when the branch no longer reaches them (the
    /// applied commit, which a force-push comparison reads).
    keep: Mutex<Vec<git2::Oid>>,
}

impl RemoteFollower {
    /// Checks the configuration (URL, branch name, pins, credentials fit the URL) without any
    /// network access, and applies the default libgit2 timeouts if none were set.
    pub fn new(config: RemoteConfig) -> Result<Self, FetchError> {
        let access = Access::new(
            &config.url,
            config.auth.clone(),
            &config.host_keys,
            config.fetch_deadline,
            config.redactor.clone(),
        )?;
        let url_redacted = access.url_redacted().to_string();
        let bad = |detail: String| FetchError::Config {
            url: url_redacted.clone(),
            detail,
        };
        let branch = config
            .branch
            .strip_prefix("refs/heads/")
            .unwrap_or(&config.branch)
            .to_string();
        if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            return Err(bad(format!(
                "`{}` is not a valid branch name",
                config.branch
            )));
        }
        if access.ssh_unpinned() {
            tracing::warn!(
                url = %url_redacted,
                "no SSH host key is pinned: fetches will be refused and report the fingerprint the \
                 server presents, to be checked and pinned"
            );
        }
        let mirror_ref = format!("refs/remotes/origin/{branch}");
        let config = RemoteConfig { branch, ..config };
        Ok(Self {
            inner: Arc::new(RemoteInner {
                config,
                access,
                url_redacted,
                mirror_ref,
                hints: Hints::new(),
                fetch_lock: Mutex::new(()),
                keep: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn branch(&self) -> &str {
        &self.inner.config.branch
    }

    /// The bare mirror to read commits from.
    pub fn repo_path(&self) -> &Path {
        &self.inner.config.mirror_dir
    }

    /// The ref in the mirror that holds the followed branch.
    pub fn mirror_ref(&self) -> &str {
        &self.inner.mirror_ref
    }

    pub fn url_redacted(&self) -> &str {
        &self.inner.url_redacted
    }

    /// Pokes for "fetch now" (the push webhook).
    pub fn hints(&self) -> &Hints {
        &self.inner.hints
    }

    /// The commit of the branch as of the last successful fetch, read from the mirror without
    /// network access.
    pub fn head(&self) -> Result<git2::Oid, FollowError> {
        let inner = &self.inner;
        let not_fetched = || FollowError::NotFetched {
            url: inner.url_redacted.clone(),
            branch: inner.config.branch.clone(),
        };
        let dir = &inner.config.mirror_dir;
        if !dir.exists() {
            return Err(not_fetched());
        }
        let repo = git2::Repository::open_bare(dir).map_err(|e| FollowError::Open {
            path: dir.clone(),
            detail: e.message().to_string(),
        })?;
        let reference = match repo.find_reference(&inner.mirror_ref) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(not_fetched()),
            Err(e) => {
                return Err(FollowError::Git {
                    branch: inner.config.branch.clone(),
                    path: dir.clone(),
                    detail: e.message().to_string(),
                });
            }
        };
        reference
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(|e| FollowError::Git {
                branch: inner.config.branch.clone(),
                path: dir.clone(),
                detail: e.message().to_string(),
            })
    }

    /// [`RemoteFollower::fetch`] on the blocking pool, abandoned (with [`FetchError::Timeout`])
    /// if it overruns the deadline by more than a second.
    pub async fn fetch_async(&self) -> Result<git2::Oid, FetchError> {
        let this = self.clone();
        self.inner.access.run(move || this.fetch()).await
    }

    /// Fetches the followed branch into the mirror (creating the mirror on first use) and
    /// returns its commit. Only that branch is fetched, forced, so a force-push on the remote
    /// moves the mirror along. On any error the mirror keeps the last fetched commit. Blocking.
    pub fn fetch(&self) -> Result<git2::Oid, FetchError> {
        let inner = &self.inner;
        let _one_at_a_time = inner.fetch_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let repo = self.open_or_init_mirror()?;
        let cx = inner.access.session()?;

        let mut remote = repo
            .remote_anonymous(&inner.config.url)
            .map_err(|e| cx.classify(e))?;
        let refname = format!("refs/heads/{}", inner.config.branch);
        let mut connection = remote
            .connect_auth(Direction::Fetch, Some(cx.callbacks()), None)
            .map_err(|e| cx.classify(e))?;
        let heads = connection.list().map_err(|e| cx.classify(e))?;
        let target = heads.iter().find(|h| h.name() == refname).map(|h| h.oid());
        let Some(target) = target else {
            let mut available: Vec<String> = heads
                .iter()
                .filter_map(|h| h.name().strip_prefix("refs/heads/"))
                .map(str::to_string)
                .collect();
            available.sort();
            available.truncate(20);
            return Err(FetchError::BranchMissing {
                url: inner.url_redacted.clone(),
                branch: inner.config.branch.clone(),
                available,
            });
        };
        let downloading = repo.find_commit(target).is_err();
        if downloading {
            let refspec = format!("+{refname}:{}", inner.mirror_ref);
            let mut options = FetchOptions::new();
            options
                .remote_callbacks(cx.callbacks())
                .download_tags(git2::AutotagOption::None)
                .update_fetchhead(false);
            connection
                .remote()
                .download(&[refspec.as_str()], Some(&mut options))
                .map_err(|e| cx.classify(e))?;
        }
        drop(connection);
        let commit = repo.find_commit(target).map_err(|e| FetchError::Git {
            url: inner.url_redacted.clone(),
            detail: format!(
                "the remote advertised {target} for `{}` but did not send it: {}",
                inner.config.branch,
                e.message()
            ),
        })?;
        repo.reference(&inner.mirror_ref, commit.id(), true, "mockops: fetch")
            .map_err(|e| self.mirror_err(e.message()))?;
        if downloading {
            match consolidate_packs(&repo, MAX_PACKS, &self.prune_policy(SystemTime::now())) {
                Ok(Some(c)) => tracing::info!(
                    mirror = %inner.config.mirror_dir.display(), objects = c.objects,
                    dropped = c.dropped, "mirror packs consolidated into one"
                ),
                Ok(None) => {}
                // Reading still works with many packs, only slower: not a fetch failure.
                Err(e) => tracing::warn!(
                    mirror = %inner.config.mirror_dir.display(), error = %e.message(),
                    "cannot consolidate the mirror's packs"
                ),
            }
        }
        tracing::debug!(
            url = %inner.url_redacted,
            branch = %inner.config.branch,
            commit = %commit.id(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched"
        );
        Ok(commit.id())
    }

    /// Commits the mirror keeps even when the branch no longer reaches them (replaces the
    /// previous set).
    pub fn keep_commits(&self, commits: Vec<git2::Oid>) {
        *self.inner.keep.lock().unwrap_or_else(|p| p.into_inner()) = commits;
    }

    fn prune_policy(&self, now: SystemTime) -> PrunePolicy {
        PrunePolicy {
            unreachable_after: self.inner.config.prune_unreachable_after,
            keep: self
                .inner
                .keep
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            now,
        }
    }

    /// Repacks the mirror into one pack without the objects that have been unreachable for
    /// longer than `after` (retention; run periodically). Nothing happens when there is one
    /// pack, no loose object and nothing unreachable. Waits for a fetch in progress.
    pub fn prune_mirror(&self, after: Duration) -> Result<Option<Consolidated>, git2::Error> {
        self.prune_mirror_with(&PrunePolicy {
            unreachable_after: after,
            ..self.prune_policy(SystemTime::now())
        })
    }

    /// [`RemoteFollower::prune_mirror`] with an explicit policy (and clock).
    pub fn prune_mirror_with(
        &self,
        policy: &PrunePolicy,
    ) -> Result<Option<Consolidated>, git2::Error> {
        let _one_at_a_time = self
            .inner
            .fetch_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dir = &self.inner.config.mirror_dir;
        if !dir.join("objects").exists() {
            return Ok(None);
        }
        let repo = git2::Repository::open_bare(dir)?;
        consolidate_packs(&repo, 0, policy)
    }

    fn mirror_err(&self, detail: impl Into<String>) -> FetchError {
        FetchError::Mirror {
            path: self.inner.config.mirror_dir.clone(),
            detail: detail.into(),
        }
    }

    fn open_or_init_mirror(&self) -> Result<git2::Repository, FetchError> {
        let dir = &self.inner.config.mirror_dir;
        match git2::Repository::open_bare(dir) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
                if !empty {
                    if !dir.join(MIRROR_MARKER).exists() {
                        return Err(self.mirror_err(format!(
                            "exists but is not a mirror made by mockops ({}); remove it or \
                             choose another state directory",
                            e.message()
                        )));
                    }
                    tracing::warn!(
                        mirror = %dir.display(),
                        error = e.message(),
                        "the mirror is damaged; deleting it and fetching again"
                    );
                    std::fs::remove_dir_all(dir)
                        .map_err(|e| self.mirror_err(format!("cannot remove it: {e}")))?;
                }
            }
        }
        let repo = git2::Repository::init_opts(
            dir,
            git2::RepositoryInitOptions::new().bare(true).mkpath(true),
        )
        .map_err(|e| self.mirror_err(format!("cannot create it: {}", e.message())))?;
        std::fs::write(
            dir.join(MIRROR_MARKER),
            "A mirror of the followed branch, maintained by mockops. Safe to delete.\n",
        )
        .map_err(|e| self.mirror_err(format!("cannot write to it: {e}")))?;
        Ok(repo)
    }
}

/// Each fetch that brings objects adds a pack to the mirror; past this many, they are
/// consolidated into one (object lookups scan every pack's index).
pub const MAX_PACKS: usize = 16;

/// The file in the mirror that records when each unreachable object was first found
/// unreachable (`<oid> <unix seconds>` per line).
pub const UNREACHABLE_FILE: &str = "mockops-unreachable";

/// What a repack keeps.
#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// An object unreachable for this long (since a repack first found it unreachable) is
    /// dropped.
    pub unreachable_after: Duration,
    /// Commits kept (with their trees and blobs) as if a ref pointed at them.
    pub keep: Vec<git2::Oid>,
    pub now: SystemTime,
}

/// What a repack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consolidated {
    /// Objects in the new pack.
    pub objects: usize,
    /// Unreachable objects dropped.
    pub dropped: usize,
    /// Unreachable objects kept until their time is up.
    pub unreachable_kept: usize,
}

/// When the mirror holds more than `max` packs (or, with `max` 0, whenever there is something
/// to do), writes one pack with every object worth keeping and removes the old packs and loose
/// objects; returns what it did.
///
/// libgit2 has no `gc`, so this is one: objects reachable from any ref of the mirror or from
/// `policy.keep` are kept; an unreachable object is kept until it has been unreachable for
/// `policy.unreachable_after`, measured from the first repack that found it unreachable
/// (recorded in [`UNREACHABLE_FILE`]; git's own grace period is the objects' file time, which a
/// repack would reset). So a commit a force-push dropped stays readable for the comparison the
/// reconciler makes, and for the retention period after. The new pack and the record are
/// complete before any old pack goes, so readers always find every kept object (libgit2
/// rescans the pack directory when an object is not where it was).
pub fn consolidate_packs(
    repo: &git2::Repository,
    max: usize,
    policy: &PrunePolicy,
) -> Result<Option<Consolidated>, git2::Error> {
    let objects_dir = repo.path().join("objects");
    let pack_dir = objects_dir.join("pack");
    let packs = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| n.strip_suffix(".pack").map(str::to_string))
                    .filter(|n| n.starts_with("pack-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = packs(&pack_dir);
    if max > 0 && old.len() <= max {
        return Ok(None);
    }
    let mut all = Vec::new();
    repo.odb()?.foreach(|id| {
        all.push(*id);
        true
    })?;
    all.sort();
    all.dedup();
    let reachable = reachable_objects(repo, &policy.keep)?;
    let now = policy
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record_path = repo.path().join(UNREACHABLE_FILE);
    let seen = read_unreachable(&record_path);
    let mut record = Vec::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for id in &all {
        if reachable.contains(id) {
            kept.push(*id);
            continue;
        }
        let since = seen.get(id).copied().unwrap_or(now);
        if now.saturating_sub(since) >= policy.unreachable_after.as_secs() {
            dropped += 1;
        } else {
            kept.push(*id);
            record.push((*id, since));
        }
    }
    let loose = loose_object_dirs(&objects_dir);
    if max == 0 && dropped == 0 && old.len() <= 1 && loose.is_empty() && record.len() == seen.len()
    {
        return Ok(None);
    }
    let mut builder = repo.packbuilder()?;
    for id in &kept {
        builder.insert_object(*id, None)?;
    }
    builder.write(&pack_dir, 0)?;
    let new_pack = match builder.name()? {
        Some(name) => format!("pack-{name}"),
        None => return Err(git2::Error::from_str("the new pack has no name")),
    };
    write_unreachable(&record_path, &record)
        .map_err(|e| git2::Error::from_str(&format!("cannot write {UNREACHABLE_FILE}: {e}")))?;
    for stem in old.iter().filter(|s| **s != new_pack) {
        for ext in ["pack", "idx", "rev", "mtimes", "keep"] {
            let _ = std::fs::remove_file(pack_dir.join(format!("{stem}.{ext}")));
        }
    }
    // Every loose object is in the new pack now, or was dropped.
    for dir in loose {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Some(Consolidated {
        objects: kept.len(),
        dropped,
        unreachable_kept: record.len(),
    }))
}

/// Every object reachable from a ref of `repo` or from one of `keep`.
fn reachable_objects(
    repo: &git2::Repository,
    keep: &[git2::Oid],
) -> Result<HashSet<git2::Oid>, git2::Error> {
    let mut out = HashSet::new();
    let mut walk = repo.revwalk()?;
    let mut roots = 0;
    for reference in repo.references()? {
        let reference = reference?;
        // An annotated tag object is reachable itself.
        if let Some(target) = reference.target() {
            out.insert(target);
        }
        if let Ok(commit) = reference.peel_to_commit() {
            walk.push(commit.id())?;
            roots += 1;
        }
    }
    for id in keep {
        if repo.find_commit(*id).is_ok() {
            walk.push(*id)?;
            roots += 1;
        }
    }
    if roots == 0 {
        return Ok(out);
    }
    for commit in walk {
        let commit = repo.find_commit(commit?)?;
        out.insert(commit.id());
        let tree = commit.tree()?;
        if !out.insert(tree.id()) {
            continue;
        }
        tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    if out.insert(entry.id()) {
                        git2::TreeWalkResult::Ok
                    } else {
                        // Seen in an earlier commit, with everything under it.
                        git2::TreeWalkResult::Skip
                    }
                }
                Some(git2::ObjectType::Blob) => {
                    out.insert(entry.id());
                    git2::TreeWalkResult::Ok
                }
                // Submodule commits live in another repository.
                _ => git2::TreeWalkResult::Ok,
            }
        })?;
    }
    Ok(out)
}

fn loose_object_dirs(objects: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(objects)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn read_unreachable(path: &Path) -> HashMap<git2::Oid, u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (id, at) = l.split_once(' ')?;
            Some((git2::Oid::from_str(id).ok()?, at.trim().parse().ok()?))
        })
        .collect()
}

fn write_unreachable(path: &Path, record: &[(git2::Oid, u64)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (id, at) in record {
        text.push_str(&format!("{id} {at}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Secret, SecretSource};

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://x-access-token:ghs_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://ghp_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("ssh://git@host/o/r.git"),
            "ssh://git@host/o/r.git"
        );
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
        let cfg = RemoteConfig::new(
            "https://u:hunter2@example.com/r.git",
            "main",
            PathBuf::from("/tmp/m"),
        );
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    fn config(url: &str, auth: RemoteAuth) -> RemoteConfig {
        RemoteConfig {
            auth,
            ..RemoteConfig::new(url, "main", PathBuf::from("/nonexistent/mirror"))
        }
    }

    fn token() -> RemoteAuth {
        RemoteAuth::Token {
            username: DEFAULT_TOKEN_USERNAME.into(),
            token: SecretSource::Value(Secret::new("t")),
        }
    }

    #[test]
    fn credentials_must_fit_the_url() {
        let e = RemoteFollower::new(config("http://example.com/r.git", token()))
            .err()
            .expect("token over http");
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(RemoteFollower::new(config("http://127.0.0.1:9/r.git", token())).is_ok());
        assert!(RemoteFollower::new(config("git@github.com:o/r.git", token())).is_err());
        let key = RemoteAuth::SshKey {
            private_key: PathBuf::from("/nonexistent/id_ed25519"),
            passphrase: None,
        };
        let e = RemoteFollower::new(config("git@github.com:o/r.git", key.clone()))
            .err()
            .expect("missing key");
        assert!(e.to_string().contains("/nonexistent/id_ed25519"), "{e}");
        assert!(RemoteFollower::new(config("https://github.com/o/r.git", key)).is_err());
    }

    #[test]
    fn bad_pins_and_branches_are_refused_early() {
        let mut c = config("git@github.com:o/r.git", RemoteAuth::None);
        c.host_keys.fingerprints = vec!["SHA256:nope".into()];
        let e = RemoteFollower::new(c).err().expect("bad pin");
        assert!(e.to_string().contains("ssh-keygen -lf"), "{e}");
        let mut c = config("https://github.com/o/r.git", RemoteAuth::None);
        c.branch = "a..b".into();
        assert!(RemoteFollower::new(c).is_err());
        let mut c = config("https://github.com/o/r.git", RemoteAuth::None);
        c.branch = "refs/heads/main".into();
        let s = RemoteFollower::new(c).expect("full ref name accepted");
        assert_eq!(s.branch(), "main");
        assert_eq!(s.mirror_ref(), "refs/remotes/origin/main");
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = FetchError::HostKeyUnknown {
            url: "git@h:r".into(),
            host: "h".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
        };
        let m = e.to_string();
        assert!(m.contains("SHA256:abc") && m.contains("pin"), "{m}");
        let e = FetchError::BranchMissing {
            url: "u".into(),
            branch: "prod".into(),
            available: vec!["main".into(), "dev".into()],
        };
        assert_eq!(
            e.to_string(),
            "u: branch `prod` does not exist on the remote (it has: main, dev)"
        );
        assert_eq!(e.kind(), "branch_missing");
        assert!(!e.is_transient());
    }
}
