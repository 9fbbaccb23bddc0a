//! The durable engine: dispatches stored events to the pipelines they match and runs the
//! executions, step by step, with every state change written to the store first.
//!
//! Invariants:
//! - An event is taken out of the outbox in the same transaction that creates its executions
//!   and their `pipeline.triggered` events; an (event, pipeline) pair starts at most once.
//! - A step is recorded `running` (with its attempt number) before it runs and its outcome is
//!   recorded after; an execution found pending or running at start-up is resumed at the first
//!   step not finished, so finished steps never run again. The idempotency key of a step
//!   (`<execution id>/<step name>`) is the same for every attempt and every restart.
//! - An execution runs against the pipeline and variables as they were when it was created.
//! - A chain of pipelines started by pipeline events is at most `max_chain_depth` executions
//!   long, and a pipeline's own events never start it again: such runs are recorded as
//!   skipped, with the reason.
//! - Step outputs, logs and errors pass through the redaction hook before they are stored.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use serde_json::{Map, Value as Json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::matching;
use super::render::{self, TemplateContext};
use crate::model::events::EventType;
use crate::model::{PipelineSpec, Settings, StepSpec, StepType};
use crate::pipeline::steps::{Outputs, StepContext, StepError};
use crate::store::executions::{DispatchTx, Execution, ExecutionStatus, StepRecord, StepStatus};
use crate::store::{Event, NewEvent, Origin, Store, StoreError};
use crate::util::backoff::{self, Backoff};

/// Runs one attempt of one step. The engine owns timeouts, retries, persistence; the
/// implementation receives its config already rendered and checked against its step type.
pub trait StepRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        step_type: StepType,
        config: Json,
        ctx: &'a StepContext,
    ) -> Pin<Box<dyn Future<Output = Result<Outputs, StepError>> + Send + 'a>>;
}

/// Removes secrets from text before it is stored (outputs, logs, errors).
pub type Redact = Arc<dyn Fn(&str) -> String + Send + Sync>;

type Labels = Vec<(&'static str, String)>;

/// The daemon's pipeline metrics (clones share the registered series).
#[derive(Clone)]
pub struct EngineMetrics {
    /// Executions finished, by `pipeline` and `status` (succeeded, failed, skipped).
    pub executions: Family<Labels, Counter>,
    /// Step attempts, by `step_type` and `status` (succeeded, failed, retried).
    pub steps: Family<Labels, Counter>,
    pub step_duration: Histogram,
    /// Events stored, by `type` (the engine's `pipeline.*` events).
    pub events: Family<Labels, Counter>,
}

impl EngineMetrics {
    pub fn of(m: &crate::metrics::Metrics) -> Self {
        Self {
            executions: m.executions.clone(),
            steps: m.steps.clone(),
            step_duration: m.step_duration.clone(),
            events: m.events.clone(),
        }
    }
}

/// How the engine runs.
#[derive(Clone)]
pub struct EngineOptions {
    /// Executions running at once.
    pub concurrency: usize,
    pub redact: Redact,
    pub metrics: Option<EngineMetrics>,
    /// How often the outbox is read without a wake-up.
    pub poll_interval: Duration,
    /// First retry delay; doubles per attempt up to `backoff_max`, with full jitter.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Longest chain of executions started by pipeline events.
    pub max_chain_depth: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            redact: Arc::new(|s: &str| s.to_string()),
            metrics: None,
            poll_interval: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_chain_depth: 3,
        }
    }
}

/// Timeout (seconds) and retries of a step type when neither the step nor `mockops.yaml`
/// says.
pub fn default_execution(step_type: StepType) -> (u64, u32) {
    match step_type {
        StepType::Notify => (30, 3),
        StepType::CreatePr => (120, 3),
        StepType::RegenerateSdk => (600, 1),
        StepType::AutoPromote => (120, 3),
    }
}

/// Timeout and retries of a step: the step's own, else `step_defaults` in `mockops.yaml`,
/// else the step type's default.
pub fn resolve_execution(step: &StepSpec, settings: &Settings) -> (u64, u32) {
    let (timeout, retries) = default_execution(step.step_type);
    let d = settings.step_defaults.get(&step.step_type);
    (
        step.timeout
            .or(d.and_then(|d| d.timeout))
            .unwrap_or(timeout)
            .max(1),
        step.retries
            .or(d.and_then(|d| d.retries))
            .unwrap_or(retries),
    )
}

