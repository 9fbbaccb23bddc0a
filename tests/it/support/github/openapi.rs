//! GitHub's published OpenAPI description (`@octokit/openapi`), used to check every request
//! the emulator receives: the operation must exist, query parameters must be declared (and
//! within their enums), and JSON bodies must match the operation's request body schema.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value as Json};

const SPEC_REL: &str = "node_modules/@octokit/openapi/generated/api.github.com.json";

fn spec_path() -> PathBuf {
    if let Ok(p) = std::env::var("MOCKOPS_GITHUB_OPENAPI") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in [root.join(".ci/node"), root.to_path_buf()] {
        let p = dir.join(SPEC_REL);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "GitHub's OpenAPI description is missing: run `npm install --prefix .ci/node @octokit/openapi` \
         (as .ci/run does) or set MOCKOPS_GITHUB_OPENAPI to api.github.com.json"
    );
}

struct Operation {
    method: String,
    template: Vec<String>,
    id: String,
    query: Vec<(String, Json)>,
    body: Option<Json>,
    body_required: bool,
    validator: OnceLock<Option<Arc<jsonschema::Validator>>>,
}

pub struct Spec {
    operations: Vec<Operation>,
    root: Json,
}

/// The description, loaded once per test binary.
pub fn spec() -> Arc<Spec> {
    static SPEC: OnceLock<Arc<Spec>> = OnceLock::new();
    static LOADING: Mutex<()> = Mutex::new(());
    let _g = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    SPEC.get_or_init(|| {
        let path = spec_path();
        let text = std::fs::read(&path).expect("read the OpenAPI description");
        let root: Json = serde_json::from_slice(&text).expect("parse the OpenAPI description");
        Arc::new(Spec::new(root))
    })
    .clone()
}

fn resolve<'a>(root: &'a Json, v: &'a Json) -> &'a Json {
    match v.get("$ref").and_then(Json::as_str) {
        Some(r) => root.pointer(r.trim_start_matches('#')).unwrap_or(v),
        None => v,
    }
}

/// OpenAPI 3.0 schema → JSON Schema (draft 4): `$ref`s inlined, `nullable` as a `null` type.
fn convert(v: &Json, root: &Json, depth: usize) -> Json {
    if depth > 40 {
        return Json::Object(Map::new());
    }
    match v {
        Json::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Json::as_str) {
                let target = root
                    .pointer(r.trim_start_matches('#'))
                    .cloned()
                    .unwrap_or_default();
                return convert(&target, root, depth + 1);
            }
            let mut out = Map::new();
            for (k, val) in m {
                if k == "example" || k == "examples" || k == "nullable" {
                    continue;
                }
                out.insert(k.clone(), convert(val, root, depth + 1));
            }
            if m.get("nullable") == Some(&Json::Bool(true)) {
                match out.get("type").cloned() {
                    Some(Json::String(t)) => {
                        out.insert(
                            "type".into(),
                            Json::Array(vec![Json::String(t), "null".into()]),
                        );
                    }
                    Some(_) => {}
                    None => {}
                }
                if let Some(Json::Array(e)) = out.get_mut("enum")
                    && !e.contains(&Json::Null)
                {
                    e.push(Json::Null);
                }
                for key in ["oneOf", "anyOf"] {
                    if let Some(Json::Array(alts)) = out.get_mut(key) {
                        alts.push(serde_json::json!({"type": "null"}));
                    }
                }
            }
            Json::Object(out)
        }
        Json::Array(a) => Json::Array(a.iter().map(|x| convert(x, root, depth + 1)).collect()),
        other => other.clone(),
    }
}

