//! The integration test binary: every test that crosses module boundaries or runs the CLI.

mod support;

mod config_validate;
mod daemon;
mod pipelines;
mod pull_requests;
mod schema_diff_openapi;
mod schema_diff_proto;
mod sdkgen;
mod sources;
