//! The drift fix: from a service's open incidents, the smallest change to its spec that accepts
//! what the upstream was seen doing, written into the spec files with minimal textual change.
//!
//! [`propose`] plans one or more [`Op`]s per incident (an added status, content type, enum
//! value or optional property, a widened type (in OpenAPI 3.0, an `anyOf` of the declared and the
//! observed types), a relaxed format, a property or header no
//! longer required), applies them to the text (`yaml`, `json`: everything outside the edit
//! kept byte for byte), and then checks the result twice before anything is proposed: the
//! patched spec must accept every sample the incident claims to accept (through the mock
//! engine's converter and an offline validator), and `mockops diff` of old and patched spec
//! must show changes only where the patch edited. An incident that cannot be patched, or
//! whose samples still fail, is listed as skipped with the reason.

pub mod edit;
pub mod infer;
mod json;
pub mod service;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::drift::{Direction, Incident, IncidentKind};
use crate::gateway::mock::schema::{Converter, Dir};
use crate::git::revision::{ReadError, RevisionFiles};
use crate::schema_diff::openapi::{OpenapiVersion, Spec, load};

pub use edit::{EditError, Op, Syntax, apply_text};
pub use infer::{Dialect, infer};
pub use service::{ServicePatchError, drift_min_samples, for_service};

/// How many times an incident must have been seen before a patch is proposed from it, unless
/// the settings say otherwise.
pub const DEFAULT_MIN_SAMPLES: u64 = 3;

/// The fewest observations a patch is ever proposed from, whatever the settings say: never
/// from one request.
pub const FLOOR_MIN_SAMPLES: u64 = 2;

/// Why no proposal could be computed at all (an incident that cannot be patched is skipped
/// instead).
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("cannot read `{path}`: {source}")]
    Read { path: String, source: ReadError },
    #[error("`{path}` is not UTF-8 text")]
    NotText { path: String },
    #[error(
        "the patched spec `{path}` changes `{location}`, which no accepted incident names; \
         nothing is proposed"
    )]
    UnexpectedChange { path: String, location: String },
}

/// Why one incident is left out of the proposal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SkipReason(pub String);

impl From<String> for SkipReason {
    fn from(s: String) -> Self {
        SkipReason(s)
    }
}

impl From<&str> for SkipReason {
    fn from(s: &str) -> Self {
        SkipReason(s.to_string())
    }
}

/// One file's content before and after the patch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FilePatch {
    pub path: String,
    pub before: String,
    pub after: String,
}

/// An incident the patch does not cover, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub kind: IncidentKind,
    pub reason: String,
}

/// What [`propose`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Proposal {
    /// Changed files, by path.
    pub files: Vec<FilePatch>,
    /// Ids of the incidents the patch accepts.
    pub accepted: Vec<String>,
    pub skipped: Vec<Skipped>,
    /// The evidence, in Markdown: per accepted incident its kind, operation, place, count,
    /// first and last seen and sample values; then the skipped ones with their reasons.
    pub summary: String,
    /// `mockops diff` of the old and patched specs.
    pub changes: Vec<crate::schema_diff::Change>,
}

impl Proposal {
    /// Nothing to change.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The unified diff of every changed file (`a/PATH`, `b/PATH` headers).
    pub fn diff(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            let d = similar::TextDiff::from_lines(&f.before, &f.after);
            let _ = write!(
                out,
                "{}",
                d.unified_diff()
                    .context_radius(3)
                    .header(&format!("a/{}", f.path), &format!("b/{}", f.path))
            );
        }
        out
    }
}

