//! `mockops daemon`: follows one branch of one config repository into the store, serves the
//! HTTP API, and stops cleanly.
//!
//! Tasks: the reconcile loop (the only writer of commits), the API server, the pipeline
//! engine, the systemd watchdog (fed while the loop waits, fetches within its deadline or makes
//! progress), and retention. Watch events, webhooks and the poll timer only wake the reconcile
//! loop: it always reads the head from Git. READY goes to systemd once the daemon serves: at
//! once with an applied commit in the store, else when the first pass ends.

pub mod api;
pub mod demo;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::git::follow::local::{self, LocalFollower};
use crate::git::follow::remote::{self, HostKeyPolicy, RemoteAuth, RemoteConfig, RemoteFollower};
use crate::git::follow::webhook::{self, GithubWebhook};
use crate::git::follow::{BranchFollower, FollowError, Hints};
use crate::metrics::Metrics;
use crate::reconcile::{ReconcileError, Reconciler, SyncReport};
use crate::secret::SecretSource;
use crate::store::{Opened, RetentionPolicy, Store};
use crate::util::backoff::{Backoff, jittered};

/// How the daemon is configured (from the command line and the environment).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// A local repository to follow. With neither this nor `repo_url`, a demo repository is
    /// created in the state directory.
    pub repo: Option<PathBuf>,
    pub repo_url: Option<String>,
    /// The followed repository on GitHub's API (`owner/name`), when its URL does not say it:
    /// where pipeline management writes.
    pub github_repository: Option<String>,
    /// Branch to follow; default: the repository's current branch (local) or `main`.
    pub branch: Option<String>,
    pub state_dir: PathBuf,
    pub listen: SocketAddr,
    pub poll_interval: Duration,
    /// The GitHub push webhook's secret, read at each delivery (a rotated file takes effect at
    /// once).
    pub webhook_secret: Option<SecretSource>,
    /// Bearer token for write endpoints (and reads); generated into the state directory when
    /// not given.
    pub api_token: Option<String>,
    /// A token good for reads only.
    pub api_read_token: Option<String>,
    /// Serve reads (status, state, events, executions) without a token.
    pub anonymous_read: bool,
    /// What steps may do with the daemon's secrets, network and programs.
    pub security: crate::pipeline::steps::StepSecurity,
    pub replay_from: Option<String>,
    /// How long shutdown waits for the commit in progress.
    pub drain_timeout: Duration,
    /// Pipeline executions running at once.
    pub pipeline_concurrency: usize,
    /// Masks secret values in step records, API output and logs; give the one the log writer
    /// uses.
    pub redactor: crate::secret::Redactor,
    /// Credentials and trust for `repo_url`.
    pub remote: RemoteOptions,
    /// What the store and the mirror keep.
    pub retention: RetentionOptions,
    /// The federation gateway, when it is on.
    pub gateway: Option<crate::gateway::GatewayOptions>,
    /// Largest observed body drift validates (larger ones are recorded as skipped).
    pub drift_max_body: usize,
}

/// Retention of the store and of the remote mirror.
#[derive(Debug, Clone)]
pub struct RetentionOptions {
    pub store: RetentionPolicy,
    /// Step outputs of a finished execution are cut to this many bytes (0: no limit).
    pub max_step_output: usize,
    /// Objects of the mirror no longer reachable from the followed branch (or the applied
    /// commit) are dropped once they have been unreachable this long.
    pub mirror_prune_after: Duration,
    /// How often pruning runs (it also runs at start).
    pub interval: Duration,
    /// The gateway's traffic record.
    pub traffic: crate::store::Keep,
}

/// Default of `--retain-traffic`.
pub const DEFAULT_RETAIN_TRAFFIC: &str = "7d,1000000";

/// Default of `--max-step-output`.
pub const DEFAULT_MAX_STEP_OUTPUT: usize = 1024 * 1024;
/// Default of `--mirror-prune-after`.
pub const DEFAULT_MIRROR_PRUNE_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);
/// Default of `--prune-interval`.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

impl Default for RetentionOptions {
    fn default() -> Self {
        Self {
            store: RetentionPolicy::default(),
            max_step_output: DEFAULT_MAX_STEP_OUTPUT,
            mirror_prune_after: DEFAULT_MIRROR_PRUNE_AFTER,
            interval: DEFAULT_PRUNE_INTERVAL,
            traffic: crate::store::Keep {
                max_age: Some(Duration::from_secs(7 * 24 * 3600)),
                max_count: Some(1_000_000),
            },
        }
    }
}

/// How to reach a remote config repository.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// HTTPS token, read at every fetch (so rotated files work).
    pub token: Option<SecretSource>,
    /// User name sent with the token (default `x-access-token`, as GitHub expects).
    pub token_username: Option<String>,
    pub ssh_key: Option<PathBuf>,
    pub ssh_passphrase: Option<SecretSource>,
    /// Pinned SSH host key fingerprints (`SHA256:...`).
    pub ssh_host_keys: Vec<String>,
    pub ssh_known_hosts: Option<PathBuf>,
    pub fetch_timeout: Duration,
}

/// What the reconcile loop last saw, for status and health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Live {
    pub source: String,
    pub branch: String,
    pub head: Option<String>,
    pub last_sync_at: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub watcher_degraded: bool,
}

/// `/healthz` turns unhealthy after this many consecutive reconcile passes failed (a failed
/// fetch does not count: the last good state keeps serving while a remote is down).
pub const UNHEALTHY_AFTER_FAILED_PASSES: u32 = 3;
/// `/healthz` calls the reconcile loop stuck when it has been busy this long without progress.
pub const HEALTH_STUCK_AFTER: Duration = Duration::from_secs(120);
/// Grace beyond a fetch's own deadline before a fetch counts as stuck.
const FETCH_GRACE: Duration = Duration::from_secs(5);
/// Bound on reading the head of a local repository.
const LOCAL_HEAD_DEADLINE: Duration = Duration::from_secs(30);

/// What the reconcile loop is doing, for the watchdog and `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    /// Fetching (or reading the head), bounded by a deadline.
    Fetching = 1,
    /// Processing commits; progress is reported per commit and per stage.
    Reconciling = 2,
    /// Waiting for the poll timer or a hint: idle, not stuck, however long.
    Waiting = 3,
    /// The loop has ended.
    Ended = 4,
}

/// The reconcile loop's phase and progress, shared with the watchdog (lock-free: the
/// watchdog must never wait on the loop it watches).
#[derive(Debug)]
pub struct LoopState {
    epoch: Instant,
    phase: AtomicU8,
    /// Milliseconds since `epoch` of the last progress.
    progress_ms: AtomicU64,
    /// Milliseconds since `epoch` by which the current fetch must be over.
    deadline_ms: AtomicU64,
}

