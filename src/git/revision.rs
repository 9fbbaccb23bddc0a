//! Read access to the files of one revision of a config repository: a directory on disk or a
//! commit of a Git repository (blobs read through git2, no checkout). Paths are repo-relative
//! with `/` separators; anything that would leave the repository is refused.

use std::path::{Component, Path, PathBuf};

/// Largest file any loader reads. Specs are large (Stripe's is ~4 MB); config files are small.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReadError {
    #[error("no such file")]
    NotFound,
    #[error("path `{0}` leaves the repository (absolute, `..`, or a symlink pointing outside)")]
    OutsideRepo(String),
    #[error("not a regular file")]
    NotRegular,
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: u64, limit: u64 },
    #[error("{0}")]
    Io(String),
}

/// One revision of a repository's files.
pub trait RevisionFiles: Send + Sync {
    /// Reads the file at the repo-relative `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError>;
}

/// Normalises a repo-relative path (`a/./b` -> `a/b`, `a/b/../c` -> `a/c`), refusing absolute
/// paths and paths that climb above the root.
pub fn normalize(path: &str) -> Result<String, ReadError> {
    let mut parts: Vec<&str> = Vec::new();
    for comp in Path::new(path).components() {
        match comp {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| ReadError::OutsideRepo(path.into()))?,
            ),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(ReadError::OutsideRepo(path.into()));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(ReadError::OutsideRepo(path.into()));
            }
        }
    }
    if parts.is_empty() {
        return Err(ReadError::NotFound);
    }
    Ok(parts.join("/"))
}

/// Files of a working directory. Symlinks are followed only while they stay inside the root.
#[derive(Debug, Clone)]
pub struct DirFiles {
    root: PathBuf,
}

impl DirFiles {
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(root.into())?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl RevisionFiles for DirFiles {
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let rel = normalize(path)?;
        let full = self.root.join(&rel);
        let real = match std::fs::canonicalize(&full) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A dangling symlink still must not be reported as merely missing if it points out.
                return Err(ReadError::NotFound);
            }
            Err(e) => return Err(ReadError::Io(e.to_string())),
        };
        if !real.starts_with(&self.root) {
            return Err(ReadError::OutsideRepo(rel));
        }
        let meta = std::fs::metadata(&real).map_err(|e| ReadError::Io(e.to_string()))?;
        if !meta.is_file() {
            return Err(ReadError::NotRegular);
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(ReadError::TooLarge {
                size: meta.len(),
                limit: MAX_FILE_BYTES,
            });
        }
        std::fs::read(&real).map_err(|e| ReadError::Io(e.to_string()))
    }
}

/// Files of one commit of a Git repository, read as blobs from its tree.
///
/// `git2::Repository` is `Send` but not `Sync`, so the one open repository sits behind a
/// mutex; every read locks it briefly.
pub struct GitFiles {
    repo: std::sync::Mutex<git2::Repository>,
    tree: git2::Oid,
    commit: Option<git2::Oid>,
}

/// The work tree of the Git repository that `path` is in (canonical), if it has one.
pub fn work_tree_of(path: &Path) -> Option<PathBuf> {
    git2::Repository::discover(path)
        .ok()
        .and_then(|r| r.workdir().and_then(|w| std::fs::canonicalize(w).ok()))
}

impl GitFiles {
    /// Opens `rev` (any revspec resolving to a commit or tree) of the repository at `repo_path`.
    pub fn open(repo_path: &Path, rev: &str) -> Result<Self, git2::Error> {
        let repo = git2::Repository::open(repo_path)?;
        let (commit, tree) = {
            let object = repo.revparse_single(rev)?;
            let commit = object.peel_to_commit().ok().map(|c| c.id());
            (commit, object.peel_to_tree()?.id())
        };
        Ok(Self {
            repo: std::sync::Mutex::new(repo),
            tree,
            commit,
        })
    }

    /// The commit the revision resolved to, if it was a commit.
    pub fn commit_id(&self) -> Option<git2::Oid> {
        self.commit
    }

    pub fn tree_id(&self) -> git2::Oid {
        self.tree
    }

    /// The open repository. A panic while it was locked leaves nothing half-done in it (reads
    /// only), so a poisoned lock is taken over.
    pub fn repository(&self) -> std::sync::MutexGuard<'_, git2::Repository> {
        self.repo.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads a blob by id (size-capped), without walking the tree.
    pub fn read_blob(&self, id: git2::Oid) -> Result<Vec<u8>, ReadError> {
        blob_bytes(&self.repository(), id)
    }

