//! Managing pipelines by writing Git: `mockops pipelines create|enable|disable` and
//! `POST /api/v1/pipelines`, `POST /api/v1/pipelines/{name}/enable|disable`.
//!
//! A verb never touches the store. It builds its change on the followed branch's head, loads
//! the resulting tree with the reconciler's loader ([`Loader`]) and refuses the change, with
//! the diagnostics `mockops validate` prints, when that tree has errors; nothing is written
//! then. A valid change is written to the config repository through `git::write` and
//! `create_pr`, like promotions: one commit on the followed branch where `mockops.yaml` says
//! `management: {pipelines: direct}`, otherwise a branch and, on GitHub, a pull request
//! (`pull_request`, the default). It takes effect when the reconciler applies that commit.
//!
//! The followed branch only moves forward: a direct commit is a compare-and-swap (a local
//! repository), a push with a lease (any Git remote) or a fast-forward-only ref update
//! (GitHub) against the head it was validated on. When someone committed meanwhile, the
//! change is rebuilt and validated again on the new head, up to [`ATTEMPTS`] times. A
//! pull request is built on the head it was validated on; its merge is validated by the
//! reconciler like every commit.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::config::diag::{Diagnostic, Severity};
use crate::config::load::Loader;
use crate::config::yaml::{self, Limits, Loc, Value};
use crate::git::Oid;
use crate::git::access::Access;
use crate::git::revision::{AtPath, GitFiles, RevisionFiles, TreeItem};
use crate::git::write::{Identity, Pushed, Repo, WriteError};
use crate::github::GitHub;
use crate::github::api::TreeEntry;
use crate::model::{Settings, WriteMode};
use crate::pipeline::steps::StepError;
use crate::pipeline::steps::create_pr::{self, GitRemote, PrRequest};

/// Times a change is rebuilt and validated again when the branch keeps moving.
pub const ATTEMPTS: u32 = 5;

/// The trailer naming the management change in every commit it makes.
pub const TRAILER: &str = "Mockops-Pipeline-Change";

/// One management verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Adds a pipeline file (`path` defaults to `pipelines/<name>.yaml`).
    Create {
        path: Option<String>,
        content: String,
    },
    /// Sets `definition.enabled` of the named pipeline.
    SetEnabled { name: String, enabled: bool },
}

impl Change {
    fn verb(&self) -> &'static str {
        match self {
            Change::Create { .. } => "create",
            Change::SetEnabled { enabled: true, .. } => "enable",
            Change::SetEnabled { enabled: false, .. } => "disable",
        }
    }
}

/// Why a change was not written.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request itself is unusable (a path outside `pipelines/`, a file that is not YAML).
    #[error("{0}")]
    BadRequest(String),
    /// No such pipeline at the branch's head.
    #[error("{0}")]
    NotFound(String),
    /// The change collides with what is there (an existing name or file, uncommitted work,
    /// a branch someone else pushed to).
    #[error("{0}")]
    Conflict(String),
    /// The tree with the change does not validate: every diagnostic of it, as `validate`
    /// prints them.
    #[error("{path}: the repository with this change does not validate ({} error(s)); nothing was written", errors(.diagnostics))]
    Invalid {
        path: String,
        /// The head the change was validated on.
        base: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// The branch or the remote cannot be read now, or it kept moving.
    #[error("{0}")]
    Unavailable(String),
    /// Writing to the config repository failed.
    #[error("writing to the config repository failed: {0}")]
    Write(String),
}

fn errors(diags: &[Diagnostic]) -> usize {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

impl From<WriteError> for ManageError {
    fn from(e: WriteError) -> Self {
        if e.is_transient() {
            ManageError::Unavailable(e.to_string())
        } else {
            ManageError::Write(e.to_string())
        }
    }
}

impl From<StepError> for ManageError {
    fn from(e: StepError) -> Self {
        ManageError::Write(e.rendered())
    }
}

/// A pull request a change opened or updated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullRequest {
    pub number: Option<u64>,
    pub url: Option<String>,
}

/// What a written (or unneeded) change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub pipeline: String,
    pub path: String,
    /// `direct` (a commit on the followed branch), `pull_request` (GitHub) or `branch` (a
    /// branch to merge, for repositories without a pull-request API).
    pub mode: &'static str,
    /// `committed`, `unchanged`, or what `create_pr` did (`opened`, `updated`, `pushed`, ...).
    pub action: String,
    /// The branch written to.
    pub branch: String,
    /// The head of the followed branch the change was validated on.
    pub base: String,
    /// The commit that carries the change (`None` when nothing needed writing).
    pub commit: Option<String>,
    pub pull_request: Option<PullRequest>,
    /// Builds it took (more than one when the branch moved meanwhile).
    pub attempts: u32,
    /// Warnings of the validated tree.
    pub warnings: Vec<Diagnostic>,
    /// One sentence for people.
    pub message: String,
}

