//! Edits of YAML text, by a small locator over the text rather than a re-serialisation: the
//! node a pointer names is found by walking block mappings and sequences by indentation (and
//! flow collections by their brackets), and only the lines or bytes of the edit change.
//! Comments, key order, quoting, indentation and line endings of everything else stay as
//! they were; what is inserted is written in the file's own style (its indentation unit,
//! whether sequences are indented under their key, its preferred quote).
//!
//! Anchors, aliases, tags and block scalars are not walked into: an edit there is refused
//! with the place, so the spec is edited by hand.

use serde_json::Value;

use super::edit::{EditError, Op, escape, segments};

#[derive(Debug, Clone, Copy)]
struct Line {
    start: usize,
    /// End of the line's text (before `\r\n` or `\n`).
    end: usize,
    /// Start of the next line (`end` of the text for the last line).
    next: usize,
    indent: usize,
    /// Neither blank, nor only a comment, nor a document marker or directive.
    content: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    /// A block mapping whose keys sit at column `indent`; its first key is on line `first` at
    /// `first_col` (after a `- ` when the mapping is a sequence item). Lines `first..end`.
    Map {
        indent: usize,
        first: usize,
        first_col: usize,
        end: usize,
    },
    /// A block sequence whose dashes sit at column `indent`. Lines `first..end`.
    Seq {
        indent: usize,
        first: usize,
        end: usize,
    },
    /// A scalar or a flow collection, by bytes.
    Inline { start: usize, end: usize },
    /// A key with no value; `at` is where its line's text ends.
    Empty { at: usize },
    /// A block scalar, an alias, an anchored or tagged node.
    Opaque,
}

#[derive(Debug)]
struct Entry {
    key: String,
    /// The key as written (to copy its quoting).
    raw: String,
    line: usize,
    value: Node,
    /// Lines `line..end` hold the entry.
    end: usize,
}

#[derive(Debug)]
struct Item {
    line: usize,
    value: Node,
    end: usize,
}

struct Doc<'a> {
    text: &'a str,
    lines: Vec<Line>,
}

