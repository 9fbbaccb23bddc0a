//! `mockops daemon`: run the reconciler.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::daemon::{self, DaemonConfig, RemoteOptions, RetentionOptions};
use crate::outbound::OutboundPolicy;
use crate::pipeline::steps::StepSecurity;
use crate::secret::{Redactor, SecretPolicy, SecretSource};
use crate::store::{Keep, RetentionPolicy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Local config repository to follow. Without it (and without --repo-url) the daemon
    /// follows a demo repository it creates in the state directory.
    #[arg(long, env = "MOCKOPS_REPO", conflicts_with = "repo_url")]
    pub repo: Option<PathBuf>,
    /// Remote config repository to clone and follow.
    #[arg(long, env = "MOCKOPS_REPO_URL")]
    pub repo_url: Option<String>,
    /// Branch to follow (default: the local repository's current branch, or `main`).
    #[arg(long, env = "MOCKOPS_BRANCH")]
    pub branch: Option<String>,
    /// The followed repository's `OWNER/NAME` on GitHub's API (`GITHUB_API_URL`), for a
    /// repository not followed through a github.com URL (GitHub Enterprise, a mirror):
    /// `mockops pipelines create|enable|disable` then commit or open pull requests there.
    #[arg(long, env = "MOCKOPS_GITHUB_REPOSITORY")]
    pub github_repository: Option<String>,
    /// Directory of the store; one daemon owns it.
    #[arg(long, env = "MOCKOPS_STATE_DIR", default_value = ".state")]
    pub state_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, env = "MOCKOPS_LISTEN", default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    #[arg(long, env = "MOCKOPS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Re-read the branch at least this often, whatever watching says (e.g. `30s`, `5m`).
    #[arg(long, env = "MOCKOPS_POLL_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// File holding the secret of the GitHub push webhook (`POST /api/v1/webhooks/github`).
    #[arg(long, env = "MOCKOPS_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// File holding the bearer token of write endpoints (default: `<state-dir>/api-token`,
    /// generated on first start).
    #[arg(long, env = "MOCKOPS_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// File holding a bearer token good for reads only (status, state, events, executions).
    #[arg(long, env = "MOCKOPS_API_READ_TOKEN_FILE")]
    pub api_read_token_file: Option<PathBuf>,
    /// Serve reads without a token (health, readiness and metrics are always open).
    #[arg(long, env = "MOCKOPS_ANONYMOUS_READ")]
    pub anonymous_read: bool,
    /// A host name, address or network (CIDR) that notifications may reach although it is
    /// loopback, link-local or private (repeatable; `*` allows everything). Default: public
    /// addresses only.
    #[arg(
        long = "allow-outbound",
        env = "MOCKOPS_ALLOW_OUTBOUND",
        value_delimiter = ','
    )]
    pub allow_outbound: Vec<String>,
    /// A directory `${file:...}` references may read from, besides $CREDENTIALS_DIRECTORY and
    /// /run/secrets (repeatable).
    #[arg(
        long = "secret-dir",
        env = "MOCKOPS_SECRET_DIRS",
        value_delimiter = ','
    )]
    pub secret_dirs: Vec<PathBuf>,
    /// Environment variables `${env:...}` references may read (repeatable; a trailing `*`
    /// allows a prefix, e.g. `MOCKOPS_*`). Default: any.
    #[arg(long = "secret-env", env = "MOCKOPS_SECRET_ENV", value_delimiter = ',')]
    pub secret_env: Vec<String>,
    /// Let `regenerate_sdk` run the `command` generators the repository names (the presets
    /// always run).
    #[arg(long, env = "MOCKOPS_ALLOW_GENERATOR_COMMANDS")]
    pub allow_generator_commands: bool,
    /// A directory on this machine that `create_pr` with `provider: git` may push to, besides
    /// `<state-dir>/remotes` (repeatable).
    #[arg(
        long = "git-push-dir",
        env = "MOCKOPS_GIT_PUSH_DIRS",
        value_delimiter = ','
    )]
    pub git_push_dirs: Vec<PathBuf>,
    /// On a fresh store, start from this revision and replay every commit up to the head,
    /// with their events (default: take the head as the baseline).
    #[arg(long)]
    pub replay_from: Option<String>,
    /// How long shutdown waits for the commit in progress.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// File holding the HTTPS token for --repo-url (read at every fetch).
    #[arg(long, env = "MOCKOPS_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// User name sent with the token.
    #[arg(long, env = "MOCKOPS_GIT_USERNAME", default_value = "x-access-token")]
    pub git_username: String,
    /// SSH private key for --repo-url.
    #[arg(long, env = "MOCKOPS_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase.
    #[arg(long, env = "MOCKOPS_SSH_PASSPHRASE_FILE")]
    pub ssh_passphrase_file: Option<PathBuf>,
    /// Pinned SSH host key fingerprint, `SHA256:...` as `ssh-keygen -lf` prints it
    /// (repeatable).
    #[arg(
        long = "ssh-host-key",
        env = "MOCKOPS_SSH_HOST_KEYS",
        value_delimiter = ','
    )]
    pub ssh_host_keys: Vec<String>,
    /// A known_hosts file to trust (never `~/.ssh/known_hosts` implicitly).
    #[arg(long, env = "MOCKOPS_SSH_KNOWN_HOSTS")]
    pub ssh_known_hosts: Option<PathBuf>,
    /// Deadline of one fetch of --repo-url.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub fetch_timeout: Duration,
    /// Pipeline executions running at once (the others wait their turn, in order).
    #[arg(long, env = "MOCKOPS_PIPELINE_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub pipeline_concurrency: u16,
    /// Events kept: an age (`90d`), a count of the newest (`100000`), both (`90d,100000`), or
    /// `forever`. Events not yet dispatched, or that a running execution needs, always stay.
    #[arg(long, env = "MOCKOPS_RETAIN_EVENTS", default_value = crate::store::retention::DEFAULT_EVENTS)]
    pub retain_events: Keep,
    /// Revisions (processed commits with their diagnostics) kept; the last applied and last
    /// attempted always stay.
    #[arg(long, env = "MOCKOPS_RETAIN_REVISIONS", default_value = crate::store::retention::DEFAULT_REVISIONS)]
    pub retain_revisions: Keep,
    /// Finished pipeline executions (with their step outputs and logs) kept; pending and
    /// running ones always stay.
    #[arg(long, env = "MOCKOPS_RETAIN_EXECUTIONS", default_value = crate::store::retention::DEFAULT_EXECUTIONS)]
    pub retain_executions: Keep,
    /// Dedup keys of posted events kept (a key stays at least as long as its event).
    #[arg(long, env = "MOCKOPS_RETAIN_DEDUP_KEYS", default_value = crate::store::retention::DEFAULT_DEDUP_KEYS)]
    pub retain_dedup_keys: Keep,
    /// Largest step outputs kept per step once its execution finished (`1MiB`, `256KiB`,
    /// `0` for no limit); larger ones are cut, with a marker.
    #[arg(long, env = "MOCKOPS_MAX_STEP_OUTPUT", default_value = "1MiB", value_parser = parse_size)]
    pub max_step_output: usize,
    /// Objects of the --repo-url mirror no longer reachable from the branch (or the applied
    /// commit) are dropped once unreachable this long.
    #[arg(long, env = "MOCKOPS_MIRROR_PRUNE_AFTER", default_value = "14d", value_parser = humantime::parse_duration)]
    pub mirror_prune_after: Duration,
    /// Serve every applied federation on this address (the demo: 127.0.0.1:8481 unless given).
    #[arg(long, env = "MOCKOPS_GATEWAY")]
    pub gateway: Option<SocketAddr>,
    /// Largest request body the gateway takes (`10MiB`, `256KiB`); larger ones get 413.
    #[arg(long, env = "MOCKOPS_GATEWAY_MAX_BODY", default_value = "10MiB", value_parser = parse_size)]
    pub gateway_max_body: usize,
    /// Share of gateway exchanges kept in the traffic record (0 to 1).
    #[arg(long, env = "MOCKOPS_TRAFFIC_SAMPLE", default_value_t = 1.0, value_parser = parse_share)]
    pub traffic_sample: f64,
    /// Largest body (request or response) kept in a drift observation and validated (`8MiB`,
    /// `256KiB`); larger ones are recorded as skipped, with their size, not validated.
    #[arg(long, env = "MOCKOPS_DRIFT_MAX_BODY", default_value = "8MiB", value_parser = parse_size)]
    pub drift_max_body: usize,
    /// Threads serving the gateway, each with its own event loop and upstream connection
    /// pools (default: one per core).
    #[arg(long, env = "MOCKOPS_GATEWAY_THREADS", default_value_t = default_gateway_threads(), value_parser = parse_threads)]
    pub gateway_threads: usize,
    /// Share of the gateway's upstream exchanges observed for drift (0 to 1).
    #[arg(long, env = "MOCKOPS_DRIFT_SAMPLE", default_value_t = 1.0, value_parser = parse_share)]
    pub drift_sample: f64,
    /// Gateway exchanges kept in the traffic record: an age, a count of the newest, both, or
    /// `forever`.
    #[arg(long, env = "MOCKOPS_RETAIN_TRAFFIC", default_value = crate::daemon::DEFAULT_RETAIN_TRAFFIC)]
    pub retain_traffic: Keep,
    /// How often retention is applied (also at start).
    #[arg(long, env = "MOCKOPS_PRUNE_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub prune_interval: Duration,
}

