//! `mockops daemon`: follows one branch of one config repository into the store, serves the
//! HTTP API, and stops cleanly.
//!
//! Tasks: the reconcile loop (the only writer of commits), the API server, the systemd
//! watchdog. Watch events, webhooks and the poll timer only wake the reconcile loop: it always
//! reads the head from Git.

pub mod api;
pub mod demo;
pub mod metrics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::reconcile::{Reconciler, SyncReport};
use crate::secret::SecretSource;
use crate::sources::backoff::{Backoff, jittered};
use crate::sources::local::{self, LocalSource};
use crate::sources::remote::{self, HostKeyPolicy, RemoteAuth, RemoteConfig, RemoteSource};
use crate::sources::webhook::{self, GithubWebhook};
use crate::sources::{Hints, Source, SourceError};
use crate::store::{Opened, Store};
use metrics::Metrics;

/// How the daemon is configured (from the command line and the environment).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// A local repository to follow. With neither this nor `repo_url`, a demo repository is
    /// created in the state directory.
    pub repo: Option<PathBuf>,
    pub repo_url: Option<String>,
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
    pub auth: api::ApiAuth,
    /// Monotonic seconds of the reconcile loop's last pass (watchdog and health).
    pub heartbeat: AtomicU64,
    /// Numbered "sync now" requests (`POST /api/v1/sync`), and the highest one a whole pass of
    /// the reconcile loop (fetch, then every new commit) has started after.
    pub sync_requested: AtomicU64,
    pub sync_served: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub fn new(store: Store, live: Live, hints: Hints, auth: api::ApiAuth) -> Self {
        Self {
            store,
            metrics: Metrics::new(),
            live: RwLock::new(live),
            hints,
            events_stored: Arc::new(Notify::new()),
            auth,
            heartbeat: AtomicU64::new(0),
            sync_requested: AtomicU64::new(0),
            sync_served: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    pub fn beat(&self) {
        self.heartbeat
            .store(self.started.elapsed().as_secs(), Ordering::Relaxed);
    }

    /// Seconds since the reconcile loop last made a pass.
    pub fn since_beat(&self) -> u64 {
        self.started
            .elapsed()
            .as_secs()
            .saturating_sub(self.heartbeat.load(Ordering::Relaxed))
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: DaemonConfig) -> anyhow::Result<()> {
    let (store, opened) = Store::open(&cfg.state_dir)?;
    match &opened {
        Opened::Rebuilt { moved_to, reason } => tracing::warn!(
            moved_to = %moved_to.display(), %reason,
            "the store was unreadable; it was moved aside and is rebuilt from Git"
        ),
        Opened::Created => tracing::info!(dir = %cfg.state_dir.display(), "new store"),
        Opened::Existing => {}
    }
    let source = resolve_source(&cfg)?;
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
    let auth = api::ApiAuth {
        write: api_token,
        read: cfg.api_read_token.clone(),
        anonymous_read: cfg.anonymous_read,
    };
    let promotion_key = crate::promotion::PromotionKey::load_or_create(&cfg.state_dir)?;
    let reconciler = Reconciler::new(
        store.clone(),
        source.repo_path(),
        source.branch(),
        cfg.replay_from.clone(),
        &opened,
    )?
    .with_promotion_key(promotion_key.clone());
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
    let cancel = CancellationToken::new();

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, source = %source.describe(), branch = %source.branch(), "mockops daemon started");

    // Deliveries are remembered for resumed steps; a week is far beyond any retry.
    match shared
        .store
        .prune_deliveries(Duration::from_secs(7 * 24 * 3600))
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "old delivery records pruned"),
        Err(e) => tracing::warn!(error = %e, "cannot prune old delivery records"),
    }
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
    let steps = crate::pipeline::steps::Steps::new(
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
            ..security.clone()
        },
    )
    .context("cannot build the HTTP client for notifications")?;
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
    let stop = reconciler.stop_flag();
    let reconcile = tokio::spawn(reconcile_loop(
        shared.clone(),
        reconciler,
        source.clone(),
        cfg.poll_interval,
        cancel.clone(),
    ));
    let server = {
        let mut app = api::router(shared.clone()).merge(crate::pipeline::api::router(
            engine.clone(),
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
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await
        })
    };
    let watchdog = tokio::spawn(watchdog(shared.clone(), cancel.clone()));

    shutdown_signal().await;
    tracing::info!("shutting down: finishing the commit in progress");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    cancel.cancel();
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        let _ = reconcile.await;
        let _ = server.await;
        let _ = pipelines.await;
    })
    .await;
    watchdog.abort();
    if drained.is_err() {
        tracing::warn!(
            timeout = ?cfg.drain_timeout,
            "drain deadline passed; exiting (every commit is applied atomically, so nothing is half-written)"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

fn resolve_source(cfg: &DaemonConfig) -> anyhow::Result<Source> {
    if let Some(url) = &cfg.repo_url {
        let mut rc = RemoteConfig::new(
            url.clone(),
            cfg.branch.clone().unwrap_or_else(|| "main".to_string()),
            cfg.state_dir.join("mirror.git"),
        );
        rc.redactor = cfg.redactor.clone();
        let r = &cfg.remote;
        if let Some(key) = &r.ssh_key {
            rc.auth = RemoteAuth::SshKey {
                private_key: key.clone(),
                passphrase: r.ssh_passphrase.clone(),
            };
        } else if let Some(token) = &r.token {
            rc.auth = RemoteAuth::Token {
                username: r
                    .token_username
                    .clone()
                    .unwrap_or_else(|| remote::DEFAULT_TOKEN_USERNAME.to_string()),
                token: token.clone(),
            };
        }
        rc.host_keys = HostKeyPolicy {
            fingerprints: r.ssh_host_keys.clone(),
            known_hosts: r.ssh_known_hosts.clone(),
        };
        rc.fetch_deadline = r.fetch_timeout;
        remote::set_network_timeouts(Duration::from_secs(10), Duration::from_secs(30));
        let source = RemoteSource::new(rc).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(Source::Remote(source));
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
        LocalSource::open(&path, cfg.branch.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
    local.start_watching(local::DEFAULT_DEBOUNCE);
    Ok(Source::Local(local))
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

async fn reconcile_loop(
    shared: Arc<Shared>,
    reconciler: Reconciler,
    source: Source,
    poll: Duration,
    cancel: CancellationToken,
) {
    let reconciler = Arc::new(Mutex::new(reconciler));
    let mut backoff = Backoff::new(Duration::from_secs(1), poll.max(Duration::from_secs(60)));
    let mut ready_sent = false;
    // A degraded watcher is set up again now and then: the cause (an inotify limit) may be gone.
    let mut rearm = Backoff::new(Duration::from_secs(30), Duration::from_secs(30 * 60));
    let mut next_rearm: Option<tokio::time::Instant> = None;
    loop {
        shared.beat();
        let serving = shared.sync_requested.load(Ordering::SeqCst);
        let outcome = match source.refresh_async().await {
            Err(e) => Err((fetch_kind(&e), e.to_string())),
            Ok(head) => {
                let reconciler = reconciler.clone();
                match tokio::task::spawn_blocking(move || {
                    let mut r = reconciler
                        .lock()
                        .map_err(|_| ("reconcile", "reconciler poisoned".to_string()))?;
                    let report = r.sync(head).map_err(|e| ("reconcile", e.to_string()))?;
                    Ok::<_, (&str, String)>((head, report))
                })
                .await
                {
                    Ok(r) => r,
                    Err(join) => Err(("reconcile", join.to_string())),
                }
            }
        };
        let now = crate::time::now_rfc3339();
        if let Source::Local(local) = &source
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
                let mut live = shared.live.write().unwrap_or_else(|e| e.into_inner());
                live.head = Some(head.to_string());
                live.last_sync_at = Some(now);
                live.last_error = None;
                live.consecutive_failures = 0;
                backoff.reset();
                false
            }
            Err((kind, msg)) => {
                shared.metrics.failure(kind);
                tracing::error!(kind, error = %msg, "sync failed; the last applied state keeps serving");
                let mut live = shared.live.write().unwrap_or_else(|e| e.into_inner());
                live.last_error = Some(format!("{kind}: {msg}"));
                live.consecutive_failures += 1;
                true
            }
        };
        shared.sync_served.fetch_max(serving, Ordering::SeqCst);
        if !ready_sent
            && matches!(
                shared.store.cursor().map(|c| c.last_applied.is_some()),
                Ok(true)
            )
        {
            ready_sent = true;
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
        let wait = if failing {
            backoff.next_delay()
        } else if source.hints().is_degraded() {
            jittered(poll.min(Duration::from_secs(10)), 0.1)
        } else {
            jittered(poll, 0.1)
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = source.hints().wait() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A bounded label for failures of the source.
fn fetch_kind(e: &SourceError) -> &'static str {
    match e {
        SourceError::Fetch(f) => f.kind(),
        SourceError::NotFetched { .. } => "not_fetched",
        SourceError::BranchMissing { .. } => "branch_missing",
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

async fn watchdog(shared: Arc<Shared>, cancel: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let tick = period / 2;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        // Only vouch for the daemon while its reconcile loop is alive.
        if shared.since_beat() < period.as_secs().max(1) * 4 {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
