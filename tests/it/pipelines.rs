//! The pipeline engine against a real store in a temp dir, with a step runner that records
//! its calls and fails, sleeps or hangs on demand.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mockops::model::{PipelineSpec, StepType};
use mockops::pipeline::steps::{Outputs, StepContext, StepError};
use mockops::pipeline::{Engine, EngineMetrics, EngineOptions, StepRunner, TriggerError};
use mockops::store::executions::{Execution, ExecutionFilter, ExecutionStatus, StepStatus};
use mockops::store::{Commit, CursorUpdate, EventFilter, NewEvent, Origin, Row, Store};
use serde_json::{Value as Json, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------------
// A step runner that does what each test tells it to.

#[derive(Debug, Clone)]
struct Call {
    step: String,
    attempt: u32,
    key: String,
    config: Json,
}

#[derive(Clone)]
enum Act {
    /// Succeed with these outputs.
    Ok(Json),
    /// Fail the first `n` attempts (retryable or not), then succeed.
    FailFirst { n: u32, retryable: bool },
    /// Always fail.
    Fail { retryable: bool, message: String },
    /// Take this long, then succeed.
    Sleep(Duration),
    /// Never finish.
    Hang,
}

#[derive(Default)]
struct TestRunner {
    calls: Mutex<Vec<Call>>,
    acts: Mutex<HashMap<String, Act>>,
}

impl TestRunner {
    fn with(acts: &[(&str, Act)]) -> Arc<Self> {
        let r = TestRunner::default();
        {
            let mut m = r.acts.lock().expect("runner lock");
            for (k, a) in acts {
                m.insert(k.to_string(), a.clone());
            }
        }
        Arc::new(r)
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("runner lock").clone()
    }

    fn calls_of(&self, step: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.step == step)
            .collect()
    }
}

/// A failure that may pass (the target is unavailable) or will not (the input is invalid).
fn failure(message: String, retryable: bool) -> StepError {
    if retryable {
        StepError::unavailable(message)
    } else {
        StepError::invalid(message)
    }
}

