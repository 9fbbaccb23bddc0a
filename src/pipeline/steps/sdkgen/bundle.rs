//! Bundling a multi-file OpenAPI description into one document, for generators that do not
//! follow `$ref`s into other files (openapi-python-client omits them, progenitor stops).
//!
//! Every reference into another file is made local: a schema (a `$ref` where a schema is
//! expected) is copied into `components/schemas` once, under the name its pointer or file
//! gives it (`refund.yaml#/Refund` → `Refund`, `schemas/charge.yaml` → `charge`; a clash gets
//! `_2`, `_3` …), and every reference to it points there, so recursive schemas stay recursive.
//! Anything else (a parameter, a response, a path item) is copied in place of its `$ref`.
//! References inside the root document are left as written.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::schema_diff::openapi::{RefTarget, Spec};

/// Why a description could not be bundled.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("`$ref: {reference}` in `{file}` cannot be resolved inside the repository")]
    Unresolved { file: String, reference: String },
    #[error(
        "`{0}` is referenced from itself through copied (non-schema) objects; reference it as a schema or from `components`"
    )]
    Cycle(String),
    #[error("the root document is not a mapping")]
    NotAMapping,
}

/// Keys under which a value is a schema (or a map / list of schemas).
const SCHEMA_KEYS: &[&str] = &[
    "schema",
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
];
const SCHEMA_LIST_KEYS: &[&str] = &["allOf", "anyOf", "oneOf", "prefixItems"];
const SCHEMA_MAP_KEYS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

struct Bundler<'s> {
    spec: &'s Spec,
    /// Canonical key of a hoisted schema → its name in `components/schemas`.
    names: BTreeMap<String, String>,
    /// Hoisted schemas, in the order they were found.
    hoisted: Vec<(String, Value)>,
    taken: BTreeSet<String>,
    /// Non-schema targets being copied (to stop a cycle).
    inlining: Vec<String>,
}

/// One document with every external reference made local. Blocking; runs in time linear in
/// the size of the description.
pub fn bundle(spec: &Spec) -> Result<Value, BundleError> {
    let mut root = spec.root().clone();
    let existing: BTreeSet<String> = root
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut b = Bundler {
        spec,
        names: BTreeMap::new(),
        hoisted: Vec::new(),
        taken: existing,
        inlining: Vec::new(),
    };
    let root_path = spec.root_path.clone();
    b.walk(&mut root, &root_path, false)?;
    if !b.hoisted.is_empty() {
        let obj = root.as_object_mut().ok_or(BundleError::NotAMapping)?;
        let components = obj
            .entry("components")
            .or_insert_with(|| Value::Object(Map::new()));
        if !components.is_object() {
            *components = Value::Object(Map::new());
        }
        if let Some(c) = components.as_object_mut() {
            let schemas = c
                .entry("schemas")
                .or_insert_with(|| Value::Object(Map::new()));
            if !schemas.is_object() {
                *schemas = Value::Object(Map::new());
            }
            if let Some(s) = schemas.as_object_mut() {
                for (name, schema) in b.hoisted {
                    s.insert(name, schema);
                }
            }
        }
    }
    Ok(root)
}

