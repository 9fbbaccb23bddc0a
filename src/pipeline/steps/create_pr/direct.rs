//! Direct commits: one commit straight onto a branch, without a pull request, for changes
//! that need no review (promotions into an environment with `direct_commit: true`).
//!
//! Three targets, one contract: the branch only moves forward (the new commit's parent is the
//! tip it replaces, and the move is a compare-and-swap against that tip); when someone else
//! moved the branch meanwhile, the change is re-applied on the new tip, up to
//! [`DirectCommit::max_attempts`] times; a commit whose message already carries the request's
//! marker line among the branch's recent history means an earlier attempt got through, so
//! nothing is committed again; and when the branch already has the content, nothing is
//! committed at all.

use std::path::{Path, PathBuf};

use git2::{Direction, ErrorCode, FetchOptions, Oid, PushOptions, Repository};
use serde_json::{Map, Value as Json};

use super::git::{WorkDir, git_err, net_err, remote_err};
use super::github::{blob_map, step_err, wanted_blobs};
use super::{Change, GitRemote, PrFile, RepoPath};
use crate::github::api::{Person, TreeEntry};
use crate::github::{GitHub, parse_repository};
use crate::pipeline::steps::{Outputs, StepError};

/// Commits of the branch searched for the marker of an earlier attempt.
pub const HISTORY_DEPTH: usize = 100;

/// One commit to make on a branch.
#[derive(Debug, Clone)]
pub struct DirectCommit {
    /// `owner/repo` (GitHub), a Git URL, or a local repository's path.
    pub repository: String,
    pub branch: String,
    pub files: Vec<PrFile>,
    /// The whole commit message, trailers included.
    pub message: String,
    /// A line of `message` (such as `Mockops-Promotion-Id: promo-…`) that identifies this
    /// change: a recent commit of the branch with this line is this change, already made.
    pub marker: String,
    pub identity: Person,
    /// Tries when the branch keeps moving between reading its tip and moving it.
    pub max_attempts: u32,
}

impl DirectCommit {
    pub fn new(
        repository: impl Into<String>,
        branch: impl Into<String>,
        message: impl Into<String>,
        marker: impl Into<String>,
    ) -> Self {
        Self {
            repository: repository.into(),
            branch: branch.into(),
            files: Vec::new(),
            message: message.into(),
            marker: marker.into(),
            identity: super::default_identity(),
            max_attempts: 5,
        }
    }

    /// Adds a file write; the path is checked.
    pub fn write(mut self, path: &str, content: impl Into<Vec<u8>>) -> Result<Self, StepError> {
        self.files.push(PrFile {
            path: RepoPath::new(path)?,
            change: Change::Write(content.into()),
        });
        Ok(self)
    }

    fn check(&self) -> Result<(), StepError> {
        if self.files.is_empty() {
            return Err(StepError::permanent(
                "a direct commit needs files to change",
            ));
        }
        super::check_branch(&self.branch, "branch")?;
        if self.marker.trim().is_empty() || !self.message.lines().any(|l| l == self.marker) {
            return Err(StepError::permanent(
                "a direct commit's marker must be a line of its message",
            ));
        }
        Ok(())
    }

    fn has_marker(&self, message: &str) -> bool {
        message.lines().any(|l| l.trim_end() == self.marker)
    }

    /// (path, blob id or `None` for a deletion) of every file.
    fn wanted(&self) -> Vec<(String, Option<String>)> {
        wanted_blobs(&self.files)
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    fn gave_up(&self, place: &str) -> StepError {
        StepError::transient(format!(
            "branch {} of {place} moved {} times while mockops was committing onto it; trying again later re-applies the change on the new tip",
            self.branch,
            self.attempts()
        ))
    }
}

/// What a direct commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectAction {
    /// A new commit is on the branch.
    Committed,
    /// An earlier attempt's commit (with the marker) is already on the branch.
    AlreadyCommitted,
    /// The branch already has this content: no commit.
    Unchanged,
}

impl DirectAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DirectAction::Committed => "committed",
            DirectAction::AlreadyCommitted => "already_committed",
            DirectAction::Unchanged => "unchanged",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectOutcome {
    pub action: DirectAction,
    pub branch: String,
    /// The commit that carries the change (`None` when nothing was committed).
    pub commit: Option<String>,
    /// Tries it took (more than one when the branch moved meanwhile).
    pub attempts: u32,
    pub reason: Option<String>,
}

