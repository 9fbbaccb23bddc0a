//! What every pipeline step implementation shares: the context of one attempt and its error.
//!
//! A step does one attempt. The pipeline engine owns timeouts, retries with backoff,
//! `continue_on_error` and persistence of status, logs and outputs.
//!
//! A failed attempt is a [`StepError`]: the step type, the target it was reaching and a
//! [`Failure`] saying what went wrong, with the underlying typed error kept as its `source`.
//! Whether a retry may help ([`StepError::retryable`]) follows from the failure (and, for HTTP,
//! SMTP and Git failures, from their cause), never from a flag set at the call site.

use std::fmt;

use serde_json::{Map, Value as Json};

use crate::model::StepType;

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

/// What a step was reaching when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A JSON webhook receiver, by host (the path and query may carry tokens).
    Webhook { host: String },
    /// Slack's incoming webhooks.
    Slack,
    /// An SMTP server, `host:port`.
    Smtp { server: String },
    /// A Git remote a branch is pushed to (shown without credentials).
    Remote { remote: String },
    /// A repository on a Git hosting service, `owner/name`.
    Repository { repository: String },
    /// The SDK generator of a language.
    Generator { language: String },
    /// The daemon's own store.
    Store,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Webhook { host } => write!(f, "webhook {host}"),
            Target::Slack => f.write_str("Slack"),
            Target::Smtp { server } => write!(f, "SMTP {server}"),
            Target::Remote { remote } => write!(f, "remote {remote}"),
            Target::Repository { repository } => write!(f, "repository {repository}"),
            Target::Generator { language } => write!(f, "{language} generator"),
            Target::Store => f.write_str("store"),
        }
    }
}

/// What went wrong in an attempt. The text of each variant is what execution records show;
/// the cause, when there is one, is its `source`.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The step's config or input cannot be used as it is (a missing setting, an invalid URL,
    /// a body that cannot be built): only a change of the config helps.
    #[error("{0}")]
    Invalid(String),
    /// A secret reference cannot be resolved (malformed, unknown, not allowed, unreadable).
    #[error("{what}: {source}")]
    Secret {
        what: String,
        #[source]
        source: crate::secret::SecretError,
    },
    /// The operator's policy refuses it (an address outside `--allow-outbound`, a directory
    /// outside `--git-push-dir`, a generator command not allowed): asking again gets the same.
    #[error("{0}")]
    Refused(String),
    /// An HTTP target answered with an error status.
    #[error("{message}")]
    Status { status: u16, message: String },
    /// An HTTP request got no answer (no connection, a timeout, a broken exchange).
    #[error("{message}")]
    Request {
        message: String,
        #[source]
        source: reqwest::Error,
    },
    /// An SMTP exchange failed.
    #[error("{message}")]
    Smtp {
        message: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// A Git operation (commit, push) failed.
    #[error("{message}")]
    Git {
        message: String,
        #[source]
        source: crate::git::write::WriteError,
    },
    /// A GitHub API call failed (`message` is the error with a hint where the fix is known).
    #[error("{message}")]
    GitHub {
        message: String,
        #[source]
        source: crate::github::GitHubError,
    },
    /// A failure of one part of the step's work (`context` names the part, e.g. a language of
    /// `regenerate_sdk`).
    #[error("{context}{inner}")]
    Within {
        context: String,
        #[source]
        inner: Box<StepError>,
    },
    /// A file or directory on the daemon's machine (a step's work directory) could not be
    /// created, read or written; the disk or the temporary directory may recover.
    #[error("{message}")]
    Io {
        message: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon's store could not be read or written.
    #[error("store: {0}")]
    Store(#[source] crate::store::StoreError),
    /// The attempt did not finish in time.
    #[error("{0}")]
    TimedOut(String),
    /// Something the step needs is not there yet, or its work ended abnormally (no revision
    /// applied yet, a delivery task that panicked): a later attempt may find it.
    #[error("{0}")]
    Unavailable(String),
    /// A step that reaches several targets: some failed (the others are not sent again on a
    /// retry).
    #[error("{}", partial_message(kind, *total, failures))]
    Partial {
        kind: &'static str,
        total: usize,
        failures: Vec<StepError>,
    },
}

fn partial_message(kind: &str, total: usize, failures: &[StepError]) -> String {
    let details = failures
        .iter()
        .map(StepError::rendered)
        .collect::<Vec<_>>()
        .join("; ");
    if total == 1 {
        format!("{kind} delivery failed: {details}")
    } else {
        format!(
            "{kind} delivery failed for {} of {total} targets: {details}",
            failures.len()
        )
    }
}

impl Failure {
    /// Whether the failure happened while reaching a target (HTTP, SMTP, Git, GitHub).
    pub fn reaches_out(&self) -> bool {
        match self {
            Failure::Status { .. }
            | Failure::Request { .. }
            | Failure::Smtp { .. }
            | Failure::Git { .. }
            | Failure::GitHub { .. } => true,
            Failure::Within { inner, .. } => inner.failure.reaches_out(),
            Failure::Partial { failures, .. } => failures.iter().any(|f| f.failure.reaches_out()),
            _ => false,
        }
    }

    /// Whether trying again may help, from the kind of failure and its cause.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Invalid(_) | Failure::Secret { .. } | Failure::Refused(_) => false,
            Failure::Status { status, .. } => http_status_retryable(*status),
            Failure::Request { source, .. } => request_retryable(source),
            Failure::Smtp { source, .. } => smtp_retryable(source),
            Failure::Git { source, .. } => source.is_transient(),
            Failure::GitHub { source, .. } => source.is_transient(),
            Failure::Within { inner, .. } => inner.retryable(),
            Failure::Io { .. }
            | Failure::Store(_)
            | Failure::TimedOut(_)
            | Failure::Unavailable(_) => true,
            Failure::Partial { failures, .. } => failures.iter().any(StepError::retryable),
        }
    }
}

