//! The pull request lifecycle on GitHub, through the Git data API.
//!
//! Order of effects, so that a failure at any point leaves nothing half-made: blobs and the
//! tree and commit are created first (content-addressed, harmless if orphaned); the branch is
//! only created or moved once the commit exists; the pull request is opened (or its body
//! refreshed) last. Running the same request again finds what exists and completes it.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::body::{FileDiff, parse_metadata, render_body_with};
use super::{CONTENT_TRAILER, Change, PrAction, PrFile, PrOutcome, PrRequest};
use crate::github::api::{Commit, Person, PullRequest, TreeEntry};
use crate::github::{GitHub, GitHubError, Repo, parse_repository};
use crate::pipeline::steps::StepError;

/// Base contents fetched for the diff in the body; beyond this, files are listed only.
const MAX_DIFF_FILES: usize = 100;
/// Pages of pull requests read when counting against the limits.
const MAX_PAGES: u32 = 10;

pub(super) fn step_err(e: GitHubError) -> StepError {
    let hint = match e.status() {
        Some(401) => {
            "; the token is invalid or expired: check GITHUB_TOKEN (or the GitHub App key)"
        }
        Some(403) if !e.is_transient() => {
            "; the token lacks permission: it needs contents and pull requests write access to the repository"
        }
        Some(404) => {
            "; the repository does not exist or the token cannot see it: check `repository` and the token's repository access"
        }
        _ => "",
    };
    crate::pipeline::steps::contract::Failure::GitHub {
        message: format!("{e}{hint}"),
        source: e,
    }
    .into()
}

/// Opens, updates or leaves alone the pull request of `req` (see the module docs).
pub async fn apply(client: &GitHub, req: &PrRequest) -> Result<PrOutcome, StepError> {
    req.check()?;
    let (owner, name) = parse_repository(&req.repository).map_err(step_err)?;
    let repo = client.repo(&owner, &name).await.map_err(step_err)?;
    let _writer = repo.writer().await;
    Lifecycle {
        repo: &repo,
        req,
        hash: req.content_hash(),
        files: req.normalized_files(),
    }
    .run()
    .await
    .map_err(|e| match e {
        Stop::Api(e) => step_err(e),
        Stop::Step(e) => e,
    })
}

enum Stop {
    Api(GitHubError),
    Step(StepError),
}

impl From<GitHubError> for Stop {
    fn from(e: GitHubError) -> Self {
        Stop::Api(e)
    }
}

struct Lifecycle<'a> {
    repo: &'a Repo,
    req: &'a PrRequest,
    hash: String,
    files: Vec<PrFile>,
}

/// A commit mockops made: committed with its identity and carrying its trailer.
pub(crate) fn is_own_commit(message: &str, committer: &Person, identity: &Person) -> bool {
    committer.email.eq_ignore_ascii_case(&identity.email)
        && message
            .lines()
            .any(|l| l.starts_with(&format!("{CONTENT_TRAILER}: ")))
}

pub(crate) fn commit_message(req: &PrRequest, hash: &str) -> String {
    let mut msg = req.commit_message.trim_end().to_string();
    msg.push_str("\n\n");
    if let Some(e) = &req.event {
        msg.push_str(&format!("Mockops-Event: {}\n", e.id));
    }
    msg.push_str(&format!("Mockops-Topic: {}/{}\n", req.pipeline, req.topic));
    msg.push_str(&format!("{CONTENT_TRAILER}: {hash}\n"));
    msg
}

