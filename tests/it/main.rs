//! The integration test binary: every test that crosses module boundaries or runs the CLI.

mod support;

mod analytics;
mod architecture;
mod config_validate;
mod daemon;
mod dashboard;
mod deploy;
mod drift;
mod drift_loop;
mod drift_observe;
mod drift_patch;
mod end_to_end;
mod gateway;
mod gateway_grpc;
mod gateway_mock;
mod notify;
mod pipelines;
mod pipelines_manage;
mod pull_requests;
mod reconcile_plan;
mod reliability;
mod scenarios;
mod schema_diff_openapi;
mod schema_diff_proto;
mod sdkgen;
mod security;
mod sources;
