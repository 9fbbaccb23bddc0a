//! `mockops diff OLD NEW`: compares two descriptions given as files or `REV:path` in a Git
//! repository, renders the report and sets the exit code (0 fine, 1 `--fail-on` reached,
//! 2 usage or load error).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::git::revision::{DirFiles, GitFiles, RevisionFiles};
use crate::schema_diff::render::{Format, render};
use crate::schema_diff::{DiffInput, Level, diff_files_with};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Old version: a file, or `REV:path` (a revision of the repository and a repo-relative path).
    pub old: String,
    /// New version: a file, or `REV:path`.
    pub new: String,
    /// Repository for `REV:path` arguments (default: the current directory). A file inside it
    /// is read with it as its root (see below).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// Include directory for `.proto` imports, as protoc's `-I` (repeatable, searched in
    /// order). Relative to the current directory for files, to the repository for `REV:path`.
    /// Default: the directory the file's package implies, or else the nearest directory above
    /// the file under which its imports are found.
    #[arg(long = "proto-path", short = 'I', value_name = "DIR")]
    pub proto_paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit with 1 when a change at or above this level exists (ERR or WARN).
    #[arg(long, value_parser = parse_fail_on)]
    pub fail_on: Option<Level>,
}

/// A `--fail-on` value that is not ERR or WARN.
#[derive(Debug, thiserror::Error)]
pub enum FailOnError {
    #[error(transparent)]
    Unknown(#[from] crate::schema_diff::UnknownLevel),
    #[error("--fail-on takes ERR or WARN")]
    Info,
}

fn parse_fail_on(s: &str) -> Result<Level, FailOnError> {
    match s.parse::<Level>()? {
        Level::Info => Err(FailOnError::Info),
        l => Ok(l),
    }
}

/// Why an argument could not be turned into files to read.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    #[error("{arg}: cannot open repository {repo}: {message}")]
    Git {
        arg: String,
        repo: PathBuf,
        message: String,
    },
    #[error("{arg}: {message}")]
    File { arg: String, message: String },
}

/// A resolved argument: the files it reads from, the repo-relative path in them, and the
/// include roots of a `.proto` file (repo-relative; empty: implied by the file).
pub struct Side {
    pub label: String,
    pub path: String,
    pub files: Box<dyn RevisionFiles>,
    pub proto_paths: Vec<String>,
}

impl Side {
    pub fn input(&self) -> DiffInput<'_> {
        DiffInput {
            label: self.label.clone(),
            path: self.path.clone(),
            files: self.files.as_ref(),
        }
    }
}