/// Why a manual run was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("no pipeline named `{0}` in the applied state (see `mockops pipelines list`)")]
    NoPipeline(String),
    #[error(
        "pipeline `{0}` is disabled (`definition.enabled: false`); a disabled pipeline never \
         runs: enable it in its file and commit"
    )]
    Disabled(String),
    #[error("invalid event: {0}")]
    BadEvent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Events read from the outbox per transaction.
const DISPATCH_BATCH: usize = 64;

/// The engine. Clones share one engine: keep one for the API, run another.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    runner: Arc<dyn StepRunner>,
    opts: EngineOptions,
    permits: Semaphore,
    /// Executions with a task (running or waiting for a permit).
    running: Mutex<HashSet<String>>,
    /// Wakes the loop when the engine itself stored events or executions.
    kick: Notify,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.inner.store)
            .field("concurrency", &self.inner.opts.concurrency)
            .finish()
    }
}

impl Engine {
    pub fn new(store: Store, runner: Arc<dyn StepRunner>, opts: EngineOptions) -> Self {
        let permits = Semaphore::new(opts.concurrency.max(1));
        Self {
            inner: Arc::new(Inner {
                store,
                runner,
                opts,
                permits,
                running: Mutex::new(HashSet::new()),
                kick: Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Dispatches the outbox and runs executions until `cancel`; then waits for the step
    /// attempts under way (executions stopped between steps resume at the next start).
    /// `wake` says "events were stored": notify it (`notify_one`) after each applied commit
    /// and each posted event.
    pub async fn run(self, cancel: CancellationToken, wake: Arc<Notify>) {
        let inner = self.inner.clone();
        if let Err(e) = blocking(&inner.store, |s| s.ensure_execution_tables()).await {
            tracing::error!(error = %e, "the pipeline engine cannot prepare its tables; pipelines do not run");
            return;
        }
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut retry = Backoff::new(
            Duration::from_millis(500),
            inner.opts.poll_interval.max(Duration::from_secs(30)),
        );
        loop {
            let wait = match inner.dispatch_all().await {
                Ok(()) => {
                    retry.reset();
                    inner.opts.poll_interval
                }
                Err(e) => {
                    tracing::error!(error = %e, "dispatching events to pipelines failed; retrying");
                    retry.next_delay()
                }
            };
            match blocking(&inner.store, |s| s.active_executions()).await {
                Ok(ids) => {
                    for id in ids {
                        inner.spawn(&mut tasks, id, &cancel);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot read unfinished executions"),
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done
                    && e.is_panic()
                {
                    tracing::error!(error = %e, "an execution task panicked; it resumes on the next pass");
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = wake.notified() => {}
                _ = inner.kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Runs `pipeline` now for an event given as JSON (`pipelines trigger NAME --event FILE`),
    /// whatever its triggers say. The event is stored (type from `event_type`, default
    /// `manual`; source `api:manual`) but dispatched to this pipeline only. Returns the id of
    /// the execution.
    pub fn trigger_manual(&self, pipeline: &str, event_json: Json) -> Result<String, TriggerError> {
        let new = manual_event(event_json)?;
        let inner = &self.inner;
        inner.store.ensure_execution_tables()?;
        let max_depth = inner.opts.max_chain_depth;
        let result = inner.store.dispatch(|tx| {
            let Some(row) = tx.row(&format!("pipeline/{pipeline}"))? else {
                return Ok(Err(TriggerError::NoPipeline(pipeline.to_string())));
            };
            let spec: PipelineSpec = match serde_json::from_value(row.value) {
                Ok(s) => s,
                Err(e) => return Err(StoreError::Decode(e)),
            };
            if !spec.definition.enabled {
                return Ok(Err(TriggerError::Disabled(pipeline.to_string())));
            }
            let settings = applied_settings(tx)?;
            let Some(event) = tx.append_event(new, false)? else {
                return Ok(Err(TriggerError::BadEvent(
                    "the event could not be stored".into(),
                )));
            };
            let started = start(tx, pipeline, &spec, &event, &settings, true, max_depth)?;
            Ok(Ok(started))
        })??;
        let Some(exec) = result else {
            return Err(TriggerError::BadEvent(
                "the event already started this pipeline".into(),
            ));
        };
        inner.count_created(std::slice::from_ref(&exec));
        inner.kick.notify_one();
        Ok(exec.id)
    }
}

impl Engine {
    /// Dispatches a stored event again (after a pipeline was added or fixed): it starts the
    /// matching pipelines it has not started yet. Returns false when there is no such event.
    pub fn redispatch(&self, event_id: u64) -> Result<bool, StoreError> {
        let found = self.inner.store.dispatch(|tx| tx.requeue(event_id))?;
        if found {
            self.inner.kick.notify_one();
        }
        Ok(found)
    }
}

impl Inner {
    /// Dispatches until the outbox is empty.
    async fn dispatch_all(self: &Arc<Self>) -> Result<(), StoreError> {
        loop {
            let max_depth = self.opts.max_chain_depth;
            let (seen, created) = blocking(&self.store, move |s| {
                s.dispatch(|tx| dispatch_batch(tx, max_depth))
            })
            .await?;
            self.count_created(&created);
            for e in &created {
                match e.status {
                    ExecutionStatus::Skipped => tracing::warn!(
                        pipeline = %e.pipeline, execution = %e.id, event = e.trigger_event_id,
                        reason = e.skipped_reason.as_deref().unwrap_or(""),
                        "pipeline not started"
                    ),
                    _ => tracing::info!(
                        pipeline = %e.pipeline, execution = %e.id, event = e.trigger_event_id,
                        event_type = %e.trigger_event_type, "pipeline triggered"
                    ),
                }
            }
            if seen < DISPATCH_BATCH {
                return Ok(());
            }
        }
    }

    fn count_created(&self, created: &[Execution]) {
        let Some(m) = &self.opts.metrics else { return };
        for e in created {
            if e.status == ExecutionStatus::Skipped {
                m.executions
                    .get_or_create(&vec![
                        ("pipeline", e.pipeline.clone()),
                        ("status", "skipped".to_string()),
                    ])
                    .inc();
            } else {
                m.events
                    .get_or_create(&vec![("type", "pipeline.triggered".to_string())])
                    .inc();
            }
        }
    }

    fn spawn(self: &Arc<Self>, tasks: &mut JoinSet<()>, id: String, cancel: &CancellationToken) {
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            if !running.insert(id.clone()) {
                return;
            }
        }
        let inner = self.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            let _running = RunningGuard {
                inner: inner.clone(),
                id: id.clone(),
            };
            let permit = tokio::select! {
                p = inner.permits.acquire() => p,
                _ = cancel.cancelled() => return,
            };
            let Ok(_permit) = permit else { return };
            if let Err(e) = inner.drive(&id, &cancel).await {
                tracing::error!(execution = %id, error = %e, "execution paused on a store error; it resumes on the next pass");
            }
        });
    }

    /// Runs an execution from where its record says it stands.
    #[tracing::instrument(skip_all, fields(execution = %id))]
    async fn drive(
        self: &Arc<Self>,
        id: &str,
        cancel: &CancellationToken,
    ) -> Result<(), StoreError> {
        let id_owned = id.to_string();
        let Some(mut exec) = blocking(&self.store, move |s| s.execution(&id_owned)).await? else {
            return Ok(());
        };
        if exec.status.is_finished() {
            return Ok(());
        }
        let trigger = exec.trigger_event_id;
        let event = blocking(&self.store, move |s| s.event(trigger)).await?;
        let spec = serde_json::from_value::<PipelineSpec>(exec.pipeline_spec.clone());
        let (event, spec) = match (event, spec) {
            (Some(e), Ok(s)) => (e, s),
            (None, _) => {
                let msg = format!("its trigger event {trigger} is not in the event log");
                return self.fail_unstartable(exec, msg).await;
            }
            (_, Err(e)) => {
                let msg = format!("its pipeline snapshot is unreadable: {e}");
                return self.fail_unstartable(exec, msg).await;
            }
        };
        if exec.status == ExecutionStatus::Pending {
            // Stored with the first step's state: a crash before that resumes a pending run.
            exec.status = ExecutionStatus::Running;
            exec.started_at = Some(crate::util::time::now_rfc3339());
        } else {
            tracing::info!(pipeline = %exec.pipeline, execution = %exec.id, "resuming execution");
        }
        let flat = event.flattened();
        let mut failure: Option<(String, String)> = None;
        for i in 0..exec.steps.len() {
            let step = &exec.steps[i];
            match step.status {
                StepStatus::Succeeded | StepStatus::Skipped => continue,
                StepStatus::Failed if step.continue_on_error => continue,
                StepStatus::Failed => {
                    failure = Some((step.name.clone(), step.error.clone().unwrap_or_default()));
                    break;
                }
                StepStatus::Pending | StepStatus::Running => {}
            }
            if cancel.is_cancelled() {
                return Ok(());
            }
            let Some(spec_step) = spec.definition.steps.iter().find(|s| s.name == step.name) else {
                let name = step.name.clone();
                let msg = format!("step `{name}` is missing from the pipeline snapshot");
                let s = &mut exec.steps[i];
                s.status = StepStatus::Failed;
                s.error = Some(msg.clone());
                s.finished_at = Some(crate::util::time::now_rfc3339());
                failure = Some((name, msg));
                break;
            };
            match self
                .run_step(&mut exec, i, spec_step, &flat, cancel)
                .await?
            {
                StepOutcome::Succeeded => {}
                StepOutcome::Interrupted => return Ok(()),
                StepOutcome::Failed if exec.steps[i].continue_on_error => {}
                StepOutcome::Failed => {
                    let s = &exec.steps[i];
                    failure = Some((s.name.clone(), s.error.clone().unwrap_or_default()));
                    break;
                }
            }
        }
        self.finish(exec, Some(&event), failure).await
    }

    async fn fail_unstartable(&self, mut exec: Execution, msg: String) -> Result<(), StoreError> {
        let msg = (self.opts.redact)(&msg);
        tracing::error!(pipeline = %exec.pipeline, execution = %exec.id, error = %msg, "execution cannot run");
        exec.error = Some(msg.clone());
        let step = exec
            .steps
            .iter()
            .find(|s| !matches!(s.status, StepStatus::Succeeded))
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.finish(exec, None, Some((step, msg))).await
    }

    /// Marks the execution finished and stores its `pipeline.completed` / `.failed` event,
    /// in one transaction.
    async fn finish(
        &self,
        mut exec: Execution,
        event: Option<&Event>,
        failure: Option<(String, String)>,
    ) -> Result<(), StoreError> {
        let now = crate::util::time::now_rfc3339();
        for s in &mut exec.steps {
            if matches!(s.status, StepStatus::Pending | StepStatus::Running) {
                s.status = StepStatus::Skipped;
                s.log("not run: an earlier step failed".into());
            }
        }
        let event_type = match &failure {
            Some((step, error)) => {
                exec.status = ExecutionStatus::Failed;
                exec.failed_step = Some(step.clone());
                exec.error = Some(error.clone());
                "pipeline.failed"
            }
            None => {
                exec.status = ExecutionStatus::Succeeded;
                "pipeline.completed"
            }
        };
        exec.finished_at = Some(now);
        let mut ev = lifecycle_event(event_type, &exec, event);
        if let Some((step, error)) = &failure {
            ev = ev
                .with("failed_step", step.clone())
                .with("error", error.clone());
        }
        let stored = {
            let exec = exec.clone();
            blocking(&self.store, move |s| s.finish_execution(&exec, Some(ev))).await?
        };
        match &failure {
            Some((step, error)) => tracing::warn!(
                pipeline = %exec.pipeline, execution = %exec.id, failed_step = %step, %error,
                "pipeline failed"
            ),
            None => {
                tracing::info!(pipeline = %exec.pipeline, execution = %exec.id, "pipeline completed")
            }
        }
        if let Some(m) = &self.opts.metrics {
            m.executions
                .get_or_create(&vec![
                    ("pipeline", exec.pipeline.clone()),
                    ("status", exec.status.as_str().to_string()),
                ])
                .inc();
            if let Some(ev) = &stored {
                m.events
                    .get_or_create(&vec![("type", ev.event_type.clone())])
                    .inc();
            }
        }
        self.kick.notify_one();
        Ok(())
    }

    async fn save(&self, exec: &Execution) -> Result<(), StoreError> {
        let exec = exec.clone();
        blocking(&self.store, move |s| s.put_execution(&exec)).await
    }

    /// Runs step `i` to an outcome: attempts with a timeout, retries with backoff for
    /// retryable errors, every state change stored. Its span names the execution, the step and
    /// the commit the triggering event came from (if it came from one).
    #[tracing::instrument(skip_all, fields(
        execution = %exec.id,
        pipeline = %exec.pipeline,
        step = %spec.name,
        commit = event.get("source").and_then(Json::as_str).and_then(|s| s.strip_prefix("commit:")).unwrap_or(""),
    ))]
    async fn run_step(
        &self,
        exec: &mut Execution,
        i: usize,
        spec: &StepSpec,
        event: &Json,
        cancel: &CancellationToken,
    ) -> Result<StepOutcome, StoreError> {
        let redact = self.opts.redact.clone();
        let tctx = TemplateContext {
            event: event.clone(),
            pipeline: exec.pipeline.clone(),
            execution_id: exec.id.clone(),
            variables: exec.variables.clone(),
            steps: exec.steps[..i]
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Succeeded | StepStatus::Failed))
                .map(|s| (s.name.clone(), serde_json::json!({"outputs": s.outputs})))
                .collect(),
        };
        let config = serde_json::to_value(&spec.config).unwrap_or(Json::Null);
        let rendered = match render::render_step_config(spec.step_type, &config, &tctx) {
            Ok(c) => c,
            Err(e) => {
                let now = crate::util::time::now_rfc3339();
                let s = &mut exec.steps[i];
                let msg = redact(&format!("step `{}`: {e}", s.name));
                s.status = StepStatus::Failed;
                s.started_at.get_or_insert_with(|| now.clone());
                s.finished_at = Some(now);
                s.error = Some(msg.clone());
                s.log(format!("not run: {msg}"));
                self.save(exec).await?;
                self.count_step(spec.step_type, "failed");
                return Ok(StepOutcome::Failed);
            }
        };
        let step_type = spec.step_type;
        let (max_attempts, timeout) = {
            let s = &exec.steps[i];
            (s.retries.saturating_add(1), s.timeout_secs.max(1))
        };
        let mut left = {
            let s = &mut exec.steps[i];
            if s.status == StepStatus::Running {
                s.log(format!(
                    "resumed after a restart: attempt {} was interrupted",
                    s.attempts
                ));
            }
            max_attempts.saturating_sub(s.attempts).max(1)
        };
        loop {
            let ctx = {
                let s = &mut exec.steps[i];
                s.attempts += 1;
                s.status = StepStatus::Running;
                s.started_at
                    .get_or_insert_with(crate::util::time::now_rfc3339);
                s.log(format!(
                    "attempt {} of {} started",
                    s.attempts,
                    max_attempts.max(s.attempts)
                ));
                StepContext {
                    execution_id: exec.id.clone(),
                    pipeline: exec.pipeline.clone(),
                    step: s.name.clone(),
                    attempt: s.attempts,
                    idempotency_key: format!("{}/{}", exec.id, s.name),
                    event: event.clone(),
                    steps: Json::Object(tctx.steps.clone()),
                }
            };
            self.save(exec).await?;
            let started = Instant::now();
            let result = tokio::time::timeout(
                Duration::from_secs(timeout),
                self.runner.run(step_type, rendered.clone(), &ctx),
            )
            .await
            .unwrap_or_else(|_| {
                Err(StepError::timed_out(format!(
                    "timed out after {timeout}s (raise `timeout` on the step, or \
                     `step_defaults.{}.timeout` in mockops.yaml)",
                    step_type.as_str()
                )))
            });
            let elapsed = started.elapsed();
            if let Some(m) = &self.opts.metrics {
                m.step_duration.observe(elapsed.as_secs_f64());
            }
            left = left.saturating_sub(1);
            let s = &mut exec.steps[i];
            match result {
                Ok(outputs) => {
                    s.status = StepStatus::Succeeded;
                    s.outputs = redact_map(&outputs, &*redact);
                    s.error = None;
                    s.finished_at = Some(crate::util::time::now_rfc3339());
                    s.log(format!("succeeded in {} ms", elapsed.as_millis()));
                    self.save(exec).await?;
                    self.count_step(step_type, "succeeded");
                    return Ok(StepOutcome::Succeeded);
                }
                Err(e) if e.retryable() && left > 0 => {
                    // The message with its causes, as the record keeps it.
                    let msg = redact(&e.rendered());
                    tracing::warn!(error = %msg, target = ?e.target, "step attempt failed; retrying");
                    let delay = backoff::delay_after(
                        self.opts.backoff_base,
                        self.opts.backoff_max,
                        s.attempts,
                    );
                    s.log(format!(
                        "attempt {} failed: {msg}; retrying in {} ms",
                        s.attempts,
                        delay.as_millis()
                    ));
                    s.error = Some(msg);
                    self.save(exec).await?;
                    self.count_step(step_type, "retried");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = cancel.cancelled() => return Ok(StepOutcome::Interrupted),
                    }
                }
                Err(e) => {
                    let msg = redact(&e.rendered());
                    tracing::warn!(error = %msg, target = ?e.target, retryable = e.retryable(), "step failed");
                    let why = if e.retryable() {
                        format!("failed after {} attempts: {msg}", s.attempts)
                    } else {
                        format!("failed (not retryable): {msg}")
                    };
                    s.log(why.clone());
                    s.status = StepStatus::Failed;
                    s.error = Some(msg);
                    s.finished_at = Some(crate::util::time::now_rfc3339());
                    self.save(exec).await?;
                    self.count_step(step_type, "failed");
                    return Ok(StepOutcome::Failed);
                }
            }
        }
    }

    fn count_step(&self, step_type: StepType, status: &str) {
        if let Some(m) = &self.opts.metrics {
            m.steps
                .get_or_create(&vec![
                    ("step_type", step_type.as_str().to_string()),
                    ("status", status.to_string()),
                ])
                .inc();
        }
    }
}

enum StepOutcome {
    Succeeded,
    Failed,
    /// Stopped by shutdown between attempts; resumed at the next start.
    Interrupted,
}

/// Forgets an execution's task when it ends, however it ends.
struct RunningGuard {
    inner: Arc<Inner>,
    id: String,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.inner
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Reads up to one batch of the outbox and dispatches it. Returns how many events were read
/// and the executions created.
fn dispatch_batch(
    tx: &mut DispatchTx<'_>,
    max_depth: u32,
) -> Result<(usize, Vec<Execution>), StoreError> {
    let ids = tx.outbox(DISPATCH_BATCH)?;
    if ids.is_empty() {
        return Ok((0, Vec::new()));
    }
    let mut pipelines: Vec<(String, PipelineSpec)> = Vec::new();
    for row in tx.rows_of("pipeline")? {
        match serde_json::from_value::<PipelineSpec>(row.value) {
            Ok(spec) => pipelines.push((row.name, spec)),
            Err(e) => {
                tracing::error!(pipeline = %row.name, error = %e, "applied pipeline unreadable; it does not run")
            }
        }
    }
    let settings = applied_settings(tx)?;
    let mut created = Vec::new();
    for id in &ids {
        tx.dispatched(*id)?;
        let Some(event) = tx.event(*id)? else {
            continue;
        };
        let flat = event.flattened();
        for (name, spec) in &pipelines {
            if matching::pipeline_matches(spec, &flat)
                && let Some(e) = start(tx, name, spec, &event, &settings, false, max_depth)?
            {
                created.push(e);
            }
        }
    }
    Ok((ids.len(), created))
}

fn applied_settings(tx: &DispatchTx<'_>) -> Result<Settings, StoreError> {
    Ok(match tx.row("settings/mockops")? {
        Some(row) => serde_json::from_value(row.value).unwrap_or_else(|e| {
            tracing::error!(error = %e, "applied settings unreadable; using defaults");
            Settings::default()
        }),
        None => Settings::default(),
    })
}

/// Creates the execution of `pipeline` for `event` (unless that event already started it),
/// and its `pipeline.triggered` event; a run that would loop is recorded as skipped.
fn start(
    tx: &mut DispatchTx<'_>,
    pipeline: &str,
    spec: &PipelineSpec,
    event: &Event,
    settings: &Settings,
    manual: bool,
    max_depth: u32,
) -> Result<Option<Execution>, StoreError> {
    if tx.execution_for(event.id, pipeline)?.is_some() {
        return Ok(None);
    }
    let mut variables: Map<String, Json> = settings
        .variables
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &spec.definition.variables {
        variables.insert(k.clone(), v.clone());
    }
    let steps = spec
        .definition
        .steps
        .iter()
        .map(|s| {
            let (timeout_secs, retries) = resolve_execution(s, settings);
            StepRecord {
                name: s.name.clone(),
                step_type: s.step_type,
                status: StepStatus::Pending,
                attempts: 0,
                timeout_secs,
                retries,
                continue_on_error: s.continue_on_error,
                started_at: None,
                finished_at: None,
                logs: Vec::new(),
                logs_dropped: 0,
                outputs: Map::new(),
                error: None,
            }
        })
        .collect();
    let mut exec = Execution {
        id: String::new(),
        seq: 0,
        pipeline: pipeline.to_string(),
        status: ExecutionStatus::Pending,
        trigger_event_id: event.id,
        trigger_event_type: event.event_type.clone(),
        manual,
        chain_depth: 1,
        created_at: String::new(),
        started_at: None,
        finished_at: None,
        skipped_reason: None,
        failed_step: None,
        error: None,
        steps,
        pipeline_spec: serde_json::to_value(spec)?,
        variables,
    };
    match chain_depth(event, pipeline, max_depth) {
        Ok(depth) => exec.chain_depth = depth,
        Err((depth, reason)) => {
            exec.chain_depth = depth;
            exec.status = ExecutionStatus::Skipped;
            exec.skipped_reason = Some(reason);
            exec.finished_at = Some(tx.now().to_string());
            for s in &mut exec.steps {
                s.status = StepStatus::Skipped;
            }
        }
    }
    let Some(exec) = tx.create_execution(exec)? else {
        return Ok(None);
    };
    if exec.status == ExecutionStatus::Pending {
        tx.append_event(
            lifecycle_event("pipeline.triggered", &exec, Some(event)),
            true,
        )?;
    }
    Ok(Some(exec))
}

/// The depth of an execution started by `event`, or why it must not start.
fn chain_depth(event: &Event, pipeline: &str, max: u32) -> Result<u32, (u32, String)> {
    let from_pipeline = EventType::parse(&event.event_type).is_some_and(|t| t.is_pipeline_event());
    if !from_pipeline {
        return Ok(1);
    }
    let parent = event
        .payload
        .get("chain_depth")
        .and_then(Json::as_u64)
        .map(|d| u32::try_from(d).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let depth = parent.saturating_add(1);
    let producer = event.payload.get("pipeline").and_then(Json::as_str);
    if producer == Some(pipeline) {
        return Err((
            depth,
            format!(
                "`{}` of pipeline `{pipeline}` would start `{pipeline}` again; a pipeline's own \
                 events never start it (add a `pipeline` filter naming the other pipelines)",
                event.event_type
            ),
        ));
    }
    if depth > max {
        return Err((
            depth,
            format!(
                "`{}` (event {}) is {parent} pipeline runs deep; chains of pipelines started by \
                 pipeline events stop at {max}",
                event.event_type, event.id
            ),
        ));
    }
    Ok(depth)
}

/// A `pipeline.triggered` / `.completed` / `.failed` event about `exec`, in the workspace of
/// its trigger event.
/// `pipeline.completed` / `.failed`, in the trigger event's workspace and org when it could be
/// read.
fn lifecycle_event(event_type: &str, exec: &Execution, trigger: Option<&Event>) -> NewEvent {
    let mut ev = NewEvent::new(event_type, Origin::pipeline(&exec.id))
        .workspace(
            trigger.and_then(|t| t.workspace_id.clone()),
            trigger.and_then(|t| t.workspace_name.clone()),
        )
        .with("pipeline", exec.pipeline.clone())
        .with("execution_id", exec.id.clone())
        .with("status", exec.status.as_str())
        .with("trigger_event_id", exec.trigger_event_id)
        .with("trigger_event_type", exec.trigger_event_type.clone())
        .with("chain_depth", exec.chain_depth);
    if exec.manual {
        ev = ev.with("manual", true);
    }
    ev.org_id = trigger.and_then(|t| t.org_id.clone());
    ev.dedup_key = Some(format!("{event_type}/{}", exec.id));
    ev
}

/// The event of a manual run: `{"event_type": ..., "workspace_id": ..., "payload": {...}}`,
/// or a flat object whose other fields are the payload.
fn manual_event(json: Json) -> Result<NewEvent, TriggerError> {
    let mut obj = match json {
        Json::Object(m) => m,
        Json::Null => Map::new(),
        other => {
            return Err(TriggerError::BadEvent(format!(
                "the event must be a JSON object, not {}",
                kind(&other)
            )));
        }
    };
    let text = |obj: &mut Map<String, Json>, k: &str| -> Result<Option<String>, TriggerError> {
        match obj.remove(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(other) => Err(TriggerError::BadEvent(format!(
                "`{k}` must be a string, not {}",
                kind(&other)
            ))),
        }
    };
    let event_type = text(&mut obj, "event_type")?.unwrap_or_else(|| "manual".to_string());
    if event_type.trim().is_empty() {
        return Err(TriggerError::BadEvent("`event_type` is empty".into()));
    }
    let workspace_id = text(&mut obj, "workspace_id")?;
    let workspace_name = text(&mut obj, "workspace_name")?;
    let org_id = text(&mut obj, "org_id")?;
    for k in ["id", "timestamp", "source", "dedup_key"] {
        obj.remove(k);
    }
    let payload = match obj.remove("payload") {
        Some(Json::Object(p)) if obj.is_empty() => p,
        Some(Json::Object(_)) => {
            return Err(TriggerError::BadEvent(format!(
                "give the payload either under `payload` or beside `event_type`, not both \
                 (found {})",
                obj.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Some(other) => {
            obj.insert("payload".into(), other);
            obj
        }
        None => obj,
    };
    let mut payload = payload;
    // The log never holds an event of a type the daemon produces that the daemon did not
    // produce: a manual run that simulates one is stored as a `manual` event that says what it
    // simulates (its fields are still there for the step templates).
    let event_type = if crate::model::events::EventType::parse(&event_type).is_some() {
        payload.insert("simulated_event_type".into(), Json::String(event_type));
        "manual".to_string()
    } else {
        event_type
    };
    let mut ev =
        NewEvent::new(&event_type, Origin::api("manual")).workspace(workspace_id, workspace_name);
    ev.org_id = org_id;
    ev.payload = payload;
    Ok(ev)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn redact_map(
    m: &Map<String, Json>,
    redact: &(dyn Fn(&str) -> String + Send + Sync),
) -> Map<String, Json> {
    m.iter()
        .map(|(k, v)| (k.clone(), redact_json(v, redact)))
        .collect()
}

fn redact_json(v: &Json, redact: &(dyn Fn(&str) -> String + Send + Sync)) -> Json {
    match v {
        Json::String(s) => Json::String(redact(s)),
        Json::Array(items) => Json::Array(items.iter().map(|i| redact_json(i, redact)).collect()),
        Json::Object(m) => Json::Object(redact_map(m, redact)),
        other => other.clone(),
    }
}

/// Runs a store call off the async threads.
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("store task failed: {e}"))))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(t: &str, payload: Json) -> Event {
        Event {
            id: 9,
            event_type: t.into(),
            timestamp: "2026-01-01T00:00:00Z".into(),
            source: Origin::api("t"),
            workspace_id: None,
            workspace_name: None,
            org_id: None,
            dedup_key: None,
            payload: payload.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn chain_depth_stops_loops() {
        assert_eq!(
            chain_depth(&event("schema.changed", json!({})), "a", 3),
            Ok(1)
        );
        let done = |p: &str, d: u64| {
            event(
                "pipeline.completed",
                json!({"pipeline": p, "chain_depth": d}),
            )
        };
        assert_eq!(chain_depth(&done("a", 1), "b", 3), Ok(2));
        assert_eq!(chain_depth(&done("a", 2), "b", 3), Ok(3));
        assert!(chain_depth(&done("a", 3), "b", 3).is_err());
        let (_, why) = chain_depth(&done("a", 1), "a", 3).unwrap_err();
        assert!(why.contains("would start `a` again"), "{why}");
    }

    #[test]
    fn execution_settings_resolve_step_then_settings_then_type() {
        let mut settings = Settings::default();
        let step: StepSpec =
            serde_json::from_value(json!({"name": "n", "step_type": "notify"})).unwrap();
        assert_eq!(resolve_execution(&step, &settings), (30, 3));
        settings.step_defaults.insert(
            StepType::Notify,
            crate::model::ExecutionDefaults {
                timeout: Some(5),
                retries: None,
            },
        );
        assert_eq!(resolve_execution(&step, &settings), (5, 3));
        let step: StepSpec =
            serde_json::from_value(json!({"name": "n", "step_type": "notify", "retries": 0}))
                .unwrap();
        assert_eq!(resolve_execution(&step, &settings), (5, 0));
        let sdk: StepSpec =
            serde_json::from_value(json!({"name": "g", "step_type": "regenerate_sdk"})).unwrap();
        assert_eq!(resolve_execution(&sdk, &settings), (600, 1));
    }

    #[test]
    fn manual_runs_never_store_daemon_event_types() {
        let e = manual_event(json!({"event_type": "schema.changed", "spec_path": "specs/a.yaml"}))
            .unwrap();
        assert_eq!(e.event_type, "manual");
        assert_eq!(e.payload["simulated_event_type"], "schema.changed");
        assert_eq!(e.payload["spec_path"], "specs/a.yaml");
        let e = manual_event(json!({"event_type": "promotion.completed"})).unwrap();
        assert_eq!(e.event_type, "manual");
        let e = manual_event(json!({"event_type": "release.published"})).unwrap();
        assert_eq!(e.event_type, "release.published");
    }

    #[test]
    fn manual_events_take_either_shape() {
        let e = manual_event(
            json!({"event_type": "release.published", "workspace_id": "ws", "version": "1"}),
        )
        .unwrap();
        assert_eq!(e.event_type, "release.published");
        assert_eq!(e.workspace_id.as_deref(), Some("ws"));
        assert_eq!(e.payload["version"], "1");
        let e = manual_event(json!({"payload": {"spec_path": "s.yaml"}})).unwrap();
        assert_eq!(e.event_type, "manual");
        assert_eq!(e.payload["spec_path"], "s.yaml");
        assert_eq!(e.source.0, "api:manual");
        assert!(manual_event(Json::Null).is_ok());
        assert!(manual_event(json!([1])).is_err());
        assert!(manual_event(json!({"event_type": 3})).is_err());
        assert!(manual_event(json!({"payload": {"a": 1}, "b": 2})).is_err());
    }
}