impl Default for LoopState {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            phase: AtomicU8::new(Phase::Starting as u8),
            progress_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(0),
        }
    }
}

impl LoopState {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            1 => Phase::Fetching,
            2 => Phase::Reconciling,
            3 => Phase::Waiting,
            4 => Phase::Ended,
            _ => Phase::Starting,
        }
    }

    /// Progress was made (a pass started, a commit moved on).
    pub fn progress(&self) {
        self.progress_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    pub fn enter(&self, phase: Phase) {
        self.progress();
        self.phase.store(phase as u8, Ordering::SeqCst);
    }

    /// Enters [`Phase::Fetching`], which may last until `deadline` from now.
    pub fn fetching(&self, deadline: Duration) {
        let until = self
            .now_ms()
            .saturating_add(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX));
        self.deadline_ms.store(until, Ordering::SeqCst);
        self.enter(Phase::Fetching);
    }

    /// Why the loop counts as stuck, if it does: busy without progress for longer than
    /// `threshold`, a fetch past its deadline, or the loop gone. Waiting is never stuck.
    pub fn stuck(&self, threshold: Duration) -> Option<String> {
        let now = self.now_ms();
        let threshold_ms = u64::try_from(threshold.as_millis()).unwrap_or(u64::MAX);
        match self.phase() {
            Phase::Waiting => None,
            Phase::Ended => Some("the reconcile loop has ended".into()),
            Phase::Fetching => {
                let deadline = self.deadline_ms.load(Ordering::SeqCst);
                (now > deadline).then(|| {
                    format!(
                        "a fetch has overrun its deadline by {} ms",
                        now.saturating_sub(deadline)
                    )
                })
            }
            Phase::Starting | Phase::Reconciling => {
                let idle = now.saturating_sub(self.progress_ms.load(Ordering::SeqCst));
                (idle > threshold_ms).then(|| {
                    format!(
                        "no reconcile progress for {} ms while processing commits",
                        idle
                    )
                })
            }
        }
    }
}

/// The daemon's health, for `/healthz` and status.
#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// What is wrong, when something is.
    pub problems: Vec<String>,
}

/// State shared by the tasks of one daemon.
pub struct Shared {
    pub store: Store,
    pub metrics: Metrics,
    pub live: RwLock<Live>,
    /// Wakes the reconcile loop ("look now"): the watcher, the webhook and the API poke it.
    pub hints: Hints,
    /// Wakes pipeline dispatch after events are stored.
    pub events_stored: Arc<Notify>,
    /// Who may read and write through the API.
    pub auth: crate::http::ApiAuth,
    /// Monotonic seconds of the reconcile loop's last pass (kept for callers of
    /// [`Shared::since_beat`]).
    pub heartbeat: AtomicU64,
    /// Numbered "sync now" requests (`POST /api/v1/sync`), and the highest one a whole pass of
    /// the reconcile loop (fetch, then every new commit) has started after.
    pub sync_requested: AtomicU64,
    pub sync_served: AtomicU64,
    pub started: Instant,
    /// What the reconcile loop is doing (watchdog, health).
    pub loop_state: Arc<LoopState>,
    /// Consecutive reconcile passes that failed (fetch failures excluded).
    pub failed_passes: AtomicU32,
    /// READY has been sent to systemd.
    pub ready: AtomicBool,
    /// The last applied commit, published after every pass (the gateway follows it).
    pub applied: tokio::sync::watch::Sender<Option<String>>,
    /// The federation gateway, when it runs.
    pub gateway: std::sync::OnceLock<Arc<crate::gateway::Gateway>>,
    /// Where observations of upstreams go (the drift writer reads them); never waits.
    pub observations: crate::drift::ObservationSender,
    /// The receiving end of `observations`, until the drift writer takes it.
    pub observed_rx: Mutex<Option<tokio::sync::mpsc::Receiver<crate::drift::Observation>>>,
    /// Drift detection (contracts, reachability, probes), once started.
    pub drift: std::sync::OnceLock<Arc<crate::drift::detect::Drift>>,
}

impl Shared {
    /// The Git directory applied commits are read from, once the daemon has opened its
    /// source (drift detection holds it).
    pub fn repo_path(&self) -> Option<&std::path::Path> {
        self.drift.get().map(|d| d.repo())
    }

