//! Generic JSON webhooks: `{message, event, pipeline, execution_id, step}` plus the step's
//! `payload`, with a delivery id receivers deduplicate on and, when a secret is configured, a
//! GitHub-style HMAC-SHA256 signature of the exact body bytes.

use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value as Json, json};
use sha2::Sha256;
use tokio::task::JoinSet;

use super::{Notifier, combine, display_url, event_type, http, outputs};
use crate::model::HttpMethod;
use crate::pipeline::steps::contract::Target;
use crate::pipeline::steps::{Outputs, StepContext, StepError};

/// The step's idempotency key: the same for every retry of one delivery.
pub const DELIVERY_HEADER: &str = "x-mockops-delivery";
/// The triggering event's type.
pub const EVENT_HEADER: &str = "x-mockops-event";
/// `sha256=<hex HMAC-SHA256 of the body>`, keyed with the configured secret.
pub const SIGNATURE_HEADER: &str = "x-mockops-signature-256";

pub(super) struct Args<'a> {
    pub message: &'a str,
    pub webhook_url: Option<&'a str>,
    pub webhook_urls: &'a [String],
    pub method: Option<HttpMethod>,
    pub headers: &'a IndexMap<String, String>,
    pub payload: &'a IndexMap<String, Json>,
    pub secret: Option<&'a str>,
}

