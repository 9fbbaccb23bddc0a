//! Protobuf front end of the schema diff: compiles a `.proto` file and its imports from a
//! repository revision (protox), compares two compilations with the rules and categories of
//! `buf breaking`, adds the additions `buf` does not report at INFO, and attaches to every
//! finding the RPCs it reaches.
//!
//! Which files are compared: the target file and every file it imports from the repository
//! (well-known `google/protobuf/*` files excluded), as `buf breaking` compares a module made
//! of those files. The two targets are paired even when their import names differ.

mod compile;
mod model;
mod reach;
mod rules;

use std::collections::BTreeSet;

pub use compile::{CompiledProto, compile, is_well_known, local_imports};
pub use model::Span;
pub use rules::{ADDITION_RULES, Category, RULES, rule_in_category};

use self::model::Model;
use self::reach::{Dir, Reach, direction_of};
use self::rules::{Raw, Side, Subject};
use super::{Change, Direction, Level};
use crate::git::revision::{ReadError, RevisionFiles};

/// How to compile and compare `.proto` files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtoOptions {
    /// Which `buf breaking` category decides what is breaking (default FILE, like buf).
    pub category: Category,
    /// Include roots, repo-relative, searched in order (`protoc -I`). Empty: the root implied
    /// by the target file's package.
    pub proto_paths: Vec<String>,
    /// Breaking rule ids to leave out (buf's `except`).
    pub except: Vec<String>,
}

/// Why a `.proto` file could not be compiled or compared.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: ReadError,
    },
    #[error("{path}: not valid UTF-8")]
    NotUtf8 { path: String },
    #[error("{path}: not under any proto path ({proto_paths})")]
    NotUnderProtoPath { path: String, proto_paths: String },
    #[error("{path}: imports more than {limit} files")]
    TooManyFiles { path: String, limit: usize },
    /// protox rejected a file; `file` (repo-relative), `line` and `column` say where when
    /// protox knows.
    #[error("{}: {message}", compile_location(path, file.as_deref(), *line, *column))]
    Compile {
        /// The target file whose compilation failed.
        path: String,
        file: Option<String>,
        line: Option<u32>,
        column: Option<u32>,
        message: String,
    },
}

fn compile_location(path: &str, file: Option<&str>, line: Option<u32>, col: Option<u32>) -> String {
    let file = file.unwrap_or(path);
    match (line, col) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_string(),
    }
}

/// One finding with everything `buf` reports about it, before flattening into a [`Change`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProtoFinding {
    /// buf's rule id for breaking findings; `*_ADDED` for additions.
    pub rule: String,
    pub level: Level,
    pub direction: Direction,
    /// Fully-qualified element (`pkg.Message.field`, `pkg.Service.Method`, a file path for
    /// file-level rules).
    pub element: String,
    /// Repo-relative path of the file reported in (the new side, except for deletions of whole
    /// files or packages).
    pub file: Option<String>,
    /// Import name of that file (what `buf` prints as `path`).
    pub import_name: Option<String>,
    pub span: Option<Span>,
    pub message: String,
    /// `pkg.Service/Method` reached, sorted.
    pub operations: Vec<String>,
}

impl ProtoFinding {
    /// `element (file:line:col)`, the [`Change::location`] of this finding.
    pub fn location(&self) -> String {
        match (&self.file, &self.span) {
            (Some(f), Some(s)) => format!("{} ({}:{}:{})", self.element, f, s.line, s.column),
            (Some(f), None) => format!("{} ({})", self.element, f),
            _ => self.element.clone(),
        }
    }

    pub fn into_change(self) -> Change {
        Change {
            location: self.location(),
            id: self.rule,
            level: self.level,
            direction: self.direction,
            message: self.message,
            operations: self.operations,
        }
    }
}

/// Compiles `path` (repo-relative) with its imports and reports the first error, located.
/// The validator's check for `.proto` files.
pub fn check_proto(
    path: &str,
    files: &dyn RevisionFiles,
    opts: &ProtoOptions,
) -> Result<(), ProtoError> {
    compile(files, path, opts).map(|_| ())
}

/// Compares `old_path` in `old` with `new_path` in `new`: breaking findings of
/// `opts.category` at ERR, additions at INFO, each with the RPCs it reaches. Sorted by file,
/// line, rule.
pub fn diff_proto(
    old: &dyn RevisionFiles,
    old_path: &str,
    new: &dyn RevisionFiles,
    new_path: &str,
    opts: &ProtoOptions,
) -> Result<Vec<Change>, ProtoError> {
    Ok(diff_proto_findings(old, old_path, new, new_path, opts)?
        .into_iter()
        .map(ProtoFinding::into_change)
        .collect())
}

/// [`diff_proto`] keeping `buf`'s detail (file, span) on each finding.
pub fn diff_proto_findings(
    old: &dyn RevisionFiles,
    old_path: &str,
    new: &dyn RevisionFiles,
    new_path: &str,
    opts: &ProtoOptions,
) -> Result<Vec<ProtoFinding>, ProtoError> {
    diff_proto_sides(old, old_path, &opts.proto_paths, new, new_path, opts)
}

