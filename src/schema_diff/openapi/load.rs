//! Loading an OpenAPI 3.0/3.1 description: YAML or JSON bytes into a JSON tree, version
//! detection, and every `$ref` resolved up front (internal, or repo-relative external files read
//! through [`RevisionFiles`]), so the diff itself never fails on a dangling reference.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use crate::git::revision::{ReadError, RevisionFiles, normalize};

/// Most external files one description may pull in through `$ref`.
const MAX_EXTERNAL_FILES: usize = 256;
/// Longest chain of `$ref` pointing at `$ref`.
const MAX_REF_CHAIN: usize = 32;

/// The OpenAPI major.minor a description declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpenapiVersion {
    V3_0,
    V3_1,
}

/// One problem found while loading a description, with a position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecProblem {
    /// Repo-relative file the problem is in.
    pub path: String,
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "{}:{l}:{c}: {}", self.path, self.message),
            (Some(l), None) => write!(f, "{}:{l}: {}", self.path, self.message),
            _ => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// Why a description could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: ReadError },
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        problems: Vec<SpecProblem>,
    },
}

impl LoadError {
    /// The problems as a list, whatever the variant.
    pub fn problems(&self) -> Vec<SpecProblem> {
        match self {
            LoadError::Read { path, source } => vec![SpecProblem {
                path: path.clone(),
                line: None,
                column: None,
                message: format!("cannot read: {source}"),
            }],
            LoadError::Invalid { problems, .. } => problems.clone(),
        }
    }
}

/// A loaded description: the root document and every external document it references, keyed
/// by repo-relative path. All `$ref`s are known to resolve.
#[derive(Debug, Clone)]
pub struct Spec {
    pub version: OpenapiVersion,
    /// Repo-relative path of the root document.
    pub root_path: String,
    pub docs: BTreeMap<String, Value>,
}

/// A resolved reference: the canonical key (`#/components/schemas/Pet` for the root document,
/// `common.yaml#/components/schemas/Error` for others) and the file the target lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RefTarget {
    pub key: String,
    pub file: String,
    pub pointer: String,
}

impl Spec {
    pub fn root(&self) -> &Value {
        self.docs
            .get(&self.root_path)
            .expect("the root document is inserted by load")
    }

    /// Canonical key of a `$ref` written in `file`, or `None` if it cannot be expressed
    /// (leaves the repo, not a JSON pointer).
    pub fn ref_target(&self, file: &str, reference: &str) -> Option<RefTarget> {
        ref_target(&self.root_path, file, reference)
    }

    /// The target a canonical key (as in [`RefTarget::key`]) names.
    pub fn key_target(&self, key: &str) -> RefTarget {
        let (file, pointer) = match key.split_once('#') {
            Some(("", p)) => (self.root_path.clone(), p),
            Some((f, p)) => (f.to_string(), p),
            None => (key.to_string(), ""),
        };
        RefTarget {
            key: key.to_string(),
            file,
            pointer: pointer.to_string(),
        }
    }

    /// The value behind a resolved reference, following chains of `$ref`.
    pub fn lookup(&self, target: &RefTarget) -> Option<(&Value, RefTarget)> {
        let mut t = target.clone();
        for _ in 0..MAX_REF_CHAIN {
            let doc = self.docs.get(&t.file)?;
            let v = doc.pointer(&t.pointer)?;
            match v.as_object().and_then(ref_of).and_then(Value::as_str) {
                Some(r) if v.as_object().is_some_and(|o| o.len() == 1) => {
                    t = self.ref_target(&t.file, r)?;
                }
                _ => return Some((v, t)),
            }
        }
        None
    }
}

fn dir_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn ref_target(root_path: &str, file: &str, reference: &str) -> Option<RefTarget> {
    let (file_part, frag) = match reference.split_once('#') {
        Some((f, p)) => (f, p),
        None => (reference, ""),
    };
    if !frag.is_empty() && !frag.starts_with('/') {
        return None;
    }
    let frag = percent_decode(frag);
    let target_file = if file_part.is_empty() {
        file.to_string()
    } else {
        if file_part.contains("://") {
            return None;
        }
        let dir = dir_of(file);
        let joined = if dir.is_empty() {
            file_part.to_string()
        } else {
            format!("{dir}/{file_part}")
        };
        normalize(&joined).ok()?
    };
    let key = if target_file == root_path {
        format!("#{frag}")
    } else {
        format!("{target_file}#{frag}")
    };
    Some(RefTarget {
        key,
        file: target_file,
        pointer: frag,
    })
}

fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn yaml_options() -> serde_saphyr::Options {
    // Stripe's 4 MB description is ~1.5 M parser events and ~600 k nodes: allow ten times
    // that, but keep the alias-expansion limits that stop a billion-laughs document.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = 20_000_000;
    budget.max_nodes = 10_000_000;
    budget.max_total_scalar_bytes = 256 * 1024 * 1024;
    // Deeper than any real schema; keeps recursive walks far from the stack limit.
    budget.max_depth = 200;
    budget.max_aliases = 50_000;
    budget.max_anchors = 50_000;
    // As `config::yaml::Limits::SPEC` allows, so both spec parsers refuse the same files.
    budget.max_recorded_anchor_events = 250_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 250_000;
    // Comments are never needed here; not capturing their text saves work on large files.
    options.emit_comments = false;
    options
}

/// Stack for parsing and for the recursive walks over a parsed tree: the parsers recurse once
/// per nesting level, and an unoptimised build needs far more than the 2 MiB a spawned thread
/// gets by default to reach the nesting limit.
pub const WALK_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Runs `f` on a thread with a [`WALK_STACK_BYTES`] stack (address space only; pages are
/// touched as the recursion needs them).
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("mockops-walk".into())
            .stack_size(WALK_STACK_BYTES)
            .spawn_scoped(s, f)
            .expect("spawning a thread succeeds")
            .join()
            .expect("the parser and walks do not panic")
    })
}

/// Parses YAML or JSON bytes into a JSON tree. JSON is recognised by its first byte.
pub fn parse_document(path: &str, bytes: &[u8]) -> Result<Value, SpecProblem> {
    with_big_stack(|| parse_document_here(path, bytes))
}

fn parse_document_here(path: &str, bytes: &[u8]) -> Result<Value, SpecProblem> {
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    let problem = |line, column, message: String| SpecProblem {
        path: path.to_string(),
        line,
        column,
        message,
    };
    if matches!(first, Some(b'{') | Some(b'[')) {
        return serde_json::from_slice(bytes).map_err(|e| {
            problem(
                Some(e.line() as u64),
                Some(e.column() as u64),
                format!("invalid JSON: {e}"),
            )
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        problem(
            None,
            None,
            format!(
                "not UTF-8 (byte {}): a description must be text",
                e.valid_up_to()
            ),
        )
    })?;
    serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|e| {
        let loc = e.location();
        let msg = e.without_snippet().to_string();
        problem(
            loc.map(|l| l.line()),
            loc.map(|l| l.column()),
            format!("invalid YAML: {msg}"),
        )
    })
}

/// Reads the version from the `openapi:` field.
pub fn detect_version(path: &str, doc: &Value) -> Result<OpenapiVersion, SpecProblem> {
    let problem = |message: String| SpecProblem {
        path: path.to_string(),
        line: None,
        column: None,
        message,
    };
    let Some(obj) = doc.as_object() else {
        return Err(problem(
            "not an OpenAPI description: the document is not a mapping".into(),
        ));
    };
    match obj.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.0") => Ok(OpenapiVersion::V3_0),
        Some(Value::String(v)) if v.starts_with("3.1") => Ok(OpenapiVersion::V3_1),
        Some(Value::String(v)) => Err(problem(format!(
            "unsupported OpenAPI version `{v}`: mockops reads 3.0.x and 3.1.x"
        ))),
        Some(other) => Err(problem(format!(
            "`openapi` must be a string like \"3.1.0\", found {other}"
        ))),
        None if obj.contains_key("swagger") => Err(problem(
            "Swagger 2.0 is not supported: convert it to OpenAPI 3 first".into(),
        )),
        None => Err(problem(
            "not an OpenAPI description: no `openapi:` field".into(),
        )),
    }
}

/// Loads the description at repo-relative `path` from `bytes`, reading external `$ref`
/// targets through `files`. All problems found are returned together.
pub fn load(path: &str, bytes: &[u8], files: &dyn RevisionFiles) -> Result<Spec, LoadError> {
    let root = parse_document(path, bytes).map_err(|p| LoadError::Invalid {
        path: path.to_string(),
        problems: vec![p],
    })?;
    load_root(path, bytes, root, files)
}

