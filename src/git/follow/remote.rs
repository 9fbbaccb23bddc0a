//! A remote repository, mirrored into the state directory: a bare repository holding only the
//! followed branch (`refs/remotes/origin/<branch>`), created on the first fetch and updated by
//! later ones. Reading the head needs no network once a fetch has succeeded, so the daemon keeps
//! serving the last good commit while the remote is down.
//!
//! Fetches are blocking (git2) and bounded three ways: libgit2's connect and I/O timeouts (one
//! global setting, [`set_network_timeouts`]), a per-fetch deadline checked in every callback,
//! and, in [`RemoteSource::fetch_async`], a timer around the blocking task. SSH host keys are
//! accepted only when pinned ([`HostKeyPolicy`]); tokens are read at each fetch and never
//! appear in an error.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use git2::{
    CertificateCheckStatus, Cred, CredentialType, Direction, FetchOptions, RemoteCallbacks,
};

use super::{Hints, SourceError};
use crate::git::hostkey::{self, KnownHosts, Verdict};
use crate::secret::{CredentialError, Secret, SecretSource};

/// The user name sent with a token when none is configured (GitHub's convention for
/// installation and fine-grained tokens; GitLab and Gitea accept any name with a token).
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";
/// Default bound on one fetch, from connecting to writing the ref.
pub const DEFAULT_FETCH_DEADLINE: Duration = Duration::from_secs(120);
/// Default libgit2 timeouts, applied by [`RemoteSource::new`] unless
/// [`set_network_timeouts`] ran first.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A file in the mirror directory that marks it as ours, so a damaged mirror may be deleted
/// and rebuilt without risk of deleting a directory somebody else owns.
const MIRROR_MARKER: &str = "mockops-mirror";

/// What to follow and how to reach it.
#[derive(Clone)]
pub struct RemoteConfig {
    /// `https://`, `http://` (loopback only when a token is sent), `ssh://`, scp-like
    /// `git@host:path`, `git://`, `file://` or a local path.
    pub url: String,
    /// Short branch name (`main`).
    pub branch: String,
    /// Where the bare mirror lives (usually `<state dir>/mirror.git`).
    pub mirror_dir: PathBuf,
    pub auth: RemoteAuth,
    pub host_keys: HostKeyPolicy,
    /// Bound on one fetch.
    pub fetch_deadline: Duration,
    /// Every credential read is registered here, so logs and outputs mask it.
    pub redactor: crate::secret::Redactor,
    /// Objects of the mirror that are no longer reachable are dropped once they have been
    /// unreachable this long (see [`consolidate_packs`]).
    pub prune_unreachable_after: Duration,
}

/// Default of [`RemoteConfig::prune_unreachable_after`].
pub const DEFAULT_PRUNE_UNREACHABLE_AFTER: Duration = Duration::from_secs(14 * 24 * 3600);

impl RemoteConfig {
    /// A configuration with no credentials, no host key pins and the default deadline.
    pub fn new(url: impl Into<String>, branch: impl Into<String>, mirror_dir: PathBuf) -> Self {
        Self {
            url: url.into(),
            branch: branch.into(),
            mirror_dir,
            auth: RemoteAuth::None,
            host_keys: HostKeyPolicy::default(),
            fetch_deadline: DEFAULT_FETCH_DEADLINE,
            redactor: crate::secret::Redactor::new(),
            prune_unreachable_after: DEFAULT_PRUNE_UNREACHABLE_AFTER,
        }
    }
}

impl fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("url", &redact_url(&self.url))
            .field("branch", &self.branch)
            .field("mirror_dir", &self.mirror_dir)
            .field("auth", &self.auth)
            .field("host_keys", &self.host_keys)
            .field("fetch_deadline", &self.fetch_deadline)
            .finish()
    }
}

/// Credentials for the remote.
#[derive(Debug, Clone, Default)]
pub enum RemoteAuth {
    #[default]
    None,
    /// HTTPS basic auth with a token as the password.
    Token {
        /// Usually [`DEFAULT_TOKEN_USERNAME`].
        username: String,
        token: SecretSource,
    },
    /// An SSH private key file (OpenSSH or PEM format), optionally encrypted. The user name
    /// comes from the URL (`git@host:...`), else `git`.
    SshKey {
        private_key: PathBuf,
        passphrase: Option<SecretSource>,
    },
}

/// Which SSH host keys are trusted. Empty means none: every SSH fetch is refused with the
/// fingerprint the server presented, so the operator can check and pin it.
#[derive(Debug, Clone, Default)]
pub struct HostKeyPolicy {
    /// `SHA256:...` fingerprints as `ssh-keygen -lf` prints them.
    pub fingerprints: Vec<String>,
    /// A known_hosts file (never `~/.ssh/known_hosts` implicitly).
    pub known_hosts: Option<PathBuf>,
}

