//! mockops: a GitOps reconciler daemon for mock environments. See `ARCHITECTURE.md`.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod diag;
pub mod gateway;
pub mod github;
pub mod http;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod outbound;
pub mod pipeline;
pub mod pr;
pub mod promotion;
pub mod reconcile;
pub mod schema_diff;
pub mod sdkgen;
pub mod secret;
pub mod source;
pub mod sources;
pub mod step;
pub mod store;
pub mod template;
pub mod time;
pub mod yaml;
