//! The one access policy of every network Git call, fetch or push: credentials (read at each
//! call, registered with the redactor, never in an error), SSH host keys accepted only when
//! pinned ([`HostKeyPolicy`], checked by `hostkey.rs`), libgit2's connect and I/O timeouts
//! (one process-wide setting, [`set_network_timeouts`]) and a deadline per call, checked in
//! every callback and, around the blocking task, by [`Access::run`].
//!
//! An [`Access`] is checked once (the URL, the pins, whether the credentials fit the URL);
//! each call opens a [`Session`], whose [`Session::callbacks`] every `connect`, `fetch`,
//! `download` and `push` of that call uses, and whose [`Session::classify`] turns a libgit2
//! error into a [`FetchError`] that says what to fix.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};

use crate::git::hostkey::{self, KnownHosts, Verdict};
use crate::secret::{CredentialError, Redactor, Secret, SecretSource};

/// The user name sent with a token when none is configured (GitHub's convention for
/// installation and fine-grained tokens; GitLab and Gitea accept any name with a token).
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";
/// Default libgit2 timeouts, applied by [`Access::new`] unless [`set_network_timeouts`] ran
/// first.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on one call, from connecting to the last byte.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

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
    /// The keys of the SSH agent of the daemon's user, for SSH URLs; nothing for the others.
    /// What pushes to a repository the operator configured no credentials for use.
    SshAgent,
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

/// Why a network Git call (a fetch or a push) failed. Messages say what failed and how to fix it, and never contain a token.
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
/// an effect (it returns true); call it at startup, before any network call. [`Access::new`]
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

/// The timeouts in effect (after [`set_network_timeouts`] or the first [`Access::new`]).
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
    // network operation mockops performs goes through a `Session` of an `Access`, which only
    // `Access::new` makes, after passing through the same `OnceLock`; so no libgit2 network
    // call started by this crate can read the values while they are being written.
    // Both setters only store an integer and cannot fail.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(millis(connect));
        let _ = git2::opts::set_server_timeout_in_milliseconds(millis(io));
    }
}

