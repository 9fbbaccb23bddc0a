//! The `mock_v3` engine (`gateway::mock`): every operation of the example specs and of two
//! large real specs answered and checked against a validator built here from the raw
//! description (OpenAPI 3.0 converted independently of the engine), determinism, personas,
//! `Prefer`, negotiation, request validation and hostile input.

use std::path::Path;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use indexmap::IndexMap;
use mockops::gateway::mock::{MockRequest, MockResponse, MockService};
use mockops::git::revision::DirFiles;
use mockops::schema_diff::openapi::{OpenapiVersion, Spec, load};
use serde_json::{Map, Value, json};

fn load_spec(root: &Path, rel: &str) -> Spec {
    let files = DirFiles::new(root).expect("spec root");
    let bytes = std::fs::read(root.join(rel)).expect("read spec");
    load(rel, &bytes, &files).unwrap_or_else(|e| panic!("{rel} loads: {e}"))
}

fn example_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo-layout")
}

/// The newest version in a corpus directory.
fn newest(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("corpus dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n.as_bytes()[0].is_ascii_digit())
        .collect();
    names.sort();
    names.pop().expect("a spec version")
}

fn inline_spec(text: &str) -> (tempfile::TempDir, Spec) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("api.yaml"), text).expect("write");
    let spec = load_spec(dir.path(), "api.yaml");
    (dir, spec)
}

struct Req<'a> {
    method: Method,
    path: &'a str,
    query: Option<&'a str>,
    headers: HeaderMap,
    body: Vec<u8>,
    persona: Option<IndexMap<String, Value>>,
}

impl<'a> Req<'a> {
    fn new(method: Method, path: &'a str) -> Self {
        Req {
            method,
            path,
            query: None,
            headers: HeaderMap::new(),
            body: Vec::new(),
            persona: None,
        }
    }
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers
            .append(k, HeaderValue::from_str(v).expect("header value"));
        self
    }
    fn json(mut self, v: Value) -> Self {
        self.body = serde_json::to_vec(&v).expect("json");
        self.header("content-type", "application/json")
    }
    fn send(&self, svc: &MockService) -> MockResponse {
        svc.respond(&MockRequest {
            method: &self.method,
            path: self.path,
            query: self.query,
            headers: &self.headers,
            body: &self.body,
            persona: self.persona.as_ref(),
        })
    }
}

fn body_json(r: &MockResponse) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("body is JSON ({e}): {}", String::from_utf8_lossy(&r.body)))
}

/// OpenAPI 3.0 schemas as JSON Schema, written independently of the engine: `nullable`,
/// boolean exclusive bounds, `$ref` siblings ignored, OpenAPI-only keywords dropped.
fn convert30(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                return json!({ "$ref": r });
            }
            let mut out = Map::new();
            for (k, c) in m {
                match k.as_str() {
                    "properties" | "patternProperties" => {
                        let props = c
                            .as_object()
                            .map(|p| p.iter().map(|(n, s)| (n.clone(), convert30(s))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    "discriminator" | "xml" | "externalDocs" | "example" | "nullable" => {}
                    "exclusiveMinimum" | "exclusiveMaximum" if c.is_boolean() => {}
                    _ => {
                        out.insert(k.clone(), convert30(c));
                    }
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if m.get(flag) == Some(&Value::Bool(true))
                    && let Some(b) = out.remove(bound)
                {
                    out.insert(flag.into(), b);
                }
            }
            if m.get("nullable") == Some(&Value::Bool(true)) {
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                    }
                    None if ["allOf", "anyOf", "oneOf"]
                        .iter()
                        .any(|k| out.contains_key(*k)) =>
                    {
                        return json!({"anyOf": [Value::Object(out), {"type": "null"}]});
                    }
                    _ => {}
                }
                if let Some(Value::Array(e)) = out.get_mut("enum")
                    && !e.contains(&Value::Null)
                {
                    e.push(Value::Null);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(convert30).collect()),
        other => other.clone(),
    }
}

/// `$recursiveAnchor`/`$recursiveRef` are 2019-09 keywords that 2020-12 does not have (OpenAI's
/// description uses them in one component): a `$recursiveRef` inside a component with
/// `$recursiveAnchor: true` becomes a `$ref` to that component.
fn resolve_recursive_refs(doc: &Value) -> Value {
    fn walk(v: &Value, anchor: Option<&str>) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| *k != "$recursiveAnchor")
                    .map(|(k, c)| match (k.as_str(), anchor) {
                        ("$recursiveRef", Some(a)) => ("$ref".to_string(), json!(a)),
                        _ => (k.clone(), walk(c, anchor)),
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|c| walk(c, anchor)).collect()),
            other => other.clone(),
        }
    }
    let mut doc = repair(doc);
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, s) in schemas.iter_mut() {
            if s.get("$recursiveAnchor") == Some(&Value::Bool(true)) {
                *s = walk(s, Some(&format!("#/components/schemas/{}", esc(name))));
            }
        }
    }
    doc
}

