//! The `mock_v3` reality level: answers a request from a service's OpenAPI description.
//!
//! [`MockService::compile`] does the spec walking once: operations indexed by method and path
//! template (`router`), every schema converted to JSON Schema 2020-12 per direction into one
//! bundle whose `$ref`s resolve only inside the loaded [`Spec`] (`schema`), and validators that
//! are built on first use and kept. [`MockService::respond`] then validates the request
//! (path, query and header parameters, body), picks the response (`Prefer`, else the lowest
//! declared 2xx), negotiates the media type (`negotiate`) and takes the body from the declared
//! examples, else generates it (`generate`, `pattern`), deterministically for a given request.
//!
//! Statuses of the mock's own problems (all `application/problem+json`, RFC 9457):
//! 400 unreadable request (bad percent-encoding, invalid JSON or UTF-8, bad `Prefer`),
//! 404 no route, 405 wrong method (with `Allow`), 406 no acceptable media type, 413 body too
//! large, 415 undeclared request media type, 422 request violates the description (every
//! violation with its JSON pointer), and 422 for a `Prefer` the description cannot satisfy
//! (`code=` of an undeclared status, `example=` of an unknown example). Prism answers the
//! latter with 500; a 4xx says the request asked for something the description lacks.
//!
//! Limits: cookie parameters are not checked; request bodies of media types other than JSON
//! and `application/x-www-form-urlencoded` (multipart, binary) are only checked for presence.

mod cache;
mod generate;
pub(crate) mod negotiate;
mod pattern;
mod request;
pub(crate) mod router;
pub(crate) mod schema;

use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::schema_diff::openapi::load::Spec;
use crate::schema_diff::openapi::ops;

pub use negotiate::{Prefer, PreferError, negotiate, parse_prefer};
use router::{Match, Router};
use schema::{Bundle, Converter, Dir};

/// Largest request body the mock reads.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most violations listed in one problem body.
const MAX_ERRORS: usize = 100;
/// Where problem `type`s live.
pub const PROBLEM_BASE: &str = "https://mockops.dev/problems/";

/// One service's OpenAPI description, compiled for serving: operations by method and path
/// template, schemas resolved (only inside the loaded Spec: never fetched), validators built.
pub struct MockService {
    bundle: Bundle,
    router: Router,
    ops: Vec<Operation>,
    cache: cache::AnswerCache,
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

#[derive(Debug, Clone)]
pub struct MockResponse {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
    /// The matched operation ("operationId" when declared, else "GET /pets/{id}"); None when no
    /// operation matched (the response is then a 404/405 problem).
    pub operation: Option<String>,
}

/// Why a description cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{operation}: {source}")]
    Schema {
        operation: String,
        source: schema::ConvertError,
    },
    #[error("{operation}: {what} at `{pointer}` is not an object")]
    NotAnObject {
        operation: String,
        what: &'static str,
        pointer: String,
    },
    #[error("cannot prepare the schema registry: {0}")]
    Registry(#[source] jsonschema::ReferencingError),
}

/// A request built from the description, for tests and smoke checks.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Location {
    Path,
    Query,
    Header,
    Cookie,
}

impl Location {
    fn as_str(self) -> &'static str {
        match self {
            Location::Path => "path",
            Location::Query => "query",
            Location::Header => "header",
            Location::Cookie => "cookie",
        }
    }
}

struct Param {
    name: String,
    location: Location,
    required: bool,
    schema: Value,
    explode: bool,
    deep_object: bool,
    /// The parameter's own `example` (or its first `examples` value), what a probe sends.
    example: Option<Value>,
    validator: OnceLock<Option<jsonschema::Validator>>,
}

struct Media {
    media_type: String,
    schema: Option<Value>,
    example: Option<Value>,
    examples: Vec<(String, Value)>,
    validator: OnceLock<Option<jsonschema::Validator>>,
    /// Per declared example (`example` first, then `examples` in order): valid against the
    /// schema?
    example_ok: OnceLock<Vec<bool>>,
}

struct Body {
    required: bool,
    media: Vec<Media>,
}

struct Response {
    /// "200", "4XX" or "default".
    key: String,
    media: Vec<Media>,
    /// Required response headers: (lower-case name, converted schema).
    headers: Vec<(String, Value)>,
}

struct Operation {
    label: String,
    method: Method,
    template: String,
    params: Vec<Param>,
    body: Option<Body>,
    responses: Vec<Response>,
}

/// One violation of the description: where and what.
#[derive(Debug, Clone)]
struct Violation {
    pointer: String,
    message: String,
}