/// A flag value that is not a size or an interval.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    #[error("`{0}` is not a size: write e.g. `1MiB`, `256KiB` or `65536`")]
    NotASize(String),
    #[error("unknown size unit `{unit}` in `{value}`: use B, KiB, MiB, GiB (or kB, MB, GB)")]
    SizeUnit { unit: String, value: String },
    #[error("`{0}` is too large")]
    TooLarge(String),
    #[error("`{value}`: {source}")]
    Interval {
        value: String,
        source: humantime::DurationError,
    },
    #[error("`{0}` is too short: prune at most once a second")]
    TooShort(String),
    #[error("`{0}` is not a share from 0 to 1 (e.g. `0.1` keeps one exchange in ten)")]
    NotAShare(String),
    #[error("`{0}` is not a thread count from 1 to 256")]
    NotAThreadCount(String),
}

/// `1MiB`, `256KiB`, `64kB`, `1000` (bytes), `0`.
fn parse_size(s: &str) -> Result<usize, ValueError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| ValueError::NotASize(s.to_string()))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1000 * 1000,
        "mib" => 1024 * 1024,
        "g" | "gb" => 1000 * 1000 * 1000,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(ValueError::SizeUnit {
                unit: other.to_string(),
                value: s.to_string(),
            });
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| ValueError::TooLarge(s.to_string()))
}

