//! The `mockops` command line: argument parsing and dispatch to one module per subcommand.

use std::process::ExitCode;

use clap::Parser;

pub mod diff;

#[derive(Debug, Parser)]
#[command(
    name = "mockops",
    version,
    about = "GitOps reconciler daemon for mock environments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Compare two versions of an API description (OpenAPI or protobuf) and classify changes.
    Diff(diff::DiffArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Diff(args) => diff::run(&args),
    }
}
