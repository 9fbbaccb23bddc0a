//! The GitHub REST client: authentication (token or GitHub App), the API base (github.com or
//! GitHub Enterprise Server), timeouts, rate limits and backoff, and per-repository
//! serialization of mutating calls.
//!
//! Requests go through octocrab, which owns authentication, installation-token refresh and
//! the rate-limit aware retry layer (`retry-after`, `x-ratelimit-reset`). Request and response
//! bodies are our own small serde types ([`api`]) so that each request is exactly what GitHub
//! documents (a tree entry with `"sha": null` deletes a path) and independent of octocrab's
//! model churn.

pub mod api;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};

use crate::secret::Secret;
use octocrab::Octocrab;
use octocrab::service::middleware::retry::{NoOpRateLimitMetrics, RetryConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The public API's base, used when `GITHUB_API_URL` is unset.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Why a GitHub call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub answered {status} to {method} {route}: {message}")]
    Api {
        method: &'static str,
        route: String,
        status: u16,
        message: String,
        /// The `errors[].message` details GitHub adds to a 422.
        details: Vec<String>,
    },
    #[error("could not reach GitHub for {method} {route}: {message}")]
    Transport {
        method: &'static str,
        route: String,
        message: String,
    },
    #[error("unexpected answer from GitHub to {method} {route}: {message}")]
    Decode {
        method: &'static str,
        route: String,
        message: String,
    },
    #[error("GitHub client configuration: {0}")]
    Config(String),
}

impl GitHubError {
    /// True for faults that may pass: transport errors, 5xx, 429, and a 403 that is a rate limit.
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Api {
                status, message, ..
            } => {
                *status >= 500
                    || *status == 408
                    || *status == 429
                    || (*status == 403 && message.to_ascii_lowercase().contains("rate limit"))
            }
            GitHubError::Transport { .. } => true,
            GitHubError::Decode { .. } | GitHubError::Config(_) => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn is_server_error(&self) -> bool {
        matches!(self, GitHubError::Api { status, .. } if *status >= 500)
            || matches!(self, GitHubError::Transport { .. })
    }

    /// A 422 whose message or details contain `needle` (case-insensitive).
    pub fn is_unprocessable_with(&self, needle: &str) -> bool {
        let needle = needle.to_ascii_lowercase();
        match self {
            GitHubError::Api {
                status: 422,
                message,
                details,
                ..
            } => {
                message.to_ascii_lowercase().contains(&needle)
                    || details
                        .iter()
                        .any(|d| d.to_ascii_lowercase().contains(&needle))
            }
            _ => false,
        }
    }
}

/// How mockops authenticates to GitHub.
#[derive(Clone)]
pub enum Auth {
    /// A personal access token, fine-grained token or Actions `GITHUB_TOKEN`.
    Token(Secret),
    /// A GitHub App: the installation for each repository is looked up, and its tokens are
    /// minted and refreshed by octocrab.
    App {
        app_id: u64,
        private_key_pem: Vec<u8>,
    },
    /// No authentication (public repositories read-only, or a test server).
    Anonymous,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Auth::App { app_id, .. } => {
                write!(f, "Auth::App {{ app_id: {app_id}, key: <redacted> }}")
            }
            Auth::Anonymous => f.write_str("Auth::Anonymous"),
        }
    }
}

/// Settings of a [`GitHub`] client. `GitHub::builder()` starts from the defaults.
#[derive(Debug, Clone)]
pub struct GitHubBuilder {
    api_url: String,
    auth: Auth,
    connect_timeout: Duration,
    read_timeout: Duration,
    rate_limit_retries: usize,
    min_rate_limit_wait: Duration,
    server_error_retries: usize,
    server_error_min_delay: Duration,
    mutation_interval: Duration,
}

impl Default for GitHubBuilder {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_API_URL.to_string(),
            auth: Auth::Anonymous,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            rate_limit_retries: 3,
            min_rate_limit_wait: Duration::from_secs(1),
            server_error_retries: 3,
            server_error_min_delay: Duration::from_millis(500),
            mutation_interval: Duration::from_secs(1),
        }
    }
}