fn parse_share(s: &str) -> Result<f64, ValueError> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(ValueError::NotAShare(s.to_string())),
    }
}

fn parse_interval(s: &str) -> Result<Duration, ValueError> {
    let d = humantime::parse_duration(s).map_err(|source| ValueError::Interval {
        value: s.to_string(),
        source,
    })?;
    if d < Duration::from_secs(1) {
        return Err(ValueError::TooShort(s.to_string()));
    }
    Ok(d)
}

/// Whether text logs get ANSI colours: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub fn use_colour(is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs to stderr through `redactor`: any secret value resolved at run time is masked in log
/// lines too, whatever wrote them (our code, a dependency's error message). Colour only on a
/// terminal: a file or a pipe (journald, `kubectl logs`) gets plain text.
pub fn init_logging(format: LogFormat, redactor: Redactor) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let colour = use_colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(RedactingStderr(redactor));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Standard error, with registered secrets masked. The formatter writes each log line with one
/// `write_all` of the whole line, so a secret is never split between two writes.
#[derive(Clone)]
pub struct RedactingStderr(pub Redactor);

impl RedactingStderr {
    fn write_to(&self, buf: &[u8], out: &mut impl std::io::Write) -> std::io::Result<()> {
        if self.0.is_empty() {
            out.write_all(buf)
        } else {
            let text = String::from_utf8_lossy(buf);
            out.write_all(self.0.redact(&text).as_bytes())
        }
    }
}

