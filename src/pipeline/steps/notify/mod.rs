//! The `notify` step: Slack incoming webhooks, signed JSON webhooks and e-mail over SMTP.
//!
//! [`Notifier::send`] makes one attempt; the pipeline engine owns retries. The config arrives
//! with its templates rendered and its secret references unresolved: they are resolved here,
//! just before use, and every error and output passes through the [`Redactor`], so no secret
//! leaves this module except towards the target it is meant for.
//!
//! Deduplication: every delivery carries the step's idempotency key (`X-Mockops-Delivery`,
//! the e-mail `Message-ID`). Targets that already accepted a delivery for a key are not sent it
//! again by this process when the step is retried (one failed Slack channel of three does not
//! post twice to the other two).

mod email;
mod slack;
mod webhook;

pub use webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature};

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::model::{NotifyConfig, NotifyDefaults};
use crate::outbound::OutboundPolicy;
use crate::pipeline::steps::contract::Failure;
use crate::pipeline::steps::{Outputs, StepContext, StepError};
use crate::secret::{Redactor, SecretError, SecretSource, Secrets};

/// How long to wait for a TCP (and TLS) connection to a target.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole HTTP request may take: the usual argument of [`Notifier::http_client`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to an SMTP server and delivering one message may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Successful deliveries remembered per process, to skip them when a step is retried.
const REMEMBERED_DELIVERIES: usize = 4096;
/// Bytes of a response body read for an error message.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;
/// Characters of a response body quoted in an error message.
const QUOTED_RESPONSE_CHARS: usize = 300;
/// The daemon's own Slack incoming-webhook URL, used when neither the step nor `mockops.yaml`
/// names one.
pub const SLACK_WEBHOOK_ENV: &str = "MOCKOPS_SLACK_WEBHOOK_URL";

/// Sends notifications. Cheap to clone; clones share the delivery memory.
#[derive(Clone)]
pub struct Notifier {
    client: reqwest::Client,
    defaults: Arc<NotifyDefaults>,
    /// Why the defaults of `mockops.yaml` cannot be used (a malformed secret reference).
    defaults_error: Option<String>,
    secrets: Secrets,
    outbound: Arc<OutboundPolicy>,
    /// The daemon's own Slack webhook URL ([`SLACK_WEBHOOK_ENV`]), read at each use.
    slack_fallback: Option<SecretSource>,
    smtp_timeout: Duration,
    delivered: Arc<Mutex<Delivered>>,
    log: Option<Arc<dyn DeliveryLog>>,
}

/// Where accepted deliveries are remembered beyond this process (the daemon's store), so a
/// step resumed after a restart skips the targets that already accepted it.
pub trait DeliveryLog: Send + Sync {
    /// The status the target answered when it accepted delivery `id`.
    fn accepted(&self, id: &[u8; 32]) -> Result<Option<u16>, crate::store::StoreError>;
    /// Records that the target accepted delivery `id` with `status`.
    fn record(&self, id: &[u8; 32], status: u16) -> Result<(), crate::store::StoreError>;
}

impl DeliveryLog for crate::store::Store {
    fn accepted(&self, id: &[u8; 32]) -> Result<Option<u16>, crate::store::StoreError> {
        self.delivery(id)
    }

