//! mockops: a GitOps reconciler daemon for mock environments. See `ARCHITECTURE.md`.

pub mod schema_diff;
pub mod source;
