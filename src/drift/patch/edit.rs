//! The edits a spec patch is made of, applied two ways: to the parsed document (what the
//! patch means) and to the file's text (what the pull request shows), where everything
//! outside the edited node is kept byte for byte. [`apply_text`] checks that both agree.

use serde_json::Value;

use super::{json, yaml};

/// One change to a document, at a JSON pointer (RFC 6901) into it.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Adds `key: value` at the end of the mapping at `at`.
    AddKey {
        at: String,
        key: String,
        value: Value,
    },
    /// Appends `items` to the sequence at `at`.
    Append { at: String, items: Vec<Value> },
    /// Removes item `index` of the sequence at `at`.
    RemoveItem { at: String, index: usize },
    /// Replaces the value at `at` (a scalar or a flow collection in YAML).
    Replace { at: String, value: Value },
    /// Removes `key` and its value from the mapping at `at`.
    RemoveKey { at: String, key: String },
}

impl Op {
    pub fn at(&self) -> &str {
        match self {
            Op::AddKey { at, .. }
            | Op::Append { at, .. }
            | Op::RemoveItem { at, .. }
            | Op::Replace { at, .. }
            | Op::RemoveKey { at, .. } => at,
        }
    }
}

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("`{0}` is not in the document")]
    NotFound(String),
    #[error("`{at}` is {found}, not {wanted}")]
    WrongKind {
        at: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("`{at}`: {why}; edit this place by hand")]
    Unsupported { at: String, why: String },
    #[error("the edited text does not parse: {0}")]
    Unparsable(String),
    #[error("the edited text does not say what the edit means (at `{0}`)")]
    Disagrees(String),
}

/// The file's syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Json,
    Yaml,
}

impl Syntax {
    /// JSON when the first non-blank byte opens an object or array (as the spec loader
    /// decides), YAML otherwise.
    pub fn of(text: &str) -> Syntax {
        match text.bytes().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') | Some(b'[') => Syntax::Json,
            _ => Syntax::Yaml,
        }
    }
}

/// The segments of a JSON pointer, unescaped.
pub fn segments(pointer: &str) -> Vec<String> {
    if pointer.is_empty() {
        return Vec::new();
    }
    pointer
        .trim_start_matches('/')
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// A pointer segment escaped.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Applies `op` to a parsed document.
pub fn apply_value(doc: &mut Value, op: &Op) -> Result<(), EditError> {
    let at = op.at();
    let node = doc
        .pointer_mut(at)
        .ok_or_else(|| EditError::NotFound(at.to_string()))?;
    let kind = kind_of(node);
    match op {
        Op::AddKey { key, value, .. } => {
            let map = node.as_object_mut().ok_or(EditError::WrongKind {
                at: at.to_string(),
                found: kind,
                wanted: "a mapping",
            })?;
            if map.contains_key(key) {
                return Err(EditError::Unsupported {
                    at: at.to_string(),
                    why: format!("`{key}` is already there"),
                });
            }
            map.insert(key.clone(), value.clone());
        }
        Op::Append { items, .. } => {
            let seq = node.as_array_mut().ok_or(EditError::WrongKind {
                at: at.to_string(),
                found: kind,
                wanted: "a sequence",
            })?;
            seq.extend(items.iter().cloned());
        }
        Op::RemoveItem { index, .. } => {
            let seq = node.as_array_mut().ok_or(EditError::WrongKind {
                at: at.to_string(),
                found: kind,
                wanted: "a sequence",
            })?;
            if *index >= seq.len() {
                return Err(EditError::NotFound(format!("{at}/{index}")));
            }
            seq.remove(*index);
        }
        Op::Replace { value, .. } => *node = value.clone(),
        Op::RemoveKey { key, .. } => {
            let map = node.as_object_mut().ok_or(EditError::WrongKind {
                at: at.to_string(),
                found: kind,
                wanted: "a mapping",
            })?;
            if map.shift_remove(key).is_none() {
                return Err(EditError::NotFound(format!("{at}/{}", escape(key))));
            }
        }
    }
    Ok(())
}

pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "a mapping",
        Value::Array(_) => "a sequence",
        _ => "a scalar",
    }
}

/// Applies `ops` to `text` with the least textual change, and checks that the result parses
/// into what applying them to the parsed document gives.
pub fn apply_text(path: &str, text: &str, ops: &[Op]) -> Result<String, EditError> {
    let syntax = Syntax::of(text);
    let mut doc = parse(path, text)?;
    let mut out = text.to_string();
    for op in ops {
        apply_value(&mut doc, op)?;
        out = match syntax {
            Syntax::Json => json::apply(&out, op)?,
            Syntax::Yaml => yaml::apply(&out, op)?,
        };
        let now = parse(path, &out)?;
        if now != doc {
            return Err(EditError::Disagrees(op.at().to_string()));
        }
    }
    Ok(out)
}

fn parse(path: &str, text: &str) -> Result<Value, EditError> {
    crate::schema_diff::openapi::parse_document(path, text.as_bytes())
        .map_err(|p| EditError::Unparsable(p.message))
}

/// The line ending the text uses (`\r\n` when its first line ends so).
pub(crate) fn line_ending(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes()[i - 1] == b'\r' => "\r\n",
        _ => "\n",
    }
}