impl DirectOutcome {
    /// `mode: "direct"`, `action`, `branch`, `commit`, `attempts`, `reason`, and `pr_url` /
    /// `pr_number` as `null` so that templates written for pull requests still render.
    pub fn outputs(&self) -> Outputs {
        let mut o = Map::new();
        o.insert("mode".into(), Json::from("direct"));
        o.insert("action".into(), Json::from(self.action.as_str()));
        o.insert("branch".into(), Json::from(self.branch.clone()));
        o.insert(
            "commit".into(),
            self.commit.clone().map_or(Json::Null, Json::String),
        );
        o.insert("attempts".into(), Json::from(self.attempts));
        o.insert(
            "reason".into(),
            self.reason.clone().map_or(Json::Null, Json::String),
        );
        o.insert("pr_url".into(), Json::Null);
        o.insert("pr_number".into(), Json::Null);
        o
    }

    fn new(
        req: &DirectCommit,
        action: DirectAction,
        commit: Option<String>,
        attempts: u32,
    ) -> Self {
        let reason = match action {
            DirectAction::Committed => None,
            DirectAction::AlreadyCommitted => Some(format!(
                "commit {} with `{}` is already on {}; not committed again",
                commit.as_deref().unwrap_or("?"),
                req.marker,
                req.branch
            )),
            DirectAction::Unchanged => Some(format!(
                "{} already has this content; nothing to commit",
                req.branch
            )),
        };
        Self {
            action,
            branch: req.branch.clone(),
            commit,
            attempts,
            reason,
        }
    }
}

fn protected_hint(branch: &str) -> String {
    format!(
        "branch {branch} is protected; turn off `direct_commit` for this environment in mockops.yaml (promotions then go through a pull request), or allow mockops' GitHub App or token to push to {branch}"
    )
}

// ---------------------------------------------------------------------------------------------
// GitHub

/// Commits onto a branch of a GitHub repository through the Git data API: blobs, tree and
/// commit on the current tip, then the ref moved with `force: false`. GitHub refusing the
/// move as not a fast-forward means someone pushed meanwhile: it starts over on the new tip.
pub async fn commit_github(
    client: &GitHub,
    req: &DirectCommit,
) -> Result<DirectOutcome, StepError> {
    req.check()?;
    let (owner, name) = parse_repository(&req.repository).map_err(step_err)?;
    let repo = client.repo(&owner, &name).await.map_err(step_err)?;
    let _writer = repo.writer().await;
    let place = format!("{owner}/{name}");
    let wanted = req.wanted();
    for attempt in 1..=req.attempts() {
        let tip = repo
            .branch_sha(&req.branch)
            .await
            .map_err(step_err)?
            .ok_or_else(|| {
                StepError::permanent(format!(
                    "branch {:?} does not exist in {place}; create it or follow another branch",
                    req.branch
                ))
            })?;
        let history = repo
            .recent_commits(&req.branch, HISTORY_DEPTH as u32)
            .await
            .map_err(step_err)?;
        if let Some(done) = history.iter().find(|c| req.has_marker(&c.commit.message)) {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::AlreadyCommitted,
                Some(done.sha.clone()),
                attempt,
            ));
        }
        let tip_commit = repo.commit(&tip).await.map_err(step_err)?;
        let files = blob_map(&repo, &tip_commit.tree.sha)
            .await
            .map_err(StepError::from)?;
        if wanted
            .iter()
            .all(|(p, id)| files.get(p).map(String::as_str) == id.as_deref())
        {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::Unchanged,
                None,
                attempt,
            ));
        }
        let mut entries = Vec::with_capacity(req.files.len());
        for f in &req.files {
            match &f.change {
                Change::Write(bytes) => entries.push(match std::str::from_utf8(bytes) {
                    Ok(text) => TreeEntry::text(f.path.as_str(), text.to_string()),
                    Err(_) => TreeEntry::blob(
                        f.path.as_str(),
                        repo.create_blob(bytes).await.map_err(step_err)?,
                    ),
                }),
                Change::Delete if files.contains_key(f.path.as_str()) => {
                    entries.push(TreeEntry::delete(f.path.as_str()));
                }
                Change::Delete => {}
            }
        }
        let tree = repo
            .create_tree(&tip_commit.tree.sha, &entries)
            .await
            .map_err(step_err)?;
        let commit = repo
            .create_commit(
                &req.message,
                &tree,
                std::slice::from_ref(&tip),
                &req.identity,
            )
            .await
            .map_err(step_err)?;
        match repo.move_branch(&req.branch, &commit, false).await {
            Ok(()) => {
                return Ok(DirectOutcome::new(
                    req,
                    DirectAction::Committed,
                    Some(commit),
                    attempt,
                ));
            }
            Err(e) if e.is_unprocessable_with("fast forward") => {
                tracing::info!(branch = %req.branch, repository = %place, attempt, "the branch moved meanwhile; re-applying on the new tip");
            }
            Err(e)
                if e.is_unprocessable_with("protected branch")
                    || e.is_unprocessable_with("through a pull request")
                    || (matches!(e.status(), Some(403 | 409 | 422))
                        && e.to_string()
                            .to_ascii_lowercase()
                            .contains("rule violation")) =>
            {
                return Err(StepError::permanent(format!(
                    "{}: {e}",
                    protected_hint(&req.branch)
                )));
            }
            Err(e) => return Err(step_err(e)),
        }
    }
    Err(req.gave_up(&place))
}