impl MockService {
    pub fn compile(spec: &Spec) -> Result<MockService, CompileError> {
        let mut conv = Converter::new(spec);
        let mut router = Router::default();
        let mut out = Vec::new();
        for op in ops::operations(spec) {
            let display = op.display();
            let label = op
                .value
                .get("operationId")
                .and_then(Value::as_str)
                .map_or_else(|| display.clone(), str::to_string);
            let schema_err = |source| CompileError::Schema {
                operation: display.clone(),
                source,
            };
            let mut params: Vec<Param> = Vec::new();
            for p in &op.parameters {
                let Some((p, file)) = conv.resolve(&op.file, p) else {
                    continue;
                };
                let (Some(name), Some(location)) = (
                    p.get("name").and_then(Value::as_str),
                    p.get("in").and_then(Value::as_str).and_then(|l| match l {
                        "path" => Some(Location::Path),
                        "query" => Some(Location::Query),
                        "header" => Some(Location::Header),
                        "cookie" => Some(Location::Cookie),
                        _ => None,
                    }),
                ) else {
                    continue;
                };
                let raw_schema = p.get("schema").or_else(|| {
                    p.get("content")
                        .and_then(Value::as_object)
                        .and_then(|c| c.values().next())
                        .and_then(|m| m.get("schema"))
                });
                let schema = match raw_schema {
                    Some(s) => conv.root(&file, s, Dir::Request).map_err(schema_err)?,
                    None => json!({}),
                };
                let style = p.get("style").and_then(Value::as_str);
                let explode = p.get("explode").and_then(Value::as_bool).unwrap_or(
                    matches!(location, Location::Query | Location::Cookie)
                        && style.is_none_or(|s| s == "form"),
                );
                let param = Param {
                    name: if location == Location::Header {
                        name.to_ascii_lowercase()
                    } else {
                        name.to_string()
                    },
                    location,
                    required: location == Location::Path
                        || p.get("required").and_then(Value::as_bool).unwrap_or(false),
                    schema,
                    explode,
                    deep_object: style == Some("deepObject"),
                    example: p.get("example").cloned().or_else(|| {
                        p.get("examples")
                            .and_then(Value::as_object)
                            .and_then(|e| e.values().find_map(|x| x.get("value")))
                            .cloned()
                    }),
                    validator: OnceLock::new(),
                };
                // An operation-level parameter overrides the path-level one.
                params.retain(|q| !(q.name == param.name && q.location == param.location));
                params.push(param);
            }
            let body = match op.value.get("requestBody") {
                Some(b) => {
                    let (b, file) =
                        conv.resolve(&op.file, b)
                            .ok_or_else(|| CompileError::NotAnObject {
                                operation: display.clone(),
                                what: "requestBody",
                                pointer: "requestBody".into(),
                            })?;
                    Some(Body {
                        required: b.get("required").and_then(Value::as_bool).unwrap_or(false),
                        media: media_of(&mut conv, &file, b.get("content"), Dir::Request)
                            .map_err(schema_err)?,
                    })
                }
                None => None,
            };
            let mut responses = Vec::new();
            if let Some(rs) = op.value.get("responses").and_then(Value::as_object) {
                for (key, r) in rs {
                    let Some((r, file)) = conv.resolve(&op.file, r) else {
                        continue;
                    };
                    let mut headers = Vec::new();
                    for (name, h) in r
                        .get("headers")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        let Some((h, hfile)) = conv.resolve(&file, h) else {
                            continue;
                        };
                        let lower = name.to_ascii_lowercase();
                        if h.get("required") != Some(&Value::Bool(true)) || lower == "content-type"
                        {
                            continue;
                        }
                        if let Some(hs) = h.get("schema") {
                            headers.push((
                                lower,
                                conv.root(&hfile, hs, Dir::Response).map_err(schema_err)?,
                            ));
                        }
                    }
                    responses.push(Response {
                        key: key.to_ascii_uppercase().replace("DEFAULT", "default"),
                        media: media_of(&mut conv, &file, r.get("content"), Dir::Response)
                            .map_err(schema_err)?,
                        headers,
                    });
                }
            }
            let method_upper = op.method.to_ascii_uppercase();
            router.add(&op.path, &method_upper, out.len());
            out.push(Operation {
                label,
                method: Method::from_bytes(method_upper.as_bytes()).unwrap_or(Method::GET),
                template: op.path.clone(),
                params,
                body,
                responses,
            });
        }
        let bundle = conv.finish().map_err(CompileError::Registry)?;
        Ok(MockService {
            bundle,
            router,
            ops: out,
            cache: cache::AnswerCache::default(),
        })
    }

    /// How many operations the description has.
    pub fn operation_count(&self) -> usize {
        self.ops.len()
    }

    /// The name of operation `i` ("operationId", else "GET /pets/{id}").
    pub fn operation_name(&self, i: usize) -> Option<&str> {
        self.ops.get(i).map(|o| o.label.as_str())
    }

    /// The method and path template of operation `i`, as the description writes them.
    pub fn operation_route(&self, i: usize) -> Option<(&Method, &str)> {
        self.ops.get(i).map(|o| (&o.method, o.template.as_str()))
    }

    /// The operation a request path and method match, without answering (for the traffic record
    /// and for `real`/`blended`): ("operationId or METHOD template").
    pub fn operation_for(&self, method: &http::Method, path: &str) -> Option<String> {
        match self.router.route(method.as_str(), path) {
            Match::Found { op, .. } => Some(self.ops[op].label.clone()),
            _ => None,
        }
    }

    /// Answers a request from the spec: validate the request (400/422 problem+json listing every
    /// violation with its JSON pointer), pick the response (Prefer: code=/example=/dynamic=true,
    /// else lowest declared 2xx), negotiate the content type from Accept (406 problem when none
    /// fits), body from declared examples first, else generated from the schema. No route: 404
    /// problem (405 with Allow when the path matches but the method does not).
    /// An identical earlier request's answer is served again from a bounded cache (the answer
    /// is a function of the request, except under `Prefer: dynamic=true`).
    pub fn respond(&self, req: &MockRequest<'_>) -> MockResponse {
        let Some(key) = cache::key(req) else {
            return self.answer(req);
        };
        if let Some(r) = self.cache.get(&key) {
            return r;
        }
        let r = self.answer(req);
        self.cache.put(key, &r);
        r
    }

    fn answer(&self, req: &MockRequest<'_>) -> MockResponse {
        let query_pairs = req
            .query
            .and_then(|q| request::parse_pairs(q).ok())
            .unwrap_or_default();
        let (op_index, path_params) =
            match self
                .router
                .route_with_query(req.method.as_str(), req.path, &query_pairs)
            {
                Match::Found { op, params } => (op, params),
                Match::BadEncoding(seg) => {
                    return problem(
                        StatusCode::BAD_REQUEST,
                        "bad-path-encoding",
                        "Malformed path",
                        &format!("the path segment `{seg}` is not valid percent-encoded UTF-8"),
                        Map::new(),
                        None,
                    );
                }
                Match::NotFound => {
                    return problem(
                        StatusCode::NOT_FOUND,
                        "no-route",
                        "No such operation",
                        &format!(
                            "no operation of this service matches {} {}",
                            req.method,
                            truncate(req.path, 200)
                        ),
                        Map::new(),
                        None,
                    );
                }
                Match::MethodNotAllowed(allowed) => {
                    let mut r = problem(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method-not-allowed",
                        "Method not allowed",
                        &format!(
                            "{} is not declared for this path; it allows {}",
                            req.method,
                            allowed.join(", ")
                        ),
                        Map::from_iter([("allow".to_string(), json!(allowed))]),
                        None,
                    );
                    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                        r.headers.insert(header::ALLOW, v);
                    }
                    return r;
                }
            };
        let op = &self.ops[op_index];
        let label = Some(op.label.clone());
        let prefer = match parse_prefer(
            req.headers
                .get_all("prefer")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        ) {
            Ok(p) => p,
            Err(e) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "bad-prefer",
                    "Unusable Prefer header",
                    &e.to_string(),
                    Map::new(),
                    label,
                );
            }
        };
        if let Some(r) = self.check_request(op, req, &path_params) {
            return r;
        }
        // The response.
        let chosen = match prefer.code {
            Some(code) => match pick_by_code(&op.responses, code) {
                Some(r) => Some((r, code)),
                None => {
                    let declared: Vec<&str> = op.responses.iter().map(|r| r.key.as_str()).collect();
                    return problem(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "prefer-code-undeclared",
                        "Requested status not declared",
                        &format!(
                            "`Prefer: code={code}` asks for a response this operation does not declare; it declares {}",
                            declared.join(", ")
                        ),
                        Map::from_iter([("declared".to_string(), json!(declared))]),
                        label,
                    );
                }
            },
            None => pick_default(&op.responses),
        };
        let Some((resp, status)) = chosen else {
            // No responses at all: an empty 204 is the only honest answer.
            return MockResponse {
                status: StatusCode::NO_CONTENT,
                headers: HeaderMap::new(),
                body: bytes::Bytes::new(),
                operation: label,
            };
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut headers = self.response_headers(resp, req);
        if resp.media.is_empty() {
            return MockResponse {
                status,
                headers,
                body: bytes::Bytes::new(),
                operation: label,
            };
        }
        let declared: Vec<String> = resp.media.iter().map(|m| m.media_type.clone()).collect();
        let accept: Vec<&str> = req
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let Some(chosen_media) = negotiate(&accept, &declared) else {
            return problem(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "No acceptable media type",
                &format!(
                    "the response can be {}, none of which `Accept` allows",
                    declared.join(", ")
                ),
                Map::from_iter([("available".to_string(), json!(declared))]),
                label,
            );
        };
        let Some(media) = resp.media.iter().find(|m| m.media_type == chosen_media) else {
            return problem(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "No acceptable media type",
                "no declared media type fits",
                Map::new(),
                label,
            );
        };
        let body = match self.body_for(media, &prefer, req) {
            Ok(b) => b,
            Err(available) => {
                return problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "prefer-example-unknown",
                    "Requested example not declared",
                    &format!(
                        "`Prefer: example={}` names no valid example of this response",
                        prefer.example.as_deref().unwrap_or_default()
                    ),
                    Map::from_iter([("available".to_string(), json!(available))]),
                    label,
                );
            }
        };
        let content_type = if media.media_type.contains('*') {
            "application/json".to_string()
        } else {
            media.media_type.clone()
        };
        let bytes = serialize(&content_type, body);
        if let Ok(v) = HeaderValue::from_str(&content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        MockResponse {
            status,
            headers,
            body: bytes::Bytes::from(bytes),
            operation: label,
        }
    }

    /// For `blended`: fills the required properties a real 2xx JSON body left out, from the mock
    /// of the same operation/status (returns the body unchanged when nothing is missing or the
    /// operation/status is unknown).
    pub fn complete(
        &self,
        method: &http::Method,
        path: &str,
        status: http::StatusCode,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let Match::Found { op, .. } = self.router.route(method.as_str(), path) else {
            return body;
        };
        let Some(resp) = pick_by_code(&self.ops[op].responses, status.as_u16()) else {
            return body;
        };
        let Some(schema) = resp
            .media
            .iter()
            .find(|m| negotiate::is_json(&m.media_type))
            .and_then(|m| m.schema.as_ref())
        else {
            return body;
        };
        let seed = seed_of(&[
            method.as_str().as_bytes(),
            path.as_bytes(),
            status.as_str().as_bytes(),
        ]);
        let mut g = generate::Gen::new(&self.bundle, seed, Dir::Response);
        let mut body = body;
        fill_missing(&mut g, &mut body, schema, 0);
        body
    }

    /// A minimal valid request for operation `i`: path parameters, required query and header
    /// parameters and a required body, generated from the description with `seed`.
    pub fn sample_request(&self, i: usize, seed: u64) -> Option<SampleRequest> {
        let op = self.ops.get(i)?;
        // Declared examples first (an id the upstream knows), generated values otherwise.
        let mut g = generate::Gen::new(&self.bundle, seed, Dir::Request);
        g.use_examples = true;
        let value_of = |g: &mut generate::Gen<'_>, p: &Param| match &p.example {
            Some(ex) if generate::conforms(&self.bundle, ex, &p.schema, 0) => ex.clone(),
            _ => g.value(&p.schema),
        };
        let mut path = String::new();
        let (template, literal_query) = op.template.split_once('?').unwrap_or((&op.template, ""));
        for seg in template.trim_start_matches('/').split('/') {
            path.push('/');
            let mut rest = seg;
            while let Some(a) = rest.find('{') {
                path.push_str(&rest[..a]);
                let Some(b) = rest[a..].find('}') else { break };
                let name = &rest[a + 1..a + b];
                let value = op
                    .params
                    .iter()
                    .find(|p| p.location == Location::Path && p.name == name)
                    .map(|p| request::scalar_text(&value_of(&mut g, p)))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "x".into());
                path.push_str(&request::encode_component(&value));
                rest = &rest[a + b + 1..];
            }
            path.push_str(rest);
        }
        let mut pairs: Vec<(String, String)> =
            request::parse_pairs(literal_query).unwrap_or_default();
        let mut headers = HeaderMap::new();
        for p in op.params.iter().filter(|p| p.required) {
            let v = value_of(&mut g, p);
            match p.location {
                Location::Query if p.deep_object => request::form_pairs(&p.name, &v, &mut pairs),
                Location::Query => match &v {
                    Value::Array(items) if p.explode => {
                        for x in items {
                            pairs.push((p.name.clone(), request::scalar_text(x)));
                        }
                    }
                    other => pairs.push((p.name.clone(), request::scalar_text(other))),
                },
                Location::Header => {
                    if let (Ok(n), Ok(hv)) = (
                        http::HeaderName::from_bytes(p.name.as_bytes()),
                        HeaderValue::from_str(&request::scalar_text(&v)),
                    ) {
                        headers.insert(n, hv);
                    }
                }
                _ => {}
            }
        }
        let mut body = Vec::new();
        if let Some(b) = op.body.as_ref().filter(|b| b.required)
            && let Some(m) = b.media.first()
        {
            let v = m.schema.as_ref().map_or(json!({}), |s| g.value(s));
            let ct = if m.media_type.contains('*') {
                "application/json".to_string()
            } else {
                m.media_type.clone()
            };
            body = if negotiate::is_json(&ct) {
                serde_json::to_vec(&v).unwrap_or_default()
            } else if negotiate::essence(&ct) == "application/x-www-form-urlencoded" {
                let mut fp = Vec::new();
                request::form_pairs("", &v, &mut fp);
                request::encode_pairs(&fp).into_bytes()
            } else {
                b"mock".to_vec()
            };
            if let Ok(hv) = HeaderValue::from_str(&ct) {
                headers.insert(header::CONTENT_TYPE, hv);
            }
        }
        Some(SampleRequest {
            method: op.method.clone(),
            path,
            query: (!pairs.is_empty()).then(|| request::encode_pairs(&pairs)),
            headers,
            body,
        })
    }

    /// The required headers `resp` declares, generated like bodies.
    fn response_headers(&self, resp: &Response, req: &MockRequest<'_>) -> HeaderMap {
        let mut out = HeaderMap::new();
        if resp.headers.is_empty() {
            return out;
        }
        let seed = seed_of(&[
            req.method.as_str().as_bytes(),
            req.path.as_bytes(),
            b"headers",
        ]);
        let mut g = generate::Gen::new(&self.bundle, seed, Dir::Response);
        g.use_examples = false;
        for (name, schema) in &resp.headers {
            let text = request::scalar_text(&g.value(schema));
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&text),
            ) {
                out.insert(n, v);
            }
        }
        out
    }

    /// Validates the request against operation `op`; a problem response when it fails.
    fn check_request(
        &self,
        op: &Operation,
        req: &MockRequest<'_>,
        path_params: &[(String, String)],
    ) -> Option<MockResponse> {
        let label = Some(op.label.clone());
        let mut malformed: Vec<Violation> = Vec::new();
        let mut violations: Vec<Violation> = Vec::new();
        let query_pairs = match req.query.map(request::parse_pairs).transpose() {
            Ok(q) => q.unwrap_or_default(),
            Err(e) => {
                malformed.push(Violation {
                    pointer: "/query".into(),
                    message: e.to_string(),
                });
                Vec::new()
            }
        };
        for p in &op.params {
            let pointer = format!(
                "/{}/{}",
                p.location.as_str(),
                crate::schema_diff::openapi::load::escape_pointer(&p.name)
            );
            let raw: Option<Value> = match p.location {
                Location::Path => path_params
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, v)| Value::String(v.clone())),
                Location::Query if p.deep_object => {
                    let prefix = format!("{}[", p.name);
                    let sub: Vec<(String, String)> = query_pairs
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix) || *k == p.name)
                        .cloned()
                        .collect();
                    match request::tree(&sub) {
                        Ok(t) => t.get(&p.name).cloned(),
                        Err(e) => {
                            malformed.push(Violation {
                                pointer: pointer.clone(),
                                message: e.to_string(),
                            });
                            continue;
                        }
                    }
                }
                Location::Query => {
                    let values: Vec<&String> = query_pairs
                        .iter()
                        .filter(|(k, _)| *k == p.name)
                        .map(|(_, v)| v)
                        .collect();
                    let is_array = request::types(&self.bundle, &p.schema)
                        .iter()
                        .any(|t| t == "array");
                    match values.as_slice() {
                        [] => None,
                        [one] if !(is_array && p.explode) => Some(Value::String((*one).clone())),
                        many => Some(Value::Array(
                            many.iter().map(|v| Value::String((*v).clone())).collect(),
                        )),
                    }
                }
                Location::Header => {
                    let values: Vec<&HeaderValue> =
                        req.headers.get_all(p.name.as_str()).iter().collect();
                    if values.is_empty() {
                        None
                    } else {
                        let mut texts = Vec::new();
                        for v in values {
                            match v.to_str() {
                                Ok(t) => texts.push(t.trim().to_string()),
                                Err(_) => {
                                    malformed.push(Violation {
                                        pointer: pointer.clone(),
                                        message: "the header value is not visible ASCII".into(),
                                    });
                                }
                            }
                        }
                        Some(Value::String(texts.join(",")))
                    }
                }
                Location::Cookie => continue,
            };
            let Some(raw) = raw else {
                if p.required {
                    violations.push(Violation {
                        pointer,
                        message: format!(
                            "the required {} parameter is missing",
                            p.location.as_str()
                        ),
                    });
                }
                continue;
            };
            let value = request::coerce(&self.bundle, raw, &p.schema, 0);
            if let Some(v) = validator(&self.bundle, &p.validator, &p.schema) {
                for e in v.iter_errors(&value).take(MAX_ERRORS) {
                    violations.push(Violation {
                        pointer: format!("{pointer}{}", e.instance_path().as_str()),
                        message: e.to_string(),
                    });
                }
            }
        }
        let mut unsupported: Option<MockResponse> = None;
        if let Some(body) = &op.body {
            self.check_body(
                op,
                body,
                req,
                &mut malformed,
                &mut violations,
                &mut unsupported,
            );
        }
        if let Some(r) = unsupported {
            return Some(r);
        }
        let (status, slug, title, list) = if !malformed.is_empty() {
            (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                malformed,
            )
        } else if !violations.is_empty() {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "request-invalid",
                "Request does not match the description",
                violations,
            )
        } else {
            return None;
        };
        let errors: Vec<Value> = list
            .iter()
            .take(MAX_ERRORS)
            .map(|v| json!({"pointer": v.pointer, "message": v.message}))
            .collect();
        Some(problem(
            status,
            slug,
            title,
            &format!("{} problem(s) in the request to {}", list.len(), op.label),
            Map::from_iter([("errors".to_string(), Value::Array(errors))]),
            label,
        ))
    }

    fn check_body(
        &self,
        op: &Operation,
        body: &Body,
        req: &MockRequest<'_>,
        malformed: &mut Vec<Violation>,
        violations: &mut Vec<Violation>,
        unsupported: &mut Option<MockResponse>,
    ) {
        if req.body.is_empty() {
            if body.required {
                violations.push(Violation {
                    pointer: "/body".into(),
                    message: "the request body is required".into(),
                });
            }
            return;
        }
        if req.body.len() > MAX_BODY_BYTES {
            *unsupported = Some(problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "Request body too large",
                &format!("the mock reads bodies of at most {MAX_BODY_BYTES} bytes"),
                Map::new(),
                Some(op.label.clone()),
            ));
            return;
        }
        let content_type = req
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(negotiate::essence);
        let media = match &content_type {
            Some(ct) => body
                .media
                .iter()
                .find(|m| negotiate::essence(&m.media_type) == *ct)
                .or_else(|| {
                    body.media
                        .iter()
                        .find(|m| negotiate::covers(&m.media_type, ct))
                }),
            None => body.media.first(),
        };
        let Some(media) = media else {
            if body.media.is_empty() {
                return;
            }
            let declared: Vec<&str> = body.media.iter().map(|m| m.media_type.as_str()).collect();
            *unsupported = Some(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported request media type",
                &format!(
                    "the body's media type {} is not declared; the operation accepts {}",
                    content_type.as_deref().unwrap_or("(none)"),
                    declared.join(", ")
                ),
                Map::from_iter([("accepted".to_string(), json!(declared))]),
                Some(op.label.clone()),
            ));
            return;
        };
        let Some(schema) = &media.schema else { return };
        let ct = content_type.unwrap_or_else(|| negotiate::essence(&media.media_type));
        let value = if negotiate::is_json(&ct) {
            match serde_json::from_slice::<Value>(req.body) {
                Ok(v) => v,
                Err(e) => {
                    malformed.push(Violation {
                        pointer: "/body".into(),
                        message: format!("the body is not valid JSON: {e}"),
                    });
                    return;
                }
            }
        } else if ct == "application/x-www-form-urlencoded" {
            let parsed = std::str::from_utf8(req.body)
                .map_err(|_| "the body is not UTF-8".to_string())
                .and_then(|t| request::parse_pairs(t).map_err(|e| e.to_string()))
                .and_then(|p| request::tree(&p).map_err(|e| e.to_string()));
            match parsed {
                Ok(t) => request::coerce(&self.bundle, Value::Object(t), schema, 0),
                Err(message) => {
                    malformed.push(Violation {
                        pointer: "/body".into(),
                        message,
                    });
                    return;
                }
            }
        } else {
            return;
        };
        if let Some(v) = validator(&self.bundle, &media.validator, schema) {
            for e in v.iter_errors(&value).take(MAX_ERRORS) {
                violations.push(Violation {
                    pointer: format!("/body{}", e.instance_path().as_str()),
                    message: e.to_string(),
                });
            }
        }
    }

    /// The body for `media`: a declared example (the one `Prefer: example=` names, else the
    /// first valid one) unless `dynamic=true`, else generated. `Err` with the names of the
    /// valid examples when the named one does not exist or is not valid.
    fn body_for(
        &self,
        media: &Media,
        prefer: &Prefer,
        req: &MockRequest<'_>,
    ) -> Result<Value, Vec<String>> {
        let ok = media.example_ok.get_or_init(|| {
            if media.example.is_none() && media.examples.is_empty() {
                return Vec::new();
            }
            let v = media
                .schema
                .as_ref()
                .and_then(|s| validator(&self.bundle, &media.validator, s));
            media
                .example
                .iter()
                .chain(media.examples.iter().map(|(_, e)| e))
                .map(|e| match (&media.schema, v) {
                    (None, _) => true,
                    (Some(_), Some(v)) => v.is_valid(e),
                    (Some(_), None) => false,
                })
                .collect()
        });
        let offset = usize::from(media.example.is_some());
        if let Some(name) = &prefer.example {
            return media
                .examples
                .iter()
                .enumerate()
                .find(|(i, (n, _))| n == name && ok.get(i + offset) == Some(&true))
                .map(|(_, (_, e))| e.clone())
                .ok_or_else(|| {
                    media
                        .examples
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| ok.get(i + offset) == Some(&true))
                        .map(|(_, (n, _))| n.clone())
                        .collect()
                });
        }
        if !prefer.dynamic && req.persona.is_none() {
            let declared = media
                .example
                .iter()
                .chain(media.examples.iter().map(|(_, e)| e))
                .zip(ok.iter())
                .find(|(_, ok)| **ok)
                .map(|(e, _)| e.clone());
            if let Some(e) = declared {
                return Ok(e);
            }
        }
        let Some(schema) = &media.schema else {
            return Ok(Value::Null);
        };
        let seed = if prefer.dynamic {
            fastrand::u64(..)
        } else {
            let persona = req
                .persona
                .map(|p| serde_json::to_vec(p).unwrap_or_default())
                .unwrap_or_default();
            seed_of(&[
                req.method.as_str().as_bytes(),
                req.path.as_bytes(),
                req.query.unwrap_or("").as_bytes(),
                req.body,
                &persona,
            ])
        };
        let mut g = generate::Gen::new(&self.bundle, seed, Dir::Response);
        g.persona = req.persona;
        g.vary = prefer.dynamic;
        g.use_examples = !prefer.dynamic;
        let v = g.value(schema);
        if g.used_declared
            && let Some(val) = validator(&self.bundle, &media.validator, schema)
            && !val.is_valid(&v)
        {
            // A nested example or trait did not fit after all: generate without them.
            let mut g = generate::Gen::new(&self.bundle, seed, Dir::Response);
            g.vary = prefer.dynamic;
            g.use_examples = false;
            return Ok(g.value(schema));
        }
        Ok(v)
    }
}

