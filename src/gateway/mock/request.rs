//! Request text to typed JSON: query strings and `application/x-www-form-urlencoded` bodies
//! (with `a[b][0]=v` nesting, as deepObject parameters and form bodies write it), and the
//! coercion of their strings by the schema they are checked against. Also the reverse
//! (encoding a value as a form), for building sample requests.

use serde_json::{Map, Value};

use super::schema::Bundle;

/// Most pairs read from one query string or form body.
const MAX_PAIRS: usize = 4096;
/// Deepest `a[b][c]…` nesting read from a key.
const MAX_KEY_DEPTH: usize = 32;

/// Why request text could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReadError {
    #[error("malformed percent-encoding in `{0}`")]
    Encoding(String),
    #[error("more than {MAX_PAIRS} parameters")]
    TooMany,
    #[error("`{0}` nests deeper than {MAX_KEY_DEPTH} levels")]
    TooDeep(String),
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn form_decode(s: &str) -> Result<String, ReadError> {
    let s = s.replace('+', " ");
    super::router::percent_decode(&s)
        .ok_or_else(|| ReadError::Encoding(s.chars().take(64).collect()))
}

/// `a=1&b=2` as decoded pairs, in order.
pub fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, ReadError> {
    let mut out = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_PAIRS {
            return Err(ReadError::TooMany);
        }
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((form_decode(k)?, form_decode(v)?));
    }
    Ok(out)
}

/// Splits `a[b][0][]` into `["a", "b", "0", ""]`.
pub fn key_path(key: &str) -> Result<Vec<&str>, ReadError> {
    let (head, mut rest) = match key.find('[') {
        Some(i) if key.ends_with(']') => (&key[..i], &key[i..]),
        _ => return Ok(vec![key]),
    };
    let mut out = vec![head];
    while let Some(r) = rest.strip_prefix('[') {
        let Some(end) = r.find(']') else { break };
        out.push(&r[..end]);
        rest = &r[end + 1..];
        if out.len() > MAX_KEY_DEPTH {
            return Err(ReadError::TooDeep(key.chars().take(64).collect()));
        }
    }
    Ok(out)
}

/// Pairs as a tree of strings: `a[b]=1` nests, `a[]=1` and repeated keys make arrays.
pub fn tree(pairs: &[(String, String)]) -> Result<Map<String, Value>, ReadError> {
    let mut root = Map::new();
    for (k, v) in pairs {
        let path = key_path(k)?;
        insert(&mut root, &path, Value::String(v.clone()));
    }
    Ok(root)
}

fn insert(map: &mut Map<String, Value>, path: &[&str], v: Value) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        match map.get_mut(*first) {
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let prev = std::mem::take(existing);
                *existing = Value::Array(vec![prev, v]);
            }
            None => {
                map.insert((*first).to_string(), v);
            }
        }
        return;
    }
    if rest[0].is_empty() {
        // `a[]=v`
        let entry = map
            .entry(*first)
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(a) = entry {
            if rest.len() == 1 {
                a.push(v);
            } else {
                let mut m = Map::new();
                insert(&mut m, &rest[1..], v);
                a.push(Value::Object(m));
            }
        }
        return;
    }
    let entry = map
        .entry(*first)
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(m) = entry {
        insert(m, rest, v);
    }
}

/// The schemas `s` stands for through `$ref`, `allOf`, `anyOf` and `oneOf`.
fn flatten<'b>(bundle: &'b Bundle, s: &'b Value, out: &mut Vec<&'b Value>, depth: usize) {
    if depth > 16 || out.len() > 64 {
        return;
    }
    let Some(m) = s.as_object() else { return };
    out.push(s);
    if let Some((_, t)) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| bundle.def(r))
    {
        flatten(bundle, t, out, depth + 1);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for b in m.get(key).and_then(Value::as_array).into_iter().flatten() {
            flatten(bundle, b, out, depth + 1);
        }
    }
}

/// The types a schema may take (all of them when it does not say).
pub fn types(bundle: &Bundle, s: &Value) -> Vec<String> {
    let mut all = Vec::new();
    flatten(bundle, s, &mut all, 0);
    let mut out: Vec<String> = Vec::new();
    for x in &all {
        let ts: Vec<&str> = match x.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ if x.get("properties").is_some() => vec!["object"],
            _ if x.get("items").is_some() => vec!["array"],
            _ => vec![],
        };
        for t in ts {
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
    }
    out
}