impl GitHubBuilder {
    /// The REST API base: `https://api.github.com`, or `https://HOST/api/v3` for GitHub
    /// Enterprise Server. A trailing slash is optional.
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub fn token(self, token: impl Into<String>) -> Self {
        self.auth(Auth::Token(Secret::new(token)))
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// How often a call that hit a rate limit (403/429 with `retry-after` or
    /// `x-ratelimit-reset`) is sent again after waiting as GitHub asks.
    pub fn rate_limit_retries(mut self, retries: usize) -> Self {
        self.rate_limit_retries = retries;
        self
    }

    /// Backoff for 5xx answers on calls that are safe to repeat: up to `retries` more attempts,
    /// starting at `min_delay`, doubling, with jitter.
    pub fn server_error_backoff(mut self, retries: usize, min_delay: Duration) -> Self {
        self.server_error_retries = retries;
        self.server_error_min_delay = min_delay;
        self
    }

    /// Least time between two mutating calls to one repository (GitHub asks for at least one
    /// second between content-creating requests).
    pub fn mutation_interval(mut self, interval: Duration) -> Self {
        self.mutation_interval = interval;
        self
    }

    /// Builds the client; call it inside a Tokio runtime (octocrab starts a worker task).
    pub fn build(self) -> Result<GitHub, GitHubError> {
        let api_url = normalize_api_url(&self.api_url)?;
        let base = || -> Result<octocrab::OctocrabBuilder<_, _, _, _>, GitHubError> {
            Ok(Octocrab::builder()
                .base_uri(api_url.as_str())
                .map_err(|e| {
                    GitHubError::Config(format!(
                        "API URL {api_url:?} is not a valid URI ({e}); set GITHUB_API_URL to e.g. https://api.github.com or https://HOST/api/v3"
                    ))
                })?
                .set_connect_timeout(Some(self.connect_timeout))
                .set_read_timeout(Some(self.read_timeout))
                .add_retry_config(RetryConfig::HandleRateLimits {
                    metrics: Arc::new(NoOpRateLimitMetrics),
                    max_retries: self.rate_limit_retries,
                    min_wait_seconds: self.min_rate_limit_wait.as_secs().max(1),
                    retry_on_forbidden: false,
                }))
        };
        let auth = match &self.auth {
            Auth::Token(token) => AuthState::Fixed(Arc::new(
                base()?
                    .personal_token(token.expose().to_string())
                    .build()
                    .map_err(|e| GitHubError::Config(format!("building the client: {e}")))?,
            )),
            Auth::Anonymous => AuthState::Fixed(Arc::new(
                base()?
                    .build()
                    .map_err(|e| GitHubError::Config(format!("building the client: {e}")))?,
            )),
            Auth::App {
                app_id,
                private_key_pem,
            } => {
                let app = base()?
                    .app_from_rsa_pem(octocrab::models::AppId(*app_id), private_key_pem)
                    .map_err(|e| {
                        GitHubError::Config(format!(
                            "the GitHub App private key is not an RSA key in PEM form ({e}); download a new key from the App's settings"
                        ))
                    })?
                    .build()
                    .map_err(|e| GitHubError::Config(format!("building the client: {e}")))?;
                AuthState::App {
                    app: Box::new(app),
                    installations: Mutex::new(HashMap::new()),
                }
            }
        };
        Ok(GitHub {
            inner: Arc::new(Inner {
                api_url,
                auth,
                repos: Mutex::new(HashMap::new()),
                server_error_retries: self.server_error_retries,
                server_error_min_delay: self.server_error_min_delay,
                mutation_interval: self.mutation_interval,
            }),
        })
    }
}

/// `https://api.github.com/` or `https://HOST/api/v3/`: always one trailing slash, so that
/// octocrab keeps the path prefix.
fn normalize_api_url(url: &str) -> Result<String, GitHubError> {
    let url = url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(GitHubError::Config(format!(
            "API URL {url:?} must start with https:// (e.g. https://api.github.com or https://HOST/api/v3)"
        )));
    }
    Ok(format!("{}/", url.trim_end_matches('/')))
}

