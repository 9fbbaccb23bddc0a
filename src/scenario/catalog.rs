//! The operations of one spec file as scenario steps see them: name, method, path template,
//! parameters and request-body properties. Computed once per spec blob when the loader parses
//! the spec, so validation resolves every step's `action` without reading the spec again.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::schema_diff::openapi::load::Spec;
use crate::schema_diff::openapi::ops;

/// How deep `allOf`/`oneOf`/`anyOf` are followed for body properties.
const MAX_SCHEMA_DEPTH: usize = 8;

/// Every operation of a spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    pub operations: Vec<OperationSig>,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ParamIn {
    Path,
    Query,
    Header,
}

impl ParamIn {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamIn::Path => "path",
            ParamIn::Query => "query",
            ParamIn::Header => "header",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSig {
    pub name: String,
    pub location: ParamIn,
}

/// The request body an operation takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodySig {
    None,
    /// A JSON (or form) body: its top-level properties, or `None` when the schema does not
    /// list them (any key is accepted).
    Json {
        properties: Option<BTreeSet<String>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationSig {
    /// The operationId, the RPC method name, or `METHOD /path` when there is none.
    pub name: String,
    /// Whether `name` is an operationId or RPC name (only those can be named by `action`).
    pub named: bool,
    pub method: String,
    /// The path template (`/charges/{id}`), or `/<package.Service>/<Method>` for gRPC.
    pub path: String,
    pub params: Vec<ParamSig>,
    pub body: BodySig,
    /// For gRPC: the fully qualified input and output message names.
    pub grpc: Option<GrpcSig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcSig {
    pub input: String,
    pub output: String,
}

/// `CreateCharge`, `create_charge` and `create-charge` all become `createcharge`.
pub fn normalize(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl Catalog {
    /// The operation `action` names (case- and separator-insensitively).
    pub fn find(&self, action: &str) -> Option<&OperationSig> {
        let want = normalize(action);
        if want.is_empty() {
            return None;
        }
        self.operations
            .iter()
            .find(|o| o.named && normalize(&o.name) == want)
    }

    /// Names `action` can take.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.operations
            .iter()
            .filter(|o| o.named)
            .map(|o| o.name.as_str())
    }

    /// The catalog of a loaded OpenAPI description.
    pub fn of_openapi(spec: &Spec) -> Catalog {
        let mut operations = Vec::new();
        for op in ops::operations(spec) {
            let id = op.value.get("operationId").and_then(Value::as_str);
            let mut params: Vec<ParamSig> = Vec::new();
            for p in &op.parameters {
                let Some((p, _)) = resolve(spec, &op.file, p) else {
                    continue;
                };
                let name = p.get("name").and_then(Value::as_str);
                let location = match p.get("in").and_then(Value::as_str) {
                    Some("path") => ParamIn::Path,
                    Some("query") => ParamIn::Query,
                    Some("header") => ParamIn::Header,
                    _ => continue,
                };
                if let Some(name) = name {
                    params.retain(|q| !(q.name == name && q.location == location));
                    params.push(ParamSig {
                        name: name.to_string(),
                        location,
                    });
                }
            }
            let body = match op.value.get("requestBody") {
                None => BodySig::None,
                Some(b) => BodySig::Json {
                    properties: body_properties(spec, &op.file, b),
                },
            };
            operations.push(OperationSig {
                name: id.map_or_else(|| op.display(), str::to_string),
                named: id.is_some(),
                method: op.method.to_ascii_uppercase(),
                path: op.path.clone(),
                params,
                body,
                grpc: None,
            });
        }
        Catalog { operations }
    }

    /// The catalog of a `.proto` file: its services' methods, with the fields of input
    /// messages declared in the same file (others accept any field).
    pub fn of_proto(path: &str, bytes: &[u8]) -> Catalog {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Catalog::default();
        };
        let Ok(file) = protox::file::File::from_source(path, text) else {
            return Catalog::default();
        };
        let proto = file.file_descriptor_proto();
        let package = proto.package();
        let qualify = |name: &str| match package {
            "" => name.to_string(),
            p => format!("{p}.{name}"),
        };
        let mut operations = Vec::new();
        for s in &proto.service {
            let service = qualify(s.name());
            for m in &s.method {
                let input = m.input_type().trim_start_matches('.').to_string();
                let local = input
                    .strip_prefix(&format!("{package}."))
                    .unwrap_or(&input)
                    .to_string();
                let properties = proto
                    .message_type
                    .iter()
                    .find(|msg| msg.name() == local)
                    .map(|msg| {
                        msg.field
                            .iter()
                            .flat_map(|f| [f.name().to_string(), lower_camel(f.name())])
                            .collect()
                    });
                operations.push(OperationSig {
                    name: m.name().to_string(),
                    named: true,
                    method: "POST".into(),
                    path: format!("/{service}/{}", m.name()),
                    params: Vec::new(),
                    body: BodySig::Json { properties },
                    grpc: Some(GrpcSig {
                        input,
                        output: m.output_type().trim_start_matches('.').to_string(),
                    }),
                });
            }
        }
        Catalog { operations }
    }
}

/// The catalog of the spec file at `path`; `None` when it does not load.
pub fn of_spec(
    schema_type: crate::schema_diff::SchemaType,
    path: &str,
    bytes: &[u8],
    files: &dyn crate::git::revision::RevisionFiles,
) -> Option<std::sync::Arc<Catalog>> {
    let catalog = match schema_type {
        crate::schema_diff::SchemaType::Protobuf => Catalog::of_proto(path, bytes),
        crate::schema_diff::SchemaType::Openapi => {
            let spec = crate::schema_diff::openapi::load::with_big_stack(|| {
                crate::schema_diff::openapi::load(path, bytes, files)
            })
            .ok()?;
            Catalog::of_openapi(&spec)
        }
    };
    Some(std::sync::Arc::new(catalog))
}

/// The JSON name protobuf gives a field: `item_id` -> `itemId`.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `v` with its `$ref` followed (written in `file`), and the file it lives in.
fn resolve<'s>(spec: &'s Spec, file: &str, v: &'s Value) -> Option<(&'s Value, String)> {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let target = spec.ref_target(file, r)?;
            spec.lookup(&target).map(|(v, t)| (v, t.file))
        }
        None => Some((v, file.to_string())),
    }
}

