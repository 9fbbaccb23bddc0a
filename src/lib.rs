//! mockops: a GitOps reconciler daemon for mock environments. See `ARCHITECTURE.md`.

pub mod cli;
pub mod schema_diff;
pub mod source;