impl Lifecycle<'_> {
    fn outcome(
        &self,
        action: PrAction,
        pr: Option<&PullRequest>,
        commit: Option<String>,
    ) -> PrOutcome {
        PrOutcome {
            action,
            number: pr.map(|p| p.number),
            url: pr.map(|p| p.html_url.clone()),
            branch: self.req.head_branch.clone(),
            commit,
            reason: None,
        }
    }

    async fn run(mut self) -> Result<PrOutcome, Stop> {
        let head_label = format!("{}:{}", self.repo.owner(), self.req.head_branch);
        let pulls: Vec<PullRequest> = self
            .repo
            .pulls("all", Some(&head_label), 1)
            .await?
            .into_iter()
            .filter(|p| p.head.name == self.req.head_branch)
            .collect();
        let open = pulls.iter().find(|p| p.state == "open").cloned();

        if open.is_none()
            && let Some(closed) = pulls.iter().find(|p| {
                p.state == "closed"
                    && p.merged_at.is_none()
                    && p.body
                        .as_deref()
                        .and_then(parse_metadata)
                        .is_some_and(|m| m.content_hash == self.hash)
            })
        {
            let mut o = self.outcome(PrAction::SkippedClosed, Some(closed), None);
            o.reason = Some(format!(
                "pull request #{} with this content was closed without merge; it is not reopened until the content changes",
                closed.number
            ));
            return Ok(o);
        }

        let base_sha = self
            .repo
            .branch_sha(&self.req.base_branch)
            .await?
            .ok_or_else(|| {
                Stop::Step(StepError::invalid(format!(
                    "base branch {:?} does not exist in {}/{}; set `branch` to an existing branch",
                    self.req.base_branch,
                    self.repo.owner(),
                    self.repo.name()
                )))
            })?;
        if let Some(expected) = &self.req.expected_base
            && *expected != base_sha
        {
            let mut o = self.outcome(PrAction::BaseMoved, open.as_ref(), None);
            o.reason = Some(format!(
                "{} moved from {expected} to {base_sha} since the change was validated",
                self.req.base_branch
            ));
            return Ok(o);
        }
        let base_commit = self.repo.commit(&base_sha).await?;
        let base_files = self.blob_map(&base_commit.tree.sha).await?;
        // Replaced directories: what the base has there and the request does not is deleted.
        self.files = self
            .req
            .files_against(base_files.keys().map(String::as_str));

        let wanted = wanted_blobs(&self.files);
        let differs_from = |tree: &HashMap<String, String>| {
            wanted
                .iter()
                .any(|(p, id)| tree.get(p).map(String::as_str) != id.as_deref())
        };

        if !differs_from(&base_files) {
            let mut o = self.outcome(PrAction::Unchanged, open.as_ref(), None);
            o.reason = Some(format!("{} already has this content", self.req.base_branch));
            return Ok(o);
        }

        // Limits apply to opening; an open pull request is always kept up to date.
        if open.is_none()
            && let Some(limited) = self.limited().await?
        {
            return Ok(limited);
        }

        let head_sha = self.repo.branch_sha(&self.req.head_branch).await?;
        let mut pushed = None;
        let mut current = head_sha.clone();
        match &head_sha {
            Some(sha) => {
                let head = self.repo.commit(sha).await?;
                if !is_own_commit(&head.message, &head.committer, &self.req.identity) {
                    return self.foreign(open.as_ref(), &head).await;
                }
                let head_files = self.blob_map(&head.tree.sha).await?;
                let head_stale = !self
                    .req
                    .stale_paths(head_files.keys().map(String::as_str))
                    .is_empty();
                if !differs_from(&head_files) && !head_stale {
                    if let Some(pr) = &open {
                        return Ok(self.outcome(PrAction::Unchanged, Some(pr), head_sha.clone()));
                    }
                } else {
                    let commit = self
                        .make_commit(&base_commit, &base_sha, &base_files)
                        .await?;
                    // A push between our read and this move would be overwritten: check again
                    // as late as possible.
                    let now = self.repo.branch_sha(&self.req.head_branch).await?;
                    if now.as_deref() != Some(sha.as_str()) {
                        return Err(Stop::Step(StepError::unavailable(format!(
                            "branch {} moved while mockops was updating it; trying again will re-check who pushed",
                            self.req.head_branch
                        ))));
                    }
                    self.repo
                        .move_branch(&self.req.head_branch, &commit, true)
                        .await?;
                    pushed = Some(commit.clone());
                    current = Some(commit);
                }
            }
            None => {
                let commit = self
                    .make_commit(&base_commit, &base_sha, &base_files)
                    .await?;
                if !self
                    .repo
                    .create_branch(&self.req.head_branch, &commit)
                    .await?
                {
                    // Created meanwhile (or by a replayed request): decide on what is there.
                    let there = self
                        .repo
                        .branch_sha(&self.req.head_branch)
                        .await?
                        .unwrap_or_default();
                    if there != commit {
                        let head = self.repo.commit(&there).await?;
                        if !is_own_commit(&head.message, &head.committer, &self.req.identity) {
                            return self.foreign(open.as_ref(), &head).await;
                        }
                        self.repo
                            .move_branch(&self.req.head_branch, &commit, true)
                            .await?;
                    }
                }
                pushed = Some(commit.clone());
                current = Some(commit);
            }
        }

        let diffs = self.diffs(&base_files).await?;
        let body = render_body_with(self.req, &diffs);
        match open {
            Some(pr) => {
                if pr.body.as_deref() != Some(body.as_str()) || pr.title != self.req.title {
                    self.repo
                        .update_pull(pr.number, &json!({"title": self.req.title, "body": body}))
                        .await?;
                }
                let action = if pushed.is_some() {
                    PrAction::Updated
                } else {
                    PrAction::Unchanged
                };
                Ok(self.outcome(action, Some(&pr), current))
            }
            None => {
                let pr = match self
                    .repo
                    .create_pull(
                        &self.req.title,
                        &self.req.head_branch,
                        &self.req.base_branch,
                        &body,
                        self.req.draft,
                    )
                    .await?
                {
                    Some(pr) => pr,
                    None => {
                        let head_label = format!("{}:{}", self.repo.owner(), self.req.head_branch);
                        let found = self
                            .repo
                            .pulls("open", Some(&head_label), 1)
                            .await?
                            .into_iter()
                            .find(|p| p.head.name == self.req.head_branch)
                            .ok_or_else(|| {
                                Stop::Step(StepError::unavailable(
                                    "GitHub says a pull request exists for the branch but does not list it yet",
                                ))
                            })?;
                        self.repo
                            .update_pull(
                                found.number,
                                &json!({"title": self.req.title, "body": body}),
                            )
                            .await?
                    }
                };
                self.repo.add_labels(pr.number, &self.req.labels).await?;
                self.repo
                    .request_reviewers(pr.number, &self.req.reviewers, &self.req.team_reviewers)
                    .await?;
                Ok(self.outcome(PrAction::Opened, Some(&pr), current))
            }
        }
    }

    /// Path → blob id of every file in a tree.
    async fn blob_map(&self, tree: &str) -> Result<HashMap<String, String>, Stop> {
        blob_map(self.repo, tree).await.map_err(|e| match e {
            TreeError::Api(e) => Stop::Api(e),
            TreeError::Step(e) => Stop::Step(e),
        })
    }

    async fn make_commit(
        &self,
        base: &Commit,
        base_sha: &str,
        base_files: &HashMap<String, String>,
    ) -> Result<String, Stop> {
        let mut entries = Vec::with_capacity(self.files.len());
        for f in &self.files {
            // Deleting a path the base does not have is an error for GitHub, and a no-op.
            if f.change == Change::Delete && !base_files.contains_key(f.path.as_str()) {
                continue;
            }
            entries.push(match &f.change {
                Change::Write(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => TreeEntry::text(f.path.as_str(), text.to_string()),
                    Err(_) => TreeEntry::blob(f.path.as_str(), self.repo.create_blob(bytes).await?),
                },
                Change::Delete => TreeEntry::delete(f.path.as_str()),
            });
        }
        let tree = self.repo.create_tree(&base.tree.sha, &entries).await?;
        Ok(self
            .repo
            .create_commit(
                &commit_message(self.req, &self.hash),
                &tree,
                &[base_sha.to_string()],
                &self.req.identity,
            )
            .await?)
    }

    async fn diffs(&self, base_files: &HashMap<String, String>) -> Result<Vec<FileDiff>, Stop> {
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let new = match &f.change {
                Change::Write(b) => Some(b.clone()),
                Change::Delete => None,
            };
            let base = base_files.get(f.path.as_str());
            if new.is_none() && base.is_none() {
                continue;
            }
            let skipped = i >= MAX_DIFF_FILES;
            let old = match base {
                Some(sha) if !skipped => Some(self.repo.blob(sha).await?),
                Some(_) => Some(Vec::new()),
                None => None,
            };
            if old.is_some() && old == new {
                continue;
            }
            out.push(FileDiff {
                path: f.path.to_string(),
                old,
                new,
                skipped,
            });
        }
        Ok(out)
    }

    /// A commit by someone else is on the branch: comment once per content, never push.
    async fn foreign(&self, open: Option<&PullRequest>, head: &Commit) -> Result<PrOutcome, Stop> {
        let who = format!("{} <{}>", head.committer.name, head.committer.email);
        let Some(pr) = open else {
            let mut o = self.outcome(PrAction::SkippedForeign, None, Some(head.sha.clone()));
            o.reason = Some(format!(
                "branch {} has commit {} by {who} and no open pull request; delete the branch to let mockops recreate it",
                self.req.head_branch,
                short(&head.sha)
            ));
            return Ok(o);
        };
        let marker = format!("<!-- mockops:update {} -->", self.hash);
        let comments = self.repo.comments(pr.number).await?;
        if !comments
            .iter()
            .any(|c| c.body.as_deref().is_some_and(|b| b.contains(&marker)))
        {
            let event = self
                .req
                .event
                .as_ref()
                .map(|e| format!(" after `{}` event `{}`", e.event_type, e.id))
                .unwrap_or_default();
            let body = format!(
                "mockops has new changes for this pull request{event}, but commit {} by {who} is on `{}`, so mockops no longer pushes to it.\n\nTo let mockops update the branch again, remove the commits not made by mockops (or close this pull request and delete the branch); otherwise apply the change by hand:\n\n{}\n\n{marker}",
                short(&head.sha),
                self.req.head_branch,
                self.files
                    .iter()
                    .map(|f| format!(
                        "- `{}` ({})",
                        f.path,
                        if f.change == Change::Delete {
                            "delete"
                        } else {
                            "write"
                        }
                    ))
                    .collect::<Vec<_>>()
                    .join("\n"),
            );
            self.repo.create_comment(pr.number, &body).await?;
        }
        let mut o = self.outcome(PrAction::Commented, Some(pr), Some(head.sha.clone()));
        o.reason = Some(format!(
            "commit {} by {who} is on the branch; commented instead of pushing",
            short(&head.sha)
        ));
        Ok(o)
    }

    /// `Some(Limited)` when opening one more pull request would exceed a limit.
    async fn limited(&self) -> Result<Option<PrOutcome>, Stop> {
        let ours = |p: &PullRequest| p.body.as_deref().and_then(parse_metadata).is_some();
        let open = self.repo.pulls("open", None, MAX_PAGES).await?;
        let open_count = open.iter().filter(|p| ours(p)).count();
        let limits = self.req.limits;
        if open_count >= limits.max_open as usize {
            let mut o = self.outcome(PrAction::Limited, None, None);
            o.reason = Some(format!(
                "{open_count} mockops pull requests are open in {}/{} (limit {}); merge or close some, or raise pull_requests.max_open",
                self.repo.owner(),
                self.repo.name(),
                limits.max_open
            ));
            return Ok(Some(o));
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let all = self.repo.pulls("all", None, MAX_PAGES).await?;
        let recent = all
            .iter()
            .filter(|p| ours(p))
            .filter(|p| {
                p.created_at
                    .as_deref()
                    .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
                    .is_some_and(|t| t >= hour_ago)
            })
            .count();
        if recent >= limits.max_per_hour as usize {
            let mut o = self.outcome(PrAction::Limited, None, None);
            o.reason = Some(format!(
                "{recent} mockops pull requests were opened in {}/{} in the last hour (limit {}); it opens more later, or raise pull_requests.max_per_hour",
                self.repo.owner(),
                self.repo.name(),
                limits.max_per_hour
            ));
            return Ok(Some(o));
        }
        Ok(None)
    }
}

