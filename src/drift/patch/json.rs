//! Edits of JSON text: the node is found by scanning the text (byte spans of every member and
//! item on the way), and only the edited span changes. New members and items copy the
//! file's layout: its indentation, its separators and line endings.

use serde_json::Value;

use super::edit::{EditError, Op, escape, segments};

/// Deepest nesting scanned.
const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    value: Span,
}

fn err(at: &str, why: impl Into<String>) -> EditError {
    EditError::Unsupported {
        at: at.to_string(),
        why: why.into(),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// End (exclusive) of the string starting at `i` (a `"`).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of the value starting at `i`.
fn value_end(b: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match b.get(i)? {
        b'"' => string_end(b, i),
        b'{' => {
            let (_, close) = members(b, i, depth)?;
            Some(close + 1)
        }
        b'[' => {
            let (_, close) = items(b, i, depth)?;
            Some(close + 1)
        }
        _ => {
            let mut j = i;
            while j < b.len() && !matches!(b[j], b',' | b'}' | b']') && !b[j].is_ascii_whitespace()
            {
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The members of the object opening at `open`, and the index of its `}`.
fn members(b: &[u8], open: usize, depth: usize) -> Option<(Vec<Member>, usize)> {
    let mut out = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b'}') {
        return Some((out, i));
    }
    loop {
        let key_start = i;
        let key_end = string_end(b, i)?;
        let key: String = serde_json::from_slice(&b[key_start..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let vs = skip_ws(b, i + 1);
        let ve = value_end(b, vs, depth + 1)?;
        out.push(Member {
            key,
            key_start,
            value: Span { start: vs, end: ve },
        });
        i = skip_ws(b, ve);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some((out, i)),
            _ => return None,
        }
    }
}

/// The items of the array opening at `open`, and the index of its `]`.
fn items(b: &[u8], open: usize, depth: usize) -> Option<(Vec<Span>, usize)> {
    let mut out = Vec::new();
    let mut i = skip_ws(b, open + 1);
    if b.get(i) == Some(&b']') {
        return Some((out, i));
    }
    loop {
        let e = value_end(b, i, depth + 1)?;
        out.push(Span { start: i, end: e });
        i = skip_ws(b, e);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b']' => return Some((out, i)),
            _ => return None,
        }
    }
}

/// The span of the value at `pointer`.
fn locate(text: &str, pointer: &str) -> Result<Span, EditError> {
    let b = text.as_bytes();
    let start = skip_ws(b, 0);
    let bad = || EditError::Unparsable("not a JSON document".into());
    let mut span = Span {
        start,
        end: value_end(b, start, 0).ok_or_else(bad)?,
    };
    for seg in segments(pointer) {
        span = match b[span.start] {
            b'{' => {
                let (ms, _) = members(b, span.start, 0).ok_or_else(bad)?;
                ms.into_iter()
                    .find(|m| m.key == seg)
                    .map(|m| m.value)
                    .ok_or_else(|| EditError::NotFound(pointer.to_string()))?
            }
            b'[' => {
                let (is, _) = items(b, span.start, 0).ok_or_else(bad)?;
                seg.parse::<usize>()
                    .ok()
                    .and_then(|i| is.get(i).copied())
                    .ok_or_else(|| EditError::NotFound(pointer.to_string()))?
            }
            _ => return Err(EditError::NotFound(pointer.to_string())),
        };
    }
    Ok(span)
}

/// Indentation (leading blanks) of the line holding byte `i`.
fn line_indent(text: &str, i: usize) -> &str {
    let line_start = text[..i].rfind('\n').map_or(0, |p| p + 1);
    let line = &text[line_start..];
    let n = line.len() - line.trim_start_matches([' ', '\t']).len();
    &line[..n]
}

/// The file's indentation unit: the smallest positive indentation of a line (two spaces when
/// nothing is indented).
fn unit(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| &l[..l.len() - l.trim_start_matches([' ', '\t']).len()])
        .filter(|i| !i.is_empty())
        .min_by_key(|i| i.len())
        .unwrap_or("  ")
        .to_string()
}

/// `value` as JSON in the file's layout, its continuation lines starting with `indent`.
fn render(value: &Value, indent: &str, unit: &str, nl: &str, pretty: bool) -> String {
    if !pretty {
        return inline(value);
    }
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return serde_json::to_string(value).unwrap_or_default();
    }
    let text = String::from_utf8(buf).unwrap_or_default();
    text.split('\n')
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                l.to_string()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join(nl)
}

/// `value` on one line, with a blank after each `,` and `:` as hand-written JSON has it.
fn inline(value: &Value) -> String {
    match value {
        Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", key_text(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn key_text(key: &str) -> String {
    serde_json::to_string(key).unwrap_or_else(|_| format!("\"{key}\""))
}

/// Applies one edit to JSON text.
pub fn apply(text: &str, op: &Op) -> Result<String, EditError> {
    let b = text.as_bytes();
    let at = op.at();
    let span = locate(text, at)?;
    let nl = super::edit::line_ending(text);
    let unit = unit(text);
    let pretty = text.trim_end().contains('\n');
    let mut out = text.to_string();
    let bad = || EditError::Unparsable("not a JSON document".into());
    match op {
        Op::AddKey { key, value, .. } => {
            if b[span.start] != b'{' {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "not an object",
                    wanted: "a mapping",
                });
            }
            let (ms, close) = members(b, span.start, 0).ok_or_else(bad)?;
            match ms.last() {
                Some(last) => {
                    let first = &ms[0];
                    let multiline = text[span.start..first.key_start].contains('\n');
                    let indent = line_indent(text, first.key_start).to_string();
                    let colon = {
                        let key_end = string_end(b, first.key_start).ok_or_else(bad)?;
                        text[key_end..first.value.start].to_string()
                    };
                    let sep = if multiline {
                        format!(",{nl}{indent}")
                    } else if ms.len() > 1 {
                        let prev_end = ms[0].value.end;
                        text[prev_end..ms[1].key_start].to_string()
                    } else {
                        ", ".to_string()
                    };
                    let rendered = render(value, &indent, &unit, nl, pretty && multiline);
                    let insert = format!("{sep}{}{colon}{rendered}", key_text(key));
                    out.insert_str(last.value.end, &insert);
                }
                None => {
                    let outer = line_indent(text, span.start).to_string();
                    let insert = if pretty {
                        let inner = format!("{outer}{unit}");
                        format!(
                            "{nl}{inner}{}: {}{nl}{outer}",
                            key_text(key),
                            render(value, &inner, &unit, nl, true)
                        )
                    } else {
                        format!("{}: {}", key_text(key), render(value, "", &unit, nl, false))
                    };
                    out.replace_range(span.start + 1..close, &insert);
                }
            }
        }
        Op::Append { items: new, .. } => {
            if b[span.start] != b'[' {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "not an array",
                    wanted: "a sequence",
                });
            }
            let (is, close) = items(b, span.start, 0).ok_or_else(bad)?;
            let (sep, indent, multiline) = match is.first() {
                Some(first) => {
                    let multiline = text[span.start..first.start].contains('\n');
                    let indent = line_indent(text, first.start).to_string();
                    let sep = if multiline {
                        format!(",{nl}{indent}")
                    } else if is.len() > 1 {
                        text[is[0].end..is[1].start].to_string()
                    } else {
                        ", ".to_string()
                    };
                    (sep, indent, multiline)
                }
                None => (", ".to_string(), String::new(), false),
            };
            let rendered: Vec<String> = new
                .iter()
                .map(|v| render(v, &indent, &unit, nl, pretty && multiline))
                .collect();
            match is.last() {
                Some(last) => {
                    let insert: String = rendered.iter().map(|r| format!("{sep}{r}")).collect();
                    out.insert_str(last.end, &insert);
                }
                None => out.replace_range(span.start + 1..close, &rendered.join(&sep)),
            }
        }
        Op::RemoveItem { index, .. } => {
            if b[span.start] != b'[' {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "not an array",
                    wanted: "a sequence",
                });
            }
            let (is, close) = items(b, span.start, 0).ok_or_else(bad)?;
            let spans: Vec<(usize, usize)> = is.iter().map(|s| (s.start, s.end)).collect();
            remove_one(&mut out, span.start, close, &spans, *index, at)?;
        }
        Op::RemoveKey { key, .. } => {
            if b[span.start] != b'{' {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "not an object",
                    wanted: "a mapping",
                });
            }
            let (ms, close) = members(b, span.start, 0).ok_or_else(bad)?;
            let index = ms
                .iter()
                .position(|m| m.key == *key)
                .ok_or_else(|| EditError::NotFound(format!("{at}/{}", escape(key))))?;
            let spans: Vec<(usize, usize)> =
                ms.iter().map(|m| (m.key_start, m.value.end)).collect();
            remove_one(&mut out, span.start, close, &spans, index, at)?;
        }
        Op::Replace { value, .. } => {
            let indent = line_indent(text, span.start).to_string();
            let multiline = text[span.start..span.end].contains('\n');
            out.replace_range(
                span.start..span.end,
                &render(value, &indent, &unit, nl, pretty && multiline),
            );
        }
    }
    Ok(out)
}

