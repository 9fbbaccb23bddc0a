//! Rendering a step's `config` before it runs: every string of the tree is a minijinja
//! template (strict undefined values, no HTML escaping), then the result must deserialize into
//! the step type's config.
//!
//! Context: `event` (flattened: envelope and payload), `workspace_id`, `workspace_name`,
//! `timestamp` (now, RFC 3339), `pipeline`, `execution_id`, `variables` (the settings'
//! overlaid by the pipeline's) and `steps.<name>.outputs.<key>` of the steps already run.
//!
//! Secret references (`${env:...}`, `${file:...}`) are sealed in the config and the variables
//! (text the repository wrote) before rendering, so only those are resolved when the step
//! runs; a reference that arrives through the event or a step's outputs stays literal text
//! (see `crate::secret`).
//!
//! A string that is exactly one `{{ expression }}` whose value is a list or an object keeps
//! that JSON type, so `languages: "{{ variables.sdk_languages }}"` gives a list. Lists and
//! objects inside longer text render as JSON; a null value renders as nothing.

use minijinja::value::{Serde, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::{Map, Value as Json};

use crate::model::{
    AutoPromoteConfig, CreatePrConfig, NotifyConfig, RegenerateSdkConfig, StepType,
};

/// What templates of one step can name.
#[derive(Debug, Clone, Default)]
pub struct TemplateContext {
    /// The triggering event, flattened.
    pub event: Json,
    pub pipeline: String,
    pub execution_id: String,
    pub variables: Map<String, Json>,
    /// `<step name>` → `{"outputs": {...}}` for the steps already run.
    pub steps: Map<String, Json>,
}

impl TemplateContext {
    fn to_json(&self) -> Result<Json, RenderError> {
        let field = |k: &str| self.event.get(k).cloned().unwrap_or(Json::Null);
        let variables =
            crate::secret::seal_json(&Json::Object(self.variables.clone())).map_err(|e| {
                RenderError::Secret {
                    at: "variables".into(),
                    message: e.to_string(),
                }
            })?;
        Ok(serde_json::json!({
            "event": self.event,
            "workspace_id": field("workspace_id"),
            "workspace_name": field("workspace_name"),
            "timestamp": crate::util::time::now_rfc3339(),
            "pipeline": self.pipeline,
            "execution_id": self.execution_id,
            "variables": variables,
            "steps": self.steps,
        }))
    }
}

/// A template that failed, with where it is in the config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template at `{at}` failed: {message}")]
    Template { at: String, message: String },
    #[error("the rendered config is not a valid `{step_type}` config: {message}")]
    Config { step_type: String, message: String },
    #[error("secret reference in `{at}`: {message}")]
    Secret { at: String, message: String },
}

/// The environment steps render with: the shared strict one, JSON for lists and objects,
/// nothing for null, and a `tojson` filter.
fn environment() -> Environment<'static> {
    let mut env = crate::util::template::environment();
    env.set_formatter(|out, state, value| match value.kind() {
        ValueKind::None => Ok(()),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            let text = to_json_text(value)?;
            out.write_str(&text)?;
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.add_filter("tojson", |value: Value| -> Result<String, Error> {
        to_json_text(&value)
    });
    env
}

fn to_json_text(value: &Value) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot write as JSON: {e}"),
        )
    })
}

/// Renders `config` and checks it against `step_type`'s config; returns the config as the
/// step implementation reads it (with its defaults filled in).
pub fn render_step_config(
    step_type: StepType,
    config: &Json,
    ctx: &TemplateContext,
) -> Result<Json, RenderError> {
    let env = environment();
    let root = Value::from(Serde(&ctx.to_json()?));
    let config = &sealed(config)?;
    let rendered = render_tree(&env, &root, config, "config", false)?;
    match typed(step_type, rendered) {
        Ok(v) => Ok(v),
        Err(first) => {
            // A number or boolean written as `"{{ variables.port }}"` where the step wants a
            // number: try again keeping single-expression scalars as they are.
            let native = render_tree(&env, &root, config, "config", true)?;
            typed(step_type, native).map_err(|_| RenderError::Config {
                step_type: step_type.as_str().to_string(),
                message: first.to_string(),
            })
        }
    }
}

/// Renders every string of `value`.
pub fn render_value(value: &Json, ctx: &TemplateContext) -> Result<Json, RenderError> {
    let env = environment();
    let root = Value::from(Serde(&ctx.to_json()?));
    render_tree(&env, &root, &sealed(value)?, "config", false)
}

