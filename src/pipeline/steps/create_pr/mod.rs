//! Pull requests as mockops opens them: one branch per pipeline and topic, one commit for all
//! files, updated in place, never duplicated, left alone once a human pushes to it.
//!
//! [`apply`] drives the lifecycle on GitHub ([`github`]); [`apply_git`] pushes the same change
//! as a branch to any Git remote ([`git`]). Changes that need no review are committed straight
//! onto a branch instead ([`direct`]: [`commit_github`], [`commit_git`], [`commit_local`]).
//! [`request_from_config`] turns a rendered `create_pr` step config into a [`PrRequest`].

mod body;
mod direct;
mod git;
mod github;

use std::fmt;

use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

pub use body::{BODY_LIMIT, Metadata, parse_metadata, render_body};
pub use direct::{
    DirectAction, DirectCommit, DirectOutcome, HISTORY_DEPTH, commit_git, commit_github,
    commit_local,
};
pub use git::{GitRemote, apply_git};
pub use github::apply;

use crate::github::api::Person;
use crate::model::{CreatePrConfig, FileOperation, PrProvider, PullRequestSettings};
use crate::pipeline::steps::{Outputs, StepContext, StepError};

/// A repository-relative path that is safe to write: not absolute, no `.` or `..` segment,
/// nothing under `.git`, no empty segment, no backslash or control character.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    pub fn new(path: &str) -> Result<Self, StepError> {
        let bad = |why: &str| {
            StepError::invalid(format!(
                "file path {path:?} {why}; use a relative path inside the repository such as `sdk/typescript/index.ts`"
            ))
        };
        if path.is_empty() {
            return Err(bad("is empty"));
        }
        if path.starts_with('/') {
            return Err(bad("is absolute"));
        }
        if path.contains('\\') {
            return Err(bad("contains a backslash"));
        }
        if path.chars().any(char::is_control) {
            return Err(bad("contains a control character"));
        }
        if path.len() > 4096 {
            return Err(bad("is longer than 4096 bytes"));
        }
        for seg in path.split('/') {
            match seg {
                "" => return Err(bad("has an empty segment (`//` or a trailing `/`)")),
                "." | ".." => return Err(bad("has a `.` or `..` segment")),
                s if s.eq_ignore_ascii_case(".git") => {
                    return Err(bad("writes under `.git`"));
                }
                s if s.len() == 2 && s.ends_with(':') => return Err(bad("has a drive letter")),
                _ => {}
            }
        }
        Ok(Self(path.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What happens to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Write(Vec<u8>),
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrFile {
    pub path: RepoPath,
    pub change: Change,
}

/// The triggering event, as the pull request body names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventInfo {
    pub id: String,
    pub event_type: String,
    pub source: String,
}

/// Per-repository limits on what mockops opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrLimits {
    /// Pull requests carrying mockops metadata created in the last hour.
    pub max_per_hour: u32,
    /// Open pull requests carrying mockops metadata.
    pub max_open: u32,
}

impl Default for PrLimits {
    fn default() -> Self {
        let s = PullRequestSettings::default();
        Self {
            max_per_hour: s.max_per_hour,
            max_open: s.max_open,
        }
    }
}

/// One pull request as it should be.
#[derive(Debug, Clone)]
pub struct PrRequest {
    /// `owner/repo` or `https://github.com/owner/repo` (GitHub); any Git URL for `apply_git`.
    pub repository: String,
    pub base_branch: String,
    /// Derived with [`branch_name`].
    pub head_branch: String,
    pub pipeline: String,
    pub topic: String,
    pub title: String,
    /// What changed and why, in Markdown; the body adds the event, a file table, the diff and
    /// the metadata block.
    pub description: Option<String>,
    pub event: Option<EventInfo>,
    pub files: Vec<PrFile>,
    /// Directories the request replaces: each holds exactly the request's files under it
    /// afterwards. Files under one of them in the base that the request neither writes nor
    /// deletes are deleted in the same commit (see [`PrRequest::files_against`]).
    pub replace_dirs: Vec<RepoPath>,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub team_reviewers: Vec<String>,
    pub draft: bool,
    pub commit_message: String,
    pub limits: PrLimits,
    /// Author and committer of mockops' commits; how mockops recognises its own commits.
    pub identity: Person,
    /// The base commit the files were validated against: when the base branch has moved
    /// since, nothing is written and the outcome is [`PrAction::BaseMoved`] (GitHub).
    pub expected_base: Option<String>,
}