    pub fn new(store: Store, live: Live, hints: Hints, auth: crate::http::ApiAuth) -> Self {
        let metrics = Metrics::new();
        let (observations, observed_rx) =
            crate::drift::ObservationSender::new(metrics.drift_observations_dropped.clone());
        Self {
            store,
            metrics,
            live: RwLock::new(live),
            hints,
            events_stored: Arc::new(Notify::new()),
            auth,
            heartbeat: AtomicU64::new(0),
            sync_requested: AtomicU64::new(0),
            sync_served: AtomicU64::new(0),
            started: Instant::now(),
            loop_state: Arc::new(LoopState::default()),
            failed_passes: AtomicU32::new(0),
            ready: AtomicBool::new(false),
            applied: tokio::sync::watch::Sender::new(None),
            gateway: std::sync::OnceLock::new(),
            observations,
            observed_rx: Mutex::new(Some(observed_rx)),
            drift: std::sync::OnceLock::new(),
        }
    }

    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_secs(), Ordering::Relaxed);
        self.loop_state.progress();
    }

    /// Seconds the reconcile loop has been stuck (0 while it waits, fetches within its
    /// deadline, or makes progress).
    pub fn since_beat(&self) -> u64 {
        match self.loop_state.stuck(Duration::ZERO) {
            None => 0,
            Some(_) => {
                let now = self.loop_state.now_ms();
                now.saturating_sub(self.loop_state.progress_ms.load(Ordering::SeqCst)) / 1000
            }
        }
    }

    /// Unhealthy while store writes fail, the store cannot be read, the reconcile loop is
    /// stuck, or the last [`UNHEALTHY_AFTER_FAILED_PASSES`] passes failed.
    pub fn health(&self) -> Health {
        let mut problems = Vec::new();
        if let Some(f) = self.store.fault() {
            problems.push(format!("store: writes are failing: {f}"));
        } else if let Err(e) = self.store.cursor() {
            problems.push(format!("store: cannot be read: {e}"));
        }
        if let Some(why) = self.loop_state.stuck(HEALTH_STUCK_AFTER) {
            problems.push(format!("reconcile loop stuck: {why}"));
        }
        let failed = self.failed_passes.load(Ordering::SeqCst);
        if failed >= UNHEALTHY_AFTER_FAILED_PASSES {
            let last = self
                .live
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .last_error
                .clone()
                .unwrap_or_default();
            problems.push(format!(
                "the last {failed} reconcile passes failed (last error: {last})"
            ));
        }
        Health {
            healthy: problems.is_empty(),
            problems,
        }
    }

    /// Tells systemd the daemon is ready (once), with what it serves.
    pub fn mark_ready(&self, what: &str) {
        if !self.ready.swap(true, Ordering::SeqCst) {
            tracing::info!(serving = %what, "ready");
            let status = format!("serving {what}");
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status(&status),
            ]);
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled (`mockops daemon` cancels it on SIGTERM or
/// SIGINT; tests cancel it directly) or a fatal error (a `--replay-from` revision that does not
/// resolve). On shutdown the reconcile loop stops between two commits, and every task is
/// awaited for at most `drain_timeout`.
pub async fn run(cfg: DaemonConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let source = resolve_source(&cfg)?;
    // A bad --replay-from is refused before anything is stored. A remote's history is known
    // only after the first fetch: the loop checks it then, before its baseline.
    if let (Some(rev), BranchFollower::Local(_)) = (&cfg.replay_from, &source)
        && let Ok(head) = source.head()
    {
        crate::reconcile::resolve_replay_from(source.repo_path(), rev, head, source.branch())?;
    }
    let (store, opened) = Store::open(&cfg.state_dir)?;
    match &opened {
        Opened::Rebuilt {
            moved_to, reason, ..
        } => tracing::warn!(
            moved_to = %moved_to.display(), %reason,
            "the store was unreadable; it was moved aside and is rebuilt from Git"
        ),
        Opened::Created => tracing::info!(dir = %cfg.state_dir.display(), "new store"),
        Opened::Existing => {}
    }
    store.set_output_budget(cfg.retention.max_step_output);
    let api_token = match &cfg.api_token {
        Some(t) => Some(t.clone()),
        None => Some(api_token_in(&cfg.state_dir)?),
    };
    for t in api_token.iter().chain(cfg.api_read_token.iter()) {
        cfg.redactor.register(t);
    }
    if cfg.anonymous_read {
        tracing::warn!(
            "--anonymous-read: status, desired state, events and executions are served to anyone who can reach the API"
        );
    }
    let auth = crate::http::ApiAuth {
        write: api_token,
        read: cfg.api_read_token.clone(),
        anonymous_read: cfg.anonymous_read,
    };
    let promotion_key = crate::promotion::PromotionKey::load_or_create(&cfg.state_dir)?;
    // The one token every task stops on: the caller's shutdown, or a fatal error of the
    // reconcile loop (which cancels this child only).
    let cancel = shutdown.child_token();
    let mut reconciler = Reconciler::new(
        store.clone(),
        source.repo_path(),
        source.branch(),
        cfg.replay_from.clone(),
        &opened,
    )?
    .with_promotion_key(promotion_key.clone())
    .with_shutdown(cancel.clone());
    let shared = Arc::new(Shared::new(
        store,
        Live {
            source: source.describe(),
            branch: source.branch().to_string(),
            ..Live::default()
        },
        source.hints().clone(),
        auth,
    ));
    {
        let state = shared.loop_state.clone();
        reconciler.set_progress(Arc::new(move || state.progress()));
    }
    let fatal: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, source = %source.describe(), branch = %source.branch(), "mockops daemon started");

    let redactor = cfg.redactor.clone();
    // The demo runs its whole loop here: Slack steps go to the daemon's own inbox.
    let demo_inbox = (cfg.repo.is_none() && cfg.repo_url.is_none())
        .then(|| Arc::new(demo::Inbox::new(&cfg.state_dir)));
    let mut security = cfg.security.clone();
    if demo_inbox.is_some() {
        let mut outbound = (*security.outbound).clone();
        outbound.allow_ip(addr.ip());
        if addr.ip().is_unspecified() {
            outbound.allow_ip(std::net::IpAddr::from([127, 0, 0, 1]));
            outbound.allow_ip(std::net::IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]));
        }
        security.outbound = Arc::new(outbound);
        if security.slack_webhook.is_none() {
            let url = demo::Inbox::slack_url(addr);
            tracing::info!(%url, "demo: Slack notifications go to the demo inbox (GET /demo/inbox)");
            security.slack_webhook = Some(SecretSource::Value(crate::secret::Secret::new(url)));
        }
    }
    let steps = crate::pipeline::steps::Runner::new(
        shared.store.clone(),
        source.repo_path().to_path_buf(),
        source.branch().to_string(),
        match &cfg.repo_url {
            Some(u) => u.clone(),
            None => source.repo_path().display().to_string(),
        },
        redactor.clone(),
        crate::pipeline::steps::StepSecurity {
            promotion_key: Some(promotion_key),
            local_git_dirs: cfg
                .security
                .local_git_dirs
                .iter()
                .cloned()
                .chain([cfg.state_dir.join("remotes")])
                .collect(),
            git_pushes: crate::pipeline::steps::create_pr::GitRemote {
                host_keys: host_key_policy(&cfg.remote),
                deadline: cfg.remote.fetch_timeout,
                ..Default::default()
            },
            config_remote_auth: remote_auth(&cfg.remote),
            ..security.clone()
        },
    )
    .context("cannot build the HTTP client for notifications")?;
    // Pipeline management writes to the followed repository with the promotions' credentials.
    let manager = Arc::new(
        crate::pipeline::manage::Manager::for_runner(&steps)
            .with_github_repository(cfg.github_repository.clone())
            .on_written({
                let hints = shared.hints.clone();
                Arc::new(move || hints.poke())
            }),
    );
    tracing::info!(
        outbound = %security.outbound.describe(),
        secret_dirs = ?security.secrets.file_dirs,
        generator_commands = security.allow_generator_commands,
        "what steps may reach"
    );
    let engine = crate::pipeline::Engine::new(
        shared.store.clone(),
        steps,
        crate::pipeline::EngineOptions {
            metrics: Some(crate::pipeline::EngineMetrics::of(&shared.metrics)),
            redact: Arc::new(move |s: &str| redactor.redact(s).into_owned()),
            concurrency: cfg.pipeline_concurrency.max(1),
            ..Default::default()
        },
    );
    let pipelines = tokio::spawn(
        engine
            .clone()
            .run(cancel.clone(), shared.events_stored.clone()),
    );
    let fetch_deadline = match &source {
        BranchFollower::Remote(_) => {
            cfg.remote.fetch_timeout + Duration::from_secs(1) + FETCH_GRACE
        }
        BranchFollower::Local(_) => LOCAL_HEAD_DEADLINE,
    };
    let reconcile = tokio::spawn(reconcile_loop(
        shared.clone(),
        reconciler,
        source.clone(),
        LoopOptions {
            poll: cfg.poll_interval,
            backoff_base: Duration::from_secs(1),
            fetch_deadline,
        },
        cancel.clone(),
        fatal.clone(),
    ));
    let server = {
        let mut app = api::router(shared.clone())
            .merge(crate::pipeline::api::router(
                engine.clone(),
                shared.auth.clone(),
            ))
            .merge(crate::pipeline::api::manage_router(
                manager,
                shared.auth.clone(),
            ));
        if let Some(inbox) = &demo_inbox {
            app = app.merge(inbox.clone().router());
        }
        if let Some(secret) = &cfg.webhook_secret {
            app = app.route(
                "/api/v1/webhooks/github",
                webhook::github_route(GithubWebhook {
                    secret: secret.clone(),
                    redactor: cfg.redactor.clone(),
                    branch: source.branch().to_string(),
                    hints: source.hints().clone(),
                }),
            );
        }
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "the API server failed");
            }
        })
    };
    publish_applied(&shared);
    let mut gateway_tasks = Vec::new();
    if let Some(opts) = &cfg.gateway {
        let secrets = crate::secret::Secrets::new(cfg.redactor.clone())
            .with_policy(cfg.security.secrets.clone());
        if let Some((gateway, tasks)) = crate::gateway::start(
            opts,
            source.repo_path().to_path_buf(),
            shared.store.clone(),
            security.outbound.clone(),
            secrets,
            crate::gateway::GatewayMetrics::of(&shared.metrics),
            shared.observations.clone(),
            shared.applied.subscribe(),
            cancel.clone(),
        )
        .await?
        {
            let _ = shared.gateway.set(gateway);
            gateway_tasks = tasks;
        }
    }
    // Serving the last good state: ready now. A fresh store is ready once the first pass has
    // ended, however it ended; until then systemd's start timeout is extended, so a slow first
    // clone is not killed and restarted.
    match shared.store.cursor() {
        Ok(c) if c.last_applied.is_some() => shared.mark_ready(&format!(
            "the last applied commit {}",
            c.last_applied.map(|r| r.sha).unwrap_or_default()
        )),
        _ => {}
    }
    // Drift: the one writer of incidents, and the probe scheduler.
    let drift = Arc::new(crate::drift::detect::Drift::new(
        shared.store.clone(),
        source.repo_path().to_path_buf(),
        crate::drift::detect::DriftMetrics::of(&shared.metrics),
        cfg.drift_max_body,
        shared.observations.clone(),
        security.outbound.clone(),
        crate::secret::Secrets::new(cfg.redactor.clone()).with_policy(cfg.security.secrets.clone()),
        shared.events_stored.clone(),
    ));
    let _ = shared.drift.set(drift.clone());
    let observed_rx = shared
        .observed_rx
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    let drift_writer = match observed_rx {
        Some(rx) => tokio::spawn(crate::drift::detect::writer(
            drift.clone(),
            rx,
            shared.applied.subscribe(),
            cancel.clone(),
        )),
        None => tokio::spawn(async {}),
    };
    let analytics = tokio::spawn(crate::analytics::warm(
        source.repo_path().to_path_buf(),
        shared.applied.subscribe(),
        cancel.clone(),
    ));
    let probes = tokio::spawn(crate::drift::probe::scheduler(drift, cancel.clone()));
    let starting = tokio::spawn(extend_start_timeout(shared.clone(), cancel.clone()));
    let watchdog = tokio::spawn(watchdog(shared.clone(), cancel.clone()));
    let maintenance = tokio::spawn(maintenance(
        shared.clone(),
        source.clone(),
        cfg.retention.clone(),
        cancel.clone(),
    ));

    cancel.cancelled().await;
    let fatal = fatal.lock().unwrap_or_else(|e| e.into_inner()).take();
    if fatal.is_none() {
        tracing::info!("shutting down: finishing the commit in progress");
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    let mut tasks = [
        ("reconcile loop", reconcile),
        ("API server", server),
        ("pipeline engine", pipelines),
        ("watchdog", watchdog),
        ("start-timeout extender", starting),
        ("retention", maintenance),
        ("drift writer", drift_writer),
        ("probe scheduler", probes),
        ("analytics", analytics),
    ];
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        for (_, task) in tasks.iter_mut() {
            let _ = task.await;
        }
        for task in gateway_tasks.iter_mut() {
            let _ = task.await;
        }
    })
    .await;
    if drained.is_err() {
        let pending: Vec<&str> = tasks
            .iter()
            .filter(|(_, t)| !t.is_finished())
            .map(|(name, _)| *name)
            .collect();
        for (_, task) in &tasks {
            task.abort();
        }
        for task in &gateway_tasks {
            task.abort();
        }
        tracing::warn!(
            timeout = ?cfg.drain_timeout, ?pending,
            "drain deadline passed; exiting (every commit is applied atomically, so nothing is half-written)"
        );
    }
    if let Some(msg) = fatal {
        anyhow::bail!("{msg}");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The credentials of the followed remote: an SSH key, else a token, else none.
fn remote_auth(r: &RemoteOptions) -> RemoteAuth {
    if let Some(key) = &r.ssh_key {
        RemoteAuth::SshKey {
            private_key: key.clone(),
            passphrase: r.ssh_passphrase.clone(),
        }
    } else if let Some(token) = &r.token {
        RemoteAuth::Token {
            username: r
                .token_username
                .clone()
                .unwrap_or_else(|| remote::DEFAULT_TOKEN_USERNAME.to_string()),
            token: token.clone(),
        }
    } else {
        RemoteAuth::None
    }
}

/// The SSH host keys the operator trusts, for fetches and pushes alike.
fn host_key_policy(r: &RemoteOptions) -> HostKeyPolicy {
    HostKeyPolicy {
        fingerprints: r.ssh_host_keys.clone(),
        known_hosts: r.ssh_known_hosts.clone(),
    }
}

fn resolve_source(cfg: &DaemonConfig) -> anyhow::Result<BranchFollower> {
    if let Some(url) = &cfg.repo_url {
        let mut rc = RemoteConfig::new(
            url.clone(),
            cfg.branch.clone().unwrap_or_else(|| "main".to_string()),
            cfg.state_dir.join("mirror.git"),
        );
        rc.redactor = cfg.redactor.clone();
        let r = &cfg.remote;
        rc.auth = remote_auth(r);
        rc.host_keys = host_key_policy(r);
        rc.fetch_deadline = r.fetch_timeout;
        rc.prune_unreachable_after = cfg.retention.mirror_prune_after;
        remote::set_network_timeouts(Duration::from_secs(10), Duration::from_secs(30));
        let source = RemoteFollower::new(rc).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(BranchFollower::Remote(source));
    }
    let path = match &cfg.repo {
        Some(p) => p.clone(),
        None => {
            let p = demo::ensure(&cfg.state_dir).context("cannot create the demo repository")?;
            tracing::info!(
                repo = %p.display(),
                "no repository given: following the demo repository (commit to it to see events)"
            );
            p
        }
    };
    let local =
        LocalFollower::open(&path, cfg.branch.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    local.start_watching(local::DEFAULT_DEBOUNCE);
    Ok(BranchFollower::Local(local))
}

/// The API token kept in the state directory, made on first use from the operating system's
/// CSPRNG (readable by the owner only). An existing file that others may read is refused.
pub fn api_token_in(state_dir: &Path) -> anyhow::Result<String> {
    let path = state_dir.join("api-token");
    match read_private_token(&path, "API token", 0o077) {
        Ok(Some(t)) => return Ok(t),
        Ok(None) => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read the operating system's random source: {e}"))?;
    let token = hex::encode(bytes);
    write_private(&path, &token).with_context(|| format!("cannot write {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated an API token");
    Ok(token)
}

/// Reads a token file: `None` when it does not exist or is empty; an error, saying how to fix
/// it, when its mode has any of the `refused` bits: `0o077` (nothing wider than 0600) for the
/// token the daemon keeps itself, `0o027` for a file the operator mounts (a Kubernetes Secret
/// volume with `fsGroup` is group-readable by the pod's own group; never writable by the
/// group, never open to others).
pub fn read_private_token(path: &Path, what: &str, refused: u32) -> anyhow::Result<Option<String>> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read the {what} file {}", path.display()));
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & refused == 0,
        "the {what} file {} has mode {mode:04o}: others could read or change it; make it \
         readable by the daemon's user only (`chmod 600 {}`; Kubernetes: `defaultMode: 0440` or \
         narrower on the Secret volume)",
        path.display(),
        path.display()
    );
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let t = t.trim().to_string();
    Ok((!t.is_empty()).then_some(t))
}

fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content.as_bytes())
}

