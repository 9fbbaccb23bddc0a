//! One observation held against its service's contract: the status declared (exact, range
//! `2XX`, or `default`), the content type declared, required headers present, and JSON bodies
//! valid under their schema. Each disagreement is a [`Finding`]: its kind, where it is in the
//! exchange (JSON pointer) and in the spec files (the file a `$ref` leads to and the pointer
//! of the node to change), what the spec says and what was seen.
//!
//! Validation errors of the `jsonschema` crate are mapped back to the original spec through
//! the converter's bundle: each definition remembers the file and pointer it came from, and
//! the path inside a definition is walked alongside the original schema (undoing what the
//! conversion changed: the `anyOf` that wraps a 3.0 `nullable` schema, `items` tuples).
//!
//! Lenient where JSON Schema is stricter than what a reader of the spec means: integers are
//! numbers, and a `oneOf` that more than one branch accepts is fine (a discriminator, or the
//! reader, picks the branch).

use serde_json::Value;

use super::contracts::{Contract, ContractMedia, ContractOperation, SpecPlace};
use super::incident::{Direction, IncidentKind, Location};
use super::observation::{Observation, ObservationSource, ObservedBody, Outcome};
use crate::gateway::mock::negotiate::{covers, essence, is_json};
use crate::gateway::mock::schema::REF_PREFIX;
use crate::schema_diff::openapi::load::escape_pointer;

/// Most findings taken from one body (a body wrong everywhere is still a few incidents).
pub const MAX_FINDINGS: usize = 50;
/// Most bytes of a non-JSON body kept as a sample.
const MAX_TEXT_SAMPLE: usize = 1024;

/// One disagreement between an observation and the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: IncidentKind,
    pub location: Location,
    pub expected: String,
    pub observed: String,
    /// The observed value at `location.pointer` (for a missing required property, the object
    /// that lacks it; for an undeclared status or content type, the whole body).
    pub value: Value,
}

/// What one validation found.
#[derive(Debug, Default, PartialEq)]
pub struct Validated {
    pub findings: Vec<Finding>,
    /// Bodies not validated: over the cap, too deeply nested, not JSON although declared so.
    pub skipped: Vec<String>,
    /// The path matched no operation of the spec.
    pub unmatched: bool,
    /// The matched operation's `"METHOD /template"`.
    pub endpoint: Option<String>,
    /// The response body, parsed, when it was JSON (kept as evidence for re-validation).
    pub response_json: Option<Value>,
}

/// Validates `o` (an answered observation) against `c`. A failed observation validates to
/// nothing: it is not drift.
pub fn validate(c: &Contract, o: &Observation) -> Validated {
    let mut v = Validated::default();
    let Outcome::Answered(resp) = &o.outcome else {
        return v;
    };
    let Some(i) = c.operation_for(&o.request.method, &o.request.path) else {
        v.unmatched = true;
        return v;
    };
    let op = &c.operations[i];
    v.endpoint = Some(op.endpoint());
    let base = |direction: Direction, status: u16| Location {
        service: c.service.clone(),
        method: op.method.clone(),
        path: op.template.clone(),
        operation_id: op.operation_id.clone(),
        direction,
        status,
        content_type: None,
        pointer: String::new(),
        spec_file: String::new(),
        spec_pointer: String::new(),
    };
    // The request, when it was the client's (a probe's request is built from the spec).
    if matches!(
        o.source,
        ObservationSource::Gateway | ObservationSource::Api
    ) {
        for h in &op.request_headers {
            if !o.request.headers.iter().any(|(n, _)| *n == h.name) {
                v.findings.push(finding(
                    IncidentKind::MissingRequiredHeader,
                    Location {
                        pointer: h.name.clone(),
                        ..base(Direction::Request, 0)
                    },
                    &h.place,
                    format!("header `{}` required", h.name),
                    "absent".into(),
                    Value::Null,
                ));
            }
        }
        if let Some(body) = &op.request {
            let ct = header(&o.request.headers, "content-type");
            check_body(
                c,
                op,
                &body.media,
                &body.place,
                ct,
                &o.request.body,
                base(Direction::Request, 0),
                &mut v,
                false,
            );
        }
    }
    // The response.
    let status = resp.status;
    let Some(declared) = op.response_for(status) else {
        let keys: Vec<&str> = op.responses.iter().map(|r| r.key.as_str()).collect();
        v.findings.push(finding(
            IncidentKind::UndeclaredStatus,
            Location {
                content_type: header(&resp.headers, "content-type").map(essence),
                ..base(Direction::Response, status)
            },
            &op.place.child_place("responses"),
            format!("statuses {}", keys.join(", ")),
            format!("status {status}"),
            body_value(&resp.body),
        ));
        if let ObservedBody::Skipped { .. } = resp.body {
            v.skipped.push("response body over the size cap".into());
        }
        return v;
    };
    for h in &declared.headers {
        if !resp.headers.iter().any(|(n, _)| *n == h.name) {
            v.findings.push(finding(
                IncidentKind::MissingRequiredHeader,
                Location {
                    pointer: h.name.clone(),
                    ..base(Direction::Response, status)
                },
                &h.place,
                format!("header `{}` required", h.name),
                "absent".into(),
                Value::Null,
            ));
        }
    }
    let ct = header(&resp.headers, "content-type");
    let json = check_body(
        c,
        op,
        &declared.media,
        &declared.place,
        ct,
        &resp.body,
        base(Direction::Response, status),
        &mut v,
        true,
    );
    v.response_json = json;
    v
}

