//! Command-line interface: one subcommand per module; each returns its exit code.

pub mod client;
pub mod daemon;
pub mod diff;
pub mod drift;
pub mod drift_patch;
pub mod pipelines;
pub mod scenarios;
pub mod schemas;
pub mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Success; nothing at or above the failure threshold.
    pub const OK: u8 = 0;
    /// The input was read and judged: errors found (validate) or changes at the threshold (diff).
    pub const FAILED: u8 = 1;
    /// The command could not run: bad usage, unreadable repository, I/O.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "mockops",
    version,
    about = "GitOps reconciler for mock environments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config repository: every problem, with file, line, column and a fix.
    Validate(validate::ValidateArgs),
    /// Write the JSON Schemas of every kind (for editors), or check they are current.
    Schemas(schemas::SchemasArgs),
    /// Compare two versions of an API description (OpenAPI or protobuf) and classify changes.
    Diff(diff::DiffArgs),
    /// Follow a config repository: apply every commit, store its events, serve the API.
    Daemon(Box<daemon::DaemonArgs>),
    /// Show where a running daemon stands (last applied and attempted commit, errors).
    Status(client::StatusArgs),
    /// Make a running daemon fetch and apply now, wait for it, and show where it stands.
    Sync(client::SyncArgs),
    /// List or post events of a running daemon.
    Events(client::EventsArgs),
    /// List, create, enable or disable pipelines, run one by hand, and read their executions,
    /// through a running daemon's API.
    ///
    /// `create`, `enable` and `disable` ask the daemon, which validates the change on the
    /// followed branch's head and writes it to the config repository with its own Git
    /// credentials and push policy: a commit, or a branch and pull request (`management:` in
    /// mockops.yaml). The change takes effect once the daemon reconciles that commit.
    Pipelines(pipelines::PipelinesArgs),
    /// Contract drift of a running daemon: status, incidents, a probe round now.
    Drift(drift::DriftArgs),
    /// Run scenarios through a running daemon's gateway and read their results.
    Scenarios(scenarios::ScenariosArgs),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schemas(args) => schemas::run(&args),
        Command::Diff(args) => return diff::run(&args),
        Command::Daemon(args) => daemon::run(&args),
        Command::Status(args) => client::status(&args),
        Command::Sync(args) => client::sync(&args),
        Command::Events(args) => client::events(&args),
        Command::Pipelines(args) => pipelines::run(&args),
        Command::Drift(args) => drift::run(&args),
        Command::Scenarios(args) => scenarios::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::USAGE)
        }
    }
}
