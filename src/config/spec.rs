//! Checks that a spec file under `specs/` is a usable API description: an OpenAPI 3.0/3.1
//! document (or a fragment other documents `$ref`), or a .proto file that compiles.

use crate::diag::Diagnostic;
use crate::schema_diff::SchemaType;
use crate::source::SourceFiles;
use crate::yaml::{self, Limits, Loc, Node, Value};

/// Parses an OpenAPI file (YAML or JSON) into a located tree.
pub fn parse_openapi_file(path: &str, bytes: &[u8]) -> Result<Node, yaml::YamlError> {
    // JSON is YAML 1.2; one parser gives locations for both.
    let _ = path;
    yaml::parse(bytes, Limits::SPEC)
}

/// Whether a parsed spec file is a whole OpenAPI document (has a top-level `openapi` key).
pub fn is_openapi_document(node: &Node) -> bool {
    node.get("openapi").is_some() || node.get("swagger").is_some()
}

/// Whether the file is a whole document (not a `$ref` fragment), and its diagnostics (empty
/// when it is fine; with an empty `file`).
pub fn check_spec(
    schema_type: SchemaType,
    path: &str,
    bytes: &[u8],
    files: &dyn SourceFiles,
) -> (bool, Vec<Diagnostic>) {
    match schema_type {
        SchemaType::Openapi => check_openapi(path, bytes),
        SchemaType::Protobuf => (true, check_proto(path, files)),
    }
}

fn spec_error(loc: Loc, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error("invalid-spec", "", loc, message)
}

fn check_openapi(path: &str, bytes: &[u8]) -> (bool, Vec<Diagnostic>) {
    let node = match parse_openapi_file(path, bytes) {
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
    (true, out)
}

fn check_proto(path: &str, files: &dyn SourceFiles) -> Vec<Diagnostic> {
    let source = match files.read(path) {
        Ok(b) => b,
        Err(e) => return vec![spec_error(Loc::new(1, 1), format!("cannot read: {e}"))],
    };
    let Ok(text) = std::str::from_utf8(&source) else {
        return vec![spec_error(Loc::new(1, 1), "file is not valid UTF-8")];
    };
    let root = proto_include_root(path, text);
    let name = path.strip_prefix(&root).unwrap_or(path).to_string();
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(RepoResolver {
        sources: collect_imports(files, &root, &name, text),
    });
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    match compiler.open_file(&name) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let loc = proto_error_loc(&e, text);
            vec![spec_error(loc, format!("protobuf does not compile: {e}"))]
        }
    }
}

/// The include root implied by a .proto file's package (`a/b/google/pubsub/v1/x.proto` with
/// `package google.pubsub.v1;` has root `a/b/`), as protoc's `-I` would be set; else its dir.
pub fn proto_include_root(path: &str, text: &str) -> String {
    let package = text.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("package ")
            .and_then(|r| r.split(';').next())
            .map(|p| p.trim().to_string())
    });
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    if let Some(pkg) = package {
        let pkg_path = pkg.replace('.', "/");
        if let Some(prefix) = dir.strip_suffix(pkg_path.as_str())
            && (prefix.is_empty() || prefix.ends_with('/'))
        {
            return prefix.to_string();
        }
    }
    if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    }
}

/// Location of the first labelled span of a protox error, if it has one.
fn proto_error_loc(e: &protox::Error, text: &str) -> Loc {
    use miette::Diagnostic as _;
    e.labels()
        .and_then(|mut l| l.next())
        .map(|l| yaml::loc_of_offset(text.as_bytes(), l.offset()))
        .unwrap_or(Loc::new(1, 1))
}

/// Reads the entry file and, transitively, the files it imports from under `root` (at most
/// 1,000 files), so the compiler resolves from memory.
fn collect_imports(
    files: &dyn SourceFiles,
    root: &str,
    entry: &str,
    entry_text: &str,
) -> std::collections::HashMap<String, String> {
    let mut sources = std::collections::HashMap::new();
    sources.insert(entry.to_string(), entry_text.to_string());
    let mut queue = vec![entry_text.to_string()];
    while let Some(text) = queue.pop() {
        for import in imports_of(&text) {
            if sources.len() >= 1000 || sources.contains_key(&import) {
                continue;
            }
            if let Ok(bytes) = files.read(&format!("{root}{import}"))
                && let Ok(t) = String::from_utf8(bytes)
            {
                queue.push(t.clone());
                sources.insert(import, t);
            }
        }
    }
    sources
}

/// The paths named by `import "…";` statements.
fn imports_of(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("import ")?;
            let rest = rest
                .trim_start_matches("public ")
                .trim_start_matches("weak ")
                .trim();
            let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
            let inner = &rest[1..];
            inner.find(quote).map(|end| inner[..end].to_string())
        })
        .collect()
}

/// Resolves imports from files read out of one revision of the repository.
struct RepoResolver {
    sources: std::collections::HashMap<String, String>,
}

impl protox::file::FileResolver for RepoResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.sources.get(name) {
            Some(text) => protox::file::File::from_source(name, text),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}
