//! E-mail over SMTP (lettre): a plain-text message with the step's message and the event's
//! details, and a `Message-ID` derived from the idempotency key so a retried delivery is
//! recognisable as the same message.

use std::net::IpAddr;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use super::{Notifier, describe_source, error_chain, event_str, event_type, outputs};
use crate::model::{SmtpConfig, SmtpTls};
use crate::pipeline::steps::contract::{Failure, Target};
use crate::pipeline::steps::{Outputs, StepContext, StepError};

pub(super) struct Args<'a> {
    pub message: &'a str,
    pub smtp: Option<&'a SmtpConfig>,
    pub to: &'a [String],
    pub email_to: &'a [String],
    pub subject: Option<&'a str>,
}

/// How the connection is secured, and the port, after defaults: port 465 means implicit TLS,
/// anything else STARTTLS; `none` only when written.
pub fn security(smtp: &SmtpConfig) -> (SmtpTls, u16) {
    let tls = smtp.tls.unwrap_or(if smtp.port == Some(465) {
        SmtpTls::Tls
    } else {
        SmtpTls::Starttls
    });
    let port = smtp.port.unwrap_or(match tls {
        SmtpTls::Tls => 465,
        SmtpTls::Starttls => 587,
        SmtpTls::None => 25,
    });
    (tls, port)
}

pub(super) async fn send(
    n: &Notifier,
    ctx: &StepContext,
    args: Args<'_>,
) -> Result<Outputs, StepError> {
    let defaults = n.defaults.email.as_ref();
    let smtp = args.smtp.or(defaults.map(|d| &d.smtp)).ok_or_else(|| {
        StepError::invalid(
            "no SMTP server: set `smtp` in the step or `notify.email.smtp` in mockops.yaml",
        )
    })?;

    let mut recipients: Vec<&str> = Vec::new();
    for r in args.to.iter().chain(args.email_to) {
        if !recipients.contains(&r.as_str()) {
            recipients.push(r);
        }
    }
    if recipients.is_empty() {
        recipients = defaults
            .map(|d| d.to.iter().map(String::as_str).collect())
            .unwrap_or_default();
    }
    if recipients.is_empty() {
        return Err(StepError::invalid(
            "no recipients: set `to` in the step or `notify.email.to` in mockops.yaml",
        ));
    }
    let to: Vec<Mailbox> = recipients
        .iter()
        .map(|r| {
            r.trim().parse::<Mailbox>().map_err(|e| {
                StepError::invalid(format!("recipient `{r}` is not an e-mail address: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let from: Mailbox = smtp.from.trim().parse().map_err(|e| {
        StepError::invalid(format!(
            "smtp.from `{}` is not an e-mail address: {e}",
            smtp.from
        ))
    })?;

    let (tls, port) = security(smtp);
    let host = smtp.host.trim();
    let credentials = match (&smtp.username, &smtp.password) {
        (Some(user), Some(password)) => Some(Credentials::new(
            n.resolve("smtp.username", user)?,
            n.resolve("smtp.password", password)?,
        )),
        (None, None) => None,
        (Some(_), None) => {
            return Err(StepError::invalid(
                "smtp.username is set without smtp.password: add `password: ${file:...}` or \
                 remove the username",
            ));
        }
        (None, Some(_)) => {
            return Err(StepError::invalid(
                "smtp.password is set without smtp.username: add the account name",
            ));
        }
    };
    if credentials.is_some() && tls == SmtpTls::None && !is_loopback(host) {
        return Err(StepError::invalid(format!(
            "refusing to send the SMTP password to {host} unencrypted (`tls: none`): use `tls: \
             starttls` or `tls: tls`"
        )));
    }

    let message_id = message_id(&ctx.idempotency_key, from.email.domain());
    let subject = args
        .subject
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("mockops: {}", event_type(ctx)));
    let event = n.event(ctx);
    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(message_id.clone()))
        .user_agent(concat!("mockops/", env!("CARGO_PKG_VERSION")).to_string())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Mockops-Delivery"),
            ascii(&ctx.idempotency_key),
        ))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in &to {
        builder = builder.to(mailbox.clone());
    }
    let email = builder
        .body(text_body(args.message, ctx, &event))
        .map_err(|e| StepError::invalid(format!("cannot build the e-mail: {e}")))?;

    let target = format!("SMTP {host}:{port}");
    let server = || Target::Smtp {
        server: format!("{host}:{port}"),
    };
    // The SMTP host is written by the repository: it may not be the daemon's network unless
    // the operator allowed it (checked on what the name resolves to now).
    n.outbound
        .resolve(host.trim_matches(['[', ']']), port)
        .await
        .map_err(|e| StepError::refused(format!("{target}: {e}")).at(server()))?;
    let mut transport = match tls {
        SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        SmtpTls::Starttls | SmtpTls::Tls => {
            let params = TlsParameters::new(host.to_string()).map_err(|e| {
                StepError::invalid(format!("{target}: TLS setup: {}", error_chain(&e))).at(server())
            })?;
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).tls(
                if tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                },
            )
        }
    }
    .port(port)
    .timeout(Some(n.smtp_timeout));
    if let Some(c) = credentials {
        transport = transport.credentials(c);
    }
    // lettre bounds the connect with its timeout, not the conversation: a server that accepts
    // and never answers would hold the step forever.
    let response = tokio::time::timeout(n.smtp_timeout, transport.build().send(email))
        .await
        .map_err(|_| {
            StepError::timed_out(format!(
                "{target}: timed out after {} without completing the delivery",
                humantime::format_duration(n.smtp_timeout)
            ))
            .at(server())
        })?
        .map_err(|e| smtp_error(&target, e).at(server()))?;
    let code = u16::from(response.code());
    let to_text: Vec<String> = to.iter().map(|m| m.email.to_string()).collect();
    let mut out = outputs(
        "email",
        Some(code),
        &message_id,
        vec![json!({"to": to_text, "status_code": code})],
    );
    out.insert("to".into(), json!(to_text));
    Ok(out)
}

