//! Reading a branch's history from the repository the daemon follows (the repository itself
//! or the mirror): which commits lie between the applied one and the head, who made them, and
//! the messages a commit brings in. The reconciler's only view of commits.

use std::path::Path;

use git2::Repository;

use super::{Error, Oid};

/// A commit's header: who, when, what.
#[derive(Debug, Clone)]
pub struct CommitHeader {
    pub sha: String,
    pub author_name: String,
    pub author_email: String,
    /// The first paragraph of the message.
    pub summary: String,
    /// Commit time, Unix seconds.
    pub time: i64,
}

/// Why a revision given on the command line names no usable commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RevisionError {
    #[error("no such revision ({0})")]
    NotFound(String),
    #[error("does not name a commit ({0})")]
    NotACommit(String),
}

/// The history of one repository. Opened for one pass: a `git2` repository is used by one
/// thread at a time.
pub struct History {
    repo: Repository,
}

impl History {
    pub fn open(git_dir: &Path) -> Result<Self, Error> {
        Ok(Self {
            repo: Repository::open(git_dir)?,
        })
    }

    /// The commit `rev` (a sha, tag or branch) names.
    pub fn resolve(&self, rev: &str) -> Result<Oid, RevisionError> {
        let obj = self
            .repo
            .revparse_single(rev)
            .map_err(|e| RevisionError::NotFound(e.message().to_string()))?;
        obj.peel_to_commit()
            .map(|c| c.id())
            .map_err(|e| RevisionError::NotACommit(e.message().to_string()))
    }

    /// Whether the repository has the commit `oid`.
    pub fn has_commit(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }

    /// Whether `oid` is `head` or one of its ancestors.
    pub fn is_on_history_of(&self, head: Oid, oid: Oid) -> Result<bool, Error> {
        Ok(oid == head || self.repo.graph_descendant_of(head, oid)?)
    }

    /// The header of commit `oid`.
    pub fn header(&self, oid: Oid) -> Result<CommitHeader, Error> {
        let commit = self.repo.find_commit(oid)?;
        let a = commit.author();
        Ok(CommitHeader {
            sha: commit.id().to_string(),
            author_name: String::from_utf8_lossy(a.name_bytes()).into_owned(),
            author_email: String::from_utf8_lossy(a.email_bytes()).into_owned(),
            summary: String::from_utf8_lossy(commit.summary_bytes().unwrap_or_default()).into(),
            time: commit.time().seconds(),
        })
    }

    /// Commits on the first-parent chain of `head` after `from`, oldest first.
    pub fn first_parent_chain(&self, from: Oid, head: Oid) -> Result<Vec<Oid>, Error> {
        let repo = &self.repo;
        let mut chain = Vec::new();
        let mut cur = repo.find_commit(head)?;
        while cur.id() != from {
            chain.push(cur.id());
            if cur.parent_count() == 0 {
                break;
            }
            // Stop once the chain has reached history the applied commit already contains.
            let parent = cur.parent(0)?;
            if parent.id() != from && repo.graph_descendant_of(from, parent.id())? {
                break;
            }
            cur = parent;
        }
        chain.reverse();
        Ok(chain)
    }

    /// The first-parent chain ending at `head`, newest first, at most `max` commits.
    pub fn first_parents(&self, head: Oid, max: usize) -> Result<Vec<Oid>, Error> {
        let mut out = Vec::new();
        let mut cur = self.repo.find_commit(head)?;
        while out.len() < max {
            out.push(cur.id());
            if cur.parent_count() == 0 {
                break;
            }
            cur = cur.parent(0)?;
        }
        Ok(out)
    }

    /// The messages of the commits `oid` brings in: the commit itself, or for a merge the
    /// commits of the merged side too (promotion trailers survive merge commits and GitHub's
    /// squash messages).
    pub fn messages_brought_in(&self, oid: Oid) -> Result<Vec<String>, Error> {
        let repo = &self.repo;
        let commit = repo.find_commit(oid)?;
        let mut messages = vec![String::from_utf8_lossy(commit.message_bytes()).into_owned()];
        if commit.parent_count() > 1
            && let Ok(mut walk) = repo.revwalk()
            && walk.push(commit.id()).is_ok()
            && commit.parent_id(0).is_ok_and(|p| walk.hide(p).is_ok())
        {
            for oid in walk.flatten().take(1000) {
                if oid != commit.id()
                    && let Ok(c) = repo.find_commit(oid)
                {
                    messages.push(String::from_utf8_lossy(c.message_bytes()).into_owned());
                }
            }
        }
        Ok(messages)
    }
}