impl SpecPlace {
    fn child_place(&self, segment: &str) -> SpecPlace {
        SpecPlace {
            file: self.file.clone(),
            pointer: format!("{}/{}", self.pointer, escape_pointer(segment)),
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn finding(
    kind: IncidentKind,
    mut location: Location,
    place: &SpecPlace,
    expected: String,
    observed: String,
    value: Value,
) -> Finding {
    location.spec_file = place.file.clone();
    location.spec_pointer = place.pointer.clone();
    Finding {
        kind,
        location,
        expected,
        observed,
        value,
    }
}

/// The body as a sample: its JSON, else its text (capped), else a note.
fn body_value(b: &ObservedBody) -> Value {
    match b {
        ObservedBody::None => Value::Null,
        ObservedBody::Skipped { size } => Value::String(format!("[{size} bytes, not kept]")),
        ObservedBody::Bytes(bytes) => match parse(bytes) {
            Ok(v) => v,
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT_SAMPLE)]);
                Value::String(text.into_owned())
            }
        },
    }
}

/// Why a body was not parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("skipped: too deep (nested beyond serde_json's limit of 128)")]
    TooDeep,
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// Parses a JSON body with serde_json's recursion limit (128): deeper nesting is an error,
/// never a blown stack.
pub fn parse(bytes: &[u8]) -> Result<Value, ParseError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            ParseError::TooDeep
        } else {
            ParseError::NotJson(e.to_string())
        }
    })
}

/// Checks content type and body; returns the parsed body when it was JSON.
#[allow(clippy::too_many_arguments)]
fn check_body(
    c: &Contract,
    _op: &ContractOperation,
    media: &[ContractMedia],
    place: &SpecPlace,
    content_type: Option<&str>,
    body: &ObservedBody,
    base: Location,
    v: &mut Validated,
    response: bool,
) -> Option<Value> {
    let has_body = match body {
        ObservedBody::None => false,
        ObservedBody::Bytes(b) => !b.is_empty(),
        ObservedBody::Skipped { .. } => true,
    };
    if !has_body {
        return None;
    }
    let observed_ct = content_type.map(essence);
    let found = match &observed_ct {
        Some(ct) => media.iter().find(|m| covers(&m.media_type, ct)),
        // No content type: the body can only be held against a declared JSON type.
        None => media.iter().find(|m| is_json(&m.media_type)),
    };
    let Some(m) = found else {
        let declared: Vec<&str> = media.iter().map(|m| m.media_type.as_str()).collect();
        if !response && media.is_empty() {
            return None;
        }
        v.findings.push(finding(
            IncidentKind::UndeclaredContentType,
            Location {
                content_type: observed_ct.clone(),
                ..base
            },
            &place.child_place("content"),
            if declared.is_empty() {
                "no body".into()
            } else {
                format!("content types {}", declared.join(", "))
            },
            observed_ct.clone().map_or_else(
                || "no content type".into(),
                |ct| format!("content type {ct}"),
            ),
            body_value(body),
        ));
        return None;
    };
    let ct = observed_ct.unwrap_or_else(|| m.media_type.clone());
    if !is_json(&ct) {
        return None;
    }
    let bytes = match body {
        ObservedBody::Bytes(b) => b,
        ObservedBody::Skipped { size } => {
            v.skipped
                .push(format!("body of {size} bytes over the size cap"));
            return None;
        }
        ObservedBody::None => return None,
    };
    let value = match parse(bytes) {
        Ok(value) => value,
        Err(e) => {
            v.skipped.push(e.to_string());
            return None;
        }
    };
    if let Some(validator) = &m.validator {
        let mut out = Vec::new();
        for e in validator.iter_errors(&value) {
            map_error(c, &e, &value, &mut out);
            if out.len() >= MAX_FINDINGS {
                break;
            }
        }
        for b in out {
            v.findings.push(Finding {
                kind: b.kind,
                location: Location {
                    content_type: Some(ct.clone()),
                    pointer: b.pointer,
                    spec_file: b.place.file,
                    spec_pointer: b.place.pointer,
                    ..base.clone()
                },
                expected: b.expected,
                observed: b.observed,
                value: b.value,
            });
        }
    }
    Some(value)
}

