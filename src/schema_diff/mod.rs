//! Schema diff engine: compares two versions of an API description (OpenAPI 3.0/3.1 or
//! protobuf) and classifies every change as breaking (ERR), possibly breaking (WARN) or not
//! (INFO). The types here are the contract shared by both front ends, the `mockops diff` CLI
//! and the daemon's `schema.changed` payload.

pub mod proto;

use serde::{Deserialize, Serialize};

pub mod openapi;
pub mod render;

/// How severe a change is for existing clients. Ordered: `Info < Warn < Err`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Not breaking.
    Info,
    /// Possibly breaking; cannot be confirmed from the description alone.
    Warn,
    /// Breaking for existing clients.
    Err,
}

/// Which side of the exchange a change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Request,
    Response,
    None,
}

/// The kind of API description a spec file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    Openapi,
    Protobuf,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Openapi => "openapi",
            SchemaType::Protobuf => "protobuf",
        }
    }
}

/// One classified change. A change to a shared component is one `Change` whose `operations`
/// lists every operation it reaches, never one `Change` per reachable location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Stable rule id (oasdiff's id where the meaning is the same, buf's for protobuf).
    pub id: String,
    pub level: Level,
    pub direction: Direction,
    /// Where in the description the change is (a JSON pointer or a protobuf element path).
    pub location: String,
    pub message: String,
    /// Operations the change reaches (`GET /pets/{id}`, `pkg.Service/Method`), sorted.
    pub operations: Vec<String>,
}

pub use crate::git::revision::{ReadError, RevisionFiles};

/// Counts of changes per level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub err: usize,
    pub warn: usize,
    pub info: usize,
}

/// The result of comparing two versions of one API description: what the `schema.changed`
/// event carries and what `mockops diff` renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffReport {
    pub schema_type: SchemaType,
    /// Label of the old side (`specs/pets.yaml`, `HEAD~1:specs/pets.yaml`).
    pub old: String,
    /// Label of the new side.
    pub new: String,
    /// Repo-relative path of the new side (where annotations point).
    pub path: String,
    /// At least one ERR change.
    pub breaking: bool,
    /// The two versions differ only in documentation (descriptions, summaries, examples,
    /// titles, `info`, `x-` extensions): nothing for a client to adapt to.
    pub description_only: bool,
    pub summary: Summary,
    /// Sorted: most severe first, then by location.
    pub changes: Vec<Change>,
}

impl DiffReport {
    pub fn new(
        schema_type: SchemaType,
        old: String,
        new: String,
        path: String,
        changes: Vec<Change>,
        description_only: bool,
    ) -> Self {
        let mut summary = Summary::default();
        for c in &changes {
            match c.level {
                Level::Err => summary.err += 1,
                Level::Warn => summary.warn += 1,
                Level::Info => summary.info += 1,
            }
        }
        DiffReport {
            schema_type,
            old,
            new,
            path,
            breaking: summary.err > 0,
            description_only,
            summary,
            changes,
        }
    }

    /// The most severe level present, if any change.
    pub fn max_level(&self) -> Option<Level> {
        self.changes.iter().map(|c| c.level).max()
    }
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Err => "ERR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
        }
    }
}

/// A level name that is not ERR, WARN or INFO.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level `{0}`: expected ERR, WARN or INFO")]
pub struct UnknownLevel(pub String);

impl std::str::FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, UnknownLevel> {
        match s.to_ascii_uppercase().as_str() {
            "ERR" | "ERROR" => Ok(Level::Err),
            "WARN" | "WARNING" => Ok(Level::Warn),
            "INFO" => Ok(Level::Info),
            other => Err(UnknownLevel(other.to_string())),
        }
    }
}

/// One side of a comparison: a repo-relative `path` read through `files`, shown as `label`.
pub struct DiffInput<'a> {
    pub label: String,
    pub path: String,
    pub files: &'a dyn RevisionFiles,
}

/// Why two descriptions could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("{label}: cannot read: {source}")]
    Read { label: String, source: ReadError },
    #[error("{0}")]
    Openapi(#[from] openapi::LoadError),
    #[error("{label}: cannot tell the kind of description: expected .yaml, .yml, .json or .proto")]
    UnknownType { label: String },
    #[error("{old} and {new} are not the same kind of description")]
    Mismatch { old: String, new: String },
    #[error("{0}")]
    Proto(#[from] proto::ProtoError),
}

/// The kind of description a path holds, by extension.
pub fn schema_type_of(path: &str) -> Option<SchemaType> {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    match ext.as_str() {
        "yaml" | "yml" | "json" => Some(SchemaType::Openapi),
        "proto" => Some(SchemaType::Protobuf),
        _ => None,
    }
}

/// Compares two descriptions, dispatching on their kind (by extension).
pub fn diff_files(old: &DiffInput<'_>, new: &DiffInput<'_>) -> Result<DiffReport, DiffError> {
    diff_files_with(old, new, &[], &[])
}

/// [`diff_files`] with the include roots of `.proto` files on each side (repo-relative;
/// empty: the root implied by the file, see [`proto::compile`]).
pub fn diff_files_with(
    old: &DiffInput<'_>,
    new: &DiffInput<'_>,
    old_proto_paths: &[String],
    new_proto_paths: &[String],
) -> Result<DiffReport, DiffError> {
    let kind = |i: &DiffInput<'_>| {
        schema_type_of(&i.path).ok_or_else(|| DiffError::UnknownType {
            label: i.label.clone(),
        })
    };
    let (ok, nk) = (kind(old)?, kind(new)?);
    if ok != nk {
        return Err(DiffError::Mismatch {
            old: old.label.clone(),
            new: new.label.clone(),
        });
    }
    match ok {
        SchemaType::Openapi => {
            let read = |i: &DiffInput<'_>| {
                i.files.read(&i.path).map_err(|source| DiffError::Read {
                    label: i.label.clone(),
                    source,
                })
            };
            let (ob, nb) = (read(old)?, read(new)?);
            let (os, ns) = std::thread::scope(|s| {
                let h = s.spawn(|| openapi::load(&old.path, &ob, old.files));
                let n = openapi::load(&new.path, &nb, new.files);
                (h.join().expect("loading does not panic"), n)
            });
            let (os, ns) = (os?, ns?);
            let changes = openapi::diff_specs(&os, &ns);
            let description_only = changes.is_empty() && openapi::documentation_only(&os, &ns);
            // Freeing two large trees takes tens of milliseconds: do it off the caller's path
            // (a CLI process exits without waiting for it).
            std::thread::spawn(move || drop((os, ns)));
            Ok(DiffReport::new(
                SchemaType::Openapi,
                old.label.clone(),
                new.label.clone(),
                new.path.clone(),
                changes,
                description_only,
            ))
        }
        SchemaType::Protobuf => {
            let opts = proto::ProtoOptions {
                proto_paths: new_proto_paths.to_vec(),
                ..proto::ProtoOptions::default()
            };
            let changes: Vec<Change> = proto::diff_proto_sides(
                old.files,
                &old.path,
                old_proto_paths,
                new.files,
                &new.path,
                &opts,
            )?
            .into_iter()
            .map(proto::ProtoFinding::into_change)
            .collect();
            Ok(DiffReport::new(
                SchemaType::Protobuf,
                old.label.clone(),
                new.label.clone(),
                new.path.clone(),
                changes,
                false,
            ))
        }
    }
}