fn validator<'v>(
    bundle: &Bundle,
    cell: &'v OnceLock<Option<jsonschema::Validator>>,
    schema: &Value,
) -> Option<&'v jsonschema::Validator> {
    cell.get_or_init(|| match bundle.validator(schema) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "a schema of the description cannot be compiled; it is not checked");
            None
        }
    })
    .as_ref()
}

fn media_of(
    conv: &mut Converter<'_>,
    file: &str,
    content: Option<&Value>,
    dir: Dir,
) -> Result<Vec<Media>, schema::ConvertError> {
    let mut out = Vec::new();
    let Some(content) = content.and_then(Value::as_object) else {
        return Ok(out);
    };
    for (media_type, m) in content {
        let schema = match m.get("schema") {
            Some(s) => Some(conv.root(file, s, dir)?),
            None => None,
        };
        let mut examples = Vec::new();
        if let Some(ex) = m.get("examples").and_then(Value::as_object) {
            for (name, e) in ex {
                if let Some((e, _)) = conv.resolve(file, e)
                    && let Some(v) = e.get("value")
                {
                    examples.push((name.clone(), v.clone()));
                }
            }
        }
        out.push(Media {
            media_type: media_type.clone(),
            schema,
            example: m.get("example").cloned(),
            examples,
            validator: OnceLock::new(),
            example_ok: OnceLock::new(),
        });
    }
    Ok(out)
}

