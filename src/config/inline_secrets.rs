//! Inline secrets: a Slack webhook URL, password, secret or token written into a config file
//! is a warning whose hint shows the reference form (`${env:NAME}`, `${file:PATH}`).
//! Depends on one file's content only, so it runs once per blob at parse time.

use crate::config::diag::Diagnostic;
use crate::config::yaml::{Loc, Node, Value};

/// Whether a value is a secret reference resolved at run time.
pub fn is_reference(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with("${env:") || t.starts_with("${file:")) && t.ends_with('}')
}

/// Whether `value` under `key` is a secret written inline (the rule the warning uses).
pub fn is_inline_secret(key: &str, value: &str) -> bool {
    if is_reference(value) || value.contains("{{") || value.is_empty() {
        return false;
    }
    let key = key.to_ascii_lowercase();
    let slack = value.starts_with("https://hooks.slack.com/");
    let secret_key = SECRET_KEYS
        .iter()
        .any(|sk| key == *sk || key.strip_suffix(sk).is_some_and(|p| p.ends_with('_')));
    slack || secret_key || looks_like_token(value)
}

/// Masks, in place, every value [`is_inline_secret`] finds in `value` (and tokens in lists), so
/// the API never serves a secret someone committed to the repository.
pub fn mask_inline_json(value: &mut serde_json::Value) {
    use serde_json::Value as Json;
    match value {
        Json::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Json::String(s) if is_inline_secret(k, s) => {
                        *s = crate::secret::MASK.to_string();
                    }
                    _ => mask_inline_json(v),
                }
            }
        }
        Json::Array(items) => {
            for v in items {
                match v {
                    Json::String(s) if looks_like_token(s) => *s = crate::secret::MASK.to_string(),
                    _ => mask_inline_json(v),
                }
            }
        }
        _ => {}
    }
}

const SECRET_KEYS: &[&str] = &[
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "client_secret",
];

/// Prefixes of well-known credentials (GitHub, Slack, GitLab, AWS, Stripe); shared with the
/// masking of response bodies in notify errors.
pub const TOKEN_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "glpat-",
    "AKIA",
    "sk_live_",
];

fn looks_like_token(s: &str) -> bool {
    TOKEN_PREFIXES
        .iter()
        .any(|p| s.starts_with(p) && s.len() >= p.len() + 12)
}

fn push_warning(
    out: &mut Vec<Diagnostic>,
    loc: Loc,
    message: impl Into<String>,
) -> &mut Diagnostic {
    out.push(Diagnostic::warning("inline-secret", "", loc, message));
    out.last_mut().expect("just pushed")
}

/// Warnings for secrets written inline in one file, and errors for secret references that
/// cannot be resolved as written (diagnostics have an empty `file`).
pub fn scan_secrets(node: &Node, out: &mut Vec<Diagnostic>) {
    if let Value::Str(s) = &node.value
        && crate::secret::has_references(s)
        && let Err(e) = crate::secret::parse(s).and_then(|_| crate::secret::seal(s).map(|_| ()))
    {
        out.push(
            Diagnostic::error("bad-secret-reference", "", node.loc, e.to_string()).with_hint_opt(
                Some(
                    "write `${env:NAME}` or `${file:/absolute/path}` with a fixed name; `$${` \
                     writes a literal `${`"
                        .to_string(),
                ),
            ),
        );
        return;
    }
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                // A scenario step's `save: {token: /token}` names where a value is read from.
                if k.name == "save"
                    && let Value::Map(saved) = &v.value
                    && saved
                        .iter()
                        .all(|(_, p)| matches!(&p.value, Value::Str(s) if s.starts_with('/')))
                {
                    continue;
                }
                if let Value::Str(s) = &v.value {
                    let slack = s.starts_with("https://hooks.slack.com/");
                    if is_inline_secret(&k.name, s) {
                        let env = k.name.to_ascii_uppercase().replace(['-', '.'], "_");
                        let what = if slack {
                            "a Slack webhook URL"
                        } else {
                            "a secret"
                        };
                        push_warning(
                            out,
                            v.loc,
                            format!("`{}` holds {what} written in the repository", k.name),
                        )
                        .hint = Some(format!(
                            "write `{}: ${{env:{env}}}` or `${{file:/run/secrets/{}}}` and supply the value at run time",
                            k.name,
                            k.name.to_ascii_lowercase()
                        ));
                        continue;
                    }
                }
                scan_secrets(v, out);
            }
        }
        Value::Seq(items) => {
            for v in items {
                if let Value::Str(s) = &v.value
                    && looks_like_token(s)
                {
                    push_warning(out, v.loc, "a token is written in the repository").hint =
                        Some("reference it as `${env:NAME}` or `${file:PATH}`".into());
                    continue;
                }
                scan_secrets(v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn malformed_references_are_errors_at_commit_time() {
        let node = crate::config::yaml::parse(
            b"config:\n  url: \"${env:bad-name}\"\n  path: \"${file:/run/secrets/{{ event.x }}}\"\n  ok: \"${env:GOOD}\"\n  literal: \"$${env:NOT_A_REF}\"\n",
            crate::config::yaml::Limits::CONFIG,
        )
        .expect("yaml");
        let mut out = Vec::new();
        scan_secrets(&node, &mut out);
        let errors: Vec<_> = out
            .iter()
            .filter(|d| d.code == "bad-secret-reference")
            .map(|d| (d.line, d.message.clone()))
            .collect();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert_eq!(errors[0].0, 2);
        assert!(errors[1].1.contains("template"), "{errors:#?}");
    }

    #[test]
    fn inline_secrets_are_masked_and_references_kept() {
        let mut v = json!({
            "name": "alerts",
            "config": {
                "slack_webhook_url": "https://hooks.slack.com/services/T0/B0/abcdefXYZ",
                "smtp": {"password": "hunter2hunter2", "username": "${env:SMTP_USER}"},
                "secret": "${file:/run/secrets/hook}",
                "api_token": "{{ variables.token }}",
                "list": ["ghp_abcdefghijklmnopqrstuvwxyz", "plain"],
                "message": "nothing secret"
            }
        });
        mask_inline_json(&mut v);
        assert_eq!(
            v,
            json!({
                "name": "alerts",
                "config": {
                    "slack_webhook_url": "***",
                    "smtp": {"password": "***", "username": "${env:SMTP_USER}"},
                    "secret": "${file:/run/secrets/hook}",
                    "api_token": "{{ variables.token }}",
                    "list": ["***", "plain"],
                    "message": "nothing secret"
                }
            })
        );
    }
}