impl StepRunner for TestRunner {
    fn run<'a>(
        &'a self,
        _step_type: StepType,
        config: Json,
        ctx: &'a StepContext,
    ) -> Pin<Box<dyn Future<Output = Result<Outputs, StepError>> + Send + 'a>> {
        Box::pin(async move {
            self.calls.lock().expect("runner lock").push(Call {
                step: ctx.step.clone(),
                attempt: ctx.attempt,
                key: ctx.idempotency_key.clone(),
                config: config.clone(),
            });
            let act = self
                .acts
                .lock()
                .expect("runner lock")
                .get(&ctx.step)
                .cloned()
                .unwrap_or(Act::Ok(json!({"delivered": true})));
            let outputs = |v: Json| v.as_object().cloned().unwrap_or_default();
            match act {
                Act::Ok(v) => Ok(outputs(v)),
                Act::FailFirst { n, retryable } if ctx.attempt <= n => Err(failure(
                    format!("HTTP 503 on attempt {}", ctx.attempt),
                    retryable,
                )),
                Act::FailFirst { .. } => Ok(outputs(json!({"delivered": true}))),
                Act::Fail { retryable, message } => Err(failure(message, retryable)),
                Act::Sleep(d) => {
                    tokio::time::sleep(d).await;
                    Ok(outputs(json!({"delivered": true})))
                }
                Act::Hang => std::future::pending().await,
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn opts() -> EngineOptions {
    EngineOptions {
        poll_interval: Duration::from_millis(50),
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..EngineOptions::default()
    }
}

fn webhook(name: &str, message: &str) -> Json {
    json!({
        "name": name,
        "step_type": "notify",
        "config": {"type": "webhook", "message": message, "webhook_url": "http://127.0.0.1:9/hook"}
    })
}

fn pipeline(name: &str, triggers: Json, steps: Json) -> Json {
    json!({"name": name, "definition": {"triggers": triggers, "steps": steps}})
}

/// Applies pipelines (and settings) to the store the way a commit does.
fn apply(store: &Store, pipelines: &[Json], settings: Option<Json>) {
    let mut put = Vec::new();
    for p in pipelines {
        let spec: PipelineSpec = serde_json::from_value(p.clone()).expect("pipeline fixture");
        put.push((
            format!("pipeline/{}", spec.name),
            Arc::new(Row {
                kind: "pipeline".into(),
                name: spec.name.clone(),
                path: format!("pipelines/{}.yaml", spec.name),
                blob: String::new(),
                value: serde_json::to_value(&spec).expect("pipeline to JSON"),
            }),
        ));
    }
    if let Some(s) = settings {
        let s: mockops::model::Settings = serde_json::from_value(s).expect("settings fixture");
        put.push((
            "settings/mockops".into(),
            Arc::new(Row {
                kind: "settings".into(),
                name: "mockops".into(),
                path: "mockops.yaml".into(),
                blob: String::new(),
                value: serde_json::to_value(&s).expect("settings to JSON"),
            }),
        ));
    }
    store
        .commit(
            Commit {
                put,
                ..Commit::default()
            },
            CursorUpdate::Keep,
        )
        .expect("apply fixture");
}

fn post(store: &Store, event_type: &str, payload: Json) -> u64 {
    let mut e = NewEvent::new(event_type, Origin::commit("abc123"))
        .workspace(Some("ws-1".into()), Some("Users".into()));
    e.payload = payload.as_object().cloned().unwrap_or_default();
    store.append_events(vec![e]).expect("append event")[0].id
}

/// A running engine over a store in a temp dir.
struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    engine: Engine,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn new(runner: Arc<dyn StepRunner>, opts: EngineOptions) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, _) = Store::open(dir.path()).expect("open store");
        let engine = Engine::new(store.clone(), runner, opts);
        Harness {
            _dir: dir,
            store,
            wake: Arc::new(Notify::new()),
            cancel: CancellationToken::new(),
            engine,
            task: None,
        }
    }

    fn start(&mut self) {
        let engine = self.engine.clone();
        self.task = Some(tokio::spawn(
            engine.run(self.cancel.clone(), self.wake.clone()),
        ));
    }

    fn post(&self, event_type: &str, payload: Json) -> u64 {
        let id = post(&self.store, event_type, payload);
        self.wake.notify_one();
        id
    }

    fn executions(&self, pipeline: Option<&str>) -> Vec<Execution> {
        self.store
            .executions(&ExecutionFilter {
                pipeline: pipeline.map(str::to_string),
                before: None,
                limit: 1000,
            })
            .expect("list executions")
    }

    /// Waits until the outbox is empty and no execution is pending or running.
    async fn settle(&self) {
        wait_for("the engine to settle", || {
            let idle = self.store.outbox(1).expect("outbox").is_empty()
                && self.store.active_executions().expect("active").is_empty();
            idle.then_some(())
        })
        .await;
    }

    async fn finished(&self, pipeline: &str) -> Execution {
        wait_for(&format!("an execution of `{pipeline}` to finish"), || {
            self.executions(Some(pipeline))
                .into_iter()
                .find(|e| e.status.is_finished())
        })
        .await
    }

    async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("the engine stops when cancelled")
                .expect("the engine task ends cleanly");
        }
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn events_of(store: &Store, t: &str) -> Vec<mockops::store::Event> {
    store
        .events(&EventFilter {
            event_type: Some(t.into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .expect("read events")
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_or_filters_and_lists_and_globs_choose_pipelines() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[
            pipeline(
                "openapi-breaking",
                json!([{"event": "schema.changed", "filters": {"schema_type": "openapi", "breaking": true}}]),
                json!([webhook("n", "{{event.spec_path}}")]),
            ),
            pipeline(
                "users-specs",
                json!([{"event": "schema.changed", "filters": {"spec_path": "specs/users/**/*.yaml"}}]),
                json!([webhook("n", "x")]),
            ),
            pipeline(
                "releases-or-prod",
                json!([
                    {"event": "release.published"},
                    {"event": "scenario.published", "filters": {"environment": ["test", "prod"]}}
                ]),
                json!([webhook("n", "x")]),
            ),
        ],
        None,
    );
    h.start();
    let a = h.post(
        "schema.changed",
        json!({"schema_type": "openapi", "breaking": true, "spec_path": "specs/users/v1/api.yaml"}),
    );
    let b = h.post(
        "schema.changed",
        json!({"schema_type": "openapi", "breaking": false, "spec_path": "specs/orders.yaml"}),
    );
    let c = h.post("scenario.published", json!({"environment": "prod"}));
    let d = h.post("scenario.published", json!({"environment": "dev"}));
    let e = h.post("release.published", json!({}));
    h.settle().await;

    let started = |p: &str| -> Vec<u64> {
        let mut v: Vec<u64> = h
            .executions(Some(p))
            .iter()
            .map(|e| e.trigger_event_id)
            .collect();
        v.sort();
        v
    };
    assert_eq!(started("openapi-breaking"), vec![a]);
    assert_eq!(started("users-specs"), vec![a]);
    assert_eq!(started("releases-or-prod"), vec![c, e]);
    assert!(
        ![b, d]
            .iter()
            .any(|id| { h.executions(None).iter().any(|x| x.trigger_event_id == *id) })
    );
    // The template saw the event.
    let n = runner
        .calls()
        .into_iter()
        .find(|c| c.config["message"] == "specs/users/v1/api.yaml");
    assert!(n.is_some(), "{:?}", runner.calls());
    // Each started pipeline announced itself.
    assert_eq!(events_of(&h.store, "pipeline.triggered").len(), 4);
    assert_eq!(events_of(&h.store, "pipeline.completed").len(), 4);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_dispatched_twice_starts_a_pipeline_once() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("n", "hi")]),
        )],
        None,
    );
    h.start();
    let id = h.post("release.published", json!({}));
    h.finished("p").await;
    assert!(h.engine.redispatch(id).unwrap());
    assert!(!h.engine.redispatch(999_999).unwrap());
    h.settle().await;
    assert_eq!(h.executions(Some("p")).len(), 1);
    assert_eq!(runner.calls().len(), 1);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_with_backoff_until_success() {
    let runner = TestRunner::with(&[(
        "flaky",
        Act::FailFirst {
            n: 2,
            retryable: true,
        },
    )]);
    let mut h = Harness::new(runner.clone(), opts());
    let mut step = webhook("flaky", "hi");
    step["retries"] = json!(3);
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([step]),
        )],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    let e = h.finished("p").await;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:#?}");
    let s = &e.steps[0];
    assert_eq!(s.attempts, 3);
    assert_eq!(s.status, StepStatus::Succeeded);
    assert!(s.error.is_none());
    assert_eq!(
        s.logs.iter().filter(|l| l.contains("retrying in")).count(),
        2,
        "{:#?}",
        s.logs
    );
    let calls = runner.calls_of("flaky");
    assert_eq!(
        calls.iter().map(|c| c.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    // One idempotency key for every attempt.
    assert!(calls.iter().all(|c| c.key == format!("{}/flaky", e.id)));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_not_retried_and_retries_run_out() {
    let runner = TestRunner::with(&[
        (
            "bad",
            Act::Fail {
                retryable: false,
                message: "HTTP 404: no such channel".into(),
            },
        ),
        (
            "down",
            Act::Fail {
                retryable: true,
                message: "connection refused".into(),
            },
        ),
    ]);
    let mut h = Harness::new(runner.clone(), opts());
    let mut bad = webhook("bad", "x");
    bad["retries"] = json!(3);
    let mut down = webhook("down", "x");
    down["retries"] = json!(2);
    apply(
        &h.store,
        &[
            pipeline(
                "permanent",
                json!([{"event": "release.published"}]),
                json!([bad, webhook("after", "x")]),
            ),
            pipeline(
                "transient",
                json!([{"event": "release.published"}]),
                json!([down]),
            ),
        ],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    let p = h.finished("permanent").await;
    let t = h.finished("transient").await;

    assert_eq!(p.status, ExecutionStatus::Failed);
    assert_eq!(p.failed_step.as_deref(), Some("bad"));
    assert_eq!(p.steps[0].attempts, 1);
    assert_eq!(p.steps[1].status, StepStatus::Skipped);
    assert!(runner.calls_of("after").is_empty());
    assert_eq!(runner.calls_of("bad").len(), 1);

    assert_eq!(t.status, ExecutionStatus::Failed);
    assert_eq!(t.steps[0].attempts, 3);
    assert_eq!(runner.calls_of("down").len(), 3);

    let failed = events_of(&h.store, "pipeline.failed");
    assert_eq!(failed.len(), 2);
    let pf = failed
        .iter()
        .find(|e| e.payload["pipeline"] == "permanent")
        .unwrap();
    assert_eq!(pf.payload["failed_step"], "bad");
    assert_eq!(pf.payload["error"], "HTTP 404: no such channel");
    assert_eq!(pf.payload["execution_id"], json!(p.id));
    assert_eq!(pf.workspace_id.as_deref(), Some("ws-1"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_overruns_its_timeout_fails() {
    let runner = TestRunner::with(&[("slow", Act::Sleep(Duration::from_secs(30)))]);
    let mut h = Harness::new(runner.clone(), opts());
    let mut slow = webhook("slow", "x");
    slow["timeout"] = json!(1);
    slow["retries"] = json!(0);
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([slow]),
        )],
        None,
    );
    h.start();
    let t0 = Instant::now();
    h.post("release.published", json!({}));
    let e = h.finished("p").await;
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(e.status, ExecutionStatus::Failed);
    let err = e.steps[0].error.as_deref().unwrap_or("");
    assert!(err.contains("timed out after 1s"), "{err}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continue_on_error_keeps_going_and_outputs_feed_later_templates() {
    let runner = TestRunner::with(&[
        (
            "first",
            Act::Ok(json!({"delivered": true, "message_id": "m-42", "channel": ["a", "b"]})),
        ),
        (
            "optional",
            Act::Fail {
                retryable: false,
                message: "mail server said no".into(),
            },
        ),
    ]);
    let mut h = Harness::new(runner.clone(), opts());
    let mut optional = webhook("optional", "x");
    optional["continue_on_error"] = json!(true);
    let mut last = webhook(
        "last",
        "after {{ steps.first.outputs.message_id }} for {{ workspace_name }}: {{ variables.team }}",
    );
    last["config"]["payload"] =
        json!({"channels": "{{ steps.first.outputs.channel }}", "env": "{{variables.env}}"});
    apply(
        &h.store,
        &[json!({
            "name": "p",
            "definition": {
                "triggers": [{"event": "release.published"}],
                "steps": [webhook("first", "x"), optional, last],
                "variables": {"env": "staging"}
            }
        })],
        Some(json!({"variables": {"team": "core", "env": "prod"}})),
    );
    h.start();
    h.post("release.published", json!({}));
    let e = h.finished("p").await;
    assert_eq!(e.status, ExecutionStatus::Succeeded, "{e:#?}");
    assert_eq!(e.steps[1].status, StepStatus::Failed);
    assert_eq!(e.steps[2].status, StepStatus::Succeeded);
    let last = &runner.calls_of("last")[0];
    assert_eq!(last.config["message"], "after m-42 for Users: core");
    assert_eq!(last.config["payload"]["channels"], json!(["a", "b"]));
    assert_eq!(last.config["payload"]["env"], "staging");
    assert_eq!(e.steps[0].outputs["message_id"], "m-42");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_error_fails_the_step_without_running_it() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("n", "{{ event.version }}")]),
        )],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    let e = h.finished("p").await;
    assert_eq!(e.status, ExecutionStatus::Failed);
    let err = e.error.unwrap_or_default();
    assert!(err.contains("config.message"), "{err}");
    assert!(err.contains("undefined"), "{err}");
    assert!(runner.calls().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_event_loops_are_stopped() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[
            // Fires on its own completion: runs once per other pipeline's run, never for itself.
            pipeline(
                "echo",
                json!([{"event": "pipeline.completed"}]),
                json!([webhook("n", "{{ event.pipeline }} done")]),
            ),
            pipeline(
                "start",
                json!([{"event": "release.published"}]),
                json!([webhook("n", "x")]),
            ),
            // ping -> pong -> ping -> ... stops at the chain limit.
            pipeline(
                "ping",
                json!([{"event": "pipeline.completed", "filters": {"pipeline": ["start", "pong"]}}]),
                json!([webhook("n", "x")]),
            ),
            pipeline(
                "pong",
                json!([{"event": "pipeline.completed", "filters": {"pipeline": "ping"}}]),
                json!([webhook("n", "x")]),
            ),
        ],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    h.settle().await;
    // Nothing more happens afterwards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.settle().await;

    let by_status = |p: &str, s: ExecutionStatus| {
        h.executions(Some(p))
            .into_iter()
            .filter(|e| e.status == s)
            .collect::<Vec<_>>()
    };
    // start (depth 1) -> ping (2) -> pong (3) -> ping (4: stopped).
    assert_eq!(by_status("start", ExecutionStatus::Succeeded).len(), 1);
    assert_eq!(by_status("ping", ExecutionStatus::Succeeded).len(), 1);
    assert_eq!(by_status("pong", ExecutionStatus::Succeeded).len(), 1);
    let stopped = by_status("ping", ExecutionStatus::Skipped);
    assert_eq!(stopped.len(), 1);
    assert!(
        stopped[0]
            .skipped_reason
            .as_deref()
            .unwrap_or("")
            .contains("stop at 3"),
        "{:?}",
        stopped[0].skipped_reason
    );
    // echo ran for start, ping and pong (depth permitting), and never for its own completions.
    let echo_ok = by_status("echo", ExecutionStatus::Succeeded);
    let echo_skipped = by_status("echo", ExecutionStatus::Skipped);
    assert!(!echo_ok.is_empty());
    assert!(echo_skipped.iter().any(|e| {
        e.skipped_reason
            .as_deref()
            .unwrap_or("")
            .contains("would start `echo` again")
    }));
    for e in h.executions(None) {
        assert!(
            e.chain_depth <= 3 || e.status == ExecutionStatus::Skipped,
            "{e:#?}"
        );
    }
    let total_runs = runner.calls().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(runner.calls().len(), total_runs);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_pipeline_resumes_at_the_interrupted_step() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path()).unwrap();
    apply(
        &store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([
                webhook("first", "x"),
                webhook("second", "x"),
                webhook("third", "x")
            ]),
        )],
        None,
    );
    post(&store, "release.published", json!({}));

    // First life: `second` hangs; the daemon dies while it runs.
    let before = TestRunner::with(&[("second", Act::Hang)]);
    let engine = Engine::new(store.clone(), before.clone(), opts());
    let task = tokio::spawn(engine.run(CancellationToken::new(), Arc::new(Notify::new())));
    let running = wait_for("`second` to be running", || {
        let e = store
            .executions(&ExecutionFilter::default())
            .unwrap()
            .into_iter()
            .next()?;
        (e.steps[1].status == StepStatus::Running && !before.calls_of("second").is_empty())
            .then_some(e)
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let crashed = store.execution(&running.id).unwrap().unwrap();
    assert_eq!(crashed.status, ExecutionStatus::Running);
    assert_eq!(crashed.steps[0].status, StepStatus::Succeeded);
    assert_eq!(crashed.steps[1].status, StepStatus::Running);
    assert_eq!(crashed.steps[1].attempts, 1);
    assert_eq!(store.active_executions().unwrap(), vec![running.id.clone()]);

    // Second life: a new engine on the same store.
    let after = TestRunner::with(&[]);
    let engine = Engine::new(store.clone(), after.clone(), opts());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(engine.run(cancel.clone(), Arc::new(Notify::new())));
    let done = wait_for("the execution to finish", || {
        store
            .execution(&running.id)
            .unwrap()
            .filter(|e| e.status.is_finished())
    })
    .await;
    cancel.cancel();
    task.await.unwrap();

    assert_eq!(done.status, ExecutionStatus::Succeeded, "{done:#?}");
    assert_eq!(before.calls_of("first").len(), 1);
    assert!(
        after.calls_of("first").is_empty(),
        "a finished step ran again"
    );
    let second_before = &before.calls_of("second")[0];
    let second_after = &after.calls_of("second")[0];
    assert_eq!(second_after.key, second_before.key);
    assert_eq!(second_after.key, format!("{}/second", running.id));
    assert_eq!(second_after.attempt, 2);
    assert_eq!(after.calls_of("third").len(), 1);
    assert!(
        done.steps[1]
            .logs
            .iter()
            .any(|l| l.contains("resumed after a restart"))
    );
    assert_eq!(events_of(&store, "pipeline.completed").len(), 1);
    assert_eq!(events_of(&store, "pipeline.triggered").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_pipeline_never_runs() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    let mut p = pipeline(
        "off",
        json!([{"event": "release.published"}]),
        json!([webhook("n", "x")]),
    );
    p["definition"]["enabled"] = json!(false);
    apply(&h.store, &[p], None);
    h.start();
    h.post("release.published", json!({}));
    h.settle().await;
    assert!(h.executions(None).is_empty());
    match h.engine.trigger_manual("off", json!({})) {
        Err(TriggerError::Disabled(name)) => assert_eq!(name, "off"),
        other => panic!("expected Disabled, got {other:?}"),
    }
    assert!(runner.calls().is_empty());
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_run_starts_only_that_pipeline() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[
            pipeline(
                "target",
                json!([{"event": "schema.changed"}]),
                json!([webhook("n", "{{ event.spec_path }}")]),
            ),
            pipeline(
                "bystander",
                json!([{"event": "schema.changed"}]),
                json!([webhook("n", "x")]),
            ),
        ],
        None,
    );
    h.start();
    let id = h
        .engine
        .trigger_manual(
            "target",
            json!({"event_type": "schema.changed", "spec_path": "specs/a.yaml"}),
        )
        .unwrap();
    let e = h.finished("target").await;
    assert_eq!(e.id, id);
    assert!(e.manual);
    assert_eq!(e.status, ExecutionStatus::Succeeded);
    assert_eq!(runner.calls()[0].config["message"], "specs/a.yaml");
    h.settle().await;
    assert!(h.executions(Some("bystander")).is_empty());
    let ev = h.store.event(e.trigger_event_id).unwrap().unwrap();
    assert_eq!(ev.source.0, "api:manual");
    assert!(matches!(
        h.engine.trigger_manual("nope", json!({})),
        Err(TriggerError::NoPipeline(_))
    ));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_execution_keeps_the_pipeline_it_started_with() {
    let runner = TestRunner::with(&[("first", Act::Sleep(Duration::from_millis(400)))]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("first", "x"), webhook("second", "v1")]),
        )],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    wait_for("`first` to start", || {
        (!runner.calls_of("first").is_empty()).then_some(())
    })
    .await;
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("first", "x"), webhook("second", "v2")]),
        )],
        None,
    );
    let e = h.finished("p").await;
    assert_eq!(e.status, ExecutionStatus::Succeeded);
    assert_eq!(runner.calls_of("second")[0].config["message"], "v1");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_redacted_and_metrics_counted() {
    let runner = TestRunner::with(&[
        (
            "leaky",
            Act::Ok(json!({"message_id": "token=s3cret", "nested": ["s3cret"]})),
        ),
        (
            "fails",
            Act::Fail {
                retryable: false,
                message: "401 for key s3cret".into(),
            },
        ),
    ]);
    let metrics = mockops::metrics::Metrics::new();
    let mut o = opts();
    o.redact = Arc::new(|s: &str| s.replace("s3cret", "[redacted]"));
    o.metrics = Some(EngineMetrics::of(&metrics));
    let mut h = Harness::new(runner.clone(), o);
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("leaky", "x"), webhook("fails", "x")]),
        )],
        None,
    );
    h.start();
    h.post("release.published", json!({}));
    let e = h.finished("p").await;
    let stored = serde_json::to_string(&e).unwrap();
    assert!(!stored.contains("s3cret"), "{stored}");
    assert_eq!(e.steps[0].outputs["message_id"], "token=[redacted]");
    assert_eq!(e.error.as_deref(), Some("401 for key [redacted]"));
    let failed = serde_json::to_string(&events_of(&h.store, "pipeline.failed")).unwrap();
    assert!(!failed.contains("s3cret"));

    // The execution is counted once it is stored, so the count may trail the stored status.
    let failed_count = r#"mockops_pipeline_executions_total{pipeline="p",status="failed"} 1"#;
    wait_for("the failed execution to be counted", || {
        metrics.render().contains(failed_count).then_some(())
    })
    .await;
    let text = metrics.render();
    assert!(
        text.contains(r#"mockops_pipeline_steps_total{step_type="notify",status="succeeded"} 1"#),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_over_http_and_the_cli() {
    let runner = TestRunner::with(&[]);
    let mut h = Harness::new(runner.clone(), opts());
    apply(
        &h.store,
        &[pipeline(
            "p",
            json!([{"event": "release.published"}]),
            json!([webhook("n", "v={{ event.version }}")]),
        )],
        None,
    );
    h.start();
    // The daemon's routes with the pipeline routes merged in, as the daemon serves them.
    let shared = Arc::new(mockops::daemon::Shared::new(
        h.store.clone(),
        mockops::daemon::Live::default(),
        mockops::git::follow::Hints::new(),
        mockops::http::ApiAuth::write_only(Some("tok".into())),
    ));
    let app = mockops::daemon::api::router(shared).merge(mockops::pipeline::api::router(
        h.engine.clone(),
        mockops::http::ApiAuth::write_only(Some("tok".into())),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();

    let url = format!("{base}/api/v1/pipelines/p/trigger");
    let r = http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .post(&url)
        .bearer_auth("tok")
        .json(&json!({"event_type": "release.published", "version": "1.2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Json>().await.unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = http
        .post(format!("{base}/api/v1/pipelines/nope/trigger"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.finished("p").await;

    let list: Json = http
        .get(format!("{base}/api/v1/executions?pipeline=p"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["executions"][0]["id"], json!(id));
    assert_eq!(list["executions"][0]["status"], "succeeded");
    let one: Json = http
        .get(format!("{base}/api/v1/executions/{id}"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["steps"][0]["status"], "succeeded");
    assert_eq!(runner.calls()[0].config["message"], "v=1.2");
    let r = http
        .get(format!("{base}/api/v1/executions/0-none"))
        .bearer_auth("tok")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let cli = {
        let base = base.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::support::bin())
                .args(["pipelines", "--api", &base, "execution", &id])
                .env("MOCKOPS_API_TOKEN", "tok")
                .output()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let out = String::from_utf8_lossy(&cli.stdout);
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert!(out.contains("SUCCEEDED"), "{out}");
    assert!(
        out.contains("1. n (notify)  succeeded  attempts 1"),
        "{out}"
    );

    // The CLI: list, trigger from a file and wait, executions as JSON.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("token"), "tok\n").unwrap();
    // Reads find the token where the CLI looks by default, as writes do.
    std::fs::create_dir_all(work.path().join(".state")).unwrap();
    std::fs::write(work.path().join(".state/api-token"), "tok\n").unwrap();
    std::fs::write(
        work.path().join("event.json"),
        r#"{"event_type": "release.published", "version": "2.0"}"#,
    )
    .unwrap();
    let run = |args: Vec<String>| {
        let dir = work.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(crate::support::bin())
                .args(&args)
                .current_dir(dir)
                .env_remove("MOCKOPS_API_TOKEN")
                .env_remove("MOCKOPS_API_TOKEN_FILE")
                .output()
                .unwrap()
        })
    };
    let args = |a: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["pipelines".into(), "--api".into(), base.clone()];
        v.extend(a.iter().map(|s| s.to_string()));
        v
    };
    let out = run(args(&["list"])).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("release.published"), "{text}");
    assert!(text.contains(&format!("last run {id} succeeded")), "{text}");

    let out = run(args(&[
        "trigger",
        "p",
        "--event",
        "event.json",
        "--wait",
        "--api-token-file",
        "token",
    ]))
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("SUCCEEDED"), "{text}");
    assert_eq!(runner.calls()[1].config["message"], "v=2.0");

    let out = run(args(&["executions", "p", "--format", "json"]))
        .await
        .unwrap();
    let listed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["executions"].as_array().unwrap().len(), 2);

    let out = run(args(&["trigger", "p", "--api-token-file", "missing"]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the API token"));

    server.abort();
    h.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The daemon process killed with SIGKILL while a step's request is in flight.

/// `kill -9` of the daemon while the second of three steps waits for its target: after a
/// restart the execution resumes at that step, with the same idempotency key, and the step
/// that had finished is not run again.
#[test]
fn daemon_killed_mid_pipeline_resumes_at_the_interrupted_step() {
    use crate::support::daemon::{Daemon, http};
    use crate::support::receivers::{HttpReceiver, Reply};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(HttpReceiver::start());
    rx.reply_on("/b", Reply::Hang);
    let step = |name: &str| {
        format!(
            "    - name: {name}\n      step_type: notify\n      timeout: 120\n      config:\n        type: webhook\n        webhook_url: {}\n        message: \"{name} {{{{event.n}}}}\"\n",
            rx.url(&format!("/{name}"))
        )
    };
    let repo = repo_with_pipeline(
        "drill",
        &format!(
            "name: drill\ndefinition:\n  triggers:\n    - event: drill.started\n  steps:\n{}{}{}",
            step("a"),
            step("b"),
            step("c")
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let token = d.token();
    let (status, event) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(br#"{"event_type": "drill.started", "payload": {"n": 7}}"#.to_vec()),
        Some(&[("authorization", format!("Bearer {token}"))]),
    )
    .unwrap();
    assert_eq!(status, 201, "{event}");

    // `a` answered, `b` is in flight: kill the process there.
    let seen = rt.block_on(rx.wait_for(2));
    assert_eq!(
        seen.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    let page = d.get("/api/v1/executions?pipeline=drill");
    let id = page["executions"][0]["id"].as_str().unwrap().to_string();
    let running = d.get(&format!("/api/v1/executions/{id}"));
    assert_eq!(running["status"], "running", "{running:#}");
    assert_eq!(running["steps"][0]["status"], "succeeded", "{running:#}");
    assert_eq!(running["steps"][1]["status"], "running", "{running:#}");
    d.kill9();

    rx.reply_on("/b", Reply::Status(200, "ok".into()));
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let seen = rt.block_on(rx.wait_for(4));
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let e = d.get(&format!("/api/v1/executions/{id}"));
        if e["status"] != "running" {
            break e;
        }
        assert!(Instant::now() < deadline, "{e:#}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", d.log_text());
    let paths: Vec<&str> = seen.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/b", "/c"], "a is not sent again");
    assert_eq!(
        seen[1].header("x-mockops-delivery"),
        seen[2].header("x-mockops-delivery"),
        "the resumed step carries the same idempotency key"
    );
    assert!(seen[1].header("x-mockops-delivery").is_some());
    assert_eq!(done["steps"][0]["attempts"], 1, "{done:#}");
    assert_eq!(done["steps"][1]["status"], "succeeded", "{done:#}");
    assert_eq!(done["steps"][2]["attempts"], 1, "{done:#}");
    assert_eq!(seen[3].json()["message"], "c 7");

    // One execution, one triggered and one completed event.
    let events = d.all_events();
    let count = |t: &str| events.iter().filter(|e| e["event_type"] == t).count();
    assert_eq!(count("drill.started"), 1);
    assert_eq!(count("pipeline.triggered"), 1);
    assert_eq!(count("pipeline.completed"), 1);
    assert_eq!(count("pipeline.failed"), 0);
    let page = d.get("/api/v1/executions?pipeline=drill");
    assert_eq!(page["executions"].as_array().unwrap().len(), 1);
    assert!(d.terminate());
}

/// A Git repository in a temp dir holding one pipeline file.
fn repo_with_pipeline(name: &str, yaml: &str) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    git2::Repository::init_opts(
        repo.path(),
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    std::fs::create_dir_all(repo.path().join("pipelines")).expect("mkdir");
    std::fs::write(repo.path().join(format!("pipelines/{name}.yaml")), yaml).expect("write");
    crate::support::daemon::commit_all(repo.path(), "a pipeline");
    repo
}

/// Slack takes no idempotency key: the channels that accepted a message before the daemon
/// was killed are remembered in the store and not posted to again when the step resumes.
#[test]
fn slack_channels_already_posted_to_are_not_posted_again_after_sigkill() {
    use crate::support::daemon::{Daemon, http};
    use crate::support::receivers::{HttpReceiver, Reply};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(HttpReceiver::start());
    rx.reply_next(Reply::Status(200, "ok".into()));
    rx.reply_next(Reply::Hang);
    let repo = repo_with_pipeline(
        "announce",
        &format!(
            "name: announce\ndefinition:\n  triggers:\n    - event: release.published\n  steps:\n    - name: tell\n      step_type: notify\n      config:\n        type: slack\n        slack_webhook_url: {}\n        channels: [\"#one\", \"#two\"]\n        message: \"Released {{{{event.version}}}}\"\n",
            rx.url("/slack")
        ),
    );
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(br#"{"event_type": "release.published", "payload": {"version": "2.1"}}"#.to_vec()),
        Some(&[("authorization", format!("Bearer {}", d.token()))]),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let seen = rt.block_on(rx.wait_for(2));
    assert_eq!(seen[0].json()["channel"], "#one");
    assert_eq!(seen[1].json()["channel"], "#two");
    // `#one` accepted; `#two` has not answered: the process dies here.
    std::thread::sleep(Duration::from_millis(200));
    d.kill9();

    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let page = d.get("/api/v1/executions?pipeline=announce");
        let e = page["executions"][0].clone();
        if e["status"] == "succeeded" || e["status"] == "failed" {
            break d.get(&format!("/api/v1/executions/{}", e["id"].as_str().unwrap()));
        }
        assert!(Instant::now() < deadline, "{page:#}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(done["status"], "succeeded", "{done:#}\n{}", d.log_text());
    let channels: Vec<Json> = rx
        .requests()
        .iter()
        .map(|r| r.json()["channel"].clone())
        .collect();
    assert_eq!(channels, [json!("#one"), json!("#two"), json!("#two")]);
    let deliveries = &done["steps"][0]["outputs"]["deliveries"];
    assert_eq!(deliveries[0]["earlier_attempt"], true, "{done:#}");
    assert!(d.terminate());
}

/// Runs `notify` steps with a real notifier (receivers on loopback allowed).
struct NotifyRunner(mockops::pipeline::steps::notify::Notifier);

impl NotifyRunner {
    fn new() -> Arc<Self> {
        let outbound = Arc::new(
            mockops::outbound::OutboundPolicy::parse(["127.0.0.0/8", "::1"]).expect("policy"),
        );
        let client = mockops::pipeline::steps::notify::Notifier::http_client(
            Duration::from_secs(5),
            outbound.clone(),
        )
        .expect("http client");
        Arc::new(Self(
            mockops::pipeline::steps::notify::Notifier::new(
                client,
                Default::default(),
                mockops::secret::Redactor::new(),
            )
            .with_outbound(outbound),
        ))
    }
}

impl StepRunner for NotifyRunner {
    fn run<'a>(
        &'a self,
        _step_type: StepType,
        config: Json,
        ctx: &'a StepContext,
    ) -> Pin<Box<dyn Future<Output = Result<Outputs, StepError>> + Send + 'a>> {
        Box::pin(async move {
            let cfg: mockops::model::NotifyConfig =
                serde_json::from_value(config).map_err(|e| StepError::invalid(e.to_string()))?;
            self.0.send(&cfg, ctx).await
        })
    }
}

/// What the webhook receiver answers decides the retries, through the engine: a 503 is tried
/// again (and the second attempt delivers), a 400 is not, and a refused connection is retried
/// until the attempts run out. Each record keeps the message with its cause.
#[tokio::test]
async fn webhook_answers_decide_the_engines_retries_and_the_record_keeps_the_cause() {
    let rx = crate::support::receivers::HttpReceiver::start().await;
    let closed = crate::support::receivers::closed_port();
    let mut h = Harness::new(NotifyRunner::new(), opts());
    let step = |name: &str, url: String| {
        json!({"name": name, "step_type": "notify", "retries": 2,
               "config": {"type": "webhook", "message": "m", "webhook_url": url}})
    };
    apply(
        &h.store,
        &[
            pipeline(
                "flaky",
                json!([{"event": "flaky.happened"}]),
                json!([step("n", rx.url("/flaky"))]),
            ),
            pipeline(
                "bad",
                json!([{"event": "bad.happened"}]),
                json!([step("n", rx.url("/bad"))]),
            ),
            pipeline(
                "down",
                json!([{"event": "down.happened"}]),
                json!([step("n", format!("http://127.0.0.1:{closed}/down"))]),
            ),
        ],
        None,
    );
    h.start();

    rx.fail_next(1, 503, "busy, come back later");
    h.post("flaky.happened", json!({}));
    let flaky = h.finished("flaky").await;
    let s = &flaky.steps[0];
    assert_eq!(flaky.status, ExecutionStatus::Succeeded, "{flaky:#?}");
    assert_eq!(s.attempts, 2, "{s:#?}");
    let first = s
        .logs
        .iter()
        .find(|l| l.contains("attempt 1 failed"))
        .expect("the failed attempt is logged");
    assert!(first.contains("HTTP 503 Service Unavailable"), "{first}");
    assert!(first.contains("busy, come back later"), "{first}");
    assert!(first.contains("retrying in"), "{first}");

    rx.fail_next(1, 400, "field `text` is required");
    h.post("bad.happened", json!({}));
    let bad = h.finished("bad").await;
    let s = &bad.steps[0];
    assert_eq!(bad.status, ExecutionStatus::Failed, "{bad:#?}");
    assert_eq!(s.attempts, 1, "a 400 is not retried: {s:#?}");
    let error = s.error.as_deref().unwrap_or_default();
    assert!(error.contains("HTTP 400 Bad Request"), "{error}");
    assert!(error.contains("field `text` is required"), "{error}");
    assert!(
        s.logs.iter().any(|l| l.contains("failed (not retryable)")),
        "{s:#?}"
    );

    h.post("down.happened", json!({}));
    let down = h.finished("down").await;
    let s = &down.steps[0];
    assert_eq!(down.status, ExecutionStatus::Failed, "{down:#?}");
    assert_eq!(s.attempts, 3, "a refused connection is retried: {s:#?}");
    let error = s.error.as_deref().unwrap_or_default();
    // The message, then its causes down to the operating system's refusal.
    assert!(
        error.contains(&format!(
            "webhook http://127.0.0.1:{closed}/down: could not connect: "
        )),
        "{error}"
    );
    assert!(
        error.to_ascii_lowercase().contains("connection refused"),
        "the cause chain reaches the refused connection: {error}"
    );
    assert!(
        s.logs.iter().any(|l| l.contains("failed after 3 attempts")),
        "{s:#?}"
    );
}
