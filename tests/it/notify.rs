//! The `notify` step against real receivers on loopback: Slack's Block Kit message per
//! channel, signed webhooks with delivery ids, all-or-nothing multi-target delivery with
//! retries that skip targets already reached, status classification, timeouts, e-mail through
//! a real SMTP server (with AUTH), and secrets that never appear in outputs or errors.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use indexmap::IndexMap;
use mockops::model::{
    EmailDefaults, NotifyConfig, NotifyDefaults, SlackDefaults, SmtpConfig, WebhookDefaults,
};
use mockops::pipeline::steps::notify::Notifier;
use mockops::pipeline::steps::{Outputs, StepContext};
use mockops::secret::{Redactor, Secrets};
use serde_json::{Value as Json, json};
use sha2::Sha256;

use crate::support::receivers::{HttpReceiver, Reply, SilentListener, SmtpServer, closed_port};

fn ctx(key: &str) -> StepContext {
    StepContext {
        execution_id: "exec-7".into(),
        pipeline: "schema-alerts".into(),
        step: "tell-team".into(),
        attempt: 1,
        idempotency_key: key.into(),
        event: json!({
            "id": "ev-123",
            "event_type": "schema.changed",
            "timestamp": "2026-03-04T05:06:07Z",
            "source": "commit:4f2a9c1e0b7d3f5a6c8e9d0b1a2c3e4f5a6b7c8d",
            "workspace_id": "ws-payments",
            "workspace_name": "Payments",
            "org_id": null,
            "spec_path": "specs/payments.yaml",
            "breaking": true
        }),
        steps: Json::Null,
    }
}

/// A step config as the engine hands it over: the references the repository wrote sealed.
fn cfg(v: Json) -> NotifyConfig {
    serde_json::from_value(mockops::secret::seal_json(&v).expect("references parse"))
        .expect("a valid notify config")
}

fn notifier(defaults: NotifyDefaults, env: &[(&str, &str)]) -> Notifier {
    notifier_with_timeout(defaults, env, Duration::from_secs(5))
}

fn notifier_with_timeout(
    defaults: NotifyDefaults,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Notifier {
    // The receivers are on loopback, and secret files in the temp directory.
    let outbound = std::sync::Arc::new(
        mockops::outbound::OutboundPolicy::parse(["127.0.0.0/8", "::1"]).expect("policy"),
    );
    let client = Notifier::http_client(timeout, outbound.clone()).expect("http client");
    let secrets = Secrets::with_env(Redactor::new(), env.iter().copied()).with_policy(
        mockops::secret::SecretPolicy {
            file_dirs: vec![std::env::temp_dir()],
            env_allow: None,
        },
    );
    Notifier::with_secrets(client, defaults, secrets)
        .with_outbound(outbound)
        .with_smtp_timeout(timeout)
}

fn outputs_text(out: &Outputs) -> String {
    serde_json::to_string(out).expect("outputs serialize")
}

fn secret_file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, content).expect("write secret file");
    format!("${{file:{}}}", p.display())
}

// ---------------------------------------------------------------------------------------------
// Slack