/// Turns the strings of `v` into the JSON types `schema` asks for, where they parse.
pub fn coerce(bundle: &Bundle, v: Value, schema: &Value, depth: usize) -> Value {
    if depth > MAX_KEY_DEPTH {
        return v;
    }
    let mut all = Vec::new();
    flatten(bundle, schema, &mut all, 0);
    let ts = types(bundle, schema);
    let has = |t: &str| ts.iter().any(|x| x == t);
    match v {
        Value::String(s) => {
            if has("array") && !has("string") {
                let items = all.iter().find_map(|x| x.get("items"));
                let parts = if s.is_empty() {
                    vec![]
                } else {
                    s.split(',').collect()
                };
                return Value::Array(
                    parts
                        .into_iter()
                        .map(|p| match items {
                            Some(i) => coerce(bundle, Value::String(p.to_string()), i, depth + 1),
                            None => Value::String(p.to_string()),
                        })
                        .collect(),
                );
            }
            if has("integer") && is_integer_text(&s) {
                if let Ok(i) = s.parse::<i64>() {
                    return Value::from(i);
                }
                if let Ok(u) = s.parse::<u64>() {
                    return Value::from(u);
                }
                // Beyond 64 bits: still an integer to JSON Schema.
                if let Ok(f) = s.parse::<f64>()
                    && let Some(n) = serde_json::Number::from_f64(f)
                {
                    return Value::Number(n);
                }
            }
            if has("number")
                && let Ok(f) = s.parse::<f64>()
                && let Some(n) = serde_json::Number::from_f64(f)
            {
                return Value::Number(n);
            }
            if has("boolean") && (s == "true" || s == "false") {
                return Value::Bool(s == "true");
            }
            if s.is_empty() && !has("string") {
                // `a=` is how a form writes an empty object or array (and null).
                if has("object") {
                    return Value::Object(Map::new());
                }
                if has("null") {
                    return Value::Null;
                }
            }
            Value::String(s)
        }
        Value::Object(m) => {
            let numeric = !m.is_empty() && m.keys().all(|k| k.parse::<usize>().is_ok());
            if has("array") && numeric && !has("object") {
                let mut items: Vec<(usize, Value)> = m
                    .into_iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|i| (i, v)))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                return coerce(
                    bundle,
                    Value::Array(items.into_iter().map(|(_, v)| v).collect()),
                    schema,
                    depth,
                );
            }
            let mut out = Map::new();
            for (k, child) in m {
                let ps = all
                    .iter()
                    .find_map(|x| x.get("properties").and_then(|p| p.get(&k)))
                    .or_else(|| {
                        all.iter()
                            .find_map(|x| x.get("additionalProperties").filter(|a| a.is_object()))
                    });
                let c = match ps {
                    Some(ps) => coerce(bundle, child, ps, depth + 1),
                    None => child,
                };
                out.insert(k, c);
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let items = all.iter().find_map(|x| x.get("items"));
            Value::Array(
                a.into_iter()
                    .map(|x| match items {
                        Some(i) => coerce(bundle, x, i, depth + 1),
                        None => x,
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

/// `-?[0-9]+`
fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A scalar as parameter text (arrays comma-joined, objects as JSON).
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `value` as form pairs under `prefix` (`a[b][0]=…`).
pub fn form_pairs(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(m) if m.is_empty() && !prefix.is_empty() => {
            out.push((prefix.to_string(), String::new()));
        }
        Value::Array(a) if a.is_empty() => out.push((prefix.to_string(), String::new())),
        Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}[{k}]")
                };
                form_pairs(&key, v, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                form_pairs(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => out.push((prefix.to_string(), scalar_text(other))),
    }
}

/// Pairs as `application/x-www-form-urlencoded` text.
pub fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_keys_build_trees() {
        let pairs = parse_pairs("a[b][0][c]=1&a[b][1][c]=2&x=1&x=2&y[]=q&s=a+b%21").expect("ok");
        let t = tree(&pairs).expect("ok");
        assert_eq!(
            Value::Object(t),
            json!({"a": {"b": {"0": {"c": "1"}, "1": {"c": "2"}}}, "x": ["1", "2"], "y": ["q"], "s": "a b!"})
        );
        assert!(parse_pairs("a=%zz").is_err());
        let deep = format!("a{}=1", "[x]".repeat(40));
        assert!(tree(&parse_pairs(&deep).expect("ok")).is_err());
    }

    #[test]
    fn form_encoding_round_trips() {
        let v = json!({"a": {"b": [{"c": "x y"}, {"c": "&"}]}, "n": "1"});
        let mut pairs = Vec::new();
        form_pairs("", &v, &mut pairs);
        let text = encode_pairs(&pairs);
        let back = tree(&parse_pairs(&text).expect("ok")).expect("ok");
        assert_eq!(
            Value::Object(back),
            json!({"a": {"b": {"0": {"c": "x y"}, "1": {"c": "&"}}}, "n": "1"})
        );
    }
}