pub(super) async fn send(
    n: &Notifier,
    ctx: &StepContext,
    args: Args<'_>,
) -> Result<Outputs, StepError> {
    let mut raw_urls: Vec<&str> = Vec::new();
    for u in args
        .webhook_url
        .into_iter()
        .chain(args.webhook_urls.iter().map(String::as_str))
    {
        if !raw_urls.contains(&u) {
            raw_urls.push(u);
        }
    }
    if raw_urls.is_empty() {
        return Err(StepError::invalid(
            "no webhook URL: set `webhook_url` or `webhook_urls` in the step",
        ));
    }
    let mut urls = Vec::with_capacity(raw_urls.len());
    for (i, raw) in raw_urls.iter().enumerate() {
        let what = if raw_urls.len() == 1 {
            "webhook URL".to_string()
        } else {
            format!("webhook URL {}", i + 1)
        };
        let resolved = n.resolve(&what, raw)?;
        urls.push(n.target_url(&what, &resolved)?);
    }

    let defaults = n.defaults.webhook.as_ref();
    let mut headers = HeaderMap::new();
    let default_headers = defaults.map(|d| &d.headers).into_iter().flatten();
    for (name, value) in default_headers.chain(args.headers.iter()) {
        let what = format!("header `{name}`");
        let header = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            StepError::invalid(format!(
                "{what}: not a valid header name (letters, digits and `-`)"
            ))
        })?;
        let resolved = n.resolve(&what, value)?;
        let mut v = HeaderValue::from_str(&resolved).map_err(|_| {
            StepError::invalid(format!(
                "{what}: the value holds characters a header cannot carry (control characters \
                 or non-ASCII text)"
            ))
        })?;
        if crate::secret::has_sealed(value) {
            v.set_sensitive(true);
        }
        headers.insert(header, v);
    }
    if !headers.contains_key(CONTENT_TYPE) {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let key = header_text(&ctx.idempotency_key);
    headers.insert(DELIVERY_HEADER, key.clone());
    headers.insert("idempotency-key", key);
    headers.insert(EVENT_HEADER, header_text(event_type(ctx)));

    let secret = args
        .secret
        .or(defaults.and_then(|d| d.secret.as_deref()))
        .map(|s| n.resolve("webhook secret", s))
        .transpose()?;

    let payload = n
        .secrets
        .resolve_json(&Json::Object(
            args.payload
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
        .map_err(|e| super::secret_error("payload", e))?;
    let body = body(args.message, ctx, n.event(ctx), payload);
    let bytes =
        serde_json::to_vec(&body).map_err(|e| StepError::invalid(format!("webhook body: {e}")))?;
    if let Some(secret) = &secret {
        let mut sig = HeaderValue::from_str(&signature(secret.as_bytes(), &bytes))
            .map_err(|e| StepError::invalid(format!("webhook signature: {e}")))?;
        sig.set_sensitive(true);
        headers.insert(SIGNATURE_HEADER, sig);
    }
    let method = match args.method.unwrap_or(HttpMethod::Post) {
        HttpMethod::Post => reqwest::Method::POST,
        HttpMethod::Put => reqwest::Method::PUT,
        HttpMethod::Patch => reqwest::Method::PATCH,
    };

    let total = urls.len();
    let mut results: Vec<Option<Result<u16, StepError>>> = (0..total).map(|_| None).collect();
    let mut displays = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    let mut tasks = JoinSet::new();
    for (i, url) in urls.into_iter().enumerate() {
        let shown = display_url(&url);
        let target = if total == 1 {
            format!("webhook {shown}")
        } else {
            format!("webhook {} of {total} ({shown})", i + 1)
        };
        let id = Notifier::delivery_id(ctx, "webhook", url.as_str());
        let at = Target::Webhook {
            host: url.host_str().unwrap_or_default().to_string(),
        };
        displays.push(shown);
        ids.push(id);
        if let Some(status) = n.already_delivered(&id) {
            results[i] = Some(Ok(status));
            continue;
        }
        let request = n
            .client
            .request(method.clone(), url)
            .headers(headers.clone())
            .body(bytes.clone());
        tasks.spawn(async move {
            let outcome = match http(request, &target).await {
                Ok(reply) => match reply.status_error(&target) {
                    None => Ok(reply.status),
                    Some(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            (i, outcome.map_err(|e| e.at(at)))
        });
    }
    let mut fresh = vec![false; total];
    while let Some(joined) = tasks.join_next().await {
        let (i, outcome) = joined.map_err(|e| {
            StepError::unavailable(format!("webhook delivery task ended abnormally: {e}"))
        })?;
        if let Ok(status) = &outcome {
            n.remember(ids[i], *status).await;
            fresh[i] = true;
        }
        results[i] = Some(outcome);
    }

    let mut deliveries = Vec::with_capacity(total);
    let mut failures = Vec::new();
    let mut first_status = None;
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Some(Ok(status)) => {
                first_status.get_or_insert(status);
                let mut d = json!({"url": displays[i], "status_code": status});
                if !fresh[i] {
                    d["earlier_attempt"] = json!(true);
                }
                deliveries.push(d);
            }
            Some(Err(e)) => failures.push(e),
            None => failures.push(StepError::unavailable(format!(
                "webhook {}: no result",
                displays[i]
            ))),
        }
    }
    combine("webhook", total, failures)?;
    Ok(outputs(
        "webhook",
        first_status,
        &ctx.idempotency_key,
        deliveries,
    ))
}

/// The JSON body: the built-in fields, then the step's `payload` (whose keys win).
pub(super) fn body(message: &str, ctx: &StepContext, event: Json, payload: Json) -> Json {
    let mut body = json!({
        "message": message,
        "event": event,
        "pipeline": ctx.pipeline,
        "execution_id": ctx.execution_id,
        "step": ctx.step,
    });
    if let (Some(obj), Json::Object(extra)) = (body.as_object_mut(), payload) {
        obj.extend(extra);
    }
    body
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Text as a header value: characters a header cannot carry become `_`.
fn header_text(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn body_has_the_fields_and_payload_wins() {
        let ctx = StepContext {
            execution_id: "e1".into(),
            pipeline: "p".into(),
            step: "s".into(),
            attempt: 1,
            idempotency_key: "k".into(),
            event: Json::Null,
            steps: Json::Null,
        };
        let b = body(
            "hi",
            &ctx,
            json!({"event_type": "x"}),
            json!({"extra": 1, "message": "override"}),
        );
        assert_eq!(
            b,
            json!({
                "message": "override",
                "event": {"event_type": "x"},
                "pipeline": "p",
                "execution_id": "e1",
                "step": "s",
                "extra": 1
            })
        );
    }

    #[test]
    fn header_text_replaces_what_headers_cannot_carry() {
        assert_eq!(header_text("exec-1/step"), "exec-1/step");
        assert_eq!(header_text("a\nb\u{e9}"), "a_b_");
    }
}