/// A body finding before it is located in the exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyFinding {
    pub kind: IncidentKind,
    pub pointer: String,
    pub place: SpecPlace,
    pub expected: String,
    pub observed: String,
    pub value: Value,
}

/// The JSON type name of `v` (`integer` for whole numbers).
pub fn type_name(v: &Value) -> &'static str {
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

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        let mut end = 77;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s
    }
}

/// Where a keyword is in the bundle: the definition and the segments inside it.
fn keyword_location(e: &jsonschema::ValidationError<'_>) -> Option<(usize, Vec<String>)> {
    let uri = e.absolute_keyword_location()?;
    let s = uri.as_str();
    let (_, fragment) = s.split_once('#')?;
    let fragment = crate::gateway::mock::router::percent_decode(fragment)?;
    let rest = fragment.strip_prefix("/$defs/")?;
    let mut segs = rest.split('/');
    let i: usize = segs.next()?.parse().ok()?;
    Some((
        i,
        segs.map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    ))
}

/// The place in the original spec of the schema holding the keyword at `(def, segments)`
/// (the keyword itself, the last segment, dropped), and the converted schema node.
fn original_place(c: &Contract, def: usize, segs: &[String]) -> SpecPlace {
    let (file, pointer) = c.bundle.origins.get(def).cloned().unwrap_or_default();
    let mut node = c.spec.docs.get(&file).and_then(|d| d.pointer(&pointer));
    let mut out = pointer;
    let parents = &segs[..segs.len().saturating_sub(1)];
    let mut k = 0;
    while k < parents.len() {
        let seg = &parents[k];
        let obj = node.and_then(Value::as_object);
        // The `anyOf` a 3.0 `nullable` schema was wrapped in: its first branch is the schema.
        if seg == "anyOf"
            && obj.is_some_and(|o| !o.contains_key("anyOf") && o.contains_key("nullable"))
        {
            k += 2;
            continue;
        }
        let seg = if seg == "prefixItems"
            && obj.is_some_and(|o| o.get("items").is_some_and(Value::is_array))
        {
            "items"
        } else {
            seg.as_str()
        };
        out.push('/');
        out.push_str(&escape_pointer(seg));
        node = node.and_then(|n| match n {
            Value::Object(o) => o.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
        k += 1;
    }
    SpecPlace { file, pointer: out }
}

/// The converted schema node holding the keyword at `(def, segments)`.
fn converted_node<'b>(c: &'b Contract, def: usize, segs: &[String]) -> Option<&'b Value> {
    let mut node = c.bundle.doc.get("$defs")?.get(def.to_string())?;
    for seg in &segs[..segs.len().saturating_sub(1)] {
        node = match node {
            Value::Object(o) => o.get(seg.as_str())?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn join(pointer: &str, name: &str) -> String {
    format!("{pointer}/{}", escape_pointer(name))
}

/// Maps one validation error to body findings (recursing into the branch of a failed
/// `oneOf`/`anyOf` that the discriminator names, else the one with the fewest errors).
pub fn map_error(
    c: &Contract,
    e: &jsonschema::ValidationError<'_>,
    root: &Value,
    out: &mut Vec<BodyFinding>,
) {
    use jsonschema::error::ValidationErrorKind as K;
    let instance_pointer = e.instance_path().to_string();
    let instance = root.pointer(&instance_pointer).unwrap_or(&Value::Null);
    let (def, segs) = keyword_location(e).unwrap_or((0, Vec::new()));
    let place = original_place(c, def, &segs);
    let schema = converted_node(c, def, &segs);
    let push = |out: &mut Vec<BodyFinding>,
                kind: IncidentKind,
                pointer: String,
                expected: String,
                observed: String,
                value: Value| {
        out.push(BodyFinding {
            kind,
            pointer,
            place: place.clone(),
            expected,
            observed,
            value,
        });
    };
    match e.kind() {
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            push(
                out,
                IncidentKind::MissingRequiredProperty,
                join(&instance_pointer, name),
                format!("required property `{name}`"),
                "absent".into(),
                instance.clone(),
            );
        }
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            let declared: Vec<String> = schema
                .and_then(|s| s.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            for name in unexpected {
                push(
                    out,
                    IncidentKind::UndocumentedProperty,
                    join(&instance_pointer, name),
                    if declared.is_empty() {
                        "no further properties".into()
                    } else {
                        format!("properties {}", declared.join(", "))
                    },
                    format!("property `{name}`"),
                    instance.get(name).cloned().unwrap_or(Value::Null),
                );
            }
        }
        K::FalseSchema => {
            let parent = segs.iter().rev().nth(1).map(String::as_str);
            let kind = if matches!(
                parent,
                Some("additionalProperties" | "unevaluatedProperties")
            ) {
                IncidentKind::UndocumentedProperty
            } else {
                IncidentKind::TypeMismatch
            };
            push(
                out,
                kind,
                instance_pointer,
                "nothing".into(),
                type_name(instance).into(),
                instance.clone(),
            );
        }
        K::Type { .. } => {
            let expected = schema
                .and_then(|s| s.get("type"))
                .map(|t| match t {
                    Value::Array(ts) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    other => other.as_str().unwrap_or_default().to_string(),
                })
                .unwrap_or_default();
            push(
                out,
                IncidentKind::TypeMismatch,
                instance_pointer,
                format!("type {expected}"),
                type_name(instance).into(),
                instance.clone(),
            );
        }
        K::Enum { options } => push(
            out,
            IncidentKind::EnumValueNotInSpec,
            instance_pointer,
            format!("enum {}", short(options)),
            short(instance),
            instance.clone(),
        ),
        K::Constant { expected_value } => push(
            out,
            IncidentKind::EnumValueNotInSpec,
            instance_pointer,
            format!("const {}", short(expected_value)),
            short(instance),
            instance.clone(),
        ),
        K::Format { format } => push(
            out,
            IncidentKind::FormatViolation,
            instance_pointer,
            format!("format {format}"),
            short(instance),
            instance.clone(),
        ),
        K::Pattern { pattern } => push(
            out,
            IncidentKind::FormatViolation,
            instance_pointer,
            format!("pattern {pattern}"),
            short(instance),
            instance.clone(),
        ),
        K::OneOfMultipleValid { .. } => {}
        K::OneOfNotValid { context } | K::AnyOf { context } => {
            let branch = discriminated(c, schema, instance, segs.last().map(String::as_str))
                .or_else(|| {
                    let branches = segs
                        .last()
                        .and_then(|k| schema.and_then(|s| s.get(k.as_str())))
                        .and_then(Value::as_array);
                    context
                        .iter()
                        .enumerate()
                        .filter(|(_, errs)| !errs.is_empty())
                        // The `null` branch of a 3.0 `nullable` is never the one meant.
                        .filter(|(i, _)| {
                            branches.and_then(|b| b.get(*i))
                                != Some(&serde_json::json!({"type": "null"}))
                        })
                        .min_by_key(|(_, errs)| errs.len())
                        .map(|(i, _)| i)
                });
            if let Some(errs) = branch.and_then(|b| context.get(b)) {
                for sub in errs {
                    map_error(c, sub, root, out);
                }
            }
        }
        K::Referencing(_) | K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {}
        // Bounds and sizes: the value is of the right type but outside what the spec allows.
        _ => push(
            out,
            IncidentKind::FormatViolation,
            instance_pointer,
            format!(
                "{} {}",
                e.kind().keyword(),
                limit_of(schema, e.kind().keyword())
            ),
            short(instance),
            instance.clone(),
        ),
    }
}

fn limit_of(schema: Option<&Value>, keyword: &str) -> String {
    schema
        .and_then(|s| s.get(keyword))
        .map(short)
        .unwrap_or_default()
}

/// The branch of the `oneOf`/`anyOf` at `schema` that its discriminator names for `instance`.
fn discriminated(
    c: &Contract,
    schema: Option<&Value>,
    instance: &Value,
    keyword: Option<&str>,
) -> Option<usize> {
    let schema = schema?;
    let d = schema.get("discriminator")?;
    let prop = d.get("propertyName")?.as_str()?;
    let tag = instance.get(prop)?.as_str()?;
    let branches = schema.get(keyword?)?.as_array()?;
    let target = d
        .get("mapping")
        .and_then(|m| m.get(tag))
        .and_then(Value::as_str)
        .map(str::to_string);
    branches.iter().position(|b| {
        let Some(r) = b.get("$ref").and_then(Value::as_str) else {
            return false;
        };
        match &target {
            Some(t) => t == r,
            None => r
                .strip_prefix(REF_PREFIX)
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| c.bundle.names.get(i))
                .is_some_and(|n| n == tag),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::observation::{ObservedRequest, ObservedResponse};
    use crate::git::revision::{ReadError, RevisionFiles};
    use serde_json::json;

    pub(crate) const PETS: &str = r##"openapi: 3.0.3
info: {title: pets, version: "1"}
paths:
  /pets/{id}:
    get:
      operationId: getPet
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}, example: "1"}
      responses:
        "200":
          description: ok
          headers:
            X-Rate-Limit: {required: true, schema: {type: integer}}
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Pet"}
        "4XX":
          description: client error
components:
  schemas:
    Pet:
      type: object
      additionalProperties: false
      required: [id, name, status]
      properties:
        id: {type: integer}
        name: {type: string}
        nickname: {type: string, nullable: true}
        status: {type: string, enum: [available, sold]}
        born: {type: string, format: date-time}
        weight: {type: number}
        tag:
          nullable: true
          allOf: [{$ref: "#/components/schemas/Tag"}]
        owner: {$ref: "common.yaml#/components/schemas/Owner"}
        animal:
          oneOf: [{$ref: "#/components/schemas/Cat"}, {$ref: "#/components/schemas/Dog"}]
          discriminator: {propertyName: kind}
    Tag:
      type: object
      required: [label]
      properties: {label: {type: string}}
    Cat:
      type: object
      required: [kind]
      properties: {kind: {type: string}, meow: {type: boolean}}
    Dog:
      type: object
      required: [kind, bark]
      properties: {kind: {type: string}, bark: {type: boolean}}
"##;

    pub(crate) const COMMON: &str = r#"components:
  schemas:
    Owner:
      type: object
      required: [name]
      properties: {name: {type: string}}
"#;

    struct Files;
    impl RevisionFiles for Files {
        fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
            match path {
                "specs/common.yaml" => Ok(COMMON.as_bytes().to_vec()),
                _ => Err(ReadError::NotFound),
            }
        }
    }

    fn contract() -> Contract {
        let spec = crate::schema_diff::openapi::load("specs/pets.yaml", PETS.as_bytes(), &Files)
            .expect("spec loads");
        Contract::from_spec("pets", spec).expect("compiles")
    }

    fn observe(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Observation {
        Observation {
            service: "pets".into(),
            federation: None,
            source: ObservationSource::Probe,
            at_ms: 0,
            request: ObservedRequest {
                method: "GET".into(),
                path: "/pets/1".into(),
                query: None,
                headers: Vec::new(),
                body: ObservedBody::None,
            },
            outcome: Outcome::Answered(ObservedResponse {
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                body: ObservedBody::Bytes(bytes::Bytes::copy_from_slice(body)),
            }),
        }
    }

    const OK_HEADERS: &[(&str, &str)] = &[
        ("content-type", "application/json; charset=utf-8"),
        ("x-rate-limit", "10"),
    ];

    fn findings(c: &Contract, body: Value) -> Vec<(IncidentKind, String, String, String)> {
        let v = validate(c, &observe(200, OK_HEADERS, body.to_string().as_bytes()));
        v.findings
            .into_iter()
            .map(|f| {
                (
                    f.kind,
                    f.location.pointer,
                    f.location.spec_file,
                    f.location.spec_pointer,
                )
            })
            .collect()
    }

    #[test]
    fn a_body_valid_under_the_spec_is_never_a_finding() {
        let c = contract();
        let body = json!({
            "id": 1, "name": "Rex", "status": "sold", "nickname": null, "weight": 3,
            "born": "2024-01-02T03:04:05Z", "tag": null,
            "owner": {"name": "Ann", "extra": "open additionalProperties"},
            "animal": {"kind": "cat", "meow": true, "bark": true}
        });
        assert_eq!(findings(&c, body), vec![]);
        let body = json!({"id": 1, "name": "Rex", "status": "sold", "tag": {"label": "x"},
                          "animal": {"kind": "Dog", "bark": false}, "weight": 2.5});
        assert_eq!(findings(&c, body), vec![]);
    }

    #[test]
    fn body_findings_are_located_in_the_body_and_the_spec() {
        let c = contract();
        let pet = "/components/schemas/Pet";
        let body = json!({
            "id": "7", "status": "pending", "extra": 1, "born": "yesterday",
            "owner": {}, "tag": {"label": 5}, "animal": {"kind": "Cat", "meow": "yes"}
        });
        let mut got = findings(&c, body);
        got.sort();
        let f =
            |k, p: &str, file: &str, sp: &str| (k, p.to_string(), file.to_string(), sp.to_string());
        let mut want = vec![
            f(
                IncidentKind::MissingRequiredProperty,
                "/name",
                "specs/pets.yaml",
                pet,
            ),
            f(
                IncidentKind::UndocumentedProperty,
                "/extra",
                "specs/pets.yaml",
                pet,
            ),
            f(
                IncidentKind::TypeMismatch,
                "/id",
                "specs/pets.yaml",
                "/components/schemas/Pet/properties/id",
            ),
            f(
                IncidentKind::EnumValueNotInSpec,
                "/status",
                "specs/pets.yaml",
                "/components/schemas/Pet/properties/status",
            ),
            f(
                IncidentKind::FormatViolation,
                "/born",
                "specs/pets.yaml",
                "/components/schemas/Pet/properties/born",
            ),
            f(
                IncidentKind::MissingRequiredProperty,
                "/owner/name",
                "specs/common.yaml",
                "/components/schemas/Owner",
            ),
            f(
                IncidentKind::TypeMismatch,
                "/tag/label",
                "specs/pets.yaml",
                "/components/schemas/Tag/properties/label",
            ),
            f(
                IncidentKind::TypeMismatch,
                "/animal/meow",
                "specs/pets.yaml",
                "/components/schemas/Cat/properties/meow",
            ),
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn statuses_content_types_and_headers() {
        let c = contract();
        let v = validate(
            &c,
            &observe(500, &[("content-type", "text/plain")], b"boom"),
        );
        assert_eq!(v.findings.len(), 1);
        let f = &v.findings[0];
        assert_eq!(f.kind, IncidentKind::UndeclaredStatus);
        assert_eq!(f.location.spec_pointer, "/paths/~1pets~1{id}/get/responses");
        assert_eq!(f.expected, "statuses 200, 4XX");
        assert_eq!(f.value, json!("boom"));
        // 404 is declared by `4XX`, without a body.
        let v = validate(&c, &observe(404, &[], b""));
        assert_eq!(v.findings, vec![]);
        let v = validate(&c, &observe(200, &[("content-type", "text/html")], b"<p>"));
        assert_eq!(
            v.findings.iter().map(|f| f.kind).collect::<Vec<_>>(),
            vec![
                IncidentKind::MissingRequiredHeader,
                IncidentKind::UndeclaredContentType
            ]
        );
        assert_eq!(v.findings[0].location.pointer, "x-rate-limit");
        assert_eq!(
            v.findings[0].location.spec_pointer,
            "/paths/~1pets~1{id}/get/responses/200/headers/X-Rate-Limit"
        );
        assert_eq!(
            v.findings[1].location.spec_pointer,
            "/paths/~1pets~1{id}/get/responses/200/content"
        );
        // An unknown path is not drift of an operation.
        let mut o = observe(200, OK_HEADERS, b"{}");
        o.request.path = "/nowhere".into();
        assert!(validate(&c, &o).unmatched);
    }

    #[test]
    fn hostile_bodies_are_skipped_not_validated() {
        let c = contract();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let v = validate(&c, &observe(200, OK_HEADERS, deep.as_bytes()));
        assert_eq!(v.findings, vec![]);
        assert_eq!(
            v.skipped,
            vec!["skipped: too deep (nested beyond serde_json's limit of 128)".to_string()]
        );
        let v = validate(&c, &observe(200, OK_HEADERS, b"{\"name\": \"\xff\xfe\"}"));
        assert_eq!(v.findings, vec![]);
        assert!(v.skipped[0].starts_with("not JSON"), "{:?}", v.skipped);
        let mut huge = String::from("[");
        for i in 0..200_000 {
            if i > 0 {
                huge.push(',');
            }
            huge.push_str("{\"id\":1}");
        }
        huge.push(']');
        let v = validate(&c, &observe(200, OK_HEADERS, huge.as_bytes()));
        assert_eq!(v.findings.len(), 1);
        assert_eq!(v.findings[0].kind, IncidentKind::TypeMismatch);
        assert_eq!(v.findings[0].observed, "array");
    }
}