/// Why a fetch failed. Messages say what failed and how to fix it, and never contain a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: authentication failed: {detail}")]
    Auth { url: String, detail: String },
    #[error(
        "{url}: the SSH host key of {host} is not pinned, so the connection was refused. The \
         server presented {key_type} {fingerprint}. If that is the fingerprint the host's \
         operator publishes, pin it (host key fingerprint `{fingerprint}`) or add the host's key \
         to the known_hosts file given to mockops"
    )]
    HostKeyUnknown {
        url: String,
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error(
        "{url}: the SSH host key of {host} does not match: the server presented {key_type} \
         {fingerprint}, the pins expect {}. If the host has rotated its key, verify the new \
         fingerprint with its operator and update the pin; otherwise the connection may be \
         intercepted", expected.join(" or ")
    )]
    HostKeyMismatch {
        url: String,
        host: String,
        key_type: String,
        fingerprint: String,
        expected: Vec<String>,
    },
    #[error(
        "{url}: the SSH host key of {host} ({key_type} {fingerprint}) is marked @revoked in the \
         known_hosts file"
    )]
    HostKeyRevoked {
        url: String,
        host: String,
        key_type: String,
        fingerprint: String,
    },
    #[error("{url}: the TLS certificate of {host} is not trusted: {detail}")]
    Tls {
        url: String,
        host: String,
        detail: String,
    },
    #[error("{url}: cannot reach the remote: {detail}")]
    Network { url: String, detail: String },
    #[error(
        "{url}: timed out after {}; the remote or the network is too slow or not answering",
        humantime::format_duration(*after)
    )]
    Timeout { url: String, after: Duration },
    #[error(
        "{url}: branch `{branch}` does not exist on the remote ({})",
        available_text(available)
    )]
    BranchMissing {
        url: String,
        branch: String,
        available: Vec<String>,
    },
    #[error("{url}: {detail}")]
    RepoNotFound { url: String, detail: String },
    #[error(transparent)]
    Secret(#[from] CredentialError),
    #[error("{url}: {detail}")]
    Config { url: String, detail: String },
    #[error("mirror {}: {detail}", path.display())]
    Mirror { path: PathBuf, detail: String },
    #[error("{url}: {detail}")]
    Git { url: String, detail: String },
}

fn available_text(available: &[String]) -> String {
    if available.is_empty() {
        "it has no branches".to_string()
    } else {
        format!("it has: {}", available.join(", "))
    }
}

impl FetchError {
    /// A short label for metrics and status: `auth`, `host_key`, `tls`, `network`, `timeout`,
    /// `branch_missing`, `repo_not_found`, `secret`, `config`, `mirror`, `git`.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::Auth { .. } => "auth",
            FetchError::HostKeyUnknown { .. }
            | FetchError::HostKeyMismatch { .. }
            | FetchError::HostKeyRevoked { .. } => "host_key",
            FetchError::Tls { .. } => "tls",
            FetchError::Network { .. } => "network",
            FetchError::Timeout { .. } => "timeout",
            FetchError::BranchMissing { .. } => "branch_missing",
            FetchError::RepoNotFound { .. } => "repo_not_found",
            FetchError::Secret(_) => "secret",
            FetchError::Config { .. } => "config",
            FetchError::Mirror { .. } => "mirror",
            FetchError::Git { .. } => "git",
        }
    }

    /// True when trying again soon may succeed by itself (network, timeout). The others need
    /// someone to change something, so a caller may back off further, but should keep trying:
    /// a branch can be created, a token rotated.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FetchError::Network { .. } | FetchError::Timeout { .. }
        )
    }
}

static TIMEOUTS: OnceLock<(Duration, Duration)> = OnceLock::new();

/// Sets libgit2's process-wide connect and I/O timeouts. Only the first call in a process has
/// an effect (it returns true); call it at startup, before any fetch. [`RemoteSource::new`]
/// applies the defaults if nothing was set.
pub fn set_network_timeouts(connect: Duration, io: Duration) -> bool {
    let mut first = false;
    TIMEOUTS.get_or_init(|| {
        first = true;
        apply_timeouts(connect, io);
        (connect, io)
    });
    first
}

/// The timeouts in effect (after [`set_network_timeouts`] or the first [`RemoteSource::new`]).
pub fn network_timeouts() -> Option<(Duration, Duration)> {
    TIMEOUTS.get().copied()
}

fn millis(d: Duration) -> std::ffi::c_int {
    std::ffi::c_int::try_from(d.as_millis())
        .unwrap_or(std::ffi::c_int::MAX)
        .max(1)
}

#[allow(unsafe_code)]
fn apply_timeouts(connect: Duration, io: Duration) {
    // SAFETY: git2 marks these setters unsafe because they write a libgit2 global without
    // synchronisation. They run once per process, inside `TIMEOUTS.get_or_init`, and every
    // network operation mockops performs goes through `RemoteSource::fetch`, which is only
    // reachable after `RemoteSource::new` has passed through the same `OnceLock`; so no libgit2
    // network call started by this crate can read the values while they are being written.
    // Both setters only store an integer and cannot fail.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(millis(io));
    }
}

/// The parts of a remote URL that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UrlInfo {
    scheme: Scheme,
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

fn parse_url(url: &str) -> Result<UrlInfo, String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("the remote URL is empty".into());
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "git" => Scheme::Git,
            "file" => Scheme::File,
            other => {
                return Err(format!(
                    "URL scheme `{other}` is not supported (use https://, ssh://, git@host:path, \
                     git:// or file://)"
                ));
            }
        };
        if scheme == Scheme::File {
            return Ok(UrlInfo {
                scheme,
                host: None,
                port: None,
                user: None,
            });
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u.split(':').next().unwrap_or_default().to_string()), h),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err("the remote URL has no host".into());
        }
        return Ok(UrlInfo {
            scheme,
            host: Some(host),
            port,
            user,
        });
    }
    if url.starts_with('/') || url.starts_with('.') {
        return Ok(UrlInfo {
            scheme: Scheme::File,
            host: None,
            port: None,
            user: None,
        });
    }
    // scp-like: [user@]host:path, where host has no '/'.
    if let Some((before, _path)) = url.split_once(':')
        && !before.contains('/')
        && !before.is_empty()
    {
        let (user, host) = match before.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, before),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        return Ok(UrlInfo {
            scheme: Scheme::Ssh,
            host: Some(host.to_string()),
            port: None,
            user,
        });
    }
    Err(format!(
        "`{}` is not a Git URL (use https://, ssh://, git@host:path, git:// or file://)",
        redact_url(url)
    ))
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Err(format!("unbalanced `[` in host `{hostport}`")),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("port `{p}` is not a number"))?,
        ),
    };
    Ok((host.to_ascii_lowercase(), port))
}