/// The open incidents' patch. `roots` maps a service to its spec (the document whose `$ref`s
/// lead to the incidents' `spec_file`s); a service not listed has its `spec_file` as root.
/// Incidents seen fewer than `min_samples` times (at least [`FLOOR_MIN_SAMPLES`]) are skipped.
pub fn propose(
    files: &dyn RevisionFiles,
    roots: &BTreeMap<String, String>,
    incidents: &[Incident],
    min_samples: u64,
) -> Result<Proposal, PatchError> {
    let min_samples = min_samples.max(FLOOR_MIN_SAMPLES);
    let mut open: Vec<&Incident> = incidents.iter().filter(|i| i.is_open()).collect();
    open.sort_by(|a, b| {
        (&a.location.spec_file, &a.location.spec_pointer, &a.id).cmp(&(
            &b.location.spec_file,
            &b.location.spec_pointer,
            &b.id,
        ))
    });
    let mut skipped = Vec::new();
    let mut accepted: Vec<&Incident> = Vec::new();
    let mut texts: BTreeMap<String, (String, String)> = BTreeMap::new();
    // (file, pointer) of every accepted edit, for the diff check.
    let mut places: Vec<(String, String)> = Vec::new();
    for inc in open {
        let skip = |reason: String| Skipped {
            id: inc.id.clone(),
            kind: inc.kind,
            reason,
        };
        if inc.count < min_samples {
            skipped.push(skip(format!(
                "seen {} time(s); a patch needs at least {min_samples}",
                inc.count
            )));
            continue;
        }
        let path = inc.location.spec_file.clone();
        if !texts.contains_key(&path) {
            let bytes = match files.read(&path) {
                Ok(b) => b,
                Err(source) => {
                    skipped.push(skip(format!("cannot read `{path}`: {source}")));
                    continue;
                }
            };
            let text =
                String::from_utf8(bytes).map_err(|_| PatchError::NotText { path: path.clone() })?;
            texts.insert(path.clone(), (text.clone(), text));
        }
        let Some((_, current)) = texts.get(&path).cloned() else {
            continue;
        };
        let root = roots
            .get(&inc.location.service)
            .cloned()
            .unwrap_or_else(|| path.clone());
        let overlay = Overlay {
            base: files,
            texts: &texts,
        };
        let version = match load_spec(&overlay, &root) {
            Ok(spec) => spec.version,
            Err(e) => {
                skipped.push(skip(e.0));
                continue;
            }
        };
        let doc = match crate::schema_diff::openapi::parse_document(&path, current.as_bytes()) {
            Ok(d) => d,
            Err(p) => {
                skipped.push(skip(format!("`{path}` does not parse: {}", p.message)));
                continue;
            }
        };
        let plan = match plan(inc, &doc, version) {
            Ok(p) => p,
            Err(reason) => {
                skipped.push(skip(reason.0));
                continue;
            }
        };
        let patched = match apply_text(&path, &current, &plan.ops) {
            Ok(t) => t,
            Err(e) => {
                skipped.push(skip(format!("cannot edit `{path}`: {e}")));
                continue;
            }
        };
        let mut trial = texts.clone();
        if let Some(entry) = trial.get_mut(&path) {
            entry.1 = patched;
        }
        let trial_files = Overlay {
            base: files,
            texts: &trial,
        };
        match load_spec(&trial_files, &root).and_then(|spec| check(&spec, &path, inc, &plan)) {
            Ok(()) => {
                texts = trial;
                accepted.push(inc);
                for op in &plan.ops {
                    places.push((path.clone(), op.at().to_string()));
                }
            }
            Err(reason) => skipped.push(skip(reason.0)),
        }
    }

    // The diff of old and patched spec, per root, shows only what was patched.
    let mut changes = Vec::new();
    let roots_used: BTreeSet<String> = accepted
        .iter()
        .map(|i| {
            roots
                .get(&i.location.service)
                .cloned()
                .unwrap_or_else(|| i.location.spec_file.clone())
        })
        .collect();
    for root in roots_used {
        let empty = BTreeMap::new();
        let old = load_spec(
            &Overlay {
                base: files,
                texts: &empty,
            },
            &root,
        );
        let new = load_spec(
            &Overlay {
                base: files,
                texts: &texts,
            },
            &root,
        );
        if let (Ok(old), Ok(new)) = (old, new) {
            for c in crate::schema_diff::openapi::diff_specs(&old, &new) {
                let (file, pointer) = match c.location.split_once('#') {
                    Some(("", p)) => (root.clone(), p.to_string()),
                    Some((f, p)) => (f.to_string(), p.to_string()),
                    None => (root.clone(), c.location.clone()),
                };
                let near = |a: &str, b: &str| {
                    a == b
                        || a.strip_prefix(b).is_some_and(|r| r.starts_with('/'))
                        || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
                };
                // Changes inside an operation are located by meaning
                // (`.../parameters/header/X-Trace`), not by pointer: the operation is the unit.
                let operation = |p: &str| -> Option<String> {
                    let segs: Vec<&str> = p.split('/').collect();
                    (segs.len() >= 4 && segs[1] == "paths").then(|| segs[..4].join("/"))
                };
                let same_operation =
                    |p: &str| operation(p).is_some_and(|o| Some(o) == operation(&pointer));
                if !places
                    .iter()
                    .any(|(f, p)| *f == file && (near(p, &pointer) || same_operation(p)))
                {
                    return Err(PatchError::UnexpectedChange {
                        path: root,
                        location: c.location,
                    });
                }
                changes.push(c);
            }
        }
    }

    let files: Vec<FilePatch> = texts
        .into_iter()
        .filter(|(_, (before, after))| before != after)
        .map(|(path, (before, after))| FilePatch {
            path,
            before,
            after,
        })
        .collect();
    let summary = summary(&accepted, &skipped, incidents);
    Ok(Proposal {
        files,
        accepted: accepted.iter().map(|i| i.id.clone()).collect(),
        skipped,
        summary,
        changes,
    })
}

