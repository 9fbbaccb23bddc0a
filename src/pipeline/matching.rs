//! Which pipelines an event starts: triggers are OR-ed, the filters of a trigger AND-ed.
//!
//! A filter value matches by equality (`true` matches `true` and `"true"`, `3` matches `3.0`),
//! a list matches when any element does, and on path fields (`spec_path`, `config_path`,
//! `path`) a value with glob characters is a glob (`specs/**/*.yaml`; `*` stays within one
//! directory). An event field that is a list matches when any of its elements does. Filters
//! see the envelope (`workspace_id`, `org_id`, ...) and the payload alike.

use globset::GlobBuilder;
use serde_json::Value as Json;

use crate::model::events::PATH_FIELDS;
use crate::model::{FilterValue, PipelineSpec, Scalar, Trigger};

/// Whether `event` (flattened: see [`crate::store::Event::flattened`]) starts `spec`.
pub fn pipeline_matches(spec: &PipelineSpec, event: &Json) -> bool {
    if !spec.definition.enabled {
        return false;
    }
    if let Some(ws) = &spec.workspace_id
        && event.get("workspace_id").and_then(Json::as_str) != Some(ws.as_str())
    {
        return false;
    }
    if let Some(org) = &spec.org_id
        && event.get("org_id").and_then(Json::as_str) != Some(org.as_str())
    {
        return false;
    }
    spec.definition
        .triggers
        .iter()
        .any(|t| trigger_matches(t, event))
}

/// Whether one trigger matches: the event type, then every filter.
pub fn trigger_matches(trigger: &Trigger, event: &Json) -> bool {
    if event.get("event_type").and_then(Json::as_str) != Some(trigger.event.as_str()) {
        return false;
    }
    trigger
        .filters
        .iter()
        .all(|(field, want)| filter_matches(field, want, event.get(field)))
}

/// Whether the event's value of `field` satisfies the filter; a missing field never does.
pub fn filter_matches(field: &str, want: &FilterValue, actual: Option<&Json>) -> bool {
    let Some(actual) = actual else {
        return false;
    };
    let is_path = PATH_FIELDS.contains(&field);
    let one = |w: &Scalar| match actual {
        Json::Array(items) => items.iter().any(|a| scalar_matches(w, a, is_path)),
        a => scalar_matches(w, a, is_path),
    };
    match want {
        FilterValue::One(w) => one(w),
        FilterValue::AnyOf(ws) => ws.iter().any(one),
    }
}