#[tokio::test]
async fn slack_posts_a_block_kit_message_per_channel() {
    let rx = HttpReceiver::start().await;
    let hook = rx.url("/services/T0001/B0001/XXXXsecretXXXX");
    let defaults = NotifyDefaults {
        slack: Some(SlackDefaults {
            webhook_url: "${env:SLACK_WEBHOOK_URL}".into(),
            username: Some("mockops-bot".into()),
            icon_emoji: Some(":robot_face:".into()),
        }),
        ..Default::default()
    };
    let n = notifier(defaults, &[("SLACK_WEBHOOK_URL", &hook)]);
    let out = n
        .send(
            &cfg(json!({
                "type": "slack",
                "message": "*Breaking* change in `specs/payments.yaml`",
                "channels": ["#api", "#frontend"],
                "icon_emoji": ":rotating_light:"
            })),
            &ctx("exec-7/tell-team"),
        )
        .await
        .expect("delivered");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 2);
    for (req, channel) in reqs.iter().zip(["#api", "#frontend"]) {
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/services/T0001/B0001/XXXXsecretXXXX");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let body = req.json();
        assert_eq!(body["channel"], channel);
        assert_eq!(body["username"], "mockops-bot");
        assert_eq!(body["icon_emoji"], ":rotating_light:");
        assert_eq!(body["text"], "*Breaking* change in `specs/payments.yaml`");
        let blocks = body["blocks"].as_array().expect("blocks");
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(blocks[0]["text"]["text"], "mockops: schema.changed");
        assert_eq!(blocks[1]["type"], "section");
        assert_eq!(
            blocks[1]["text"],
            json!({"type": "mrkdwn", "text": "*Breaking* change in `specs/payments.yaml`"})
        );
        assert_eq!(blocks[2]["type"], "context");
        let context: Vec<&str> = blocks[2]["elements"]
            .as_array()
            .expect("elements")
            .iter()
            .map(|e| e["text"].as_str().expect("text"))
            .collect();
        assert_eq!(
            context,
            [
                "*Pipeline* schema-alerts",
                "*Event* `schema.changed`",
                "*Source* commit 4f2a9c1e0b7d",
                "*Workspace* Payments"
            ]
        );
    }

    assert_eq!(out["channel"], "slack");
    assert_eq!(out["delivered"], true);
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["message_id"], "exec-7/tell-team");
    assert_eq!(
        out["deliveries"],
        json!([
            {"channel": "#api", "status_code": 200},
            {"channel": "#frontend", "status_code": 200}
        ])
    );
    assert!(!outputs_text(&out).contains("XXXXsecretXXXX"));
}

#[tokio::test]
async fn slack_without_channels_posts_once_to_the_webhooks_own_channel() {
    let rx = HttpReceiver::start().await;
    let n = notifier(NotifyDefaults::default(), &[]);
    n.send(
        &cfg(json!({"type": "slack", "message": "hi", "slack_webhook_url": rx.url("/hook")})),
        &ctx("k1"),
    )
    .await
    .expect("delivered");
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let body = reqs[0].json();
    let obj = body.as_object().expect("object");
    assert!(!obj.contains_key("channel") && !obj.contains_key("username"));
}

#[tokio::test]
async fn slack_refusals_are_errors_with_the_answer_and_without_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rx = HttpReceiver::start().await;
    let url_ref = secret_file(
        &dir,
        "slack-url",
        &format!("{}\n", rx.url("/services/T1/B1/leakyleakyleaky")),
    );
    let n = notifier(NotifyDefaults::default(), &[]);
    let step = cfg(json!({"type": "slack", "message": "m", "slack_webhook_url": url_ref}));

    // A revoked webhook.
    rx.reply_next(Reply::Status(404, "no_service".into()));
    let err = n.send(&step, &ctx("k")).await.expect_err("refused");
    assert!(!err.retryable(), "{err:?}");
    assert!(err.rendered().contains("HTTP 404"), "{}", err.rendered());
    assert!(err.rendered().contains("no_service"), "{}", err.rendered());
    assert!(
        !err.rendered().contains("leakyleakyleaky"),
        "{}",
        err.rendered()
    );

    // A 200 whose body is one of Slack's error codes.
    rx.reply_next(Reply::Status(200, "invalid_payload".into()));
    let err = n.send(&step, &ctx("k")).await.expect_err("refused");
    assert!(!err.retryable());
    assert!(
        err.rendered().contains("invalid_payload"),
        "{}",
        err.rendered()
    );

    // Slack having a bad moment is worth a retry.
    rx.reply_next(Reply::Status(500, "rollup_error".into()));
    let err = n.send(&step, &ctx("k")).await.expect_err("fails");
    assert!(err.retryable());
    assert!(
        !err.rendered().contains("leakyleakyleaky"),
        "{}",
        err.rendered()
    );

    // And then it works.
    n.send(&step, &ctx("k")).await.expect("delivered");
    assert_eq!(rx.requests().len(), 4);
}