/// [`diff_proto_findings`] where the old side has include roots of its own (`old_proto_paths`,
/// repo-relative in `old`; empty: implied), as two files read from different roots do.
/// `opts.proto_paths` are the new side's.
pub fn diff_proto_sides(
    old: &dyn RevisionFiles,
    old_path: &str,
    old_proto_paths: &[String],
    new: &dyn RevisionFiles,
    new_path: &str,
    opts: &ProtoOptions,
) -> Result<Vec<ProtoFinding>, ProtoError> {
    let old_opts = ProtoOptions {
        proto_paths: old_proto_paths.to_vec(),
        ..opts.clone()
    };
    let mut old_c = compile(old, old_path, &old_opts)?;
    let new_c = compile(new, new_path, opts)?;
    // A file the new target no longer imports but that still exists was not deleted: it just
    // left the comparison.
    let new_root = new_c.roots.get(&new_c.target).cloned().unwrap_or_default();
    let dropped: Vec<String> = old_c
        .local_files
        .iter()
        .filter(|f| **f != old_c.target && !new_c.local_files.contains(*f))
        .filter(|f| {
            let path = if new_root.is_empty() {
                (*f).clone()
            } else {
                format!("{new_root}/{f}")
            };
            new.read(&path).is_ok()
        })
        .cloned()
        .collect();
    for f in dropped {
        old_c.local_files.remove(&f);
    }
    Ok(diff_compiled(&old_c, &new_c, opts))
}

/// Compares two compilations. Pure: no IO.
pub fn diff_compiled(
    old: &CompiledProto,
    new: &CompiledProto,
    opts: &ProtoOptions,
) -> Vec<ProtoFinding> {
    let rename = (old.target != new.target).then_some((old.target.as_str(), new.target.as_str()));
    let old_model = Model::build(old, rename);
    let new_model = Model::build(new, None);
    let old_reach = Reach::build(old, rename);
    let new_reach = Reach::build(new, None);

    let mut raws: Vec<(Raw, Level)> = rules::breaking(&old_model, &new_model)
        .into_iter()
        .filter(|r| rule_in_category(r.rule, opts.category))
        .filter(|r| !opts.except.iter().any(|e| e == r.rule))
        .map(|r| (r, Level::Err))
        .collect();
    raws.extend(
        rules::additions(&old_model, &new_model)
            .into_iter()
            .map(|r| (r, Level::Info)),
    );

    let mut findings: Vec<ProtoFinding> = raws
        .into_iter()
        .map(|(raw, level)| {
            let (ops, dirs) = operations(&raw.subject, &old_reach, &new_reach);
            let direction = match &raw.subject {
                Subject::Op(_, Some(Dir::Request)) => Direction::Request,
                Subject::Op(_, Some(Dir::Response)) => Direction::Response,
                Subject::Op(_, None) => Direction::None,
                _ => direction_of(&dirs),
            };
            let (file, import_name) = match &raw.file {
                Some((name, side)) => {
                    let model = if *side == Side::Old {
                        &old_model
                    } else {
                        &new_model
                    };
                    let repo = model
                        .files
                        .get(name)
                        .map(|f| f.repo_path.clone())
                        .unwrap_or_else(|| name.clone());
                    (Some(repo), Some(name.clone()))
                }
                None => (None, None),
            };
            ProtoFinding {
                rule: raw.rule.to_string(),
                level,
                direction,
                element: raw.element,
                file,
                import_name,
                span: raw.span,
                message: raw.message,
                operations: ops.into_iter().collect(),
            }
        })
        .collect();
    findings.sort_by(|a, b| {
        (&a.file, &a.span, &a.rule, &a.message, &a.element)
            .cmp(&(&b.file, &b.span, &b.rule, &b.message, &b.element))
    });
    findings.dedup();
    findings
}

/// The operations a subject reaches and from which sides.
fn operations(subject: &Subject, old: &Reach, new: &Reach) -> (BTreeSet<String>, BTreeSet<Dir>) {
    let mut ops = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    let sides = |side: Side| -> Vec<&Reach> {
        match side {
            Side::Old => vec![old],
            Side::New => vec![new],
            Side::Both => vec![old, new],
        }
    };
    match subject {
        Subject::Type(name, side) => {
            for reach in sides(*side) {
                for (op, dir) in reach.of_type(name) {
                    ops.insert(op.clone());
                    dirs.insert(*dir);
                }
            }
        }
        Subject::Op(op, _) => {
            ops.insert(op.clone());
        }
        Subject::Service(name, side) => {
            for reach in sides(*side) {
                ops.extend(
                    reach
                        .ops_by_service
                        .get(name)
                        .into_iter()
                        .flatten()
                        .cloned(),
                );
            }
        }
        Subject::File(name) => {
            for reach in [old, new] {
                ops.extend(reach.ops_by_file.get(name).into_iter().flatten().cloned());
            }
        }
        Subject::Nothing => {}
    }
    (ops, dirs)
}
