//! From a scenario step to a request: `action` found in the service's [`Catalog`] (or the
//! explicit `request`), every other key placed as a path, query or header parameter or a body
//! property, and `{{steps.<step>.<name>}}` references substituted. Validation runs it with the
//! references left in place (to report unknown actions and keys); a run substitutes first.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use indexmap::IndexMap;
use serde_json::{Map, Value as Json};

use super::catalog::{BodySig, Catalog, GrpcSig, ParamIn};
use crate::config::diag::did_you_mean;
use crate::model::ScenarioStep;

/// Methods an explicit request may use.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

static REFERENCE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"\{\{\s*([^{}]*?)\s*\}\}").unwrap_or_else(|_| unreachable!())
});

/// What is wrong with a step, at a JSON pointer relative to the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub code: &'static str,
    pub pointer: String,
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    fn new(code: &'static str, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            code,
            pointer: pointer.into(),
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A step's request, relative to the service's base path.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub method: String,
    /// The operation's name, or `METHOD /path` for an explicit request.
    pub operation: String,
    /// Path below the base path, parameters filled in and percent-encoded.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Json>,
    pub grpc: Option<GrpcSig>,
}

/// Plans `step` of service `service` against `catalog` (`None`: the service has no usable
/// spec). Every problem is returned, not only the first.
pub fn plan(
    step: &ScenarioStep,
    service: &str,
    catalog: Option<&Catalog>,
) -> Result<Planned, Vec<Problem>> {
    match (&step.action, &step.request) {
        (Some(_), Some(_)) => Err(vec![
            Problem::new(
                "action-and-request",
                "/request",
                "a step gives `action` or `request`, not both",
            )
            .hint("remove `request` to call the operation `action` names, or `action` to send the request as written"),
        ]),
        (None, None) => Err(vec![
            Problem::new(
                "missing-action",
                "",
                "step gives neither `action` nor `request`",
            )
            .hint("name an operation of the service's spec (`action: createCharge`) or write the request (`request: {method: POST, path: /charges}`)"),
        ]),
        (None, Some(r)) => {
            let mut problems = Vec::new();
            let method = r.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
            if !METHODS.contains(&method.as_str()) {
                problems.push(
                    Problem::new(
                        "invalid-request",
                        "/request/method",
                        format!("`{method}` is not an HTTP method a step can send"),
                    )
                    .hint(format!("use one of {}", METHODS.join(", "))),
                );
            }
            if !r.path.starts_with('/') || r.path.contains("..") || r.path.contains(['?', '#']) {
                problems.push(
                    Problem::new(
                        "invalid-request",
                        "/request/path",
                        format!("request path `{}` must start with `/` below the service's base path, without `..`, `?` or `#`", r.path),
                    )
                    .hint("write the query in `request.query`"),
                );
            }
            for key in step.params.keys() {
                problems.push(
                    Problem::new(
                        "unknown-step-key",
                        format!("/{}", escape(key)),
                        format!("`{key}` is not a field of a step with an explicit `request`"),
                    )
                    .hint("put parameters inside `request` (`query`, `headers`, `body`), or name an operation with `action` to map keys to its parameters"),
                );
            }
            if !problems.is_empty() {
                return Err(problems);
            }
            Ok(Planned {
                operation: format!("{method} {}", r.path),
                method,
                path: r.path.clone(),
                query: r.query.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
                headers: r.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                body: r.body.clone(),
                grpc: None,
            })
        }
        (Some(action), None) => {
            let Some(catalog) = catalog else {
                return Err(vec![
                    Problem::new(
                        "unresolved-action",
                        "/action",
                        format!("service `{service}` has no usable spec to find action `{action}` in"),
                    )
                    .hint("give the service a `spec:`, or write the request: `request: {method: POST, path: /things}`"),
                ]);
            };
            let Some(op) = catalog.find(action) else {
                let names: Vec<&str> = catalog.names().collect();
                let close = did_you_mean(action, names.iter().copied()).or_else(|| {
                    let want = super::catalog::normalize(action);
                    names.iter().copied().find(|n| {
                        let n = super::catalog::normalize(n);
                        !want.is_empty() && (n.contains(&want) || want.contains(&n))
                    })
                });
                let hint = match close {
                    Some(c) => format!("did you mean `{c}`?"),
                    None if names.is_empty() => "the spec declares no operationId; write the request instead: `request: {method, path}`".into(),
                    None => format!("operations of `{service}`: {}", names.join(", ")),
                };
                return Err(vec![
                    Problem::new(
                        "unknown-action",
                        "/action",
                        format!("action `{action}` is not an operation of service `{service}`"),
                    )
                    .hint(hint),
                ]);
            };
            let mut problems = Vec::new();
            let mut path_values: IndexMap<&str, String> = IndexMap::new();
            let mut query = Vec::new();
            let mut headers = Vec::new();
            let mut body = Map::new();
            for (key, value) in &step.params {
                let param = op.params.iter().find(|p| match p.location {
                    ParamIn::Header => p.name.eq_ignore_ascii_case(key),
                    _ => p.name == *key,
                });
                match (param, &op.body) {
                    (Some(p), _) => match p.location {
                        ParamIn::Path => {
                            path_values.insert(p.name.as_str(), text(value));
                        }
                        ParamIn::Query => query.push((p.name.clone(), text(value))),
                        ParamIn::Header => headers.push((p.name.clone(), text(value))),
                    },
                    (None, BodySig::Json { properties }) if properties.as_ref().is_none_or(|ps| ps.contains(key)) => {
                        body.insert(key.clone(), value.clone());
                    }
                    (None, body_sig) => {
                        let mut known: BTreeSet<&str> = op.params.iter().map(|p| p.name.as_str()).collect();
                        if let BodySig::Json { properties: Some(ps) } = body_sig {
                            known.extend(ps.iter().map(String::as_str));
                        }
                        let hint = match did_you_mean(key, known.iter().copied()) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None if known.is_empty() => format!("`{}` takes no parameters", op.name),
                            None => format!(
                                "parameters and body properties of `{}`: {}",
                                op.name,
                                known.into_iter().collect::<Vec<_>>().join(", ")
                            ),
                        };
                        problems.push(
                            Problem::new(
                                "unknown-step-key",
                                format!("/{}", escape(key)),
                                format!("`{key}` is not a parameter or request-body property of `{}` ({} {})", op.name, op.method, op.path),
                            )
                            .hint(hint),
                        );
                    }
                }
            }
            let mut path = String::new();
            let mut rest = op.path.as_str();
            while let Some(open) = rest.find('{') {
                let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                    break;
                };
                path.push_str(&rest[..open]);
                let name = &rest[open + 1..close];
                match path_values.get(name) {
                    Some(v) => path.push_str(&encode_segment(v)),
                    None => problems.push(
                        Problem::new(
                            "missing-path-parameter",
                            "",
                            format!("step leaves path parameter `{name}` of `{}` ({}) unset", op.name, op.path),
                        )
                        .hint(format!("add `{name}: <value>` to the step")),
                    ),
                }
                rest = &rest[close + 1..];
            }
            path.push_str(rest);
            if !problems.is_empty() {
                return Err(problems);
            }
            let has_body = matches!(op.body, BodySig::Json { .. });
            Ok(Planned {
                method: op.method.clone(),
                operation: op.name.clone(),
                path,
                query,
                headers,
                body: (has_body).then_some(Json::Object(body)),
                grpc: op.grpc.clone(),
            })
        }
    }
}