enum AuthState {
    Fixed(Arc<Octocrab>),
    App {
        app: Box<Octocrab>,
        /// Installation clients by `owner/repo`. Shared, never cloned: a cloned `Octocrab`
        /// copies its token cache, so each clone would mint its own installation token.
        installations: Mutex<HashMap<String, Arc<Octocrab>>>,
    },
}

struct Inner {
    api_url: String,
    auth: AuthState,
    repos: Mutex<HashMap<String, Arc<RepoSlot>>>,
    server_error_retries: usize,
    server_error_min_delay: Duration,
    mutation_interval: Duration,
}

/// Per repository: one writer at a time, and spacing between mutations.
#[derive(Default)]
struct RepoSlot {
    writer: tokio::sync::Mutex<()>,
    last_mutation: Mutex<Option<Instant>>,
}

/// A GitHub client; cheap to clone.
#[derive(Clone)]
pub struct GitHub {
    inner: Arc<Inner>,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.inner.api_url)
            .finish_non_exhaustive()
    }
}

impl GitHub {
    pub fn builder() -> GitHubBuilder {
        GitHubBuilder::default()
    }

    /// From the environment, following the conventions of GitHub Actions:
    /// `GITHUB_API_URL` (default the public API), then `GITHUB_TOKEN`, or a GitHub App from
    /// `GITHUB_APP_ID` and `GITHUB_APP_PRIVATE_KEY_FILE` (path of the PEM key).
    pub fn from_env() -> Result<Self, GitHubError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`GitHub::from_env`], registering the token and the App's private key with `redactor`
    /// (so neither can reach a log line or a record) before anything uses them.
    pub fn from_env_redacted(redactor: &crate::secret::Redactor) -> Result<Self, GitHubError> {
        Self::from_lookup_redacted(|name| std::env::var(name).ok(), redactor)
    }

    /// [`GitHub::from_env`] over any variable source.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, GitHubError> {
        Self::from_lookup_redacted(var, &crate::secret::Redactor::new())
    }

    /// [`GitHub::from_env_redacted`] over any variable source.
    pub fn from_lookup_redacted(
        var: impl Fn(&str) -> Option<String>,
        redactor: &crate::secret::Redactor,
    ) -> Result<Self, GitHubError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(token) = set("GITHUB_TOKEN") {
            redactor.register(token.trim());
        }
        let mut builder =
            Self::builder().api_url(set("GITHUB_API_URL").unwrap_or(DEFAULT_API_URL.into()));
        match (
            set("GITHUB_APP_ID"),
            set("GITHUB_APP_PRIVATE_KEY_FILE"),
            set("GITHUB_TOKEN"),
        ) {
            (Some(id), Some(key_file), _) => {
                let app_id = id.trim().parse::<u64>().map_err(|_| {
                    GitHubError::Config(format!(
                        "GITHUB_APP_ID must be the App's numeric id (App settings → About), got {id:?}"
                    ))
                })?;
                let path = PathBuf::from(key_file);
                let pem = std::fs::read(&path).map_err(|e| {
                    GitHubError::Config(format!(
                        "cannot read the GitHub App private key {} ({e}); set GITHUB_APP_PRIVATE_KEY_FILE to the .pem file downloaded from the App's settings",
                        path.display()
                    ))
                })?;
                redactor.register(&String::from_utf8_lossy(&pem));
                builder = builder.auth(Auth::App {
                    app_id,
                    private_key_pem: pem,
                });
            }
            (Some(_), None, _) => {
                return Err(GitHubError::Config(
                    "GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY_FILE is not; set it to the path of the App's private key (.pem)".into(),
                ));
            }
            (None, _, Some(token)) => builder = builder.token(token.trim()),
            (None, _, None) => {
                return Err(GitHubError::Config(
                    "no GitHub credentials: set GITHUB_TOKEN, or GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_FILE".into(),
                ));
            }
        }
        builder.build()
    }

    /// The API base in use, with one trailing slash.
    pub fn api_url(&self) -> &str {
        &self.inner.api_url
    }

    /// A handle on one repository. With App authentication the installation that covers the
    /// repository is looked up (once) and its token minted.
    pub async fn repo(&self, owner: &str, name: &str) -> Result<Repo, GitHubError> {
        let key = format!("{owner}/{name}");
        let crab = match &self.inner.auth {
            AuthState::Fixed(crab) => crab.clone(),
            AuthState::App { app, installations } => {
                let cached = installations
                    .lock()
                    .expect("installation cache lock poisoned")
                    .get(&key)
                    .cloned();
                match cached {
                    Some(c) => c,
                    None => {
                        let route = format!("/repos/{}/{}/installation", enc(owner), enc(name));
                        let inst: api::Installation = call_get(app, &route, None::<&()>)
                            .await
                            .map_err(|e| match e.status() {
                                Some(404) => GitHubError::Config(format!(
                                    "the GitHub App is not installed on {key}; install it on the repository (App settings → Install App)"
                                )),
                                _ => e,
                            })?;
                        let c = Arc::new(
                            app.installation(octocrab::models::InstallationId(inst.id))
                                .map_err(|e| {
                                    GitHubError::Config(format!("installation client: {e}"))
                                })?,
                        );
                        installations
                            .lock()
                            .expect("installation cache lock poisoned")
                            .insert(key.clone(), c.clone());
                        c
                    }
                }
            }
        };
        let slot = self
            .inner
            .repos
            .lock()
            .expect("repository lock table poisoned")
            .entry(key)
            .or_default()
            .clone();
        Ok(Repo {
            crab,
            owner: owner.to_string(),
            name: name.to_string(),
            slot,
            server_error_retries: self.inner.server_error_retries,
            server_error_min_delay: self.inner.server_error_min_delay,
            mutation_interval: self.inner.mutation_interval,
        })
    }
}