/// `config` with its secret references sealed (see `crate::secret::seal`).
fn sealed(config: &Json) -> Result<Json, RenderError> {
    crate::secret::seal_json(config).map_err(|e| RenderError::Secret {
        at: "config".into(),
        message: e.to_string(),
    })
}

fn render_tree(
    env: &Environment<'_>,
    root: &Value,
    value: &Json,
    at: &str,
    native_scalars: bool,
) -> Result<Json, RenderError> {
    Ok(match value {
        Json::String(s) => {
            render_string(env, root, s, native_scalars).map_err(|e| RenderError::Template {
                at: at.to_string(),
                message: describe(&e),
            })?
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| render_tree(env, root, v, &format!("{at}[{i}]"), native_scalars))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    render_tree(env, root, v, &format!("{at}.{k}"), native_scalars)
                        .map(|v| (k.clone(), v))
                })
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

fn render_string(
    env: &Environment<'_>,
    root: &Value,
    s: &str,
    native_scalars: bool,
) -> Result<Json, Error> {
    if !s.contains("{{") && !s.contains("{%") {
        return Ok(Json::String(s.to_string()));
    }
    if let Some(expr) = single_expression(s) {
        let compiled = env.compile_expression(expr)?;
        let v = compiled.eval(root.clone())?;
        if v.is_undefined() {
            return Err(Error::new(
                ErrorKind::UndefinedError,
                format!("`{}` is undefined", expr.trim()),
            ));
        }
        let keep = match v.kind() {
            ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => true,
            ValueKind::Bool | ValueKind::Number => native_scalars,
            _ => false,
        };
        if keep {
            return serde_json::to_value(&v).map_err(|e| {
                Error::new(ErrorKind::InvalidOperation, format!("cannot convert: {e}"))
            });
        }
    }
    env.render_str(s, root.clone()).map(Json::String)
}

/// The expression of a string that is exactly `{{ expression }}` (surrounding blanks aside).
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("{#")
    {
        return None;
    }
    Some(inner)
}

fn describe(e: &Error) -> String {
    let mut msg = match e.kind() {
        ErrorKind::UndefinedError => match e.detail() {
            Some(d) => format!("undefined value: {d}"),
            None => "a name in the template is undefined".to_string(),
        },
        _ => e.to_string(),
    };
    if e.kind() == ErrorKind::UndefinedError {
        msg.push_str(
            " (the event, variables or earlier step outputs do not have it; \
             check the name, or guard it with `{% if ... is defined %}`)",
        );
    }
    msg
}

