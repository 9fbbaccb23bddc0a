//! YAML front end: turns the bytes of one file into a [`Node`] tree in which every value and
//! every key knows its line and column. All YAML in mockops goes through here, so the
//! hostile-input guards (size cap, UTF-8, alias budget, depth, duplicate keys) live in one place.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// 1-based line and column of a value in its file; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Loc {
    pub line: u32,
    pub column: u32,
}

impl Loc {
    pub const UNKNOWN: Loc = Loc { line: 0, column: 0 };

    pub fn new(line: u32, column: u32) -> Self {
        Self { line, column }
    }

    fn from_saphyr(l: &serde_saphyr::Location) -> Self {
        Loc {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            column: u32::try_from(l.column()).unwrap_or(u32::MAX),
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Limits for one document. Config files are small; API specs can be megabytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_nodes: usize,
    pub max_aliases: usize,
    /// Events that aliases may replay, and anchors retain, in all: well under the node budget,
    /// since a real document repeats a few blocks and an expanding one must stop before it
    /// costs time.
    pub max_replayed_events: usize,
}

impl Limits {
    /// For pipeline, service, federation, scenario, persona and settings files.
    pub const CONFIG: Limits = Limits {
        max_bytes: 1024 * 1024,
        max_depth: 64,
        max_nodes: 250_000,
        max_aliases: 10_000,
        max_replayed_events: 62_500,
    };
    /// For OpenAPI documents (Stripe's is ~4 MB and ~600k nodes).
    pub const SPEC: Limits = Limits {
        max_bytes: 16 * 1024 * 1024,
        max_depth: 128,
        max_nodes: 8_000_000,
        max_aliases: 50_000,
        // As `schema_diff::openapi::load` allows, so both spec parsers refuse the same files.
        max_replayed_events: 250_000,
    };
}

/// A YAML value with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub value: Value,
}

/// A mapping key with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    pub loc: Loc,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

impl Value {
    /// The JSON-Schema type name of the value, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::Str(_) => "string",
            Value::Seq(_) => "list",
            Value::Map(_) => "mapping",
        }
    }
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key of `key` in this mapping (for diagnostics that point at a key, not its value).
    pub fn key(&self, key: &str) -> Option<&Key> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    pub fn as_map(&self) -> &[(Key, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// Follows a JSON pointer (`/definition/steps/0/name`); returns the deepest node reached.
    pub fn locate(&self, pointer: &str) -> &Node {
        let mut node = self;
        for raw in pointer.split('/').skip(1) {
            let part = raw.replace("~1", "/").replace("~0", "~");
            let next = match &node.value {
                Value::Map(_) => node.get(&part),
                Value::Seq(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node
    }

    /// Converts to JSON for typed deserialisation.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::Seq(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Why a file could not be read as YAML. Every variant says where and what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum YamlError {
    #[error("file is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("file is not valid UTF-8 (first bad byte at line {}, column {})", .loc.line, .loc.column)]
    InvalidUtf8 { loc: Loc },
    #[error("{message}")]
    Syntax {
        loc: Loc,
        message: String,
        hint: Option<String>,
    },
    #[error("file is empty")]
    Empty,
}

impl YamlError {
    pub fn loc(&self) -> Loc {
        match self {
            YamlError::InvalidUtf8 { loc } | YamlError::Syntax { loc, .. } => *loc,
            YamlError::TooLarge { .. } | YamlError::Empty => Loc::new(1, 1),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            YamlError::TooLarge { .. } => {
                Some("split the file, or move large content (specs, fixtures) under specs/".into())
            }
            YamlError::InvalidUtf8 { .. } => Some("save the file as UTF-8".into()),
            YamlError::Syntax { hint, .. } => hint.clone(),
            YamlError::Empty => Some("add the document, or delete the file".into()),
        }
    }
}

/// Parses one YAML document.
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Node, YamlError> {
    if bytes.len() > limits.max_bytes {
        return Err(YamlError::TooLarge {
            size: bytes.len(),
            limit: limits.max_bytes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| YamlError::InvalidUtf8 {
        loc: loc_of_offset(bytes, e.valid_up_to()),
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(YamlError::Empty);
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = limits.max_depth;
    budget.max_nodes = limits.max_nodes;
    budget.max_aliases = limits.max_aliases;
    budget.max_events = limits.max_nodes.saturating_mul(4);
    budget.max_recorded_anchor_events = limits.max_replayed_events;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = limits.max_replayed_events;
    options.strict_booleans = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    let root: Spanned<Value> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| syntax_error(text, &e))?;
    Ok(Node {
        loc: Loc::from_saphyr(&root.referenced),
        value: root.value,
    })
}

fn syntax_error(text: &str, e: &serde_saphyr::Error) -> YamlError {
    let mut loc = e
        .location()
        .map(|l| Loc::from_saphyr(&l))
        .unwrap_or_else(|| Loc::new(1, 1));
    let raw = e.to_string();
    // The crate's message may repeat the position; keep the first line only.
    let mut message = raw
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    if let Some(stripped) = strip_position_prefix(&message) {
        message = stripped;
    }
    let lower = message.to_ascii_lowercase();
    let hint = if lower.contains("budget") || lower.contains("alias") && lower.contains("limit") {
        message = "document expands beyond the safety budget (too many nodes through aliases, or too deep)".into();
        Some("remove the alias chain or flatten the document: mockops refuses YAML that expands exponentially".into())
    } else if lower.contains("duplicate") {
        let key = message
            .split_once("key:")
            .map(|(_, k)| k.split(',').next().unwrap_or("").trim().to_string());
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            message = format!("duplicate key `{key}`");
        }
        Some("remove one of the two entries; YAML keys must be unique".into())
    } else if lower.contains("tab") {
        // The scanner reports where the token began; point at the tab itself.
        if let Some(tab) = text
            .lines()
            .enumerate()
            .skip(loc.line.saturating_sub(1) as usize)
            .find_map(|(i, l)| l.find('\t').map(|c| (i, c)))
        {
            let col = text
                .lines()
                .nth(tab.0)
                .map_or(0, |l| l[..tab.1].chars().count());
            loc = Loc::new(tab.0 as u32 + 1, col as u32 + 1);
        }
        message = "tab character in indentation".into();
        Some("YAML indentation must use spaces, not tabs".into())
    } else if lower.contains("depth") || lower.contains("recursion") || lower.contains("nesting") {
        Some("flatten the document; nesting deeper than the limit is refused".into())
    } else {
        None
    };
    YamlError::Syntax { loc, message, hint }
}

/// Strips a leading "line N column M:" or "... at line N column M" that the crate adds.
fn strip_position_prefix(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    if let Some(rest) = lower.strip_prefix("line ") {
        let idx = rest.find(':')?;
        return Some(message[5 + idx + 1..].trim().to_string());
    }
    if let Some(idx) = lower.rfind(" at line ") {
        return Some(message[..idx].trim().to_string());
    }
    None
}

/// Line and column (1-based, in characters) of a byte offset.
pub fn loc_of_offset(bytes: &[u8], offset: usize) -> Loc {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    Loc::new(
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Value>>()? {
            items.push(Node {
                loc: Loc::from_saphyr(&item.referenced),
                value: item.value,
            });
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Value>>()? {
            let name = match key.value {
                Value::Str(s) => s,
                Value::Int(i) => i.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Null => "null".to_string(),
                Value::Seq(_) | Value::Map(_) => {
                    return Err(de::Error::custom(
                        "complex mapping keys (lists or mappings as keys) are not supported",
                    ));
                }
            };
            let value = map.next_value::<Spanned<Value>>()?;
            entries.push((
                Key {
                    loc: Loc::from_saphyr(&key.referenced),
                    name,
                },
                Node {
                    loc: Loc::from_saphyr(&value.referenced),
                    value: value.value,
                },
            ));
        }
        Ok(Value::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Node, YamlError> {
        parse(s.as_bytes(), Limits::CONFIG)
    }

    #[test]
    fn locations_of_keys_and_values() {
        let n =
            p("name: x\ndefinition:\n  steps:\n    - name: a\n      timeout: 5\n").expect("parses");
        let step = n.locate("/definition/steps/0");
        assert_eq!(step.loc.line, 4);
        let t = n.locate("/definition/steps/0/timeout");
        assert_eq!((t.loc.line, t.loc.column), (5, 16));
        assert_eq!(t.value, Value::Int(5));
        assert_eq!(n.key("definition").map(|k| k.loc.line), Some(2));
    }

    #[test]
    fn yaml_11_booleans_stay_strings() {
        let n = p("country: no\non: yes\n").expect("parses");
        assert_eq!(n.get("country").and_then(Node::as_str), Some("no"));
    }

    #[test]
    fn duplicate_keys_are_errors_with_location() {
        let e = p("name: a\nname: b\n").expect_err("duplicate");
        assert_eq!(e.loc().line, 2, "{e:?}");
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let mut s = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
        {
            s.push_str(&format!("{name}: &{name} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"));
        }
        let start = std::time::Instant::now();
        let e = p(&s).expect_err("bomb");
        // A guard against expansion, not a benchmark: unguarded, this document never finishes.
        assert!(start.elapsed().as_secs() < 30);
        let YamlError::Syntax { message, hint, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(message.contains("safety budget"), "{message}");
        assert!(hint.is_some());
    }

    #[test]
    fn invalid_utf8_points_at_the_byte() {
        let e = parse(b"name: ok\nbad: \xff\xfe\n", Limits::CONFIG).expect_err("utf8");
        assert_eq!(
            e,
            YamlError::InvalidUtf8 {
                loc: Loc::new(2, 6)
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let s = format!("{}1{}", "[".repeat(500), "]".repeat(500));
        assert!(p(&s).is_err());
    }
}