fn unsupported(at: &str, why: impl Into<String>) -> EditError {
    EditError::Unsupported {
        at: at.to_string(),
        why: why.into(),
    }
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let (end, next) = match text[start..].find('\n') {
                Some(i) => {
                    let nl = start + i;
                    let end = if nl > start && text.as_bytes()[nl - 1] == b'\r' {
                        nl - 1
                    } else {
                        nl
                    };
                    (end, nl + 1)
                }
                None => (text.len(), text.len()),
            };
            let line = &text[start..end];
            let trimmed = line.trim_start_matches(' ');
            let indent = line.len() - trimmed.len();
            let t = trimmed.trim_end();
            let content = !(t.is_empty()
                || t.starts_with('#')
                || (indent == 0
                    && (t == "---" || t == "..." || t.starts_with("--- #") || t.starts_with('%'))));
            lines.push(Line {
                start,
                end,
                next,
                indent,
                content,
            });
            start = next;
        }
        Doc { text, lines }
    }

    fn bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    fn is_dash(&self, l: usize, col: usize) -> bool {
        let line = &self.lines[l];
        let s = &self.text[line.start + col..line.end];
        s == "-" || s.starts_with("- ")
    }

    /// End of the text of line `l` from `from`, before a trailing comment and blanks.
    fn text_end(&self, l: usize, from: usize) -> usize {
        let line = self.lines[l];
        let b = self.bytes();
        let mut i = from;
        let mut quote: Option<u8> = None;
        while i < line.end {
            let c = b[i];
            match quote {
                Some(q) => {
                    if c == b'\\' && q == b'"' {
                        i += 1;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => {
                    if (c == b'"' || c == b'\'')
                        && (i == from || b[i - 1] == b' ' || b"[{,:".contains(&b[i - 1]))
                    {
                        quote = Some(c);
                    } else if c == b'#' && (i == from || b[i - 1] == b' ' || b[i - 1] == b'\t') {
                        break;
                    }
                }
            }
            i += 1;
        }
        let mut e = i.min(line.end);
        while e > from && (b[e - 1] == b' ' || b[e - 1] == b'\t') {
            e -= 1;
        }
        e
    }

    fn next_content(&self, after: usize) -> Option<usize> {
        (after + 1..self.lines.len()).find(|&l| self.lines[l].content)
    }

    /// One past the last content line of the block whose items sit at `indent`, starting at
    /// line `from` (a dash block when `seq`).
    fn block_end(&self, from: usize, indent: usize, seq: bool) -> usize {
        let mut last = from;
        for l in from + 1..self.lines.len() {
            let line = self.lines[l];
            if !line.content {
                continue;
            }
            let inside = line.indent > indent
                || (line.indent == indent && (!seq || self.is_dash(l, indent)));
            if !inside {
                break;
            }
            last = l;
        }
        last + 1
    }

    fn root(&self) -> Node {
        let Some(first) = (0..self.lines.len()).find(|&l| self.lines[l].content) else {
            return Node::Empty { at: 0 };
        };
        let line = self.lines[first];
        let c = self.bytes()[line.start + line.indent];
        if c == b'[' || c == b'{' {
            return match flow_end(self.bytes(), line.start + line.indent) {
                Some(e) => Node::Inline {
                    start: line.start + line.indent,
                    end: e,
                },
                None => Node::Opaque,
            };
        }
        if self.is_dash(first, line.indent) {
            Node::Seq {
                indent: line.indent,
                first,
                end: self.block_end(first, line.indent, true),
            }
        } else {
            Node::Map {
                indent: line.indent,
                first,
                first_col: line.indent,
                end: self.block_end(first, line.indent, false),
            }
        }
    }

    /// The value that starts at byte `p` of line `l`, owned by a key or dash at `owner_col`.
    fn value_at(&self, l: usize, p: usize, owner_col: usize, compact_seq: bool) -> Node {
        let te = self.text_end(l, p);
        let b = self.bytes();
        let mut s = p;
        while s < te && b[s] == b' ' {
            s += 1;
        }
        if s >= te {
            let Some(j) = self.next_content(l) else {
                return Node::Empty { at: te };
            };
            let ind = self.lines[j].indent;
            let dash = self.is_dash(j, ind);
            if ind > owner_col || (ind == owner_col && compact_seq && dash) {
                let start = self.lines[j].start + ind;
                let c = b[start];
                if c == b'[' || c == b'{' {
                    return match flow_end(b, start) {
                        Some(e) => Node::Inline { start, end: e },
                        None => Node::Opaque,
                    };
                }
                if dash {
                    return Node::Seq {
                        indent: ind,
                        first: j,
                        end: self.block_end(j, ind, true),
                    };
                }
                if self.key_at(j, ind).is_some() {
                    return Node::Map {
                        indent: ind,
                        first: j,
                        first_col: ind,
                        end: self.block_end(j, ind, false),
                    };
                }
                // A plain scalar continued on the next line.
                return Node::Opaque;
            }
            return Node::Empty { at: te };
        }
        match b[s] {
            b'[' | b'{' => match flow_end(b, s) {
                Some(e) => Node::Inline { start: s, end: e },
                None => Node::Opaque,
            },
            b'|' | b'>' | b'&' | b'*' | b'!' => Node::Opaque,
            _ => Node::Inline { start: s, end: te },
        }
    }

    /// The key starting at column `col` of line `l`: (key, raw text, byte after the colon).
    fn key_at(&self, l: usize, col: usize) -> Option<(String, String, usize)> {
        let line = self.lines[l];
        let b = self.bytes();
        let s = line.start + col;
        if s >= line.end {
            return None;
        }
        let (key, key_end) = match b[s] {
            b'"' => {
                let e = dq_end(b, s, line.end)?;
                (serde_json::from_str::<String>(&self.text[s..e]).ok()?, e)
            }
            b'\'' => {
                let e = sq_end(b, s, line.end)?;
                (self.text[s + 1..e - 1].replace("''", "'"), e)
            }
            b'-' if self.is_dash(l, col) => return None,
            b'?' | b'[' | b'{' | b'#' | b'&' | b'*' | b'!' => return None,
            _ => {
                let mut i = s;
                loop {
                    if i >= line.end {
                        return None;
                    }
                    if b[i] == b':' && (i + 1 == line.end || b[i + 1] == b' ' || b[i + 1] == b'\t')
                    {
                        break;
                    }
                    if b[i] == b'#' && i > s && b[i - 1] == b' ' {
                        return None;
                    }
                    i += 1;
                }
                (self.text[s..i].trim_end().to_string(), i)
            }
        };
        let mut i = key_end;
        while i < line.end && b[i] == b' ' {
            i += 1;
        }
        if i < line.end && b[i] == b':' {
            Some((key, self.text[s..key_end].to_string(), i + 1))
        } else {
            None
        }
    }

    fn entries(&self, node: Node) -> Vec<Entry> {
        let Node::Map {
            indent,
            first,
            first_col,
            end,
        } = node
        else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = Vec::new();
        for l in first..end {
            let line = self.lines[l];
            if !line.content {
                continue;
            }
            let col = if l == first { first_col } else { line.indent };
            if l != first && line.indent != indent {
                continue;
            }
            let Some((key, raw, p)) = self.key_at(l, col) else {
                continue;
            };
            let value = self.value_at(l, p, col, true);
            let vend = match value {
                Node::Map { end, .. } | Node::Seq { end, .. } => end,
                Node::Inline { end, .. } => self.line_of(end.saturating_sub(1)) + 1,
                _ => l + 1,
            };
            out.push(Entry {
                key,
                raw,
                line: l,
                value,
                end: vend.max(l + 1),
            });
        }
        out
    }

    fn items(&self, node: Node) -> Vec<Item> {
        let Node::Seq { indent, first, end } = node else {
            return Vec::new();
        };
        let b = self.bytes();
        let mut out = Vec::new();
        for l in first..end {
            let line = self.lines[l];
            if !line.content || line.indent != indent || !self.is_dash(l, indent) {
                continue;
            }
            let p = line.start + indent + 1;
            let mut q = p;
            while q < line.end && b[q] == b' ' {
                q += 1;
            }
            let qcol = q - line.start;
            let value = if q < line.end && b[q] == b'-' && self.is_dash(l, qcol) {
                Node::Opaque
            } else if q < self.text_end(l, q) && self.key_at(l, qcol).is_some() {
                Node::Map {
                    indent: qcol,
                    first: l,
                    first_col: qcol,
                    end: self.block_end(l, qcol, false),
                }
            } else {
                self.value_at(l, p, indent, false)
            };
            let vend = match value {
                Node::Map { end, .. } | Node::Seq { end, .. } => end,
                Node::Inline { end, .. } => self.line_of(end.saturating_sub(1)) + 1,
                _ => l + 1,
            };
            out.push(Item {
                line: l,
                value,
                end: vend.max(l + 1),
            });
        }
        out
    }

    fn line_of(&self, byte: usize) -> usize {
        self.lines
            .partition_point(|l| l.next <= byte)
            .min(self.lines.len().saturating_sub(1))
    }

    fn locate(&self, pointer: &str) -> Result<Node, EditError> {
        let mut node = self.root();
        let mut walked = String::new();
        for seg in segments(pointer) {
            walked.push('/');
            walked.push_str(&escape(&seg));
            node = match node {
                Node::Map { .. } => self
                    .entries(node)
                    .into_iter()
                    .find(|e| e.key == seg)
                    .map(|e| e.value)
                    .ok_or_else(|| EditError::NotFound(pointer.to_string()))?,
                Node::Seq { .. } => seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| self.items(node).into_iter().nth(i))
                    .map(|i| i.value)
                    .ok_or_else(|| EditError::NotFound(pointer.to_string()))?,
                Node::Inline { start, end } => {
                    let (is_map, elems) = flow_elems(self.text, start, end)
                        .ok_or_else(|| EditError::NotFound(pointer.to_string()))?;
                    let found = if is_map {
                        elems.into_iter().find(|e| e.key.as_deref() == Some(&seg))
                    } else {
                        seg.parse::<usize>()
                            .ok()
                            .and_then(|i| elems.into_iter().nth(i))
                    };
                    let e = found.ok_or_else(|| EditError::NotFound(pointer.to_string()))?;
                    Node::Inline {
                        start: e.vstart,
                        end: e.vend,
                    }
                }
                Node::Opaque => {
                    return Err(unsupported(
                        &walked,
                        "it goes through an anchor, alias, tag or block scalar",
                    ));
                }
                Node::Empty { .. } => return Err(EditError::NotFound(pointer.to_string())),
            };
        }
        Ok(node)
    }
}