/// 408, 429 and 5xx may pass; other statuses (4xx, 3xx: not followed) will not.
pub fn http_status_retryable(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// A request that got no response: timeouts, connection and transport failures may pass; a
/// request that cannot be built, or a redirect, will not.
pub fn request_retryable(e: &reqwest::Error) -> bool {
    if let Some(status) = e.status() {
        return http_status_retryable(status.as_u16());
    }
    !e.is_builder() && !e.is_redirect()
}

/// SMTP: 4xx replies, timeouts and connection failures may pass; 5xx replies (a rejected
/// recipient, failed authentication), TLS and client errors (configuration) will not.
pub fn smtp_retryable(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_permanent() || e.is_tls() || e.is_client() {
        return false;
    }
    true
}

/// Why an attempt failed: the step, its target and the failure with its cause.
pub struct StepError {
    /// The step type (filled in by the step runner when the step's code did not).
    pub step: Option<StepType>,
    /// What the step was reaching, when it was reaching something.
    pub target: Option<Target>,
    /// Boxed: an error travels in every `Result` of a step, and most are `Ok`.
    pub failure: Box<Failure>,
    /// Masks the secrets the step resolved in what [`StepError::rendered`] and `Display` show
    /// (a step that resolves secrets sets it; the engine redacts every error again anyway).
    redactor: Option<crate::secret::Redactor>,
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("step", &self.step)
            .field("target", &self.target)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.redactor {
            Some(r) => f.write_str(&r.redact(&self.failure.to_string())),
            None => fmt::Display::fmt(&self.failure, f),
        }
    }
}

impl std::error::Error for StepError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.failure)
    }
}

impl From<Failure> for StepError {
    fn from(failure: Failure) -> Self {
        Self {
            step: None,
            target: None,
            failure: Box::new(failure),
            redactor: None,
        }
    }
}

impl StepError {
    /// Whether trying again may help: follows from the failure and its cause.
    pub fn retryable(&self) -> bool {
        self.failure.retryable()
    }

    /// The message with its causes, as execution records and logs show it (secrets masked
    /// when the step set a redactor).
    pub fn rendered(&self) -> String {
        let text = Chain(&UnmaskedFailure(&self.failure)).to_string();
        match &self.redactor {
            Some(r) => r.redact(&text).into_owned(),
            None => text,
        }
    }

    /// The same error, with `redactor` masking secrets in what it shows.
    pub fn redacted_by(mut self, redactor: crate::secret::Redactor) -> Self {
        self.redactor = Some(redactor);
        self
    }

    /// The same error, reaching `target`.
    pub fn at(mut self, target: Target) -> Self {
        self.target = Some(target);
        self
    }

    /// The same error, reaching `target` unless it already names one.
    pub fn or_at(mut self, target: Target) -> Self {
        self.target.get_or_insert(target);
        self
    }

    /// The same error, of a step of type `step` unless it already names one.
    pub fn in_step(mut self, step: StepType) -> Self {
        self.step.get_or_insert(step);
        self
    }

