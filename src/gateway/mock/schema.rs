//! OpenAPI schemas to JSON Schema 2020-12, once per direction of the exchange.
//!
//! Every schema an operation uses is converted into one *bundle* (`{"$defs": {"0": …}}`) that a
//! `jsonschema` registry holds under [`BUNDLE_URI`]; `$ref`s are rewritten to point into it, so
//! they resolve only inside the loaded [`Spec`] and a validator never fetches anything.
//!
//! OpenAPI 3.0 is converted faithfully: `nullable: true` adds `"null"` (to `type`, and to
//! `enum` when there is one), boolean `exclusiveMinimum`/`exclusiveMaximum` take the numeric
//! form, a `$ref` hides its siblings, and `xml`/`externalDocs`/documentation are dropped (2019-09's `$recursiveRef` inside a component with `$recursiveAnchor` becomes a `$ref` to that component).
//! `discriminator` and `example` are kept for the generator: JSON Schema ignores unknown
//! keywords, so validation is unchanged. Direction: in requests a `readOnly` property is never
//! required, in responses a `writeOnly` one is never required (and never generated).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::schema_diff::openapi::load::{Spec, ref_of};

/// The URI the bundle of converted schemas is registered under.
pub const BUNDLE_URI: &str = "urn:mockops:bundle";
/// What a rewritten `$ref` starts with; the definition's index follows.
pub const REF_PREFIX: &str = "urn:mockops:bundle#/$defs/";

/// Which side of the exchange a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dir {
    Request,
    Response,
}

/// Why a schema could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{file}: `$ref: {reference}` does not resolve inside the loaded description")]
    Ref { file: String, reference: String },
}

/// Converts schemas of one [`Spec`] into the bundle.
pub struct Converter<'s> {
    spec: &'s Spec,
    v30: bool,
    index: HashMap<(String, Dir), usize>,
    defs: Vec<Value>,
    names: Vec<String>,
    /// Where each definition came from: (file, JSON pointer), `("", "")` when unknown.
    origins: Vec<(String, String)>,
    pending: Vec<(usize, String, String, Dir)>,
    /// The definition a `$recursiveRef` (2019-09) in the one being converted points at.
    recursive_anchor: Option<String>,
}

/// The converted definitions and the registry that validators resolve them through.
pub struct Bundle {
    /// `{"$defs": {"0": schema, …}}`, shared with the registry.
    pub doc: Arc<Value>,
    /// The component name each definition came from (`Pet` for `#/components/schemas/Pet`).
    pub names: Vec<String>,
    /// Where each definition came from in the loaded description: (file, JSON pointer of the
    /// schema), `("", "")` when the caller did not say (see [`Converter::root_at`]).
    pub origins: Vec<(String, String)>,
    pub registry: jsonschema::Registry<'static>,
}

impl Bundle {
    /// The definition a rewritten `$ref` names.
    pub fn def(&self, reference: &str) -> Option<(usize, &Value)> {
        let i: usize = reference.strip_prefix(REF_PREFIX)?.parse().ok()?;
        self.doc.get("$defs")?.get(i.to_string()).map(|v| (i, v))
    }

    /// Builds a validator for `schema` (a converted schema: `$ref`s into the bundle).
    pub fn validator(
        &self,
        schema: &Value,
    ) -> Result<jsonschema::Validator, jsonschema::ValidationError<'static>> {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .with_registry(&self.registry)
            .offline()
            .should_validate_formats(true)
            .build(schema)
    }
}

impl<'s> Converter<'s> {
    pub fn new(spec: &'s Spec) -> Self {
        Converter {
            spec,
            v30: spec.version == crate::schema_diff::openapi::OpenapiVersion::V3_0,
            index: HashMap::new(),
            defs: Vec::new(),
            names: Vec::new(),
            origins: Vec::new(),
            pending: Vec::new(),
            recursive_anchor: None,
        }
    }

    /// Converts the schema `schema` found in `file` into a definition of its own and returns
    /// `{"$ref": …}` to it (so a validator's root is always a plain reference).
    pub fn root(&mut self, file: &str, schema: &Value, dir: Dir) -> Result<Value, ConvertError> {
        self.root_at(file, "", schema, dir)
    }

    /// [`Converter::root`] for a schema found at `pointer` in `file`, remembered as the
    /// definition's origin (so a validation error maps back to the spec).
    pub fn root_at(
        &mut self,
        file: &str,
        pointer: &str,
        schema: &Value,
        dir: Dir,
    ) -> Result<Value, ConvertError> {
        let converted = self.convert(file, schema, dir)?;
        let i = self.defs.len();
        self.defs.push(converted);
        self.names.push(String::new());
        self.origins.push(if pointer.is_empty() {
            (String::new(), String::new())
        } else {
            (file.to_string(), pointer.to_string())
        });
        self.drain()?;
        Ok(json!({ "$ref": format!("{REF_PREFIX}{i}") }))
    }