/// What real 3.1 descriptions get wrong and JSON Schema refuses to compile: 3.0-style boolean
/// `exclusiveMinimum`/`exclusiveMaximum`, and `required` lists with duplicates or non-strings
/// (OpenAI's `required: [x, y]` reads `y` as a YAML 1.1 boolean through the loader).
fn repair(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, c) in m {
                match k.as_str() {
                    "exclusiveMinimum" | "exclusiveMaximum" if c.is_boolean() => {}
                    "required" if c.is_array() => {
                        let mut names: Vec<Value> = Vec::new();
                        for n in c.as_array().into_iter().flatten() {
                            if n.is_string() && !names.contains(n) {
                                names.push(n.clone());
                            }
                        }
                        out.insert(k.clone(), Value::Array(names));
                    }
                    _ => {
                        out.insert(k.clone(), repair(c));
                    }
                }
            }
            for (flag, bound) in [
                ("exclusiveMinimum", "minimum"),
                ("exclusiveMaximum", "maximum"),
            ] {
                if m.get(flag) == Some(&Value::Bool(true))
                    && let Some(b) = out.remove(bound)
                {
                    out.insert(flag.into(), b);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(repair).collect()),
        other => other.clone(),
    }
}

/// Validators over the raw description's documents, registered under `https://spec.test/`.
struct Checker {
    registry: jsonschema::Registry<'static>,
}

impl Checker {
    fn new(spec: &Spec) -> Self {
        let mut builder = jsonschema::Registry::new().draft(jsonschema::Draft::Draft202012);
        for (path, doc) in &spec.docs {
            let doc = if spec.version == OpenapiVersion::V3_0 {
                convert30(doc)
            } else {
                resolve_recursive_refs(doc)
            };
            builder = builder
                .add(format!("https://spec.test/{path}"), doc)
                .expect("add document");
        }
        Checker {
            registry: builder.prepare().expect("registry"),
        }
    }

    fn errors(&self, file: &str, pointer: &str, instance: &Value) -> Vec<String> {
        let fragment: String = pointer
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=:@".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let uri = format!("https://spec.test/{file}#{fragment}");
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .with_registry(&self.registry)
            .offline()
            .should_validate_formats(true)
            .build(&json!({ "$ref": uri }))
            .unwrap_or_else(|e| panic!("checker builds a validator for {uri}: {e}"));
        v.iter_errors(instance)
            .take(5)
            .map(|e| format!("{} at {}", e, e.instance_path().as_str()))
            .collect()
    }
}

fn esc(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// The raw object at `pointer` of `file`, followed through `$ref`: (value, file, pointer).
fn deref<'s>(spec: &'s Spec, file: &str, pointer: &str) -> Option<(&'s Value, String, String)> {
    let v = spec.docs.get(file)?.pointer(pointer)?;
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let t = spec.ref_target(file, r)?;
            let (v, t) = spec.lookup(&t)?;
            Some((v, t.file, t.pointer))
        }
        None => Some((v, file.to_string(), pointer.to_string())),
    }
}

