//! mockops: a GitOps reconciler daemon for mock environments. See `ARCHITECTURE.md`.

pub mod cli;
pub mod config;
pub mod diag;
pub mod model;
pub mod notify;
pub mod schema_diff;
pub mod secret;
pub mod source;
pub mod step;
pub mod template;
pub mod yaml;