pub(super) enum TreeError {
    Api(GitHubError),
    Step(StepError),
}

impl From<TreeError> for StepError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::Api(e) => step_err(e),
            TreeError::Step(e) => e,
        }
    }
}

/// Path → blob id of every file in a tree.
pub(super) async fn blob_map(
    repo: &Repo,
    tree: &str,
) -> Result<HashMap<String, String>, TreeError> {
    let t = repo.tree_recursive(tree).await.map_err(TreeError::Api)?;
    if t.truncated {
        return Err(TreeError::Step(StepError::invalid(format!(
            "the tree of {}/{} is too large for GitHub to list in one call",
            repo.owner(),
            repo.name()
        ))));
    }
    Ok(t.tree
        .into_iter()
        .filter(|i| i.kind == "blob")
        .filter_map(|i| i.sha.map(|s| (i.path, s)))
        .collect())
}

/// (path, Git blob id, or `None` for a deletion) of every file.
pub(super) fn wanted_blobs(files: &[PrFile]) -> Vec<(String, Option<String>)> {
    files
        .iter()
        .map(|f| {
            let id = match &f.change {
                Change::Write(b) => Some(blob_id(b)),
                Change::Delete => None,
            };
            (f.path.to_string(), id)
        })
        .collect()
}

pub(super) fn blob_id(bytes: &[u8]) -> String {
    crate::git::write::blob_id(bytes)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_commits_need_identity_and_trailer() {
        let id = super::super::default_identity();
        let req = PrRequest::new("o/r", "main", "p", "t", "Title");
        let msg = commit_message(&req, "abc");
        assert!(msg.starts_with("Title\n\n"));
        assert!(is_own_commit(&msg, &id, &id));
        let human = Person {
            name: "Ann".into(),
            email: "ann@example.com".into(),
        };
        assert!(!is_own_commit(&msg, &human, &id));
        assert!(!is_own_commit("fix typo", &id, &id));
    }

    #[test]
    fn permanent_errors_say_how_to_fix_them() {
        let api = |status| GitHubError::Api {
            method: "GET",
            route: "/repos/o/r/pulls".into(),
            status,
            message: "Bad credentials".into(),
            details: vec![],
        };
        let e = step_err(api(401));
        assert!(!e.retryable());
        assert!(e.rendered().contains("GITHUB_TOKEN"), "{}", e.rendered());
        assert!(step_err(api(404)).rendered().contains("check `repository`"));
        assert!(step_err(api(502)).retryable());
    }

    #[test]
    fn blob_ids_match_git() {
        assert_eq!(blob_id(b""), "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
    }
}