/// How the reconcile loop runs.
#[derive(Debug, Clone, Copy)]
struct LoopOptions {
    poll: Duration,
    /// First delay after a failed pass (doubling, with jitter, up to the poll interval or a
    /// minute).
    backoff_base: Duration,
    /// Longest a fetch (or a local head read) may take before the loop counts as stuck.
    fetch_deadline: Duration,
}

/// Why a pass failed: a bounded kind (metrics), the message, and the commit it was on.
#[derive(Debug)]
struct PassFailure {
    kind: &'static str,
    message: String,
    commit: Option<String>,
    /// The pass cannot go on: the daemon exits with this message.
    fatal: bool,
}

/// One pass of the reconciler over the commits up to `head`, on the blocking pool. A panic is
/// caught here: the pass fails, the reconciler re-reads the applied state, and the next pass
/// runs normally (nothing stays poisoned).
fn reconcile_pass(r: &mut Reconciler, head: crate::git::Oid) -> Result<SyncReport, PassFailure> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.sync(head)));
    match result {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(PassFailure {
            kind: match e {
                ReconcileError::Store(_) => "store",
                _ => "reconcile",
            },
            fatal: matches!(e, ReconcileError::Replay { .. }),
            message: e.to_string(),
            commit: r.current_commit().map(str::to_string),
        }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            let commit = r.current_commit().map(str::to_string);
            if let Err(e) = r.recover() {
                tracing::error!(error = %e, "cannot re-read the applied state after a panic");
            }
            Err(PassFailure {
                kind: "panic",
                message: format!("internal error (panic): {message}"),
                commit,
                fatal: false,
            })
        }
    }
}