/// Checks one mocked response against the raw description: status declared, media type
/// declared, JSON body valid against the response schema.
fn check_response(
    spec: &Spec,
    checker: &Checker,
    method: &Method,
    template: &str,
    r: &MockResponse,
) -> Result<(), String> {
    let root = spec.root_path.clone();
    let op_ptr = format!(
        "/paths/{}/{}",
        esc(template),
        method.as_str().to_lowercase()
    );
    let (op, file, op_ptr) = deref(spec, &root, &format!("/paths/{}", esc(template)))
        .and_then(|(item, f, p)| {
            let m = method.as_str().to_lowercase();
            item.get(&m).map(|o| (o, f, format!("{p}/{m}")))
        })
        .ok_or_else(|| format!("operation {op_ptr} not found"))?;
    let responses = op
        .get("responses")
        .and_then(Value::as_object)
        .ok_or("no responses")?;
    let code = r.status.as_str().to_string();
    let range = format!("{}XX", &code[..1]);
    let key = [
        code.clone(),
        range.clone(),
        range.to_lowercase(),
        "default".into(),
    ]
    .into_iter()
    .find(|k| responses.contains_key(k))
    .ok_or_else(|| {
        format!(
            "status {} not declared: {}",
            r.status,
            String::from_utf8_lossy(&r.body[..r.body.len().min(600)])
        )
    })?;
    let (resp, rfile, rptr) = deref(spec, &file, &format!("{op_ptr}/responses/{}", esc(&key)))
        .ok_or("response not found")?;
    let Some(content) = resp.get("content").and_then(Value::as_object) else {
        return if r.body.is_empty() {
            Ok(())
        } else {
            Err("a body for a response without content".into())
        };
    };
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .ok_or("no content type")?
        .to_string();
    let media = content
        .keys()
        .find(|m| **m == ct)
        .or_else(|| content.keys().find(|m| m.contains('*')))
        .ok_or_else(|| {
            format!(
                "content type {ct} not declared: {}",
                String::from_utf8_lossy(&r.body[..r.body.len().min(600)])
            )
        })?;
    let Some(_) = content[media].get("schema") else {
        return Ok(());
    };
    if !(ct.contains("json")) {
        return Ok(());
    }
    let body: Value =
        serde_json::from_slice(&r.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let errors = checker.errors(
        &rfile,
        &format!("{rptr}/content/{}/schema", esc(media)),
        &body,
    );
    if errors.is_empty() {
        Ok(())
    } else {
        let text = body.to_string();
        Err(format!("{errors:?} in {}", &text[..text.len().min(800)]))
    }
}

/// Answers a minimal valid request for every operation and checks every response; returns
/// how many operations were checked.
fn check_every_operation(spec: &Spec) -> usize {
    let svc = MockService::compile(spec).expect("compiles");
    let checker = Checker::new(spec);
    let mut failures = Vec::new();
    let mut checked = 0;
    for i in 0..svc.operation_count() {
        let (method, template) = svc.operation_route(i).expect("operation");
        let (method, template) = (method.clone(), template.to_string());
        let sample = svc.sample_request(i, 7).expect("sample");
        let r = svc.respond(&MockRequest {
            method: &sample.method,
            path: &sample.path,
            query: sample.query.as_deref(),
            headers: &sample.headers,
            body: &sample.body,
            persona: None,
        });
        checked += 1;
        if r.operation.as_deref() != svc.operation_name(i) {
            failures.push(format!(
                "{method} {template}: answered as {:?} (sample path {})",
                r.operation, sample.path
            ));
            continue;
        }
        if let Err(e) = check_response(spec, &checker, &method, &template, &r) {
            failures.push(format!("{method} {template} ({}): {e}", r.status));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} operations failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

#[test]
fn every_operation_of_the_example_specs_answers_valid_responses() {
    let root = example_root();
    let mut checked = 0;
    for rel in ["specs/auth/openapi.json", "specs/payments/openapi.yaml"] {
        checked += check_every_operation(&load_spec(&root, rel));
    }
    assert_eq!(checked, 3, "login, createCharge, getCharge");
}

#[test]
fn every_operation_of_the_openai_spec_answers_valid_responses() {
    let dir = crate::support::corpus("openai-openapi");
    let name = newest(&dir);
    let spec = load_spec(&dir, &name);
    assert_eq!(spec.version, OpenapiVersion::V3_1);
    let checked = check_every_operation(&spec);
    assert!(checked >= 100, "only {checked} operations");
}

#[test]
fn every_operation_of_the_stripe_spec_answers_valid_responses() {
    let dir = crate::support::corpus("stripe-openapi");
    let name = newest(&dir);
    let spec = load_spec(&dir, &name);
    assert_eq!(spec.version, OpenapiVersion::V3_0);
    let checked = check_every_operation(&spec);
    assert!(checked >= 400, "only {checked} operations");
}

fn payments() -> MockService {
    MockService::compile(&load_spec(&example_root(), "specs/payments/openapi.yaml"))
        .expect("compiles")
}

#[test]
fn same_request_same_body_and_dynamic_varies() {
    let svc = payments();
    let a = Req::new(Method::GET, "/charges/ch_1").send(&svc);
    let b = Req::new(Method::GET, "/charges/ch_1").send(&svc);
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body, b.body, "same request, same body");
    assert_eq!(a.operation.as_deref(), Some("getCharge"));
    let other = Req::new(Method::GET, "/charges/ch_2").send(&svc);
    assert_eq!(other.status, StatusCode::OK);
    let bodies: std::collections::HashSet<Vec<u8>> = (0..8)
        .map(|_| {
            Req::new(Method::GET, "/charges/ch_1")
                .header("prefer", "dynamic=true")
                .send(&svc)
                .body
                .to_vec()
        })
        .collect();
    assert!(bodies.len() > 1, "dynamic=true varies the body");
}

#[test]
fn persona_traits_fill_properties_of_the_same_name_when_valid() {
    let svc = payments();
    let mut req = Req::new(Method::GET, "/charges/ch_1");
    req.persona = Some(IndexMap::from_iter([
        ("currency".to_string(), json!("nok")),
        ("amount".to_string(), json!(4200)),
        ("status".to_string(), json!("not-a-declared-status")),
    ]));
    let body = body_json(&req.send(&svc));
    assert_eq!(body["currency"], "nok");
    assert_eq!(body["amount"], 4200);
    assert!(
        ["pending", "succeeded", "failed"].contains(&body["status"].as_str().unwrap_or("")),
        "a trait that does not validate is not used: {body}"
    );
}

#[test]
fn prefer_code_picks_the_declared_response_and_refuses_an_undeclared_one() {
    let spec = load_spec(&example_root(), "specs/payments/openapi.yaml");
    let svc = MockService::compile(&spec).expect("compiles");
    let checker = Checker::new(&spec);
    let r = Req::new(Method::GET, "/charges/ch_1")
        .header("prefer", "code=404")
        .send(&svc);
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    check_response(&spec, &checker, &Method::GET, "/charges/{id}", &r).expect("valid 404");
    assert!(body_json(&r)["code"].is_string());
    // Prism answers an undeclared code with 500; mockops says it is the request's ask (422).
    let r = Req::new(Method::GET, "/charges/ch_1")
        .header("prefer", "code=599")
        .send(&svc);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let p = body_json(&r);
    assert_eq!(
        p["type"],
        "https://mockops.dev/problems/prefer-code-undeclared"
    );
    assert_eq!(p["declared"], json!(["200", "404"]));
    let r = Req::new(Method::GET, "/charges/ch_1")
        .header("prefer", "code=abc")
        .send(&svc);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

const RICH: &str = r##"
openapi: 3.0.3
info: {title: Orders, version: "1"}
paths:
  /orders/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
    put:
      operationId: putOrder
      parameters:
        - {name: limit, in: query, required: true, schema: {type: integer, maximum: 100}}
        - {name: tags, in: query, schema: {type: array, items: {type: string, enum: [a, b]}}}
        - {name: X-Request-Id, in: header, required: true, schema: {type: string, format: uuid}}
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [items]
              properties:
                items:
                  type: array
                  items:
                    type: object
                    required: [id]
                    properties:
                      id: {type: string, pattern: "^it_[0-9]+$"}
                      created: {type: string, readOnly: true}
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Order"}
              examples:
                small: {value: {id: 1, total: 5, items: []}}
                broken: {value: {id: "not a number"}}
            text/csv:
              schema: {type: string}
        "404":
          description: missing
          headers:
            X-Trace:
              required: true
              schema: {type: string, pattern: "^tr-[a-f0-9]{8}$"}
  /orders:
    get:
      responses:
        "200":
          description: ok
          content:
            application/json:
              schema:
                type: array
                items: {$ref: "#/components/schemas/Order"}
components:
  schemas:
    Order:
      type: object
      required: [id, total, items]
      properties:
        id: {type: integer}
        total: {type: number, minimum: 0}
        note: {type: string, nullable: true}
        secret: {type: string, writeOnly: true}
        items: {type: array, items: {type: object, required: [sku], properties: {sku: {type: string}}}}
"##;

fn rich() -> (tempfile::TempDir, Spec, MockService) {
    let (dir, spec) = inline_spec(RICH);
    let svc = MockService::compile(&spec).expect("compiles");
    (dir, spec, svc)
}

fn valid_put(path: &str) -> Req<'_> {
    let mut r = Req::new(Method::PUT, path)
        .header("x-request-id", "3f2504e0-4f89-41d3-9a0c-0305e82c3301")
        .json(json!({"items": [{"id": "it_1"}]}));
    r.query = Some("limit=10&tags=a&tags=b");
    r
}

#[test]
fn request_violations_are_listed_with_their_pointers() {
    let (_d, _spec, svc) = rich();
    let mut r = Req::new(Method::PUT, "/orders/0")
        .header("x-request-id", "not-a-uuid")
        .json(json!({"items": [{"id": "bad"}, {}]}));
    r.query = Some("limit=500&tags=c");
    let resp = r.send(&svc);
    assert_eq!(resp.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        resp.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..])
    );
    insta::assert_json_snapshot!("gateway_mock_request_invalid", body_json(&resp));
    // Missing required parameters and body.
    let resp = Req::new(Method::PUT, "/orders/1").send(&svc);
    let p = body_json(&resp);
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(
        pointers,
        vec!["/query/limit", "/header/x-request-id", "/body"]
    );
}