impl std::io::Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_to(buf, &mut std::io::stderr().lock())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = RedactingStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A token file: private to the daemon's user, and not empty.
fn read_token(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    daemon::read_private_token(path, what, 0o027)?.with_context(|| {
        format!(
            "the {what} file {} is missing or empty: write the token into it",
            path.display()
        )
    })
}

fn read_secret(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    anyhow::ensure!(!s.is_empty(), "the {what} file {} is empty", path.display());
    Ok(s)
}

pub fn run(args: &DaemonArgs) -> anyhow::Result<u8> {
    let redactor = Redactor::new();
    init_logging(args.log_format, redactor.clone());
    let cfg = DaemonConfig {
        redactor,
        repo: args.repo.clone(),
        repo_url: args.repo_url.clone(),
        github_repository: args.github_repository.clone(),
        branch: args.branch.clone(),
        state_dir: args.state_dir.clone(),
        listen: args.listen,
        poll_interval: args.poll_interval,
        webhook_secret: args
            .webhook_secret_file
            .as_ref()
            .map(|p| {
                // Read once now so a wrong path fails the start, then at each delivery.
                read_secret(p, "webhook secret").map(|_| SecretSource::File(p.clone()))
            })
            .transpose()?,
        api_token: args
            .api_token_file
            .as_ref()
            .map(|p| read_token(p, "API token"))
            .transpose()?,
        api_read_token: args
            .api_read_token_file
            .as_ref()
            .map(|p| read_token(p, "read-only API token"))
            .transpose()?,
        anonymous_read: args.anonymous_read,
        security: StepSecurity {
            secrets: SecretPolicy {
                env_allow: (!args.secret_env.is_empty()).then(|| args.secret_env.clone()),
                ..SecretPolicy::with_dirs(args.secret_dirs.iter().cloned())
            },
            outbound: std::sync::Arc::new(
                OutboundPolicy::parse(&args.allow_outbound).map_err(anyhow::Error::from)?,
            ),
            allow_generator_commands: args.allow_generator_commands,
            local_git_dirs: args.git_push_dirs.clone(),
            promotion_key: None,
            slack_webhook: std::env::var_os(crate::pipeline::steps::notify::SLACK_WEBHOOK_ENV)
                .filter(|v| !v.is_empty())
                .map(|_| {
                    SecretSource::Env(crate::pipeline::steps::notify::SLACK_WEBHOOK_ENV.into())
                }),
            // Set by the daemon from its remote options.
            ..Default::default()
        },
        replay_from: args.replay_from.clone(),
        drain_timeout: args.drain_timeout,
        pipeline_concurrency: usize::from(args.pipeline_concurrency),
        remote: RemoteOptions {
            token: args
                .git_token_file
                .clone()
                .map(SecretSource::File)
                .or_else(|| {
                    std::env::var_os("MOCKOPS_GIT_TOKEN")
                        .map(|_| SecretSource::Env("MOCKOPS_GIT_TOKEN".into()))
                }),
            token_username: Some(args.git_username.clone()),
            ssh_key: args.ssh_key.clone(),
            ssh_passphrase: args.ssh_passphrase_file.clone().map(SecretSource::File),
            ssh_host_keys: args.ssh_host_keys.clone(),
            ssh_known_hosts: args.ssh_known_hosts.clone(),
            fetch_timeout: args.fetch_timeout,
        },
        retention: RetentionOptions {
            store: RetentionPolicy {
                events: args.retain_events,
                revisions: args.retain_revisions,
                executions: args.retain_executions,
                dedup_keys: args.retain_dedup_keys,
            },
            max_step_output: args.max_step_output,
            mirror_prune_after: args.mirror_prune_after,
            interval: args.prune_interval,
            traffic: args.retain_traffic,
        },
        gateway: {
            let demo = args.repo.is_none() && args.repo_url.is_none();
            let addr = args.gateway.or_else(|| {
                demo.then(|| {
                    crate::gateway::DEMO_ADDR
                        .parse()
                        .expect("the demo gateway address parses")
                })
            });
            addr.map(|addr| crate::gateway::GatewayOptions {
                addr,
                max_body: args.gateway_max_body,
                traffic_sample: args.traffic_sample,
                drift_max_body: args.drift_max_body,
                drift_sample: args.drift_sample,
                required: args.gateway.is_some(),
                threads: args.gateway_threads,
            })
        },
        drift_max_body: args.drift_max_body,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(on_signals(listen_for_signals()?, shutdown.clone()));
        daemon::run(cfg, shutdown).await
    });
    // A pass stuck past the drain deadline stays on the blocking pool: do not wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    result?;
    Ok(super::exit::OK)
}