/// The reconcile loop. It owns the reconciler: each pass moves it onto the blocking pool and
/// gets it back when the pass ends (nothing else can reach it meanwhile).
async fn reconcile_loop(
    shared: Arc<Shared>,
    mut reconciler: Reconciler,
    source: BranchFollower,
    opts: LoopOptions,
    cancel: CancellationToken,
    fatal: Arc<Mutex<Option<String>>>,
) {
    /// Marks the loop ended however it ends (a panic in the loop itself included), so the
    /// watchdog stops vouching for it.
    struct Ended(Arc<LoopState>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.enter(Phase::Ended);
        }
    }
    let _ended = Ended(shared.loop_state.clone());
    let state = shared.loop_state.clone();
    let poll = opts.poll;
    let mut backoff = Backoff::new(opts.backoff_base, poll.max(Duration::from_secs(60)));
    // A degraded watcher is set up again now and then: the cause (an inotify limit) may be gone.
    let mut rearm = Backoff::new(Duration::from_secs(30), Duration::from_secs(30 * 60));
    let mut next_rearm: Option<tokio::time::Instant> = None;
    // A commit that panicked: skipped (recorded) if it panics again on the next attempt.
    let mut panicked_on: Option<String> = None;
    loop {
        shared.beat();
        let serving = shared.sync_requested.load(Ordering::SeqCst);
        state.fetching(opts.fetch_deadline);
        let outcome = match source.refresh_async().await {
            Err(e) => Err(PassFailure {
                kind: fetch_kind(&e),
                message: e.to_string(),
                commit: None,
                fatal: false,
            }),
            Ok(head) => {
                state.enter(Phase::Reconciling);
                let pass = tokio::task::spawn_blocking(move || {
                    let mut r = reconciler;
                    let outcome = reconcile_pass(&mut r, head);
                    (r, outcome)
                })
                .await;
                match pass {
                    Ok((r, outcome)) => {
                        reconciler = r;
                        outcome.map(|report| (head, report))
                    }
                    Err(join) => {
                        // `reconcile_pass` catches panics of a pass, so this is a panic in
                        // the recovery itself: the reconciler is gone with it.
                        let msg = format!("the reconciler was lost in a failed pass: {join}");
                        tracing::error!(error = %msg, "cannot continue");
                        *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
                        cancel.cancel();
                        return;
                    }
                }
            }
        };
        // Busy again (bookkeeping, recording a failure): progress-based, not deadline-based.
        state.enter(Phase::Reconciling);
        // Keep what the reconciler may compare with in the mirror, whatever pruning says.
        if let BranchFollower::Remote(r) = &source
            && let Ok(Some(applied)) = shared.store.cursor().map(|c| c.last_applied)
            && let Ok(oid) = crate::git::Oid::from_str(&applied.sha)
        {
            r.keep_commits(vec![oid]);
        }
        let now = crate::util::time::now_rfc3339();
        if let BranchFollower::Local(local) = &source
            && local.hints().is_degraded()
        {
            let due =
                *next_rearm.get_or_insert_with(|| tokio::time::Instant::now() + rearm.next_delay());
            if tokio::time::Instant::now() >= due {
                if local.rearm_watching(local::DEFAULT_DEBOUNCE) {
                    rearm.reset();
                    next_rearm = None;
                } else {
                    next_rearm = Some(tokio::time::Instant::now() + rearm.next_delay());
                }
            }
        }
        {
            let degraded = source.hints().is_degraded();
            shared.metrics.watcher_degraded.set(i64::from(degraded));
            let mut live = shared.live.write().unwrap_or_else(|e| e.into_inner());
            live.watcher_degraded = degraded;
        }
        let failing = match outcome {
            Ok((head, report)) => {
                record(&shared, &report);
                if report.processed.iter().any(|p| !p.events.is_empty()) {
                    shared.events_stored.notify_one();
                }
                shared.failed_passes.store(0, Ordering::SeqCst);
                panicked_on = None;
                let mut live = shared.live.write().unwrap_or_else(|e| e.into_inner());
                live.head = Some(head.to_string());
                live.last_sync_at = Some(now);
                live.last_error = None;
                live.consecutive_failures = 0;
                backoff.reset();
                false
            }
            Err(f) if f.fatal => {
                tracing::error!(kind = f.kind, error = %f.message, "cannot continue");
                *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(f.message);
                cancel.cancel();
                break;
            }
            Err(f) => {
                shared.metrics.failure(f.kind);
                let reconcile_side = !is_fetch_failure(f.kind);
                if reconcile_side {
                    shared.failed_passes.fetch_add(1, Ordering::SeqCst);
                }
                let on = f
                    .commit
                    .as_deref()
                    .map(|c| format!(" (commit {c})"))
                    .unwrap_or_default();
                tracing::error!(
                    kind = f.kind, commit = f.commit.as_deref().unwrap_or(""), error = %f.message,
                    "sync failed; the last applied state keeps serving"
                );
                {
                    let mut live = shared.live.write().unwrap_or_else(|e| e.into_inner());
                    live.last_error = Some(format!("{}: {}{on}", f.kind, f.message));
                    live.consecutive_failures += 1;
                }
                if f.kind == "panic"
                    && let Some(commit) = f.commit
                {
                    if panicked_on.as_deref() == Some(commit.as_str()) {
                        // Twice on the same commit: not a passing accident. Record it like an
                        // invalid commit, so the daemon moves on past it.
                        let (c, m) = (commit.clone(), f.message.clone());
                        let recorded = tokio::task::spawn_blocking(move || {
                            let mut r = reconciler;
                            let recorded = r.record_internal_error(&c, &m);
                            (r, recorded)
                        })
                        .await;
                        match recorded {
                            Ok((r, recorded)) => {
                                reconciler = r;
                                match recorded {
                                    Ok(()) => tracing::error!(
                                        %commit, "the commit panicked twice: recorded as failed and skipped"
                                    ),
                                    Err(e) => {
                                        tracing::error!(%commit, error = %e, "cannot record the failed commit")
                                    }
                                }
                            }
                            Err(join) => {
                                let msg = format!(
                                    "the reconciler was lost recording a failed commit: {join}"
                                );
                                tracing::error!(%commit, error = %msg, "cannot continue");
                                *fatal.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
                                cancel.cancel();
                                return;
                            }
                        }
                        panicked_on = None;
                    } else {
                        panicked_on = Some(commit);
                    }
                }
                true
            }
        };
        publish_applied(&shared);
        // While store writes fail, try one now and then: health must clear once they work.
        if shared.store.fault().is_some() {
            let store = shared.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.probe_write()).await;
        }
        shared.sync_served.fetch_max(serving, Ordering::SeqCst);
        // The first pass is over, whatever its outcome: the daemon serves what it has.
        if !shared.ready.load(Ordering::SeqCst) {
            let what = match shared.store.cursor().map(|c| c.last_applied) {
                Ok(Some(r)) => format!("commit {}", r.sha),
                _ => "no applied commit yet (see status for why)".to_string(),
            };
            shared.mark_ready(&what);
        }
        let wait = if failing {
            backoff.next_delay()
        } else if source.hints().is_degraded() {
            jittered(poll.min(Duration::from_secs(10)), 0.1)
        } else {
            jittered(poll, 0.1)
        };
        state.enter(Phase::Waiting);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = source.hints().wait() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Tells the gateway which commit is applied now (only when it changed).