#[test]
fn valid_requests_get_examples_by_name_and_generated_bodies() {
    let (_d, spec, svc) = rich();
    let checker = Checker::new(&spec);
    let r = valid_put("/orders/5").send(&svc);
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    // The first valid declared example; the invalid one is never served.
    assert_eq!(body_json(&r), json!({"id": 1, "total": 5, "items": []}));
    let r = valid_put("/orders/5")
        .header("prefer", "code=404")
        .send(&svc);
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let trace = r.headers["x-trace"].to_str().expect("ascii");
    assert!(trace.starts_with("tr-") && trace.len() == 11, "{trace}");
    let r = valid_put("/orders/5")
        .header("prefer", "example=broken")
        .send(&svc);
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body_json(&r)["available"], json!(["small"]));
    let r = valid_put("/orders/5")
        .header("prefer", "dynamic=true")
        .send(&svc);
    check_response(&spec, &checker, &Method::PUT, "/orders/{id}", &r).expect("valid");
    assert!(
        body_json(&r).get("secret").is_none(),
        "writeOnly never in a response"
    );
    let r = Req::new(Method::GET, "/orders").send(&svc);
    check_response(&spec, &checker, &Method::GET, "/orders", &r).expect("valid");
}

#[test]
fn accept_negotiates_the_media_type() {
    let (_d, _spec, svc) = rich();
    let r = valid_put("/orders/5")
        .header("accept", "text/csv")
        .send(&svc);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/csv");
    let r = valid_put("/orders/5")
        .header("accept", "image/png")
        .send(&svc);
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        body_json(&r)["available"],
        json!(["application/json", "text/csv"])
    );
    let r = valid_put("/orders/5")
        .header("accept", "text/csv;q=0.2, application/*")
        .send(&svc);
    assert_eq!(r.headers["content-type"], "application/json");
}