/// The repository's files with some replaced by patched text.
struct Overlay<'a> {
    base: &'a dyn RevisionFiles,
    /// path -> (before, after)
    texts: &'a BTreeMap<String, (String, String)>,
}

impl RevisionFiles for Overlay<'_> {
    fn read(&self, path: &str) -> Result<Vec<u8>, ReadError> {
        let norm = crate::git::revision::normalize(path)?;
        match self.texts.get(&norm) {
            Some((_, after)) => Ok(after.clone().into_bytes()),
            None => self.base.read(&norm),
        }
    }
}

fn load_spec(files: &dyn RevisionFiles, root: &str) -> Result<Spec, SkipReason> {
    let bytes = files
        .read(root)
        .map_err(|e| format!("cannot read the spec `{root}`: {e}"))?;
    load(root, &bytes, files).map_err(|e| {
        let problems: Vec<String> = e.problems().into_iter().map(|p| p.message).collect();
        SkipReason(format!(
            "the spec `{root}` does not load: {}",
            problems.join("; ")
        ))
    })
}

/// What one incident's patch does and how it is checked.
#[derive(Debug)]
struct Plan {
    ops: Vec<Op>,
    /// Pointer (in the incident's spec file) of the schema every sample must now validate
    /// against.
    validate_at: Option<String>,
    /// A structural check after the patch: the value at this pointer...
    expect: Option<(String, Expect)>,
}

#[derive(Debug)]
enum Expect {
    /// ...is a list not holding this name (or is gone).
    NotListed(String),
    /// ...is `false` (or gone).
    NotTrue,
}

fn last_segment(pointer: &str) -> Option<String> {
    edit::segments(pointer).pop()
}

fn join(pointer: &str, segment: &str) -> String {
    format!("{pointer}/{}", edit::escape(segment))
}

fn dialect(version: OpenapiVersion) -> Dialect {
    match version {
        OpenapiVersion::V3_0 => Dialect::V30,
        OpenapiVersion::V3_1 => Dialect::V31,
    }
}

fn json_type(v: &Value) -> &'static str {
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

fn accepts(declared: &str, seen: &str) -> bool {
    declared == seen || (declared == "number" && seen == "integer")
}