/// Removes element `index` of the collection spanning `open..=close` whose elements span
/// `spans`, with the separator on one side of it.
fn remove_one(
    out: &mut String,
    open: usize,
    close: usize,
    spans: &[(usize, usize)],
    index: usize,
    at: &str,
) -> Result<(), EditError> {
    if index >= spans.len() {
        return Err(err(at, format!("has no item {index}")));
    }
    let range = if spans.len() == 1 {
        open + 1..close
    } else if index > 0 {
        spans[index - 1].1..spans[index].1
    } else {
        spans[0].0..spans[1].0
    };
    out.replace_range(range, "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::edit::apply_text;
    use super::*;
    use serde_json::json;

    const SPEC: &str = "{\n    \"openapi\": \"3.0.3\",\n    \"paths\": {\n        \"/pets\": {\n            \"get\": {\n                \"responses\": {\n                    \"200\": {\"description\": \"ok\"}\n                }\n            }\n        }\n    },\n    \"components\": {\"schemas\": {\"Pet\": {\"type\": \"object\", \"required\": [\"id\", \"name\"], \"properties\": {\"status\": {\"type\": \"string\", \"enum\": [\"a\", \"b\"], \"format\": \"x\"}}}}}\n}\n";

    fn edit(text: &str, op: Op) -> String {
        apply_text("spec.json", text, &[op]).unwrap()
    }

    #[test]
    fn a_key_added_to_a_pretty_object_takes_its_indentation() {
        let out = edit(
            SPEC,
            Op::AddKey {
                at: "/paths/~1pets/get/responses".into(),
                key: "404".into(),
                value: json!({"description": "gone"}),
            },
        );
        assert!(
            out.contains("\"200\": {\"description\": \"ok\"},\n                    \"404\": {\n                        \"description\": \"gone\"\n                    }\n                }"),
            "{out}"
        );
        assert!(out.starts_with("{\n    \"openapi\": \"3.0.3\",\n"));
    }

    #[test]
    fn compact_collections_stay_compact() {
        let out = edit(
            SPEC,
            Op::Append {
                at: "/components/schemas/Pet/properties/status/enum".into(),
                items: vec![json!("c")],
            },
        );
        assert!(out.contains("\"enum\": [\"a\", \"b\", \"c\"]"), "{out}");
        let out = edit(
            SPEC,
            Op::RemoveItem {
                at: "/components/schemas/Pet/required".into(),
                index: 0,
            },
        );
        assert!(out.contains("\"required\": [\"name\"]"), "{out}");
        let out = edit(
            SPEC,
            Op::RemoveKey {
                at: "/components/schemas/Pet/properties/status".into(),
                key: "format".into(),
            },
        );
        assert!(
            out.contains("{\"type\": \"string\", \"enum\": [\"a\", \"b\"]}"),
            "{out}"
        );
        let out = edit(
            SPEC,
            Op::Replace {
                at: "/components/schemas/Pet/properties/status/type".into(),
                value: json!(["string", "null"]),
            },
        );
        assert!(out.contains("\"type\": [\"string\", \"null\"]"), "{out}");
    }

    #[test]
    fn empty_collections_and_crlf() {
        let text = "{\r\n  \"a\": {},\r\n  \"b\": []\r\n}\r\n";
        let out = edit(
            text,
            Op::AddKey {
                at: "/a".into(),
                key: "k".into(),
                value: json!(1),
            },
        );
        assert_eq!(
            out,
            "{\r\n  \"a\": {\r\n    \"k\": 1\r\n  },\r\n  \"b\": []\r\n}\r\n"
        );
        let out = edit(
            text,
            Op::Append {
                at: "/b".into(),
                items: vec![json!(1), json!(2)],
            },
        );
        assert_eq!(out, "{\r\n  \"a\": {},\r\n  \"b\": [1, 2]\r\n}\r\n");
        let one = "{\"r\": [\"x\"]}";
        assert_eq!(
            edit(
                one,
                Op::RemoveItem {
                    at: "/r".into(),
                    index: 0
                }
            ),
            "{\"r\": []}"
        );
    }

    #[test]
    fn missing_nodes_are_errors_not_panics() {
        for bad in ["", "{", "{\"a\": [1,", "nope"] {
            assert!(
                apply(
                    bad,
                    &Op::RemoveKey {
                        at: "/a".into(),
                        key: "x".into()
                    }
                )
                .is_err()
            );
        }
        assert_eq!(
            apply(
                SPEC,
                &Op::RemoveKey {
                    at: "/nope".into(),
                    key: "x".into()
                }
            )
            .unwrap_err(),
            EditError::NotFound("/nope".into())
        );
    }
}

#[cfg(test)]
mod properties {
    use super::super::edit::apply_text;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever the layout (pretty with any indentation, or compact), an edit parses to
        /// its meaning and everything before the edited collection is kept byte for byte.
        #[test]
        fn edits_keep_the_layout_around_them(
            indent in proptest::option::of(1usize..6),
            values in proptest::collection::vec("[a-z]{1,6}", 1..5),
            new in "[a-zA-Z0-9 \"\\\\/{}\\[\\],:]{0,10}",
            which in 0usize..4,
        ) {
            let doc = json!({
                "openapi": "3.1.0",
                "components": {"schemas": {"Pet": {
                    "type": "object",
                    "required": ["id", "status"],
                    "properties": {"status": {"type": "string", "enum": values}}
                }}}
            });
            let text = match indent {
                Some(n) => {
                    let mut buf = Vec::new();
                    let unit = " ".repeat(n);
                    let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
                    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
                    serde::Serialize::serialize(&doc, &mut ser).expect("json");
                    String::from_utf8(buf).expect("utf-8")
                }
                None => serde_json::to_string(&doc).expect("json"),
            };
            let op = match which {
                0 => Op::Append {
                    at: "/components/schemas/Pet/properties/status/enum".into(),
                    items: vec![json!(new.clone())],
                },
                1 => Op::RemoveItem { at: "/components/schemas/Pet/required".into(), index: 0 },
                2 => Op::AddKey {
                    at: "/components/schemas/Pet/properties".into(),
                    key: new.clone(),
                    value: json!({"type": ["string", "null"]}),
                },
                _ => Op::RemoveKey {
                    at: "/components/schemas/Pet/properties/status".into(),
                    key: "type".into(),
                },
            };
            let out = apply_text("s.json", &text, std::slice::from_ref(&op))
                .unwrap_or_else(|e| panic!("{e}\n{text}"));
            let head = text.find("\"required\"").expect("required");
            prop_assert_eq!(&out[..head], &text[..head]);
            if let Some(n) = indent {
                for line in out.lines() {
                    let lead = line.len() - line.trim_start().len();
                    prop_assert_eq!(lead % n, 0, "{}", out);
                }
            } else {
                prop_assert!(!out.contains('\n'), "{}", out);
            }
        }
    }
}