/// SIGTERM and SIGINT, listened for from the start (so an early signal is not lost).
struct Signals {
    term: Signal,
    int: Signal,
}

fn listen_for_signals() -> anyhow::Result<Signals> {
    Ok(Signals {
        term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
        int: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
    })
}

impl Signals {
    /// The next signal: its name and the exit code a process killed by it reports.
    async fn next(&mut self) -> (&'static str, i32) {
        tokio::select! {
            _ = self.term.recv() => ("SIGTERM", 128 + 15),
            _ = self.int.recv() => ("SIGINT", 128 + 2),
        }
    }
}

/// The first signal cancels `shutdown` (the daemon drains); a second one exits at once.
async fn on_signals(mut signals: Signals, shutdown: CancellationToken) {
    let (name, _) = signals.next().await;
    tracing::info!(
        signal = name,
        "shutting down; a second signal exits at once"
    );
    shutdown.cancel();
    let (name, code) = signals.next().await;
    tracing::warn!(
        signal = name,
        "second signal: exiting at once (every commit is applied atomically, so nothing is half-written)"
    );
    std::process::exit(code);
}

/// One gateway thread per core.
fn default_gateway_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

fn parse_threads(s: &str) -> Result<usize, ValueError> {
    match s.parse::<usize>() {
        Ok(n) if (1..=256).contains(&n) => Ok(n),
        _ => Err(ValueError::NotAThreadCount(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(use_colour(true, None));
        assert!(!use_colour(false, None));
        assert!(!use_colour(true, Some(OsStr::new("1"))));
        assert!(!use_colour(false, Some(OsStr::new("1"))));
        // An empty NO_COLOR does not count (no-color.org).
        assert!(use_colour(true, Some(OsStr::new(""))));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1MiB").ok(), Some(1024 * 1024));
        assert_eq!(parse_size("256KiB").ok(), Some(256 * 1024));
        assert_eq!(parse_size("64kB").ok(), Some(64_000));
        assert_eq!(parse_size("0").ok(), Some(0));
        let err = |s: &str| parse_size(s).map_err(|e| e.to_string()).unwrap_err();
        assert!(err("1 parsec").contains("unit"));
        assert!(err("lots").contains("1MiB"));
    }

    #[test]
    fn log_lines_mask_registered_secrets() {
        let redactor = Redactor::new();
        let w = RedactingStderr(redactor.clone());
        let mut out = Vec::new();
        w.write_to(b"fetch failed: token ghp_0123456789abcdef\n", &mut out)
            .expect("write");
        assert_eq!(out, b"fetch failed: token ghp_0123456789abcdef\n");
        redactor.register("ghp_0123456789abcdef");
        out.clear();
        w.write_to(
            b"{\"error\":\"https://x:ghp_0123456789abcdef@example.com\"}\n",
            &mut out,
        )
        .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"error\":\"https://x:***@example.com\"}\n"
        );
    }
}