fn publish_applied(shared: &Shared) {
    if let Ok(Some(applied)) = shared.store.cursor().map(|c| c.last_applied) {
        shared.applied.send_if_modified(|current| {
            if current.as_deref() == Some(applied.sha.as_str()) {
                false
            } else {
                *current = Some(applied.sha);
                true
            }
        });
    }
}

/// Failures of the source (network, credentials, a missing branch) rather than of the
/// reconciler: they do not make the daemon unhealthy, since it keeps serving its last state.
fn is_fetch_failure(kind: &str) -> bool {
    !matches!(kind, "reconcile" | "store" | "panic")
}

/// A bounded label for failures of the source.
fn fetch_kind(e: &FollowError) -> &'static str {
    match e {
        FollowError::Fetch(f) => f.kind(),
        FollowError::NotFetched { .. } => "not_fetched",
        FollowError::BranchMissing { .. } => "branch_missing",
        _ => "source",
    }
}

fn record(shared: &Shared, report: &SyncReport) {
    let m = &shared.metrics;
    for p in &report.processed {
        let status = serde_json::to_value(p.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        m.commits
            .get_or_create(&Metrics::label("status", status))
            .inc();
        m.reconcile_duration.observe(p.duration_ms / 1000.0);
        for t in &p.event_types {
            m.events
                .get_or_create(&Metrics::label("type", t.clone()))
                .inc();
        }
        if p.status != crate::store::RevisionStatus::Invalid {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            m.last_applied.set(secs);
        }
    }
}

/// Feeds the systemd watchdog while the daemon is healthy, whatever the poll interval and
/// however long a fetch within its deadline takes; stops when the reconcile loop is stuck
/// (busy without progress for longer than the watchdog interval, a fetch past its deadline, or
/// the loop gone), so systemd restarts the daemon.
async fn watchdog(shared: Arc<Shared>, cancel: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let tick = (period / 3).max(Duration::from_millis(10));
    let mut stuck_logged = false;
    loop {
        match shared.loop_state.stuck(period) {
            None => {
                stuck_logged = false;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            Some(why) if !stuck_logged => {
                stuck_logged = true;
                tracing::error!(%why, "the reconcile loop is stuck: no longer feeding the systemd watchdog");
            }
            Some(_) => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Until READY is sent, asks systemd for more start time now and then, so a slow first clone
/// is not taken for a hung start.
async fn extend_start_timeout(shared: Arc<Shared>, cancel: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(10);
    const EXTEND_USEC: u32 = 30_000_000;
    while !shared.ready.load(Ordering::SeqCst) {
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::ExtendTimeoutUsec(EXTEND_USEC),
            sd_notify::NotifyState::Status("starting: first fetch and reconcile pass"),
        ]);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}

/// Applies retention at start and then every `opts.interval`: the store (events, revisions,
/// executions, dedup keys, delivery records) and, for a remote, the mirror.
async fn maintenance(
    shared: Arc<Shared>,
    source: BranchFollower,
    opts: RetentionOptions,
    cancel: CancellationToken,
) {
    loop {
        let store = shared.store.clone();
        let policy = opts.store;
        let traffic_keep = opts.traffic;
        match tokio::task::spawn_blocking(move || {
            // Deliveries are remembered for resumed steps; a week is far beyond any retry.
            let deliveries = store.prune_deliveries(Duration::from_secs(7 * 24 * 3600))?;
            let traffic = store.prune_traffic(&traffic_keep, std::time::SystemTime::now())?;
            store.prune_scenario_runs(&policy.executions, std::time::SystemTime::now())?;
            if traffic > 0 {
                tracing::info!(exchanges = traffic, "retention: pruned the traffic record");
            }
            Ok::<_, crate::store::StoreError>((store.prune(&policy)?, deliveries))
        })
        .await
        {
            Ok(Ok((pruned, deliveries))) => {
                if !pruned.is_empty() || deliveries > 0 {
                    tracing::info!(
                        events = pruned.events,
                        revisions = pruned.revisions,
                        executions = pruned.executions,
                        dedup_keys = pruned.dedup_keys,
                        deliveries,
                        "retention: pruned"
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention: cannot prune the store"),
            Err(e) => tracing::warn!(error = %e, "retention: the pruning task failed"),
        }
        if let BranchFollower::Remote(r) = &source {
            let r = r.clone();
            let after = opts.mirror_prune_after;
            match tokio::task::spawn_blocking(move || r.prune_mirror(after)).await {
                Ok(Ok(Some(c))) => tracing::info!(
                    objects = c.objects,
                    dropped = c.dropped,
                    unreachable_kept = c.unreachable_kept,
                    "retention: mirror repacked"
                ),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "retention: cannot prune the mirror"),
                Err(e) => tracing::warn!(error = %e, "retention: the mirror pruning task failed"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(opts.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for e in std::fs::read_dir(from).expect("read dir") {
            let e = e.expect("entry");
            let target = to.join(e.file_name());
            if e.file_type().expect("type").is_dir() {
                copy_dir(&e.path(), &target);
            } else {
                std::fs::copy(e.path(), &target).expect("copy");
            }
        }
    }

    fn commit_all(path: &Path, message: &str) -> git2::Oid {
        let repo = git2::Repository::open(path).expect("open");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("T", "t@example.com").expect("sig");
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, message, &tree, &parents)
            .expect("commit")
    }

    fn describe(repo: &Path, text: &str) {
        let p = repo.join("services/payments.yaml");
        let y = std::fs::read_to_string(&p).expect("read");
        let out: Vec<String> = y
            .lines()
            .map(|l| {
                if l.starts_with("description:") {
                    format!("description: {text}")
                } else {
                    l.to_string()
                }
            })
            .collect();
        std::fs::write(&p, out.join("\n") + "\n").expect("write");
    }

    struct Running {
        shared: Arc<Shared>,
        cancel: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _state: tempfile::TempDir,
    }

    /// The reconcile loop for real (local repository, store in a temp dir), with `fault`
    /// injected into its reconciler.
    fn start(repo: &Path, fault: impl FnMut(&str) + Send + 'static) -> Running {
        let state = tempfile::tempdir().expect("tempdir");
        let (store, opened) = Store::open(state.path()).expect("store");
        let local = LocalFollower::open(repo, Some("main")).expect("source");
        let source = BranchFollower::Local(local);
        let mut reconciler =
            Reconciler::new(store.clone(), source.repo_path(), "main", None, &opened)
                .expect("reconciler");
        reconciler.fault = Some(Box::new(fault));
        let shared = Arc::new(Shared::new(
            store,
            Live::default(),
            source.hints().clone(),
            crate::http::ApiAuth::default(),
        ));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(reconcile_loop(
            shared.clone(),
            reconciler,
            source,
            LoopOptions {
                poll: Duration::from_millis(30),
                backoff_base: Duration::from_millis(20),
                fetch_deadline: Duration::from_secs(30),
            },
            cancel.clone(),
            Arc::new(Mutex::new(None)),
        ));
        Running {
            shared,
            cancel,
            task,
            _state: state,
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn example_repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo-layout"),
            dir.path(),
        );
        git2::Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init");
        commit_all(dir.path(), "initial");
        dir
    }

    fn applied(shared: &Shared) -> Option<String> {
        shared
            .store
            .cursor()
            .ok()
            .and_then(|c| c.last_applied.map(|r| r.sha))
    }

    /// A panic in one pass fails that pass (reported with its commit); the next pass runs on
    /// an unpoisoned reconciler and applies the commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_fails_one_pass_and_the_next_applies_the_commit() {
        let repo = example_repo();
        let armed = Arc::new(Mutex::new(None::<String>));
        let trigger = armed.clone();
        let r = start(repo.path(), move |sha| {
            let mut t = trigger.lock().unwrap_or_else(|e| e.into_inner());
            if t.as_deref() == Some(sha) {
                *t = None;
                panic!("injected fault on {sha}");
            }
        });
        until("baseline", || applied(&r.shared).is_some()).await;
        describe(repo.path(), "after a panic");
        // Armed before the ref moves, so the first look at the commit panics.
        let oid = commit_all_detached(repo.path(), "after a panic");
        *armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(oid.to_string());
        move_main(repo.path(), oid);
        let sha = oid.to_string();
        until("the commit applied", || {
            applied(&r.shared).as_deref() == Some(&sha)
        })
        .await;
        let failures = r.shared.metrics.render();
        assert!(
            failures.contains("mockops_failures_total{kind=\"panic\"} 1"),
            "{failures}"
        );
        let events = r
            .shared
            .store
            .events(&crate::store::EventFilter::default())
            .expect("events");
        assert!(
            events
                .iter()
                .any(|e| e.payload.get("commit").and_then(|c| c.as_str()) == Some(sha.as_str())),
            "the commit's events are stored"
        );
        assert!(r.shared.health().healthy, "{:?}", r.shared.health());
        assert!(armed.lock().unwrap_or_else(|e| e.into_inner()).is_none());
        r.cancel.cancel();
        r.task.await.expect("loop ends cleanly");
    }

    /// Passes that keep failing make the daemon unhealthy after
    /// [`UNHEALTHY_AFTER_FAILED_PASSES`]; one good pass makes it healthy again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_follows_consecutive_failed_passes() {
        let repo = example_repo();
        let failing = Arc::new(AtomicBool::new(false));
        let f = failing.clone();
        let r = start(repo.path(), move |sha| {
            if sha.is_empty() && f.load(Ordering::SeqCst) {
                panic!("injected fault at the start of a pass");
            }
        });
        until("baseline", || applied(&r.shared).is_some()).await;
        assert!(r.shared.health().healthy);
        failing.store(true, Ordering::SeqCst);
        until("unhealthy", || !r.shared.health().healthy).await;
        let h = r.shared.health();
        assert!(
            r.shared.failed_passes.load(Ordering::SeqCst) >= UNHEALTHY_AFTER_FAILED_PASSES,
            "{h:?}"
        );
        assert!(h.problems[0].contains("reconcile passes failed"), "{h:?}");
        assert!(h.problems[0].contains("injected fault"), "{h:?}");
        failing.store(false, Ordering::SeqCst);
        until("healthy again", || r.shared.health().healthy).await;
        r.cancel.cancel();
        r.task.await.expect("loop ends cleanly");
    }

    /// A commit that panics on two attempts in a row is recorded as failed (with the panic in
    /// its diagnostics) and skipped; the next commit is applied against the last good state.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_that_always_panics_is_recorded_and_skipped() {
        let repo = example_repo();
        let poison = Arc::new(Mutex::new(None::<String>));
        let p = poison.clone();
        let r = start(repo.path(), move |sha| {
            if p.lock().unwrap_or_else(|e| e.into_inner()).as_deref() == Some(sha) {
                panic!("this commit always breaks mockops");
            }
        });
        until("baseline", || applied(&r.shared).is_some()).await;
        describe(repo.path(), "poisoned");
        let bad = commit_all_detached(repo.path(), "poisoned");
        *poison.lock().unwrap_or_else(|e| e.into_inner()) = Some(bad.to_string());
        move_main(repo.path(), bad);
        until("the bad commit recorded", || {
            r.shared
                .store
                .cursor()
                .ok()
                .and_then(|c| c.last_attempted)
                .is_some_and(|a| a.sha == bad.to_string())
        })
        .await;
        let rev = r
            .shared
            .store
            .revisions(None, 1)
            .expect("revisions")
            .remove(0);
        assert_eq!(rev.status, crate::store::RevisionStatus::Invalid);
        assert_eq!(rev.diagnostics[0]["code"], "internal-error");
        assert!(
            rev.diagnostics[0]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("always breaks mockops"),
            "{:?}",
            rev.diagnostics
        );
        describe(repo.path(), "fixed");
        let good = commit_all(repo.path(), "fixed");
        until("the next commit applied", || {
            applied(&r.shared).as_deref() == Some(good.to_string().as_str())
        })
        .await;
        assert!(r.shared.health().healthy, "{:?}", r.shared.health());
        r.cancel.cancel();
        r.task.await.expect("loop ends cleanly");
    }

    /// `run` stops through its shutdown token, without a signal: the commit is applied, every
    /// task ends within the drain timeout, and the state directory is free again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_stops_when_its_shutdown_token_is_cancelled() {
        let repo = example_repo();
        let state = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let cfg = DaemonConfig {
            repo: Some(repo.path().to_path_buf()),
            repo_url: None,
            github_repository: None,
            branch: Some("main".into()),
            state_dir: state.path().to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            poll_interval: Duration::from_millis(50),
            webhook_secret: None,
            api_token: Some("t".into()),
            api_read_token: None,
            anonymous_read: false,
            security: Default::default(),
            replay_from: None,
            drain_timeout: Duration::from_secs(10),
            pipeline_concurrency: 1,
            redactor: crate::secret::Redactor::new(),
            remote: RemoteOptions::default(),
            retention: RetentionOptions::default(),
            gateway: None,
            drift_max_body: crate::drift::detect::DEFAULT_MAX_BODY,
        };
        let shutdown = CancellationToken::new();
        let daemon = tokio::spawn(run(cfg, shutdown.clone()));
        let client = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(&ready).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the daemon never got ready");
            assert!(!daemon.is_finished(), "the daemon ended before shutdown");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(15), daemon)
            .await
            .expect("run returns once its token is cancelled")
            .expect("the daemon task did not panic")
            .expect("a clean stop");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "within the drain timeout"
        );
        assert!(
            client.get(&ready).send().await.is_err(),
            "the API no longer serves"
        );
        // The store is closed: it opens again, with the head applied.
        let (store, _) = Store::open(state.path()).expect("the state directory is free");
        let head = git2::Repository::open(repo.path())
            .and_then(|r| r.head()?.peel_to_commit().map(|c| c.id().to_string()))
            .expect("head");
        assert_eq!(
            store.cursor().expect("cursor").last_applied.map(|r| r.sha),
            Some(head)
        );
    }

    /// Commits the work tree without moving any ref.
    fn commit_all_detached(path: &Path, message: &str) -> git2::Oid {
        let repo = git2::Repository::open(path).expect("open");
        let mut index = repo.index().expect("index");
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .expect("add");
        index.write().expect("write index");
        let tree = repo
            .find_tree(index.write_tree().expect("tree"))
            .expect("tree");
        let sig = git2::Signature::now("T", "t@example.com").expect("sig");
        let parent = repo.head().expect("head").peel_to_commit().expect("parent");
        repo.commit(None, &sig, &sig, message, &tree, &[&parent])
            .expect("commit")
    }

    fn move_main(path: &Path, oid: git2::Oid) {
        let repo = git2::Repository::open(path).expect("open");
        repo.reference("refs/heads/main", oid, true, "test")
            .expect("move main");
    }

    #[test]
    fn waiting_is_never_stuck_busy_without_progress_is() {
        let s = LoopState::default();
        s.enter(Phase::Waiting);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(s.stuck(Duration::from_millis(5)), None);
        s.fetching(Duration::from_millis(200));
        assert_eq!(
            s.stuck(Duration::from_millis(5)),
            None,
            "within its deadline"
        );
        s.fetching(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(20));
        assert!(s.stuck(Duration::from_secs(60)).is_some(), "fetch overran");
        s.enter(Phase::Reconciling);
        assert_eq!(s.stuck(Duration::from_millis(50)), None);
        std::thread::sleep(Duration::from_millis(70));
        assert!(s.stuck(Duration::from_millis(50)).is_some());
        s.progress();
        assert_eq!(s.stuck(Duration::from_millis(50)), None);
        s.enter(Phase::Ended);
        assert!(s.stuck(Duration::from_secs(60)).is_some());
    }
}
