//! A JSON Schema (in OpenAPI's dialect) inferred from observed values: the narrowest schema
//! that accepts every sample, without guessing what was not seen.
//!
//! - Types are the union of the samples' JSON types; integers join numbers as `number`.
//! - An object's properties are the union of the samples' keys; a property is `required` only
//!   when every object sample has it.
//! - A `null` among the samples makes the schema nullable: `nullable: true` in OpenAPI 3.0,
//!   `"null"` in the type list in 3.1.
//! - Array items are inferred from the union of every sample's items.
//! - A string `format` (`date-time`, `uuid`, `email`, `uri`) only when every string matches.
//! - Enums are never inferred: a few samples say nothing about the set of allowed values.

use serde_json::{Map, Value, json};

/// Deepest structure looked into; below it the schema says nothing (accepts anything).
const MAX_DEPTH: usize = 32;

/// Which OpenAPI dialect the inferred schema is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAPI 3.0: one `type`, `nullable: true`.
    V30,
    /// OpenAPI 3.1: `type` may be a list that includes `"null"`.
    V31,
}

/// The schema accepting every value of `samples`. No samples give `{}`.
pub fn infer(samples: &[Value], dialect: Dialect) -> Value {
    let refs: Vec<&Value> = samples.iter().collect();
    infer_refs(&refs, dialect, 0)
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn infer_refs(samples: &[&Value], dialect: Dialect, depth: usize) -> Value {
    if samples.is_empty() || depth > MAX_DEPTH {
        return json!({});
    }
    let nullable = samples.iter().any(|v| v.is_null());
    let mut types: Vec<&'static str> = Vec::new();
    for v in samples.iter().filter(|v| !v.is_null()) {
        let t = type_of(v);
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.contains(&"number") {
        types.retain(|t| *t != "integer");
    }
    let mut variants: Vec<Value> = types
        .iter()
        .map(|t| {
            let of: Vec<&Value> = samples
                .iter()
                .copied()
                .filter(|v| {
                    let vt = type_of(v);
                    vt == *t || (*t == "number" && vt == "integer")
                })
                .collect();
            one_type(t, &of, dialect, depth)
        })
        .collect();
    let mut schema = match variants.len() {
        0 => Map::new(),
        1 => match variants.pop() {
            Some(Value::Object(m)) => m,
            _ => Map::new(),
        },
        _ => {
            let mut m = Map::new();
            m.insert("oneOf".into(), Value::Array(variants));
            m
        }
    };
    if nullable {
        match dialect {
            // Only nulls seen: 3.0 cannot name the type `null`, so `nullable` alone says it.
            Dialect::V30 => {
                schema.insert("nullable".into(), Value::Bool(true));
            }
            Dialect::V31 => {
                if schema.is_empty() {
                    schema.insert("type".into(), json!("null"));
                } else if let Some(Value::String(t)) = schema.get("type").cloned().as_ref() {
                    schema.insert("type".into(), json!([t, "null"]));
                } else if let Some(Value::Array(alts)) = schema.get_mut("oneOf") {
                    alts.push(json!({"type": "null"}));
                }
            }
        }
    }
    Value::Object(schema)
}

fn one_type(t: &str, of: &[&Value], dialect: Dialect, depth: usize) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(t.into()));
    match t {
        "string" => {
            let strings: Vec<&str> = of.iter().filter_map(|v| v.as_str()).collect();
            if let Some(f) = common_format(&strings) {
                m.insert("format".into(), Value::String(f.into()));
            }
        }
        "array" => {
            let items: Vec<&Value> = of.iter().filter_map(|v| v.as_array()).flatten().collect();
            m.insert("items".into(), infer_refs(&items, dialect, depth + 1));
        }
        "object" => {
            let objects: Vec<&Map<String, Value>> =
                of.iter().filter_map(|v| v.as_object()).collect();
            let mut names: Vec<&String> = Vec::new();
            for o in &objects {
                for k in o.keys() {
                    if !names.contains(&k) {
                        names.push(k);
                    }
                }
            }
            let mut props = Map::new();
            let mut required = Vec::new();
            for name in names {
                let values: Vec<&Value> = objects.iter().filter_map(|o| o.get(name)).collect();
                if values.len() == objects.len() {
                    required.push(Value::String(name.clone()));
                }
                props.insert(name.clone(), infer_refs(&values, dialect, depth + 1));
            }
            if !props.is_empty() {
                m.insert("properties".into(), Value::Object(props));
            }
            if !required.is_empty() {
                m.insert("required".into(), Value::Array(required));
            }
        }
        _ => {}
    }
    Value::Object(m)
}