/// The response declared for `code`: exact, else its range (`4XX`), else `default`.
fn pick_by_code(responses: &[Response], code: u16) -> Option<&Response> {
    let exact = code.to_string();
    let range = format!("{}XX", code / 100);
    responses
        .iter()
        .find(|r| r.key == exact)
        .or_else(|| responses.iter().find(|r| r.key == range))
        .or_else(|| responses.iter().find(|r| r.key == "default"))
}

/// The lowest declared 2xx (a `2XX` range answers 200), else `default` as 200, else the
/// lowest declared status.
fn pick_default(responses: &[Response]) -> Option<(&Response, u16)> {
    let status = |r: &Response| -> Option<u16> {
        if r.key.ends_with("XX") {
            r.key.get(..1)?.parse::<u16>().ok().map(|h| h * 100)
        } else {
            r.key.parse().ok()
        }
    };
    let mut numbered: Vec<(&Response, u16)> = responses
        .iter()
        .filter_map(|r| status(r).map(|s| (r, s)))
        .collect();
    numbered.sort_by_key(|(r, s)| (*s, r.key.ends_with("XX")));
    numbered
        .iter()
        .find(|(_, s)| (200..300).contains(s))
        .copied()
        .or_else(|| {
            responses
                .iter()
                .find(|r| r.key == "default")
                .map(|r| (r, 200))
        })
        .or_else(|| numbered.first().copied())
}