    fn record(&self, id: &[u8; 32], status: u16) -> Result<(), crate::store::StoreError> {
        self.record_delivery(id, status)
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("smtp_timeout", &self.smtp_timeout)
            .field("secrets", &self.secrets)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// A notifier that resolves `${env:...}` from the process environment and reaches public
    /// addresses only. Build `client` with [`Notifier::http_client`] and the same policy as
    /// [`Notifier::with_outbound`] gets.
    pub fn new(client: reqwest::Client, defaults: NotifyDefaults, redactor: Redactor) -> Self {
        Self::with_secrets(client, defaults, Secrets::new(redactor))
    }

    /// A notifier that resolves references through `secrets`.
    pub fn with_secrets(
        client: reqwest::Client,
        defaults: NotifyDefaults,
        secrets: Secrets,
    ) -> Self {
        let (defaults, defaults_error) = sealed_defaults(defaults);
        Self {
            client,
            defaults: Arc::new(defaults),
            defaults_error,
            secrets,
            outbound: Arc::new(OutboundPolicy::public_only()),
            slack_fallback: None,
            smtp_timeout: SMTP_TIMEOUT,
            delivered: Arc::new(Mutex::new(Delivered::default())),
            log: None,
        }
    }

    /// The same notifier (client, secrets, memory of deliveries) with the defaults of another
    /// revision of `mockops.yaml`.
    pub fn with_defaults(&self, defaults: NotifyDefaults) -> Self {
        let (defaults, defaults_error) = sealed_defaults(defaults);
        Self {
            defaults: Arc::new(defaults),
            defaults_error,
            ..self.clone()
        }
    }

    /// Checks targets against `policy` (give the client the same one, see
    /// [`Notifier::http_client`]).
    pub fn with_outbound(mut self, policy: Arc<OutboundPolicy>) -> Self {
        self.outbound = policy;
        self
    }

    /// Uses `url` (read at each use) for Slack steps when neither the step nor `mockops.yaml`
    /// names a webhook URL.
    pub fn with_slack_fallback(mut self, url: Option<SecretSource>) -> Self {
        self.slack_fallback = url;
        self
    }

    /// Also remembers accepted deliveries in `log`, across restarts.
    pub fn with_delivery_log(mut self, log: Arc<dyn DeliveryLog>) -> Self {
        self.log = Some(log);
        self
    }

    /// Changes how long one SMTP delivery may take (default [`SMTP_TIMEOUT`]).
    pub fn with_smtp_timeout(mut self, timeout: Duration) -> Self {
        self.smtp_timeout = timeout;
        self
    }

    /// An HTTP client for notifications: connect and request timeouts, no redirects (a
    /// redirected POST would silently become a GET, and its target is not checked), every
    /// address it connects to checked against `outbound`, a `mockops/<version>` user agent.
    pub fn http_client(
        request_timeout: Duration,
        outbound: Arc<OutboundPolicy>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(request_timeout))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(crate::outbound::GuardedResolver::new(outbound))
            .user_agent(concat!("mockops/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// A target URL: parsed, http(s), and not a literal address the policy refuses.
    fn target_url(&self, what: &str, raw: &str) -> Result<reqwest::Url, StepError> {
        let url = parse_url(what, raw)?;
        self.outbound
            .check_url(what, &url)
            .map_err(|e| StepError::refused(e.to_string()))?;
        Ok(url)
    }

    pub fn redactor(&self) -> &Redactor {
        self.secrets.redactor()
    }

    /// Sends one notification: one attempt at every target not yet delivered for
    /// `ctx.idempotency_key`. Outputs: `channel` (`slack`, `webhook` or `email`), `delivered`,
    /// `status_code`, `message_id` and `deliveries` (one entry per target).
    pub async fn send(&self, cfg: &NotifyConfig, ctx: &StepContext) -> Result<Outputs, StepError> {
        if let Some(e) = &self.defaults_error {
            return Err(StepError::invalid(format!(
                "`notify` defaults in mockops.yaml: {e}"
            )));
        }
        let result = match cfg {
            NotifyConfig::Slack {
                message,
                slack_webhook_url,
                channels,
                username,
                icon_emoji,
            } => {
                slack::send(
                    self,
                    ctx,
                    slack::Args {
                        message,
                        webhook_url: slack_webhook_url.as_deref(),
                        channels,
                        username: username.as_deref(),
                        icon_emoji: icon_emoji.as_deref(),
                    },
                )
                .await
            }
            NotifyConfig::Webhook {
                message,
                webhook_url,
                webhook_urls,
                method,
                headers,
                payload,
                secret,
            } => {
                webhook::send(
                    self,
                    ctx,
                    webhook::Args {
                        message,
                        webhook_url: webhook_url.as_deref(),
                        webhook_urls,
                        method: *method,
                        headers,
                        payload,
                        secret: secret.as_deref(),
                    },
                )
                .await
            }
            NotifyConfig::Email {
                message,
                smtp,
                to,
                email_to,
                subject,
            } => {
                email::send(
                    self,
                    ctx,
                    email::Args {
                        message,
                        smtp: smtp.as_ref(),
                        to,
                        email_to,
                        subject: subject.as_deref(),
                    },
                )
                .await
            }
        };
        match result {
            Ok(mut outputs) => {
                for v in outputs.values_mut() {
                    self.redactor().redact_json_in_place(v);
                }
                Ok(outputs)
            }
            // Masks what the error shows, causes included (the engine masks it again).
            Err(e) => Err(e
                .in_step(crate::model::StepType::Notify)
                .redacted_by(self.redactor().clone())),
        }
    }

    fn resolve(&self, what: &str, s: &str) -> Result<String, StepError> {
        self.secrets
            .resolve(s)
            .map(crate::secret::Secret::into_exposed)
            .map_err(|e| secret_error(what, e))
    }

    /// The event with any registered secret masked, as sent to targets.
    fn event(&self, ctx: &StepContext) -> Json {
        self.redactor().redact_json(&ctx.event)
    }

    fn delivery_id(ctx: &StepContext, channel: &str, target: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [ctx.idempotency_key.as_str(), channel, target] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.finalize().into()
    }

    /// The status a target answered when it accepted this delivery earlier (in this process,
    /// or in an earlier one when there is a delivery log).
    fn already_delivered(&self, id: &[u8; 32]) -> Option<u16> {
        let memo = self
            .delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .get(id)
            .copied();
        memo.or_else(|| {
            let log = self.log.as_ref()?;
            match log.accepted(id) {
                Ok(status) => status,
                Err(e) => {
                    // Unknown is treated as not delivered: at least once, never lost.
                    tracing::warn!(error = %e, "cannot read the delivery log");
                    None
                }
            }
        })
    }

    async fn remember(&self, id: [u8; 32], status: u16) {
        {
            let mut memo = self
                .delivered
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if memo.status.insert(id, status).is_none() {
                memo.order.push_back(id);
            }
            while memo.order.len() > REMEMBERED_DELIVERIES {
                if let Some(old) = memo.order.pop_front() {
                    memo.status.remove(&old);
                }
            }
        }
        if let Some(log) = self.log.clone() {
            let written = tokio::task::spawn_blocking(move || log.record(&id, status)).await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot record a delivery"),
                Err(e) => tracing::warn!(error = %e, "cannot record a delivery"),
            }
        }
    }
}

/// One HTTP request: the status and (the start of) the body, or why there is none.
async fn http(request: reqwest::RequestBuilder, target: &str) -> Result<HttpReply, StepError> {
    let mut response = request.send().await.map_err(|e| request_error(target, e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = Vec::new();
    while body.len() < MAX_RESPONSE_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            // The status is what counts; a body cut short only shortens the message.
            Err(_) => break,
        }
    }
    body.truncate(MAX_RESPONSE_BYTES);
    Ok(HttpReply {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or(""),
        body: String::from_utf8_lossy(&body).into_owned(),
        retry_after,
    })
}

#[derive(Default)]
struct Delivered {
    status: HashMap<[u8; 32], u16>,
    order: VecDeque<[u8; 32]>,
}

struct HttpReply {
    status: u16,
    reason: &'static str,
    body: String,
    retry_after: Option<String>,
}

impl HttpReply {
    /// `HTTP 500 Internal Server Error: <body>`.
    fn describe(&self) -> String {
        let mut s = format!("HTTP {}", self.status);
        if !self.reason.is_empty() {
            s.push(' ');
            s.push_str(self.reason);
        }
        let body = self.body.trim();
        if !body.is_empty() {
            s.push_str(": ");
            s.push_str(&quote(body));
        }
        if let Some(ra) = &self.retry_after {
            s.push_str(&format!(" (Retry-After: {ra})"));
        }
        s
    }

    /// `None` when the status is a success; otherwise the error, retryable for 408, 429 and
    /// 5xx.
    fn status_error(&self, target: &str) -> Option<StepError> {
        match self.status {
            200..=299 => None,
            300..=399 => Some(StepError::status(
                self.status,
                format!(
                    "{target}: {}; redirects are not followed: configure the final URL",
                    self.describe()
                ),
            )),
            _ => Some(StepError::status(
                self.status,
                format!("{target}: {}", self.describe()),
            )),
        }
    }
}

/// The start of a response body for an error message, on one line, with anything that looks
/// like a credential masked (a target that echoes headers or leaks tokens must not put them in
/// execution records).
fn quote(body: &str) -> String {
    let one_line = body
        .split_whitespace()
        .map(mask_credential)
        .collect::<Vec<_>>()
        .join(" ");
    match one_line.char_indices().nth(QUOTED_RESPONSE_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// `***` for a word that looks like a credential: a known token prefix, a JWT, or a long run
/// of key-like characters; otherwise the word.
fn mask_credential(word: &str) -> std::borrow::Cow<'_, str> {
    let core = word.trim_matches(|c: char| "\"',;:()[]{}<>".contains(c));
    let prefixed = crate::config::inline_secrets::TOKEN_PREFIXES
        .iter()
        .any(|p| core.starts_with(p) && core.len() >= p.len() + 8);
    let jwt = core.starts_with("eyJ") && core.matches('.').count() == 2 && core.len() > 30;
    let keylike = core.len() >= 32
        && core
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '/' | '='))
        && core.chars().any(|c| c.is_ascii_digit())
        && core.chars().any(|c| c.is_ascii_alphabetic());
    if prefixed || jwt || keylike {
        std::borrow::Cow::Owned(word.replace(core, crate::secret::MASK))
    } else {
        std::borrow::Cow::Borrowed(word)
    }
}

/// `defaults` with the secret references `mockops.yaml` wrote sealed (see `crate::secret`).
fn sealed_defaults(defaults: NotifyDefaults) -> (NotifyDefaults, Option<String>) {
    let sealed = serde_json::to_value(&defaults)
        .map_err(|e| e.to_string())
        .and_then(|v| crate::secret::seal_json(&v).map_err(|e| e.to_string()))
        .and_then(|v| serde_json::from_value(v).map_err(|e| e.to_string()));
    match sealed {
        Ok(d) => (d, None),
        Err(e) => (defaults, Some(e)),
    }
}

/// A request that got no response: timeouts and connection failures are worth retrying.
fn request_error(target: &str, e: reqwest::Error) -> StepError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    if let Some(refused) = refusal(&e) {
        // The policy will say the same next time: not worth a retry.
        return StepError::refused(format!("{target}: {refused}"));
    }
    StepError::request(format!("{target}: {what}"), e.without_url())
}