/// A JSON pointer segment with `~` and `/` escaped.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A parameter value as text: strings as they are, anything else as JSON.
pub fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn encode_segment(s: &str) -> String {
    // `.` and `..` would be resolved away by URL parsing; encoded, the gateway refuses them.
    if s == "." || s == ".." {
        return s.replace('.', "%2E");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A reference a step's value makes: `{{steps.<step>.<name>}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Step {
        step: String,
        name: String,
    },
    /// Anything else between `{{ }}`.
    Unknown(String),
}

fn parse_reference(inner: &str) -> Reference {
    let mut parts = inner.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("steps"), Some(step), Some(name), None) if !step.is_empty() && !name.is_empty() => {
            Reference::Step {
                step: step.to_string(),
                name: name.to_string(),
            }
        }
        _ => Reference::Unknown(inner.to_string()),
    }
}

/// Every reference in the strings of `v`.
pub fn references(v: &Json, out: &mut Vec<Reference>) {
    match v {
        Json::String(s) => out.extend(
            REFERENCE
                .captures_iter(s)
                .filter_map(|c| c.get(1))
                .map(|m| parse_reference(m.as_str())),
        ),
        Json::Array(items) => items.iter().for_each(|i| references(i, out)),
        Json::Object(m) => m.values().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// A reference a run cannot fill in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstituteError {
    #[error("`{{{{steps.{step}.{name}}}}}`: step `{step}` saved no value `{name}`")]
    NotSaved { step: String, name: String },
    #[error("`{{{{{0}}}}}` is not a reference a step can use (`{{{{steps.<step>.<name>}}}}`)")]
    NotAReference(String),
    #[error("the request after substitution is not valid: {0}")]
    Request(String),
}

/// `v` with every `{{steps.<step>.<name>}}` replaced through `lookup`; a string that is one
/// reference takes the saved value itself (a number stays a number). Errors name the first
/// reference `lookup` cannot answer.
pub fn substitute(
    v: &Json,
    lookup: &dyn Fn(&str, &str) -> Option<Json>,
) -> Result<Json, SubstituteError> {
    Ok(match v {
        Json::String(s) => {
            if let Some(c) = REFERENCE.captures(s)
                && c.get(0).is_some_and(|m| m.as_str() == s)
            {
                let inner = c.get(1).map_or("", |m| m.as_str());
                return resolve_one(inner, lookup);
            }
            let mut err = None;
            let out = REFERENCE.replace_all(s, |c: &regex::Captures<'_>| {
                let inner = c.get(1).map_or("", |m| m.as_str());
                match resolve_one(inner, lookup) {
                    Ok(v) => text(&v),
                    Err(e) => {
                        err.get_or_insert(e);
                        String::new()
                    }
                }
            });
            if let Some(e) = err {
                return Err(e);
            }
            Json::String(out.into_owned())
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| substitute(i, lookup))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, i)| Ok((k.clone(), substitute(i, lookup)?)))
                .collect::<Result<_, SubstituteError>>()?,
        ),
        other => other.clone(),
    })
}