    /// See [`Failure::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::Invalid(message.into()).into()
    }

    /// See [`Failure::Refused`].
    pub fn refused(message: impl Into<String>) -> Self {
        Failure::Refused(message.into()).into()
    }

    /// See [`Failure::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Failure::Unavailable(message.into()).into()
    }

    /// See [`Failure::TimedOut`].
    pub fn timed_out(message: impl Into<String>) -> Self {
        Failure::TimedOut(message.into()).into()
    }

    /// See [`Failure::Secret`].
    pub fn secret(what: impl Into<String>, source: crate::secret::SecretError) -> Self {
        Failure::Secret {
            what: what.into(),
            source,
        }
        .into()
    }

    /// See [`Failure::Io`]: `message` says what was being done, the cause follows it.
    pub fn io(message: impl Into<String>, source: std::io::Error) -> Self {
        Failure::Io {
            message: message.into(),
            source,
        }
        .into()
    }

    /// See [`Failure::Store`].
    pub fn store(source: crate::store::StoreError) -> Self {
        Failure::Store(source).into()
    }

    /// See [`Failure::Git`]: `message` says what was being done, the cause follows it.
    pub fn git(message: impl Into<String>, source: crate::git::write::WriteError) -> Self {
        Failure::Git {
            message: message.into(),
            source,
        }
        .into()
    }

    /// The same failure, its text preceded by `context` (see [`Failure::Within`]); the step
    /// and target stay.
    pub fn within(self, context: impl Into<String>) -> Self {
        Self {
            step: self.step,
            target: self.target.clone(),
            redactor: self.redactor.clone(),
            failure: Box::new(Failure::Within {
                context: context.into(),
                inner: Box::new(self),
            }),
        }
    }

    /// See [`Failure::Status`].
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Failure::Status {
            status,
            message: message.into(),
        }
        .into()
    }

    /// See [`Failure::Request`]: `message` names the target and what happened, the cause
    /// follows it.
    pub fn request(message: impl Into<String>, source: reqwest::Error) -> Self {
        Failure::Request {
            message: message.into(),
            source,
        }
        .into()
    }
}

/// The failure of a step error, shown unmasked (its rendering is masked as a whole).
struct UnmaskedFailure<'a>(&'a Failure);

impl fmt::Debug for UnmaskedFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for UnmaskedFailure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)
    }
}

impl std::error::Error for UnmaskedFailure<'_> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(self.0)
    }
}