// ---------------------------------------------------------------------------------------------
// Any Git remote

/// Commits onto a branch of a Git remote through git2: fetch the branch, commit on its tip in
/// a scratch repository, push without force. A push refused because the branch moved (the
/// remote's tip is no longer the one built on) starts over on the new tip; any other refusal
/// fails the step with the remote's words.
pub async fn commit_git(
    remote: &GitRemote,
    req: &DirectCommit,
) -> Result<DirectOutcome, StepError> {
    req.check()?;
    let access = remote.access(&req.repository)?;
    let req = req.clone();
    let task = access.clone();
    let result = access
        .run(move || Ok(git_blocking(&task, &req)))
        .await
        .map_err(|e| remote_err("pushing to", e))?;
    result
}

const MOVED: &str = "the branch moved on the remote since it was read";

fn git_blocking(
    access: &crate::git::access::Access,
    req: &DirectCommit,
) -> Result<DirectOutcome, StepError> {
    let url = access.url_redacted();
    let session = access.session().map_err(|e| remote_err("reaching", e))?;
    let work = WorkDir(std::env::temp_dir().join(format!(
        "mockops-direct-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    )));
    let repo = Repository::init_bare(&work.0)
        .map_err(|e| git_err("creating a work repository for", url, e))?;
    let mut remote = repo
        .remote_anonymous(access.url())
        .map_err(|e| git_err("opening remote", url, e))?;
    let refname = format!("refs/heads/{}", req.branch);
    let remote_tip = |remote: &mut git2::Remote<'_>| -> Result<Option<Oid>, StepError> {
        let conn = remote
            .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
            .map_err(|e| net_err("connecting to", &session, e))?;
        let heads = conn.list().map_err(|e| net_err("listing", &session, e))?;
        Ok(heads.iter().find(|h| h.name() == refname).map(|h| h.oid()))
    };
    let wanted = req.wanted();
    for attempt in 1..=req.attempts() {
        let tip = remote_tip(&mut remote)?.ok_or_else(|| {
            StepError::permanent(format!(
                "branch {:?} does not exist in {url}; create it or follow another branch",
                req.branch
            ))
        })?;
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(session.callbacks());
        remote
            .fetch(
                &[format!("+{refname}:refs/mockops/tip")],
                Some(&mut fo),
                None,
            )
            .map_err(|e| net_err("fetching from", &session, e))?;
        let tip_commit = repo
            .find_commit(tip)
            .map_err(|e| git_err("reading the tip of", url, e))?;
        if let Some(done) = find_marker(&repo, tip, req).map_err(|e| git_err("reading", url, e))? {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::AlreadyCommitted,
                Some(done.to_string()),
                attempt,
            ));
        }
        let tree = tip_commit
            .tree()
            .map_err(|e| git_err("reading the tree of", url, e))?;
        if tree_matches(&tree, &wanted) {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::Unchanged,
                None,
                attempt,
            ));
        }
        let commit =
            commit_on(&repo, &tip_commit, req).map_err(|e| git_err("committing for", url, e))?;

        let mut rejected: Option<String> = None;
        let pushed = {
            let mut cb = session.callbacks();
            let dst = refname.clone();
            cb.push_negotiation(move |updates| {
                for u in updates {
                    if u.dst_refname().ok() == Some(dst.as_str()) && u.src() != tip {
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
            repo.reference("refs/mockops/new", commit, true, "direct commit")
                .map_err(|e| git_err("committing for", url, e))?;
            remote.push(&[format!("refs/mockops/new:{refname}")], Some(&mut po))
        };
        match pushed {
            Ok(()) if rejected.is_none() => {
                return Ok(DirectOutcome::new(
                    req,
                    DirectAction::Committed,
                    Some(commit.to_string()),
                    attempt,
                ));
            }
            Ok(()) => {
                // Refused by the remote: a race if the branch is no longer where it was.
                if remote_tip(&mut remote)? == Some(tip) {
                    let why = rejected.unwrap_or_default();
                    let hint = if why.contains("protected") || why.contains("declined") {
                        format!("; {}", protected_hint(&req.branch))
                    } else {
                        String::new()
                    };
                    return Err(StepError::permanent(format!(
                        "{url} refused the commit onto {}: {why}{hint}",
                        req.branch
                    )));
                }
            }
            Err(e) if e.message().contains(MOVED) || e.code() == ErrorCode::NotFastForward => {}
            Err(e) => return Err(net_err("pushing to", &session, e)),
        }
        tracing::info!(branch = %req.branch, remote = %url, attempt, "the branch moved meanwhile; re-applying on the new tip");
    }
    Err(req.gave_up(url))
}

/// The newest commit within [`HISTORY_DEPTH`] of `tip` whose message has the marker.
fn find_marker(
    repo: &Repository,
    tip: Oid,
    req: &DirectCommit,
) -> Result<Option<Oid>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(tip)?;
    for oid in walk.take(HISTORY_DEPTH) {
        let oid = oid?;
        let c = repo.find_commit(oid)?;
        if req.has_marker(&String::from_utf8_lossy(c.message_bytes())) {
            return Ok(Some(oid));
        }
    }
    Ok(None)
}

fn tree_matches(tree: &git2::Tree<'_>, wanted: &[(String, Option<String>)]) -> bool {
    wanted.iter().all(|(path, id)| {
        let there = tree
            .get_path(Path::new(path))
            .ok()
            .map(|e| e.id().to_string());
        there == *id
    })
}

/// The request's commit on top of `parent` (objects written, no ref moved).
fn commit_on(
    repo: &Repository,
    parent: &git2::Commit<'_>,
    req: &DirectCommit,
) -> Result<Oid, git2::Error> {
    let base = parent.tree()?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    for f in &req.files {
        match &f.change {
            Change::Write(bytes) => {
                let oid = repo.blob(bytes)?;
                update.upsert(f.path.as_str(), oid, git2::FileMode::Blob);
            }
            Change::Delete => {
                if base.get_path(Path::new(f.path.as_str())).is_ok() {
                    update.remove(f.path.as_str());
                }
            }
        }
    }
    let tree = repo.find_tree(update.create_updated(repo, &base)?)?;
    let sig = git2::Signature::now(&req.identity.name, &req.identity.email)?;
    repo.commit(None, &sig, &sig, &req.message, &tree, &[parent])
}

// ---------------------------------------------------------------------------------------------
// A repository on this machine

/// Commits onto a branch of the repository at `dir` (bare or not). The branch is moved as a
/// compare-and-swap against the tip the commit was built on. When the branch is checked out
/// in `dir`, the index and work tree are updated for the changed paths too; a changed path
/// with uncommitted changes there (modified, staged, or an untracked file in the way) stops
/// the commit with an error naming it, and nothing is written.
pub async fn commit_local(dir: &Path, req: &DirectCommit) -> Result<DirectOutcome, StepError> {
    req.check()?;
    let dir: PathBuf = dir.to_path_buf();
    let req = req.clone();
    tokio::task::spawn_blocking(move || local_blocking(&dir, &req))
        .await
        .map_err(|e| StepError::transient(format!("direct commit task failed: {e}")))?
}

fn local_blocking(dir: &Path, req: &DirectCommit) -> Result<DirectOutcome, StepError> {
    let place = dir.display().to_string();
    let git = |what: &str, e: git2::Error| git_err(what, &place, e);
    let repo = Repository::open(dir).map_err(|e| git("opening", e))?;
    let refname = format!("refs/heads/{}", req.branch);
    let wanted = req.wanted();
    for attempt in 1..=req.attempts() {
        let tip = repo.refname_to_id(&refname).map_err(|e| {
            if e.code() == ErrorCode::NotFound {
                StepError::permanent(format!(
                    "branch {:?} does not exist in {place}; create it or follow another branch",
                    req.branch
                ))
            } else {
                git("reading the branch of", e)
            }
        })?;
        if let Some(done) = find_marker(&repo, tip, req).map_err(|e| git("reading", e))? {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::AlreadyCommitted,
                Some(done.to_string()),
                attempt,
            ));
        }
        let tip_commit = repo.find_commit(tip).map_err(|e| git("reading", e))?;
        let tree = tip_commit.tree().map_err(|e| git("reading", e))?;
        if tree_matches(&tree, &wanted) {
            return Ok(DirectOutcome::new(
                req,
                DirectAction::Unchanged,
                None,
                attempt,
            ));
        }
        let checked_out = !repo.is_bare()
            && repo
                .head()
                .ok()
                .is_some_and(|h| h.is_branch() && h.name().ok() == Some(refname.as_str()));
        if checked_out {
            refuse_dirty(&repo, req, &place)?;
        }
        let commit = commit_on(&repo, &tip_commit, req).map_err(|e| git("committing in", e))?;
        match repo.reference_matching(&refname, commit, true, tip, "mockops: direct commit") {
            Ok(_) => {}
            Err(e) if e.code() == ErrorCode::Modified => {
                tracing::info!(branch = %req.branch, repository = %place, attempt, "the branch moved meanwhile; re-applying on the new tip");
                continue;
            }
            Err(e) => return Err(git("moving the branch of", e)),
        }
        if checked_out {
            update_work_tree(&repo, req).map_err(|e| {
                StepError::permanent(format!(
                    "commit {commit} is on {} in {place}, but the work tree could not be updated for it ({e}); run `git checkout -- {}` there",
                    req.branch,
                    req.files
                        .iter()
                        .map(|f| f.path.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
            })?;
        }
        return Ok(DirectOutcome::new(
            req,
            DirectAction::Committed,
            Some(commit.to_string()),
            attempt,
        ));
    }
    Err(req.gave_up(&place))
}

/// An error naming every changed path that has uncommitted changes in the work tree or index.
fn refuse_dirty(repo: &Repository, req: &DirectCommit, place: &str) -> Result<(), StepError> {
    let mut dirty = Vec::new();
    let root = repo.workdir().map(Path::to_path_buf).unwrap_or_default();
    for f in &req.files {
        // Writing through a symbolic link could land outside the work tree.
        let mut at = root.clone();
        let mut linked = None;
        for seg in f.path.as_str().split('/') {
            at.push(seg);
            if std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink()) {
                linked = Some(at.strip_prefix(&root).unwrap_or(&at).display().to_string());
                break;
            }
        }
        if let Some(link) = linked {
            dirty.push(format!("{} (`{link}` is a symbolic link)", f.path));
            continue;
        }
        match repo.status_file(Path::new(f.path.as_str())) {
            Ok(s) if s.is_empty() => {}
            Ok(s) => dirty.push(format!("{} ({})", f.path, describe_status(s))),
            Err(e) if e.code() == ErrorCode::NotFound => {}
            Err(e) => return Err(git_err("reading the status of", place, e)),
        }
    }
    if dirty.is_empty() {
        return Ok(());
    }
    Err(StepError::permanent(format!(
        "{} has uncommitted changes to {} in {place}; mockops does not overwrite them: commit, discard or move them there, then run the pipeline again",
        req.branch,
        dirty.join(", ")
    )))
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

fn update_work_tree(repo: &Repository, req: &DirectCommit) -> Result<(), git2::Error> {
    let root = repo
        .workdir()
        .ok_or_else(|| git2::Error::from_str("the repository has no work tree"))?
        .to_path_buf();
    let mut index = repo.index()?;
    index.read(false)?;
    for f in &req.files {
        let path = root.join(f.path.as_str());
        match &f.change {
            Change::Write(bytes) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(io_err)?;
                }
                std::fs::write(&path, bytes).map_err(io_err)?;
                index.add_path(Path::new(f.path.as_str()))?;
            }
            Change::Delete => {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(e)),
                }
                let _ = index.remove_path(Path::new(f.path.as_str()));
            }
        }
    }
    index.write()
}