/// The edits that make the spec accept what `inc` observed.
fn plan(inc: &Incident, doc: &Value, version: OpenapiVersion) -> Result<Plan, SkipReason> {
    let sp = inc.location.spec_pointer.as_str();
    let node = doc.pointer(sp);
    let d = dialect(version);
    let description =
        "Observed from the upstream (proposed by mockops from contract drift).".to_string();
    let is_ref = |n: &Value| n.get("$ref").is_some();
    let plain = |p: Plan| Ok(p);
    match inc.kind {
        IncidentKind::UndeclaredStatus => {
            let node = node
                .filter(|n| n.is_object())
                .ok_or_else(|| format!("the operation's `responses` at `{sp}` is not a mapping"))?;
            let status = inc.location.status.to_string();
            if node.get(&status).is_some() {
                return Err(SkipReason::from(format!(
                    "status {status} is already declared"
                )));
            }
            let mut response = Map::new();
            response.insert("description".into(), Value::String(description));
            let mut validate_at = None;
            if let Some(ct) = &inc.location.content_type {
                response.insert(
                    "content".into(),
                    json!({ ct.as_str(): { "schema": infer(&inc.samples, d) } }),
                );
                validate_at = Some(join(
                    &join(&join(&join(sp, &status), "content"), ct),
                    "schema",
                ));
            }
            plain(Plan {
                ops: vec![Op::AddKey {
                    at: sp.to_string(),
                    key: status,
                    value: Value::Object(response),
                }],
                validate_at,
                expect: None,
            })
        }
        IncidentKind::UndeclaredContentType => {
            let ct = inc
                .location
                .content_type
                .clone()
                .ok_or("the incident names no content type")?;
            let media = json!({ "schema": infer(&inc.samples, d) });
            let op = match node {
                Some(n) if n.is_object() => {
                    if n.get(&ct).is_some() {
                        return Err(SkipReason::from(format!("`{ct}` is already declared")));
                    }
                    Op::AddKey {
                        at: sp.to_string(),
                        key: ct.clone(),
                        value: media,
                    }
                }
                Some(_) => {
                    return Err(SkipReason::from(format!(
                        "`{sp}` is not a mapping of media types"
                    )));
                }
                None => {
                    let parent = sp
                        .strip_suffix("/content")
                        .filter(|p| doc.pointer(p).is_some_and(Value::is_object))
                        .ok_or_else(|| format!("`{sp}` is not in the spec"))?;
                    Op::AddKey {
                        at: parent.to_string(),
                        key: "content".into(),
                        value: json!({ ct.as_str(): media }),
                    }
                }
            };
            plain(Plan {
                ops: vec![op],
                validate_at: Some(join(&join(sp, &ct), "schema")),
                expect: None,
            })
        }
        IncidentKind::EnumValueNotInSpec => {
            let node = node.ok_or_else(|| format!("`{sp}` is not in the spec"))?;
            let list = node
                .get("enum")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("the schema at `{sp}` has no `enum` list"))?;
            let mut new: Vec<Value> = Vec::new();
            for s in &inc.samples {
                if !s.is_null() && !list.contains(s) && !new.contains(s) {
                    new.push(s.clone());
                }
            }
            if new.is_empty() {
                return Err(SkipReason::from(
                    "every observed value is already in the enum",
                ));
            }
            plain(Plan {
                ops: vec![Op::Append {
                    at: join(sp, "enum"),
                    items: new,
                }],
                validate_at: Some(sp.to_string()),
                expect: None,
            })
        }
        IncidentKind::UndocumentedProperty => {
            let node = node
                .filter(|n| n.is_object() && !is_ref(n))
                .ok_or_else(|| format!("`{sp}` is not an object schema in the spec"))?;
            let name = last_segment(&inc.location.pointer)
                .filter(|n| !n.is_empty())
                .ok_or("the incident names no property")?;
            let schema = infer(&inc.samples, d);
            let op = match node.get("properties") {
                Some(Value::Object(props)) => {
                    if props.contains_key(&name) {
                        return Err(SkipReason::from(format!(
                            "property `{name}` is already declared"
                        )));
                    }
                    Op::AddKey {
                        at: join(sp, "properties"),
                        key: name.clone(),
                        value: schema,
                    }
                }
                Some(_) => {
                    return Err(SkipReason::from(format!(
                        "`properties` at `{sp}` is not a mapping"
                    )));
                }
                None => Op::AddKey {
                    at: sp.to_string(),
                    key: "properties".into(),
                    value: json!({ name.as_str(): schema }),
                },
            };
            plain(Plan {
                ops: vec![op],
                validate_at: Some(join(&join(sp, "properties"), &name)),
                expect: None,
            })
        }
        IncidentKind::MissingRequiredProperty => {
            let node = node.ok_or_else(|| format!("`{sp}` is not in the spec"))?;
            let name =
                last_segment(&inc.location.pointer).ok_or("the incident names no property")?;
            let list = node
                .get("required")
                .and_then(Value::as_array)
                .ok_or_else(|| format!("the schema at `{sp}` has no `required` list"))?;
            let index = list
                .iter()
                .position(|v| v.as_str() == Some(&name))
                .ok_or_else(|| format!("`{name}` is not required at `{sp}`"))?;
            let op = if list.len() == 1 {
                Op::RemoveKey {
                    at: sp.to_string(),
                    key: "required".into(),
                }
            } else {
                Op::RemoveItem {
                    at: join(sp, "required"),
                    index,
                }
            };
            plain(Plan {
                ops: vec![op],
                validate_at: None,
                expect: Some((join(sp, "required"), Expect::NotListed(name))),
            })
        }
        IncidentKind::MissingRequiredHeader => {
            let node = node.ok_or_else(|| format!("`{sp}` is not in the spec"))?;
            if node.get("required") != Some(&Value::Bool(true)) {
                return Err(SkipReason::from(format!(
                    "the header at `{sp}` is not marked `required: true`"
                )));
            }
            plain(Plan {
                ops: vec![Op::Replace {
                    at: join(sp, "required"),
                    value: Value::Bool(false),
                }],
                validate_at: None,
                expect: Some((join(sp, "required"), Expect::NotTrue)),
            })
        }
        IncidentKind::FormatViolation => {
            let node = node.ok_or_else(|| format!("`{sp}` is not in the spec"))?;
            let pattern_first = inc.expected.trim_start().starts_with("pattern");
            let key = match (node.get("format"), node.get("pattern")) {
                (_, Some(_)) if pattern_first => "pattern",
                (Some(_), _) => "format",
                (None, Some(_)) => "pattern",
                (None, None) => {
                    return Err(SkipReason::from(format!(
                        "the schema at `{sp}` has no `format` or `pattern`"
                    )));
                }
            };
            plain(Plan {
                ops: vec![Op::RemoveKey {
                    at: sp.to_string(),
                    key: key.into(),
                }],
                validate_at: Some(sp.to_string()),
                expect: None,
            })
        }
        IncidentKind::TypeMismatch => {
            let node = node
                .filter(|n| n.is_object())
                .ok_or_else(|| format!("`{sp}` is not a schema in the spec"))?;
            let null_seen = inc.samples.iter().any(Value::is_null);
            let mut seen: Vec<&'static str> = Vec::new();
            for s in inc.samples.iter().filter(|s| !s.is_null()) {
                let t = json_type(s);
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
            let declared: Vec<String> = match node.get("type") {
                Some(Value::String(t)) => vec![t.clone()],
                Some(Value::Array(ts)) => ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => {
                    return Err(SkipReason::from(format!(
                        "the schema at `{sp}` declares no `type` to widen"
                    )));
                }
            };
            let mut missing: Vec<&str> = seen
                .iter()
                .copied()
                .filter(|t| !declared.iter().any(|d| accepts(d, t)))
                .collect();
            let null_missing = null_seen
                && !declared.iter().any(|d| d == "null")
                && node.get("nullable") != Some(&Value::Bool(true));
            if missing.is_empty() && !null_missing {
                return Err(SkipReason::from(
                    "the samples already match the declared type",
                ));
            }
            let mut ops = Vec::new();
            // integer -> number is a widening both dialects write as one type.
            let to_number = declared == ["integer"] && missing == ["number"];
            if to_number {
                missing.clear();
            }
            match d {
                Dialect::V30 if !missing.is_empty() => {
                    // No type lists in 3.0: the declared type and the observed ones become the
                    // branches of an `anyOf` (keywords of one type apply to that type only).
                    if ["anyOf", "oneOf", "allOf"]
                        .iter()
                        .any(|k| node.get(*k).is_some())
                    {
                        return Err(SkipReason::from(format!(
                            "the schema at `{sp}` already composes schemas; widening `type: {}` to {} is left to a person",
                            declared.join(", "),
                            missing.join(", ")
                        )));
                    }
                    let mut branches: Vec<Value> =
                        declared.iter().map(|t| json!({ "type": t })).collect();
                    branches.extend(missing.iter().map(|t| json!({ "type": t })));
                    ops.push(Op::AddKey {
                        at: sp.to_string(),
                        key: "anyOf".into(),
                        value: Value::Array(branches),
                    });
                    ops.push(Op::RemoveKey {
                        at: sp.to_string(),
                        key: "type".into(),
                    });
                    if null_missing {
                        ops.push(match node.get("nullable") {
                            Some(_) => Op::Replace {
                                at: join(sp, "nullable"),
                                value: Value::Bool(true),
                            },
                            None => Op::AddKey {
                                at: sp.to_string(),
                                key: "nullable".into(),
                                value: Value::Bool(true),
                            },
                        });
                    }
                }
                Dialect::V30 => {
                    if to_number {
                        ops.push(Op::Replace {
                            at: join(sp, "type"),
                            value: json!("number"),
                        });
                    }
                    if null_missing {
                        ops.push(match node.get("nullable") {
                            Some(_) => Op::Replace {
                                at: join(sp, "nullable"),
                                value: Value::Bool(true),
                            },
                            None => Op::AddKey {
                                at: sp.to_string(),
                                key: "nullable".into(),
                                value: Value::Bool(true),
                            },
                        });
                    }
                }
                Dialect::V31 => {
                    let mut add: Vec<Value> = missing.iter().map(|t| json!(t)).collect();
                    if null_missing {
                        add.push(json!("null"));
                    }
                    match node.get("type") {
                        Some(Value::String(t)) => {
                            let base = if to_number { "number" } else { t.as_str() };
                            let value = if add.is_empty() {
                                json!(base)
                            } else {
                                let mut all = vec![json!(base)];
                                all.extend(add);
                                Value::Array(all)
                            };
                            ops.push(Op::Replace {
                                at: join(sp, "type"),
                                value,
                            });
                        }
                        _ => {
                            if to_number {
                                add.push(json!("number"));
                            }
                            ops.push(Op::Append {
                                at: join(sp, "type"),
                                items: add,
                            });
                        }
                    }
                    if null_missing
                        && let Some(Value::Array(list)) = node.get("enum")
                        && !list.contains(&Value::Null)
                    {
                        ops.push(Op::Append {
                            at: join(sp, "enum"),
                            items: vec![Value::Null],
                        });
                    }
                }
            }
            plain(Plan {
                ops,
                validate_at: Some(sp.to_string()),
                expect: None,
            })
        }
    }
}

