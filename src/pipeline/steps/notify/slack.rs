//! Slack incoming webhooks: a Block Kit message (a header with the event type, the message as
//! mrkdwn, a context line with pipeline, event and source) with a plain `text` fallback. One
//! POST per channel when channels are given.

use serde_json::{Value as Json, json};

use super::{Notifier, combine, describe_source, event_str, event_type, http, outputs};
use crate::pipeline::steps::contract::Target;
use crate::pipeline::steps::{Outputs, StepContext, StepError};

/// Block Kit limits: header text, section text, top-level text.
const HEADER_CHARS: usize = 150;
const SECTION_CHARS: usize = 3000;
const TEXT_CHARS: usize = 40_000;

pub(super) struct Args<'a> {
    pub message: &'a str,
    pub webhook_url: Option<&'a str>,
    pub channels: &'a [String],
    pub username: Option<&'a str>,
    pub icon_emoji: Option<&'a str>,
}

pub(super) async fn send(
    n: &Notifier,
    ctx: &StepContext,
    args: Args<'_>,
) -> Result<Outputs, StepError> {
    let defaults = n.defaults.slack.as_ref();
    let raw_url = args
        .webhook_url
        .or(defaults.map(|d| d.webhook_url.as_str()));
    let url = match (raw_url, &n.slack_fallback) {
        (Some(raw), _) => n.resolve("slack_webhook_url", raw)?,
        (None, Some(fallback)) => fallback
            .read("the daemon's Slack webhook URL", n.redactor())
            .map_err(|e| StepError::invalid(e.to_string()))?
            .into_exposed(),
        (None, None) => {
            return Err(StepError::invalid(format!(
                "no Slack webhook URL: set `slack_webhook_url` in the step (as \
                 `${{env:SLACK_WEBHOOK_URL}}`), `notify.slack.webhook_url` in mockops.yaml, or \
                 {} in the daemon's environment",
                super::SLACK_WEBHOOK_ENV
            )));
        }
    };
    let url = n.target_url("slack_webhook_url", &url)?;
    let username = args
        .username
        .or(defaults.and_then(|d| d.username.as_deref()));
    let icon_emoji = args
        .icon_emoji
        .or(defaults.and_then(|d| d.icon_emoji.as_deref()));

    let event = n.event(ctx);
    // No channel: the webhook's own channel.
    let channels: Vec<Option<&str>> = if args.channels.is_empty() {
        vec![None]
    } else {
        args.channels.iter().map(|c| Some(c.as_str())).collect()
    };
    let mut deliveries = Vec::new();
    let mut failures = Vec::new();
    let mut first_status = None;
    for channel in &channels {
        let target = match channel {
            Some(c) => format!("Slack channel {c}"),
            None => "Slack webhook".to_string(),
        };
        let id = Notifier::delivery_id(ctx, "slack", &format!("{url}\0{}", channel.unwrap_or("")));
        if let Some(status) = n.already_delivered(&id) {
            first_status.get_or_insert(status);
            deliveries
                .push(json!({"channel": channel, "status_code": status, "earlier_attempt": true}));
            continue;
        }
        let body = payload(args.message, ctx, &event, username, icon_emoji, *channel);
        let reply = match http(n.client.post(url.clone()).json(&body), &target).await {
            Ok(reply) => reply,
            Err(e) => {
                failures.push(e.at(Target::Slack));
                continue;
            }
        };
        if let Some(e) = reply.status_error(&target) {
            failures.push(e.at(Target::Slack));
            continue;
        }
        // Slack answers `ok`; its errors are single words such as `invalid_payload`.
        let answer = reply.body.trim();
        if is_slack_error(answer) {
            failures.push(
                StepError::refused(format!(
                    "{target}: Slack refused the message: {}",
                    reply.describe()
                ))
                .at(Target::Slack),
            );
            continue;
        }
        n.remember(id, reply.status).await;
        first_status.get_or_insert(reply.status);
        deliveries.push(json!({"channel": channel, "status_code": reply.status}));
    }
    combine("Slack", channels.len(), failures).map_err(|e| e.at(Target::Slack))?;
    Ok(outputs(
        "slack",
        first_status,
        &ctx.idempotency_key,
        deliveries,
    ))
}

/// A body other than `ok` that looks like one of Slack's error codes (`no_service`,
/// `invalid_payload`, `channel_not_found`, ...). Other bodies (empty, JSON) come from
/// Slack-compatible receivers and are accepted.
fn is_slack_error(body: &str) -> bool {
    body != "ok" && !body.is_empty() && body.chars().all(|c| c.is_ascii_lowercase() || c == '_')
}