/// The outbound policy's refusal somewhere in `e`'s causes.
fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<crate::outbound::Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<crate::outbound::Refused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

/// An error and its sources, joined by `: `, each cause once.
fn error_chain(e: &dyn std::error::Error) -> String {
    crate::pipeline::steps::contract::Chain(e).to_string()
}

fn secret_error(what: &str, e: SecretError) -> StepError {
    StepError::secret(what, e)
}

/// A URL as shown in outputs and errors: no user info, no query, no fragment (they may carry
/// tokens); the redactor masks what remains of a secret.
fn display_url(url: &reqwest::Url) -> String {
    let mut s = format!("{}://", url.scheme());
    if let Some(host) = url.host_str() {
        s.push_str(host);
    }
    if let Some(port) = url.port() {
        s.push_str(&format!(":{port}"));
    }
    s.push_str(url.path());
    s
}

/// Parses an http(s) URL, or says which setting is wrong.
fn parse_url(what: &str, raw: &str) -> Result<reqwest::Url, StepError> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| StepError::invalid(format!("{what} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(StepError::invalid(format!(
            "{what} must be an http:// or https:// URL, not `{}:`",
            url.scheme()
        )));
    }
    if url.host_str().is_none() {
        return Err(StepError::invalid(format!("{what} has no host")));
    }
    Ok(url)
}