fn resolve_one(
    inner: &str,
    lookup: &dyn Fn(&str, &str) -> Option<Json>,
) -> Result<Json, SubstituteError> {
    match parse_reference(inner) {
        Reference::Step { step, name } => {
            lookup(&step, &name).ok_or(SubstituteError::NotSaved { step, name })
        }
        Reference::Unknown(inner) => Err(SubstituteError::NotAReference(inner)),
    }
}

/// Whether `p` is a JSON pointer (`""` or starting with `/`).
pub fn is_pointer(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn step(yaml: Json) -> ScenarioStep {
        serde_json::from_value(yaml).expect("step")
    }

    fn payments() -> Catalog {
        use super::super::catalog::{OperationSig, ParamSig};
        Catalog {
            operations: vec![
                OperationSig {
                    name: "createCharge".into(),
                    named: true,
                    method: "POST".into(),
                    path: "/charges".into(),
                    params: vec![ParamSig {
                        name: "Idempotency-Key".into(),
                        location: ParamIn::Header,
                    }],
                    body: BodySig::Json {
                        properties: Some(["amount".to_string(), "currency".to_string()].into()),
                    },
                    grpc: None,
                },
                OperationSig {
                    name: "getCharge".into(),
                    named: true,
                    method: "GET".into(),
                    path: "/charges/{id}".into(),
                    params: vec![ParamSig {
                        name: "id".into(),
                        location: ParamIn::Path,
                    }],
                    body: BodySig::None,
                    grpc: None,
                },
            ],
        }
    }

    #[test]
    fn keys_go_where_the_operation_declares_them() {
        let p = plan(
            &step(json!({"service": "payments", "action": "create-charge", "amount": 5, "currency": "usd", "idempotency-key": "k1"})),
            "payments",
            Some(&payments()),
        )
        .expect("planned");
        assert_eq!(p.method, "POST");
        assert_eq!(p.path, "/charges");
        assert_eq!(p.body, Some(json!({"amount": 5, "currency": "usd"})));
        assert_eq!(p.headers, vec![("Idempotency-Key".into(), "k1".into())]);
        let g = plan(
            &step(json!({"action": "GET_CHARGE", "id": "a b/c"})),
            "payments",
            Some(&payments()),
        )
        .expect("planned");
        assert_eq!(g.path, "/charges/a%20b%2Fc");
        let up = plan(
            &step(json!({"action": "getCharge", "id": ".."})),
            "payments",
            Some(&payments()),
        )
        .expect("planned");
        assert_eq!(up.path, "/charges/%2E%2E");
    }

    #[test]
    fn unknown_actions_and_keys_are_problems_with_suggestions() {
        let e = plan(
            &step(json!({"action": "createCharges"})),
            "payments",
            Some(&payments()),
        )
        .expect_err("unknown");
        assert_eq!(e[0].code, "unknown-action");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `createCharge`?"));
        let e = plan(
            &step(json!({"action": "createCharge", "amout": 5})),
            "payments",
            Some(&payments()),
        )
        .expect_err("unknown key");
        assert_eq!(e[0].code, "unknown-step-key");
        assert_eq!(e[0].pointer, "/amout");
        assert_eq!(e[0].hint.as_deref(), Some("did you mean `amount`?"));
        let e = plan(
            &step(json!({"action": "getCharge"})),
            "payments",
            Some(&payments()),
        )
        .expect_err("missing id");
        assert_eq!(e[0].code, "missing-path-parameter");
    }

    #[test]
    fn references_are_substituted_keeping_types() {
        let lookup = |s: &str, n: &str| (s == "login" && n == "token").then(|| json!(42));
        assert_eq!(
            substitute(
                &json!({"a": "{{steps.login.token}}", "b": "Bearer {{ steps.login.token }}"}),
                &lookup
            ),
            Ok(json!({"a": 42, "b": "Bearer 42"}))
        );
        assert!(substitute(&json!("{{steps.login.nope}}"), &lookup).is_err());
        let mut refs = Vec::new();
        references(&json!(["{{steps.0.id}}", "{{event.x}}"]), &mut refs);
        assert_eq!(
            refs,
            vec![
                Reference::Step {
                    step: "0".into(),
                    name: "id".into()
                },
                Reference::Unknown("event.x".into())
            ]
        );
    }
}