/// [`load`] for a document already parsed into `root` (from `bytes`, which locate problems).
pub fn load_root(
    path: &str,
    bytes: &[u8],
    root: Value,
    files: &dyn RevisionFiles,
) -> Result<Spec, LoadError> {
    let invalid = |problems| LoadError::Invalid {
        path: path.to_string(),
        problems,
    };
    let version = detect_version(path, &root).map_err(|p| invalid(vec![p]))?;
    if !root.get("paths").is_none_or(Value::is_object) {
        return Err(invalid(vec![SpecProblem {
            path: path.into(),
            line: None,
            column: None,
            message: "`paths` must be a mapping".into(),
        }]));
    }
    let mut spec = Spec {
        version,
        root_path: path.to_string(),
        docs: BTreeMap::new(),
    };
    spec.docs.insert(path.to_string(), root);
    let mut problems = Vec::new();
    // Text of the external files, to point problems at a line.
    let mut texts: HashMap<String, Vec<u8>> = HashMap::new();
    let mut queue = vec![path.to_string()];
    let mut seen_files: HashSet<String> = HashSet::from([path.to_string()]);
    while let Some(file) = queue.pop() {
        let mut refs = Vec::new();
        collect_refs(&spec.docs[&file], &mut refs);
        for (at, reference) in refs {
            let prob = |texts: &HashMap<String, Vec<u8>>, message: String| {
                let text = if file == path {
                    Some(bytes)
                } else {
                    texts.get(&file).map(Vec::as_slice)
                };
                let pos = text.and_then(|t| position_of(t, &reference));
                SpecProblem {
                    path: file.clone(),
                    line: pos.map(|p| p.0),
                    column: pos.map(|p| p.1),
                    message: format!("at {}: {message}", if at.is_empty() { "/" } else { &at }),
                }
            };
            let Some(target) = spec.ref_target(&file, &reference) else {
                problems.push(prob(&texts, format!(
                    "`$ref: {reference}` cannot be resolved: only JSON pointers into this file or repo-relative files are supported, and they must stay inside the repository"
                )));
                continue;
            };
            if !spec.docs.contains_key(&target.file) {
                if seen_files.contains(&target.file) {
                    continue; // already failed to load
                }
                seen_files.insert(target.file.clone());
                if seen_files.len() > MAX_EXTERNAL_FILES {
                    problems.push(prob(
                        &texts,
                        format!("more than {MAX_EXTERNAL_FILES} external files referenced"),
                    ));
                    break;
                }
                match files.read(&target.file) {
                    Ok(b) => match parse_document(&target.file, &b) {
                        Ok(v) => {
                            spec.docs.insert(target.file.clone(), v);
                            texts.insert(target.file.clone(), b);
                            queue.push(target.file.clone());
                        }
                        Err(p) => {
                            problems.push(p);
                            continue;
                        }
                    },
                    Err(e) => {
                        problems.push(prob(
                            &texts,
                            format!("`$ref: {reference}`: cannot read `{}`: {e}", target.file),
                        ));
                        continue;
                    }
                }
            }
            if spec.lookup(&target).is_none() {
                problems.push(prob(
                    &texts,
                    format!("`$ref: {reference}` points at nothing (or at a cycle of $refs)"),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(invalid(problems))
    }
}

/// Line and column (1-based) of the first occurrence of `needle` in `text`: where a dangling
/// `$ref` is written (every occurrence of a dangling reference dangles).
fn position_of(text: &[u8], needle: &str) -> Option<(u64, u64)> {
    let n = needle.as_bytes();
    if n.is_empty() || n.len() > text.len() {
        return None;
    }
    let at = text.windows(n.len()).position(|w| w == n)?;
    let before = &text[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let column = (at
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)) as u64
        + 1;
    Some((line, column))
}

/// Every `$ref` string in `v` with the JSON pointer where it sits. The pointer is only
/// spelled out for the nodes that hold a `$ref` (a 4 MB description has ~1 M nodes, ~10 k refs).
fn collect_refs(v: &Value, out: &mut Vec<(String, String)>) {
    fn walk<'v>(v: &'v Value, path: &mut Vec<Segment<'v>>, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(s)) = ref_of(map) {
                    let mut at = String::new();
                    for seg in path.iter() {
                        at.push('/');
                        match seg {
                            Segment::Key(k) => at.push_str(&escape_pointer(k)),
                            Segment::Index(i) => at.push_str(&i.to_string()),
                        }
                    }
                    out.push((at, s.clone()));
                }
                for (k, child) in map {
                    if k != "$ref" && (child.is_object() || child.is_array()) {
                        path.push(Segment::Key(k));
                        walk(child, path, out);
                        path.pop();
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    if child.is_object() || child.is_array() {
                        path.push(Segment::Index(i));
                        walk(child, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
    }
    enum Segment<'v> {
        Key(&'v str),
        Index(usize),
    }
    walk(v, &mut Vec::new(), out);
}

/// The `$ref` of a mapping, found without hashing: schema mappings are small, and this runs
/// on every node of a large description.
pub fn ref_of(map: &serde_json::Map<String, Value>) -> Option<&Value> {
    if map.len() > 16 {
        return map.get("$ref");
    }
    map.iter()
        .find(|(k, _)| k.as_str() == "$ref")
        .map(|(_, v)| v)
}

/// Escapes one JSON-pointer segment (RFC 6901).
pub fn escape_pointer(segment: &str) -> String {
    if segment.contains(['~', '/']) {
        segment.replace('~', "~0").replace('/', "~1")
    } else {
        segment.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoFiles;
    impl RevisionFiles for NoFiles {
        fn read(&self, _: &str) -> Result<Vec<u8>, ReadError> {
            Err(ReadError::NotFound)
        }
    }

    #[test]
    fn yaml_and_json_load_with_versions() {
        let y = load("a.yaml", b"openapi: 3.0.3\npaths: {}\n", &NoFiles).expect("valid");
        assert_eq!(y.version, OpenapiVersion::V3_0);
        let j = load("a.json", br#"{"openapi": "3.1.0", "paths": {}}"#, &NoFiles).expect("valid");
        assert_eq!(j.version, OpenapiVersion::V3_1);
    }

    #[test]
    fn integer_status_keys_become_strings() {
        let y =
            parse_document("a.yaml", b"responses:\n  200:\n    description: ok\n").expect("valid");
        assert!(y["responses"]["200"].is_object());
    }

    #[test]
    fn bad_yaml_has_a_line() {
        let e = parse_document("a.yaml", b"openapi: 3.0.0\npaths:\n  - a\n  b: [\n")
            .expect_err("invalid");
        assert!(e.line.is_some(), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused_or_loaded_without_overflow() {
        for depth in [150, 1000] {
            let mut doc = String::from("openapi: 3.0.0\npaths: {}\nx:\n");
            for i in 0..depth {
                doc.push_str(&" ".repeat(2 * (i + 1)));
                doc.push_str("a:\n");
            }
            let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let _ = load("deep.yaml", doc.as_bytes(), &NoFiles);
            let _ = parse_document("deep.json", json.as_bytes());
        }
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            doc.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
        }
        assert!(parse_document("bomb.yaml", doc.as_bytes()).is_err());
    }

    #[test]
    fn dangling_and_escaping_refs_are_problems() {
        let doc = b"openapi: 3.0.0\npaths: {}\ncomponents:\n  schemas:\n    A: {$ref: '#/components/schemas/B'}\n    C: {$ref: '../../etc/passwd#/x'}\n";
        let e = load("specs/a.yaml", doc, &NoFiles).expect_err("invalid");
        let problems = e.problems();
        assert_eq!(problems.len(), 2, "{e}");
        assert_eq!(
            (problems[0].line, problems[0].column),
            (Some(5), Some(16)),
            "{e}"
        );
    }

    #[test]
    fn ref_keys_are_canonical() {
        let t = ref_target(
            "specs/a.yaml",
            "specs/a.yaml",
            "common.yaml#/components/schemas/E",
        )
        .expect("ok");
        assert_eq!(t.key, "specs/common.yaml#/components/schemas/E");
        let t = ref_target("specs/a.yaml", "specs/common.yaml", "a.yaml#/x").expect("ok");
        assert_eq!(t.key, "#/x");
        assert!(ref_target("a.yaml", "a.yaml", "../x.yaml#/a").is_none());
    }
}