/// Several targets' results as one: all must succeed. The error lists each failure and is
/// retryable when any failure is (targets already reached are skipped on the retry).
fn combine(kind: &'static str, total: usize, failures: Vec<StepError>) -> Result<(), StepError> {
    if failures.is_empty() {
        return Ok(());
    }
    // The target, when every failure was at the same one.
    let target = failures
        .first()
        .and_then(|f| f.target.clone())
        .filter(|t| failures.iter().all(|f| f.target.as_ref() == Some(t)));
    let e = StepError::from(Failure::Partial {
        kind,
        total,
        failures,
    })
    .in_step(crate::model::StepType::Notify);
    Err(match target {
        Some(t) => e.at(t),
        None => e,
    })
}

/// Outputs shared by every channel.
fn outputs(
    channel: &str,
    status_code: Option<u16>,
    message_id: &str,
    deliveries: Vec<Json>,
) -> Outputs {
    let mut out = Outputs::new();
    out.insert("channel".into(), json!(channel));
    out.insert("delivered".into(), json!(true));
    out.insert("status_code".into(), json!(status_code));
    out.insert("message_id".into(), json!(message_id));
    out.insert("deliveries".into(), Json::Array(deliveries));
    out
}

/// A field of the event as text, if it is there.
fn event_str<'a>(event: &'a Json, field: &str) -> Option<&'a str> {
    event
        .get(field)
        .and_then(Json::as_str)
        .filter(|s| !s.is_empty())
}