/// The formats recognised, in order of preference.
const FORMATS: [&str; 4] = ["date-time", "uuid", "email", "uri"];

/// The format every string has, among [`FORMATS`]; judged by the same validator that later
/// checks the patched spec, so an inferred format never rejects its own samples.
fn common_format(strings: &[&str]) -> Option<&'static str> {
    if strings.is_empty() {
        return None;
    }
    static CHECKS: std::sync::OnceLock<Vec<(&'static str, Option<jsonschema::Validator>)>> =
        std::sync::OnceLock::new();
    let checks = CHECKS.get_or_init(|| {
        FORMATS
            .iter()
            .map(|f| {
                let v = jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft202012)
                    .should_validate_formats(true)
                    .build(&json!({"type": "string", "format": f}))
                    .ok();
                (*f, v)
            })
            .collect()
    });
    checks.iter().find_map(|(f, v)| {
        let v = v.as_ref()?;
        strings
            .iter()
            .all(|s| !s.is_empty() && v.is_valid(&Value::String((*s).to_string())))
            .then_some(*f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_get_the_union_of_keys_and_required_from_every_sample() {
        let s = infer(
            &[
                json!({"id": 1, "name": "a", "tag": null}),
                json!({"id": 2.5, "name": "b"}),
            ],
            Dialect::V30,
        );
        assert_eq!(
            s,
            json!({"type": "object", "properties": {
                "id": {"type": "number"},
                "name": {"type": "string"},
                "tag": {"nullable": true}
            }, "required": ["id", "name"]})
        );
    }

    #[test]
    fn nullable_follows_the_dialect() {
        let samples = [json!("x"), json!(null)];
        assert_eq!(
            infer(&samples, Dialect::V30),
            json!({"type": "string", "nullable": true})
        );
        assert_eq!(
            infer(&samples, Dialect::V31),
            json!({"type": ["string", "null"]})
        );
    }

    #[test]
    fn arrays_take_the_union_of_their_items_and_mixed_types_become_one_of() {
        assert_eq!(
            infer(&[json!([1, 2]), json!(["a"])], Dialect::V31),
            json!({"type": "array", "items": {"oneOf": [{"type": "integer"}, {"type": "string"}]}})
        );
        assert_eq!(
            infer(&[json!([])], Dialect::V31),
            json!({"type": "array", "items": {}})
        );
    }

    #[test]
    fn formats_only_when_every_string_matches_and_enums_never() {
        let dt = infer(
            &[
                json!("2024-01-02T03:04:05Z"),
                json!("2025-12-31T23:59:59+02:00"),
            ],
            Dialect::V30,
        );
        assert_eq!(dt, json!({"type": "string", "format": "date-time"}));
        let mixed = infer(
            &[json!("2024-01-02T03:04:05Z"), json!("soon")],
            Dialect::V30,
        );
        assert_eq!(mixed, json!({"type": "string"}));
        assert_eq!(
            infer(
                &[json!("123e4567-e89b-12d3-a456-426614174000")],
                Dialect::V30
            )["format"],
            "uuid"
        );
        assert_eq!(
            infer(&[json!("a@example.com")], Dialect::V30)["format"],
            "email"
        );
        assert_eq!(
            infer(&[json!("https://example.com/x")], Dialect::V30)["format"],
            "uri"
        );
        let status = infer(&[json!("sold"), json!("sold"), json!("gone")], Dialect::V30);
        assert!(status.get("enum").is_none());
    }

    #[test]
    fn nothing_seen_says_nothing_and_depth_is_bounded() {
        assert_eq!(infer(&[], Dialect::V30), json!({}));
        let mut deep = json!(1);
        for _ in 0..100 {
            deep = json!([deep]);
        }
        let s = infer(&[deep], Dialect::V30);
        assert_eq!(s["type"], "array");
    }
}