fn scalar_matches(want: &Scalar, actual: &Json, is_path: bool) -> bool {
    match (want, actual) {
        (_, Json::Null) => false,
        (Scalar::Bool(w), Json::Bool(a)) => w == a,
        (Scalar::Bool(w), Json::String(a)) => {
            a.eq_ignore_ascii_case(if *w { "true" } else { "false" })
        }
        (Scalar::Int(w), Json::Number(a)) => {
            a.as_i64() == Some(*w) || a.as_f64().is_some_and(|f| f == *w as f64)
        }
        (Scalar::Float(w), Json::Number(a)) => a.as_f64() == Some(*w),
        (Scalar::Int(w), Json::String(a)) => a.trim().parse::<f64>().ok() == Some(*w as f64),
        (Scalar::Float(w), Json::String(a)) => a.trim().parse::<f64>().ok() == Some(*w),
        (Scalar::Str(w), Json::String(a)) => {
            w == a || (is_path && is_glob(w) && glob_matches(w, a))
        }
        (Scalar::Str(w), Json::Bool(a)) => {
            w.eq_ignore_ascii_case(if *a { "true" } else { "false" })
        }
        (Scalar::Str(w), Json::Number(a)) => {
            let w = w.trim();
            w == a.to_string()
                || (w.parse::<f64>().ok().is_some() && w.parse::<f64>().ok() == a.as_f64())
        }
        _ => false,
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

/// A glob over repository paths; `*` does not cross `/`, `**` does. An invalid glob
/// (rejected by validation) matches nothing.
fn glob_matches(glob: &str, path: &str) -> bool {
    match GlobBuilder::new(glob).literal_separator(true).build() {
        Ok(g) => g.compile_matcher().is_match(path.trim_start_matches("./")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pipeline(yaml_triggers: Json) -> PipelineSpec {
        serde_json::from_value(json!({
            "name": "p",
            "definition": {"triggers": yaml_triggers, "steps": []}
        }))
        .unwrap()
    }

    fn ev(t: &str, fields: Json) -> Json {
        let mut m = fields.as_object().cloned().unwrap_or_default();
        m.insert("event_type".into(), json!(t));
        m.entry("workspace_id").or_insert(Json::Null);
        m.entry("org_id").or_insert(Json::Null);
        Json::Object(m)
    }

    #[test]
    fn triggers_are_or_filters_are_and() {
        let p = pipeline(json!([
            {"event": "schema.changed", "filters": {"schema_type": "openapi", "breaking": true}},
            {"event": "release.published"}
        ]));
        let hit = ev(
            "schema.changed",
            json!({"schema_type": "openapi", "breaking": true}),
        );
        let half = ev(
            "schema.changed",
            json!({"schema_type": "openapi", "breaking": false}),
        );
        let other = ev("release.published", json!({}));
        let none = ev("config.changed", json!({}));
        assert!(pipeline_matches(&p, &hit));
        assert!(!pipeline_matches(&p, &half));
        assert!(pipeline_matches(&p, &other));
        assert!(!pipeline_matches(&p, &none));
    }

    #[test]
    fn lists_mean_any_of() {
        let p = pipeline(
            json!([{"event": "scenario.published", "filters": {"environment": ["test", "prod"]}}]),
        );
        assert!(pipeline_matches(
            &p,
            &ev("scenario.published", json!({"environment": "prod"}))
        ));
        assert!(!pipeline_matches(
            &p,
            &ev("scenario.published", json!({"environment": "dev"}))
        ));
        // A list in the event matches when any element does.
        let p = pipeline(json!([{"event": "x.y", "filters": {"tags": "beta"}}]));
        assert!(pipeline_matches(
            &p,
            &ev("x.y", json!({"tags": ["alpha", "beta"]}))
        ));
        assert!(!pipeline_matches(
            &p,
            &ev("x.y", json!({"tags": ["alpha"]}))
        ));
    }

    #[test]
    fn globs_on_path_fields_only() {
        let p = pipeline(
            json!([{"event": "schema.changed", "filters": {"spec_path": "specs/**/*.yaml"}}]),
        );
        assert!(pipeline_matches(
            &p,
            &ev(
                "schema.changed",
                json!({"spec_path": "specs/a/b/users.yaml"})
            )
        ));
        assert!(pipeline_matches(
            &p,
            &ev("schema.changed", json!({"spec_path": "specs/users.yaml"}))
        ));
        assert!(!pipeline_matches(
            &p,
            &ev("schema.changed", json!({"spec_path": "specs/users.json"}))
        ));
        let p = pipeline(
            json!([{"event": "schema.changed", "filters": {"spec_path": "specs/*.yaml"}}]),
        );
        assert!(!pipeline_matches(
            &p,
            &ev("schema.changed", json!({"spec_path": "specs/a/users.yaml"}))
        ));
        // Not a path field: `*` is a literal.
        let p = pipeline(json!([{"event": "x.y", "filters": {"name": "a*"}}]));
        assert!(!pipeline_matches(&p, &ev("x.y", json!({"name": "abc"}))));
        assert!(pipeline_matches(&p, &ev("x.y", json!({"name": "a*"}))));
    }

    #[test]
    fn scalars_compare_sensibly() {
        let m = |want: Json, actual: Json| {
            let w: FilterValue = serde_json::from_value(want).unwrap();
            filter_matches("f", &w, Some(&actual))
        };
        assert!(m(json!(true), json!(true)));
        assert!(m(json!(true), json!("true")));
        assert!(m(json!("true"), json!(true)));
        assert!(!m(json!(true), json!(false)));
        assert!(m(json!(3), json!(3)));
        assert!(m(json!(3), json!(3.0)));
        assert!(m(json!(3), json!("3")));
        assert!(m(json!("3"), json!(3)));
        assert!(m(json!(1.5), json!(1.5)));
        assert!(!m(json!(3), json!(4)));
        assert!(!m(json!("x"), Json::Null));
        let w: FilterValue = serde_json::from_value(json!("x")).unwrap();
        assert!(!filter_matches("f", &w, None));
    }

    #[test]
    fn envelope_scope_and_disabled() {
        let mut p = pipeline(json!([{"event": "x.y", "filters": {"workspace_id": "ws-1"}}]));
        assert!(pipeline_matches(
            &p,
            &ev("x.y", json!({"workspace_id": "ws-1"}))
        ));
        assert!(!pipeline_matches(
            &p,
            &ev("x.y", json!({"workspace_id": "ws-2"}))
        ));
        p.definition.enabled = false;
        assert!(!pipeline_matches(
            &p,
            &ev("x.y", json!({"workspace_id": "ws-1"}))
        ));

        let mut p = pipeline(json!([{"event": "x.y"}]));
        p.org_id = Some("acme".into());
        assert!(pipeline_matches(&p, &ev("x.y", json!({"org_id": "acme"}))));
        assert!(!pipeline_matches(&p, &ev("x.y", json!({}))));
    }
}
