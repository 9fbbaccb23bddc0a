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

use serde_json::{Map, Value as Json};

use super::git::{edits_of, remote_err, write_err};
use super::github::{blob_map, step_err, wanted_blobs};
use super::{Change, GitRemote, PrFile, RepoPath};
use crate::git::Oid;
use crate::git::access::Access;
use crate::git::write::{Identity, Pushed, Repo, retry_races};
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
            return Err(StepError::invalid("a direct commit needs files to change"));
        }
        super::check_branch(&self.branch, "branch")?;
        if self.marker.trim().is_empty() || !self.message.lines().any(|l| l == self.marker) {
            return Err(StepError::invalid(
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

    fn identity(&self) -> Identity<'_> {
        Identity {
            name: &self.identity.name,
            email: &self.identity.email,
        }
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }

    fn gave_up(&self, place: &str) -> StepError {
        StepError::unavailable(format!(
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
                StepError::invalid(format!(
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
                return Err(StepError::invalid(format!(
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

/// Commits onto a branch of a Git remote (`git::write`): fetch the branch, commit on its tip in
/// a scratch repository, push with the tip as the lease. A push refused because the branch
/// moved (the remote's tip is no longer the one built on) starts over on the new tip; any other refusal
/// fails the step with the remote's words.
pub async fn commit_git(
    remote: &GitRemote,
    req: &DirectCommit,
) -> Result<DirectOutcome, StepError> {
    req.check()?;
    let access = remote.access(&req.repository)?;
    let req = req.clone();
    let task = access.clone();
    access
        .run(move || Ok(git_blocking(&task, &req)))
        .await
        .map_err(|e| remote_err("pushing to", e))?
}

fn git_blocking(access: &Access, req: &DirectCommit) -> Result<DirectOutcome, StepError> {
    let url = access.url_redacted();
    let session = access.session().map_err(|e| remote_err("reaching", e))?;
    let repo = Repo::scratch("direct", url).map_err(write_err)?;
    let refname = format!("refs/heads/{}", req.branch);
    let remote_tip = || -> Result<Option<Oid>, StepError> {
        Ok(repo
            .remote_heads(&session, &[&refname])
            .map_err(write_err)?[0])
    };
    let wanted = req.wanted();
    let edits = edits_of(&req.files);
    let done = retry_races(
        req.attempts(),
        url,
        &req.branch,
        |attempt| -> Result<_, StepError> {
            let tip = remote_tip()?.ok_or_else(|| {
                StepError::invalid(format!(
                    "branch {:?} does not exist in {url}; create it or follow another branch",
                    req.branch
                ))
            })?;
            repo.fetch(&session, &[format!("+{refname}:refs/mockops/tip")])
                .map_err(write_err)?;
            if let Some(outcome) = already_there(&repo, tip, req, &wanted, attempt)? {
                return Ok(Some(outcome));
            }
            let commit = repo
                .commit_on(tip, &edits, &req.message, req.identity())
                .map_err(write_err)?;
            match repo
                .push_with_lease(&session, commit, &refname, Some(tip))
                .map_err(write_err)?
            {
                Pushed::Done => Ok(Some(DirectOutcome::new(
                    req,
                    DirectAction::Committed,
                    Some(commit.to_string()),
                    attempt,
                ))),
                Pushed::Moved => Ok(None),
                // Refused by the remote: a race if the branch is no longer where it was.
                Pushed::Refused(why) => {
                    if remote_tip()? != Some(tip) {
                        return Ok(None);
                    }
                    let hint = if why.contains("protected") || why.contains("declined") {
                        format!("; {}", protected_hint(&req.branch))
                    } else {
                        String::new()
                    };
                    Err(StepError::invalid(format!(
                        "{url} refused the commit onto {}: {why}{hint}",
                        req.branch
                    )))
                }
            }
        },
    )?;
    done.ok_or_else(|| req.gave_up(url))
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
        .map_err(|e| StepError::unavailable(format!("direct commit task failed: {e}")))?
}

fn local_blocking(dir: &Path, req: &DirectCommit) -> Result<DirectOutcome, StepError> {
    let place = dir.display().to_string();
    let repo = Repo::open(dir).map_err(write_err)?;
    let wanted = req.wanted();
    let edits = edits_of(&req.files);
    let done = retry_races(
        req.attempts(),
        &place,
        &req.branch,
        |attempt| -> Result<_, StepError> {
            let tip = repo
                .branch_tip(&req.branch)
                .map_err(write_err)?
                .ok_or_else(|| {
                    StepError::invalid(format!(
                        "branch {:?} does not exist in {place}; create it or follow another branch",
                        req.branch
                    ))
                })?;
            if let Some(outcome) = already_there(&repo, tip, req, &wanted, attempt)? {
                return Ok(Some(outcome));
            }
            let checked_out = repo.checked_out(&req.branch);
            if checked_out {
                refuse_dirty(&repo, req, &place)?;
            }
            let commit = repo
                .commit_on(tip, &edits, &req.message, req.identity())
                .map_err(write_err)?;
            if !repo
                .move_branch(&req.branch, commit, tip, "mockops: direct commit")
                .map_err(write_err)?
            {
                return Ok(None);
            }
            if checked_out {
                repo.update_work_tree(&edits).map_err(|e| {
                StepError::invalid(format!(
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
            Ok(Some(DirectOutcome::new(
                req,
                DirectAction::Committed,
                Some(commit.to_string()),
                attempt,
            )))
        },
    )?;
    done.ok_or_else(|| req.gave_up(&place))
}

/// An error naming every changed path that has uncommitted changes in the work tree or index.
/// What an earlier attempt (the request's marker in the branch's recent history) or someone
/// else (the wanted content already at `tip`) already did, if anything: the outcome without a
/// new commit.
fn already_there(
    repo: &Repo,
    tip: crate::git::Oid,
    req: &DirectCommit,
    wanted: &[(String, Option<String>)],
    attempt: u32,
) -> Result<Option<DirectOutcome>, StepError> {
    if let Some(done) = repo
        .find_commit_where(tip, HISTORY_DEPTH, |m| req.has_marker(m))
        .map_err(write_err)?
    {
        return Ok(Some(DirectOutcome::new(
            req,
            DirectAction::AlreadyCommitted,
            Some(done.to_string()),
            attempt,
        )));
    }
    if repo.has_content(tip, wanted).map_err(write_err)? {
        return Ok(Some(DirectOutcome::new(
            req,
            DirectAction::Unchanged,
            None,
            attempt,
        )));
    }
    Ok(None)
}

fn refuse_dirty(repo: &Repo, req: &DirectCommit, place: &str) -> Result<(), StepError> {
    let paths: Vec<&str> = req.files.iter().map(|f| f.path.as_str()).collect();
    let dirty = repo.uncommitted(&paths).map_err(write_err)?;
    if dirty.is_empty() {
        return Ok(());
    }
    Err(StepError::invalid(format!(
        "{} has uncommitted changes to {} in {place}; mockops does not overwrite them: commit, discard or move them there, then run the pipeline again",
        req.branch,
        dirty.join(", ")
    )))
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
