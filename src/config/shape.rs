//! Structural checks: walks a located YAML tree against the JSON Schema generated from the
//! raw model types and reports every problem at once (unknown keys with did-you-mean, wrong
//! types, missing fields, values outside an enum). The committed schemas and the validator
//! therefore agree by construction.

use serde_json::Value as Json;

use crate::config::diag::did_you_mean;
use crate::config::yaml::{Loc, Node, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub code: &'static str,
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

/// Checks `node` against the root `schema` (with its `$defs`).
pub fn check(node: &Node, schema: &Json) -> Vec<Problem> {
    let mut out = Vec::new();
    Walker { root: schema }.walk(node, schema, "", &mut out);
    out
}

struct Walker<'s> {
    root: &'s Json,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Int(_) => "integer",
        Value::Float(_) => "number",
        Value::Str(_) => "string",
        Value::Seq(_) => "array",
        Value::Map(_) => "object",
    }
}

fn type_matches(expected: &str, v: &Value) -> bool {
    let actual = json_type(v);
    expected == actual || (expected == "number" && actual == "integer")
}

fn describe_type(t: &str) -> &str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "empty",
        other => other,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Str(s) => {
            let short: String = s.chars().take(40).collect();
            format!("string `{short}`")
        }
        Value::Int(i) => format!("integer `{i}`"),
        Value::Float(f) => format!("number `{f}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Null => "an empty value".into(),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Float(f) => Some(f.to_string()),
        _ => None,
    }
}