/// End (exclusive) of a double-quoted scalar starting at `s`.
fn dq_end(b: &[u8], s: usize, limit: usize) -> Option<usize> {
    let mut i = s + 1;
    while i < limit {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive) of a single-quoted scalar starting at `s`.
fn sq_end(b: &[u8], s: usize, limit: usize) -> Option<usize> {
    let mut i = s + 1;
    while i < limit {
        if b[i] == b'\'' {
            if i + 1 < limit && b[i + 1] == b'\'' {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// End (exclusive) of the flow collection opening at `s`.
fn flow_end(b: &[u8], s: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = s;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i = dq_end(b, i, b.len())?;
                continue;
            }
            b'\'' if i > 0 && b" [{,".contains(&b[i - 1]) => {
                i = sq_end(b, i, b.len())?;
                continue;
            }
            b'#' if i > 0 && (b[i - 1] == b' ' || b[i - 1] == b'\n') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[derive(Debug)]
struct FlowElem {
    key: Option<String>,
    /// Start of the element (its key, in a mapping).
    start: usize,
    vstart: usize,
    vend: usize,
}

/// The elements of the flow collection spanning `start..end`, and whether it is a mapping.
fn flow_elems(text: &str, start: usize, end: usize) -> Option<(bool, Vec<FlowElem>)> {
    let b = text.as_bytes();
    let is_map = match b.get(start)? {
        b'{' => true,
        b'[' => false,
        _ => return None,
    };
    let inner_end = end - 1;
    let mut pieces = Vec::new();
    let mut i = start + 1;
    let mut piece = i;
    let mut depth = 0usize;
    while i < inner_end {
        match b[i] {
            b'"' => {
                i = dq_end(b, i, inner_end)?;
                continue;
            }
            b'\'' if b" [{,:\n".contains(&b[i - 1]) => {
                i = sq_end(b, i, inner_end)?;
                continue;
            }
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.checked_sub(1)?,
            b',' if depth == 0 => {
                pieces.push((piece, i));
                piece = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    pieces.push((piece, inner_end));
    let trim = |(s, e): (usize, usize)| {
        let mut s = s;
        let mut e = e;
        while s < e && b[s].is_ascii_whitespace() {
            s += 1;
        }
        while e > s && b[e - 1].is_ascii_whitespace() {
            e -= 1;
        }
        (s, e)
    };
    let mut out = Vec::new();
    for p in pieces {
        let (s, e) = trim(p);
        if s == e {
            continue;
        }
        if !is_map {
            out.push(FlowElem {
                key: None,
                start: s,
                vstart: s,
                vend: e,
            });
            continue;
        }
        let (key, after) = match b[s] {
            b'"' => {
                let ke = dq_end(b, s, e)?;
                (serde_json::from_str::<String>(&text[s..ke]).ok()?, ke)
            }
            b'\'' => {
                let ke = sq_end(b, s, e)?;
                (text[s + 1..ke - 1].replace("''", "'"), ke)
            }
            _ => {
                let mut k = s;
                while k < e && !(b[k] == b':' && (k + 1 == e || b[k + 1].is_ascii_whitespace())) {
                    k += 1;
                }
                (text[s..k].trim_end().to_string(), k)
            }
        };
        let mut c = after;
        while c < e && b[c].is_ascii_whitespace() {
            c += 1;
        }
        if c >= e || b[c] != b':' {
            return None;
        }
        let (vs, ve) = trim((c + 1, e));
        out.push(FlowElem {
            key: Some(key),
            start: s,
            vstart: vs,
            vend: ve,
        });
    }
    Some((is_map, out))
}

/// How the file writes what mockops inserts.
#[derive(Debug, Clone)]
struct Style {
    unit: usize,
    /// `key:\n- item` (dashes at the key's column) rather than `key:\n  - item`.
    compact_seq: bool,
    quote: char,
    nl: &'static str,
}

impl Style {
    fn of(doc: &Doc<'_>) -> Style {
        let content: Vec<usize> = (0..doc.lines.len())
            .filter(|&l| doc.lines[l].content)
            .collect();
        let unit = content
            .iter()
            .map(|&l| doc.lines[l].indent)
            .filter(|&i| i > 0)
            .min()
            .unwrap_or(2);
        let mut compact_seq = false;
        for w in content.windows(2) {
            let (a, b) = (w[0], w[1]);
            let la = doc.lines[a];
            let text = &doc.text[la.start..la.end];
            if text.trim_end().ends_with(':') && doc.is_dash(b, doc.lines[b].indent) {
                compact_seq = doc.lines[b].indent == la.indent;
                break;
            }
        }
        let singles = doc.text.matches(": '").count() + doc.text.matches("- '").count();
        let doubles = doc.text.matches(": \"").count() + doc.text.matches("- \"").count();
        Style {
            unit,
            compact_seq,
            quote: if singles > doubles { '\'' } else { '"' },
            nl: super::edit::line_ending(doc.text),
        }
    }
}

fn plain_ok(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !(first.is_ascii_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if s.ends_with(' ') || s.contains(" #") || s.contains(": ") {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || " _./+()-".contains(c))
    {
        return false;
    }
    !matches!(
        s.to_ascii_lowercase().as_str(),
        "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
    )
}

fn quoted(s: &str, quote: char) -> String {
    if quote == '\'' && !s.chars().any(char::is_control) {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
    }
}

fn scalar(s: &str, style: &Style) -> String {
    if plain_ok(s) {
        s.to_string()
    } else {
        quoted(s, style.quote)
    }
}

/// A key in the style of `sibling` (the raw text of a key of the same mapping).
fn key_text(key: &str, sibling: Option<&str>, style: &Style) -> String {
    match sibling.and_then(|s| s.chars().next()) {
        Some('"') => quoted(key, '"'),
        Some('\'') => quoted(key, '\''),
        Some(_) if key.chars().all(|c| c.is_ascii_digit()) && !key.is_empty() => {
            // The siblings are plain (`200:`); so is a status code next to them.
            key.to_string()
        }
        _ => scalar(key, style),
    }
}

/// `value` in flow style.
fn flow(value: &Value, style: &Style) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s, style),
        Value::Array(a) => format!(
            "[{}]",
            a.iter()
                .map(|v| flow(v, style))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", scalar(k, style), flow(v, style)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn is_block(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(m) => !m.is_empty(),
        _ => false,
    }
}

/// The lines of `key: value` at column `indent`, block style.
fn entry_lines(key: &str, value: &Value, indent: usize, style: &Style, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    if !is_block(value) {
        out.push(format!("{pad}{key}: {}", flow(value, style)));
        return;
    }
    out.push(format!("{pad}{key}:"));
    match value {
        Value::Object(m) => {
            for (k, v) in m {
                entry_lines(&scalar(k, style), v, indent + style.unit, style, out);
            }
        }
        Value::Array(a) => {
            let at = if style.compact_seq {
                indent
            } else {
                indent + style.unit
            };
            for v in a {
                item_lines(v, at, style, out);
            }
        }
        _ => {}
    }
}

/// The lines of `- value` with the dash at column `indent`.
fn item_lines(value: &Value, indent: usize, style: &Style, out: &mut Vec<String>) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(m) if !m.is_empty() => {
            let mut inner = Vec::new();
            for (k, v) in m {
                entry_lines(&scalar(k, style), v, indent + 2, style, &mut inner);
            }
            if let Some(first) = inner.first_mut() {
                *first = format!("{pad}- {}", &first[indent + 2..]);
            }
            out.extend(inner);
        }
        _ => out.push(format!("{pad}- {}", flow(value, style))),
    }
}

/// Where lines go after line `last`: the start of the next line, with a line break first
/// when `last` is the unterminated last line.
fn after_line(doc: &Doc<'_>, last: usize, nl: &str) -> (usize, String) {
    let line = doc.lines[last];
    if line.next == line.end {
        (line.end, nl.to_string())
    } else {
        (line.next, String::new())
    }
}

fn join_lines(lines: &[String], nl: &str) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(l);
        s.push_str(nl);
    }
    s
}

/// Applies one edit to YAML text.
pub fn apply(text: &str, op: &Op) -> Result<String, EditError> {
    let doc = Doc::new(text);
    let style = Style::of(&doc);
    let at = op.at();
    let node = doc.locate(at)?;
    let nl = style.nl;
    let mut out = text.to_string();
    match (op, node) {
        (Op::AddKey { key, value, .. }, Node::Map { indent, end, .. }) => {
            let entries = doc.entries(node);
            let sibling = entries.last().map(|e| e.raw.as_str());
            let mut lines = Vec::new();
            entry_lines(
                &key_text(key, sibling, &style),
                value,
                indent,
                &style,
                &mut lines,
            );
            let (pos, lead) = after_line(&doc, end - 1, nl);
            out.insert_str(pos, &format!("{lead}{}", join_lines(&lines, nl)));
        }
        (Op::AddKey { key, value, .. }, Node::Inline { start, end }) => {
            let (is_map, elems) =
                flow_elems(text, start, end).ok_or_else(|| unsupported(at, "unreadable flow"))?;
            if !is_map {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "a sequence",
                    wanted: "a mapping",
                });
            }
            let entry = format!("{}: {}", scalar(key, &style), flow(value, &style));
            match elems.last() {
                Some(last) => out.insert_str(last.vend, &format!(", {entry}")),
                None => out.replace_range(start + 1..end - 1, &entry),
            }
        }
        (Op::Append { items, .. }, Node::Seq { indent, end, .. }) => {
            let mut lines = Vec::new();
            for v in items {
                item_lines(v, indent, &style, &mut lines);
            }
            let (pos, lead) = after_line(&doc, end - 1, nl);
            out.insert_str(pos, &format!("{lead}{}", join_lines(&lines, nl)));
        }
        (Op::Append { items, .. }, Node::Inline { start, end }) => {
            let (is_map, elems) =
                flow_elems(text, start, end).ok_or_else(|| unsupported(at, "unreadable flow"))?;
            if is_map {
                return Err(EditError::WrongKind {
                    at: at.into(),
                    found: "a mapping",
                    wanted: "a sequence",
                });
            }
            let quote = elems
                .last()
                .map(|e| text.as_bytes()[e.vstart])
                .filter(|c| *c == b'"' || *c == b'\'');
            let rendered: Vec<String> = items
                .iter()
                .map(|v| match (v, quote) {
                    (Value::String(s), Some(q)) => quoted(s, char::from(q)),
                    _ => flow(v, &style),
                })
                .collect();
            match elems.last() {
                Some(last) => {
                    let sep = if elems.len() > 1 {
                        text[elems[0].vend..elems[1].start].to_string()
                    } else {
                        ", ".to_string()
                    };
                    let insert: String = rendered.iter().map(|r| format!("{sep}{r}")).collect();
                    out.insert_str(last.vend, &insert);
                }
                None => out.replace_range(start + 1..end - 1, &rendered.join(", ")),
            }
        }
        (Op::RemoveItem { index, .. }, Node::Seq { .. }) => {
            let items = doc.items(node);
            if items.len() < 2 {
                return Err(unsupported(
                    at,
                    "removing the only item of a block sequence leaves no value",
                ));
            }
            let item = items
                .get(*index)
                .ok_or_else(|| EditError::NotFound(format!("{at}/{index}")))?;
            let from = doc.lines[item.line].start;
            let to = doc.lines[item.end - 1].next;
            out.replace_range(from..to, "");
        }
        (Op::RemoveKey { key, .. }, Node::Map { indent, first, .. }) => {
            let entries = doc.entries(node);
            let entry = entries
                .iter()
                .find(|e| e.key == *key)
                .ok_or_else(|| EditError::NotFound(format!("{at}/{}", escape(key))))?;
            if entries.len() < 2 {
                return Err(unsupported(
                    at,
                    "removing the only key of a block mapping leaves no value",
                ));
            }
            if entry.line == first && doc.lines[first].indent != indent {
                return Err(unsupported(
                    at,
                    "the key shares its line with a sequence dash",
                ));
            }
            let from = doc.lines[entry.line].start;
            let to = doc.lines[entry.end - 1].next;
            out.replace_range(from..to, "");
        }
        (Op::RemoveItem { index, .. }, Node::Inline { start, end }) => {
            remove_flow(&mut out, text, at, start, end, Err(*index))?;
        }
        (Op::RemoveKey { key, .. }, Node::Inline { start, end }) => {
            remove_flow(&mut out, text, at, start, end, Ok(key))?;
        }
        (Op::Replace { value, .. }, Node::Inline { start, end }) => {
            out.replace_range(start..end, &flow(value, &style));
        }
        (Op::Replace { .. }, _) => {
            return Err(unsupported(at, "only a scalar or a flow value is replaced"));
        }
        (_, Node::Opaque) => {
            return Err(unsupported(
                at,
                "it is an anchor, alias, tag or block scalar",
            ));
        }
        (_, other) => {
            let found = match other {
                Node::Map { .. } => "a mapping",
                Node::Seq { .. } => "a sequence",
                Node::Empty { .. } => "empty",
                _ => "a scalar",
            };
            return Err(EditError::WrongKind {
                at: at.into(),
                found,
                wanted: match op {
                    Op::AddKey { .. } | Op::RemoveKey { .. } => "a mapping",
                    _ => "a sequence",
                },
            });
        }
    }
    Ok(out)
}

/// Removes one element (the member `key`, or the item `index`) of a flow collection.
fn remove_flow(
    out: &mut String,
    text: &str,
    at: &str,
    start: usize,
    end: usize,
    which: Result<&String, usize>,
) -> Result<(), EditError> {
    let (is_map, elems) =
        flow_elems(text, start, end).ok_or_else(|| unsupported(at, "unreadable flow"))?;
    let i = match which {
        Ok(key) if is_map => elems
            .iter()
            .position(|e| e.key.as_deref() == Some(key.as_str()))
            .ok_or_else(|| EditError::NotFound(format!("{at}/{}", escape(key))))?,
        Err(index) if !is_map => index,
        _ => {
            return Err(EditError::WrongKind {
                at: at.into(),
                found: if is_map { "a mapping" } else { "a sequence" },
                wanted: if is_map { "a sequence" } else { "a mapping" },
            });
        }
    };
    if i >= elems.len() {
        return Err(EditError::NotFound(format!("{at}/{i}")));
    }
    let range = if elems.len() == 1 {
        start + 1..end - 1
    } else if i > 0 {
        elems[i - 1].vend..elems[i].vend
    } else {
        elems[0].start..elems[1].start
    };
    out.replace_range(range, "");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::edit::apply_text;
    use super::*;
    use serde_json::json;

    const SPEC: &str = r#"# The pets API.
openapi: 3.0.3
info: {title: Pets, version: "1"}
paths:
  /pets/{id}:
    get:
      operationId: getPet   # keep me
      parameters:
        - name: X-Trace
          in: header
          required: true
          schema: {type: string}
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Pet'
        # errors follow
        '404': {description: gone}
components:
  schemas:
    Pet:
      type: object
      required:
      - id
      - name
      properties:
        id: {type: integer}
        name:
          type: string
          format: email   # wrong, but declared
        status:
          type: string
          enum: [available, 'sold']
        tags:
          type: array
          items:
            type: string
            enum:
              - a
              - b
"#;

    fn edit(text: &str, op: Op) -> String {
        apply_text("spec.yaml", text, &[op]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The lines that changed: (removed, added), which must be one contiguous hunk.
    fn hunk(before: &str, after: &str) -> (Vec<String>, Vec<String>) {
        let diff = similar::TextDiff::from_lines(before, after);
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut groups = 0;
        let mut in_change = false;
        for c in diff.iter_all_changes() {
            match c.tag() {
                similar::ChangeTag::Equal => in_change = false,
                tag => {
                    if !in_change {
                        groups += 1;
                        in_change = true;
                    }
                    let line = c.value().trim_end_matches(['\n', '\r']).to_string();
                    if tag == similar::ChangeTag::Delete {
                        removed.push(line);
                    } else {
                        added.push(line);
                    }
                }
            }
        }
        assert_eq!(groups, 1, "one contiguous change expected:\n{after}");
        (removed, added)
    }

    #[test]
    fn a_status_is_added_at_the_end_of_responses_in_the_siblings_quoting() {
        let out = edit(
            SPEC,
            Op::AddKey {
                at: "/paths/~1pets~1{id}/get/responses".into(),
                key: "500".into(),
                value: json!({"description": "Observed", "content": {"application/json": {"schema": {"type": "object", "required": ["code"], "properties": {"code": {"type": "integer"}}}}}}),
            },
        );
        let (removed, added) = hunk(SPEC, &out);
        assert!(removed.is_empty());
        assert_eq!(
            added,
            [
                "        '500':",
                "          description: Observed",
                "          content:",
                "            application/json:",
                "              schema:",
                "                type: object",
                "                required:",
                "                  - code",
                "                properties:",
                "                  code:",
                "                    type: integer",
            ]
        );
        assert!(out.contains("'404': {description: gone}\n        '500':\n"));
    }

    #[test]
    fn flow_and_block_sequences_get_their_items_in_their_style() {
        let out = edit(
            SPEC,
            Op::Append {
                at: "/components/schemas/Pet/properties/status/enum".into(),
                items: vec![json!("pending"), json!("on hold")],
            },
        );
        let (removed, added) = hunk(SPEC, &out);
        assert_eq!(removed, ["          enum: [available, 'sold']"]);
        assert_eq!(
            added,
            ["          enum: [available, 'sold', 'pending', 'on hold']"]
        );
        let out = edit(
            SPEC,
            Op::Append {
                at: "/components/schemas/Pet/properties/tags/items/enum".into(),
                items: vec![json!("c"), json!("true")],
            },
        );
        let (removed, added) = hunk(SPEC, &out);
        assert!(removed.is_empty());
        assert_eq!(added, ["              - c", "              - \"true\""]);
    }

    #[test]
    fn an_item_leaves_required_and_a_key_leaves_its_mapping_with_its_comment() {
        let out = edit(
            SPEC,
            Op::RemoveItem {
                at: "/components/schemas/Pet/required".into(),
                index: 1,
            },
        );
        assert_eq!(hunk(SPEC, &out), (vec!["      - name".to_string()], vec![]));
        let out = edit(
            SPEC,
            Op::RemoveKey {
                at: "/components/schemas/Pet/properties/name".into(),
                key: "format".into(),
            },
        );
        assert_eq!(
            hunk(SPEC, &out),
            (
                vec!["          format: email   # wrong, but declared".to_string()],
                vec![]
            )
        );
    }

    #[test]
    fn scalars_and_flow_values_are_replaced_in_place() {
        let out = edit(
            SPEC,
            Op::Replace {
                at: "/paths/~1pets~1{id}/get/parameters/0/required".into(),
                value: json!(false),
            },
        );
        assert_eq!(
            hunk(SPEC, &out),
            (
                vec!["          required: true".to_string()],
                vec!["          required: false".to_string()]
            )
        );
        let out = edit(
            SPEC,
            Op::Replace {
                at: "/components/schemas/Pet/properties/id/type".into(),
                value: json!(["integer", "null"]),
            },
        );
        assert!(
            out.contains("        id: {type: [integer, \"null\"]}\n"),
            "{out}"
        );
        let out = edit(
            SPEC,
            Op::AddKey {
                at: "/components/schemas/Pet/properties/id".into(),
                key: "nullable".into(),
                value: json!(true),
            },
        );
        assert!(
            out.contains("        id: {type: integer, nullable: true}\n"),
            "{out}"
        );
    }

    #[test]
    fn a_key_goes_into_a_mapping_that_starts_on_a_dash_line() {
        let out = edit(
            SPEC,
            Op::AddKey {
                at: "/paths/~1pets~1{id}/get/parameters/0".into(),
                key: "description".into(),
                value: json!("trace id"),
            },
        );
        let (removed, added) = hunk(SPEC, &out);
        assert!(removed.is_empty());
        assert_eq!(added, ["          description: trace id"]);
        assert!(
            out.contains("          schema: {type: string}\n          description: trace id\n")
        );
    }

    #[test]
    fn crlf_four_space_indentation_and_no_final_newline_are_kept() {
        let text = "openapi: 3.1.0\r\ncomponents:\r\n    schemas:\r\n        A:\r\n            type: object\r\n            properties:\r\n                a:\r\n                    type: string";
        let out = edit(
            text,
            Op::AddKey {
                at: "/components/schemas/A/properties".into(),
                key: "b".into(),
                value: json!({"type": "array", "items": {"type": "string"}}),
            },
        );
        assert_eq!(
            out,
            format!(
                "{text}\r\n                b:\r\n                    type: array\r\n                    items:\r\n                        type: string\r\n"
            )
        );
    }

    #[test]
    fn anchors_and_block_scalars_are_refused_with_the_place() {
        let text = "a: &x\n  b: 1\nc: |\n  text\nd:\n  e: 1\n";
        let e = apply(
            text,
            &Op::AddKey {
                at: "/a".into(),
                key: "z".into(),
                value: json!(1),
            },
        )
        .unwrap_err();
        assert!(matches!(e, EditError::Unsupported { .. }), "{e}");
        assert!(
            apply(
                text,
                &Op::Replace {
                    at: "/c".into(),
                    value: json!("x")
                }
            )
            .is_err()
        );
        assert!(matches!(
            apply(
                text,
                &Op::RemoveKey {
                    at: "/nope".into(),
                    key: "x".into()
                }
            ),
            Err(EditError::NotFound(_))
        ));
    }

    #[test]
    fn hostile_text_is_an_error_not_a_panic() {
        for text in [
            "",
            "a: [1, 2",
            "- - - x",
            "a: 'unterminated\nb: 1",
            "a:\n  - b: {c: [1, {d: \"x\\\"\"}]}\n",
            "? complex\n: key\n",
            "\u{feff}a: 1",
        ] {
            for op in [
                Op::AddKey {
                    at: "/a".into(),
                    key: "k".into(),
                    value: json!({"x": [1, "y"]}),
                },
                Op::Append {
                    at: "/a".into(),
                    items: vec![json!(1)],
                },
                Op::RemoveItem {
                    at: "/a/0".into(),
                    index: 0,
                },
                Op::RemoveKey {
                    at: "/a".into(),
                    key: "b".into(),
                },
                Op::Replace {
                    at: "/a/0/b/c/1/d".into(),
                    value: json!(null),
                },
            ] {
                let _ = apply_text("x.yaml", text, &[op]);
            }
        }
    }
}

#[cfg(test)]
mod properties {
    use super::super::edit::apply_text;
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// A schema file in one of many hand-written styles: indentation unit, sequence style,
    /// flow or block enum, comments, line endings, quoting.
    fn document(
        unit: usize,
        compact: bool,
        flow_enum: bool,
        crlf: bool,
        values: &[String],
        comment: bool,
    ) -> String {
        let i = |n: usize| " ".repeat(n * unit);
        let dash = if compact { String::new() } else { i(1) };
        let mut lines = vec![
            "# schemas of the pets API".to_string(),
            "Pet:".to_string(),
            format!("{}type: object", i(1)),
            format!("{}required:", i(1)),
            format!("{}{dash}- id", i(1)),
            format!("{}{dash}- status", i(1)),
            format!("{}properties:", i(1)),
            format!("{}status:", i(2)),
            format!("{}type: string", i(3)),
        ];
        if flow_enum {
            lines.push(format!("{}enum: [{}]", i(3), values.join(", ")));
        } else {
            lines.push(format!("{}enum:", i(3)));
            for v in values {
                lines.push(format!("{}{dash}- {v}", i(3)));
            }
        }
        if comment {
            lines.push(format!("{}# the id is assigned by the server", i(2)));
        }
        lines.push(format!("{}id: {{type: integer}}", i(2)));
        lines.push("Other: {type: string}".to_string());
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = lines.join(nl);
        text.push_str(nl);
        text
    }

    fn changed_lines(before: &str, after: &str) -> (usize, usize, usize) {
        let diff = similar::TextDiff::from_lines(before, after);
        let (mut removed, mut added, mut groups, mut in_change) = (0, 0, 0, false);
        for c in diff.iter_all_changes() {
            match c.tag() {
                similar::ChangeTag::Equal => in_change = false,
                tag => {
                    if !in_change {
                        groups += 1;
                        in_change = true;
                    }
                    if tag == similar::ChangeTag::Delete {
                        removed += 1;
                    } else {
                        added += 1;
                    }
                }
            }
        }
        (removed, added, groups)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn edits_parse_to_their_meaning_and_touch_one_place(
            unit in 2usize..5,
            compact in any::<bool>(),
            flow_enum in any::<bool>(),
            crlf in any::<bool>(),
            comment in any::<bool>(),
            values in proptest::collection::vec("[a-z][a-z_]{0,8}", 1..5),
            new in "[a-zA-Z0-9 :#'\",\\[\\]{}-]{1,12}",
            which in 0usize..4,
        ) {
            let text = document(unit, compact, flow_enum, crlf, &values, comment);
            let op = match which {
                0 => Op::Append {
                    at: "/Pet/properties/status/enum".into(),
                    items: vec![json!(new.clone())],
                },
                1 => Op::RemoveItem { at: "/Pet/required".into(), index: 1 },
                2 => Op::AddKey {
                    at: "/Pet/properties".into(),
                    key: new.clone(),
                    value: json!({"type": "array", "items": {"type": "string", "format": "uri"}}),
                },
                _ => Op::RemoveKey { at: "/Pet/properties/status".into(), key: "type".into() },
            };
            // `apply_text` itself checks that the edited text parses to the edited document.
            let out = match apply_text("s.yaml", &text, std::slice::from_ref(&op)) {
                Ok(out) => out,
                Err(EditError::Unsupported { .. }) if which == 2 => return Ok(()),
                Err(e) => panic!("{e}\n{text}"),
            };
            let (removed, added, groups) = changed_lines(&text, &out);
            prop_assert_eq!(groups, 1, "{}", out);
            match which {
                0 if flow_enum => prop_assert_eq!((removed, added), (1, 1)),
                0 => prop_assert_eq!((removed, added), (0, 1)),
                1 | 3 => prop_assert_eq!((removed, added), (1, 0)),
                _ => prop_assert_eq!((removed, added), (0, 5)),
            }
            if crlf {
                prop_assert!(!out.replace("\r\n", "").contains('\n'), "{:?}", out);
            }
            if comment {
                prop_assert!(out.contains("# the id is assigned by the server"));
            }
        }
    }
}
