//! `mockops diff OLD NEW`: compares two descriptions given as files or `REV:path` in a Git
//! repository, renders the report and sets the exit code (0 fine, 1 `--fail-on` reached,
//! 2 usage or load error).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::schema_diff::render::{Format, render};
use crate::schema_diff::{DiffInput, Level, diff_files};
use crate::source::{DirFiles, GitFiles, SourceFiles};

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// Old version: a file, or `REV:path` (a revision of the repository and a repo-relative path).
    pub old: String,
    /// New version: a file, or `REV:path`.
    pub new: String,
    /// Repository for `REV:path` arguments (and the root that `$ref`s may not leave).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit with 1 when a change at or above this level exists (ERR or WARN).
    #[arg(long, value_parser = parse_fail_on)]
    pub fail_on: Option<Level>,
}

fn parse_fail_on(s: &str) -> Result<Level, String> {
    match s.parse::<Level>()? {
        Level::Info => Err("--fail-on takes ERR or WARN".into()),
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

/// A resolved argument: the files it reads from and the repo-relative path in them.
pub struct Side {
    pub label: String,
    pub path: String,
    pub files: Box<dyn SourceFiles>,
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

/// `REV:path` when no file of that name exists and the part before `:` is not a drive letter.
pub fn resolve_arg(arg: &str, repo: &Path) -> Result<Side, ArgError> {
    let as_file = Path::new(arg);
    if !as_file.exists()
        && let Some((rev, path)) = arg.split_once(':')
        && !rev.is_empty()
        && !path.is_empty()
    {
        let files = GitFiles::open(repo, rev).map_err(|e| ArgError::Git {
            arg: arg.to_string(),
            repo: repo.to_path_buf(),
            message: e.message().to_string(),
        })?;
        return Ok(Side {
            label: arg.to_string(),
            path: path.trim_start_matches("./").to_string(),
            files: Box::new(files),
        });
    }
    let file_err = |message: String| ArgError::File {
        arg: arg.to_string(),
        message,
    };
    let full = std::fs::canonicalize(as_file).map_err(|e| file_err(e.to_string()))?;
    // The root `$ref`s may not leave: the repository when the file is inside it, else the
    // file's own directory.
    let repo_root = std::fs::canonicalize(repo)
        .ok()
        .filter(|r| full.starts_with(r));
    let root = match repo_root {
        Some(r) => r,
        None => full
            .parent()
            .map(Path::to_path_buf)
            .ok_or_else(|| file_err("has no parent directory".into()))?,
    };
    let rel = full
        .strip_prefix(&root)
        .map_err(|_| file_err("is outside its root".into()))?
        .to_str()
        .ok_or_else(|| file_err("path is not UTF-8".into()))?
        .replace(std::path::MAIN_SEPARATOR, "/");
    let files = DirFiles::new(&root).map_err(|e| file_err(e.to_string()))?;
    Ok(Side {
        label: arg.to_string(),
        path: rel,
        files: Box::new(files),
    })
}

pub fn run(args: &DiffArgs) -> ExitCode {
    let sides = resolve_arg(&args.old, &args.repo)
        .and_then(|o| Ok((o, resolve_arg(&args.new, &args.repo)?)));
    let (old, new) = match sides {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mockops diff: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match diff_files(&old.input(), &new.input()) {
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
