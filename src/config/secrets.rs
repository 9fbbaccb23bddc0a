//! Inline secrets: a Slack webhook URL, password, secret or token written into a config file
//! is a warning whose hint shows the reference form (`${env:NAME}`, `${file:PATH}`).
//! Depends on one file's content only, so it runs once per blob at parse time.

use crate::diag::Diagnostic;
use crate::yaml::{Loc, Node, Value};

/// Whether a value is a secret reference resolved at run time.
pub fn is_reference(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with("${env:") || t.starts_with("${file:")) && t.ends_with('}')
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

fn looks_like_token(s: &str) -> bool {
    let prefixes = [
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
    prefixes
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

/// Warnings for secrets written inline in one file (diagnostics have an empty `file`).
pub fn scan_secrets(node: &Node, out: &mut Vec<Diagnostic>) {
    match &node.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                if let Value::Str(s) = &v.value
                    && !is_reference(s)
                    && !s.contains("{{")
                    && !s.is_empty()
                {
                    let key = k.name.to_ascii_lowercase();
                    let slack = s.starts_with("https://hooks.slack.com/");
                    let secret_key = SECRET_KEYS.iter().any(|sk| {
                        key == *sk || key.strip_suffix(sk).is_some_and(|p| p.ends_with('_'))
                    });
                    if slack || secret_key || looks_like_token(s) {
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