/// Checks the patched spec against what the incident claims it now accepts.
fn check(spec: &Spec, file: &str, inc: &Incident, plan: &Plan) -> Result<(), SkipReason> {
    let doc = spec
        .docs
        .get(file)
        .ok_or_else(|| format!("`{file}` is not part of the loaded spec"))?;
    if let Some((pointer, expect)) = &plan.expect {
        let ok = match (expect, doc.pointer(pointer)) {
            (_, None) => true,
            (Expect::NotListed(name), Some(Value::Array(list))) => {
                !list.iter().any(|v| v.as_str() == Some(name))
            }
            (Expect::NotTrue, Some(v)) => *v != Value::Bool(true),
            _ => false,
        };
        if !ok {
            return Err(SkipReason::from(format!(
                "the patched spec still has `{pointer}` as before"
            )));
        }
    }
    let Some(at) = &plan.validate_at else {
        return Ok(());
    };
    let schema = doc
        .pointer(at)
        .ok_or_else(|| format!("the patched spec has no schema at `{at}`"))?;
    let dir = match inc.location.direction {
        Direction::Request => Dir::Request,
        Direction::Response => Dir::Response,
    };
    let mut conv = Converter::new(spec);
    let root = conv
        .root(file, schema, dir)
        .map_err(|e| format!("the patched schema does not convert: {e}"))?;
    let bundle = conv
        .finish()
        .map_err(|e| format!("the patched schema does not resolve: {e}"))?;
    let validator = bundle
        .validator(&root)
        .map_err(|e| format!("the patched schema does not compile: {e}"))?;
    for (i, s) in inc.samples.iter().enumerate() {
        if let Err(e) = validator.validate(s) {
            return Err(SkipReason::from(format!(
                "sample {} still fails against the patched spec: {e}",
                i + 1
            )));
        }
    }
    Ok(())
}