/// The URL with any user information of http(s) URLs replaced by `***` (a token is sometimes
/// written there), safe to log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let s = scheme.to_ascii_lowercase();
            let shown = if s == "http" || s == "https" {
                "***".to_string()
            } else {
                match userinfo.split_once(':') {
                    Some((u, _)) => format!("{u}:***"),
                    None => userinfo.to_string(),
                }
            };
            format!("{scheme}://{shown}@{host}{path}")
        }
        None => url.to_string(),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A followed branch of a remote repository and its local mirror. Cheap to clone.
#[derive(Clone)]
pub struct RemoteSource {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    config: RemoteConfig,
    url_info: UrlInfo,
    url_redacted: String,
    pins: Vec<String>,
    mirror_ref: String,
    hints: Hints,
    /// One fetch (or repack) at a time per mirror.
    fetch_lock: Mutex<()>,
    /// Commits to keep in the mirror even when the branch no longer reaches them (the
    /// applied commit, which a force-push comparison reads).
    keep: Mutex<Vec<git2::Oid>>,
}

/// What the callbacks of one fetch found out, read when libgit2 returns an error.
#[derive(Default)]
struct CallState {
    failure: Option<FetchError>,
    deadline_hit: bool,
}

impl RemoteSource {
    /// Checks the configuration (URL, branch name, pins, credentials fit the URL) without any
    /// network access, and applies the default libgit2 timeouts if none were set.
    pub fn new(config: RemoteConfig) -> Result<Self, FetchError> {
        set_network_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT);
        let url_redacted = redact_url(&config.url);
        let bad = |detail: String| FetchError::Config {
            url: url_redacted.clone(),
            detail,
        };
        let url_info = parse_url(&config.url).map_err(bad)?;
        let branch = config
            .branch
            .strip_prefix("refs/heads/")
            .unwrap_or(&config.branch)
            .to_string();
        if branch.is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
            return Err(bad(format!(
                "`{}` is not a valid branch name",
                config.branch
            )));
        }
        let pins = config
            .host_keys
            .fingerprints
            .iter()
            .map(|p| hostkey::normalize_pin(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let host = url_info.host.clone().unwrap_or_default();
        match (&config.auth, url_info.scheme) {
            (RemoteAuth::Token { .. }, Scheme::Http) if !is_loopback(&host) => {
                return Err(bad(format!(
                    "refusing to send a token over plain http:// to {host}; use an https:// URL"
                )));
            }
            (RemoteAuth::Token { .. }, Scheme::Ssh | Scheme::Git | Scheme::File) => {
                return Err(bad(
                    "a token is used only with https:// URLs; for an SSH URL configure a private \
                     key file"
                        .into(),
                ));
            }
            (RemoteAuth::SshKey { .. }, s) if s != Scheme::Ssh => {
                return Err(bad(
                    "an SSH key is used only with ssh:// or git@host:path URLs; for https:// \
                     configure a token"
                        .into(),
                ));
            }
            (RemoteAuth::SshKey { private_key, .. }, _) => {
                if let Err(e) = std::fs::File::open(private_key) {
                    return Err(bad(format!(
                        "cannot read the SSH private key {}: {e}",
                        private_key.display()
                    )));
                }
            }
            _ => {}
        }
        if let Some(kh) = &config.host_keys.known_hosts {
            KnownHosts::load(kh).map_err(bad)?;
        }
        if url_info.scheme == Scheme::Ssh
            && pins.is_empty()
            && config.host_keys.known_hosts.is_none()
        {
            tracing::warn!(
                url = %url_redacted,
                "no SSH host key is pinned: fetches will be refused and report the fingerprint the \
                 server presents, to be checked and pinned"
            );
        }
        let mirror_ref = format!("refs/remotes/origin/{branch}");
        let config = RemoteConfig { branch, ..config };
        Ok(Self {
            inner: Arc::new(RemoteInner {
                config,
                url_info,
                url_redacted,
                pins,
                mirror_ref,
                hints: Hints::new(),
                fetch_lock: Mutex::new(()),
                keep: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn branch(&self) -> &str {
        &self.inner.config.branch
    }

    /// The bare mirror to read commits from.
    pub fn repo_path(&self) -> &Path {
        &self.inner.config.mirror_dir
    }

    /// The ref in the mirror that holds the followed branch.
    pub fn mirror_ref(&self) -> &str {
        &self.inner.mirror_ref
    }

    pub fn url_redacted(&self) -> &str {
        &self.inner.url_redacted
    }

    /// Pokes for "fetch now" (the push webhook).
    pub fn hints(&self) -> &Hints {
        &self.inner.hints
    }

    /// The commit of the branch as of the last successful fetch, read from the mirror without
    /// network access.
    pub fn head(&self) -> Result<git2::Oid, SourceError> {
        let inner = &self.inner;
        let not_fetched = || SourceError::NotFetched {
            url: inner.url_redacted.clone(),
            branch: inner.config.branch.clone(),
        };
        let dir = &inner.config.mirror_dir;
        if !dir.exists() {
            return Err(not_fetched());
        }
        let repo = git2::Repository::open_bare(dir).map_err(|e| SourceError::Open {
            path: dir.clone(),
            detail: e.message().to_string(),
        })?;
        let reference = match repo.find_reference(&inner.mirror_ref) {
            Ok(r) => r,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Err(not_fetched()),
            Err(e) => {
                return Err(SourceError::Git {
                    branch: inner.config.branch.clone(),
                    path: dir.clone(),
                    detail: e.message().to_string(),
                });
            }
        };
        reference
            .peel_to_commit()
            .map(|c| c.id())
            .map_err(|e| SourceError::Git {
                branch: inner.config.branch.clone(),
                path: dir.clone(),
                detail: e.message().to_string(),
            })
    }

    /// [`RemoteSource::fetch`] on the blocking pool, abandoned (with [`FetchError::Timeout`])
    /// if it overruns the deadline by more than a second.
    pub async fn fetch_async(&self) -> Result<git2::Oid, FetchError> {
        let this = self.clone();
        let limit = self.inner.config.fetch_deadline + Duration::from_secs(1);
        match tokio::time::timeout(limit, tokio::task::spawn_blocking(move || this.fetch())).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(FetchError::Git {
                url: self.inner.url_redacted.clone(),
                detail: format!("the fetch task failed: {join}"),
            }),
            Err(_) => Err(FetchError::Timeout {
                url: self.inner.url_redacted.clone(),
                after: self.inner.config.fetch_deadline,
            }),
        }
    }

    /// Fetches the followed branch into the mirror (creating the mirror on first use) and
    /// returns its commit. Only that branch is fetched, forced, so a force-push on the remote
    /// moves the mirror along. On any error the mirror keeps the last fetched commit. Blocking.
    pub fn fetch(&self) -> Result<git2::Oid, FetchError> {
        let inner = &self.inner;
        let _one_at_a_time = inner.fetch_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let deadline = started + inner.config.fetch_deadline;
        let repo = self.open_or_init_mirror()?;

        let secrets = self.read_secrets()?;
        let known_hosts = match (&inner.config.host_keys.known_hosts, inner.url_info.scheme) {
            (Some(path), Scheme::Ssh) => {
                Some(KnownHosts::load(path).map_err(|detail| FetchError::Config {
                    url: inner.url_redacted.clone(),
                    detail,
                })?)
            }
            _ => None,
        };
        let state = RefCell::new(CallState::default());
        let cx = CallbackCx {
            source: self,
            state: &state,
            secrets: &secrets,
            known_hosts: known_hosts.as_ref(),
            deadline,
        };

        let mut remote = repo
            .remote_anonymous(&inner.config.url)
            .map_err(|e| self.classify(e, &state, &secrets))?;
        let refname = format!("refs/heads/{}", inner.config.branch);
        let mut connection = remote
            .connect_auth(Direction::Fetch, Some(cx.callbacks()), None)
            .map_err(|e| self.classify(e, &state, &secrets))?;
        let heads = connection
            .list()
            .map_err(|e| self.classify(e, &state, &secrets))?;
        let target = heads.iter().find(|h| h.name() == refname).map(|h| h.oid());
        let Some(target) = target else {
            let mut available: Vec<String> = heads
                .iter()
                .filter_map(|h| h.name().strip_prefix("refs/heads/"))
                .map(str::to_string)
                .collect();
            available.sort();
            available.truncate(20);
            return Err(FetchError::BranchMissing {
                url: inner.url_redacted.clone(),
                branch: inner.config.branch.clone(),
                available,
            });
        };
        let downloading = repo.find_commit(target).is_err();
        if downloading {
            let refspec = format!("+{refname}:{}", inner.mirror_ref);
            let mut options = FetchOptions::new();
            options
                .remote_callbacks(cx.callbacks())
                .download_tags(git2::AutotagOption::None)
                .update_fetchhead(false);
            connection
                .remote()
                .download(&[refspec.as_str()], Some(&mut options))
                .map_err(|e| self.classify(e, &state, &secrets))?;
        }
        drop(connection);
        let commit = repo.find_commit(target).map_err(|e| FetchError::Git {
            url: inner.url_redacted.clone(),
            detail: format!(
                "the remote advertised {target} for `{}` but did not send it: {}",
                inner.config.branch,
                e.message()
            ),
        })?;
        repo.reference(&inner.mirror_ref, commit.id(), true, "mockops: fetch")
            .map_err(|e| self.mirror_err(e.message()))?;
        if downloading {
            match consolidate_packs(&repo, MAX_PACKS, &self.prune_policy(SystemTime::now())) {
                Ok(Some(c)) => tracing::info!(
                    mirror = %inner.config.mirror_dir.display(), objects = c.objects,
                    dropped = c.dropped, "mirror packs consolidated into one"
                ),
                Ok(None) => {}
                // Reading still works with many packs, only slower: not a fetch failure.
                Err(e) => tracing::warn!(
                    mirror = %inner.config.mirror_dir.display(), error = %e.message(),
                    "cannot consolidate the mirror's packs"
                ),
            }
        }
        tracing::debug!(
            url = %inner.url_redacted,
            branch = %inner.config.branch,
            commit = %commit.id(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fetched"
        );
        Ok(commit.id())
    }

    /// Commits the mirror keeps even when the branch no longer reaches them (replaces the
    /// previous set).
    pub fn keep_commits(&self, commits: Vec<git2::Oid>) {
        *self.inner.keep.lock().unwrap_or_else(|p| p.into_inner()) = commits;
    }

    fn prune_policy(&self, now: SystemTime) -> PrunePolicy {
        PrunePolicy {
            unreachable_after: self.inner.config.prune_unreachable_after,
            keep: self
                .inner
                .keep
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            now,
        }
    }

    /// Repacks the mirror into one pack without the objects that have been unreachable for
    /// longer than `after` (retention; run periodically). Nothing happens when there is one
    /// pack, no loose object and nothing unreachable. Waits for a fetch in progress.
    pub fn prune_mirror(&self, after: Duration) -> Result<Option<Consolidated>, git2::Error> {
        self.prune_mirror_with(&PrunePolicy {
            unreachable_after: after,
            ..self.prune_policy(SystemTime::now())
        })
    }

    /// [`RemoteSource::prune_mirror`] with an explicit policy (and clock).
    pub fn prune_mirror_with(
        &self,
        policy: &PrunePolicy,
    ) -> Result<Option<Consolidated>, git2::Error> {
        let _one_at_a_time = self
            .inner
            .fetch_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dir = &self.inner.config.mirror_dir;
        if !dir.join("objects").exists() {
            return Ok(None);
        }
        let repo = git2::Repository::open_bare(dir)?;
        consolidate_packs(&repo, 0, policy)
    }

    fn mirror_err(&self, detail: impl Into<String>) -> FetchError {
        FetchError::Mirror {
            path: self.inner.config.mirror_dir.clone(),
            detail: detail.into(),
        }
    }

    fn open_or_init_mirror(&self) -> Result<git2::Repository, FetchError> {
        let dir = &self.inner.config.mirror_dir;
        match git2::Repository::open_bare(dir) {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                let empty = std::fs::read_dir(dir).map_or(true, |mut d| d.next().is_none());
                if !empty {
                    if !dir.join(MIRROR_MARKER).exists() {
                        return Err(self.mirror_err(format!(
                            "exists but is not a mirror made by mockops ({}); remove it or \
                             choose another state directory",
                            e.message()
                        )));
                    }
                    tracing::warn!(
                        mirror = %dir.display(),
                        error = e.message(),
                        "the mirror is damaged; deleting it and fetching again"
                    );
                    std::fs::remove_dir_all(dir)
                        .map_err(|e| self.mirror_err(format!("cannot remove it: {e}")))?;
                }
            }
        }
        let repo = git2::Repository::init_opts(
            dir,
            git2::RepositoryInitOptions::new().bare(true).mkpath(true),
        )
        .map_err(|e| self.mirror_err(format!("cannot create it: {}", e.message())))?;
        std::fs::write(
            dir.join(MIRROR_MARKER),
            "A mirror of the followed branch, maintained by mockops. Safe to delete.\n",
        )
        .map_err(|e| self.mirror_err(format!("cannot write to it: {e}")))?;
        Ok(repo)
    }

    fn read_secrets(&self) -> Result<Secrets, FetchError> {
        let redactor = &self.inner.config.redactor;
        Ok(match &self.inner.config.auth {
            RemoteAuth::None => Secrets::default(),
            RemoteAuth::Token { token, .. } => Secrets {
                token: Some(token.read("HTTPS token", redactor)?),
                passphrase: None,
            },
            RemoteAuth::SshKey { passphrase, .. } => Secrets {
                token: None,
                passphrase: passphrase
                    .as_ref()
                    .map(|p| p.read("SSH key passphrase", redactor))
                    .transpose()?,
            },
        })
    }

    /// Turns a libgit2 error into a [`FetchError`], preferring what the callbacks recorded.
    fn classify(
        &self,
        e: git2::Error,
        state: &RefCell<CallState>,
        secrets: &Secrets,
    ) -> FetchError {
        let inner = &self.inner;
        let url = inner.url_redacted.clone();
        let mut st = state.borrow_mut();
        if let Some(f) = st.failure.take() {
            return f;
        }
        let timed_out = e.code() == git2::ErrorCode::Timeout || e.message().contains("timed out");
        if st.deadline_hit || timed_out {
            return FetchError::Timeout {
                url,
                after: if st.deadline_hit {
                    inner.config.fetch_deadline
                } else {
                    network_timeouts().map_or(DEFAULT_IO_TIMEOUT, |t| t.1)
                },
            };
        }
        let detail = self.scrub(e.message(), secrets);
        match e.code() {
            git2::ErrorCode::Auth => {
                return FetchError::Auth {
                    url,
                    detail: format!(
                        "{detail}; {}",
                        match &inner.config.auth {
                            RemoteAuth::None =>
                                "the remote asks for credentials and none are configured: give a \
                                 token for HTTPS or a private key for SSH",
                            _ => "check the configured credentials",
                        }
                    ),
                };
            }
            git2::ErrorCode::Certificate => {
                return FetchError::Tls {
                    url,
                    host: inner.url_info.host.clone().unwrap_or_default(),
                    detail,
                };
            }
            _ => {}
        }
        let lower = detail.to_ascii_lowercase();
        if lower.contains("no such repository") || lower.contains("not exported") {
            return FetchError::RepoNotFound {
                url,
                detail: format!("{detail}: check the URL"),
            };
        }
        match e.class() {
            git2::ErrorClass::Http if detail.contains("404") => FetchError::RepoNotFound {
                url,
                detail: format!(
                    "{detail}: no repository at this URL (or the credentials cannot see it)"
                ),
            },
            git2::ErrorClass::Http if detail.contains("401") || detail.contains("403") => {
                FetchError::Auth {
                    url,
                    detail: format!("{detail}; check the configured credentials"),
                }
            }
            git2::ErrorClass::Net
            | git2::ErrorClass::Os
            | git2::ErrorClass::Ssh
            | git2::ErrorClass::Ssl
            | git2::ErrorClass::Http => FetchError::Network { url, detail },
            _ => FetchError::Git { url, detail },
        }
    }

    /// Removes anything secret from a libgit2 message: the raw URL (it may carry user
    /// information) and the token itself.
    fn scrub(&self, message: &str, secrets: &Secrets) -> String {
        let mut s = message.replace(&self.inner.config.url, &self.inner.url_redacted);
        for secret in [&secrets.token, &secrets.passphrase].into_iter().flatten() {
            if !secret.expose().is_empty() {
                s = s.replace(secret.expose(), "***");
            }
        }
        s
    }
}

fn describe_allowed(allowed: CredentialType) -> String {
    let mut kinds = Vec::new();
    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
        kinds.push("a user name and password or token");
    }
    if allowed.intersects(CredentialType::SSH_KEY | CredentialType::SSH_MEMORY) {
        kinds.push("an SSH key");
    }
    if allowed.contains(CredentialType::SSH_INTERACTIVE) {
        kinds.push("interactive SSH login");
    }
    if allowed.contains(CredentialType::USERNAME) {
        kinds.push("a user name");
    }
    if kinds.is_empty() {
        "credentials".to_string()
    } else {
        kinds.join(" or ")
    }
}

#[derive(Default)]
struct Secrets {
    token: Option<Secret>,
    passphrase: Option<Secret>,
}

/// Everything the libgit2 callbacks of one fetch need.
#[derive(Clone, Copy)]
struct CallbackCx<'a> {
    source: &'a RemoteSource,
    state: &'a RefCell<CallState>,
    secrets: &'a Secrets,
    known_hosts: Option<&'a KnownHosts>,
    deadline: Instant,
}

impl<'a> CallbackCx<'a> {
    fn past_deadline(&self) -> bool {
        if Instant::now() >= self.deadline {
            self.state.borrow_mut().deadline_hit = true;
            true
        } else {
            false
        }
    }

    fn fail(&self, failure: FetchError) -> git2::Error {
        let message = failure.to_string();
        self.state.borrow_mut().failure = Some(failure);
        git2::Error::from_str(&message)
    }

    /// A fresh set of callbacks (each connection phase gets its own, with its own attempt
    /// counters, so a second phase re-sending the same credentials is not taken for a refusal).
    fn callbacks(&self) -> RemoteCallbacks<'a> {
        let cx = *self;
        let mut cb = RemoteCallbacks::new();
        let token_attempts = Cell::new(0u32);
        let key_attempts = Cell::new(0u32);
        cb.credentials(move |_url, user_from_url, allowed| {
            cx.credentials(user_from_url, allowed, &token_attempts, &key_attempts)
        });
        let cx = *self;
        cb.certificate_check(move |cert, host| cx.certificate_check(cert, host));
        let cx = *self;
        cb.transfer_progress(move |_| !cx.past_deadline());
        let cx = *self;
        cb.sideband_progress(move |_| !cx.past_deadline());
        cb
    }

    fn credentials(
        &self,
        user_from_url: Option<&str>,
        allowed: CredentialType,
        token_attempts: &Cell<u32>,
        key_attempts: &Cell<u32>,
    ) -> Result<Cred, git2::Error> {
        let inner = &self.source.inner;
        let url = inner.url_redacted.clone();
        if self.past_deadline() {
            return Err(git2::Error::from_str("fetch deadline passed"));
        }
        match &inner.config.auth {
            RemoteAuth::Token { username, token }
                if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
            {
                token_attempts.set(token_attempts.get() + 1);
                if token_attempts.get() > 1 {
                    return Err(self.fail(FetchError::Auth {
                        url,
                        detail: format!(
                            "the server refused the token (user `{username}`, token from {}): \
                             check that it is valid, not expired, and can read the repository",
                            token.describe()
                        ),
                    }));
                }
                let secret = self
                    .secrets
                    .token
                    .as_ref()
                    .ok_or_else(|| git2::Error::from_str("token not loaded"))?;
                Cred::userpass_plaintext(username, secret.expose())
            }
            RemoteAuth::SshKey {
                private_key,
                passphrase,
            } => {
                let user = user_from_url
                    .or(inner.url_info.user.as_deref())
                    .unwrap_or("git");
                if allowed.contains(CredentialType::USERNAME) {
                    return Cred::username(user);
                }
                if !allowed.contains(CredentialType::SSH_KEY) {
                    return Err(self.fail(FetchError::Auth {
                        url,
                        detail: format!(
                            "the SSH server does not accept public-key authentication (it asks \
                             for {})",
                            describe_allowed(allowed)
                        ),
                    }));
                }
                key_attempts.set(key_attempts.get() + 1);
                if key_attempts.get() > 1 {
                    return Err(self.fail(FetchError::Auth {
                        url,
                        detail: format!(
                            "the server refused the SSH key {} for user `{user}`: check that its \
                             public key is registered as a deploy key with read access{}",
                            private_key.display(),
                            if passphrase.is_some() {
                                " and that the passphrase is right"
                            } else {
                                ""
                            }
                        ),
                    }));
                }
                Cred::ssh_key(
                    user,
                    None,
                    private_key,
                    self.secrets.passphrase.as_ref().map(|p| p.expose()),
                )
            }
            RemoteAuth::Token { .. } | RemoteAuth::None => Err(self.fail(FetchError::Auth {
                url,
                detail: format!(
                    "the remote asks for {} and none are configured: give a token for HTTPS or \
                     a private key for SSH",
                    describe_allowed(allowed)
                ),
            })),
        }
    }

    fn certificate_check(
        &self,
        cert: &git2::cert::Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        let Some(hostkey) = cert.as_hostkey() else {
            // TLS: libgit2 verifies the chain against the system's trust store.
            return Ok(CertificateCheckStatus::CertificatePassthrough);
        };
        let inner = &self.source.inner;
        let url = inner.url_redacted.clone();
        let fingerprint = match (hostkey.hostkey(), hostkey.hash_sha256()) {
            (Some(blob), _) => hostkey::fingerprint_sha256(blob),
            (None, Some(hash)) => hostkey::format_sha256(hash),
            (None, None) => {
                return Err(self.fail(FetchError::Git {
                    url,
                    detail: "the SSH library gave no host key to check".into(),
                }));
            }
        };
        let key_type = hostkey
            .hostkey_type()
            .map_or("unknown", |t| t.name())
            .to_string();
        let port = inner.url_info.port.unwrap_or(22);
        let host = host.to_string();
        match hostkey::verify(&inner.pins, self.known_hosts, &host, port, &fingerprint) {
            Verdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
            Verdict::Unknown => Err(self.fail(FetchError::HostKeyUnknown {
                url,
                host,
                key_type,
                fingerprint,
            })),
            Verdict::Mismatch(expected) => Err(self.fail(FetchError::HostKeyMismatch {
                url,
                host,
                key_type,
                fingerprint,
                expected,
            })),
            Verdict::Revoked => Err(self.fail(FetchError::HostKeyRevoked {
                url,
                host,
                key_type,
                fingerprint,
            })),
        }
    }
}

/// Each fetch that brings objects adds a pack to the mirror; past this many, they are
/// consolidated into one (object lookups scan every pack's index).
pub const MAX_PACKS: usize = 16;

/// The file in the mirror that records when each unreachable object was first found
/// unreachable (`<oid> <unix seconds>` per line).
pub const UNREACHABLE_FILE: &str = "mockops-unreachable";

/// What a repack keeps.
#[derive(Debug, Clone)]
pub struct PrunePolicy {
    /// An object unreachable for this long (since a repack first found it unreachable) is
    /// dropped.
    pub unreachable_after: Duration,
    /// Commits kept (with their trees and blobs) as if a ref pointed at them.
    pub keep: Vec<git2::Oid>,
    pub now: SystemTime,
}

/// What a repack did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consolidated {
    /// Objects in the new pack.
    pub objects: usize,
    /// Unreachable objects dropped.
    pub dropped: usize,
    /// Unreachable objects kept until their time is up.
    pub unreachable_kept: usize,
}

