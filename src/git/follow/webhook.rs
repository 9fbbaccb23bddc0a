//! The GitHub push webhook: HMAC-SHA256 signature check (`X-Hub-Signature-256`), enough of the
//! payload to tell whether a push concerns the followed branch, and an axum route that turns
//! such a push into a "look now" hint. The payload is never trusted for content: the daemon
//! fetches and reads Git itself.

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Hints;
use crate::secret::{Redactor, SecretSource};

/// Largest payload GitHub sends (it caps webhook payloads at 25 MB).
pub const MAX_PAYLOAD_BYTES: usize = 25 * 1024 * 1024;
/// How long a delivery's body may take to arrive (a slow sender holds no task for longer).
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "no X-Hub-Signature-256 header: set the same secret in the GitHub webhook settings and in mockops"
    )]
    Missing,
    #[error("malformed X-Hub-Signature-256 header: expected `sha256=` followed by 64 hex digits")]
    Malformed,
    #[error(
        "X-Hub-Signature-256 does not match the body: the webhook's secret in GitHub differs from the one mockops has"
    )]
    Mismatch,
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>` header.
/// The comparison is constant-time.
pub fn verify_github_signature(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let sig = signature_of(header)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&sig).map_err(|_| SignatureError::Mismatch)
}

/// The 32 bytes an `X-Hub-Signature-256` header carries, checked before any body is read.
fn signature_of(header: Option<&str>) -> Result<Vec<u8>, SignatureError> {
    let header = header.map(str::trim).ok_or(SignatureError::Missing)?;
    if header.is_empty() {
        return Err(SignatureError::Missing);
    }
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let sig = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if sig.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    Ok(sig)
}

/// `sha256=<hex>` for `body`: what GitHub sends (for tests and tools that post deliveries).
pub fn sign_github_payload(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A delivery, as far as the daemon cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookEvent {
    /// Sent once when the webhook is created.
    Ping { zen: Option<String> },
    Push {
        /// `refs/heads/<branch>` or `refs/tags/<tag>`.
        git_ref: String,
        /// The commit the ref points at after the push (all zeros when deleted).
        after: String,
        deleted: bool,
        forced: bool,
    },
    /// Any other event type (by its `X-GitHub-Event` name).
    Other(String),
}

impl WebhookEvent {
    /// True for a push to `refs/heads/<branch>`.
    pub fn concerns_branch(&self, branch: &str) -> bool {
        match self {
            WebhookEvent::Push { git_ref, .. } => git_ref
                .strip_prefix("refs/heads/")
                .is_some_and(|b| b == branch),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook payload: {0}")]
pub struct PayloadError(pub String);

#[derive(serde::Deserialize)]
struct PushPayload {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
}

#[derive(serde::Deserialize)]
struct PingPayload {
    zen: Option<String>,
}

/// Parses a delivery given its `X-GitHub-Event` header and body. The body may be JSON or, if the
/// webhook was set to `application/x-www-form-urlencoded`, a form whose `payload` field holds
/// the JSON.
pub fn parse_event(event: Option<&str>, body: &[u8]) -> Result<WebhookEvent, PayloadError> {
    let event = event
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| PayloadError("no X-GitHub-Event header".into()))?;
    if event != "push" && event != "ping" {
        return Ok(WebhookEvent::Other(event.to_string()));
    }
    let json = json_of(body)?;
    match event {
        "ping" => {
            let p: PingPayload =
                serde_json::from_slice(&json).map_err(|e| PayloadError(e.to_string()))?;
            Ok(WebhookEvent::Ping { zen: p.zen })
        }
        _ => {
            let p: PushPayload = serde_json::from_slice(&json)
                .map_err(|e| PayloadError(format!("push event: {e}")))?;
            Ok(WebhookEvent::Push {
                git_ref: p.git_ref,
                after: p.after,
                deleted: p.deleted,
                forced: p.forced,
            })
        }
    }
}

fn json_of(body: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'{') {
        return Ok(body.to_vec());
    }
    for pair in body.split(|b| *b == b'&') {
        if let Some(value) = pair.strip_prefix(b"payload=") {
            return percent_decode(value);
        }
    }
    Err(PayloadError(
        "body is neither JSON nor a form with a `payload` field".into(),
    ))
}

fn percent_decode(s: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| PayloadError("bad percent-encoding in form body".into()))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// What the webhook route needs: the shared secret, the followed branch, and the hints to poke.
#[derive(Clone)]
pub struct GithubWebhook {
    pub secret: SecretSource,
    /// Masks the secret once read (the daemon's one redactor).
    pub redactor: Redactor,
    pub branch: String,
    pub hints: Hints,
}

/// `POST` handler for GitHub deliveries, with its state applied, to mount at any path:
/// `router.route("/api/v1/webhooks/github", github_route(hook))`.
///
/// Answers 401 for a missing, malformed or wrong signature; 200 `pong` for a ping; 202 after
/// poking the hints for a push to the followed branch; 200 for anything else (ignored); 400
/// for an unreadable payload; 500 if the secret cannot be read.
pub fn github_route<S>(hook: GithubWebhook) -> axum::routing::MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    axum::routing::post(handle)
        .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
        .with_state(hook)
}

/// Cheap refusals first: a delivery without a well-formed signature header, or announcing a
/// body above the cap, is answered before a byte of its body is read; the body is then read
/// with the cap and [`READ_TIMEOUT`], and only a body whose signature matches is parsed.
async fn handle(State(hook): State<GithubWebhook>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = header("x-github-delivery").unwrap_or("-").to_string();
    if let Err(e) = signature_of(header("x-hub-signature-256")) {
        tracing::warn!(delivery = %delivery, "webhook delivery refused: {e}");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a delivery holds at most {MAX_PAYLOAD_BYTES} bytes\n"),
        )
            .into_response()
    };
    if crate::http::declared_length(&headers).is_some_and(|n| n > MAX_PAYLOAD_BYTES as u64) {
        return too_large();
    }
    let body =
        match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(body, MAX_PAYLOAD_BYTES))
            .await
        {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => return too_large(),
            Err(_) => {
                return (
                    StatusCode::REQUEST_TIMEOUT,
                    "the delivery's body did not arrive in time\n",
                )
                    .into_response();
            }
        };
    let secret = match hook.secret.read("GitHub webhook secret", &hook.redactor) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(delivery = %delivery, "{e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the webhook secret is not available to mockops\n",
            )
                .into_response();
        }
    };
    if let Err(e) = verify_github_signature(
        secret.expose().as_bytes(),
        &body,
        header("x-hub-signature-256"),
    ) {
        tracing::warn!(delivery = %delivery, "webhook delivery refused: {e}");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n")).into_response();
    }
    let event = match parse_event(header("x-github-event"), &body) {
        Ok(ev) => ev,
        Err(e) => {
            tracing::warn!(delivery = %delivery, "{e}");
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    };
    match &event {
        WebhookEvent::Ping { .. } => (StatusCode::OK, "pong\n").into_response(),
        WebhookEvent::Push { git_ref, after, .. } if event.concerns_branch(&hook.branch) => {
            tracing::info!(delivery = %delivery, git_ref = %git_ref, after = %after, "push webhook: fetching now");
            hook.hints.poke();
            (StatusCode::ACCEPTED, "fetch scheduled\n").into_response()
        }
        WebhookEvent::Push { git_ref, .. } => (
            StatusCode::OK,
            format!(
                "ignored: {git_ref} is not the followed branch refs/heads/{}\n",
                hook.branch
            ),
        )
            .into_response(),
        WebhookEvent::Other(name) => {
            (StatusCode::OK, format!("ignored: `{name}` event\n")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from GitHub's "Validating webhook deliveries" documentation.
    const DOC_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOC_BODY: &[u8] = b"Hello, World!";
    const DOC_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_documented_example() {
        assert_eq!(
            verify_github_signature(DOC_SECRET, DOC_BODY, Some(DOC_SIG)),
            Ok(())
        );
        assert_eq!(sign_github_payload(DOC_SECRET, DOC_BODY), DOC_SIG);
        let upper = format!("sha256={}", DOC_SIG["sha256=".len()..].to_uppercase());
        assert_eq!(
            verify_github_signature(DOC_SECRET, DOC_BODY, Some(&upper)),
            Ok(())
        );
    }

    #[test]
    fn bad_missing_and_malformed_signatures() {
        use SignatureError::*;
        let v = |h: Option<&str>| verify_github_signature(DOC_SECRET, DOC_BODY, h);
        assert_eq!(v(None), Err(Missing));
        assert_eq!(v(Some("  ")), Err(Missing));
        assert_eq!(v(Some("sha1=abcd")), Err(Malformed));
        assert_eq!(v(Some("sha256=xyz")), Err(Malformed));
        assert_eq!(v(Some("sha256=abcd")), Err(Malformed));
        let flipped = DOC_SIG.replace("757107", "757108");
        assert_eq!(v(Some(&flipped)), Err(Mismatch));
        assert_eq!(
            verify_github_signature(b"other secret", DOC_BODY, Some(DOC_SIG)),
            Err(Mismatch)
        );
        assert_eq!(
            verify_github_signature(DOC_SECRET, b"Hello, World?", Some(DOC_SIG)),
            Err(Mismatch)
        );
    }

    #[test]
    fn push_ping_and_other_events() {
        let push = br#"{"ref":"refs/heads/main","before":"a","after":"b","forced":true,"deleted":false,"repository":{"full_name":"o/r"}}"#;
        let ev = parse_event(Some("push"), push).expect("push");
        assert_eq!(
            ev,
            WebhookEvent::Push {
                git_ref: "refs/heads/main".into(),
                after: "b".into(),
                deleted: false,
                forced: true
            }
        );
        assert!(ev.concerns_branch("main"));
        assert!(!ev.concerns_branch("dev"));
        let tag = parse_event(Some("push"), br#"{"ref":"refs/tags/main"}"#).expect("tag");
        assert!(!tag.concerns_branch("main"));

        let ping = parse_event(
            Some("ping"),
            br#"{"zen":"Keep it logically awesome.","hook_id":1}"#,
        )
        .expect("ping");
        assert_eq!(
            ping,
            WebhookEvent::Ping {
                zen: Some("Keep it logically awesome.".into())
            }
        );
        assert!(!ping.concerns_branch("main"));
        assert_eq!(
            parse_event(Some("issues"), b"whatever").expect("other"),
            WebhookEvent::Other("issues".into())
        );
        assert!(parse_event(None, push).is_err());
        assert!(parse_event(Some("push"), b"{\"no_ref\":1}").is_err());
        assert!(parse_event(Some("push"), b"not json").is_err());
    }

    #[test]
    fn form_encoded_payload() {
        let body = b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22after%22%3A%22c+d%22%7D";
        let ev = parse_event(Some("push"), body).expect("form push");
        assert!(ev.concerns_branch("main"));
        assert!(matches!(ev, WebhookEvent::Push { after, .. } if after == "c d"));
        assert!(parse_event(Some("push"), b"payload=%7").is_err());
    }
}