/// Deserializes into the step type's config and back, so the step reads its defaults.
fn typed(step_type: StepType, rendered: Json) -> Result<Json, serde_json::Error> {
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: Json,
    ) -> Result<Json, serde_json::Error> {
        let t: T = serde_json::from_value(v)?;
        serde_json::to_value(&t)
    }
    match step_type {
        StepType::Notify => check::<NotifyConfig>(rendered),
        StepType::CreatePr => check::<CreatePrConfig>(rendered),
        StepType::RegenerateSdk => check::<RegenerateSdkConfig>(rendered),
        StepType::AutoPromote => check::<AutoPromoteConfig>(rendered),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> TemplateContext {
        TemplateContext {
            event: json!({
                "id": 7, "event_type": "schema.changed", "spec_path": "specs/users.yaml",
                "workspace_id": "ws-1", "workspace_name": null, "breaking": true,
                "changes": [{"kind": "removed"}]
            }),
            pipeline: "p".into(),
            execution_id: "1-abc".into(),
            variables: json!({"sdk_languages": ["typescript", "rust"], "team": "<core & co>", "port": 8080})
                .as_object()
                .cloned()
                .unwrap(),
            steps: json!({"gen": {"outputs": {"files": 3, "output_dir": "out"}}})
                .as_object()
                .cloned()
                .unwrap(),
        }
    }

    #[test]
    fn strings_render_without_escaping() {
        let out = render_value(
            &json!({"m": "{{event.spec_path}} by {{variables.team}} in {{workspace_id}}{{workspace_name}}",
                    "n": ["{{ steps.gen.outputs.output_dir }}", 3, true],
                    "plain": "no template"}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(out["m"], "specs/users.yaml by <core & co> in ws-1");
        assert_eq!(out["n"], json!(["out", 3, true]));
        assert_eq!(out["plain"], "no template");
    }

    #[test]
    fn a_single_expression_keeps_lists_and_objects() {
        let out = render_value(
            &json!({"languages": "{{variables.sdk_languages}}",
                    "text": "langs: {{variables.sdk_languages}}",
                    "changes": "{{ event.changes }}",
                    "n": "{{ steps.gen.outputs.files }}",
                    "j": "{{ event.changes | tojson }}"}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(out["languages"], json!(["typescript", "rust"]));
        assert_eq!(out["text"], json!(r#"langs: ["typescript","rust"]"#));
        assert_eq!(out["changes"], json!([{"kind": "removed"}]));
        assert_eq!(out["n"], json!("3"));
        assert_eq!(out["j"], json!(r#"[{"kind":"removed"}]"#));
    }

    #[test]
    fn undefined_names_are_errors_with_their_place() {
        let e = render_value(&json!({"a": {"b": ["x", "{{ event.nope }}"]}}), &ctx()).unwrap_err();
        match &e {
            RenderError::Template { at, message } => {
                assert_eq!(at, "config.a.b[1]");
                assert!(message.contains("undefined"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert!(render_value(&json!("{{ steps.missing.outputs.x }}"), &ctx()).is_err());
        assert!(render_value(&json!("text {{ event.nope }}"), &ctx()).is_err());
        assert!(render_value(&json!("{{ broken"), &ctx()).is_err());
    }

    #[test]
    fn an_object_rendered_into_file_content_is_written_as_json_text() {
        let ctx = TemplateContext {
            event: json!({"service": "pets", "drift_data": {"incidents": [{"kind": "type_mismatch", "count": 3}]}}),
            ..TemplateContext::default()
        };
        let out = render_step_config(
            StepType::CreatePr,
            &json!({"repository": "o/r", "branch": "main", "title": "t", "files": [
                {"from_drift": "{{event.service}}"},
                {"path": "drift-report.json", "content": "{{event.drift_data}}", "operation": "create"}
            ]}),
            &ctx,
        )
        .unwrap();
        assert_eq!(out["files"][0]["from_drift"], "pets");
        let text = out["files"][1]["content"].as_str().expect("text");
        assert_eq!(
            text,
            "{\n  \"incidents\": [\n    {\n      \"count\": 3,\n      \"kind\": \"type_mismatch\"\n    }\n  ]\n}\n"
        );
        let back: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, ctx.event["drift_data"]);
    }

    #[test]
    fn rendered_config_is_typed() {
        let out = render_step_config(
            StepType::RegenerateSdk,
            &json!({"spec_path": "{{event.spec_path}}", "languages": "{{variables.sdk_languages}}",
                    "port": "{{variables.port}}"}),
            &ctx(),
        )
        .unwrap();
        assert_eq!(out["languages"], json!(["typescript", "rust"]));
        assert_eq!(out["port"], json!(8080));
        assert_eq!(out["output_dir"], "./generated-sdks");

        let e = render_step_config(
            StepType::Notify,
            &json!({"type": "slack", "mesage": "{{event.spec_path}}"}),
            &ctx(),
        )
        .unwrap_err();
        assert!(matches!(e, RenderError::Config { .. }), "{e}");
        assert!(e.to_string().contains("notify"), "{e}");
    }

    #[test]
    fn only_references_the_repository_wrote_are_resolvable() {
        let mut c = ctx();
        c.event["message"] = json!("please read ${file:/run/secrets/github-token} ${env:HOME}");
        c.variables
            .insert("auth".into(), json!("Bearer ${env:MOCKOPS_T}"));
        let out = render_value(
            &json!({
                "text": "{{ event.message }}",
                "url": "https://hooks.example/${env:MOCKOPS_T}",
                "auth": "{{ variables.auth }}",
            }),
            &c,
        )
        .expect("renders");
        let secrets = crate::secret::Secrets::with_env(
            crate::secret::Redactor::new(),
            [("MOCKOPS_T", "tok-abcdef"), ("HOME", "/root-home")],
        );
        let resolved = secrets.resolve_json(&out).expect("resolves");
        assert_eq!(
            resolved,
            json!({
                "text": "please read ${file:/run/secrets/github-token} ${env:HOME}",
                "url": "https://hooks.example/tok-abcdef",
                "auth": "Bearer tok-abcdef",
            })
        );
    }

    #[test]
    fn a_reference_built_by_a_template_is_refused() {
        let e = render_value(&json!("${file:/run/secrets/{{ event.spec_path }}}"), &ctx())
            .expect_err("refused");
        assert!(matches!(e, RenderError::Secret { .. }), "{e}");
    }
}