/// An error and its sources, joined by `: `, each cause once (a cause whose text the message
/// already quotes is not repeated). `{:#}`-style rendering for logs and records:
/// `tracing::warn!(error = %Chain(&e))`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = s.source();
        }
        f.write_str(&parts.join(": "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::write::WriteError;
    use crate::github::GitHubError;

    fn api(status: u16, message: &str) -> GitHubError {
        GitHubError::Api {
            method: "POST",
            route: "/repos/o/r/pulls".into(),
            status,
            message: message.into(),
            details: vec![],
        }
    }

    fn git(class: git2::ErrorClass) -> WriteError {
        WriteError::Git {
            what: "pushing".into(),
            place: "to remote".into(),
            source: git2::Error::new(git2::ErrorCode::GenericError, class, "boom"),
        }
    }

    #[test]
    fn config_secrets_and_refusals_are_not_retried() {
        assert!(!StepError::invalid("no webhook URL").retryable());
        assert!(!StepError::refused("outside --allow-outbound").retryable());
        let missing = crate::secret::SecretError::MissingEnv {
            reference: "${env:X}".into(),
            name: "X".into(),
        };
        let e = StepError::secret("webhook URL", missing);
        assert!(!e.retryable());
        assert!(
            e.rendered().starts_with("webhook URL: secret `${env:X}`"),
            "{}",
            e.rendered()
        );
    }

    #[test]
    fn passing_conditions_are_retried() {
        let io = StepError::io(
            "regenerate_sdk: cannot create /tmp/x",
            std::io::Error::other("no space left on device"),
        );
        assert!(io.retryable());
        assert_eq!(
            io.rendered(),
            "regenerate_sdk: cannot create /tmp/x: no space left on device"
        );
        assert!(StepError::timed_out("timed out after 30s").retryable());
        assert!(StepError::unavailable("no revision applied yet").retryable());
        let store = crate::store::StoreError::InUse {
            dir: std::path::PathBuf::from("/state"),
        };
        assert!(StepError::store(store).retryable());
    }

    #[test]
    fn http_statuses_decide() {
        for (status, retryable) in [
            (301, false),
            (400, false),
            (401, false),
            (404, false),
            (422, false),
            (408, true),
            (429, true),
            (500, true),
            (503, true),
        ] {
            let e = StepError::status(status, format!("webhook h: HTTP {status}"));
            assert_eq!(e.retryable(), retryable, "{status}");
        }
    }

    #[test]
    fn requests_that_cannot_be_built_are_not_retried() {
        let built = reqwest::Client::new().get("http://[not a host").build();
        let e = built.expect_err("not a URL");
        assert!(e.is_builder());
        assert!(!StepError::request("webhook h: request failed", e).retryable());
    }

    #[tokio::test]
    async fn refused_connections_are_retried_and_keep_their_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let err = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/h"))
            .send()
            .await
            .expect_err("nothing listens");
        let e = StepError::request("webhook 127.0.0.1: could not connect", err.without_url()).at(
            Target::Webhook {
                host: "127.0.0.1".into(),
            },
        );
        assert!(e.retryable());
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let text = e.rendered();
        assert!(
            text.starts_with("webhook 127.0.0.1: could not connect: "),
            "{text}"
        );
        assert!(
            text.len() > "webhook 127.0.0.1: could not connect: ".len(),
            "{text}"
        );
    }

    #[test]
    fn git_failures_follow_their_cause() {
        assert!(StepError::git("pushing", git(git2::ErrorClass::Net)).retryable());
        assert!(StepError::git("pushing", git(git2::ErrorClass::Os)).retryable());
        assert!(!StepError::git("pushing", git(git2::ErrorClass::Reference)).retryable());
        let io = WriteError::io(
            "writing",
            "a work tree",
            std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied"),
        );
        let e = StepError::git("writing", io);
        assert!(!e.retryable());
        assert_eq!(e.rendered(), "writing: writing a work tree: denied");
    }

    #[test]
    fn github_failures_follow_their_cause() {
        let e = |g| -> StepError {
            Failure::GitHub {
                message: "GitHub".into(),
                source: g,
            }
            .into()
        };
        assert!(e(api(502, "bad gateway")).retryable());
        assert!(e(api(403, "API rate limit exceeded")).retryable());
        assert!(!e(api(403, "Resource not accessible by integration")).retryable());
        assert!(!e(api(404, "Not Found")).retryable());
        assert!(!e(GitHubError::Config("no token".into())).retryable());
    }

    #[test]
    fn context_and_several_targets_keep_the_inner_verdict() {
        let down = StepError::status(503, "webhook a: HTTP 503");
        let bad = StepError::status(400, "webhook b: HTTP 400");
        let within = StepError::status(503, "HTTP 503").within("language `go`: ");
        assert!(within.retryable());
        assert_eq!(within.rendered(), "language `go`: HTTP 503");
        assert!(
            !StepError::invalid("x")
                .within("language `go`: ")
                .retryable()
        );

        let partial = |failures| -> StepError {
            Failure::Partial {
                kind: "webhook",
                total: 3,
                failures,
            }
            .into()
        };
        let both = partial(vec![bad, down]);
        assert!(both.retryable(), "one target may still accept");
        assert_eq!(
            both.rendered(),
            "webhook delivery failed for 2 of 3 targets: webhook b: HTTP 400; webhook a: HTTP 503"
        );
        let only_bad = partial(vec![StepError::status(404, "webhook c: HTTP 404")]);
        assert!(!only_bad.retryable());
    }

    #[test]
    fn a_redactor_masks_the_message_and_its_causes() {
        let r = crate::secret::Redactor::new();
        r.register("tok-0123456789abcdef");
        let io = WriteError::io(
            "reading",
            "tok-0123456789abcdef",
            std::io::Error::other("tok-0123456789abcdef is unreadable"),
        );
        let e = StepError::git("pushing", io).redacted_by(r);
        assert!(
            !e.rendered().contains("tok-0123456789abcdef"),
            "{}",
            e.rendered()
        );
        assert!(!e.to_string().contains("tok-0123456789abcdef"), "{e}");
    }

    #[test]
    fn targets_read_as_what_they_name() {
        let cases = [
            (
                Target::Webhook {
                    host: "hooks.example".into(),
                },
                "webhook hooks.example",
            ),
            (Target::Slack, "Slack"),
            (
                Target::Smtp {
                    server: "mail:587".into(),
                },
                "SMTP mail:587",
            ),
            (
                Target::Remote {
                    remote: "ssh://git@h/r".into(),
                },
                "remote ssh://git@h/r",
            ),
            (
                Target::Repository {
                    repository: "o/r".into(),
                },
                "repository o/r",
            ),
            (
                Target::Generator {
                    language: "go".into(),
                },
                "go generator",
            ),
            (Target::Store, "store"),
        ];
        for (t, text) in cases {
            assert_eq!(t.to_string(), text);
        }
        let e = StepError::invalid("x")
            .at(Target::Slack)
            .or_at(Target::Store)
            .in_step(StepType::Notify)
            .in_step(StepType::CreatePr);
        assert_eq!(e.target, Some(Target::Slack), "the first target stays");
        assert_eq!(e.step, Some(StepType::Notify), "the first step stays");
    }
}