#[tokio::test]
async fn a_retry_skips_the_slack_channels_already_posted_to() {
    let rx = HttpReceiver::start().await;
    let n = notifier(NotifyDefaults::default(), &[]);
    let step = cfg(json!({
        "type": "slack",
        "message": "promoted",
        "slack_webhook_url": rx.url("/hook"),
        "channels": ["#a", "#b"]
    }));
    rx.reply_next(Reply::Status(200, "ok".into()));
    rx.reply_next(Reply::Status(503, "".into()));
    let err = n
        .send(&step, &ctx("exec-9/notify"))
        .await
        .expect_err("one fails");
    assert!(err.retryable());
    assert!(err.rendered().contains("1 of 2"), "{}", err.rendered());
    assert!(
        err.rendered().contains("#b") && !err.rendered().contains("#a"),
        "{}",
        err.rendered()
    );

    let out = n
        .send(&step, &ctx("exec-9/notify"))
        .await
        .expect("the retry delivers");
    let channels: Vec<Json> = rx
        .requests()
        .iter()
        .map(|r| r.json()["channel"].clone())
        .collect();
    assert_eq!(channels, [json!("#a"), json!("#b"), json!("#b")]);
    assert_eq!(out["deliveries"][0]["earlier_attempt"], true);

    // Another execution is another delivery.
    n.send(&step, &ctx("exec-10/notify"))
        .await
        .expect("delivered");
    assert_eq!(rx.requests().len(), 5);

    // New settings keep the memory of what was delivered.
    let n = n.with_defaults(NotifyDefaults::default());
    n.send(&step, &ctx("exec-10/notify"))
        .await
        .expect("already delivered");
    assert_eq!(rx.requests().len(), 5);
}

/// The seed documents' own example names no webhook URL: the daemon's
/// `MOCKOPS_SLACK_WEBHOOK_URL` takes it, after the step's and `mockops.yaml`'s.
#[tokio::test]
async fn slack_steps_without_a_url_use_the_daemons_own() {
    let rx = HttpReceiver::start().await;
    let daemon_url = rx.url("/services/daemon/own");
    let n = notifier(NotifyDefaults::default(), &[]).with_slack_fallback(Some(
        mockops::secret::SecretSource::Value(mockops::secret::Secret::new(daemon_url)),
    ));
    let step = cfg(json!({"type": "slack", "channels": ["#devops"], "message": "seed example"}));
    n.send(&step, &ctx("exec-fallback/notify"))
        .await
        .expect("delivered");
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].path, "/services/daemon/own");
    assert_eq!(got[0].json()["channel"], "#devops");

    // The repository's own URL wins over the daemon's.
    let repo_url = rx.url("/services/repo");
    let step = cfg(json!({"type": "slack", "message": "m", "slack_webhook_url": repo_url}));
    n.send(&step, &ctx("exec-fallback-2/notify"))
        .await
        .expect("delivered");
    let got = rx.wait_for(2).await;
    assert_eq!(got[1].path, "/services/repo");
}

#[tokio::test]
async fn missing_secrets_and_urls_are_permanent_errors_that_name_them() {
    let n = notifier(NotifyDefaults::default(), &[]);
    let err = n
        .send(
            &cfg(json!({"type": "slack", "message": "m", "slack_webhook_url": "${env:MOCKOPS_TEST_UNSET}"})),
            &ctx("k"),
        )
        .await
        .expect_err("missing");
    assert!(!err.retryable());
    assert!(
        err.rendered().contains("${env:MOCKOPS_TEST_UNSET}"),
        "{}",
        err.rendered()
    );
    assert!(
        err.rendered().contains("slack_webhook_url"),
        "{}",
        err.rendered()
    );

    let err = n
        .send(&cfg(json!({"type": "slack", "message": "m"})), &ctx("k"))
        .await
        .expect_err("no url");
    assert!(!err.retryable());
    assert!(
        err.rendered().contains("notify.slack.webhook_url"),
        "{}",
        err.rendered()
    );
    assert!(
        err.rendered().contains("MOCKOPS_SLACK_WEBHOOK_URL"),
        "{}",
        err.rendered()
    );

    let err = n
        .send(
            &cfg(json!({"type": "webhook", "message": "m", "webhook_url": "${file:/nonexistent/mockops/token}"})),
            &ctx("k"),
        )
        .await
        .expect_err("unreadable");
    assert!(!err.retryable());
    assert!(
        err.rendered()
            .contains("${file:/nonexistent/mockops/token}"),
        "{}",
        err.rendered()
    );
}

// ---------------------------------------------------------------------------------------------
// Webhooks