fn io_err(e: std::io::Error) -> git2::Error {
    git2::Error::from_str(&e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> DirectCommit {
        DirectCommit::new(
            "/nowhere",
            "main",
            "Promote\n\nMockops-Promotion-Id: promo-1\n",
            "Mockops-Promotion-Id: promo-1",
        )
        .write("environments/test/x.yaml", "a: 1\n")
        .unwrap()
    }

    #[test]
    fn the_marker_must_be_a_line_of_the_message() {
        assert!(request().check().is_ok());
        let mut r = request();
        r.marker = "Mockops-Promotion-Id: promo-2".into();
        assert!(r.check().is_err());
        assert!(r.has_marker("x\n\nMockops-Promotion-Id: promo-2\n"));
        assert!(!r.has_marker("x\n\nMockops-Promotion-Id: promo-22\n"));
    }

    #[test]
    fn outputs_say_direct_and_keep_pr_keys() {
        let o = DirectOutcome::new(&request(), DirectAction::Unchanged, None, 1).outputs();
        assert_eq!(o["mode"], "direct");
        assert_eq!(o["action"], "unchanged");
        assert!(o["commit"].is_null() && o["pr_url"].is_null());
        assert!(
            o["reason"]
                .as_str()
                .unwrap()
                .contains("already has this content")
        );
    }
}