/// The failure of an SMTP exchange, with a hint where the fix is known. Whether it is worth a
/// retry follows from the error (see [`crate::pipeline::steps::contract::smtp_retryable`]).
fn smtp_error(target: &str, e: lettre::transport::smtp::Error) -> StepError {
    let chain = error_chain(&e);
    let message = if e.is_permanent() {
        let hint = match e.status().map(u16::from) {
            Some(535) | Some(534) | Some(530) => {
                "; check smtp.username and smtp.password (and that the server accepts them)"
            }
            _ => "",
        };
        format!("{target}: rejected: {chain}{hint}")
    } else if e.is_transient() {
        format!("{target}: temporarily refused: {chain}")
    } else if e.is_timeout() {
        format!("{target}: timed out: {chain}")
    } else if e.is_tls() {
        format!(
            "{target}: TLS failed: {chain}; check `tls` (port 465 uses `tls`, 587 `starttls`) \
             and the server's certificate"
        )
    } else if e.is_client() {
        let hint = if chain.contains("STARTTLS") {
            "; use `tls: tls` if the server takes TLS from the start (port 465), or `tls: none` \
             for a relay on loopback or a trusted network"
        } else {
            ""
        };
        format!("{target}: {chain}{hint}")
    } else {
        format!("{target}: {chain}")
    };
    Failure::Smtp { message, source: e }.into()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `<readable-key.hash@domain>`: the same for every attempt of one step of one execution.
pub fn message_id(idempotency_key: &str, domain: &str) -> String {
    let mut readable = String::new();
    for c in idempotency_key.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            c
        } else {
            '.'
        };
        if !(c == '.' && (readable.is_empty() || readable.ends_with('.'))) {
            readable.push(c);
        }
        if readable.len() >= 64 {
            break;
        }
    }
    let readable = readable.trim_end_matches('.');
    let hash = hex::encode(Sha256::digest(idempotency_key.as_bytes()));
    let domain = if domain.is_empty() || !domain.is_ascii() {
        "mockops.invalid"
    } else {
        domain
    };
    if readable.is_empty() {
        format!("<{}@{domain}>", &hash[..24])
    } else {
        format!("<{readable}.{}@{domain}>", &hash[..12])
    }
}

fn ascii(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .collect()
}