#[test]
fn routes_methods_and_hostile_input_get_clean_4xx() {
    let (_d, _spec, svc) = rich();
    let r = Req::new(Method::GET, "/nope").send(&svc);
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.operation, None);
    assert_eq!(
        body_json(&r)["type"],
        "https://mockops.dev/problems/no-route"
    );
    let r = Req::new(Method::DELETE, "/orders/1").send(&svc);
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers["allow"], "PUT");
    assert_eq!(
        svc.operation_for(&Method::PUT, "/orders/9"),
        Some("putOrder".into())
    );
    assert_eq!(
        svc.operation_for(&Method::GET, "/orders"),
        Some("GET /orders".into())
    );
    assert_eq!(svc.operation_for(&Method::GET, "/orders/9"), None);
    for path in ["/orders/%zz", "/orders/%ff%fe", "/orders/%"] {
        let r = valid_put(path).send(&svc);
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
    }
    let mut r = valid_put("/orders/1");
    r.query = Some("limit=%zz");
    assert_eq!(r.send(&svc).status, StatusCode::BAD_REQUEST);
    let mut r = valid_put("/orders/1");
    r.body = b"{\"items\": [".to_vec();
    assert_eq!(r.send(&svc).status, StatusCode::BAD_REQUEST);
    let mut r = valid_put("/orders/1");
    r.body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes();
    assert_eq!(r.send(&svc).status, StatusCode::BAD_REQUEST, "deep JSON");
    let mut r = valid_put("/orders/1");
    r.body = vec![0xff, 0xfe, b'{'];
    assert_eq!(
        r.send(&svc).status,
        StatusCode::BAD_REQUEST,
        "invalid UTF-8"
    );
    let mut r = valid_put("/orders/1");
    r.body = vec![b' '; mockops::gateway::mock::MAX_BODY_BYTES + 1];
    assert_eq!(r.send(&svc).status, StatusCode::PAYLOAD_TOO_LARGE);
    let mut r = valid_put("/orders/1");
    r.headers
        .insert("content-type", HeaderValue::from_static("application/xml"));
    assert_eq!(r.send(&svc).status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut r = valid_put("/orders/1");
    r.headers.insert(
        "x-request-id",
        HeaderValue::from_bytes(b"\xff\xfe-opaque").expect("opaque bytes are a header value"),
    );
    assert_eq!(r.send(&svc).status, StatusCode::BAD_REQUEST);
    let long = "x".repeat(100_000);
    let r = valid_put("/orders/1").header("prefer", &long).send(&svc);
    assert_eq!(r.status, StatusCode::OK, "unknown preferences are ignored");
}

