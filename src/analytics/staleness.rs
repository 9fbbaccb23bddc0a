//! Reality-level staleness from Git history: for each member of each federation of the applied
//! commit, the oldest commit of the unbroken run (along the first-parent chain back from the
//! applied commit) in which it had its current reality level, and the same for its spec
//! content (the spec path and the blob id of the spec file). Invalid commits are skipped: the
//! daemon kept serving the commit before them. The walk looks at most [`MAX_COMMITS`] commits
//! back (`truncated` says the run may be longer) and is kept per applied commit.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::config::load::Loader;
use crate::git::Oid;
use crate::git::history::History;
use crate::git::revision::GitFiles;

/// Commits looked at, at most, back from the applied one.
pub const MAX_COMMITS: usize = 500;

/// Why the history cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot read the history of {sha}: {cause}")]
    Git { sha: String, cause: String },
}

/// A commit and its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Since {
    pub commit: String,
    /// Commit time, RFC 3339 UTC.
    pub at: String,
    /// Commit time, Unix seconds.
    #[serde(skip)]
    pub unix: i64,
}

/// Since when a member has had its reality level and its spec content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberHistory {
    pub reality_level: String,
    pub reality_level_since: Since,
    pub spec: Option<String>,
    pub spec_since: Since,
    /// The walk stopped at [`MAX_COMMITS`] with the run still unbroken.
    pub truncated: bool,
}

/// (federation, member) -> its history.
pub type Histories = BTreeMap<(String, String), MemberHistory>;

type Signature = BTreeMap<(String, String), (String, Option<(String, String)>)>;

/// What each member looks like at `sha`: its reality level, its spec path and blob. `None`
/// for an invalid commit or one that cannot be read.
fn signature(loader: &Loader, repo: &Path, sha: &str) -> Option<Signature> {
    let files = GitFiles::open(repo, sha).ok()?;
    let loaded = loader.load(&files).ok()?;
    if !loaded.is_valid() {
        return None;
    }
    let state = &loaded.state;
    let mut out = BTreeMap::new();
    for (fname, fed) in &state.federations {
        for m in &fed.spec.services {
            let service = m.service.as_ref().unwrap_or(&m.name);
            let spec = state
                .services
                .get(service)
                .and_then(|s| s.spec.spec.clone())
                .map(|p| {
                    let norm = crate::git::revision::normalize(&p).unwrap_or(p.clone());
                    let blob = state
                        .specs
                        .get(&norm)
                        .map(|s| s.blob.clone())
                        .unwrap_or_default();
                    (p, blob)
                });
            out.insert(
                (fname.clone(), m.name.clone()),
                (super::catalog::level_name(m.reality_level), spec),
            );
        }
    }
    Some(out)
}

/// The histories of every member of the applied commit `sha`.
pub fn compute(repo: &Path, sha: &str) -> Result<Histories, HistoryError> {
    let err = |cause: String| HistoryError::Git {
        sha: sha.to_string(),
        cause,
    };
    let history = History::open(repo).map_err(|e| err(e.to_string()))?;
    let head = Oid::from_str(sha).map_err(|e| err(e.to_string()))?;
    let chain = history
        .first_parents(head, MAX_COMMITS)
        .map_err(|e| err(e.to_string()))?;
    let since = |oid: Oid| -> Since {
        let h = history.header(oid).ok();
        let unix = h.as_ref().map_or(0, |h| h.time);
        Since {
            commit: oid.to_string(),
            at: crate::util::time::unix_rfc3339(unix),
            unix,
        }
    };
    let loader = Loader::new();
    let current = signature(&loader, repo, sha).unwrap_or_default();
    // Per member: the oldest commit of each run so far, and whether the run is still open.
    let mut level_since: BTreeMap<&(String, String), (Oid, bool)> =
        current.keys().map(|k| (k, (head, true))).collect();
    let mut spec_since = level_since.clone();
    for &oid in chain.iter().skip(1) {
        if level_since.values().all(|(_, open)| !open) && spec_since.values().all(|(_, o)| !o) {
            break;
        }
        let Some(sig) = signature(&loader, repo, &oid.to_string()) else {
            continue;
        };
        for (key, (level, spec)) in &current {
            let then = sig.get(key);
            if let Some((at, open)) = level_since.get_mut(key)
                && *open
            {
                if then.is_some_and(|(l, _)| l == level) {
                    *at = oid;
                } else {
                    *open = false;
                }
            }
            if let Some((at, open)) = spec_since.get_mut(key)
                && *open
            {
                if then.is_some_and(|(_, s)| s == spec) {
                    *at = oid;
                } else {
                    *open = false;
                }
            }
        }
    }
    let walked_all = chain.len() < MAX_COMMITS;
    let mut out = BTreeMap::new();
    for (key, (level, spec)) in &current {
        let (l_at, l_open) = level_since.get(key).copied().unwrap_or((head, false));
        let (s_at, s_open) = spec_since.get(key).copied().unwrap_or((head, false));
        out.insert(
            key.clone(),
            MemberHistory {
                reality_level: level.clone(),
                reality_level_since: since(l_at),
                spec: spec.as_ref().map(|(p, _)| p.clone()),
                spec_since: since(s_at),
                truncated: !walked_all && (l_open || s_open),
            },
        );
    }
    Ok(out)
}

/// [`compute`], once per applied commit (blocking: call from a blocking task).
pub fn cached(repo: &Path, sha: &str) -> Result<Arc<Histories>, HistoryError> {
    static LAST: crate::config::load::CommitMemo<Histories> =
        crate::config::load::CommitMemo::new(1);
    LAST.get(repo, sha, || compute(repo, sha))
}