/// The message, then what happened, then the event as JSON.
pub(super) fn text_body(message: &str, ctx: &StepContext, event: &Json) -> String {
    let mut lines = vec![message.trim_end().to_string(), String::new(), "--".into()];
    let id = event_str(event, "id")
        .map(|id| format!(" ({id})"))
        .unwrap_or_default();
    lines.push(format!("Event:     {}{id}", event_type(ctx)));
    if let Some(source) = event_str(event, "source") {
        lines.push(format!("Source:    {}", describe_source(source)));
    }
    match (
        event_str(event, "workspace_name"),
        event_str(event, "workspace_id"),
    ) {
        (Some(name), Some(id)) => lines.push(format!("Workspace: {name} ({id})")),
        (Some(one), None) | (None, Some(one)) => lines.push(format!("Workspace: {one}")),
        (None, None) => {}
    }
    if let Some(ts) = event_str(event, "timestamp") {
        lines.push(format!("Time:      {ts}"));
    }
    lines.push(format!(
        "Pipeline:  {}, step {}, execution {}",
        ctx.pipeline, ctx.step, ctx.execution_id
    ));
    if !event.is_null() {
        lines.push(String::new());
        lines.push("Event details:".into());
        lines.push(serde_json::to_string_pretty(event).unwrap_or_default());
    }
    lines.push(String::new());
    lines.push(format!(
        "Sent by mockops; delivery id {}.",
        ctx.idempotency_key
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(port: Option<u16>, tls: Option<SmtpTls>) -> SmtpConfig {
        SmtpConfig {
            host: "mail.example.com".into(),
            port,
            from: "mockops@example.com".into(),
            username: None,
            password: None,
            tls,
        }
    }

    #[test]
    fn security_defaults_follow_the_port() {
        assert_eq!(security(&smtp(None, None)), (SmtpTls::Starttls, 587));
        assert_eq!(security(&smtp(Some(587), None)), (SmtpTls::Starttls, 587));
        assert_eq!(security(&smtp(Some(465), None)), (SmtpTls::Tls, 465));
        assert_eq!(security(&smtp(Some(25), None)), (SmtpTls::Starttls, 25));
        assert_eq!(
            security(&smtp(None, Some(SmtpTls::Tls))),
            (SmtpTls::Tls, 465)
        );
        assert_eq!(
            security(&smtp(Some(2525), Some(SmtpTls::None))),
            (SmtpTls::None, 2525)
        );
        assert_eq!(
            security(&smtp(None, Some(SmtpTls::None))),
            (SmtpTls::None, 25)
        );
    }

    #[test]
    fn message_ids_are_stable_and_well_formed() {
        let a = message_id("exec-42/notify team", "example.com");
        assert_eq!(a, message_id("exec-42/notify team", "example.com"));
        assert!(a.starts_with("<exec-42.notify.team."), "{a}");
        assert!(a.ends_with("@example.com>"), "{a}");
        assert_ne!(a, message_id("exec-42/notify-team", "example.com"));
        let odd = message_id("///", "");
        assert!(
            odd.starts_with('<') && odd.ends_with("@mockops.invalid>"),
            "{odd}"
        );
        assert!(!odd.contains(".."), "{odd}");
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in ["localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["mail.example.com", "10.0.0.1", "localhost.example.com"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn body_has_message_and_event_details() {
        let event = json!({
            "id": "ev-1",
            "event_type": "schema.changed",
            "source": "commit:abcdef0123456789",
            "workspace_id": "ws-1",
            "workspace_name": "Payments",
            "timestamp": "2026-01-02T03:04:05Z",
            "spec_path": "specs/payments.yaml"
        });
        let ctx = StepContext {
            execution_id: "e1".into(),
            pipeline: "alerts".into(),
            step: "mail".into(),
            attempt: 1,
            idempotency_key: "e1/mail".into(),
            event: event.clone(),
            steps: Json::Null,
        };
        let body = text_body("Spec changed.\n", &ctx, &event);
        assert!(body.starts_with("Spec changed.\n\n--\nEvent:     schema.changed (ev-1)\n"));
        assert!(body.contains("Source:    commit abcdef012345\n"));
        assert!(body.contains("Workspace: Payments (ws-1)\n"));
        assert!(body.contains("Pipeline:  alerts, step mail, execution e1\n"));
        assert!(body.contains("\"spec_path\": \"specs/payments.yaml\""));
        assert!(body.ends_with("delivery id e1/mail.\n"));
    }
}