/// Fills in required properties `body` lacks, following `schema` into present properties.
fn fill_missing(g: &mut generate::Gen<'_>, body: &mut Value, schema: &Value, depth: usize) {
    if depth > generate::SOFT_DEPTH * 2 {
        return;
    }
    let merged = generate::merge(g.bundle, &[schema]);
    match body {
        Value::Object(obj) => {
            let props = merged.get("properties").and_then(Value::as_object);
            if let Some(required) = merged.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if obj.contains_key(name) {
                        continue;
                    }
                    let ps = props.and_then(|p| p.get(name));
                    if let Some(ps) = ps
                        && ps.get("writeOnly") != Some(&Value::Bool(true))
                    {
                        let v = g.value(ps);
                        obj.insert(name.to_string(), v);
                    }
                }
            }
            if let Some(props) = props {
                for (name, v) in obj.iter_mut() {
                    if let Some(ps) = props.get(name)
                        && (v.is_object() || v.is_array())
                    {
                        fill_missing(g, v, ps, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = merged.get("items") {
                for v in items.iter_mut() {
                    fill_missing(g, v, is, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn seed_of(parts: &[&[u8]]) -> u64 {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

fn serialize(content_type: &str, v: Value) -> Vec<u8> {
    if !negotiate::is_json(content_type)
        && let Value::String(s) = &v
    {
        return s.clone().into_bytes();
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// An RFC 9457 problem response.
fn problem(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    extensions: Map<String, Value>,
    operation: Option<String>,
) -> MockResponse {
    let mut body = Map::new();
    body.insert("type".into(), json!(format!("{PROBLEM_BASE}{slug}")));
    body.insert("title".into(), json!(title));
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("detail".into(), json!(detail));
    body.extend(extensions);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    MockResponse {
        status,
        headers,
        body: bytes::Bytes::from(serde_json::to_vec(&Value::Object(body)).unwrap_or_default()),
        operation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_service_is_shared_across_threads() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<MockService>();
    }

    fn responses(keys: &[&str]) -> Vec<Response> {
        keys.iter()
            .map(|k| Response {
                key: (*k).to_string(),
                media: Vec::new(),
                headers: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn the_default_response_is_the_lowest_2xx() {
        let rs = responses(&["404", "201", "2XX", "default"]);
        assert_eq!(
            pick_default(&rs).map(|(r, s)| (r.key.as_str(), s)),
            Some(("2XX", 200))
        );
        let rs = responses(&["404", "default"]);
        assert_eq!(
            pick_default(&rs).map(|(r, s)| (r.key.as_str(), s)),
            Some(("default", 200))
        );
        let rs = responses(&["404", "éXX"]);
        assert_eq!(
            pick_default(&rs).map(|(r, s)| (r.key.as_str(), s)),
            Some(("404", 404))
        );
        let rs = responses(&["200", "4XX", "default"]);
        assert_eq!(pick_by_code(&rs, 404).map(|r| r.key.as_str()), Some("4XX"));
        assert_eq!(
            pick_by_code(&rs, 503).map(|r| r.key.as_str()),
            Some("default")
        );
    }
}