/// Percent-encodes one path segment value (branch names keep their slashes).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn map_err(method: &'static str, route: &str, e: octocrab::Error) -> GitHubError {
    match e {
        octocrab::Error::GitHub { source, .. } => GitHubError::Api {
            method,
            route: route.to_string(),
            status: source.status_code.as_u16(),
            message: source.message.clone(),
            details: source
                .errors
                .iter()
                .flatten()
                .map(|d| match d.get("message").and_then(|m| m.as_str()) {
                    Some(m) => m.to_string(),
                    None => d.to_string(),
                })
                .collect(),
        },
        octocrab::Error::Serde { source, .. } => GitHubError::Decode {
            method,
            route: route.to_string(),
            message: source.to_string(),
        },
        octocrab::Error::Json { source, .. } => GitHubError::Decode {
            method,
            route: route.to_string(),
            message: source.to_string(),
        },
        other => GitHubError::Transport {
            method,
            route: route.to_string(),
            message: other.to_string(),
        },
    }
}

async fn call_get<R: DeserializeOwned, Q: Serialize + ?Sized>(
    crab: &Octocrab,
    route: &str,
    query: Option<&Q>,
) -> Result<R, GitHubError> {
    crab.get::<R, _, Q>(route, query)
        .await
        .map_err(|e| map_err("GET", route, e))
}

/// One repository on GitHub.
#[derive(Clone)]
pub struct Repo {
    crab: Arc<Octocrab>,
    owner: String,
    name: String,
    slot: Arc<RepoSlot>,
    server_error_retries: usize,
    server_error_min_delay: Duration,
    mutation_interval: Duration,
}

impl fmt::Debug for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Repo({}/{})", self.owner, self.name)
    }
}