fn field(path: &str) -> String {
    if path.is_empty() {
        "the document".to_string()
    } else {
        format!("`{path}`")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn value_eq(node: &Value, json: &Json) -> bool {
    match (node, json) {
        (Value::Str(a), Json::String(b)) => a == b,
        (Value::Bool(a), Json::Bool(b)) => a == b,
        (Value::Int(a), Json::Number(b)) => b.as_i64() == Some(*a),
        (Value::Float(a), Json::Number(b)) => b.as_f64() == Some(*a),
        (Value::Null, Json::Null) => true,
        _ => false,
    }
}

fn is_template(v: &Value) -> bool {
    matches!(v, Value::Str(s) if s.contains("{{"))
}

impl<'s> Walker<'s> {
    fn resolve(&self, mut schema: &'s Json) -> &'s Json {
        for _ in 0..32 {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => {
                    let Some(name) = r.strip_prefix("#/$defs/") else {
                        return schema;
                    };
                    match self.root.get("$defs").and_then(|d| d.get(name)) {
                        Some(s) => schema = s,
                        None => return schema,
                    }
                }
                None => return schema,
            }
        }
        schema
    }

    /// The constant values of an enum-like schema (`enum`, `const`, or a oneOf/anyOf of those).
    fn enum_values(&self, schema: &'s Json) -> Option<Vec<&'s Json>> {
        let schema = self.resolve(schema);
        if let Some(c) = schema.get("const") {
            return Some(vec![c]);
        }
        if let Some(Json::Array(vals)) = schema.get("enum") {
            return Some(vals.iter().collect());
        }
        let branches = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Json::as_array)?;
        let mut all = Vec::new();
        for b in branches {
            all.extend(self.enum_values(b)?);
        }
        Some(all)
    }

    fn walk(&self, node: &Node, schema: &'s Json, path: &str, out: &mut Vec<Problem>) {
        let schema = self.resolve(schema);
        if schema == &Json::Bool(true) || schema.as_object().is_some_and(|o| o.is_empty()) {
            return;
        }
        if let Some(own) = self.template_alternative(schema) {
            if is_template(&node.value) {
                // A template renders at run time into the field's type; checked then.
                return;
            }
            // Otherwise the value must have the field's own type: report against that, so
            // the problem reads as it would without the template alternative.
            self.walk(node, own, path, out);
            return;
        }
        if let Some(values) = self.enum_values(schema) {
            // Nullable enums put `null` in the list; strings are what users write.
            if values.iter().any(|v| value_eq(&node.value, v)) {
                return;
            }
            let names: Vec<&str> = values.iter().filter_map(|v| v.as_str()).collect();
            let got = scalar_text(&node.value).unwrap_or_else(|| show(&node.value));
            let hint = did_you_mean(&got, names.iter().copied())
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some(format!("expected one of: {}", names.join(", "))));
            out.push(Problem {
                code: "unknown-value",
                loc: node.loc,
                message: format!("{}: `{got}` is not a valid value", field(path)),
                hint,
            });
            return;
        }
        if let Some(branches) = schema
            .get("oneOf")
            .or_else(|| schema.get("anyOf"))
            .and_then(Json::as_array)
        {
            self.walk_branches(node, branches, path, out);
            return;
        }
        if let Some(t) = schema.get("type") {
            let types: Vec<&str> = match t {
                Json::String(s) => vec![s.as_str()],
                Json::Array(a) => a.iter().filter_map(Json::as_str).collect(),
                _ => vec![],
            };
            if !types.is_empty() && !types.iter().any(|t| type_matches(t, &node.value)) {
                let expected: Vec<&str> = types
                    .iter()
                    .filter(|t| **t != "null")
                    .map(|t| describe_type(t))
                    .collect();
                out.push(Problem {
                    code: "wrong-type",
                    loc: node.loc,
                    message: format!(
                        "{} must be {}, found {}",
                        field(path),
                        expected.join(" or "),
                        show(&node.value)
                    ),
                    hint: is_template(&node.value).then(|| {
                        "templates (`{{ … }}`) are rendered only in a step's `config`".to_string()
                    }),
                });
                return;
            }
        }
        match &node.value {
            Value::Map(entries) => self.walk_object(node, entries, schema, path, out),
            Value::Seq(items) => {
                if let Some(min) = schema.get("minItems").and_then(Json::as_u64)
                    && (items.len() as u64) < min
                {
                    out.push(Problem {
                        code: "too-few-items",
                        loc: node.loc,
                        message: format!("{} needs at least {min} item(s)", field(path)),
                        hint: None,
                    });
                }
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.walk(item, item_schema, &format!("{path}[{i}]"), out);
                    }
                }
            }
            Value::Int(i) => {
                let f = *i as f64;
                self.check_range(node, f, schema, path, out);
            }
            Value::Float(f) => self.check_range(node, *f, schema, path, out),
            _ => {}
        }
    }

    /// For a field that also takes a template (`anyOf: [<own schema>, <template>]`, see
    /// `model::TEMPLATE_DEF`), its own schema.
    fn template_alternative(&self, schema: &'s Json) -> Option<&'s Json> {
        let branches = schema.get("anyOf").and_then(Json::as_array)?;
        let is_template_schema = |b: &'s Json| {
            self.resolve(b).get("pattern").and_then(Json::as_str)
                == Some(crate::model::TEMPLATE_PATTERN)
        };
        match branches.as_slice() {
            [own, t] if is_template_schema(t) => Some(own),
            [t, own] if is_template_schema(t) => Some(own),
            _ => None,
        }
    }

    fn check_range(&self, node: &Node, v: f64, schema: &Json, path: &str, out: &mut Vec<Problem>) {
        let min = schema.get("minimum").and_then(Json::as_f64);
        let max = schema.get("maximum").and_then(Json::as_f64);
        let bad = min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m);
        if bad {
            let range = match (min, max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => String::new(),
            };
            out.push(Problem {
                code: "out-of-range",
                loc: node.loc,
                message: format!("{} must be {range}, found {v}", field(path)),
                hint: None,
            });
        }
    }

    fn walk_object(
        &self,
        node: &Node,
        entries: &[(crate::config::yaml::Key, Node)],
        schema: &'s Json,
        path: &str,
        out: &mut Vec<Problem>,
    ) {
        let props = schema.get("properties").and_then(Json::as_object);
        let additional = schema.get("additionalProperties");
        for (key, value) in entries {
            match props.and_then(|p| p.get(&key.name)) {
                Some(s) => self.walk(value, s, &join(path, &key.name), out),
                None => match additional {
                    Some(Json::Bool(false)) => {
                        let names: Vec<&str> = props
                            .map(|p| p.keys().map(String::as_str).collect())
                            .unwrap_or_default();
                        let hint = did_you_mean(&key.name, names.iter().copied())
                            .map(|s| format!("did you mean `{s}`?"))
                            .or_else(|| {
                                (!names.is_empty())
                                    .then(|| format!("known fields: {}", names.join(", ")))
                            });
                        out.push(Problem {
                            code: "unknown-field",
                            loc: key.loc,
                            message: format!("unknown field `{}` in {}", key.name, field(path)),
                            hint,
                        });
                    }
                    Some(s) if s.is_object() => self.walk(value, s, &join(path, &key.name), out),
                    _ => {}
                },
            }
        }
        if let Some(Json::Array(required)) = schema.get("required") {
            for r in required.iter().filter_map(Json::as_str) {
                if !entries.iter().any(|(k, _)| k.name == r) {
                    out.push(Problem {
                        code: "missing-field",
                        loc: node.loc,
                        message: format!("{} is missing the required field `{r}`", field(path)),
                        hint: None,
                    });
                }
            }
        }
    }

    /// The property whose `const` tells the branches apart (`step_type`, `type`), if any.
    fn discriminator(&self, branches: &'s [Json]) -> Option<(String, Vec<(&'s str, &'s Json)>)> {
        let mut key: Option<String> = None;
        let mut tags = Vec::new();
        for b in branches {
            let b = self.resolve(b);
            let props = b.get("properties")?.as_object()?;
            let (k, c) = props.iter().find_map(|(k, v)| {
                self.resolve(v)
                    .get("const")
                    .and_then(Json::as_str)
                    .map(|c| (k, c))
            })?;
            match &key {
                Some(existing) if existing != k => return None,
                _ => key = Some(k.clone()),
            }
            tags.push((c, b));
        }
        key.map(|k| (k, tags))
    }

    fn walk_branches(&self, node: &Node, branches: &'s [Json], path: &str, out: &mut Vec<Problem>) {
        if let Value::Map(_) = node.value
            && let Some((key, tags)) = self.discriminator(branches)
        {
            let names: Vec<&str> = tags.iter().map(|(t, _)| *t).collect();
            match node.get(&key) {
                None => out.push(Problem {
                    code: "missing-field",
                    loc: node.loc,
                    message: format!("{} is missing the required field `{key}`", field(path)),
                    hint: Some(format!("`{key}` is one of: {}", names.join(", "))),
                }),
                Some(tag_node) => {
                    let tag = scalar_text(&tag_node.value).unwrap_or_default();
                    match tags.iter().find(|(t, _)| *t == tag) {
                        Some((_, branch)) => self.walk(node, branch, path, out),
                        None => out.push(Problem {
                            code: "unknown-value",
                            loc: tag_node.loc,
                            message: format!("{}: unknown {key} `{tag}`", field(&join(path, &key))),
                            hint: did_you_mean(&tag, names.iter().copied())
                                .map(|s| format!("did you mean `{s}`?"))
                                .or_else(|| Some(format!("expected one of: {}", names.join(", ")))),
                        }),
                    }
                }
            }
            return;
        }
        // Try every branch; accept the first that fits. Otherwise report the branch of the
        // node's own type, or a summary when none has it.
        let mut best: Option<Vec<Problem>> = None;
        let mut typed_candidates = 0;
        for b in branches {
            let mut scratch = Vec::new();
            self.walk(node, b, path, &mut scratch);
            if scratch.is_empty() {
                return;
            }
            let type_ok = !scratch
                .iter()
                .any(|p| p.code == "wrong-type" && p.loc == node.loc);
            if type_ok {
                typed_candidates += 1;
                if best.as_ref().is_none_or(|cur| scratch.len() < cur.len()) {
                    best = Some(scratch);
                }
            }
        }
        match best {
            Some(problems) if typed_candidates >= 1 => out.extend(problems),
            _ => {
                let mut types: Vec<&str> = Vec::new();
                for b in branches {
                    self.collect_types(b, &mut types);
                }
                types.retain(|t| *t != "null");
                types.dedup();
                let shown: Vec<&str> = types.iter().map(|t| describe_type(t)).collect();
                out.push(Problem {
                    code: "wrong-type",
                    loc: node.loc,
                    message: format!(
                        "{} must be {}, found {}",
                        field(path),
                        shown.join(" or "),
                        show(&node.value)
                    ),
                    hint: None,
                });
            }
        }
    }

    fn collect_types(&self, schema: &'s Json, into: &mut Vec<&'s str>) {
        let schema = self.resolve(schema);
        match schema.get("type") {
            Some(Json::String(s)) => into.push(s),
            Some(Json::Array(a)) => into.extend(a.iter().filter_map(Json::as_str)),
            _ => {
                if let Some(bs) = schema
                    .get("oneOf")
                    .or_else(|| schema.get("anyOf"))
                    .and_then(Json::as_array)
                {
                    for b in bs {
                        self.collect_types(b, into);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::{Limits, parse};
    use crate::model::Kind;

    fn problems(kind: Kind, yaml: &str) -> Vec<Problem> {
        let node = parse(yaml.as_bytes(), Limits::CONFIG).expect("yaml");
        let schema = serde_json::to_value(kind.schema()).expect("schema");
        check(&node, &schema)
    }

    #[test]
    fn valid_pipeline_has_no_problems() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  triggers:\n    - event: schema.changed\n      filters:\n        schema_type: [openapi, protobuf]\n  steps:\n    - name: n\n      step_type: notify\n      config:\n        type: slack\n        message: hi\n",
        );
        assert_eq!(p, vec![]);
    }

    #[test]
    fn collects_every_problem_of_a_file() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  triggers: []\n  stpes: []\n  steps:\n    - name: a\n      step_type: notfy\n    - name: b\n      step_type: notify\n      timeout: soon\n      config: {type: slak, message: x}\n",
        );
        let codes: Vec<(&str, u32)> = p.iter().map(|p| (p.code, p.loc.line)).collect();
        assert_eq!(
            codes,
            vec![
                ("unknown-field", 4),
                ("unknown-value", 7),
                ("wrong-type", 10),
                ("unknown-value", 11)
            ],
            "{p:#?}"
        );
        assert_eq!(p[0].hint.as_deref(), Some("did you mean `steps`?"));
        assert_eq!(p[1].hint.as_deref(), Some("did you mean `notify`?"));
    }

    #[test]
    fn templates_stand_for_any_type() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  triggers: [{event: x.y}]\n  steps:\n    - name: a\n      step_type: regenerate_sdk\n      config:\n        languages: \"{{variables.languages}}\"\n",
        );
        assert_eq!(p, vec![]);
    }

    #[test]
    fn templates_stand_for_enums_maps_and_numbers_in_step_configs() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  triggers: [{event: x.y}]\n  steps:\n    - name: a\n      step_type: notify\n      config: {type: webhook, message: hi, method: \"{{variables.m}}\", headers: \"{{variables.h}}\", webhook_urls: \"{{variables.u}}\"}\n    - name: b\n      step_type: notify\n      config: {type: email, message: hi, smtp: {host: h, from: f, port: \"{{variables.port}}\", tls: \"{{variables.tls}}\"}}\n",
        );
        assert_eq!(p, vec![]);
    }

    #[test]
    fn a_plain_string_where_a_template_may_stand_keeps_the_fields_own_error() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  triggers: [{event: x.y}]\n  steps:\n    - name: a\n      step_type: regenerate_sdk\n      config:\n        languages: rust\n        port: http\n        mock_data_strategy: randm\n",
        );
        let got: Vec<(&str, u32, &str)> = p
            .iter()
            .map(|p| (p.code, p.loc.line, p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "wrong-type",
                    8,
                    "`definition.steps[0].config.languages` must be a list, found string `rust`"
                ),
                (
                    "wrong-type",
                    9,
                    "`definition.steps[0].config.port` must be an integer, found string `http`"
                ),
                (
                    "unknown-value",
                    10,
                    "`definition.steps[0].config.mock_data_strategy`: `randm` is not a valid value"
                ),
            ],
            "{p:#?}"
        );
        assert_eq!(p[2].hint.as_deref(), Some("did you mean `random`?"));
    }

    #[test]
    fn a_template_outside_a_step_config_is_the_wrong_type() {
        let p = problems(
            Kind::Pipeline,
            "name: p\ndefinition:\n  enabled: \"{{variables.on}}\"\n  triggers: [{event: x.y}]\n  steps: []\n",
        );
        assert_eq!(p.len(), 1, "{p:#?}");
        assert_eq!(p[0].code, "wrong-type");
        assert_eq!(
            p[0].hint.as_deref(),
            Some("templates (`{{ … }}`) are rendered only in a step's `config`")
        );
    }
}