fn event_type(ctx: &StepContext) -> &str {
    event_str(&ctx.event, "event_type").unwrap_or("event")
}

/// `commit abc1234`, `API (ci-bot)` or the source as written.
fn describe_source(source: &str) -> String {
    if let Some(sha) = source.strip_prefix("commit:") {
        format!("commit {}", sha.chars().take(12).collect::<String>())
    } else if let Some(caller) = source.strip_prefix("api:") {
        format!("API ({caller})")
    } else {
        source.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> HttpReply {
        HttpReply {
            status,
            reason: "",
            body: body.into(),
            retry_after: None,
        }
    }

    #[test]
    fn statuses_are_classified() {
        assert!(reply(200, "").status_error("t").is_none());
        assert!(reply(204, "").status_error("t").is_none());
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(
                reply(s, "").status_error("t").expect("error").retryable(),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert!(
                !reply(s, "").status_error("t").expect("error").retryable(),
                "{s}"
            );
        }
    }

    #[test]
    fn long_bodies_are_quoted_on_one_line() {
        let body = format!("line one\n  line two {}", "x".repeat(1000));
        let q = quote(&body);
        assert!(q.starts_with("line one line two x"));
        assert!(q.chars().count() <= QUOTED_RESPONSE_CHARS + 1);
    }

    #[test]
    fn urls_are_shown_without_credentials_or_query() {
        let u = reqwest::Url::parse("https://user:pw@example.com:8443/hook/a?token=abc#f")
            .expect("url");
        assert_eq!(display_url(&u), "https://example.com:8443/hook/a");
        assert!(parse_url("x", "ftp://example.com/").is_err());
        assert_eq!(
            quote(
                "error: token ghp_abcdefghijklmnopqrstuv rejected for \"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl\""
            ),
            "error: token *** rejected for \"***\""
        );
        assert_eq!(
            quote("id 0123456789abcdef0123456789abcdef01 and words"),
            "id *** and words"
        );
        assert_eq!(quote("plain   error\n text"), "plain error text");
        assert!(parse_url("x", "not a url").is_err());
        assert!(parse_url("x", " http://127.0.0.1:9/ ").is_ok());
    }

    #[test]
    fn combined_failures_are_retryable_if_any_is() {
        assert!(combine("webhook", 2, vec![]).is_ok());
        let e = combine(
            "webhook",
            3,
            vec![StepError::invalid("a"), StepError::unavailable("b")],
        )
        .expect_err("fails");
        assert!(e.retryable());
        assert_eq!(
            e.rendered(),
            "webhook delivery failed for 2 of 3 targets: a; b"
        );
        let e = combine("webhook", 1, vec![StepError::invalid("a")]).expect_err("fails");
        assert!(!e.retryable());
    }

    #[test]
    fn sources_read_well() {
        assert_eq!(
            describe_source("commit:0123456789abcdef0123"),
            "commit 0123456789ab"
        );
        assert_eq!(describe_source("api:ci-bot"), "API (ci-bot)");
        assert_eq!(describe_source("other"), "other");
    }

    #[tokio::test]
    async fn delivery_memory_is_bounded() {
        let n = Notifier::new(
            reqwest::Client::new(),
            NotifyDefaults::default(),
            Redactor::new(),
        );
        for i in 0..(REMEMBERED_DELIVERIES + 10) {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            n.remember(id, 200).await;
        }
        let memo = n.delivered.lock().expect("lock");
        assert_eq!(memo.status.len(), REMEMBERED_DELIVERIES);
        assert_eq!(memo.order.len(), REMEMBERED_DELIVERIES);
    }

    #[tokio::test]
    async fn a_delivery_log_outlives_the_notifier() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (store, _) = crate::store::Store::open(dir.path()).expect("store");
        let new = || {
            Notifier::new(
                reqwest::Client::new(),
                NotifyDefaults::default(),
                Redactor::new(),
            )
            .with_delivery_log(Arc::new(store.clone()))
        };
        let id = [7u8; 32];
        let first = new();
        assert_eq!(first.already_delivered(&id), None);
        first.remember(id, 201).await;
        drop(first);
        assert_eq!(
            new().already_delivered(&id),
            Some(201),
            "a new process sees it"
        );
    }
}