/// Resolves one argument: `REV:path` in `repo` (default: the current directory) when no file
/// of that name exists, otherwise a file.
///
/// A file is read from a root that `$ref`s and imports may not leave, and that never depends on
/// the current directory: `repo` when given and the file is inside it; otherwise the Git work
/// tree the file is in; otherwise, with `proto_paths`, the nearest directory holding the file
/// and all of them; otherwise, for a `.proto` file, the nearest directory above it under which
/// all its imports are found; otherwise the file's own directory.
pub fn resolve_arg(
    arg: &str,
    repo: Option<&Path>,
    proto_paths: &[PathBuf],
) -> Result<Side, ArgError> {
    let as_file = Path::new(arg);
    if !as_file.exists()
        && let Some((rev, path)) = arg.split_once(':')
        && !rev.is_empty()
        && !path.is_empty()
    {
        let repo = repo.unwrap_or(Path::new("."));
        let files = GitFiles::open(repo, rev).map_err(|e| ArgError::Git {
            arg: arg.to_string(),
            repo: repo.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let workdir = crate::git::revision::work_tree_of(repo);
        let proto_paths = proto_paths
            .iter()
            .map(|p| {
                if p.is_relative() {
                    return Ok(slash_path(p).unwrap_or_default());
                }
                let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                workdir
                    .as_deref()
                    .and_then(|w| relative_to(&abs, w))
                    .ok_or_else(|| ArgError::File {
                        arg: arg.to_string(),
                        message: format!(
                            "--proto-path {} is not inside the repository",
                            p.display()
                        ),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Side {
            label: arg.to_string(),
            path: path.trim_start_matches("./").to_string(),
            files: Box::new(files),
            proto_paths,
        });
    }
    let file_err = |message: String| ArgError::File {
        arg: arg.to_string(),
        message,
    };
    let full = std::fs::canonicalize(as_file).map_err(|e| file_err(e.to_string()))?;
    let dir = full
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| file_err("has no parent directory".into()))?;
    let includes = proto_paths
        .iter()
        .map(|p| {
            std::fs::canonicalize(p)
                .map_err(|e| file_err(format!("--proto-path {}: {e}", p.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let root = repo
        .and_then(|r| std::fs::canonicalize(r).ok())
        .filter(|r| full.starts_with(r))
        .or_else(|| work_tree_of(&dir))
        .or_else(|| (!includes.is_empty()).then(|| common_ancestor(&dir, &includes)))
        .or_else(|| import_root(&full, &dir))
        .unwrap_or_else(|| dir.clone());
    let rel = relative_to(&full, &root).ok_or_else(|| file_err("is outside its root".into()))?;
    let proto_paths = includes
        .iter()
        .filter_map(|p| relative_to(p, &root))
        .map(|p| if p.is_empty() { ".".to_string() } else { p })
        .collect::<Vec<_>>();
    if !includes.is_empty() && proto_paths.is_empty() {
        return Err(file_err(format!(
            "no --proto-path is inside {}, the directory it is read from (give --repo to widen it)",
            root.display()
        )));
    }
    let files = DirFiles::new(&root).map_err(|e| file_err(e.to_string()))?;
    Ok(Side {
        label: arg.to_string(),
        path: rel,
        files: Box::new(files),
        proto_paths,
    })
}

/// The work tree of the Git repository `dir` is in, if any: the nearest directory holding a
/// `.git` (a directory, or a file for linked work trees and submodules). Looked up without
/// libgit2, whose first use loads the system's CA certificates (tens of milliseconds).
fn work_tree_of(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .map(Path::to_path_buf)
}

/// The deepest directory holding `dir` and every one of `others`.
fn common_ancestor(dir: &Path, others: &[PathBuf]) -> PathBuf {
    let mut root = dir.to_path_buf();
    while !others.iter().all(|o| o.starts_with(&root)) {
        if !root.pop() {
            break;
        }
    }
    root
}

/// For a `.proto` file that imports other files: the nearest directory above it (its own
/// first) under which every import is found.
fn import_root(file: &Path, dir: &Path) -> Option<PathBuf> {
    if file.extension().and_then(|e| e.to_str()) != Some("proto") {
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let imports = crate::schema_diff::proto::local_imports(&text)?;
    if imports.is_empty() {
        return None;
    }
    dir.ancestors()
        .find(|d| imports.iter().all(|i| d.join(i).is_file()))
        .map(Path::to_path_buf)
}

/// `path` relative to `root` with `/` separators (`""` for the root itself), when inside it.
fn relative_to(path: &Path, root: &Path) -> Option<String> {
    slash_path(path.strip_prefix(root).ok()?)
}

fn slash_path(p: &Path) -> Option<String> {
    Some(p.to_str()?.replace(std::path::MAIN_SEPARATOR, "/"))
}

pub fn run(args: &DiffArgs) -> ExitCode {
    let resolve = |arg: &str| resolve_arg(arg, args.repo.as_deref(), &args.proto_paths);
    let sides = resolve(&args.old).and_then(|o| Ok((o, resolve(&args.new)?)));
    let (old, new) = match sides {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mockops diff: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match diff_files_with(
        &old.input(),
        &new.input(),
        &old.proto_paths,
        &new.proto_paths,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mockops diff: {e}");
            return ExitCode::from(2);
        }
    };
    let text = render(&report, args.format);
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        .is_err()
    {
        return ExitCode::from(2);
    }
    match (args.fail_on, report.max_level()) {
        (Some(threshold), Some(max)) if max >= threshold => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    }
}