    /// The entries of the revision's tree: directories for which `enter(path)` holds are
    /// walked, and their files for which `keep(path)` holds are listed. Paths are
    /// repo-relative, `/`-separated, in tree order.
    pub fn list(
        &self,
        enter: impl Fn(&str) -> bool,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<TreeItem>, git2::Error> {
        let repo = self.repository();
        let tree = repo.find_tree(self.tree)?;
        let mut out = Vec::new();
        let mut links = Vec::new();
        tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
            let Ok(name) = entry.name() else {
                return git2::TreeWalkResult::Skip;
            };
            let mut rel = String::with_capacity(dir.len() + name.len());
            rel.push_str(dir);
            rel.push_str(name);
            if entry.kind() == Some(git2::ObjectType::Tree) {
                return if enter(&rel) {
                    git2::TreeWalkResult::Ok
                } else {
                    git2::TreeWalkResult::Skip
                };
            }
            if !keep(&rel) {
                return git2::TreeWalkResult::Ok;
            }
            if entry.filemode() == i32::from(git2::FileMode::Link) {
                links.push((out.len(), entry.id()));
                out.push(TreeItem::Link {
                    path: rel,
                    target: String::new(),
                });
            } else if entry.kind() == Some(git2::ObjectType::Commit) {
                out.push(TreeItem::Submodule { path: rel });
            } else {
                out.push(TreeItem::File {
                    path: rel,
                    // Same text as `Oid`'s `Display`, without the formatting machinery.
                    blob: hex::encode(entry.id().as_bytes()),
                });
            }
            git2::TreeWalkResult::Ok
        })?;
        for (i, id) in links {
            let blob = repo.find_blob(id)?;
            if let Some(TreeItem::Link { target, .. }) = out.get_mut(i) {
                *target = String::from_utf8_lossy(blob.content()).into_owned();
            }
        }
        Ok(out)
    }

    /// What is at `path` in the revision's tree.
    pub fn at_path(&self, path: &str) -> AtPath {
        let repo = self.repository();
        let Ok(tree) = repo.find_tree(self.tree) else {
            return AtPath::Nothing;
        };
        match tree.get_path(Path::new(path)) {
            Ok(e)
                if e.kind() == Some(git2::ObjectType::Blob)
                    && e.filemode() != i32::from(git2::FileMode::Link) =>
            {
                AtPath::RegularFile {
                    blob: e.id().to_string(),
                }
            }
            Ok(_) => AtPath::Other,
            Err(_) => AtPath::Nothing,
        }
    }
}

/// What [`GitFiles::at_path`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtPath {
    /// A regular file (not a symbolic link) and its blob id.
    RegularFile {
        blob: String,
    },
    /// A directory, a symbolic link or a submodule.
    Other,
    Nothing,
}

/// An entry of a revision's tree, as [`GitFiles::list`] gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeItem {
    /// A regular file (or an executable one) and its blob id.
    File { path: String, blob: String },
    /// A symbolic link and the text of its target.
    Link { path: String, target: String },
    /// A submodule (a commit of another repository).
    Submodule { path: String },
}

fn blob_bytes(repo: &git2::Repository, id: git2::Oid) -> Result<Vec<u8>, ReadError> {
    let blob = repo
        .find_blob(id)
        .map_err(|e| ReadError::Io(e.message().to_string()))?;
    let size = blob.size() as u64;
    if size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge {
            size,
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(blob.content().to_vec())
}

impl RevisionFiles for GitFiles {
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let rel = normalize(path)?;
        let repo = self.repository();
        let tree = repo
            .find_tree(self.tree)
            .map_err(|e| ReadError::Io(e.message().to_string()))?;
        let entry = match tree.get_path(Path::new(&rel)) {
            Ok(e) => e,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(ReadError::NotFound),
            Err(e) => return Err(ReadError::Io(e.message().to_string())),
        };
        // Symlinks in Git are blobs holding the target; config loaders never follow them.
        if entry.filemode() == i32::from(git2::FileMode::Link)
            || entry.kind() != Some(git2::ObjectType::Blob)
        {
            return Err(ReadError::NotRegular);
        }
        blob_bytes(&repo, entry.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_refuses_escapes() {
        assert_eq!(normalize("a/./b/../c").as_deref(), Ok("a/c"));
        assert!(matches!(normalize("../x"), Err(ReadError::OutsideRepo(_))));
        assert!(matches!(
            normalize("/etc/passwd"),
            Err(ReadError::OutsideRepo(_))
        ));
        assert!(matches!(
            normalize("a/../../x"),
            Err(ReadError::OutsideRepo(_))
        ));
    }
}