/// The top-level properties of a request body's JSON (or form) schema; `None` when any key
/// may be sent.
fn body_properties(spec: &Spec, file: &str, body: &Value) -> Option<BTreeSet<String>> {
    let (body, file) = resolve(spec, file, body)?;
    let content = body.get("content")?.as_object()?;
    let media = content
        .iter()
        .find(|(k, _)| k.contains("json"))
        .or_else(|| content.iter().find(|(k, _)| k.contains("form")))
        .map(|(_, m)| m)?;
    let schema = media.get("schema")?;
    let mut out = BTreeSet::new();
    if collect_properties(spec, &file, schema, &mut out, 0) {
        Some(out)
    } else {
        None
    }
}

/// Adds the properties `schema` lists; false when the schema does not close the set (no
/// properties listed anywhere, or a branch that is open).
fn collect_properties(
    spec: &Spec,
    file: &str,
    schema: &Value,
    out: &mut BTreeSet<String>,
    depth: usize,
) -> bool {
    if depth > MAX_SCHEMA_DEPTH {
        return false;
    }
    let Some((schema, file)) = resolve(spec, file, schema) else {
        return false;
    };
    let mut listed = false;
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        out.extend(props.keys().cloned());
        listed = true;
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for s in schema
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !collect_properties(spec, &file, s, out, depth + 1) {
                return false;
            }
            listed = true;
        }
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_across_case_and_separators() {
        assert_eq!(normalize("CreateCharge"), "createcharge");
        assert_eq!(normalize("create_charge"), "createcharge");
        assert_eq!(normalize("create-charge"), "createcharge");
        let cat = Catalog::of_proto(
            "x.proto",
            b"syntax = \"proto3\";\npackage inv.v1;\nservice Inv { rpc ReserveItem(Req) returns (Res); }\nmessage Req { string item_id = 1; }\nmessage Res { string id = 1; }\n",
        );
        let op = cat.find("reserve-item").expect("found");
        assert_eq!(op.path, "/inv.v1.Inv/ReserveItem");
        assert_eq!(
            op.body,
            BodySig::Json {
                properties: Some(["itemId".to_string(), "item_id".to_string()].into())
            }
        );
        assert!(cat.find("reserve").is_none());
    }
}