impl PrRequest {
    /// A request with defaults for everything but the essentials.
    pub fn new(
        repository: impl Into<String>,
        base_branch: impl Into<String>,
        pipeline: impl Into<String>,
        topic: impl Into<String>,
        title: impl Into<String>,
    ) -> Self {
        let pipeline = pipeline.into();
        let topic = topic.into();
        let title = title.into();
        Self {
            repository: repository.into(),
            base_branch: base_branch.into(),
            head_branch: branch_name(
                &PullRequestSettings::default().branch_prefix,
                &pipeline,
                &topic,
            ),
            commit_message: title.clone(),
            pipeline,
            topic,
            title,
            description: None,
            event: None,
            files: Vec::new(),
            replace_dirs: Vec::new(),
            labels: Vec::new(),
            reviewers: Vec::new(),
            team_reviewers: Vec::new(),
            draft: false,
            limits: PrLimits::default(),
            identity: default_identity(),
            expected_base: None,
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

    /// Adds a file deletion; the path is checked.
    pub fn delete(mut self, path: &str) -> Result<Self, StepError> {
        self.files.push(PrFile {
            path: RepoPath::new(path)?,
            change: Change::Delete,
        });
        Ok(self)
    }

    /// Makes `dir` mirror the request: files under it that the request does not write are
    /// deleted. The path is checked; the repository root cannot be replaced.
    pub fn replace_dir(mut self, dir: &str) -> Result<Self, StepError> {
        let dir = RepoPath::new(dir.trim_end_matches('/'))?;
        if !self.replace_dirs.contains(&dir) {
            self.replace_dirs.push(dir);
        }
        Ok(self)
    }

    /// Paths among `existing` (the files of a tree) that lie under a replaced directory and
    /// that the request does not list: what [`files_against`](Self::files_against) deletes.
    pub fn stale_paths<'a>(&self, existing: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        if self.replace_dirs.is_empty() {
            return Vec::new();
        }
        let listed: std::collections::BTreeSet<&str> =
            self.files.iter().map(|f| f.path.as_str()).collect();
        let mut stale: Vec<String> = existing
            .into_iter()
            .filter(|p| {
                self.replace_dirs.iter().any(|d| {
                    p.strip_prefix(d.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                })
            })
            .filter(|p| !listed.contains(p))
            .map(str::to_string)
            .collect();
        stale.sort();
        stale.dedup();
        stale
    }

    /// The change set against a base whose files are `existing`: [`normalized_files`]
    /// (Self::normalized_files) plus a deletion for every [`stale_paths`](Self::stale_paths)
    /// entry, sorted by path.
    pub fn files_against<'a>(&self, existing: impl IntoIterator<Item = &'a str>) -> Vec<PrFile> {
        let mut files = self.normalized_files();
        for path in self.stale_paths(existing) {
            files.push(PrFile {
                path: RepoPath(path),
                change: Change::Delete,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }

    /// The files, last change per path winning, sorted by path.
    pub fn normalized_files(&self) -> Vec<PrFile> {
        let mut map = std::collections::BTreeMap::new();
        for f in &self.files {
            map.insert(f.path.clone(), f.change.clone());
        }
        map.into_iter()
            .map(|(path, change)| PrFile { path, change })
            .collect()
    }

    /// Hash of the change set (paths, operations, contents): equal hashes mean the same
    /// proposal, whatever the event that caused it.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.base_branch.as_bytes());
        h.update([0]);
        for f in self.normalized_files() {
            h.update(f.path.as_str().as_bytes());
            h.update([0]);
            match &f.change {
                Change::Write(bytes) => {
                    h.update(b"w");
                    h.update((bytes.len() as u64).to_be_bytes());
                    h.update(bytes);
                }
                Change::Delete => h.update(b"d"),
            }
        }
        let mut dirs: Vec<&str> = self.replace_dirs.iter().map(RepoPath::as_str).collect();
        dirs.sort_unstable();
        for d in dirs {
            h.update(b"r");
            h.update(d.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }

    fn check(&self) -> Result<(), StepError> {
        for f in self.files.iter().map(|f| &f.path).chain(&self.replace_dirs) {
            RepoPath::new(f.as_str())?;
        }
        if self.files.is_empty() {
            return Err(StepError::invalid(
                "create_pr has no files to change; list them under `files`",
            ));
        }
        check_branch(&self.base_branch, "base branch")?;
        check_branch(&self.head_branch, "head branch")?;
        if self.title.trim().is_empty() {
            return Err(StepError::invalid("create_pr needs a non-empty `title`"));
        }
        Ok(())
    }
}

/// Who mockops' commits are by, unless configured otherwise.
pub fn default_identity() -> Person {
    Person {
        name: "mockops".to_string(),
        email: "mockops@users.noreply.github.com".to_string(),
    }
}

/// The trailer in every mockops commit message; with the committer's e-mail it marks a commit
/// as mockops' own.
pub const CONTENT_TRAILER: &str = "Mockops-Content-Hash";

fn check_branch(name: &str, what: &str) -> Result<(), StepError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with(".lock")
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name.starts_with('-')
        && !name
            .chars()
            .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
        && name.split('/').all(|s| !s.starts_with('.'));
    if ok {
        Ok(())
    } else {
        Err(StepError::invalid(format!(
            "{what} {name:?} is not a valid Git branch name"
        )))
    }
}

/// Longest branch name [`branch_name`] produces.
pub const MAX_BRANCH_LEN: usize = 100;

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out
        .trim_matches(|c| c == '-' || c == '.')
        .replace("..", ".");
    let out = out.strip_suffix(".lock").unwrap_or(&out).to_string();
    if out.is_empty() {
        "default".into()
    } else {
        out
    }
}

/// The head branch of a pipeline's topic: `<prefix><pipeline>/<topic>`, each part slugged
/// (lower case, `[a-z0-9._-]`), e.g. `mockops/sdk-regen/specs-petstore.yaml`. The same
/// inputs always give the same name; a name longer than [`MAX_BRANCH_LEN`] is cut and ends
/// with a hash of the full inputs so distinct topics stay distinct.
pub fn branch_name(prefix: &str, pipeline: &str, topic: &str) -> String {
    let prefix: Vec<String> = prefix
        .split('/')
        .filter(|s| !s.trim().is_empty())
        .map(slug)
        .collect();
    let mut name = prefix.join("/");
    if !name.is_empty() {
        name.push('/');
    }
    name.push_str(&slug(pipeline));
    name.push('/');
    name.push_str(&slug(topic));
    if name.len() <= MAX_BRANCH_LEN {
        return name;
    }
    let hash = hex::encode(Sha256::digest(format!("{prefix:?}\0{pipeline}\0{topic}")));
    let keep = MAX_BRANCH_LEN - 9;
    let mut cut = name[..keep].trim_end_matches(['-', '.', '/']).to_string();
    cut.push('-');
    cut.push_str(&hash[..8]);
    cut
}

/// What [`apply`] or [`apply_git`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrAction {
    /// A new pull request was opened.
    Opened,
    /// The branch got a new commit and the open pull request's body was refreshed.
    Updated,
    /// The branch already carries this content (or the base does): nothing pushed.
    Unchanged,
    /// A commit not made by mockops is on the branch: a comment was posted instead.
    Commented,
    /// A pull request with this content was closed without merge: not reopened.
    SkippedClosed,
    /// The branch has a commit not made by mockops and no open pull request to comment on.
    SkippedForeign,
    /// A per-repository limit (per hour or open at once) stopped a new pull request.
    Limited,
    /// Git provider: the branch was pushed (no pull request exists on a plain Git host).
    Pushed,
    /// The base branch is no longer at [`PrRequest::expected_base`]: nothing was written.
    BaseMoved,
}

impl PrAction {
    pub fn as_str(self) -> &'static str {
        match self {
            PrAction::Opened => "opened",
            PrAction::Updated => "updated",
            PrAction::Unchanged => "unchanged",
            PrAction::Commented => "commented",
            PrAction::SkippedClosed => "skipped_closed",
            PrAction::SkippedForeign => "skipped_foreign",
            PrAction::Limited => "limited",
            PrAction::Pushed => "pushed",
            PrAction::BaseMoved => "base_moved",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrOutcome {
    pub action: PrAction,
    pub number: Option<u64>,
    pub url: Option<String>,
    pub branch: String,
    /// The head commit of the branch after the call, if the branch exists.
    pub commit: Option<String>,
    /// Why nothing (or only a comment) was done, for the execution log.
    pub reason: Option<String>,
}

impl PrOutcome {
    /// The `create_pr` step outputs: `pr_url`, `pr_number`, `branch`, `commit`, `action`.
    pub fn outputs(&self) -> Outputs {
        let mut o = Map::new();
        o.insert(
            "pr_url".into(),
            self.url.clone().map_or(Json::Null, Json::String),
        );
        o.insert(
            "pr_number".into(),
            self.number.map_or(Json::Null, Json::from),
        );
        o.insert("branch".into(), Json::String(self.branch.clone()));
        o.insert(
            "commit".into(),
            self.commit.clone().map_or(Json::Null, Json::String),
        );
        o.insert("action".into(), Json::String(self.action.as_str().into()));
        o
    }
}

/// Runs a request with the provider it names.
pub async fn run(
    client: Option<&crate::github::GitHub>,
    provider: PrProvider,
    req: &PrRequest,
    remote: &GitRemote,
) -> Result<PrOutcome, StepError> {
    match provider {
        PrProvider::Github => {
            let client = client.ok_or_else(|| {
                StepError::invalid(
                    "create_pr needs GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE (or use `provider: git`)",
                )
            })?;
            apply(client, req).await
        }
        PrProvider::Git => apply_git(remote, req).await,
    }
}

/// The provider a config asks for: explicit, or GitHub unless the repository is a Git URL
/// that is not on github.com.
pub fn provider_of(cfg: &CreatePrConfig) -> PrProvider {
    if let Some(p) = cfg.provider {
        return p;
    }
    let r = cfg.repository.trim();
    let looks_git = r.starts_with("file://")
        || r.starts_with("ssh://")
        || r.starts_with("git://")
        || r.starts_with('/')
        || (r.starts_with("git@") && !r.starts_with("git@github.com:"))
        || ((r.starts_with("https://") || r.starts_with("http://"))
            && r.ends_with(".git")
            && !r.contains("github.com"));
    if looks_git {
        PrProvider::Git
    } else {
        PrProvider::Github
    }
}

/// Builds the request for a rendered `create_pr` config.
///
/// - `steps` is the `steps` value of the template context: an object of step name →
///   `{"outputs": {...}}` (a bare outputs object is accepted too).
/// - A file with `from_step` takes `files` from that step's outputs (`from_step` is a step
///   name or `steps.<name>.outputs.<key>`): a JSON object {relative path: content string},
///   each placed under the file's `path` (a directory prefix; `.` or empty for the root).
///   With the default key `files`, the step's `binary_files` (base64) come along.
///   The entry replaces that directory: files under it in the base that the step did not
///   produce this time are deleted in the same commit (not at the root, which holds more
///   than generated files). With `operation: delete` each listed path is deleted instead.
/// - The topic defaults to the step name; labels are the settings' plus the step's.
pub fn request_from_config(
    cfg: &CreatePrConfig,
    settings: &PullRequestSettings,
    ctx: &StepContext,
    steps: &Json,
) -> Result<PrRequest, StepError> {
    let topic = cfg
        .topic
        .clone()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| ctx.step.clone());
    let mut req = PrRequest::new(
        cfg.repository.clone(),
        cfg.branch.clone(),
        ctx.pipeline.clone(),
        topic,
        cfg.title.clone(),
    );
    req.head_branch = branch_name(&settings.branch_prefix, &ctx.pipeline, &req.topic);
    req.description = cfg.body.clone();
    req.event = event_info(&ctx.event, &ctx.idempotency_key);
    req.draft = cfg.draft;
    req.reviewers = cfg.reviewers.clone();
    req.team_reviewers = cfg.team_reviewers.clone();
    let mut labels = settings.labels.clone();
    for l in &cfg.labels {
        if !labels.contains(l) {
            labels.push(l.clone());
        }
    }
    req.labels = labels;
    req.limits = PrLimits {
        max_per_hour: settings.max_per_hour,
        max_open: settings.max_open,
    };
    if let Some(m) = cfg.commit_message.clone().filter(|m| !m.trim().is_empty()) {
        req.commit_message = m;
    }
    for fc in &cfg.files {
        if let Some(service) = &fc.from_drift {
            return Err(StepError::invalid(format!(
                "file entry `from_drift: {service}` is expanded by the daemon from its drift \
                 incidents; it cannot be used here"
            )));
        }
        match (&fc.from_step, &fc.content) {
            (Some(_), Some(_)) => {
                return Err(StepError::invalid(format!(
                    "file {:?} has both `content` and `from_step`; keep one",
                    fc.path
                )));
            }
            (Some(from), None) => {
                let (files, binary) = step_files(steps, from)?;
                let prefix = fc.path.trim().trim_end_matches('/');
                let prefix = prefix.strip_prefix("./").unwrap_or(prefix);
                let prefix = if prefix == "." { "" } else { prefix };
                let place = |rel: &str| {
                    let rel = rel.trim_start_matches("./");
                    if prefix.is_empty() {
                        rel.to_string()
                    } else {
                        format!("{prefix}/{rel}")
                    }
                };
                for (rel, content) in files {
                    let path = place(&rel);
                    req = match fc.operation {
                        FileOperation::Delete => req.delete(&path)?,
                        _ => {
                            let text = content.as_str().ok_or_else(|| {
                                StepError::invalid(format!(
                                    "output `files` of step {from:?} maps {rel:?} to {content}, not to a string"
                                ))
                            })?;
                            req.write(&path, text)?
                        }
                    };
                }
                for (rel, content) in binary {
                    use base64::Engine as _;
                    let path = place(&rel);
                    req = match fc.operation {
                        FileOperation::Delete => req.delete(&path)?,
                        _ => {
                            let bytes = content
                                .as_str()
                                .and_then(|b| {
                                    base64::engine::general_purpose::STANDARD.decode(b).ok()
                                })
                                .ok_or_else(|| {
                                    StepError::invalid(format!(
                                        "output `binary_files` of step {from:?} maps {rel:?} to something that is not base64 text"
                                    ))
                                })?;
                            req.write(&path, bytes)?
                        }
                    };
                }
                if fc.operation != FileOperation::Delete && !prefix.is_empty() {
                    req = req.replace_dir(prefix)?;
                }
            }
            (None, content) => {
                req = match fc.operation {
                    FileOperation::Delete => req.delete(&fc.path)?,
                    _ => {
                        let text = content.as_deref().ok_or_else(|| {
                            StepError::invalid(format!(
                                "file {:?} needs `content` or `from_step` (or `operation: delete`)",
                                fc.path
                            ))
                        })?;
                        req.write(&fc.path, text)?
                    }
                };
            }
        }
    }
    Ok(req)
}

fn event_info(event: &Json, idempotency_key: &str) -> Option<EventInfo> {
    let s = |k: &str| event.get(k).and_then(Json::as_str).map(str::to_string);
    match (s("id"), s("event_type")) {
        (None, None) => None,
        (id, ty) => Some(EventInfo {
            id: id.unwrap_or_else(|| idempotency_key.to_string()),
            event_type: ty.unwrap_or_default(),
            source: s("source").unwrap_or_default(),
        }),
    }
}

/// Relative path → content, as a step's outputs give files.
type FileMap = Map<String, Json>;

/// The text files a step output names, and (for the default key `files`) its `binary_files`.
fn step_files(steps: &Json, from: &str) -> Result<(FileMap, FileMap), StepError> {
    let (step, key) = match from.strip_prefix("steps.") {
        Some(rest) => match rest.split_once(".outputs.") {
            Some((s, k)) => (s, k),
            None => (rest.trim_end_matches(".outputs"), "files"),
        },
        None => (from, "files"),
    };
    let outputs = steps.get(step).ok_or_else(|| {
        StepError::invalid(format!(
            "from_step {from:?}: no earlier step named {step:?} has outputs; name a step that runs before this one"
        ))
    })?;
    let outputs = outputs.get("outputs").unwrap_or(outputs);
    let binary = match (key, outputs.get("binary_files")) {
        ("files", Some(Json::Object(b))) => b.clone(),
        _ => Map::new(),
    };
    match outputs.get(key) {
        Some(Json::Object(files)) => Ok((files.clone(), binary)),
        Some(other) => Err(StepError::invalid(format!(
            "from_step {from:?}: output `{key}` is {}, not an object of path → content",
            type_name(other)
        ))),
        None => Err(StepError::invalid(format!(
            "from_step {from:?}: step {step:?} has no output `{key}`"
        ))),
    }
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileChange;
    use serde_json::json;

    #[test]
    fn unsafe_paths_are_rejected_with_the_reason() {
        for (p, why) in [
            ("/etc/passwd", "absolute"),
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("./a", "`.`"),
            (".git/config", "`.git`"),
            ("sub/.GIT/hooks/pre-commit", "`.git`"),
            ("a//b", "empty segment"),
            ("a/", "empty segment"),
            ("a\\b", "backslash"),
            ("", "empty"),
            ("a\nb", "control"),
            ("C:/x", "drive"),
        ] {
            let err = RepoPath::new(p).unwrap_err();
            assert!(err.rendered().contains(why), "{p:?}: {}", err.rendered());
            assert!(!err.retryable());
        }
        for p in [
            "a",
            "sdk/ts/index.ts",
            ".github/workflows/x.yml",
            "a..b/c",
            ".gitignore",
        ] {
            assert!(RepoPath::new(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn branch_names_are_stable_valid_and_capped() {
        assert_eq!(
            branch_name("mockops/", "auto-sdk", "specs/petstore.yaml"),
            "mockops/auto-sdk/specs-petstore.yaml"
        );
        assert_eq!(branch_name("mockops", "P I", "..x.lock"), "mockops/p-i/x");
        assert_eq!(branch_name("", "p", ""), "p/default");
        let long = "t".repeat(300);
        let a = branch_name("mockops/", "p", &long);
        let b = branch_name("mockops/", "p", &format!("{long}x"));
        assert!(a.len() <= MAX_BRANCH_LEN, "{a}");
        assert_ne!(a, b);
        assert_eq!(a, branch_name("mockops/", "p", &long));
        for n in [&a, &b] {
            check_branch(n, "branch").unwrap();
        }
    }

    #[test]
    fn a_replaced_directory_loses_what_the_request_does_not_list() {
        let req = PrRequest::new("o/r", "main", "p", "t", "T")
            .write("gen/ts/a.ts", "1")
            .unwrap()
            .delete("gen/ts/gone.ts")
            .unwrap()
            .replace_dir("gen/")
            .unwrap();
        let base = [
            "gen/ts/a.ts",
            "gen/ts/old.ts",
            "gen/py/x.py",
            "gen/ts/gone.ts",
            "generated.md",
            "gen",
            "README.md",
        ];
        assert_eq!(req.stale_paths(base), ["gen/py/x.py", "gen/ts/old.ts"]);
        let files = req.files_against(base);
        let paths: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "gen/py/x.py",
                "gen/ts/a.ts",
                "gen/ts/gone.ts",
                "gen/ts/old.ts"
            ]
        );
        assert_eq!(files[0].change, Change::Delete);
        let plain = PrRequest::new("o/r", "main", "p", "t", "T")
            .write("gen/ts/a.ts", "1")
            .unwrap();
        assert!(plain.stale_paths(base).is_empty());
        assert_ne!(plain.content_hash(), req.content_hash());
        assert!(
            PrRequest::new("o/r", "main", "p", "t", "T")
                .replace_dir(".")
                .is_err()
        );
    }

    #[test]
    fn content_hash_ignores_order_and_sees_content() {
        let r1 = PrRequest::new("o/r", "main", "p", "t", "T")
            .write("a", "1")
            .unwrap()
            .write("b", "2")
            .unwrap();
        let r2 = PrRequest::new("o/r", "main", "p", "t", "T")
            .write("b", "2")
            .unwrap()
            .write("a", "1")
            .unwrap();
        let r3 = PrRequest::new("o/r", "main", "p", "t", "T")
            .write("a", "1")
            .unwrap()
            .write("b", "3")
            .unwrap();
        assert_eq!(r1.content_hash(), r2.content_hash());
        assert_ne!(r1.content_hash(), r3.content_hash());
    }

    fn ctx() -> StepContext {
        StepContext {
            execution_id: "exec-1".into(),
            pipeline: "auto-sdk".into(),
            step: "open_pr".into(),
            attempt: 1,
            idempotency_key: "exec-1/open_pr".into(),
            event: json!({"id": "evt-1", "event_type": "schema.changed", "source": "commit:abc"}),
            steps: serde_json::Value::Null,
        }
    }

    fn cfg(files: Vec<FileChange>) -> CreatePrConfig {
        CreatePrConfig {
            repository: "acme/sdk".into(),
            branch: "main".into(),
            title: "Regenerate SDK".into(),
            body: Some("The spec changed.".into()),
            files,
            topic: None,
            labels: vec!["sdk".into(), "mockops".into()],
            reviewers: vec!["alice".into()],
            team_reviewers: vec![],
            draft: false,
            provider: None,
            commit_message: None,
        }
    }

    #[test]
    fn config_with_step_outputs_becomes_a_request() {
        let files = vec![
            FileChange {
                path: "sdk/ts".into(),
                content: None,
                from_step: Some("regenerate_sdk".into()),
                from_drift: None,
                operation: FileOperation::Update,
            },
            FileChange {
                path: "README.md".into(),
                content: Some("hi".into()),
                from_step: None,
                from_drift: None,
                operation: FileOperation::Create,
            },
            FileChange {
                path: "old.txt".into(),
                content: None,
                from_step: None,
                from_drift: None,
                operation: FileOperation::Delete,
            },
        ];
        let steps = json!({"regenerate_sdk": {"outputs": {
            "files": {"index.ts": "export {}", "./src/api.ts": "x"},
            "binary_files": {"logo.bin": "AAEC"},
        }}});
        let settings = PullRequestSettings {
            labels: vec!["mockops".into()],
            ..Default::default()
        };
        let req = request_from_config(&cfg(files), &settings, &ctx(), &steps).unwrap();
        assert_eq!(req.head_branch, "mockops/auto-sdk/open_pr");
        assert_eq!(req.labels, vec!["mockops", "sdk"]);
        assert_eq!(req.event.as_ref().unwrap().id, "evt-1");
        let paths: Vec<_> = req.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "sdk/ts/index.ts",
                "sdk/ts/src/api.ts",
                "sdk/ts/logo.bin",
                "README.md",
                "old.txt"
            ]
        );
        assert_eq!(req.files[2].change, Change::Write(vec![0, 1, 2]));
        assert_eq!(req.files[4].change, Change::Delete);
        assert_eq!(req.replace_dirs, [RepoPath::new("sdk/ts").unwrap()]);
        assert_eq!(provider_of(&cfg(vec![])), PrProvider::Github);
    }

    #[test]
    fn step_output_paths_are_checked_too() {
        let files = vec![FileChange {
            path: "sdk".into(),
            content: None,
            from_step: Some("steps.gen.outputs.files".into()),
            from_drift: None,
            operation: FileOperation::Update,
        }];
        let steps = json!({"gen": {"outputs": {"files": {"../../etc/x": "boom"}}}});
        let err = request_from_config(&cfg(files.clone()), &Default::default(), &ctx(), &steps)
            .unwrap_err();
        assert!(err.rendered().contains("`..`"), "{}", err.rendered());
        let err =
            request_from_config(&cfg(files), &Default::default(), &ctx(), &json!({})).unwrap_err();
        assert!(
            err.rendered().contains("no earlier step named \"gen\""),
            "{}",
            err.rendered()
        );
    }
}