#[tokio::test]
async fn webhooks_carry_body_delivery_id_and_a_verifiable_signature() {
    let rx = HttpReceiver::start().await;
    let defaults = NotifyDefaults {
        webhook: Some(WebhookDefaults {
            secret: Some("${env:HOOK_SECRET}".into()),
            headers: IndexMap::from([
                ("X-Team".to_string(), "payments".to_string()),
                ("Authorization".to_string(), "Bearer default".to_string()),
            ]),
        }),
        ..Default::default()
    };
    let hook_secret = "whsec-0123456789abcdef";
    let token = "api-token-feedface";
    let n = notifier(
        defaults,
        &[("HOOK_SECRET", hook_secret), ("API_TOKEN", token)],
    );
    let out = n
        .send(
            &cfg(json!({
                "type": "webhook",
                "message": "Spec changed: specs/payments.yaml",
                "webhook_url": rx.url("/hooks/mockops"),
                "headers": {"authorization": "Bearer ${env:API_TOKEN}"},
                "payload": {"severity": "high", "links": {"spec": "specs/payments.yaml"}}
            })),
            &ctx("exec-7/tell-team"),
        )
        .await
        .expect("delivered");

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/hooks/mockops");
    assert_eq!(req.header("x-mockops-delivery"), Some("exec-7/tell-team"));
    assert_eq!(req.header("idempotency-key"), Some("exec-7/tell-team"));
    assert_eq!(req.header("x-mockops-event"), Some("schema.changed"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-team"), Some("payments"));
    // The step's header wins over the default, whatever its case.
    assert_eq!(
        req.header("authorization"),
        Some("Bearer api-token-feedface")
    );
    assert_eq!(
        req.headers
            .iter()
            .filter(|(n, _)| n == "authorization")
            .count(),
        1
    );

    let mut mac = Hmac::<Sha256>::new_from_slice(hook_secret.as_bytes()).expect("hmac key");
    mac.update(&req.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(
        req.header("x-mockops-signature-256"),
        Some(expected.as_str())
    );

    let body = req.json();
    assert_eq!(body["message"], "Spec changed: specs/payments.yaml");
    assert_eq!(body["event"], ctx("x").event);
    assert_eq!(body["pipeline"], "schema-alerts");
    assert_eq!(body["execution_id"], "exec-7");
    assert_eq!(body["step"], "tell-team");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["links"]["spec"], "specs/payments.yaml");

    assert_eq!(out["channel"], "webhook");
    assert_eq!(out["status_code"], 200);
    assert_eq!(out["message_id"], "exec-7/tell-team");
    assert_eq!(
        out["deliveries"],
        json!([{"url": rx.url("/hooks/mockops"), "status_code": 200}])
    );
    let text = outputs_text(&out);
    assert!(
        !text.contains(token) && !text.contains(hook_secret),
        "{text}"
    );
}

#[tokio::test]
async fn webhook_method_is_configurable() {
    let rx = HttpReceiver::start().await;
    let n = notifier(NotifyDefaults::default(), &[]);
    n.send(
        &cfg(json!({"type": "webhook", "message": "m", "webhook_url": rx.url("/x"), "method": "PUT"})),
        &ctx("k"),
    )
    .await
    .expect("delivered");
    let req = &rx.requests()[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.header("x-mockops-signature-256"), None);
}

#[tokio::test]
async fn every_webhook_target_must_succeed_and_a_retry_sends_only_the_failed_ones() {
    let a = HttpReceiver::start().await;
    let b = HttpReceiver::start().await;
    let c = HttpReceiver::start().await;
    let n = notifier(NotifyDefaults::default(), &[]);
    let step = cfg(json!({
        "type": "webhook",
        "message": "m",
        "webhook_urls": [a.url("/a"), b.url("/b"), c.url("/c")]
    }));
    b.reply_next(Reply::Status(502, "bad gateway".into()));
    c.reply_next(Reply::Status(404, "no such hook".into()));
    let err = n
        .send(&step, &ctx("exec-1/hook"))
        .await
        .expect_err("two fail");
    assert!(err.retryable(), "a 502 is worth retrying: {err:?}");
    assert!(err.rendered().contains("2 of 3"), "{}", err.rendered());
    assert!(err.rendered().contains(&b.url("/b")), "{}", err.rendered());
    assert!(err.rendered().contains(&c.url("/c")), "{}", err.rendered());
    assert!(!err.rendered().contains(&a.url("/a")), "{}", err.rendered());
    assert!(err.rendered().contains("HTTP 502") && err.rendered().contains("HTTP 404"));

    let out = n
        .send(&step, &ctx("exec-1/hook"))
        .await
        .expect("the retry delivers");
    assert_eq!(a.requests().len(), 1, "a already had it");
    assert_eq!(b.requests().len(), 2);
    assert_eq!(c.requests().len(), 2);
    let ids: Vec<Option<String>> = b
        .requests()
        .iter()
        .chain(c.requests().iter())
        .map(|r| r.header("x-mockops-delivery").map(str::to_string))
        .collect();
    assert!(
        ids.iter().all(|id| id.as_deref() == Some("exec-1/hook")),
        "{ids:?}"
    );
    assert_eq!(
        b.requests()[0].body,
        b.requests()[1].body,
        "retries send the same bytes"
    );
    assert_eq!(out["deliveries"][0]["earlier_attempt"], true);
    assert_eq!(out["deliveries"].as_array().expect("deliveries").len(), 3);
}

#[tokio::test]
async fn webhook_statuses_decide_whether_to_retry() {
    let rx = HttpReceiver::start().await;
    let n = notifier(NotifyDefaults::default(), &[]);
    let step = cfg(json!({"type": "webhook", "message": "m", "webhook_url": rx.url("/h")}));
    for (status, retryable) in [
        (400, false),
        (401, false),
        (403, false),
        (404, false),
        (422, false),
        (301, false),
        (408, true),
        (429, true),
        (500, true),
        (503, true),
    ] {
        rx.reply_next(Reply::Status(status, format!("status {status} body")));
        let err = n
            .send(&step, &ctx(&format!("k-{status}")))
            .await
            .expect_err("fails");
        assert_eq!(err.retryable(), retryable, "{status}: {}", err.rendered());
        assert!(
            err.rendered().contains(&format!("HTTP {status}")),
            "{}",
            err.rendered()
        );
        assert!(
            err.rendered().contains(&format!("status {status} body")),
            "{}",
            err.rendered()
        );
    }
}

#[tokio::test]
async fn a_hanging_webhook_times_out_and_is_retryable() {
    let rx = HttpReceiver::start().await;
    rx.hang_next(1);
    let n = notifier_with_timeout(NotifyDefaults::default(), &[], Duration::from_millis(500));
    let started = Instant::now();
    let err = n
        .send(
            &cfg(json!({"type": "webhook", "message": "m", "webhook_url": rx.url("/slow")})),
            &ctx("k"),
        )
        .await
        .expect_err("times out");
    assert!(err.retryable());
    assert!(err.rendered().contains("timed out"), "{}", err.rendered());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_webhook_is_retryable() {
    let n = notifier(NotifyDefaults::default(), &[]);
    let err = n
        .send(
            &cfg(json!({
                "type": "webhook",
                "message": "m",
                "webhook_url": format!("http://127.0.0.1:{}/h", closed_port())
            })),
            &ctx("k"),
        )
        .await
        .expect_err("refused");
    assert!(err.retryable());
    assert!(
        err.rendered().contains("could not connect"),
        "{}",
        err.rendered()
    );
}

#[tokio::test]
async fn errors_never_contain_secret_values() {
    let rx = HttpReceiver::start().await;
    let token = "tok-9f8e7d6c5b4a3921";
    // The receiver echoes the token from the URL into its answer, as some do.
    rx.reply_by_default(Reply::Status(403, format!("token {token} was revoked")));
    let n = notifier(NotifyDefaults::default(), &[("HOOK_TOKEN", token)]);
    let err = n
        .send(
            &cfg(json!({
                "type": "webhook",
                "message": "m",
                "webhook_url": rx.url("/hooks/${env:HOOK_TOKEN}"),
                "headers": {"X-Token": "${env:HOOK_TOKEN}"}
            })),
            &ctx("k"),
        )
        .await
        .expect_err("refused");
    assert_eq!(rx.requests()[0].path, format!("/hooks/{token}"));
    assert!(!err.rendered().contains(token), "{}", err.rendered());
    assert!(
        err.rendered().contains("token *** was revoked"),
        "{}",
        err.rendered()
    );
    assert!(err.rendered().contains("/hooks/***"), "{}", err.rendered());

    // The same redactor serves everything else that writes text out.
    assert_eq!(n.redactor().redact(&format!("log: {token}")), "log: ***");
}

// ---------------------------------------------------------------------------------------------
// E-mail

fn smtp(port: u16) -> Json {
    json!({"host": "127.0.0.1", "port": port, "from": "mockops@example.com", "tls": "none"})
}

#[tokio::test]
async fn email_reaches_the_smtp_server_with_a_stable_message_id() {
    let server = SmtpServer::start();
    let n = notifier(NotifyDefaults::default(), &[]);
    let step = cfg(json!({
        "type": "email",
        "message": "Spec changed: specs/payments.yaml",
        "smtp": smtp(server.port),
        "to": ["dev@example.com"],
        "email_to": ["ops@example.com", "dev@example.com"]
    }));
    let out = n.send(&step, &ctx("exec-7/mail")).await.expect("sent");
    let messages = server.wait_for(1).await;
    let m = &messages[0];
    assert_eq!(m["mail_from"], "mockops@example.com");
    assert_eq!(m["rcpt_tos"], json!(["dev@example.com", "ops@example.com"]));
    let h = &m["headers"];
    assert_eq!(h["To"], "dev@example.com, ops@example.com");
    assert_eq!(h["From"], "mockops@example.com");
    assert_eq!(h["Subject"], "mockops: schema.changed");
    assert_eq!(h["X-Mockops-Delivery"], "exec-7/mail");
    let message_id = h["Message-ID"].as_str().expect("Message-ID");
    assert!(message_id.starts_with("<exec-7.mail."), "{message_id}");
    assert!(message_id.ends_with("@example.com>"), "{message_id}");
    let body = m["body"].as_str().expect("plain-text body");
    assert!(
        body.starts_with("Spec changed: specs/payments.yaml\n"),
        "{body}"
    );
    assert!(
        body.contains("Event:     schema.changed (ev-123)"),
        "{body}"
    );
    assert!(body.contains("Source:    commit 4f2a9c1e0b7d"), "{body}");
    assert!(
        body.contains("Pipeline:  schema-alerts, step tell-team, execution exec-7"),
        "{body}"
    );
    assert!(
        body.contains("\"spec_path\": \"specs/payments.yaml\""),
        "{body}"
    );

    assert_eq!(out["channel"], "email");
    assert_eq!(out["status_code"], 250);
    assert_eq!(out["message_id"], message_id);
    assert_eq!(out["to"], json!(["dev@example.com", "ops@example.com"]));

    // A retry (say the answer was lost) sends the same message, recognisable by its id.
    n.send(&step, &ctx("exec-7/mail"))
        .await
        .expect("sent again");
    let messages = server.wait_for(2).await;
    assert_eq!(messages[1]["headers"]["Message-ID"], message_id);
}

#[tokio::test]
async fn email_defaults_supply_server_and_recipients() {
    let server = SmtpServer::start();
    let defaults = NotifyDefaults {
        email: Some(EmailDefaults {
            smtp: serde_json::from_value::<SmtpConfig>(smtp(server.port)).expect("smtp"),
            to: vec!["team@example.com".into()],
        }),
        ..Default::default()
    };
    let n = notifier(defaults, &[]);
    n.send(
        &cfg(json!({"type": "email", "message": "hello", "subject": "Heads up"})),
        &ctx("k"),
    )
    .await
    .expect("sent");
    let m = &server.wait_for(1).await[0];
    assert_eq!(m["rcpt_tos"], json!(["team@example.com"]));
    assert_eq!(m["headers"]["Subject"], "Heads up");
}

#[tokio::test]
async fn smtp_auth_uses_the_password_file_and_never_shows_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = "correct-horse-battery-staple";
    let server = SmtpServer::start_with_auth("mockops", password);
    let n = notifier(NotifyDefaults::default(), &[]);
    let with_password = |reference: String| {
        let mut smtp = smtp(server.port);
        smtp["username"] = json!("mockops");
        smtp["password"] = json!(reference);
        cfg(json!({"type": "email", "message": "m", "smtp": smtp, "to": ["dev@example.com"]}))
    };

    // Kubernetes and systemd credential files end with a newline.
    let good = secret_file(&dir, "smtp-password", &format!("{password}\n"));
    let out = n
        .send(&with_password(good), &ctx("k1"))
        .await
        .expect("sent");
    let m = &server.wait_for(1).await[0];
    assert_eq!(m["login"], "mockops");
    assert!(!outputs_text(&out).contains(password));

    let wrong = "wrong-horse-battery-staple";
    let bad = secret_file(&dir, "wrong-password", wrong);
    let err = n
        .send(&with_password(bad), &ctx("k2"))
        .await
        .expect_err("authentication fails");
    assert!(!err.retryable(), "{err:?}");
    assert!(err.rendered().contains("535"), "{}", err.rendered());
    assert!(
        err.rendered().contains("smtp.password"),
        "{}",
        err.rendered()
    );
    assert!(!err.rendered().contains(wrong) && !err.rendered().contains(password));

    // No credentials where the server requires them.
    let err = n
        .send(
            &cfg(json!({"type": "email", "message": "m", "smtp": smtp(server.port), "to": ["dev@example.com"]})),
            &ctx("k3"),
        )
        .await
        .expect_err("authentication required");
    assert!(!err.retryable(), "{err:?}");
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn smtp_replies_decide_whether_to_retry() {
    let server = SmtpServer::start();
    let n = notifier(NotifyDefaults::default(), &[]);
    let to = |addr: &str| {
        cfg(json!({"type": "email", "message": "m", "smtp": smtp(server.port), "to": [addr]}))
    };
    let err = n
        .send(&to("reject@example.com"), &ctx("k"))
        .await
        .expect_err("550");
    assert!(!err.retryable());
    assert!(err.rendered().contains("550"), "{}", err.rendered());
    let err = n
        .send(&to("tempfail@example.com"), &ctx("k"))
        .await
        .expect_err("451");
    assert!(err.retryable());
    assert!(err.rendered().contains("451"), "{}", err.rendered());
    assert!(server.messages().is_empty());
}

#[tokio::test]
async fn unreachable_and_silent_smtp_servers_are_retryable() {
    let n = notifier_with_timeout(NotifyDefaults::default(), &[], Duration::from_millis(500));
    let to_port = |port: u16| {
        cfg(json!({"type": "email", "message": "m", "smtp": smtp(port), "to": ["dev@example.com"]}))
    };
    let err = n
        .send(&to_port(closed_port()), &ctx("k"))
        .await
        .expect_err("refused");
    assert!(err.retryable(), "{err:?}");

    let silent = SilentListener::start().await;
    let started = Instant::now();
    let err = n
        .send(&to_port(silent.port), &ctx("k"))
        .await
        .expect_err("no greeting");
    assert!(err.retryable(), "{err:?}");
    assert!(err.rendered().contains("timed out"), "{}", err.rendered());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// An SMTP host the repository names may not be on the daemon's network unless allowed: the
/// test notifier allows loopback only, so a private address is refused before connecting.
#[tokio::test]
async fn smtp_hosts_on_private_networks_are_refused() {
    let n = notifier(NotifyDefaults::default(), &[]);
    for host in ["10.1.2.3", "169.254.169.254", "[fd00::1]"] {
        let mut server = smtp(25);
        server["host"] = json!(host);
        let err = n
            .send(
                &cfg(json!({"type": "email", "message": "m", "smtp": server, "to": ["dev@example.com"]})),
                &ctx("k"),
            )
            .await
            .expect_err("refused");
        assert!(!err.retryable(), "{err:?}");
        assert!(
            err.rendered().contains("--allow-outbound"),
            "{}",
            err.rendered()
        );
    }
}

#[tokio::test]
async fn smtp_security_is_not_silently_downgraded() {
    let server = SmtpServer::start();
    let n = notifier(NotifyDefaults::default(), &[("PW", "a-password-value")]);
    // Without `tls`, STARTTLS is required; this server offers none.
    let mut no_tls = smtp(server.port);
    no_tls.as_object_mut().expect("object").remove("tls");
    let err = n
        .send(
            &cfg(
                json!({"type": "email", "message": "m", "smtp": no_tls, "to": ["dev@example.com"]}),
            ),
            &ctx("k"),
        )
        .await
        .expect_err("no STARTTLS");
    assert!(!err.retryable());
    assert!(err.rendered().contains("STARTTLS"), "{}", err.rendered());

    // A password is never sent in clear text off the machine.
    let err = n
        .send(
            &cfg(json!({
                "type": "email",
                "message": "m",
                "smtp": {"host": "mail.example.com", "port": 25, "from": "a@example.com",
                         "tls": "none", "username": "u", "password": "${env:PW}"},
                "to": ["dev@example.com"]
            })),
            &ctx("k"),
        )
        .await
        .expect_err("refused before connecting");
    assert!(!err.retryable());
    assert!(err.rendered().contains("unencrypted"), "{}", err.rendered());
    assert!(server.messages().is_empty());
}