    /// Resolves a non-schema object (parameter, request body, response) through `$ref` chains.
    pub fn resolve<'v>(&self, file: &str, v: &'v Value) -> Option<(&'v Value, String)>
    where
        's: 'v,
    {
        match v.as_object().and_then(ref_of).and_then(Value::as_str) {
            Some(r) => {
                let t = self.spec.ref_target(file, r)?;
                let (v, t) = self.spec.lookup(&t)?;
                Some((v, t.file))
            }
            None => Some((v, file.to_string())),
        }
    }

    fn drain(&mut self) -> Result<(), ConvertError> {
        while let Some((i, file, pointer, dir)) = self.pending.pop() {
            let target = self
                .spec
                .docs
                .get(&file)
                .and_then(|d| d.pointer(&pointer))
                .ok_or_else(|| ConvertError::Ref {
                    file: file.clone(),
                    reference: pointer.clone(),
                })?;
            self.recursive_anchor = (target.get("$recursiveAnchor") == Some(&Value::Bool(true)))
                .then(|| format!("{REF_PREFIX}{i}"));
            self.defs[i] = self.convert(&file, target, dir)?;
            self.recursive_anchor = None;
        }
        Ok(())
    }

    fn reference(&mut self, file: &str, reference: &str, dir: Dir) -> Result<Value, ConvertError> {
        let err = || ConvertError::Ref {
            file: file.to_string(),
            reference: reference.to_string(),
        };
        let t = self.spec.ref_target(file, reference).ok_or_else(err)?;
        let (_, t) = self.spec.lookup(&t).ok_or_else(err)?;
        let i = match self.index.get(&(t.key.clone(), dir)) {
            Some(i) => *i,
            None => {
                let i = self.defs.len();
                self.defs.push(Value::Null);
                self.names
                    .push(t.pointer.rsplit('/').next().unwrap_or_default().to_string());
                self.origins.push((t.file.clone(), t.pointer.clone()));
                self.index.insert((t.key.clone(), dir), i);
                self.pending
                    .push((i, t.file.clone(), t.pointer.clone(), dir));
                i
            }
        };
        Ok(Value::String(format!("{REF_PREFIX}{i}")))
    }

    fn convert(&mut self, file: &str, v: &Value, dir: Dir) -> Result<Value, ConvertError> {
        let Some(map) = v.as_object() else {
            return Ok(v.clone());
        };
        if let Some(Value::String(r)) = ref_of(map) {
            let target = self.reference(file, r, dir)?;
            if self.v30 || map.len() == 1 {
                return Ok(json!({ "$ref": target }));
            }
        }
        let mut out = Map::new();
        for (k, child) in map {
            let conv = match k.as_str() {
                "$ref" => match child.as_str() {
                    Some(r) => self.reference(file, r, dir)?,
                    None => continue,
                },
                "$recursiveRef" => match &self.recursive_anchor {
                    Some(a) => {
                        out.insert("$ref".into(), Value::String(a.clone()));
                        continue;
                    }
                    None => continue,
                },
                "properties" | "patternProperties" | "$defs" | "definitions"
                | "dependentSchemas" => match child.as_object() {
                    Some(props) => {
                        let mut m = Map::new();
                        for (name, s) in props {
                            m.insert(name.clone(), self.convert(file, s, dir)?);
                        }
                        Value::Object(m)
                    }
                    None => child.clone(),
                },
                "items"
                | "additionalProperties"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames"
                | "unevaluatedProperties"
                | "unevaluatedItems"
                | "additionalItems" => match child {
                    Value::Array(items) if k == "items" => {
                        // Tuple form (not OpenAPI, but seen): 2020-12 spells it prefixItems.
                        let mut a = Vec::new();
                        for s in items {
                            a.push(self.convert(file, s, dir)?);
                        }
                        out.insert("prefixItems".into(), Value::Array(a));
                        continue;
                    }
                    _ => self.convert(file, child, dir)?,
                },
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => match child.as_array() {
                    Some(items) => {
                        let mut a = Vec::new();
                        for s in items {
                            a.push(self.convert(file, s, dir)?);
                        }
                        Value::Array(a)
                    }
                    None => child.clone(),
                },
                "discriminator" => {
                    let mut d = child.clone();
                    if let Some(mapping) = d.get_mut("mapping").and_then(Value::as_object_mut) {
                        for (_, target) in mapping.iter_mut() {
                            if let Some(r) = target.as_str().map(str::to_string) {
                                let r = if r.contains('#') || r.contains('/') {
                                    r
                                } else {
                                    format!("#/components/schemas/{r}")
                                };
                                *target = self
                                    .reference(file, &r, dir)
                                    .unwrap_or(Value::String(r.clone()));
                            }
                        }
                    }
                    d
                }
                "xml" | "externalDocs" | "description" | "title" | "deprecated" | "$schema"
                | "$comment" | "nullable" | "$recursiveAnchor" => continue,
                "examples" if self.v30 || !child.is_array() => continue,
                "exclusiveMinimum" | "exclusiveMaximum" if child.is_boolean() => continue,
                "required" => match child.as_array() {
                    // Names only (a YAML 1.1 reader turns `y` into `true`), once each.
                    Some(names) => {
                        let mut kept: Vec<Value> = Vec::new();
                        for n in names {
                            if let Some(name) = n.as_str()
                                && !self.hidden_property(file, map, name, dir)
                                && !kept.contains(n)
                            {
                                kept.push(n.clone());
                            }
                        }
                        Value::Array(kept)
                    }
                    None => child.clone(),
                },
                _ if k.starts_with("x-") => continue,
                _ => child.clone(),
            };
            out.insert(k.clone(), conv);
        }
        // Boolean exclusive bounds (3.0) become the numeric form.
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            if map.get(flag) == Some(&Value::Bool(true))
                && let Some(b) = out.remove(bound)
            {
                out.insert(flag.into(), b);
            }
        }
        if self.v30 && map.get("nullable") == Some(&Value::Bool(true)) {
            return Ok(nullable(out));
        }
        Ok(Value::Object(out))
    }

    /// True when property `name` of the object schema `map` is `readOnly` in a request or
    /// `writeOnly` in a response.
    fn hidden_property(&self, file: &str, map: &Map<String, Value>, name: &str, dir: Dir) -> bool {
        let Some(prop) = map.get("properties").and_then(|p| p.get(name)) else {
            return false;
        };
        let flag = match dir {
            Dir::Request => "readOnly",
            Dir::Response => "writeOnly",
        };
        if prop.get(flag) == Some(&Value::Bool(true)) {
            return true;
        }
        self.resolve(file, prop)
            .is_some_and(|(v, _)| v.get(flag) == Some(&Value::Bool(true)))
    }

    /// The finished bundle with its registry.
    pub fn finish(self) -> Result<Bundle, jsonschema::ReferencingError> {
        let mut defs = Map::new();
        for (i, d) in self.defs.into_iter().enumerate() {
            defs.insert(i.to_string(), d);
        }
        let doc = Arc::new(json!({ "$defs": defs }));
        let registry = jsonschema::Registry::new()
            .draft(jsonschema::Draft::Draft202012)
            .add(BUNDLE_URI, Arc::clone(&doc))?
            .prepare()?;
        Ok(Bundle {
            doc,
            names: self.names,
            origins: self.origins,
            registry,
        })
    }
}