fn operation(i: &Incident) -> String {
    let l = &i.location;
    match &l.operation_id {
        Some(id) => format!("{} {} ({id})", l.method, l.path),
        None => format!("{} {}", l.method, l.path),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn sample_text(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// The evidence, in Markdown.
fn summary(accepted: &[&Incident], skipped: &[Skipped], all: &[Incident]) -> String {
    let mut out = String::new();
    let service = accepted
        .first()
        .map(|i| i.location.service.as_str())
        .or_else(|| all.first().map(|i| i.location.service.as_str()))
        .unwrap_or("");
    let _ = writeln!(out, "### Contract drift: `{service}`\n");
    if accepted.is_empty() {
        let _ = writeln!(out, "Nothing to propose.\n");
    } else {
        let _ = writeln!(
            out,
            "The upstream was observed disagreeing with the spec in {} way(s); this patch makes the spec accept what was observed. Review whether the spec or the upstream is right.\n",
            accepted.len()
        );
        let _ = writeln!(
            out,
            "| Incident | Kind | Operation | Where | Count | First seen | Last seen | Samples |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for i in accepted {
            let samples: Vec<String> = i.samples.iter().map(sample_text).collect();
            let place = if i.location.pointer.is_empty() {
                format!("status {}", i.location.status)
            } else {
                format!("`{}`", i.location.pointer)
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
                i.id,
                i.kind.as_str(),
                cell(&operation(i)),
                cell(&place),
                i.count,
                i.first_seen,
                i.last_seen,
                if samples.is_empty() {
                    "(none)".to_string()
                } else {
                    cell(&format!("`{}`", samples.join("`, `")))
                }
            );
        }
        out.push('\n');
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "Not patched:\n");
        for s in skipped {
            let _ = writeln!(out, "- `{}` ({}): {}", s.id, s.kind.as_str(), s.reason);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