/// While held, no other mockops task writes to the repository through this client.
pub struct WriterGuard<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl Repo {
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Serializes writers to this repository (within this process).
    pub async fn writer(&self) -> WriterGuard<'_> {
        WriterGuard(self.slot.writer.lock().await)
    }

    fn route(&self, tail: &str) -> String {
        format!("/repos/{}/{}/{tail}", enc(&self.owner), enc(&self.name))
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.server_error_min_delay)
            .with_max_delay(Duration::from_secs(30))
            .with_max_times(self.server_error_retries)
            .with_jitter()
    }

    async fn pace(&self) {
        if self.mutation_interval.is_zero() {
            return;
        }
        let wait = {
            let last = self
                .slot
                .last_mutation
                .lock()
                .expect("mutation clock poisoned");
            last.map(|t| self.mutation_interval.saturating_sub(t.elapsed()))
        };
        if let Some(wait) = wait.filter(|w| !w.is_zero()) {
            tokio::time::sleep(wait).await;
        }
        *self
            .slot
            .last_mutation
            .lock()
            .expect("mutation clock poisoned") = Some(Instant::now());
    }

    /// GET, retried with backoff on 5xx and transport errors.
    pub async fn get<R: DeserializeOwned, Q: Serialize + ?Sized + Sync>(
        &self,
        tail: &str,
        query: Option<&Q>,
    ) -> Result<R, GitHubError> {
        let route = self.route(tail);
        (|| async { call_get::<R, Q>(&self.crab, &route, query).await })
            .retry(self.backoff())
            .when(GitHubError::is_server_error)
            .notify(|e, wait| tracing::warn!(error = %e, ?wait, "GitHub call failed; retrying"))
            .await
    }

    /// GET that maps 404 to `None`.
    pub async fn get_opt<R: DeserializeOwned>(&self, tail: &str) -> Result<Option<R>, GitHubError> {
        match self.get::<R, ()>(tail, None).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.status() == Some(404) || e.status() == Some(409) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A mutating call. `idempotent` calls (content-addressed objects, setting a value) are
    /// retried with backoff on 5xx; others are sent once by us (octocrab may replay them after
    /// a 5xx, so callers make them idempotent by looking up before creating).
    pub async fn send<B: Serialize + ?Sized + Sync, R: DeserializeOwned>(
        &self,
        method: &'static str,
        tail: &str,
        body: &B,
        idempotent: bool,
    ) -> Result<R, GitHubError> {
        let route = self.route(tail);
        let once = || async {
            self.pace().await;
            let res = match method {
                "POST" => self.crab.post::<_, R>(&route, Some(body)).await,
                "PATCH" => self.crab.patch::<R, _, _>(&route, Some(body)).await,
                "PUT" => self.crab.put::<R, _, _>(&route, Some(body)).await,
                _ => {
                    return Err(GitHubError::Config(format!("unsupported method {method}")));
                }
            };
            res.map_err(|e| map_err(method, &route, e))
        };
        if idempotent {
            once.retry(self.backoff())
                .when(GitHubError::is_server_error)
                .notify(|e, wait| tracing::warn!(error = %e, ?wait, "GitHub call failed; retrying"))
                .await
        } else {
            once().await
        }
    }

    /// DELETE; 404 counts as done.
    pub async fn delete(&self, tail: &str) -> Result<(), GitHubError> {
        let route = self.route(tail);
        (|| async {
            self.pace().await;
            let res = self
                .crab
                ._delete(route.as_str(), None::<&()>)
                .await
                .map_err(|e| map_err("DELETE", &route, e))?;
            match octocrab::map_github_error(res).await {
                Ok(_) => Ok(()),
                Err(e) => match map_err("DELETE", &route, e) {
                    e if e.status() == Some(404) || e.status() == Some(422) => Ok(()),
                    e => Err(e),
                },
            }
        })
        .retry(self.backoff())
        .when(GitHubError::is_server_error)
        .await
    }
}