/// `nullable: true` (3.0) in JSON Schema terms.
fn nullable(mut out: Map<String, Value>) -> Value {
    match out.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            out.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(ts)) => {
            if !ts.iter().any(|t| t == "null") {
                ts.push("null".into());
            }
        }
        Some(_) => {}
        None => {
            if out.contains_key("$ref")
                || out.contains_key("allOf")
                || out.contains_key("oneOf")
                || out.contains_key("anyOf")
            {
                return json!({ "anyOf": [Value::Object(out), {"type": "null"}] });
            }
        }
    }
    if let Some(Value::Array(e)) = out.get_mut("enum")
        && !e.contains(&Value::Null)
    {
        e.push(Value::Null);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(version: &str, schemas: Value) -> Spec {
        let v = if version == "3.0" {
            crate::schema_diff::openapi::OpenapiVersion::V3_0
        } else {
            crate::schema_diff::openapi::OpenapiVersion::V3_1
        };
        Spec {
            version: v,
            root_path: "a.yaml".into(),
            docs: BTreeMap::from([(
                "a.yaml".to_string(),
                json!({"openapi": "3.0.3", "paths": {}, "components": {"schemas": schemas}}),
            )]),
        }
    }

    #[test]
    fn openapi_30_keywords_are_converted() {
        let s = spec("3.0", json!({}));
        let mut c = Converter::new(&s);
        let v = c
            .convert(
                "a.yaml",
                &json!({"type": "integer", "nullable": true, "minimum": 1, "exclusiveMinimum": true,
                        "enum": [2, 3], "xml": {"name": "x"}, "example": 2}),
                Dir::Response,
            )
            .expect("converts");
        assert_eq!(
            v,
            json!({"type": ["integer", "null"], "exclusiveMinimum": 1, "enum": [2, 3, null], "example": 2})
        );
    }

    #[test]
    fn refs_point_into_the_bundle_and_direction_hides_required() {
        let s = spec(
            "3.0",
            json!({"P": {"type": "object", "required": ["id", "pw"],
                "properties": {"id": {"type": "string", "readOnly": true},
                               "pw": {"type": "string", "writeOnly": true}}}}),
        );
        let mut c = Converter::new(&s);
        let req = c
            .root(
                "a.yaml",
                &json!({"$ref": "#/components/schemas/P"}),
                Dir::Request,
            )
            .expect("converts");
        let resp = c
            .root(
                "a.yaml",
                &json!({"$ref": "#/components/schemas/P"}),
                Dir::Response,
            )
            .expect("converts");
        let b = c.finish().expect("bundle");
        let v = b.validator(&req).expect("validator");
        assert!(v.is_valid(&json!({"pw": "x"})));
        assert!(!v.is_valid(&json!({"id": "x"})));
        let v = b.validator(&resp).expect("validator");
        assert!(v.is_valid(&json!({"id": "x"})));
        assert!(!v.is_valid(&json!({"id": 1})));
    }
}
