//! Writing a spec as of one commit into a directory: the spec file and every file it pulls in
//! (relative `$ref`s of an OpenAPI description, repository imports of a `.proto` file), at the
//! same repo-relative paths, read from Git blobs. The working tree is never read.

use std::path::Path;

use crate::git::revision::{GitFiles, ReadError, RevisionFiles, normalize};
use crate::schema_diff::openapi;
use crate::schema_diff::proto::{self, ProtoOptions};
use crate::schema_diff::{SchemaType, schema_type_of};

/// Why a spec could not be written out.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(
        "spec path `{0}` leaves the repository (absolute or `..`): give a repo-relative path such as `specs/api.yaml`"
    )]
    OutsideRepo(String),
    #[error(
        "`{0}`: cannot tell the kind of spec: expected an OpenAPI file (.yaml, .yml, .json) or a .proto file"
    )]
    UnknownType(String),
    #[error("`{path}` at commit {commit}: {source}")]
    Read {
        path: String,
        commit: String,
        source: ReadError,
    },
    #[error("`{path}` at commit {commit} is not a loadable spec:\n{problems}")]
    Invalid {
        path: String,
        commit: String,
        problems: String,
    },
    #[error("cannot write `{path}` into the temporary directory: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// What was written: the normalised spec path, its kind, and every repo-relative file written
/// (the spec first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Materialized {
    pub spec_path: String,
    pub schema_type: SchemaType,
    pub files: Vec<String>,
}

/// Writes the spec at repo-relative `spec_path` of the revision `files`, with the files it
/// references, under `dest` (which should be empty). Blocking: run it off the async runtime.
pub fn materialize(
    files: &GitFiles,
    spec_path: &str,
    dest: &Path,
) -> Result<Materialized, MaterializeError> {
    let commit = files
        .commit_id()
        .map_or_else(|| files.tree_id().to_string(), |c| c.to_string());
    let spec_path = match normalize(spec_path) {
        Ok(p) => p,
        Err(ReadError::OutsideRepo(_)) => {
            return Err(MaterializeError::OutsideRepo(spec_path.to_string()));
        }
        Err(source) => {
            return Err(MaterializeError::Read {
                path: spec_path.to_string(),
                commit,
                source,
            });
        }
    };
    let schema_type = schema_type_of(&spec_path)
        .ok_or_else(|| MaterializeError::UnknownType(spec_path.clone()))?;
    let read = |path: &str| {
        files.read(path).map_err(|source| MaterializeError::Read {
            path: path.to_string(),
            commit: commit.clone(),
            source,
        })
    };
    let root_bytes = read(&spec_path)?;

    let mut paths = vec![spec_path.clone()];
    match schema_type {
        SchemaType::Openapi => {
            let spec = openapi::load(&spec_path, &root_bytes, files).map_err(|e| {
                MaterializeError::Invalid {
                    path: spec_path.clone(),
                    commit: commit.clone(),
                    problems: e.to_string(),
                }
            })?;
            paths.extend(spec.docs.keys().filter(|k| **k != spec_path).cloned());
        }
        SchemaType::Protobuf => {
            let compiled =
                proto::compile(files, &spec_path, &ProtoOptions::default()).map_err(|e| {
                    MaterializeError::Invalid {
                        path: spec_path.clone(),
                        commit: commit.clone(),
                        problems: e.to_string(),
                    }
                })?;
            let mut imports: Vec<String> = compiled
                .local_files
                .iter()
                .map(|name| compiled.repo_path(name))
                .filter(|p| *p != spec_path)
                .collect();
            imports.sort();
            imports.dedup();
            paths.extend(imports);
        }
    }

    for path in &paths {
        // Every path came through `normalize`, so it is relative and free of `..`; `dest` is a
        // fresh directory holding only what is written here, so no symlink can redirect it.
        let bytes = if *path == spec_path {
            root_bytes.clone()
        } else {
            read(path)?
        };
        let target = dest.join(path);
        let write = |r: std::io::Result<()>| {
            r.map_err(|source| MaterializeError::Write {
                path: path.clone(),
                source,
            })
        };
        if let Some(parent) = target.parent() {
            write(std::fs::create_dir_all(parent))?;
        }
        write(std::fs::write(&target, &bytes))?;
    }
    Ok(Materialized {
        spec_path,
        schema_type,
        files: paths,
    })
}