/// `owner/repo`, `https://github.com/owner/repo(.git)` or a GitHub Enterprise web URL.
pub fn parse_repository(s: &str) -> Result<(String, String), GitHubError> {
    let t = s.trim().trim_end_matches('/');
    let t = t.strip_suffix(".git").unwrap_or(t);
    let path = if let Some(rest) = t
        .strip_prefix("https://")
        .or_else(|| t.strip_prefix("http://"))
    {
        rest.split_once('/').map(|(_, p)| p).unwrap_or("")
    } else if let Some(rest) = t.strip_prefix("git@") {
        rest.split_once(':').map(|(_, p)| p).unwrap_or("")
    } else {
        t
    };
    let mut parts = path.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(r), None)
            if !o.is_empty()
                && !r.is_empty()
                && [o, r].iter().all(|p| {
                    p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                }) =>
        {
            Ok((o.to_string(), r.to_string()))
        }
        _ => Err(GitHubError::Config(format!(
            "repository {s:?} is not OWNER/REPO or https://github.com/OWNER/REPO"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_url_keeps_its_path_and_gets_one_trailing_slash() {
        assert_eq!(
            normalize_api_url("https://api.github.com").unwrap(),
            "https://api.github.com/"
        );
        assert_eq!(
            normalize_api_url("https://ghe.example.com/api/v3/").unwrap(),
            "https://ghe.example.com/api/v3/"
        );
        assert_eq!(
            normalize_api_url("https://ghe.example.com/api/v3//").unwrap(),
            "https://ghe.example.com/api/v3/"
        );
        assert!(normalize_api_url("api.github.com").is_err());
    }

    #[test]
    fn repositories_parse_in_every_usual_spelling() {
        for s in [
            "acme/sdk",
            "https://github.com/acme/sdk",
            "https://github.com/acme/sdk.git",
            "https://github.com/acme/sdk/",
            "git@github.com:acme/sdk.git",
            "https://ghe.example.com/acme/sdk",
        ] {
            assert_eq!(
                parse_repository(s).unwrap(),
                ("acme".to_string(), "sdk".to_string()),
                "{s}"
            );
        }
        for s in [
            "acme",
            "acme/sdk/extra",
            "https://github.com/acme",
            "a b/c",
            "",
        ] {
            assert!(parse_repository(s).is_err(), "{s}");
        }
    }

    #[tokio::test]
    async fn from_env_explains_what_is_missing() {
        let err = GitHub::from_lookup(|_| None).unwrap_err().to_string();
        assert!(err.contains("GITHUB_TOKEN"), "{err}");
        let err = GitHub::from_lookup(|n| (n == "GITHUB_APP_ID").then(|| "12".to_string()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("GITHUB_APP_PRIVATE_KEY_FILE"), "{err}");
        let gh = GitHub::from_lookup(|n| match n {
            "GITHUB_TOKEN" => Some("ghp_secret".into()),
            "GITHUB_API_URL" => Some("https://ghe.example.com/api/v3".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(gh.api_url(), "https://ghe.example.com/api/v3/");
        assert!(!format!("{gh:?}").contains("ghp_secret"));
    }

    #[tokio::test]
    async fn the_token_and_the_app_key_are_registered_with_the_redactor() {
        let redactor = crate::secret::Redactor::new();
        GitHub::from_lookup_redacted(
            |n| (n == "GITHUB_TOKEN").then(|| "ghp_tokenvalue0123456789".to_string()),
            &redactor,
        )
        .expect("client");
        assert_eq!(
            redactor.redact("auth failed for ghp_tokenvalue0123456789"),
            "auth failed for ***"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("app.pem");
        std::fs::write(
            &key,
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAsecretkeymaterial\n-----END RSA PRIVATE KEY-----\n",
        )
        .expect("write");
        // Not a usable key, but it is registered before it is parsed.
        let _ = GitHub::from_lookup_redacted(
            |n| match n {
                "GITHUB_APP_ID" => Some("12".into()),
                "GITHUB_APP_PRIVATE_KEY_FILE" => Some(key.display().to_string()),
                _ => None,
            },
            &redactor,
        );
        assert_eq!(
            redactor.redact("x MIIEowIBAAKCAQEAsecretkeymaterial"),
            "x ***"
        );
    }

    #[test]
    fn auth_debug_never_shows_secrets() {
        let a = Auth::Token(Secret::new("ghp_123"));
        assert!(!format!("{a:?}").contains("ghp_123"));
        let a = Auth::App {
            app_id: 1,
            private_key_pem: b"-----BEGIN".to_vec(),
        };
        assert!(!format!("{a:?}").contains("BEGIN"));
    }

    #[test]
    fn transient_errors_are_told_apart() {
        let api = |status, message: &str| GitHubError::Api {
            method: "GET",
            route: "/x".into(),
            status,
            message: message.into(),
            details: vec![],
        };
        assert!(api(502, "Bad Gateway").is_transient());
        assert!(api(429, "").is_transient());
        assert!(api(403, "You have exceeded a secondary rate limit").is_transient());
        assert!(!api(403, "Resource not accessible by integration").is_transient());
        assert!(!api(422, "Validation Failed").is_transient());
    }
}
