//! The plain Git fallback (`provider: git`): the same change pushed as a branch to any Git
//! remote, for hosts without GitHub's API. One commit on top of the base branch, the same
//! branch naming, and never a push over a commit mockops did not make.

use std::path::{Path, PathBuf};

use std::time::Duration;

use git2::{Direction, FetchOptions, Oid, PushOptions, Repository};

use super::github::{commit_message, is_own_commit};
use super::{Change, PrAction, PrOutcome, PrRequest};
use crate::git::access::{
    Access, DEFAULT_DEADLINE, FetchError, HostKeyPolicy, RemoteAuth, Session,
};
use crate::github::api::Person;
use crate::pipeline::steps::StepError;

/// Where and how to push. `url` may be `file://`, `git://`, `https://` or `ssh://`. Pushes
/// reach the remote through the same access policy as the followed branch's fetches
/// (`git::access`): SSH host keys must be pinned, and every push has a deadline.
#[derive(Clone)]
pub struct GitRemote {
    /// Remote URL; empty means the request's `repository`.
    pub url: String,
    /// Credentials; the SSH agent's keys by default.
    pub auth: RemoteAuth,
    /// The SSH host keys trusted (the operator's pins and known_hosts file).
    pub host_keys: HostKeyPolicy,
    /// Bound on one push, from connecting to the last byte.
    pub deadline: Duration,
    /// Every credential read is registered here.
    pub redactor: crate::secret::Redactor,
}

impl Default for GitRemote {
    fn default() -> Self {
        Self {
            url: String::new(),
            auth: RemoteAuth::SshAgent,
            host_keys: HostKeyPolicy::default(),
            deadline: DEFAULT_DEADLINE,
            redactor: crate::secret::Redactor::new(),
        }
    }
}

impl std::fmt::Debug for GitRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRemote")
            .field("url", &crate::git::access::redact_url(&self.url))
            .field("auth", &self.auth)
            .field("host_keys", &self.host_keys)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl GitRemote {
    /// The same remote settings for another URL.
    pub fn for_url(&self, url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..self.clone()
        }
    }

    /// The access to `url` (or to this remote's own URL when set), checked.
    pub(super) fn access(&self, url: &str) -> Result<Access, StepError> {
        let url = if self.url.is_empty() { url } else { &self.url };
        Access::new(
            url,
            self.auth.clone(),
            &self.host_keys,
            self.deadline,
            self.redactor.clone(),
        )
        .map_err(|e| remote_err("reaching", e))
    }
}

/// A failed network Git call as a step error: retryable when the fault may pass by itself
/// (network, timeout); a refused host key, credentials or a missing repository are not.
pub(super) fn remote_err(what: &str, e: FetchError) -> StepError {
    let message = format!("{what} {e}");
    if e.is_transient() {
        StepError::transient(message)
    } else {
        StepError::permanent(message)
    }
}

/// Pushes `req` as a branch to a Git remote (blocking work runs off the async runtime, bounded
/// by the remote's deadline).
pub async fn apply_git(remote: &GitRemote, req: &PrRequest) -> Result<PrOutcome, StepError> {
    req.check()?;
    let access = remote.access(&req.repository)?;
    let req = req.clone();
    let task = access.clone();
    let result = access
        .run(move || Ok(push_blocking(&task, &req)))
        .await
        .map_err(|e| remote_err("pushing to", e))?;
    result
}