/// Where the config repository is written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Via {
    /// A repository on this machine (the one the daemon follows).
    Local(PathBuf),
    /// Any Git remote: pushes with a lease.
    Git(String),
    /// GitHub's API (`owner/name`).
    GitHub(String),
}

/// What a hook between validation and write is told: the attempt (1, 2, ...).
pub type BeforeWrite = Arc<dyn Fn(u32) + Send + Sync>;

/// Writes management changes to one followed branch. The daemon holds one; writes are
/// serialized.
pub struct Manager {
    /// The followed repository: its path on this machine, or its URL.
    source: String,
    branch: String,
    github_repository: Option<String>,
    github: Option<GitHub>,
    git: GitRemote,
    loader: Loader,
    wake: Option<Arc<dyn Fn() + Send + Sync>>,
    before_write: Option<BeforeWrite>,
    writes: tokio::sync::Mutex<()>,
}

impl Manager {
    /// A manager of the branch `branch` of `source` (a local repository's path, or a URL
    /// reached with the default [`GitRemote`]).
    pub fn new(source: impl Into<String>, branch: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            branch: branch.into(),
            github_repository: None,
            github: None,
            git: GitRemote::default(),
            loader: Loader::new(),
            wake: None,
            before_write: None,
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The manager of the daemon's followed branch, with its step runner's GitHub client and
    /// the followed remote's credentials (those of promotions).
    pub fn for_runner(runner: &crate::pipeline::steps::Runner) -> Self {
        Self::new(runner.config_remote.clone(), runner.branch.clone())
            .with_git_remote(runner.promotion_remote.clone())
            .with_github(runner.github.clone())
    }

    /// Writes through GitHub's API with `client` where the repository is on GitHub.
    pub fn with_github(mut self, client: Option<GitHub>) -> Self {
        self.github = client;
        self
    }

    /// The followed repository is `owner/name` on GitHub's API (GitHub Enterprise, or a
    /// repository followed through a mirror); without it, only a `github.com` URL is.
    pub fn with_github_repository(mut self, repository: Option<String>) -> Self {
        self.github_repository = repository.filter(|r| !r.trim().is_empty());
        self
    }

    /// How a remote is reached: credentials, host keys, deadline.
    pub fn with_git_remote(mut self, remote: GitRemote) -> Self {
        self.git = remote;
        self
    }

    /// Called after every write (the daemon wakes its reconcile loop).
    pub fn on_written(mut self, wake: Arc<dyn Fn() + Send + Sync>) -> Self {
        self.wake = Some(wake);
        self
    }

    /// Called after a change validated and before it is written (for tests of a branch that
    /// moves in between).
    pub fn before_write(mut self, hook: BeforeWrite) -> Self {
        self.before_write = Some(hook);
        self
    }

    fn local_source(&self) -> Option<PathBuf> {
        let p = std::path::Path::new(&self.source);
        (p.is_absolute() && p.exists()).then(|| p.to_path_buf())
    }

    fn via(&self) -> Via {
        if let Some(r) = &self.github_repository {
            return Via::GitHub(r.clone());
        }
        if let Some(slug) = github_slug(&self.source) {
            return Via::GitHub(slug);
        }
        match self.local_source() {
            Some(p) => Via::Local(p),
            None => Via::Git(self.source.clone()),
        }
    }

    /// Validates `change` on the head of the followed branch and writes it.
    pub async fn apply(self: &Arc<Self>, change: Change) -> Result<Outcome, ManageError> {
        let _one_at_a_time = self.writes.lock().await;
        for attempt in 1..=ATTEMPTS {
            let this = self.clone();
            let c = change.clone();
            let step = tokio::task::spawn_blocking(move || this.attempt(&c, attempt))
                .await
                .map_err(|e| ManageError::Write(format!("the write task failed: {e}")))??;
            let done = match step {
                Step::Done(outcome) => Some(*outcome),
                Step::Moved => None,
                Step::Api(prepared) => self.write_api(*prepared, attempt).await?,
            };
            match done {
                Some(outcome) => {
                    if outcome.commit.is_some()
                        && let Some(wake) = &self.wake
                    {
                        wake();
                    }
                    tracing::info!(
                        verb = change.verb(),
                        pipeline = %outcome.pipeline,
                        mode = outcome.mode,
                        action = %outcome.action,
                        commit = outcome.commit.as_deref().unwrap_or(""),
                        "pipeline change written"
                    );
                    return Ok(outcome);
                }
                None => {
                    tracing::info!(branch = %self.branch, attempt, "the branch moved meanwhile; validating the change again on the new head");
                }
            }
        }
        Err(ManageError::Unavailable(format!(
            "branch {} moved {ATTEMPTS} times while the change was validated; try again",
            self.branch
        )))
    }

    /// One build: read the head, make and validate the change, and write it when that is a
    /// Git operation (a local repository, a push).
    fn attempt(&self, change: &Change, attempt: u32) -> Result<Step, ManageError> {
        let via = self.via();
        match self.local_source() {
            Some(dir) => {
                let repo = Repo::open(&dir)?;
                let tip = repo.branch_tip(&self.branch)?.ok_or_else(|| {
                    ManageError::Unavailable(format!(
                        "branch {} does not exist in {}",
                        self.branch,
                        dir.display()
                    ))
                })?;
                let prepared = self.prepare(&repo, tip, change)?;
                let Some(candidate) = prepared.candidate else {
                    return Ok(Step::Done(Box::new(prepared.unchanged(attempt))));
                };
                self.hook(attempt);
                match via {
                    Via::Local(_) => write_local(&repo, &self.branch, prepared, candidate, attempt),
                    _ => Ok(Step::Api(Box::new(prepared))),
                }
            }
            None => {
                let access = Access::new(
                    &self.source,
                    self.git.auth.clone(),
                    &self.git.host_keys,
                    self.git.deadline,
                    self.git.redactor.clone(),
                )
                .map_err(|e| ManageError::Unavailable(e.to_string()))?;
                let url = access.url_redacted().to_string();
                let session = access
                    .session()
                    .map_err(|e| ManageError::Unavailable(e.to_string()))?;
                let repo = Repo::scratch("manage", &url)?;
                let refname = format!("refs/heads/{}", self.branch);
                let tip = repo.remote_heads(&session, &[&refname])?[0].ok_or_else(|| {
                    ManageError::Unavailable(format!(
                        "branch {} does not exist in {url}",
                        self.branch
                    ))
                })?;
                repo.fetch(&session, &[format!("+{refname}:refs/mockops/tip")])?;
                let prepared = self.prepare(&repo, tip, change)?;
                let Some(candidate) = prepared.candidate else {
                    return Ok(Step::Done(Box::new(prepared.unchanged(attempt))));
                };
                self.hook(attempt);
                if via != Via::Git(self.source.clone()) {
                    return Ok(Step::Api(Box::new(prepared)));
                }
                // The branch written: the followed one, or the one to merge (whose current
                // tip must be mockops' own).
                let (target, expected, mode, action) = match prepared.mode {
                    WriteMode::Direct => (self.branch.clone(), Some(tip), "direct", "committed"),
                    WriteMode::PullRequest => {
                        let head = prepared.head_branch();
                        let head_ref = format!("refs/heads/{head}");
                        let current = repo.remote_heads(&session, &[&head_ref])?[0];
                        if let Some(c) = current {
                            repo.fetch(&session, &[format!("+{head_ref}:refs/mockops/head")])?;
                            refuse_foreign(&repo, &head, c)?;
                        }
                        (head, current, "branch", "pushed")
                    }
                };
                let target_ref = format!("refs/heads/{target}");
                match repo.push_with_lease(&session, candidate, &target_ref, expected)? {
                    Pushed::Done => Ok(Step::Done(Box::new(prepared.written(
                        mode,
                        action,
                        &target,
                        Some(candidate.to_string()),
                        None,
                        attempt,
                    )))),
                    Pushed::Moved => Ok(Step::Moved),
                    Pushed::Refused(why) => Err(ManageError::Write(format!(
                        "{url} refused the commit onto {target}: {why}"
                    ))),
                }
            }
        }
    }

    fn hook(&self, attempt: u32) {
        if let Some(h) = &self.before_write {
            h(attempt);
        }
    }

    /// Builds the change on `tip` in `repo` and validates the tree it makes.
    fn prepare(&self, repo: &Repo, tip: Oid, change: &Change) -> Result<Prepared, ManageError> {
        let dir = repo.git_dir().to_path_buf();
        let head = tip.to_string();
        let files = GitFiles::open(&dir, &head)
            .map_err(|e| ManageError::Unavailable(format!("cannot read {head}: {e}")))?;
        let at_head = self
            .loader
            .load(&files)
            .map_err(|e| ManageError::Unavailable(format!("cannot load {head}: {e}")))?;
        let settings = at_head.state.settings.clone();
        let (name, path, before, after, message) = match change {
            Change::Create { path, content } => {
                let name = pipeline_name(content)?;
                let path = match path {
                    Some(p) => p.trim().to_string(),
                    None => {
                        if !name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                            || name.starts_with('.')
                        {
                            return Err(ManageError::BadRequest(format!(
                                "pipeline name {name:?} is not a file name; give the path (`pipelines/<file>.yaml`)"
                            )));
                        }
                        format!("pipelines/{name}.yaml")
                    }
                };
                check_create_path(&path)?;
                if let Some(existing) = at_head.state.pipelines.get(&name) {
                    return Err(ManageError::Conflict(format!(
                        "a pipeline named `{name}` already exists ({}); choose another name, or change that file",
                        existing.path
                    )));
                }
                refuse_links(&files, &path)?;
                if files.at_path(&path) != AtPath::Nothing {
                    return Err(ManageError::Conflict(format!(
                        "{path} already exists at {head}; choose another path"
                    )));
                }
                let message = format!("Add pipeline {name}\n\n{TRAILER}: create {name}\n",);
                (name, path, None, content.clone(), message)
            }
            Change::SetEnabled { name, enabled } => {
                let entity = at_head.state.pipelines.get(name).ok_or_else(|| {
                    let mut known: Vec<&str> =
                        at_head.state.pipelines.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    ManageError::NotFound(format!(
                        "no pipeline named `{name}` at the head of {} ({head}); pipelines there: {}",
                        self.branch,
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                })?;
                let path = entity.path.clone();
                refuse_links(&files, &path)?;
                let bytes = files
                    .read(&path)
                    .map_err(|e| ManageError::Unavailable(format!("{path}: {e}")))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| ManageError::BadRequest(format!("{path} is not UTF-8 text")))?;
                let after = set_enabled(&text, *enabled)
                    .map_err(|e| ManageError::BadRequest(format!("{path}: {e}")))?;
                let verb = if *enabled { "Enable" } else { "Disable" };
                let message = format!(
                    "{verb} pipeline {name}\n\n{TRAILER}: {} {name}\n",
                    verb.to_ascii_lowercase()
                );
                (name.clone(), path, Some(text), after, message)
            }
        };
        let topic = format!("{}-{name}", change.verb());
        let mut prepared = Prepared {
            pipeline: name,
            path,
            content: after.clone(),
            base: head.clone(),
            tip,
            candidate: None,
            settings: settings.clone(),
            mode: settings.management.pipelines,
            message,
            topic,
            warnings: Vec::new(),
        };
        if before.as_deref() == Some(after.as_str()) {
            return Ok(prepared);
        }
        let me = create_pr::default_identity();
        let candidate = repo.commit_on(
            tip,
            &[(prepared.path.as_str(), Some(after.as_bytes()))],
            &prepared.message,
            Identity {
                name: &me.name,
                email: &me.email,
            },
        )?;
        let files = GitFiles::open(&dir, &candidate.to_string())
            .map_err(|e| ManageError::Unavailable(format!("cannot read {candidate}: {e}")))?;
        let loaded = self
            .loader
            .load(&files)
            .map_err(|e| ManageError::Unavailable(format!("cannot load {candidate}: {e}")))?;
        if !loaded.is_valid() {
            return Err(ManageError::Invalid {
                path: prepared.path,
                base: head,
                diagnostics: loaded.diagnostics,
            });
        }
        prepared.warnings = loaded.diagnostics;
        prepared.candidate = Some(candidate);
        Ok(prepared)
    }

    /// Writes a validated change through GitHub's API. `None`: the branch moved since the
    /// change was validated.
    async fn write_api(
        &self,
        prepared: Prepared,
        attempt: u32,
    ) -> Result<Option<Outcome>, ManageError> {
        let via = self.via();
        if let Via::GitHub(repository) = &via {
            let client = self.github.as_ref().ok_or_else(|| {
                ManageError::Write(
                    "writing to a GitHub repository needs credentials: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE".into(),
                )
            })?;
            let (owner, name) = crate::github::parse_repository(repository)
                .map_err(|e| ManageError::Write(e.to_string()))?;
            let api = |e: crate::github::GitHubError| {
                if e.is_transient() {
                    ManageError::Unavailable(e.to_string())
                } else {
                    ManageError::Write(e.to_string())
                }
            };
            let repo = client.repo(&owner, &name).await.map_err(api)?;
            let head = repo.branch_sha(&self.branch).await.map_err(api)?;
            if head.as_deref() != Some(prepared.base.as_str()) {
                return match head {
                    Some(_) => Ok(None),
                    None => Err(ManageError::Unavailable(format!(
                        "branch {} does not exist in {repository}",
                        self.branch
                    ))),
                };
            }
            if prepared.mode == WriteMode::Direct {
                let _writer = repo.writer().await;
                let base = repo.commit(&prepared.base).await.map_err(api)?;
                let tree = repo
                    .create_tree(
                        &base.tree.sha,
                        &[TreeEntry::text(&prepared.path, prepared.content.clone())],
                    )
                    .await
                    .map_err(api)?;
                let commit = repo
                    .create_commit(
                        &prepared.message,
                        &tree,
                        std::slice::from_ref(&prepared.base),
                        &create_pr::default_identity(),
                    )
                    .await
                    .map_err(api)?;
                return match repo.move_branch(&self.branch, &commit, false).await {
                    Ok(()) => Ok(Some(prepared.written(
                        "direct",
                        "committed",
                        &self.branch,
                        Some(commit),
                        None,
                        attempt,
                    ))),
                    Err(e) if e.is_unprocessable_with("fast forward") => Ok(None),
                    Err(e) => Err(ManageError::Write(format!(
                        "{repository} refused the commit onto {}: {e}; if the branch is protected, set `management: {{pipelines: pull_request}}` in mockops.yaml",
                        self.branch
                    ))),
                };
            }
            let mut req = prepared.request(repository, &self.branch)?;
            // Built on the validated head only: a commit landing meanwhile means validating
            // again on the new head (the caller's next attempt), never a pull request on it.
            req.expected_base = Some(prepared.base.clone());
            let out = create_pr::apply(client, &req).await?;
            if out.action == create_pr::PrAction::BaseMoved {
                return Ok(None);
            }
            return Ok(Some(prepared.written(
                "pull_request",
                out.action.as_str(),
                &out.branch,
                out.commit.clone(),
                Some(PullRequest {
                    number: out.number,
                    url: out.url.clone(),
                }),
                attempt,
            )));
        }
        Err(ManageError::Write(format!(
            "{} is not written through an API",
            self.source
        )))
    }
}

/// Refuses to move a proposal branch whose tip mockops did not commit.
fn refuse_foreign(repo: &Repo, branch: &str, tip: Oid) -> Result<(), ManageError> {
    if repo.commit_meta(tip)?.committer_email == create_pr::default_identity().email {
        return Ok(());
    }
    Err(ManageError::Conflict(format!(
        "branch {branch} has a commit mockops did not make ({tip}); it is left alone"
    )))
}

enum Step {
    Done(Box<Outcome>),
    /// The branch moved between validation and write: build again.
    Moved,
    /// Validated; to be written through GitHub's API.
    Api(Box<Prepared>),
}

/// A change built and validated on one head.
struct Prepared {
    pipeline: String,
    path: String,
    content: String,
    base: String,
    tip: Oid,
    /// The commit with the change on top of `tip`; `None` when the file already says it.
    candidate: Option<Oid>,
    settings: Settings,
    mode: WriteMode,
    message: String,
    topic: String,
    warnings: Vec<Diagnostic>,
}

impl Prepared {
    fn unchanged(self, attempts: u32) -> Outcome {
        let message = format!(
            "{} already says this at {}; nothing to write",
            self.path, self.base
        );
        Outcome {
            pipeline: self.pipeline,
            path: self.path,
            mode: match self.mode {
                WriteMode::Direct => "direct",
                WriteMode::PullRequest => "pull_request",
            },
            action: "unchanged".into(),
            branch: String::new(),
            base: self.base,
            commit: None,
            pull_request: None,
            attempts,
            warnings: self.warnings,
            message,
        }
    }

    fn written(
        self,
        mode: &'static str,
        action: &str,
        branch: &str,
        commit: Option<String>,
        pull_request: Option<PullRequest>,
        attempts: u32,
    ) -> Outcome {
        let message = match (&pull_request, mode) {
            (Some(pr), _) => format!(
                "pull request {} ({action}) proposes the change on {branch}; it takes effect once merged and reconciled",
                pr.url.as_deref().unwrap_or("?")
            ),
            (None, "direct") => format!(
                "commit {} on {branch}; it takes effect once the daemon reconciles it",
                commit.as_deref().unwrap_or("?")
            ),
            _ => format!(
                "branch {branch} ({action}) carries the change; it takes effect once merged and reconciled"
            ),
        };
        Outcome {
            pipeline: self.pipeline,
            path: self.path,
            mode,
            action: action.to_string(),
            branch: branch.to_string(),
            base: self.base,
            commit,
            pull_request,
            attempts,
            warnings: self.warnings,
            message,
        }
    }

    /// The branch that proposes the change: `<branch_prefix>pipelines/<verb>-<name>`.
    fn head_branch(&self) -> String {
        create_pr::branch_name(
            &self.settings.pull_requests.branch_prefix,
            "pipelines",
            &self.topic,
        )
    }

    /// The pull request proposing the change against `base_branch`.
    fn request(&self, repository: &str, base_branch: &str) -> Result<PrRequest, ManageError> {
        let prs = &self.settings.pull_requests;
        let title = self.message.lines().next().unwrap_or("").to_string();
        let mut req = PrRequest::new(repository, base_branch, "pipelines", &self.topic, &title)
            .write(&self.path, self.content.as_bytes())?;
        req.head_branch = self.head_branch();
        req.description = Some(format!(
            "Validated on {} like a commit of {base_branch}.",
            self.base
        ));
        req.labels = prs.labels.clone();
        req.limits = create_pr::PrLimits {
            max_per_hour: prs.max_per_hour,
            max_open: prs.max_open,
        };
        req.commit_message = self.message.clone();
        Ok(req)
    }
}

/// Writes into a repository on this machine: the followed branch moved as a compare-and-swap
/// (with its work tree updated when checked out), or the proposal branch set.
fn write_local(
    repo: &Repo,
    branch: &str,
    prepared: Prepared,
    candidate: Oid,
    attempt: u32,
) -> Result<Step, ManageError> {
    let path = prepared.path.clone();
    let content = prepared.content.clone();
    let edits = [(path.as_str(), Some(content.as_bytes()))];
    if prepared.mode == WriteMode::PullRequest {
        let head = prepared.head_branch();
        if let Some(tip) = repo.branch_tip(&head)? {
            refuse_foreign(repo, &head, tip)?;
        }
        repo.set_branch(&head, candidate, "mockops: pipeline change")?;
        return Ok(Step::Done(Box::new(prepared.written(
            "branch",
            "pushed",
            &head,
            Some(candidate.to_string()),
            None,
            attempt,
        ))));
    }
    let checked_out = repo.checked_out(branch);
    if checked_out {
        let dirty = repo.uncommitted(&[path.as_str()])?;
        if !dirty.is_empty() {
            return Err(ManageError::Conflict(format!(
                "{branch} has uncommitted changes to {} in the followed work tree; commit or discard them first",
                dirty.join(", ")
            )));
        }
    }
    if !repo.move_branch(branch, candidate, prepared.tip, "mockops: pipeline change")? {
        return Ok(Step::Moved);
    }
    if checked_out {
        repo.update_work_tree(&edits)?;
    }
    Ok(Step::Done(Box::new(prepared.written(
        "direct",
        "committed",
        branch,
        Some(candidate.to_string()),
        None,
        attempt,
    ))))
}

/// `owner/name` of a `github.com` URL.
fn github_slug(remote: &str) -> Option<String> {
    let r = remote.trim_end_matches('/').trim_end_matches(".git");
    [
        "https://github.com/",
        "git@github.com:",
        "ssh://git@github.com/",
    ]
    .iter()
    .find_map(|p| r.strip_prefix(p))
    .map(str::to_string)
}

/// The `name` of a pipeline file's text.
fn pipeline_name(content: &str) -> Result<String, ManageError> {
    let root = yaml::parse(content.as_bytes(), Limits::CONFIG)
        .map_err(|e| ManageError::BadRequest(format!("the pipeline is not YAML: {e}")))?;
    match root.get("name").and_then(|n| n.as_str()) {
        Some(n) if !n.trim().is_empty() => Ok(n.to_string()),
        _ => Err(ManageError::BadRequest(
            "the pipeline has no `name` (a string at the top of the file)".into(),
        )),
    }
}

/// A new pipeline's path: a `.yaml` or `.yml` file directly under `pipelines/`.
pub fn check_create_path(path: &str) -> Result<(), ManageError> {
    let bad = |why: &str| {
        ManageError::BadRequest(format!(
            "path {path:?} {why}; pipelines are files directly under `pipelines/`, such as `pipelines/notify.yaml`"
        ))
    };
    let normal = crate::git::revision::normalize(path).map_err(|e| bad(&e.to_string()))?;
    if normal != path {
        return Err(bad("is not in normal form"));
    }
    create_pr::RepoPath::new(path).map_err(|e| bad(&e.rendered()))?;
    let Some(file) = path.strip_prefix("pipelines/") else {
        return Err(bad("is outside `pipelines/`"));
    };
    if file.contains('/') {
        return Err(bad("is in a subdirectory, which the loader does not read"));
    }
    if file.starts_with('.') || !(file.ends_with(".yaml") || file.ends_with(".yml")) {
        return Err(bad("is not a `.yaml` or `.yml` file"));
    }
    Ok(())
}

/// Refuses a path that is, or lies under, a symbolic link of the tree: writing there would
/// change another file than the one named.
fn refuse_links(files: &GitFiles, path: &str) -> Result<(), ManageError> {
    let mut prefixes = Vec::new();
    let mut at = String::new();
    for seg in path.split('/') {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(seg);
        prefixes.push(at.clone());
    }
    let items = files
        .list(
            |dir| prefixes.iter().any(|p| p == dir),
            |p| prefixes.iter().any(|x| x == p),
        )
        .map_err(|e| ManageError::Unavailable(format!("cannot list the tree: {e}")))?;
    for item in items {
        match item {
            TreeItem::Link { path: link, .. } => {
                return Err(ManageError::BadRequest(format!(
                    "`{link}` is a symbolic link; mockops writes pipelines only as regular files"
                )));
            }
            TreeItem::Submodule { path: sub } => {
                return Err(ManageError::BadRequest(format!("`{sub}` is a submodule")));
            }
            TreeItem::File { path: file, .. } if file != path => {
                return Err(ManageError::BadRequest(format!(
                    "`{file}` is a file, not a directory"
                )));
            }
            TreeItem::File { .. } => {}
        }
    }
    Ok(())
}

/// Why [`set_enabled`] cannot edit a file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EditError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("has no `definition` mapping to set `enabled` in")]
    NoDefinition,
    #[error("`definition.enabled` is {0}, not a boolean; fix it by hand")]
    NotBoolean(&'static str),
    #[error("cannot find `{0}` at its place in the text; edit the file by hand")]
    Lost(&'static str),
}

/// The text of a pipeline file with `definition.enabled` set, and nothing else changed: the
/// value of an existing `enabled:` is replaced in place (comments, quoting of other keys, key
/// order and layout kept); an absent one is inserted as the first key of `definition` (only
/// to disable: absent means enabled). Unchanged text when the file already says it.
pub fn set_enabled(text: &str, enabled: bool) -> Result<String, EditError> {
    let root =
        yaml::parse(text.as_bytes(), Limits::CONFIG).map_err(|e| EditError::Yaml(e.to_string()))?;
    let def = root.get("definition").ok_or(EditError::NoDefinition)?;
    let word = if enabled { "true" } else { "false" };
    if let Some(v) = def.get("enabled") {
        match v.value {
            Value::Bool(b) if b == enabled => return Ok(text.to_string()),
            Value::Bool(_) => {}
            ref other => return Err(EditError::NotBoolean(other.type_name())),
        }
        let start = offset(text, v.loc).ok_or(EditError::Lost("enabled"))?;
        let len = text[start..]
            .find(|c: char| c.is_whitespace() || ",}]#".contains(c))
            .unwrap_or(text.len() - start);
        let token = &text[start..start + len];
        if !matches!(token.to_ascii_lowercase().as_str(), "true" | "false") {
            return Err(EditError::Lost("enabled"));
        }
        return Ok(format!("{}{word}{}", &text[..start], &text[start + len..]));
    }
    if enabled {
        return Ok(text.to_string());
    }
    let Value::Map(entries) = &def.value else {
        return Err(EditError::NoDefinition);
    };
    let Some((first, _)) = entries.first() else {
        return Err(EditError::NoDefinition);
    };
    let key_at = offset(text, first.loc).ok_or(EditError::Lost("definition"))?;
    let line_start = text[..key_at].rfind('\n').map_or(0, |i| i + 1);
    let before = &text[line_start..key_at];
    if before.chars().all(|c| c == ' ') {
        // A block mapping: a line of its own, indented like its first key.
        let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
        return Ok(format!(
            "{}{before}enabled: {word}{eol}{}",
            &text[..line_start],
            &text[line_start..]
        ));
    }
    // A flow mapping (`definition: {triggers: ...}`): the first entry.
    let brace = before.rfind('{').ok_or(EditError::Lost("definition"))?;
    let at = line_start + brace + 1;
    let gap = if text[at..].starts_with(' ') { "" } else { " " };
    Ok(format!(
        "{}{gap}enabled: {word},{}",
        &text[..at],
        if gap.is_empty() {
            text[at..].to_string()
        } else {
            format!(" {}", &text[at..])
        }
    ))
}

/// The byte offset of a 1-based line and column.
fn offset(text: &str, loc: Loc) -> Option<usize> {
    if loc.line == 0 || loc.column == 0 {
        return None;
    }
    let mut start = 0usize;
    for _ in 1..loc.line {
        start += text[start..].find('\n')? + 1;
    }
    let line = &text[start..];
    let col = usize::try_from(loc.column - 1).ok()?;
    line.char_indices().nth(col).map(|(i, _)| start + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Notify the team.\nname: notify # the name\ndefinition:\n  # off while the channel moves\n  enabled: true   # trailing\n  triggers:\n    - event: schema.changed\n  steps: []\n";

    #[test]
    fn only_the_enabled_value_changes() {
        let off = set_enabled(FILE, false).unwrap();
        assert_eq!(off, FILE.replace("enabled: true   #", "enabled: false   #"));
        assert_eq!(set_enabled(&off, true).unwrap(), FILE);
        assert_eq!(set_enabled(FILE, true).unwrap(), FILE, "already enabled");
    }

    #[test]
    fn an_absent_key_is_inserted_first_in_definition_with_its_indentation() {
        let text = "name: p\ndefinition:\n    triggers: [{event: manual}]\n    steps: []\nworkspace_id: w\n";
        let off = set_enabled(text, false).unwrap();
        assert_eq!(
            off,
            "name: p\ndefinition:\n    enabled: false\n    triggers: [{event: manual}]\n    steps: []\nworkspace_id: w\n"
        );
        assert_eq!(
            set_enabled(text, true).unwrap(),
            text,
            "absent means enabled"
        );
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            set_enabled(&crlf, false).unwrap(),
            off.replace('\n', "\r\n")
        );
    }

    #[test]
    fn flow_mappings_and_other_spellings() {
        let flow = "name: p\ndefinition: {triggers: [{event: manual}], steps: []}\n";
        let off = set_enabled(flow, false).unwrap();
        assert_eq!(
            off,
            "name: p\ndefinition: { enabled: false, triggers: [{event: manual}], steps: []}\n"
        );
        assert_eq!(
            set_enabled(&off, true).unwrap(),
            off.replace("false", "true")
        );
        let inline = "name: p\ndefinition: {enabled: True, steps: []}\n";
        assert_eq!(
            set_enabled(inline, false).unwrap(),
            "name: p\ndefinition: {enabled: false, steps: []}\n"
        );
        let unicode = "name: \"é\"\ndefinition:\n  enabled: false\n";
        assert_eq!(
            set_enabled(unicode, true).unwrap(),
            "name: \"é\"\ndefinition:\n  enabled: true\n"
        );
    }

    #[test]
    fn what_cannot_be_edited_is_refused() {
        assert_eq!(
            set_enabled("name: p\n", false),
            Err(EditError::NoDefinition)
        );
        assert_eq!(
            set_enabled("name: p\ndefinition:\n  enabled: \"no\"\n", true),
            Err(EditError::NotBoolean("string"))
        );
        assert_eq!(
            set_enabled("name: p\ndefinition: {}\n", false),
            Err(EditError::NoDefinition)
        );
        assert!(matches!(
            set_enabled("name: [\n", false),
            Err(EditError::Yaml(_))
        ));
    }

    #[test]
    fn new_pipelines_go_directly_under_pipelines() {
        for ok in ["pipelines/a.yaml", "pipelines/b-c.yml"] {
            assert!(check_create_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "pipelines/../mockops.yaml",
            "../pipelines/a.yaml",
            "/etc/pipelines/a.yaml",
            "services/a.yaml",
            "pipelines/sub/a.yaml",
            "pipelines/a.json",
            "pipelines/.hidden.yaml",
            "pipelines//a.yaml",
            "./pipelines/a.yaml",
            ".git/pipelines/a.yaml",
            "pipelines\\a.yaml",
        ] {
            assert!(check_create_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn github_urls_name_their_repository() {
        assert_eq!(
            github_slug("https://github.com/acme/config.git").as_deref(),
            Some("acme/config")
        );
        assert_eq!(github_slug("/srv/config"), None);
    }
}
