//! Checks that a spec file under `specs/` is a usable API description: an OpenAPI 3.0/3.1
//! document (or a fragment other documents `$ref`), or a .proto file that compiles.

use crate::config::diag::Diagnostic;
use crate::config::yaml::{self, Limits, Loc, Node, Value};
use crate::git::revision::RevisionFiles;
use crate::schema_diff::SchemaType;

/// Whether the file is a whole document (not a `$ref` fragment), and its diagnostics (empty
/// when it is fine; with an empty `file`).
pub fn check_spec(
    schema_type: SchemaType,
    path: &str,
    bytes: &[u8],
    files: &dyn RevisionFiles,
) -> (bool, Vec<Diagnostic>) {
    match schema_type {
        SchemaType::Openapi => check_openapi(path, bytes, files),
        SchemaType::Protobuf => (true, check_proto(path, files)),
    }
}

/// The fully qualified services (`package.Service`) a .proto file declares; none when it
/// does not parse (its diagnostics say why).
pub fn grpc_services(path: &str, bytes: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    let Ok(file) = protox::file::File::from_source(path, text) else {
        return Vec::new();
    };
    let proto = file.file_descriptor_proto();
    proto
        .service
        .iter()
        .map(|s| match proto.package() {
            "" => s.name().to_string(),
            p => format!("{p}.{}", s.name()),
        })
        .collect()
}

/// The diff engine's own load of the parsed document: `$ref`s that dangle or leave the
/// repository, unreadable external files. Problems in another file are reported here, naming
/// that file.
fn check_refs(path: &str, bytes: &[u8], root: &Node, files: &dyn RevisionFiles) -> Vec<Diagnostic> {
    match crate::schema_diff::openapi::load_root(path, bytes, root.to_json(), files) {
        Ok(_) => Vec::new(),
        Err(e) => e
            .problems()
            .into_iter()
            .map(|p| {
                let to_u32 = |v: Option<u64>| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(1);
                if p.path == path {
                    spec_error(Loc::new(to_u32(p.line), to_u32(p.column)), p.message)
                } else {
                    spec_error(Loc::new(1, 1), p.to_string())
                }
            })
            .collect(),
    }
}

fn spec_error(loc: Loc, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error("invalid-spec", "", loc, message)
}

fn check_openapi(path: &str, bytes: &[u8], files: &dyn RevisionFiles) -> (bool, Vec<Diagnostic>) {
    // JSON is YAML 1.2: one parser gives locations for both.
    let node = match yaml::parse(bytes, Limits::SPEC) {
        Ok(n) => n,
        Err(e) => {
            let d = Diagnostic::error(
                "invalid-spec",
                "",
                e.loc(),
                format!("spec does not parse: {e}"),
            )
            .with_hint_opt(e.hint());
            return (true, vec![d]);
        }
    };
    if !matches!(node.value, Value::Map(_)) {
        return (
            true,
            vec![spec_error(node.loc, "a spec file must be a mapping")],
        );
    }
    if let Some(v) = node.get("swagger") {
        let d = spec_error(v.loc, "Swagger 2.0 is not supported")
            .with_hint("convert the document to OpenAPI 3.0 or 3.1");
        return (true, vec![d]);
    }
    let Some(version) = node.get("openapi") else {
        // A fragment (shared schemas referenced from documents): checked where referenced.
        return (false, Vec::new());
    };
    let mut out = Vec::new();
    let minor = match version.as_str() {
        Some(v) if v.starts_with("3.0.") || v == "3.0" => Some(0),
        Some(v) if v.starts_with("3.1.") || v == "3.1" => Some(1),
        _ => {
            out.push(
                spec_error(version.loc, "unsupported `openapi` version")
                    .with_hint("write `openapi: 3.0.3` or `openapi: 3.1.0` (as a string)"),
            );
            None
        }
    };
    match node.get("info") {
        None => out.push(spec_error(node.loc, "OpenAPI document is missing `info`")),
        Some(info) => {
            for field in ["title", "version"] {
                if info.get(field).is_none() {
                    out.push(spec_error(
                        info.loc,
                        format!("OpenAPI `info` is missing `{field}`"),
                    ));
                }
            }
        }
    }
    let has_any = ["paths", "components", "webhooks"]
        .iter()
        .any(|k| node.get(k).is_some());
    if minor == Some(0) && node.get("paths").is_none() {
        out.push(spec_error(
            node.loc,
            "OpenAPI 3.0 document is missing `paths`",
        ));
    } else if minor == Some(1) && !has_any {
        out.push(spec_error(
            node.loc,
            "OpenAPI 3.1 document needs at least one of `paths`, `components`, `webhooks`",
        ));
    }
    if let Some(paths) = node.get("paths") {
        match &paths.value {
            Value::Map(entries) => {
                for (k, _) in entries {
                    if !k.name.starts_with('/') && !k.name.starts_with("x-") {
                        out.push(
                            spec_error(k.loc, format!("path `{}` must start with `/`", k.name))
                                .with_hint(format!("write `/{}`", k.name)),
                        );
                    }
                }
            }
            _ => out.push(spec_error(paths.loc, "`paths` must be a mapping")),
        }
    }
    if out.is_empty() {
        out = check_refs(path, bytes, &node, files);
    }
    (true, out)
}

fn check_proto(path: &str, files: &dyn RevisionFiles) -> Vec<Diagnostic> {
    use crate::schema_diff::proto::{ProtoError, ProtoOptions, check_proto};
    match check_proto(path, files, &ProtoOptions::default()) {
        Ok(()) => Vec::new(),
        Err(ProtoError::Compile {
            file: Some(file),
            line: Some(line),
            column: Some(column),
            message,
            ..
        }) if file == path => vec![spec_error(
            Loc::new(line, column),
            format!("protobuf does not compile: {message}"),
        )],
        Err(e) => vec![spec_error(
            Loc::new(1, 1),
            format!("protobuf does not compile: {e}"),
        )],
    }
}
