//! Pipelines: which events start them ([`matching`]), how step configs are rendered
//! ([`render`]), the durable engine that runs them ([`engine`]), and their HTTP API ([`api`]).
//!
//! Step implementations plug in through [`StepRunner`]; executions live in the store
//! (`crate::store::executions`).

pub mod api;
pub mod engine;
pub mod manage;
pub mod matching;
pub mod render;
pub mod steps;

pub use engine::{
    Engine, EngineMetrics, EngineOptions, Redact, StepRunner, TriggerError, default_execution,
    resolve_execution,
};