pub(super) struct WorkDir(pub(super) PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn git_err(what: &str, url: &str, e: git2::Error) -> StepError {
    let transient = matches!(
        e.class(),
        git2::ErrorClass::Net
            | git2::ErrorClass::Ssl
            | git2::ErrorClass::Os
            | git2::ErrorClass::Http
    );
    let message = format!("{what} {url}: {}", e.message());
    if transient {
        StepError::transient(message)
    } else {
        StepError::permanent(message)
    }
}

/// A network error of `session` as a step error (what its callbacks recorded first).
pub(super) fn net_err(what: &str, session: &Session<'_>, e: git2::Error) -> StepError {
    remote_err(what, session.classify(e))
}

fn push_blocking(access: &Access, req: &PrRequest) -> Result<PrOutcome, StepError> {
    let url = access.url_redacted();
    let session = access.session().map_err(|e| remote_err("reaching", e))?;
    let dir = std::env::temp_dir().join(format!(
        "mockops-push-{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    let work = WorkDir(dir);
    let repo = Repository::init_bare(&work.0)
        .map_err(|e| git_err("creating a work repository for", url, e))?;
    let mut remote = repo
        .remote_anonymous(access.url())
        .map_err(|e| git_err("opening remote", url, e))?;

    let base_ref = format!("refs/heads/{}", req.base_branch);
    let head_ref = format!("refs/heads/{}", req.head_branch);
    let (base_remote, head_remote) = {
        let conn = remote
            .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
            .map_err(|e| net_err("connecting to", &session, e))?;
        let heads = conn.list().map_err(|e| net_err("listing", &session, e))?;
        let find = |name: &str| heads.iter().find(|h| h.name() == name).map(|h| h.oid());
        (find(&base_ref), find(&head_ref))
    };
    let base_oid = base_remote.ok_or_else(|| {
        StepError::permanent(format!(
            "base branch {:?} does not exist in {url}; set `branch` to an existing branch",
            req.base_branch
        ))
    })?;
    let mut specs = vec![format!("+{base_ref}:refs/mockops/base")];
    if head_remote.is_some() {
        specs.push(format!("+{head_ref}:refs/mockops/head"));
    }
    let mut fo = FetchOptions::new();
    fo.remote_callbacks(session.callbacks());
    remote
        .fetch(&specs, Some(&mut fo), None)
        .map_err(|e| net_err("fetching from", &session, e))?;

    let hash = req.content_hash();
    let base_commit = repo
        .find_commit(base_oid)
        .map_err(|e| git_err("reading the base commit of", url, e))?;
    let base_tree = base_commit
        .tree()
        .map_err(|e| git_err("reading the base tree of", url, e))?;
    let base_paths = files_under(&repo, &base_tree, req)
        .map_err(|e| git_err("reading the base tree of", url, e))?;
    let files = req.files_against(base_paths.iter().map(String::as_str));

    let mut wanted = Vec::new();
    let mut update = git2::build::TreeUpdateBuilder::new();
    for f in &files {
        match &f.change {
            Change::Write(bytes) => {
                let oid = repo
                    .blob(bytes)
                    .map_err(|e| git_err("writing a blob for", url, e))?;
                update.upsert(f.path.as_str(), oid, git2::FileMode::Blob);
                wanted.push((f.path.as_str(), Some(oid)));
            }
            Change::Delete => {
                if base_tree.get_path(Path::new(f.path.as_str())).is_ok() {
                    update.remove(f.path.as_str());
                }
                wanted.push((f.path.as_str(), None));
            }
        }
    }
    let matches = |tree: &git2::Tree<'_>| {
        wanted.iter().all(|(path, oid)| {
            let there = tree.get_path(Path::new(path)).ok().map(|e| e.id());
            there == *oid
        })
    };
    let outcome = |action, commit: Option<Oid>, reason: Option<String>| PrOutcome {
        action,
        number: None,
        url: None,
        branch: req.head_branch.clone(),
        commit: commit.map(|c| c.to_string()),
        reason,
    };
    if matches(&base_tree) {
        return Ok(outcome(
            PrAction::Unchanged,
            head_remote,
            Some(format!("{} already has this content", req.base_branch)),
        ));
    }
    if let Some(head_oid) = head_remote {
        let head = repo
            .find_commit(head_oid)
            .map_err(|e| git_err("reading the branch head of", url, e))?;
        let committer = head.committer();
        let who = Person {
            name: String::from_utf8_lossy(committer.name_bytes()).into_owned(),
            email: String::from_utf8_lossy(committer.email_bytes()).into_owned(),
        };
        let message = String::from_utf8_lossy(head.message_bytes()).into_owned();
        if !is_own_commit(&message, &who, &req.identity) {
            return Ok(outcome(
                PrAction::SkippedForeign,
                Some(head_oid),
                Some(format!(
                    "branch {} has commit {head_oid} by {} <{}>; mockops does not push over it",
                    req.head_branch, who.name, who.email
                )),
            ));
        }
        let head_tree = head
            .tree()
            .map_err(|e| git_err("reading the branch tree of", url, e))?;
        let head_paths = files_under(&repo, &head_tree, req)
            .map_err(|e| git_err("reading the branch tree of", url, e))?;
        let head_stale = !req
            .stale_paths(head_paths.iter().map(String::as_str))
            .is_empty();
        if matches(&head_tree) && !head_stale {
            return Ok(outcome(PrAction::Unchanged, Some(head_oid), None));
        }
    }

    let tree_oid = update
        .create_updated(&repo, &base_tree)
        .map_err(|e| git_err("building the tree for", url, e))?;
    let tree = repo
        .find_tree(tree_oid)
        .map_err(|e| git_err("reading the new tree for", url, e))?;
    let sig = git2::Signature::now(&req.identity.name, &req.identity.email)
        .map_err(|e| git_err("signing the commit for", url, e))?;
    let commit = repo
        .commit(
            Some(&head_ref),
            &sig,
            &sig,
            &commit_message(req, &hash),
            &tree,
            &[&base_commit],
        )
        .map_err(|e| git_err("committing for", url, e))?;

    // Lease: the remote branch must still be where we read it (absent, or our commit).
    let expected = head_remote.unwrap_or(Oid::ZERO_SHA1);
    let mut rejected: Option<String> = None;
    {
        let mut cb = session.callbacks();
        let head_ref_cb = head_ref.clone();
        cb.push_negotiation(move |updates| {
            for u in updates {
                if u.dst_refname().ok() == Some(head_ref_cb.as_str()) && u.src() != expected {
                    return Err(git2::Error::from_str(
                        "the branch moved on the remote since it was read",
                    ));
                }
            }
            Ok(())
        });
        cb.push_update_reference(|refname, status| {
            if let Some(s) = status {
                rejected = Some(format!("{refname}: {s}"));
            }
            Ok(())
        });
        let mut po = PushOptions::new();
        po.remote_callbacks(cb);
        let res = remote.push(&[format!("+{head_ref}:{head_ref}")], Some(&mut po));
        if let Err(e) = res {
            if e.message().contains("moved on the remote") {
                return Err(StepError::transient(format!(
                    "branch {} moved on {url} while mockops was pushing; trying again re-checks who pushed",
                    req.head_branch
                )));
            }
            return Err(net_err("pushing to", &session, e));
        }
    }
    if let Some(r) = rejected {
        return Err(StepError::permanent(format!(
            "{url} rejected the push of {r}"
        )));
    }
    let action = if head_remote.is_some() {
        PrAction::Updated
    } else {
        PrAction::Pushed
    };
    Ok(outcome(action, Some(commit), None))
}

/// Every file path of `tree` under the request's replaced directories.
fn files_under(
    repo: &Repository,
    tree: &git2::Tree<'_>,
    req: &PrRequest,
) -> Result<Vec<String>, git2::Error> {
    let mut out = Vec::new();
    for dir in &req.replace_dirs {
        let Ok(entry) = tree.get_path(Path::new(dir.as_str())) else {
            continue;
        };
        let Ok(sub) = entry.to_object(repo).and_then(|o| o.peel_to_tree()) else {
            continue;
        };
        sub.walk(git2::TreeWalkMode::PreOrder, |root, e| {
            if e.kind() == Some(git2::ObjectType::Blob)
                && let Ok(name) = e.name()
            {
                out.push(format!("{dir}/{root}{name}"));
            }
            git2::TreeWalkResult::Ok
        })?;
    }
    Ok(out)
}