#[test]
fn complete_fills_required_properties_a_real_body_left_out() {
    let (_d, spec, svc) = rich();
    let checker = Checker::new(&spec);
    let done = svc.complete(
        &Method::GET,
        "/orders",
        StatusCode::OK,
        json!([{"id": 3, "items": [{}]}]),
    );
    assert_eq!(done[0]["id"], 3, "present values stay");
    assert!(done[0]["total"].is_number());
    assert!(done[0]["items"][0]["sku"].is_string());
    assert!(
        checker
            .errors(
                "api.yaml",
                "/paths/~1orders/get/responses/200/content/application~1json/schema",
                &done
            )
            .is_empty()
    );
    let unknown = svc.complete(&Method::GET, "/elsewhere", StatusCode::OK, json!({"a": 1}));
    assert_eq!(unknown, json!({"a": 1}));
}

/// Serves `svc` on loopback the way the gateway hands requests to it (a test harness, not the
/// gateway's listener).
async fn serve(svc: MockService) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::body::Body;
    use std::sync::Arc;
    let svc = Arc::new(svc);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let svc = Arc::clone(&svc);
        async move {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
                return axum::response::Response::builder()
                    .status(StatusCode::PAYLOAD_TOO_LARGE)
                    .body(Body::empty())
                    .expect("response");
            };
            let r = svc.respond(&MockRequest {
                method: &parts.method,
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
                body: &bytes,
                persona: None,
            });
            let mut resp = axum::response::Response::new(Body::from(r.body));
            *resp.status_mut() = r.status;
            *resp.headers_mut() = r.headers;
            resp
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (addr, task)
}