/// The message Slack receives.
pub(super) fn payload(
    message: &str,
    ctx: &StepContext,
    event: &Json,
    username: Option<&str>,
    icon_emoji: Option<&str>,
    channel: Option<&str>,
) -> Json {
    let event_type = event_type(ctx);
    let mut context = vec![
        format!("*Pipeline* {}", escape(&ctx.pipeline)),
        format!("*Event* `{}`", escape(event_type)),
    ];
    if let Some(source) = event_str(event, "source") {
        context.push(format!("*Source* {}", escape(&describe_source(source))));
    }
    match (
        event_str(event, "workspace_name"),
        event_str(event, "workspace_id"),
    ) {
        (Some(name), _) => context.push(format!("*Workspace* {}", escape(name))),
        (None, Some(id)) => context.push(format!("*Workspace* {}", escape(id))),
        _ => {}
    }
    let section = if message.trim().is_empty() {
        format!("`{}`", escape(event_type))
    } else {
        truncate(message, SECTION_CHARS)
    };
    let mut body = json!({
        "text": truncate(if message.trim().is_empty() { event_type } else { message }, TEXT_CHARS),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": truncate(&format!("mockops: {event_type}"), HEADER_CHARS),
                    "emoji": true
                }
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": section}
            },
            {
                "type": "context",
                "elements": context
                    .into_iter()
                    .map(|t| json!({"type": "mrkdwn", "text": t}))
                    .collect::<Vec<_>>()
            }
        ]
    });
    if let Some(obj) = body.as_object_mut() {
        for (key, value) in [
            ("username", username),
            ("icon_emoji", icon_emoji),
            ("channel", channel),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                obj.insert(key.into(), json!(v));
            }
        }
    }
    body
}

/// Slack's control characters in text mockops inserts (not in the user's message, which is
/// mrkdwn on purpose).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max - 1) {
        Some((cut, _)) if s[cut..].chars().nth(1).is_some() => format!("{}…", &s[..cut]),
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(event: Json) -> StepContext {
        StepContext {
            execution_id: "exec-1".into(),
            pipeline: "schema-alerts".into(),
            step: "tell".into(),
            attempt: 1,
            idempotency_key: "exec-1/tell".into(),
            event,
            steps: Json::Null,
        }
    }

    #[test]
    fn blocks_carry_message_and_context() {
        let event = json!({
            "event_type": "schema.changed",
            "source": "commit:0123456789abcdef",
            "workspace_id": "ws-1",
            "workspace_name": "Payments <prod>",
        });
        let c = ctx(event.clone());
        let p = payload(
            "*Breaking* change in `specs/a.yaml`",
            &c,
            &event,
            Some("mockops"),
            Some(":robot_face:"),
            Some("#api"),
        );
        assert_eq!(p["text"], "*Breaking* change in `specs/a.yaml`");
        assert_eq!(p["blocks"][0]["type"], "header");
        assert_eq!(p["blocks"][0]["text"]["text"], "mockops: schema.changed");
        assert_eq!(p["blocks"][1]["text"]["type"], "mrkdwn");
        assert_eq!(
            p["blocks"][1]["text"]["text"],
            "*Breaking* change in `specs/a.yaml`"
        );
        let ctx_texts: Vec<&str> = p["blocks"][2]["elements"]
            .as_array()
            .expect("elements")
            .iter()
            .map(|e| e["text"].as_str().expect("text"))
            .collect();
        assert_eq!(
            ctx_texts,
            [
                "*Pipeline* schema-alerts",
                "*Event* `schema.changed`",
                "*Source* commit 0123456789ab",
                "*Workspace* Payments &lt;prod&gt;"
            ]
        );
        assert_eq!(p["username"], "mockops");
        assert_eq!(p["icon_emoji"], ":robot_face:");
        assert_eq!(p["channel"], "#api");
    }

    #[test]
    fn optional_fields_are_left_out_and_limits_kept() {
        let c = ctx(Json::Null);
        let long = "é".repeat(5000);
        let p = payload(&long, &c, &Json::Null, None, None, None);
        let obj = p.as_object().expect("object");
        assert!(!obj.contains_key("username") && !obj.contains_key("channel"));
        let section = p["blocks"][1]["text"]["text"].as_str().expect("text");
        assert_eq!(section.chars().count(), SECTION_CHARS);
        assert!(section.ends_with('…'));
        assert_eq!(p["blocks"][0]["text"]["text"], "mockops: event");
        assert_eq!(p["blocks"][2]["elements"].as_array().expect("el").len(), 2);
    }

    #[test]
    fn slack_error_bodies_are_recognised() {
        assert!(!is_slack_error("ok"));
        assert!(!is_slack_error(""));
        assert!(!is_slack_error(r#"{"ok":true}"#));
        assert!(is_slack_error("invalid_payload"));
        assert!(is_slack_error("no_service"));
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        assert_eq!(truncate("", 3), "");
    }
}
