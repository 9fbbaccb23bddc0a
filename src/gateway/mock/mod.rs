//! The mock engine's interface, with a minimal behaviour: operations matched by path template
//! and method, answered with the lowest declared 2xx response's declared `example`. Generation
//! from schemas, request validation and `Prefer` handling are not available here (501).

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use crate::schema_diff::openapi::load::Spec;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// One service's OpenAPI description, compiled for serving.
pub struct MockService {
    operations: Vec<Operation>,
}

struct Operation {
    method: Method,
    template: Vec<String>,
    name: String,
    /// Status, media type and example of the lowest declared 2xx response with an example.
    example: Option<(StatusCode, String, Value)>,
}

/// A request as the gateway hands it over (the federation's base path already stripped).
pub struct MockRequest<'a> {
    pub method: &'a http::Method,
    /// Path after the base path, percent-encoded as received, starting with '/' ("/" when empty).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    /// Persona traits from `X-Mockops-Persona` (the gateway looks the persona up), if any.
    pub persona: Option<&'a indexmap::IndexMap<String, serde_json::Value>>,
}

pub struct MockResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    /// The matched operation ("operationId" when declared, else "GET /pets/{id}"); None when no
    /// operation matched (the response is then a 404/405 problem).
    pub operation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{path}: `paths` is not an object")]
    NoPaths { path: String },
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

fn problem(status: StatusCode, slug: &str, title: &str, detail: String) -> (HeaderMap, Bytes) {
    let body = json!({
        "type": format!("https://mockops.dev/problems/{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    (headers, Bytes::from(body.to_string()))
}

fn example_of(
    spec: &Spec,
    responses: &serde_json::Map<String, Value>,
) -> Option<(StatusCode, String, Value)> {
    let mut codes: Vec<(u16, &Value)> = responses
        .iter()
        .filter_map(|(k, v)| k.parse::<u16>().ok().map(|c| (c, v)))
        .filter(|(c, _)| (200..300).contains(c))
        .collect();
    codes.sort_by_key(|(c, _)| *c);
    let (code, response) = codes.into_iter().next()?;
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .ref_target(&spec.root_path, r)
            .and_then(|t| spec.lookup(&t).map(|(v, _)| v))?,
        None => response,
    };
    let status = StatusCode::from_u16(code).ok()?;
    for (media, content) in response.get("content")?.as_object()? {
        let example = content.get("example").cloned().or_else(|| {
            content
                .get("examples")?
                .as_object()?
                .values()
                .find_map(|e| e.get("value").cloned())
        });
        if let Some(e) = example {
            return Some((status, media.clone(), e));
        }
    }
    None
}

impl MockService {
    pub fn compile(spec: &Spec) -> Result<MockService, CompileError> {
        let root = spec.root();
        let paths = match root.get("paths") {
            None => {
                return Ok(MockService {
                    operations: Vec::new(),
                });
            }
            Some(Value::Object(p)) => p,
            Some(_) => {
                return Err(CompileError::NoPaths {
                    path: spec.root_path.clone(),
                });
            }
        };
        let mut operations = Vec::new();
        for (template, item) in paths {
            for m in METHODS {
                let Some(op) = item.get(m) else { continue };
                let method =
                    Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap_or(Method::GET);
                let name = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{method} {template}"));
                let example = op
                    .get("responses")
                    .and_then(Value::as_object)
                    .and_then(|r| example_of(spec, r));
                operations.push(Operation {
                    method,
                    template: segments(template).into_iter().map(str::to_string).collect(),
                    name,
                    example,
                });
            }
        }
        Ok(MockService { operations })
    }

    /// Operations whose template matches `path`, the most literal first.
    fn matching(&self, path: &str) -> Vec<&Operation> {
        let segs = segments(path);
        let mut found: Vec<(usize, &Operation)> = self
            .operations
            .iter()
            .filter(|o| {
                o.template.len() == segs.len()
                    && o.template.iter().zip(&segs).all(|(t, s)| {
                        (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s
                    })
            })
            .map(|o| (o.template.iter().filter(|t| !t.starts_with('{')).count(), o))
            .collect();
        found.sort_by_key(|f| std::cmp::Reverse(f.0));
        found.into_iter().map(|(_, o)| o).collect()
    }

    pub fn operation_for(&self, method: &http::Method, path: &str) -> Option<String> {
        self.matching(path)
            .into_iter()
            .find(|o| o.method == method)
            .map(|o| o.name.clone())
    }

    pub fn respond(&self, req: &MockRequest<'_>) -> MockResponse {
        let candidates = self.matching(req.path);
        let Some(op) = candidates.iter().find(|o| o.method == req.method) else {
            if candidates.is_empty() {
                let (headers, body) = problem(
                    StatusCode::NOT_FOUND,
                    "no-operation",
                    "No operation matches",
                    format!(
                        "no operation of the spec matches {} {}",
                        req.method, req.path
                    ),
                );
                return MockResponse {
                    status: StatusCode::NOT_FOUND,
                    headers,
                    body,
                    operation: None,
                };
            }
            let allow: Vec<String> = candidates.iter().map(|o| o.method.to_string()).collect();
            let (mut headers, body) = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                format!("{} does not take {}", req.path, req.method),
            );
            if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                headers.insert(http::header::ALLOW, v);
            }
            return MockResponse {
                status: StatusCode::METHOD_NOT_ALLOWED,
                headers,
                body,
                operation: None,
            };
        };
        match &op.example {
            Some((status, media, example)) => {
                let mut headers = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(media) {
                    headers.insert(http::header::CONTENT_TYPE, v);
                }
                let body = match example {
                    Value::String(s) if !media.contains("json") => Bytes::from(s.clone()),
                    v => Bytes::from(v.to_string()),
                };
                MockResponse {
                    status: *status,
                    headers,
                    body,
                    operation: Some(op.name.clone()),
                }
            }
            None => {
                let (headers, body) = problem(
                    StatusCode::NOT_IMPLEMENTED,
                    "generation-unavailable",
                    "Response generation is not available",
                    format!(
                        "`{}` declares no example for its lowest 2xx response, and generation from the schema is not available",
                        op.name
                    ),
                );
                MockResponse {
                    status: StatusCode::NOT_IMPLEMENTED,
                    headers,
                    body,
                    operation: Some(op.name.clone()),
                }
            }
        }
    }

    pub fn complete(
        &self,
        _method: &http::Method,
        _path: &str,
        _status: http::StatusCode,
        body: serde_json::Value,
    ) -> serde_json::Value {
        body
    }
}