impl Bundler<'_> {
    /// Rewrites the references in `v`, a value of document `file`; `schema` says whether `v`
    /// sits where a schema is expected.
    fn walk(&mut self, v: &mut Value, file: &str, schema: bool) -> Result<(), BundleError> {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    let r = r.clone();
                    let target =
                        self.spec
                            .ref_target(file, &r)
                            .ok_or_else(|| BundleError::Unresolved {
                                file: file.to_string(),
                                reference: r.clone(),
                            })?;
                    if target.file != self.spec.root_path {
                        if schema {
                            let name = self.hoist(&target)?;
                            map.insert(
                                "$ref".into(),
                                Value::String(format!("#/components/schemas/{}", escape(&name))),
                            );
                        } else {
                            let copied = self.inline(&target)?;
                            map.remove("$ref");
                            let siblings = std::mem::take(map);
                            *v = match copied {
                                Value::Object(mut m) => {
                                    m.extend(siblings);
                                    Value::Object(m)
                                }
                                other => other,
                            };
                            return Ok(());
                        }
                    } else if file != self.spec.root_path {
                        // A reference back into the root document, written from another file.
                        map.insert("$ref".into(), Value::String(format!("#{}", target.pointer)));
                    }
                }
                let in_components_schemas = !schema && map.contains_key("schemas");
                for (k, child) in map.iter_mut() {
                    if k == "$ref" {
                        continue;
                    }
                    let k = k.as_str();
                    if SCHEMA_KEYS.contains(&k) {
                        self.walk(child, file, true)?;
                    } else if SCHEMA_LIST_KEYS.contains(&k) && schema {
                        if let Value::Array(items) = child {
                            for item in items {
                                self.walk(item, file, true)?;
                            }
                        }
                    } else if (SCHEMA_MAP_KEYS.contains(&k) && schema)
                        || (k == "schemas" && in_components_schemas)
                    {
                        if let Value::Object(m) = child {
                            for item in m.values_mut() {
                                self.walk(item, file, true)?;
                            }
                        }
                    } else {
                        // Examples, defaults and extensions hold data, not references.
                        if schema
                            && matches!(k, "example" | "examples" | "default" | "enum" | "const")
                        {
                            continue;
                        }
                        self.walk(child, file, false)?;
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item, file, schema)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The name of the schema at `target` in `components/schemas`, copying it there the first
    /// time.
    fn hoist(&mut self, target: &RefTarget) -> Result<String, BundleError> {
        if let Some(n) = self.names.get(&target.key) {
            return Ok(n.clone());
        }
        let (value, resolved) = self.resolve(target)?;
        if resolved.file == self.spec.root_path
            && let Some(n) = resolved.pointer.strip_prefix("/components/schemas/")
            && !n.contains('/')
        {
            // A chain that ends at a schema of the root document: refer to it there.
            let n = n.replace("~1", "/").replace("~0", "~");
            self.names.insert(target.key.clone(), n.clone());
            return Ok(n);
        }
        if resolved.key != target.key
            && let Some(n) = self.names.get(&resolved.key).cloned()
        {
            self.names.insert(target.key.clone(), n.clone());
            return Ok(n);
        }
        let base = schema_name(&resolved);
        let mut name = base.clone();
        let mut i = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        self.names.insert(target.key.clone(), name.clone());
        self.names.insert(resolved.key.clone(), name.clone());
        // Registered before walking, so a schema that refers to itself finds its own name.
        let slot = self.hoisted.len();
        self.hoisted.push((name.clone(), Value::Null));
        let mut copy = value;
        self.walk(&mut copy, &resolved.file, true)?;
        self.hoisted[slot].1 = copy;
        Ok(name)
    }

    fn inline(&mut self, target: &RefTarget) -> Result<Value, BundleError> {
        if self.inlining.contains(&target.key) {
            return Err(BundleError::Cycle(target.key.clone()));
        }
        let (mut value, resolved) = self.resolve(target)?;
        self.inlining.push(target.key.clone());
        let r = self.walk(&mut value, &resolved.file.clone(), false);
        self.inlining.pop();
        r.map(|()| value)
    }

    fn resolve(&self, target: &RefTarget) -> Result<(Value, RefTarget), BundleError> {
        self.spec
            .lookup(target)
            .map(|(v, t)| (v.clone(), t))
            .ok_or_else(|| BundleError::Unresolved {
                file: target.file.clone(),
                reference: target.key.clone(),
            })
    }
}

