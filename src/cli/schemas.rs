//! `mockops schemas`: writes `schemas/<kind>.schema.json` from the model types, or with
//! `--check` fails when the committed files differ from what the code generates.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use super::exit;
use crate::model::Kind;

#[derive(Debug, Args)]
pub struct SchemasArgs {
    /// Directory to write into.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Do not write; exit 1 if any file is missing or stale.
    #[arg(long)]
    pub check: bool,
}

/// The file name and content of every generated schema.
pub fn generate() -> Vec<(String, String)> {
    Kind::ALL
        .iter()
        .map(|k| {
            let mut text =
                serde_json::to_string_pretty(&k.schema()).expect("a generated schema serialises");
            text.push('\n');
            (format!("{}.schema.json", k.as_str()), text)
        })
        .collect()
}

pub fn run(args: &SchemasArgs) -> anyhow::Result<u8> {
    let mut stale = Vec::new();
    for (name, text) in generate() {
        let path = args.out.join(&name);
        if args.check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(path.display().to_string());
            }
        } else {
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("cannot create {}", args.out.display()))?;
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        Ok(exit::OK)
    } else {
        eprintln!(
            "stale schemas (run `mockops schemas`): {}",
            stale.join(", ")
        );
        Ok(exit::FAILED)
    }
}