/// How one remote URL is reached: checked once, used for every call to it.
#[derive(Clone)]
pub struct Access {
    url: String,
    url_info: UrlInfo,
    url_redacted: String,
    auth: RemoteAuth,
    /// Normalised `SHA256:` pins.
    pins: Vec<String>,
    known_hosts: Option<PathBuf>,
    deadline: Duration,
    /// Every credential read is registered here, so logs and outputs mask it.
    redactor: Redactor,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("url", &self.url_redacted)
            .field("auth", &self.auth)
            .field("pins", &self.pins)
            .field("known_hosts", &self.known_hosts)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Access {
    /// Checks the URL, the pins and that the credentials fit the URL, without any network
    /// access, and applies the default libgit2 timeouts if none were set.
    pub fn new(
        url: &str,
        auth: RemoteAuth,
        host_keys: &HostKeyPolicy,
        deadline: Duration,
        redactor: Redactor,
    ) -> Result<Self, FetchError> {
        set_network_timeouts(DEFAULT_CONNECT_TIMEOUT, DEFAULT_IO_TIMEOUT);
        let url_redacted = redact_url(url);
        let bad = |detail: String| FetchError::Config {
            url: url_redacted.clone(),
            detail,
        };
        let url_info = parse_url(url).map_err(|e| bad(e.to_string()))?;
        let pins = host_keys
            .fingerprints
            .iter()
            .map(|p| hostkey::normalize_pin(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(e.to_string()))?;
        let host = url_info.host.clone().unwrap_or_default();
        match (&auth, url_info.scheme) {
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
        if let Some(kh) = &host_keys.known_hosts {
            KnownHosts::load(kh).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self {
            url: url.to_string(),
            url_info,
            url_redacted,
            auth,
            pins,
            known_hosts: host_keys.known_hosts.clone(),
            deadline,
            redactor,
        })
    }

    /// The URL as given (it may carry user information: never log it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL safe to show.
    pub fn url_redacted(&self) -> &str {
        &self.url_redacted
    }

    pub fn auth(&self) -> &RemoteAuth {
        &self.auth
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Whether the URL is SSH and nothing is pinned for it: every call will be refused.
    pub fn ssh_unpinned(&self) -> bool {
        self.url_info.scheme == Scheme::Ssh && self.pins.is_empty() && self.known_hosts.is_none()
    }

    /// Starts one call: reads the credentials and the known_hosts file, and starts the
    /// deadline.
    pub fn session(&self) -> Result<Session<'_>, FetchError> {
        let known_hosts = match (&self.known_hosts, self.url_info.scheme) {
            (Some(path), Scheme::Ssh) => {
                Some(KnownHosts::load(path).map_err(|e| FetchError::Config {
                    url: self.url_redacted.clone(),
                    detail: e.to_string(),
                })?)
            }
            _ => None,
        };
        Ok(Session {
            access: self,
            state: RefCell::new(CallState::default()),
            secrets: self.read_secrets()?,
            known_hosts,
            deadline: Instant::now() + self.deadline,
        })
    }

    /// Runs `call` (blocking libgit2 work that opens its own [`Session`]) on the blocking pool,
    /// abandoned with [`FetchError::Timeout`] if it overruns the deadline by more than a
    /// second: a remote that stops answering cannot hold the caller longer than that.
    pub async fn run<T, F>(&self, call: F) -> Result<T, FetchError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, FetchError> + Send + 'static,
    {
        let limit = self.deadline + Duration::from_secs(1);
        match tokio::time::timeout(limit, tokio::task::spawn_blocking(call)).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(FetchError::Git {
                url: self.url_redacted.clone(),
                detail: format!("the Git task failed: {join}"),
            }),
            Err(_) => Err(FetchError::Timeout {
                url: self.url_redacted.clone(),
                after: self.deadline,
            }),
        }
    }

    fn read_secrets(&self) -> Result<Secrets, FetchError> {
        let redactor = &self.redactor;
        Ok(match &self.auth {
            RemoteAuth::None | RemoteAuth::SshAgent => Secrets::default(),
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
}

/// What the callbacks of one call found out, read when libgit2 returns an error.
#[derive(Default)]
struct CallState {
    failure: Option<FetchError>,
    deadline_hit: bool,
}

#[derive(Default)]
struct Secrets {
    token: Option<Secret>,
    passphrase: Option<Secret>,
}

/// One network call to a remote: its credentials, trusted host keys and deadline.
pub struct Session<'a> {
    access: &'a Access,
    state: RefCell<CallState>,
    secrets: Secrets,
    known_hosts: Option<KnownHosts>,
    deadline: Instant,
}

impl<'a> Session<'a> {
    /// The access this call is made with.
    pub fn access(&self) -> &Access {
        self.access
    }

    /// Turns a libgit2 error into a [`FetchError`], preferring what the callbacks recorded.
    pub fn classify(&self, e: git2::Error) -> FetchError {
        let access = self.access;
        let url = access.url_redacted.clone();
        let mut st = self.state.borrow_mut();
        if let Some(f) = st.failure.take() {
            return f;
        }
        let timed_out = e.code() == git2::ErrorCode::Timeout || e.message().contains("timed out");
        if st.deadline_hit || timed_out {
            return FetchError::Timeout {
                url,
                after: if st.deadline_hit {
                    access.deadline
                } else {
                    network_timeouts().map_or(DEFAULT_IO_TIMEOUT, |t| t.1)
                },
            };
        }
        let detail = self.scrub(e.message());
        match e.code() {
            git2::ErrorCode::Auth => {
                return FetchError::Auth {
                    url,
                    detail: format!(
                        "{detail}; {}",
                        match &access.auth {
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
                    host: access.url_info.host.clone().unwrap_or_default(),
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
    fn scrub(&self, message: &str) -> String {
        let mut s = message.replace(&self.access.url, &self.access.url_redacted);
        for secret in [&self.secrets.token, &self.secrets.passphrase]
            .into_iter()
            .flatten()
        {
            if !secret.expose().is_empty() {
                s = s.replace(secret.expose(), "***");
            }
        }
        s
    }

    /// Whether the call's deadline has passed (recorded, so the error says so).
    pub fn past_deadline(&self) -> bool {
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
    /// counters, so a second phase re-sending the same credentials is not taken for a refusal):
    /// credentials, the host key check, and the deadline at every progress report. A caller
    /// may add its own (a push's negotiation and per-ref status).
    pub fn callbacks(&self) -> RemoteCallbacks<'_> {
        let cx = self;
        let mut cb = RemoteCallbacks::new();
        let token_attempts = Cell::new(0u32);
        let key_attempts = Cell::new(0u32);
        cb.credentials(move |_url, user_from_url, allowed| {
            cx.credentials(user_from_url, allowed, &token_attempts, &key_attempts)
        });
        cb.certificate_check(move |cert, host| cx.certificate_check(cert, host));
        cb.transfer_progress(move |_| !cx.past_deadline());
        cb.sideband_progress(move |_| !cx.past_deadline());
        cb.pack_progress(move |_, _, _| {
            cx.past_deadline();
        });
        cb.push_transfer_progress(move |_, _, _| {
            cx.past_deadline();
        });
        cb
    }

    fn credentials(
        &self,
        user_from_url: Option<&str>,
        allowed: CredentialType,
        token_attempts: &Cell<u32>,
        key_attempts: &Cell<u32>,
    ) -> Result<Cred, git2::Error> {
        let access = self.access;
        let url = access.url_redacted.clone();
        if self.past_deadline() {
            return Err(git2::Error::from_str("deadline passed"));
        }
        match &access.auth {
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
                    .or(access.url_info.user.as_deref())
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
            RemoteAuth::SshAgent if allowed.contains(CredentialType::USERNAME) => Cred::username(
                user_from_url
                    .or(access.url_info.user.as_deref())
                    .unwrap_or("git"),
            ),
            RemoteAuth::SshAgent if allowed.contains(CredentialType::SSH_KEY) => {
                key_attempts.set(key_attempts.get() + 1);
                if key_attempts.get() > 1 {
                    return Err(self.fail(FetchError::Auth {
                        url,
                        detail: "the server refused the SSH agent's keys".into(),
                    }));
                }
                Cred::ssh_key_from_agent(
                    user_from_url
                        .or(access.url_info.user.as_deref())
                        .unwrap_or("git"),
                )
            }
            RemoteAuth::Token { .. } | RemoteAuth::None | RemoteAuth::SshAgent => {
                Err(self.fail(FetchError::Auth {
                    url,
                    detail: format!(
                        "the remote asks for {} and none are configured: give a token for HTTPS or \
                     a private key for SSH",
                        describe_allowed(allowed)
                    ),
                }))
            }
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
        let access = self.access;
        let url = access.url_redacted.clone();
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
        let port = access.url_info.port.unwrap_or(22);
        let host = host.to_string();
        match hostkey::verify(
            &access.pins,
            self.known_hosts.as_ref(),
            &host,
            port,
            &fingerprint,
        ) {
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

/// The parts of a remote URL that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlInfo {
    pub(crate) scheme: Scheme,
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

/// Why a remote URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("the remote URL is empty")]
    Empty,
    #[error(
        "URL scheme `{0}` is not supported (use https://, ssh://, git@host:path, git:// or file://)"
    )]
    Scheme(String),
    #[error("the remote URL has no host")]
    NoHost,
    #[error("unbalanced `[` in host `{0}`")]
    Bracket(String),
    #[error("port `{0}` is not a number")]
    Port(String),
    /// The URL, redacted.
    #[error("`{0}` is not a Git URL (use https://, ssh://, git@host:path, git:// or file://)")]
    NotGit(String),
}

pub(crate) fn parse_url(url: &str) -> Result<UrlInfo, UrlError> {
    let url = url.trim();
    if url.is_empty() {
        return Err(UrlError::Empty);
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "git" => Scheme::Git,
            "file" => Scheme::File,
            other => return Err(UrlError::Scheme(other.to_string())),
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
            return Err(UrlError::NoHost);
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
    Err(UrlError::NotGit(redact_url(url)))
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), UrlError> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => return Err(UrlError::Bracket(hostport.to_string())),
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
                .map_err(|_| UrlError::Port(p.to_string()))?,
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

pub(crate) fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
}
