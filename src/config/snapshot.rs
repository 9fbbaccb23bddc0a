//! A snapshot is one revision of a config repository: the list of its files with their blob
//! ids, and read access to them. The same loader works on a working directory and on any
//! commit of a Git repository (read from the object database, no checkout).

use std::path::Path;

use crate::git::revision::{self, DirFiles, GitFiles, ReadError, SourceFiles};

/// What a path in the snapshot is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with its Git blob id (hex), used as the parse-cache key.
    File { blob: String },
    /// A symlink whose target stays inside the repository: `target` is the repo-relative
    /// path it resolves to (read that), `blob` the target's id.
    Link { target: String, blob: String },
    /// A symlink pointing outside the repository (or dangling).
    LinkOutside { target: String },
    /// A FIFO, socket, device or submodule.
    Special { what: &'static str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: EntryKind,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(#[from] git2::Error),
}

/// One revision of a repository.
pub trait Snapshot: SourceFiles {
    /// Every file of the revision (outside `.git`), sorted by path.
    fn entries(&self) -> Result<Vec<Entry>, SnapshotError>;

    /// Reads a file listed by [`Snapshot::entries`]; `blob` is its id from that listing.
    /// Git snapshots read the blob directly instead of walking the tree again.
    fn read_entry(&self, path: &str, _blob: &str) -> Result<Vec<u8>, ReadError> {
        self.read(path)
    }
}

/// Top-level directories mockops reads; others are never listed (so a large unrelated tree
/// costs nothing).
const WATCHED_DIRS: &[&str] = &[
    "services",
    "federations",
    "pipelines",
    "specs",
    "environments",
];
const SETTINGS_FILES: &[&str] = &["mockops.yaml", "mockops.yml"];

fn wanted(path: &str) -> bool {
    SETTINGS_FILES.contains(&path)
        || WATCHED_DIRS
            .iter()
            .any(|d| path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

fn wanted_dir(path: &str) -> bool {
    WATCHED_DIRS
        .iter()
        .any(|d| path == *d || path.strip_prefix(d).is_some_and(|r| r.starts_with('/')))
}

/// Resolves a symlink target relative to the link's directory; `None` if it leaves the repo.
fn resolve_link(link_path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let dir = link_path.rsplit_once('/').map_or("", |(d, _)| d);
    let joined = if dir.is_empty() {
        target.to_string()
    } else {
        format!("{dir}/{target}")
    };
    revision::normalize(&joined).ok()
}

impl Snapshot for DirFiles {
    fn entries(&self) -> Result<Vec<Entry>, SnapshotError> {
        let mut out = Vec::new();
        walk_dir(self, self.root(), "", &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn walk_dir(
    files: &DirFiles,
    dir: &Path,
    prefix: &str,
    out: &mut Vec<Entry>,
) -> Result<(), SnapshotError> {
    let io = |path: &Path, source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    };
    for item in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let item = item.map_err(|e| io(dir, e))?;
        let Ok(name) = item.file_name().into_string() else {
            continue; // not UTF-8: cannot be a mockops path
        };
        if prefix.is_empty() && name == ".git" {
            continue;
        }
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let ft = item.file_type().map_err(|e| io(&item.path(), e))?;
        if ft.is_dir() {
            if wanted_dir(&rel) {
                walk_dir(files, &item.path(), &rel, out)?;
            }
            continue;
        }
        if !wanted(&rel) {
            continue;
        }
        let kind = if ft.is_file() {
            let bytes = std::fs::read(item.path()).map_err(|e| io(&item.path(), e))?;
            EntryKind::File {
                blob: git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)?.to_string(),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path())
                .map_err(|e| io(&item.path(), e))?
                .to_string_lossy()
                .into_owned();
            match files.read(&rel) {
                Ok(bytes) => EntryKind::Link {
                    target: resolve_link(&rel, &target).unwrap_or(target),
                    blob: git2::Oid::hash_object(git2::ObjectType::Blob, &bytes)?.to_string(),
                },
                Err(ReadError::OutsideRepo(_) | ReadError::NotFound) => {
                    EntryKind::LinkOutside { target }
                }
                Err(_) => EntryKind::Special {
                    what: "symlink to a non-regular file",
                },
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            EntryKind::Special {
                what: if ft.is_fifo() {
                    "named pipe"
                } else if ft.is_socket() {
                    "socket"
                } else {
                    "device"
                },
            }
        };
        out.push(Entry { path: rel, kind });
    }
    Ok(())
}

impl Snapshot for GitFiles {
    fn read_entry(&self, path: &str, blob: &str) -> Result<Vec<u8>, ReadError> {
        match git2::Oid::from_str(blob) {
            Ok(id) => self.read_blob(id),
            Err(_) => self.read(path),
        }
    }

    fn entries(&self) -> Result<Vec<Entry>, SnapshotError> {
        let repo = self.repository();
        let tree = repo.find_tree(self.tree_id())?;
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
                return if wanted_dir(&rel) {
                    git2::TreeWalkResult::Ok
                } else {
                    git2::TreeWalkResult::Skip
                };
            }
            if !wanted(&rel) {
                return git2::TreeWalkResult::Ok;
            }
            let mode = entry.filemode();
            if mode == i32::from(git2::FileMode::Link) {
                links.push((rel, entry.id()));
            } else if entry.kind() == Some(git2::ObjectType::Commit) {
                out.push(Entry {
                    path: rel,
                    kind: EntryKind::Special { what: "submodule" },
                });
            } else {
                out.push(Entry {
                    path: rel,
                    kind: EntryKind::File {
                        // Same text as `Oid`'s `Display`, without the formatting machinery.
                        blob: hex::encode(entry.id().as_bytes()),
                    },
                });
            }
            git2::TreeWalkResult::Ok
        })?;
        for (rel, id) in links {
            let blob = repo.find_blob(id)?;
            let target = String::from_utf8_lossy(blob.content()).into_owned();
            let resolved = resolve_link(&rel, &target);
            let kind = match resolved
                .as_deref()
                .and_then(|t| tree.get_path(Path::new(t)).ok())
            {
                Some(e)
                    if e.kind() == Some(git2::ObjectType::Blob)
                        && e.filemode() != i32::from(git2::FileMode::Link) =>
                {
                    EntryKind::Link {
                        target: resolved.unwrap_or(target),
                        blob: e.id().to_string(),
                    }
                }
                Some(_) => EntryKind::Special {
                    what: "symlink to a non-regular file",
                },
                None => EntryKind::LinkOutside { target },
            };
            out.push(Entry { path: rel, kind });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_resolution_stays_inside() {
        assert_eq!(
            resolve_link("specs/a.yaml", "b.yaml").as_deref(),
            Some("specs/b.yaml")
        );
        assert_eq!(resolve_link("specs/a.yaml", "../../etc/passwd"), None);
        assert_eq!(resolve_link("specs/a.yaml", "/etc/passwd"), None);
    }
}
