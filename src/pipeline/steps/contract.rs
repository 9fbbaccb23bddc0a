//! What every pipeline step implementation shares: the context of one attempt and its error.
//!
//! A step does one attempt. The pipeline engine owns timeouts, retries with backoff,
//! `continue_on_error` and persistence of status, logs and outputs.

use serde_json::{Map, Value as Json};

/// Outputs of a step, readable by later steps as `{{steps.<name>.outputs.<key>}}`.
pub type Outputs = Map<String, Json>;

/// One attempt of one step of one execution.
#[derive(Debug, Clone)]
pub struct StepContext {
    pub execution_id: String,
    pub pipeline: String,
    pub step: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// Stable across retries and restarts of the same execution and step: pass it to targets
    /// that deduplicate (webhook delivery ids, e-mail Message-IDs, pull-request metadata).
    pub idempotency_key: String,
    /// The triggering event: envelope fields with the payload flattened beside them.
    pub event: Json,
    /// Earlier steps of the execution: `{"<step name>": {"outputs": {...}}}`.
    pub steps: Json,
}

/// Why an attempt failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    pub message: String,
    /// True for transient faults (connection refused, timeout, 5xx, 429); false for permanent
    /// ones (other 4xx, bad config, a missing secret).
    pub retryable: bool,
}

impl StepError {
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }

    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }
}
