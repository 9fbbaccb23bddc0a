//! mockops: a GitOps reconciler daemon for mock environments. See `ARCHITECTURE.md`.

pub mod analytics;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod drift;
pub mod gateway;
pub mod git;
pub mod github;
pub mod http;
pub mod metrics;
pub mod model;
pub mod outbound;
pub mod pipeline;
pub mod promotion;
pub mod reconcile;
pub mod scenario;
pub mod schema_diff;
pub mod secret;
pub mod store;
pub mod ui;
pub mod util;