/// `refund.yaml#/Refund` → `Refund`; `schemas/charge.yaml` → `charge`.
fn schema_name(t: &RefTarget) -> String {
    let raw = t
        .pointer
        .rsplit('/')
        .find(|s| !s.is_empty())
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .unwrap_or_else(|| {
            let file = t.file.rsplit('/').next().unwrap_or(&t.file);
            file.split('.').next().unwrap_or(file).to_string()
        });
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "Schema".into()
    } else {
        clean
    }
}

fn escape(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::revision::{ReadError, RevisionFiles};
    use crate::schema_diff::openapi::load;

    struct Files(BTreeMap<&'static str, &'static str>);
    impl RevisionFiles for Files {
        fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
            self.0
                .get(path)
                .map(|s| s.as_bytes().to_vec())
                .ok_or(ReadError::NotFound)
        }
    }

    const ROOT: &str = r##"
openapi: 3.0.3
info: {title: Payments, version: "1"}
paths:
  /charges/{id}:
    parameters:
      - $ref: "common/params.yaml#/Id"
    get:
      operationId: getCharge
      responses:
        "200":
          description: OK
          content:
            application/json:
              schema:
                $ref: "schemas/charge.yaml"
        default:
          $ref: "common/responses.yaml#/Error"
components:
  schemas:
    Money:
      type: integer
"##;

    fn spec() -> Spec {
        let files = Files(BTreeMap::from([
            ("specs/openapi.yaml", ROOT),
            (
                "specs/schemas/charge.yaml",
                "type: object\nproperties:\n  amount:\n    $ref: \"../openapi.yaml#/components/schemas/Money\"\n  refunds:\n    type: array\n    items:\n      $ref: \"refund.yaml#/Refund\"\n  parent:\n    $ref: \"#\"\n",
            ),
            (
                "specs/schemas/refund.yaml",
                "Refund:\n  type: object\n  properties:\n    charge:\n      $ref: \"charge.yaml\"\n",
            ),
            (
                "specs/common/params.yaml",
                "Id:\n  name: id\n  in: path\n  required: true\n  schema:\n    $ref: \"#/IdSchema\"\nIdSchema:\n  type: string\n",
            ),
            (
                "specs/common/responses.yaml",
                "Error:\n  description: Error\n  content:\n    application/json:\n      schema:\n        type: object\n        properties:\n          message: {type: string}\n",
            ),
        ]));
        load("specs/openapi.yaml", ROOT.as_bytes(), &files).expect("loads")
    }

    #[test]
    fn external_references_become_local_and_recursion_survives() {
        let out = bundle(&spec()).expect("bundles");
        let text = serde_json::to_string(&out).unwrap();
        for r in text
            .match_indices("\"$ref\":\"")
            .map(|(i, _)| &text[i + 8..])
        {
            assert!(r.starts_with("#/"), "not local: {}", &r[..40.min(r.len())]);
        }
        let schemas = &out["components"]["schemas"];
        assert_eq!(schemas["Money"]["type"], "integer");
        assert_eq!(
            out.pointer(
                "/paths/~1charges~1{id}/get/responses/200/content/application~1json/schema/$ref"
            ),
            Some(&Value::from("#/components/schemas/charge"))
        );
        let charge = &schemas["charge"];
        assert_eq!(
            charge["properties"]["amount"]["$ref"],
            "#/components/schemas/Money"
        );
        assert_eq!(
            charge["properties"]["refunds"]["items"]["$ref"],
            "#/components/schemas/Refund"
        );
        assert_eq!(
            charge["properties"]["parent"]["$ref"],
            "#/components/schemas/charge"
        );
        assert_eq!(
            schemas["Refund"]["properties"]["charge"]["$ref"],
            "#/components/schemas/charge"
        );
        // Non-schema objects are copied in place.
        let param = &out["paths"]["/charges/{id}"]["parameters"][0];
        assert_eq!(param["name"], "id");
        assert_eq!(param["schema"]["$ref"], "#/components/schemas/IdSchema");
        assert_eq!(
            out["paths"]["/charges/{id}"]["get"]["responses"]["default"]["description"],
            "Error"
        );
    }
}
