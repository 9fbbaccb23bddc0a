//! Scenarios that run: a scenario's steps resolved against the specs of its services
//! (`catalog`, `resolve`, used by validation too) and run through the daemon's own gateway
//! (`run`), each request tagged `X-Mockops-Scenario` (and `X-Mockops-Persona`), with the result
//! stored (`store::scenarios`) and announced as `scenario.completed` / `scenario.failed`
//! (`api`).

pub mod api;
pub mod catalog;
pub mod grpc;
pub mod resolve;
pub mod run;

/// Most steps a scenario may have.
pub const MAX_STEPS: usize = 100;
