//! The integration test binary: every test that crosses module boundaries or runs the CLI.

mod support;

mod config_validate;
mod notify;
mod schema_diff_openapi;
mod schema_diff_proto;
