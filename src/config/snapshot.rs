//! A snapshot is one revision of a config repository: the list of its files with their blob
//! ids, and read access to them. The same loader works on a working directory and on any
//! commit of a Git repository (read from the object database, no checkout).

use std::path::Path;

use crate::git::blob_id;
use crate::git::revision::AtPath;
use crate::git::revision::{self, DirFiles, GitFiles, ReadError, RevisionFiles, TreeItem};

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
    Git(#[from] crate::git::Error),
}

/// One revision of a repository.
pub trait Snapshot: RevisionFiles {
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
    "templates",
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
                blob: blob_id(&bytes),
            }
        } else if ft.is_symlink() {
            let target = std::fs::read_link(item.path())
                .map_err(|e| io(&item.path(), e))?
                .to_string_lossy()
                .into_owned();
            match files.read(&rel) {
                Ok(bytes) => EntryKind::Link {
                    target: resolve_link(&rel, &target).unwrap_or(target),
                    blob: blob_id(&bytes),
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
        match crate::git::Oid::from_str(blob) {
            Ok(id) => self.read_blob(id),
            Err(_) => self.read(path),
        }
    }

    fn entries(&self) -> Result<Vec<Entry>, SnapshotError> {
        let mut out = Vec::new();
        for item in self.list(wanted_dir, wanted)? {
            let entry = match item {
                TreeItem::File { path, blob } => Entry {
                    path,
                    kind: EntryKind::File { blob },
                },
                TreeItem::Submodule { path } => Entry {
                    path,
                    kind: EntryKind::Special { what: "submodule" },
                },
                TreeItem::Link { path, target } => {
                    let resolved = resolve_link(&path, &target);
                    let kind = match resolved.as_deref().map(|t| self.at_path(t)) {
                        Some(AtPath::RegularFile { blob }) => EntryKind::Link {
                            target: resolved.unwrap_or(target),
                            blob,
                        },
                        Some(AtPath::Other) => EntryKind::Special {
                            what: "symlink to a non-regular file",
                        },
                        Some(AtPath::Nothing) | None => EntryKind::LinkOutside { target },
                    };
                    Entry { path, kind }
                }
            };
            out.push(entry);
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