impl Spec {
    fn new(root: Json) -> Self {
        let mut operations = Vec::new();
        let paths = root
            .get("paths")
            .and_then(Json::as_object)
            .cloned()
            .unwrap_or_default();
        for (path, item) in &paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            let shared: Vec<Json> = item
                .get("parameters")
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default();
            for (method, op) in item {
                if !["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let mut query = Vec::new();
                let params = op
                    .get("parameters")
                    .and_then(Json::as_array)
                    .cloned()
                    .unwrap_or_default();
                for p in shared.iter().chain(params.iter()) {
                    let p = resolve(&root, p);
                    if p.get("in").and_then(Json::as_str) == Some("query") {
                        let name = p.get("name").and_then(Json::as_str).unwrap_or_default();
                        let schema = p.get("schema").cloned().unwrap_or_default();
                        query.push((name.to_string(), convert(&schema, &root, 0)));
                    }
                }
                let rb = op.get("requestBody").map(|b| resolve(&root, b).clone());
                let body = rb
                    .as_ref()
                    .and_then(|b| b.pointer("/content/application~1json/schema"))
                    .cloned();
                operations.push(Operation {
                    method: method.to_uppercase(),
                    template: path
                        .trim_start_matches('/')
                        .split('/')
                        .map(str::to_string)
                        .collect(),
                    id: op
                        .get("operationId")
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    query,
                    body,
                    body_required: rb
                        .as_ref()
                        .and_then(|b| b.get("required"))
                        .and_then(Json::as_bool)
                        .unwrap_or(false),
                    validator: OnceLock::new(),
                });
            }
        }
        Self { operations, root }
    }

    fn find(&self, method: &str, segs: &[&str]) -> Option<&Operation> {
        let is_param = |s: &str| s.starts_with('{') && s.ends_with('}');
        let score = |op: &Operation, greedy: bool| -> Option<usize> {
            if op.method != method {
                return None;
            }
            let t = &op.template;
            if greedy {
                // Only parameters that hold slashes (`{ref}` = `heads/a/b`) span segments.
                let spans = t
                    .last()
                    .is_some_and(|l| matches!(l.as_str(), "{ref}" | "{path}" | "{branch}"));
                if t.len() > segs.len() || !spans {
                    return None;
                }
            } else if t.len() != segs.len() {
                return None;
            }
            let mut literals = 0;
            for (i, ts) in t.iter().enumerate() {
                if is_param(ts) {
                    if segs[i].is_empty() {
                        return None;
                    }
                } else if ts == segs[i] {
                    literals += 1;
                } else {
                    return None;
                }
            }
            Some(literals)
        };
        for greedy in [false, true] {
            let best = self
                .operations
                .iter()
                .filter_map(|op| score(op, greedy).map(|s| (s, op)))
                .max_by_key(|(s, _)| *s);
            if let Some((_, op)) = best {
                return Some(op);
            }
        }
        None
    }

    /// Problems with one request, as readable lines (empty when it conforms).
    pub fn check(&self, method: &str, path: &str, query: &str, body: Option<&Json>) -> Vec<String> {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let Some(op) = self.find(method, &segs) else {
            return vec![format!(
                "{method} {path}: no such operation in GitHub's REST API"
            )];
        };
        let mut out = Vec::new();
        let at = format!("{method} {path} ({})", op.id);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = v.replace('+', " ");
            match op.query.iter().find(|(n, _)| n == k) {
                None => out.push(format!("{at}: undeclared query parameter {k:?}")),
                Some((_, schema)) => {
                    if let Some(Json::Array(allowed)) = schema.get("enum")
                        && !allowed.contains(&Json::String(v.clone()))
                    {
                        out.push(format!("{at}: query {k}={v:?} is not one of {allowed:?}"));
                    }
                    if schema.get("type") == Some(&Json::String("integer".into()))
                        && v.parse::<i64>().is_err()
                    {
                        out.push(format!("{at}: query {k}={v:?} is not an integer"));
                    }
                }
            }
        }
        match (body, &op.body) {
            (None, Some(_)) if op.body_required => {
                out.push(format!("{at}: request body is required"));
            }
            (Some(b), None) if !b.is_null() && b != &Json::Object(Map::new()) => {
                out.push(format!("{at}: the operation takes no JSON body, got {b}"));
            }
            (Some(b), Some(schema)) => {
                let validator = op
                    .validator
                    .get_or_init(|| {
                        let s = convert(schema, &self.root, 0);
                        jsonschema::draft4::new(&s).ok().map(Arc::new)
                    })
                    .clone();
                match validator {
                    None => out.push(format!("{at}: the request body schema did not compile")),
                    Some(v) => {
                        for e in v.iter_errors(b) {
                            out.push(format!("{at}: body {}: {e}", e.instance_path()));
                        }
                    }
                }
            }
            _ => {}
        }
        out
    }
}