/// When the mirror holds more than `max` packs (or, with `max` 0, whenever there is something
/// to do), writes one pack with every object worth keeping and removes the old packs and loose
/// objects; returns what it did.
///
/// libgit2 has no `gc`, so this is one: objects reachable from any ref of the mirror or from
/// `policy.keep` are kept; an unreachable object is kept until it has been unreachable for
/// `policy.unreachable_after`, measured from the first repack that found it unreachable
/// (recorded in [`UNREACHABLE_FILE`]; git's own grace period is the objects' file time, which a
/// repack would reset). So a commit a force-push dropped stays readable for the comparison the
/// reconciler makes, and for the retention period after. The new pack and the record are
/// complete before any old pack goes, so readers always find every kept object (libgit2
/// rescans the pack directory when an object is not where it was).
pub fn consolidate_packs(
    repo: &git2::Repository,
    max: usize,
    policy: &PrunePolicy,
) -> Result<Option<Consolidated>, git2::Error> {
    let objects_dir = repo.path().join("objects");
    let pack_dir = objects_dir.join("pack");
    let packs = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter_map(|n| n.strip_suffix(".pack").map(str::to_string))
                    .filter(|n| n.starts_with("pack-"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = packs(&pack_dir);
    if max > 0 && old.len() <= max {
        return Ok(None);
    }
    let mut all = Vec::new();
    repo.odb()?.foreach(|id| {
        all.push(*id);
        true
    })?;
    all.sort();
    all.dedup();
    let reachable = reachable_objects(repo, &policy.keep)?;
    let now = policy
        .now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record_path = repo.path().join(UNREACHABLE_FILE);
    let seen = read_unreachable(&record_path);
    let mut record = Vec::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for id in &all {
        if reachable.contains(id) {
            kept.push(*id);
            continue;
        }
        let since = seen.get(id).copied().unwrap_or(now);
        if now.saturating_sub(since) >= policy.unreachable_after.as_secs() {
            dropped += 1;
        } else {
            kept.push(*id);
            record.push((*id, since));
        }
    }
    let loose = loose_object_dirs(&objects_dir);
    if max == 0 && dropped == 0 && old.len() <= 1 && loose.is_empty() && record.len() == seen.len()
    {
        return Ok(None);
    }
    let mut builder = repo.packbuilder()?;
    for id in &kept {
        builder.insert_object(*id, None)?;
    }
    builder.write(&pack_dir, 0)?;
    let new_pack = match builder.name()? {
        Some(name) => format!("pack-{name}"),
        None => return Err(git2::Error::from_str("the new pack has no name")),
    };
    write_unreachable(&record_path, &record)
        .map_err(|e| git2::Error::from_str(&format!("cannot write {UNREACHABLE_FILE}: {e}")))?;
    for stem in old.iter().filter(|s| **s != new_pack) {
        for ext in ["pack", "idx", "rev", "mtimes", "keep"] {
            let _ = std::fs::remove_file(pack_dir.join(format!("{stem}.{ext}")));
        }
    }
    // Every loose object is in the new pack now, or was dropped.
    for dir in loose {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(Some(Consolidated {
        objects: kept.len(),
        dropped,
        unreachable_kept: record.len(),
    }))
}

/// Every object reachable from a ref of `repo` or from one of `keep`.
fn reachable_objects(
    repo: &git2::Repository,
    keep: &[git2::Oid],
) -> Result<HashSet<git2::Oid>, git2::Error> {
    let mut out = HashSet::new();
    let mut walk = repo.revwalk()?;
    let mut roots = 0;
    for reference in repo.references()? {
        let reference = reference?;
        // An annotated tag object is reachable itself.
        if let Some(target) = reference.target() {
            out.insert(target);
        }
        if let Ok(commit) = reference.peel_to_commit() {
            walk.push(commit.id())?;
            roots += 1;
        }
    }
    for id in keep {
        if repo.find_commit(*id).is_ok() {
            walk.push(*id)?;
            roots += 1;
        }
    }
    if roots == 0 {
        return Ok(out);
    }
    for commit in walk {
        let commit = repo.find_commit(commit?)?;
        out.insert(commit.id());
        let tree = commit.tree()?;
        if !out.insert(tree.id()) {
            continue;
        }
        tree.walk(git2::TreeWalkMode::PreOrder, |_, entry| {
            match entry.kind() {
                Some(git2::ObjectType::Tree) => {
                    if out.insert(entry.id()) {
                        git2::TreeWalkResult::Ok
                    } else {
                        // Seen in an earlier commit, with everything under it.
                        git2::TreeWalkResult::Skip
                    }
                }
                Some(git2::ObjectType::Blob) => {
                    out.insert(entry.id());
                    git2::TreeWalkResult::Ok
                }
                // Submodule commits live in another repository.
                _ => git2::TreeWalkResult::Ok,
            }
        })?;
    }
    Ok(out)
}

fn loose_object_dirs(objects: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(objects)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n.len() == 2 && n.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn read_unreachable(path: &Path) -> HashMap<git2::Oid, u64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (id, at) = l.split_once(' ')?;
            Some((git2::Oid::from_str(id).ok()?, at.trim().parse().ok()?))
        })
        .collect()
}

fn write_unreachable(path: &Path, record: &[(git2::Oid, u64)]) -> std::io::Result<()> {
    let mut text = String::new();
    for (id, at) in record {
        text.push_str(&format!("{id} {at}\n"));
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_every_form() {
        let p = |u: &str| parse_url(u).expect(u);
        let https = p("https://github.com/org/repo.git");
        assert_eq!(https.scheme, Scheme::Https);
        assert_eq!(https.host.as_deref(), Some("github.com"));
        let ssh = p("ssh://git@git.example:2222/org/repo.git");
        assert_eq!(
            (
                ssh.scheme,
                ssh.host.as_deref(),
                ssh.port,
                ssh.user.as_deref()
            ),
            (Scheme::Ssh, Some("git.example"), Some(2222), Some("git"))
        );
        let scp = p("git@github.com:org/repo.git");
        assert_eq!(
            (
                scp.scheme,
                scp.host.as_deref(),
                scp.port,
                scp.user.as_deref()
            ),
            (Scheme::Ssh, Some("github.com"), None, Some("git"))
        );
        assert_eq!(p("git://127.0.0.1:9418/repo.git").port, Some(9418));
        assert_eq!(p("file:///srv/repo.git").scheme, Scheme::File);
        assert_eq!(p("/srv/repo.git").scheme, Scheme::File);
        let v6 = p("http://[::1]:8080/repo.git");
        assert_eq!((v6.host.as_deref(), v6.port), (Some("::1"), Some(8080)));
        assert!(parse_url("ftp://x/y").is_err());
        assert!(parse_url("just-a-name").is_err());
        assert!(parse_url("https://:443/x").is_err());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("https://x-access-token:ghs_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("https://ghp_secret@github.com/o/r.git"),
            "https://***@github.com/o/r.git"
        );
        assert_eq!(
            redact_url("ssh://git@host/o/r.git"),
            "ssh://git@host/o/r.git"
        );
        assert_eq!(redact_url("git@host:o/r.git"), "git@host:o/r.git");
        let cfg = RemoteConfig::new(
            "https://u:hunter2@example.com/r.git",
            "main",
            PathBuf::from("/tmp/m"),
        );
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    fn config(url: &str, auth: RemoteAuth) -> RemoteConfig {
        RemoteConfig {
            auth,
            ..RemoteConfig::new(url, "main", PathBuf::from("/nonexistent/mirror"))
        }
    }

    fn token() -> RemoteAuth {
        RemoteAuth::Token {
            username: DEFAULT_TOKEN_USERNAME.into(),
            token: SecretSource::Value(Secret::new("t")),
        }
    }

    #[test]
    fn credentials_must_fit_the_url() {
        let e = RemoteSource::new(config("http://example.com/r.git", token()))
            .err()
            .expect("token over http");
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(RemoteSource::new(config("http://127.0.0.1:9/r.git", token())).is_ok());
        assert!(RemoteSource::new(config("git@github.com:o/r.git", token())).is_err());
        let key = RemoteAuth::SshKey {
            private_key: PathBuf::from("/nonexistent/id_ed25519"),
            passphrase: None,
        };
        let e = RemoteSource::new(config("git@github.com:o/r.git", key.clone()))
            .err()
            .expect("missing key");
        assert!(e.to_string().contains("/nonexistent/id_ed25519"), "{e}");
        assert!(RemoteSource::new(config("https://github.com/o/r.git", key)).is_err());
    }

    #[test]
    fn bad_pins_and_branches_are_refused_early() {
        let mut c = config("git@github.com:o/r.git", RemoteAuth::None);
        c.host_keys.fingerprints = vec!["SHA256:nope".into()];
        let e = RemoteSource::new(c).err().expect("bad pin");
        assert!(e.to_string().contains("ssh-keygen -lf"), "{e}");
        let mut c = config("https://github.com/o/r.git", RemoteAuth::None);
        c.branch = "a..b".into();
        assert!(RemoteSource::new(c).is_err());
        let mut c = config("https://github.com/o/r.git", RemoteAuth::None);
        c.branch = "refs/heads/main".into();
        let s = RemoteSource::new(c).expect("full ref name accepted");
        assert_eq!(s.branch(), "main");
        assert_eq!(s.mirror_ref(), "refs/remotes/origin/main");
    }

    #[test]
    fn error_messages_say_what_to_do() {
        let e = FetchError::HostKeyUnknown {
            url: "git@h:r".into(),
            host: "h".into(),
            key_type: "ssh-ed25519".into(),
            fingerprint: "SHA256:abc".into(),
        };
        let m = e.to_string();
        assert!(m.contains("SHA256:abc") && m.contains("pin"), "{m}");
        let e = FetchError::BranchMissing {
            url: "u".into(),
            branch: "prod".into(),
            available: vec!["main".into(), "dev".into()],
        };
        assert_eq!(
            e.to_string(),
            "u: branch `prod` does not exist on the remote (it has: main, dev)"
        );
        assert_eq!(e.kind(), "branch_missing");
        assert!(!e.is_transient());
    }
}
