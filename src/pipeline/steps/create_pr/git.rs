//! The plain Git fallback (`provider: git`): the same change pushed as a branch to any Git
//! remote, for hosts without GitHub's API. One commit on top of the base branch, the same
//! branch naming, and never a push over a commit mockops did not make.

use std::time::Duration;

use super::github::{commit_message, is_own_commit, wanted_blobs};
use super::{Change, PrAction, PrFile, PrOutcome, PrRequest};
use crate::git::Oid;
use crate::git::access::{Access, DEFAULT_DEADLINE, FetchError, HostKeyPolicy, RemoteAuth};
use crate::git::write::{Edit, Identity, Pushed, Repo, WriteError};
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
    StepError::git(format!("{what} {e}"), WriteError::Remote(e))
}

/// Pushes `req` as a branch to a Git remote (blocking work runs off the async runtime, bounded
/// by the remote's deadline).
pub async fn apply_git(remote: &GitRemote, req: &PrRequest) -> Result<PrOutcome, StepError> {
    req.check()?;
    let access = remote.access(&req.repository)?;
    let req = req.clone();
    let task = access.clone();
    access
        .run(move || Ok(push_blocking(&task, &req)))
        .await
        .map_err(|e| remote_err("pushing to", e))?
}

/// A failed Git write as a step error, retryable when the fault may pass by itself.
pub(super) fn write_err(e: WriteError) -> StepError {
    StepError::git(e.to_string(), e)
}

fn push_blocking(access: &Access, req: &PrRequest) -> Result<PrOutcome, StepError> {
    let url = access.url_redacted();
    let session = access.session().map_err(|e| remote_err("reaching", e))?;
    let repo = Repo::scratch("push", url).map_err(write_err)?;

    let base_ref = format!("refs/heads/{}", req.base_branch);
    let head_ref = format!("refs/heads/{}", req.head_branch);
    let heads = repo
        .remote_heads(&session, &[&base_ref, &head_ref])
        .map_err(write_err)?;
    let (base_remote, head_remote) = (heads[0], heads[1]);
    let base_oid = base_remote.ok_or_else(|| {
        StepError::invalid(format!(
            "base branch {:?} does not exist in {url}; set `branch` to an existing branch",
            req.base_branch
        ))
    })?;
    let mut specs = vec![format!("+{base_ref}:refs/mockops/base")];
    if head_remote.is_some() {
        specs.push(format!("+{head_ref}:refs/mockops/head"));
    }
    repo.fetch(&session, &specs).map_err(write_err)?;

    let hash = req.content_hash();
    let dirs: Vec<&str> = req.replace_dirs.iter().map(|d| d.as_str()).collect();
    let base_paths = repo.paths_under(base_oid, &dirs).map_err(write_err)?;
    let files = req.files_against(base_paths.iter().map(String::as_str));
    let wanted = wanted_blobs(&files);
    let outcome = |action, commit: Option<Oid>, reason: Option<String>| PrOutcome {
        action,
        number: None,
        url: None,
        branch: req.head_branch.clone(),
        commit: commit.map(|c| c.to_string()),
        reason,
    };
    if repo.has_content(base_oid, &wanted).map_err(write_err)? {
        return Ok(outcome(
            PrAction::Unchanged,
            head_remote,
            Some(format!("{} already has this content", req.base_branch)),
        ));
    }
    if let Some(head_oid) = head_remote {
        let head = repo.commit_meta(head_oid).map_err(write_err)?;
        let who = Person {
            name: head.committer_name,
            email: head.committer_email,
        };
        if !is_own_commit(&head.message, &who, &req.identity) {
            return Ok(outcome(
                PrAction::SkippedForeign,
                Some(head_oid),
                Some(format!(
                    "branch {} has commit {head_oid} by {} <{}>; mockops does not push over it",
                    req.head_branch, who.name, who.email
                )),
            ));
        }
        let head_paths = repo.paths_under(head_oid, &dirs).map_err(write_err)?;
        let head_stale = !req
            .stale_paths(head_paths.iter().map(String::as_str))
            .is_empty();
        if repo.has_content(head_oid, &wanted).map_err(write_err)? && !head_stale {
            return Ok(outcome(PrAction::Unchanged, Some(head_oid), None));
        }
    }

    let edits = edits_of(&files);
    let commit = repo
        .commit_on(
            base_oid,
            &edits,
            &commit_message(req, &hash),
            Identity {
                name: &req.identity.name,
                email: &req.identity.email,
            },
        )
        .map_err(write_err)?;

    // Lease: the remote branch must still be where we read it (absent, or our commit).
    match repo
        .push_with_lease(&session, commit, &head_ref, head_remote)
        .map_err(write_err)?
    {
        Pushed::Done => {}
        Pushed::Moved => {
            return Err(StepError::unavailable(format!(
                "branch {} moved on {url} while mockops was pushing; trying again re-checks who pushed",
                req.head_branch
            )));
        }
        Pushed::Refused(r) => {
            return Err(StepError::invalid(format!(
                "{url} rejected the push of {r}"
            )));
        }
    }
    let action = if head_remote.is_some() {
        PrAction::Updated
    } else {
        PrAction::Pushed
    };
    Ok(outcome(action, Some(commit), None))
}

/// The files of a request as edits of a commit.
pub(super) fn edits_of(files: &[PrFile]) -> Vec<Edit<'_>> {
    files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                match &f.change {
                    Change::Write(bytes) => Some(bytes.as_slice()),
                    Change::Delete => None,
                },
            )
        })
        .collect()
}