/// Schemathesis (installed by `scripts/test`) against the mock of each example OpenAPI spec
/// (and of the parameter-rich one above):
/// valid requests get responses that conform (status, media type, schema) and never a 5xx;
/// invalid requests are rejected with a 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_response_that_violates_the_example_specs() {
    let st = which("st").unwrap_or_else(|| {
        panic!("schemathesis (`st`) is not installed: run scripts/test, which installs it")
    });
    let (rich_dir, _) = inline_spec(RICH);
    let example = example_root();
    for (root, rel) in [
        (example.as_path(), "specs/auth/openapi.json"),
        (example.as_path(), "specs/payments/openapi.yaml"),
        (rich_dir.path(), "api.yaml"),
    ] {
        let svc = MockService::compile(&load_spec(root, rel)).expect("compiles");
        let (addr, task) = serve(svc).await;
        for (mode, checks) in [
            (
                "positive",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            ),
            ("negative", "not_a_server_error,negative_data_rejection"),
        ] {
            let out = tokio::process::Command::new(&st)
                .arg("run")
                .arg(root.join(rel))
                .args(["--url", &format!("http://{addr}")])
                .args(["--mode", mode, "--checks", checks])
                .args(["--max-examples", "25", "--seed", "1", "--no-color"])
                .env("SCHEMATHESIS_HOOKS", "")
                .kill_on_drop(true)
                .output()
                .await
                .expect("schemathesis runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("No issues found"),
                "schemathesis ({mode}) found problems with {rel}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        task.abort();
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Schemathesis against the real daemon's gateway listener: the example repository (with its
/// `auth` member switched to `mock_v3`, so both example OpenAPI specs are mocked) served at
/// `/e-commerce-platform/<base path>`. Valid requests get responses that conform to the spec
/// (status, media type, schema, headers) and never a 5xx, whatever the gateway adds around the
/// mock (routing, its own headers, the traffic record); invalid requests are rejected with a
/// 4xx.
#[test]
fn schemathesis_against_the_daemon_gateway_finds_no_response_that_violates_the_example_specs() {
    use crate::support::daemon::{Daemon, Repo, free_port, http};
    use std::time::{Duration, Instant};

    let st = which("st").unwrap_or_else(|| {
        panic!("schemathesis (`st`) is not installed: run scripts/test, which installs it")
    });
    let repo = Repo::example();
    let federation = repo.read("federations/e-commerce-platform.yaml");
    let mocked = federation.replacen(
        "base_path: /auth\n    reality_level: real",
        "base_path: /auth\n    reality_level: mock_v3",
        1,
    );
    assert_ne!(
        mocked, federation,
        "the example federation names auth as real"
    );
    repo.write("federations/e-commerce-platform.yaml", &mocked);
    repo.commit("auth mocked for the conformance run");

    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let gw_addr = format!("127.0.0.1:{gw_port}");
    let mut d = Daemon::start(repo.path(), state.path(), &["--gateway", &gw_addr]);
    d.wait_ready();

    let example = example_root();
    let scratch = tempfile::tempdir().expect("scratch dir");
    // Each service with a request it routes (a GET on `/login` is a 405 from the mock, not the
    // gateway's 404).
    for (base, rel, probe, operations) in [
        ("/auth", "specs/auth/openapi.json", "/login", 1),
        (
            "/payments",
            "specs/payments/openapi.yaml",
            "/charges/ch_1",
            2,
        ),
    ] {
        let base_url = format!("http://{gw_addr}/e-commerce-platform{base}");
        // The routes come with the applied commit: wait until the service answers from the mock.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match http("GET", &format!("{base_url}{probe}"), None, None) {
                Ok((status, _)) if status != 404 && status != 503 && status < 500 => break,
                other => assert!(
                    Instant::now() < deadline,
                    "{base_url}{probe} never served by the mock: {other:?}\n{}",
                    d.log_text()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for (mode, checks) in [
            (
                "positive",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            ),
            ("negative", "not_a_server_error,negative_data_rejection"),
        ] {
            let started = Instant::now();
            let out = std::process::Command::new(&st)
                .arg("run")
                .arg(example.join(rel))
                .args(["--url", &base_url])
                .args(["--mode", mode, "--checks", checks])
                .args(["--max-examples", "25", "--seed", "1", "--no-color"])
                .args(["--request-timeout", "5"])
                .env("SCHEMATHESIS_HOOKS", "")
                // Its cache goes to the working directory: keep it out of the checkout.
                .current_dir(scratch.path())
                .output()
                .expect("schemathesis runs");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("No issues found"),
                "schemathesis ({mode}) against the gateway found problems with {rel} at {base_url}:\n{}\n{}",
                stdout,
                String::from_utf8_lossy(&out.stderr)
            );
            // Every operation of the spec was exercised through the gateway.
            assert!(
                stdout.contains(&format!("Tested: {operations}")),
                "schemathesis ({mode}) did not test the {operations} operation(s) at {base_url}:\n{stdout}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "schemathesis ({mode}) took {:?}",
                started.elapsed()
            );
        }
    }
    assert!(d.terminate(), "daemon stops cleanly: {}", d.log_text());
}
