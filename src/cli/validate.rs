//! `mockops validate`: loads a working directory or a revision with the daemon's own loader
//! and prints every diagnostic as text, JSON or GitHub Actions annotations.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use super::exit;
use crate::config::diag::{self, Severity};
use crate::config::load::{Loaded, Loader};
use crate::git::revision::{DirFiles, GitFiles, RevisionFiles};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    Github,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The config repository (a working directory, or a Git repository with --rev).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Validate this revision (commit, branch, tag) from the Git object database instead of
    /// the working directory; nothing is checked out.
    #[arg(long)]
    pub rev: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Fail on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Loads the repository as the daemon would.
pub fn load(
    path: &std::path::Path,
    rev: Option<&str>,
) -> anyhow::Result<(Loaded, Box<dyn RevisionFiles>)> {
    let loader = Loader::new();
    match rev {
        Some(rev) => {
            let files = GitFiles::open(path, rev)
                .with_context(|| format!("cannot open revision `{rev}` of {}", path.display()))?;
            let loaded = loader.load(&files)?;
            Ok((loaded, Box::new(files)))
        }
        None => {
            let files =
                DirFiles::new(path).with_context(|| format!("cannot open {}", path.display()))?;
            let loaded = loader.load(&files)?;
            Ok((loaded, Box::new(files)))
        }
    }
}

pub fn run(args: &ValidateArgs) -> anyhow::Result<u8> {
    let (loaded, files) = load(&args.path, args.rev.as_deref())?;
    let diags = &loaded.diagnostics;
    match args.format {
        Format::Text => {
            let source = |f: &str| files.read(f).ok().and_then(|b| String::from_utf8(b).ok());
            if diags.is_empty() {
                let st = &loaded.state;
                println!(
                    "ok: {} services, {} federations, {} pipelines, {} scenarios, {} personas, {} specs",
                    st.services.len(),
                    st.federations.len(),
                    st.pipelines.len(),
                    st.scenarios.len(),
                    st.personas.len(),
                    st.specs.len()
                );
            } else {
                print!("{}", diag::render_text(diags, &source));
            }
        }
        Format::Json => {
            let (errors, warnings) = diag::counts(diags);
            let out = serde_json::json!({
                "valid": errors == 0,
                "errors": errors,
                "warnings": warnings,
                "diagnostics": diags,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Github => print!("{}", diag::render_github(diags, "")),
    }
    let failing = diags
        .iter()
        .any(|d| d.severity == Severity::Error || args.deny_warnings);
    Ok(if failing { exit::FAILED } else { exit::OK })
}
