//! Values generated from converted schemas (see `schema`): every type and the common
//! keywords, deterministic for a given seed.
//!
//! Rules: required properties always, optional ones near the top by a seeded choice, never an
//! undeclared property; `readOnly` properties are left out of requests and `writeOnly` ones out
//! of responses; `oneOf`/`anyOf` take the first branch (a seeded one with `dynamic=true`), the
//! simplest one past [`SOFT_DEPTH`], and a discriminator property gets the mapping value of
//! the chosen branch; `allOf` branches are merged; past [`SOFT_DEPTH`] optional properties are
//! omitted, arrays take their minimum size and nullable values are null, so recursive schemas
//! stop. Persona traits replace a property of the same name when the trait conforms to it.

use indexmap::IndexMap;
use serde_json::{Map, Value, json};

use super::pattern;
use super::schema::{Bundle, Dir};

/// Depth past which recursion is cut short (optional parts left out).
pub const SOFT_DEPTH: usize = 5;
/// Depth at which generation gives up on a branch (only reached by required recursion).
const HARD_DEPTH: usize = 40;
/// Optional properties are generated up to this depth.
const OPTIONAL_DEPTH: usize = 2;
/// Most `allOf` branches followed when merging (cycles through `$ref`).
const MERGE_DEPTH: usize = 16;

/// One generation: the bundle, a seeded generator, the direction and the persona.
pub struct Gen<'a> {
    pub bundle: &'a Bundle,
    pub rng: fastrand::Rng,
    pub dir: Dir,
    pub persona: Option<&'a IndexMap<String, Value>>,
    /// Use schema-level `example`/`examples`/`default` values that conform (static mode).
    pub use_examples: bool,
    /// Vary branch choices (dynamic mode).
    pub vary: bool,
    /// Set when a declared example or a persona trait was used (checked by the caller).
    pub used_declared: bool,
}

impl<'a> Gen<'a> {
    pub fn new(bundle: &'a Bundle, seed: u64, dir: Dir) -> Self {
        Gen {
            bundle,
            rng: fastrand::Rng::with_seed(seed),
            dir,
            persona: None,
            use_examples: true,
            vary: false,
            used_declared: false,
        }
    }

    /// A value for `schema`.
    pub fn value(&mut self, schema: &Value) -> Value {
        self.gen_value(schema, 0, None)
    }

    fn gen_value(&mut self, s: &Value, depth: usize, via: Option<usize>) -> Value {
        if depth > HARD_DEPTH {
            return Value::Null;
        }
        let Some(m) = s.as_object() else {
            return Value::Null;
        };
        if let Some(r) = m.get("$ref").and_then(Value::as_str) {
            let Some((i, target)) = self.bundle.def(r) else {
                return Value::Null;
            };
            if m.len() == 1 {
                return self.gen_value(target, depth + 1, Some(i));
            }
            let merged = merge(self.bundle, &[s]);
            return self.gen_value(&merged, depth + 1, Some(i));
        }
        if self.use_examples {
            let declared = m
                .get("example")
                .or_else(|| m.get("examples").and_then(|e| e.get(0)))
                .or_else(|| m.get("default"));
            if let Some(ex) = declared
                && conforms(self.bundle, ex, s, 0)
            {
                self.used_declared = true;
                return ex.clone();
            }
        }
        if let Some(c) = m.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = m.get("enum") {
            let non_null: Vec<&Value> = options.iter().filter(|v| !v.is_null()).collect();
            if non_null.is_empty() || (depth >= SOFT_DEPTH && options.contains(&Value::Null)) {
                return options.first().cloned().unwrap_or(Value::Null);
            }
            let i = if self.vary {
                self.rng.usize(0..non_null.len())
            } else {
                0
            };
            return non_null[i].clone();
        }
        if m.contains_key("allOf") {
            let merged = merge(self.bundle, &[s]);
            if merged.get("allOf").is_none() {
                return self.gen_value(&merged, depth + 1, via);
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(Value::Array(branches)) = m.get(key)
                && !branches.is_empty()
            {
                let i = self.choose_branch(branches, depth);
                let branch = &branches[i];
                let rest: Map<String, Value> = m
                    .iter()
                    .filter(|(k, _)| {
                        matches!(
                            k.as_str(),
                            "type" | "properties" | "required" | "items" | "additionalProperties"
                        )
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let mut v = if rest.is_empty() {
                    self.gen_value(branch, depth + 1, None)
                } else {
                    let merged = merge(self.bundle, &[&Value::Object(rest), branch]);
                    self.gen_value(&merged, depth + 1, None)
                };
                if let Some(d) = m.get("discriminator") {
                    self.set_discriminator(&mut v, d, branch);
                }
                return v;
            }
        }
        let types = types_of(m);
        let nullable = types.contains(&"null");
        let t = if nullable && (depth >= SOFT_DEPTH || types.len() == 1) {
            "null"
        } else {
            let options: Vec<&str> = types.iter().copied().filter(|t| *t != "null").collect();
            if self.vary && options.len() > 1 {
                options[self.rng.usize(0..options.len())]
            } else {
                options.first().copied().unwrap_or("string")
            }
        };
        match t {
            "object" => self.object(m, depth, via),
            "array" => self.array(m, depth),
            "string" => self.string(m),
            "integer" => self.integer(m),
            "number" => self.number(m),
            "boolean" => Value::Bool(self.rng.bool()),
            _ => Value::Null,
        }
    }

    fn choose_branch(&mut self, branches: &[Value], depth: usize) -> usize {
        if depth >= SOFT_DEPTH {
            return (0..branches.len())
                .min_by_key(|i| weight(self.bundle, &branches[*i]))
                .unwrap_or(0);
        }
        if self.vary {
            return self.rng.usize(0..branches.len());
        }
        // The first branch, unless it is only `null`.
        (0..branches.len())
            .find(|i| weight(self.bundle, &branches[*i]) > 0)
            .unwrap_or(0)
    }

    fn set_discriminator(&self, v: &mut Value, d: &Value, branch: &Value) {
        let (Some(obj), Some(prop)) = (
            v.as_object_mut(),
            d.get("propertyName").and_then(Value::as_str),
        ) else {
            return;
        };
        let Some(r) = branch.get("$ref").and_then(Value::as_str) else {
            return;
        };
        let mapped = d
            .get("mapping")
            .and_then(Value::as_object)
            .and_then(|m| m.iter().find(|(_, t)| t.as_str() == Some(r)))
            .map(|(k, _)| k.clone());
        let name = mapped.or_else(|| {
            self.bundle
                .def(r)
                .and_then(|(i, _)| self.bundle.names.get(i).cloned())
        });
        let Some(name) = name.map(Value::String) else {
            return;
        };
        // Without a mapping the schema name is only a guess: used when the property allows it.
        let merged = merge(self.bundle, &[branch]);
        if merged
            .get("properties")
            .and_then(|p| p.get(prop))
            .is_none_or(|ps| conforms(self.bundle, &name, ps, 0))
        {
            obj.insert(prop.to_string(), name);
        }
    }

    fn hidden(&self, prop: &Value) -> bool {
        let flag = match self.dir {
            Dir::Request => "readOnly",
            Dir::Response => "writeOnly",
        };
        let mut s = prop;
        for _ in 0..8 {
            if s.get(flag) == Some(&Value::Bool(true)) {
                return true;
            }
            match s
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.bundle.def(r))
            {
                Some((_, t)) => s = t,
                None => return false,
            }
        }
        false
    }

    fn object(&mut self, m: &Map<String, Value>, depth: usize, via: Option<usize>) -> Value {
        let empty = Map::new();
        let props = m
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = m
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let min_props = m.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
        let mut out = Map::new();
        let mut skipped = Vec::new();
        for (name, ps) in props {
            if self.hidden(ps) {
                continue;
            }
            let trait_value = self.persona.and_then(|p| p.get(name));
            if let Some(t) = trait_value
                && conforms(self.bundle, t, ps, 0)
            {
                self.used_declared = true;
                out.insert(name.clone(), t.clone());
                continue;
            }
            let include = required.contains(&name.as_str())
                || (depth < OPTIONAL_DEPTH && self.rng.u8(..) < 160);
            if include {
                let v = self.gen_value(ps, depth + 1, None);
                out.insert(name.clone(), v);
            } else {
                skipped.push((name, ps));
            }
        }
        let additional = m.get("additionalProperties");
        for name in &required {
            if !out.contains_key(*name) && !props.contains_key(*name) {
                let v = match additional {
                    Some(a @ Value::Object(_)) => self.gen_value(a, depth + 1, None),
                    _ => Value::String("mock".into()),
                };
                out.insert((*name).to_string(), v);
            }
        }
        for (name, ps) in skipped {
            if out.len() >= min_props {
                break;
            }
            let v = self.gen_value(ps, depth + 1, None);
            out.insert(name.clone(), v);
        }
        let mut n = 0;
        while out.len() < min_props && additional != Some(&Value::Bool(false)) && n < 64 {
            n += 1;
            let v = match additional {
                Some(a @ Value::Object(_)) => self.gen_value(a, depth + 1, None),
                _ => Value::String("mock".into()),
            };
            out.insert(format!("key{n}"), v);
        }
        if let (Some(d), Some(i)) = (m.get("discriminator"), via) {
            let r = format!("{}{i}", super::schema::REF_PREFIX);
            let mut v = Value::Object(out);
            if let Some(prop) = d.get("propertyName").and_then(Value::as_str)
                && v.get(prop).is_some()
            {
                self.set_discriminator(&mut v, d, &json!({ "$ref": r }));
            }
            return v;
        }
        Value::Object(out)
    }

    fn array(&mut self, m: &Map<String, Value>, depth: usize) -> Value {
        let min = m.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = m
            .get("maxItems")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |v| v as usize);
        let mut out = Vec::new();
        if let Some(Value::Array(prefix)) = m.get("prefixItems") {
            for s in prefix.iter().take(max) {
                out.push(self.gen_value(s, depth + 1, None));
            }
            if out.len() >= min {
                return Value::Array(out);
            }
        }
        let want = if depth >= SOFT_DEPTH { min } else { min.max(1) }.min(max);
        let items = m.get("items").cloned().unwrap_or(json!({}));
        if items == Value::Bool(false) {
            return Value::Array(out);
        }
        let unique = m.get("uniqueItems") == Some(&Value::Bool(true));
        let mut attempts = 0;
        while out.len() < want && attempts < want * 8 + 8 {
            attempts += 1;
            let saved = self.vary;
            // Later items vary so `uniqueItems` can be met.
            self.vary = saved || attempts > 1;
            let v = self.gen_value(&items, depth + 1, None);
            self.vary = saved;
            if unique && out.contains(&v) {
                continue;
            }
            out.push(v);
        }
        Value::Array(out)
    }

    fn string(&mut self, m: &Map<String, Value>) -> Value {
        let min = m.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = m
            .get("maxLength")
            .and_then(Value::as_u64)
            .map_or(usize::MAX, |v| v as usize);
        if let Some(p) = m.get("pattern").and_then(Value::as_str) {
            if let Some(s) = pattern::generate(p, &mut self.rng, min, max) {
                return Value::String(s);
            }
            // Unsupported pattern: a declared value or a plain word, when they match.
            for c in [m.get("example"), m.get("default")].into_iter().flatten() {
                if let Some(s) = c.as_str()
                    && pattern::matches(p, s)
                {
                    return Value::String(s.to_string());
                }
            }
        }
        let n = self.rng.u32(1..10_000);
        let s = match m.get("format").and_then(Value::as_str).unwrap_or("") {
            "date-time" => date_time(self.rng.i64(0..31_536_000)),
            "date" => date_time(self.rng.i64(0..31_536_000))[..10].to_string(),
            "time" => format!("{:02}:{:02}:{:02}Z", n % 24, n % 60, (n / 60) % 60),
            "uuid" => uuid(self.rng.u128(..)),
            "email" | "idn-email" => format!("user{n}@example.com"),
            "uri" | "url" | "iri" | "uri-reference" | "iri-reference" => {
                format!("https://example.com/r/{n}")
            }
            "hostname" | "idn-hostname" => format!("host{n}.example.com"),
            "ipv4" => format!("10.{}.{}.{}", n % 256, (n / 256) % 256, self.rng.u8(1..255)),
            "ipv6" => format!("2001:db8::{:x}", n),
            "byte" => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(format!("mock{n}"))
            }
            "duration" => format!("PT{}M", n % 600),
            "json-pointer" => format!("/mock/{n}"),
            "regex" => "^mock$".to_string(),
            _ => {
                const WORDS: [&str; 8] = [
                    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
                ];
                format!("{}{}", WORDS[n as usize % WORDS.len()], n)
            }
        };
        let mut s = s;
        let len = s.chars().count();
        if len < min {
            s.extend(std::iter::repeat_n('x', min - len));
        }
        if s.chars().count() > max {
            s = s.chars().take(max).collect();
        }
        Value::String(s)
    }

    fn integer(&mut self, m: &Map<String, Value>) -> Value {
        let (mut lo, mut hi) = match m.get("format").and_then(Value::as_str) {
            Some("int32") => (i32::MIN as f64, i32::MAX as f64),
            _ => (-9_007_199_254_740_991.0, 9_007_199_254_740_991.0),
        };
        let num = |k: &str| m.get(k).and_then(Value::as_f64);
        let (has_lo, has_hi) = (
            num("minimum").is_some() || num("exclusiveMinimum").is_some(),
            num("maximum").is_some() || num("exclusiveMaximum").is_some(),
        );
        if let Some(v) = num("minimum") {
            lo = lo.max(v.ceil());
        }
        if let Some(v) = num("exclusiveMinimum") {
            lo = lo.max(v.floor() + 1.0);
        }
        if let Some(v) = num("maximum") {
            hi = hi.min(v.floor());
        }
        if let Some(v) = num("exclusiveMaximum") {
            hi = hi.min(v.ceil() - 1.0);
        }
        let (lo, hi) = match (has_lo, has_hi) {
            (false, false) => (lo.max(1.0), hi.min(1000.0)),
            (true, false) => (lo, hi.min(lo + 1000.0)),
            (false, true) => (lo.max(hi - 1000.0), hi),
            (true, true) => (lo, hi),
        };
        let (lo, hi) = (lo as i64, (hi as i64).max(lo as i64));
        let step = num("multipleOf").filter(|s| *s >= 1.0 && s.fract() == 0.0);
        let v = match step {
            Some(step) => {
                let step = step as i64;
                let first =
                    lo.div_euclid(step) * step + if lo.rem_euclid(step) == 0 { 0 } else { step };
                let count = if first > hi { 0 } else { (hi - first) / step };
                first + step * self.rng.i64(0..=count.min(100))
            }
            None => self.rng.i64(lo..=hi),
        };
        json!(v)
    }

    fn number(&mut self, m: &Map<String, Value>) -> Value {
        let num = |k: &str| m.get(k).and_then(Value::as_f64);
        if let Some(step) = num("multipleOf").filter(|s| *s > 0.0) {
            let lo = num("minimum").or(num("exclusiveMinimum")).unwrap_or(0.0);
            let k = (lo / step).ceil().max(1.0) + self.rng.u32(0..3) as f64;
            let v = k * step;
            if let Some(n) = serde_json::Number::from_f64(v) {
                return Value::Number(n);
            }
        }
        let mut lo = num("minimum").unwrap_or(f64::MIN);
        let mut hi = num("maximum").unwrap_or(f64::MAX);
        let exclusive_lo = num("exclusiveMinimum");
        let exclusive_hi = num("exclusiveMaximum");
        if let Some(v) = exclusive_lo {
            lo = lo.max(v);
        }
        if let Some(v) = exclusive_hi {
            hi = hi.min(v);
        }
        if lo == f64::MIN && hi == f64::MAX {
            lo = 0.0;
            hi = 1000.0;
        } else if lo == f64::MIN {
            lo = hi - 1000.0;
        } else if hi == f64::MAX {
            hi = lo + 1000.0;
        }
        let mut v = lo + (hi - lo) * (0.25 + 0.5 * self.rng.f64());
        v = (v * 100.0).round() / 100.0;
        if v <= lo || v >= hi || !v.is_finite() {
            v = lo + (hi - lo) / 2.0;
        }
        if exclusive_lo.is_none() && exclusive_hi.is_none() && v.fract() == 0.0 {
            return json!(v as i64);
        }
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

/// The JSON types a schema allows, inferred from its keywords when `type` is absent.
fn types_of(m: &Map<String, Value>) -> Vec<&str> {
    match m.get("type") {
        Some(Value::String(t)) => return vec![t.as_str()],
        Some(Value::Array(ts)) => return ts.iter().filter_map(Value::as_str).collect(),
        _ => {}
    }
    if m.contains_key("properties")
        || m.contains_key("required")
        || m.contains_key("additionalProperties")
    {
        vec!["object"]
    } else if m.contains_key("items") || m.contains_key("prefixItems") {
        vec!["array"]
    } else if m.contains_key("minimum") || m.contains_key("maximum") || m.contains_key("multipleOf")
    {
        vec!["number"]
    } else {
        vec!["string"]
    }
}

/// How heavy a branch is to generate: null < scalar < array < object.
fn weight(bundle: &Bundle, s: &Value) -> u8 {
    let mut s = s;
    for _ in 0..8 {
        match s
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| bundle.def(r))
        {
            Some((_, t)) => s = t,
            None => break,
        }
    }
    let Some(m) = s.as_object() else { return 1 };
    if m.contains_key("oneOf") || m.contains_key("anyOf") || m.contains_key("allOf") {
        return 3;
    }
    let ts = types_of(m);
    if ts.contains(&"null") {
        0
    } else if ts.contains(&"object") {
        3
    } else if ts.contains(&"array") {
        2
    } else {
        1
    }
}

/// `allOf` and sibling `$ref`s flattened into one schema: properties merged (a property in
/// several branches becomes their `allOf`), `required` united, types intersected, bounds
/// tightened; other keywords from the first branch that has them.
pub fn merge(bundle: &Bundle, parts: &[&Value]) -> Value {
    let mut out = Map::new();
    for p in parts {
        merge_into(bundle, &mut out, p, 0);
    }
    Value::Object(out)
}

fn merge_into(bundle: &Bundle, out: &mut Map<String, Value>, s: &Value, depth: usize) {
    if depth > MERGE_DEPTH {
        return;
    }
    let Some(m) = s.as_object() else { return };
    if let Some((_, t)) = m
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| bundle.def(r))
    {
        merge_into(bundle, out, t, depth + 1);
    }
    if let Some(Value::Array(branches)) = m.get("allOf") {
        for b in branches {
            merge_into(bundle, out, b, depth + 1);
        }
    }
    for (k, v) in m {
        match k.as_str() {
            "$ref" | "allOf" => {}
            "properties" => {
                let target = out
                    .entry("properties")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let (Some(t), Some(props)) = (target.as_object_mut(), v.as_object()) {
                    for (name, ps) in props {
                        match t.get_mut(name) {
                            Some(existing) if existing != ps => {
                                let prev = std::mem::take(existing);
                                *existing = json!({ "allOf": [prev, ps] });
                            }
                            Some(_) => {}
                            None => {
                                t.insert(name.clone(), ps.clone());
                            }
                        }
                    }
                }
            }
            "required" => {
                let target = out
                    .entry("required")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let (Some(t), Some(names)) = (target.as_array_mut(), v.as_array()) {
                    for n in names {
                        if !t.contains(n) {
                            t.push(n.clone());
                        }
                    }
                }
            }
            "type" => {
                let new: Vec<Value> = match v {
                    Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                match out.get("type") {
                    Some(existing) => {
                        let old: Vec<Value> = match existing {
                            Value::Array(a) => a.clone(),
                            other => vec![other.clone()],
                        };
                        let both: Vec<Value> = old
                            .iter()
                            .filter(|t| {
                                new.contains(t)
                                    || (*t == "integer" && new.contains(&json!("number")))
                            })
                            .cloned()
                            .collect();
                        if !both.is_empty() {
                            out.insert("type".into(), Value::Array(both));
                        }
                    }
                    None => {
                        out.insert("type".into(), Value::Array(new));
                    }
                }
            }
            "enum" => match out.get("enum").and_then(Value::as_array) {
                Some(old) => {
                    let both: Vec<Value> = old
                        .iter()
                        .filter(|x| v.as_array().is_some_and(|n| n.contains(x)))
                        .cloned()
                        .collect();
                    out.insert("enum".into(), Value::Array(both));
                }
                None => {
                    out.insert(k.clone(), v.clone());
                }
            },
            "minimum" | "exclusiveMinimum" | "minLength" | "minItems" | "minProperties" => {
                let new = v.as_f64().unwrap_or(f64::MIN);
                if out.get(k).and_then(Value::as_f64).is_none_or(|o| new > o) {
                    out.insert(k.clone(), v.clone());
                }
            }
            "maximum" | "exclusiveMaximum" | "maxLength" | "maxItems" | "maxProperties" => {
                let new = v.as_f64().unwrap_or(f64::MAX);
                if out.get(k).and_then(Value::as_f64).is_none_or(|o| new < o) {
                    out.insert(k.clone(), v.clone());
                }
            }
            // Examples of one branch rarely describe the whole.
            "example" | "examples" | "default" if depth > 0 => {}
            _ => {
                if !out.contains_key(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

/// A conservative check that `v` is valid against `s`: common keywords only, and `false`
/// when the schema uses one this check does not know.
pub fn conforms(bundle: &Bundle, v: &Value, s: &Value, depth: usize) -> bool {
    if depth > 32 {
        return false;
    }
    let m = match s {
        Value::Bool(b) => return *b,
        Value::Object(m) => m,
        _ => return false,
    };
    for (k, kv) in m {
        let ok = match k.as_str() {
            "$ref" => kv
                .as_str()
                .and_then(|r| bundle.def(r))
                .is_some_and(|(_, t)| conforms(bundle, v, t, depth + 1)),
            "type" => {
                let ts: Vec<&str> = match kv {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => vec![],
                };
                ts.iter().any(|t| is_type(v, t))
            }
            "enum" => kv.as_array().is_some_and(|a| a.contains(v)),
            "const" => kv == v,
            "allOf" => each(kv).all(|b| conforms(bundle, v, b, depth + 1)),
            "anyOf" => each(kv).any(|b| conforms(bundle, v, b, depth + 1)),
            "oneOf" => {
                each(kv)
                    .filter(|b| conforms(bundle, v, b, depth + 1))
                    .count()
                    == 1
            }
            "not" => !conforms(bundle, v, kv, depth + 1),
            "properties" => match (v.as_object(), kv.as_object()) {
                (Some(o), Some(props)) => props.iter().all(|(n, ps)| {
                    o.get(n)
                        .is_none_or(|pv| conforms(bundle, pv, ps, depth + 1))
                }),
                _ => true,
            },
            "required" => v
                .as_object()
                .is_none_or(|o| each(kv).all(|n| n.as_str().is_some_and(|n| o.contains_key(n)))),
            "additionalProperties" => match v.as_object() {
                Some(o) => {
                    let declared = m.get("properties").and_then(Value::as_object);
                    o.iter()
                        .filter(|(n, _)| declared.is_none_or(|d| !d.contains_key(*n)))
                        .all(|(_, pv)| conforms(bundle, pv, kv, depth + 1))
                        && !m.contains_key("patternProperties")
                }
                None => true,
            },
            "items" => v.as_array().is_none_or(|a| {
                let skip = m
                    .get("prefixItems")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                a.iter()
                    .skip(skip)
                    .all(|x| conforms(bundle, x, kv, depth + 1))
            }),
            "prefixItems" => v.as_array().is_none_or(|a| {
                a.iter()
                    .zip(each(kv))
                    .all(|(x, s)| conforms(bundle, x, s, depth + 1))
            }),
            "minItems" => v
                .as_array()
                .is_none_or(|a| a.len() as u64 >= kv.as_u64().unwrap_or(0)),
            "maxItems" => v
                .as_array()
                .is_none_or(|a| a.len() as u64 <= kv.as_u64().unwrap_or(u64::MAX)),
            "uniqueItems" => v.as_array().is_none_or(|a| {
                kv != &Value::Bool(true) || a.iter().enumerate().all(|(i, x)| !a[..i].contains(x))
            }),
            "minProperties" => v
                .as_object()
                .is_none_or(|o| o.len() as u64 >= kv.as_u64().unwrap_or(0)),
            "maxProperties" => v
                .as_object()
                .is_none_or(|o| o.len() as u64 <= kv.as_u64().unwrap_or(u64::MAX)),
            "minLength" => v
                .as_str()
                .is_none_or(|s| s.chars().count() as u64 >= kv.as_u64().unwrap_or(0)),
            "maxLength" => v
                .as_str()
                .is_none_or(|s| s.chars().count() as u64 <= kv.as_u64().unwrap_or(u64::MAX)),
            "pattern" => v
                .as_str()
                .is_none_or(|s| kv.as_str().is_some_and(|p| pattern::matches(p, s))),
            "format" => v
                .as_str()
                .is_none_or(|s| kv.as_str().is_none_or(|f| format_ok(f, s))),
            "minimum" => num_ok(v, kv, |x, b| x >= b),
            "maximum" => num_ok(v, kv, |x, b| x <= b),
            "exclusiveMinimum" => num_ok(v, kv, |x, b| x > b),
            "exclusiveMaximum" => num_ok(v, kv, |x, b| x < b),
            "multipleOf" => num_ok(v, kv, |x, b| b > 0.0 && (x / b).fract().abs() < 1e-9),
            "if"
            | "then"
            | "else"
            | "contains"
            | "patternProperties"
            | "propertyNames"
            | "dependentRequired"
            | "dependentSchemas"
            | "unevaluatedProperties"
            | "unevaluatedItems"
            | "$dynamicRef"
            | "minContains"
            | "maxContains" => false,
            _ => true,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn each(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

fn num_ok(v: &Value, bound: &Value, f: impl Fn(f64, f64) -> bool) -> bool {
    match (v.as_f64(), bound.as_f64()) {
        (Some(x), Some(b)) => f(x, b),
        (None, _) => true,
        _ => false,
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn format_ok(format: &str, s: &str) -> bool {
    let re = match format {
        "date-time" => {
            r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"
        }
        "date" => r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
        "uuid" => r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "email" => r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
        "uri" | "url" => r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$",
        "ipv4" => return s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => return s.parse::<std::net::Ipv6Addr>().is_ok(),
        "hostname" => {
            r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
        }
        _ => return true,
    };
    pattern::matches(re, s)
}

/// RFC 3339 timestamp `secs` seconds after 2024-01-01T00:00:00Z.
pub fn date_time(secs: i64) -> String {
    let total = 1_704_067_200 + secs;
    let days = total.div_euclid(86_400);
    let rem = total.rem_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

fn uuid(bits: u128) -> String {
    let b = (bits & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::mock::schema::Converter;
    use crate::schema_diff::openapi::{OpenapiVersion, Spec};
    use std::collections::BTreeMap;

    /// Converts `schema` (with `components.schemas` beside it) and checks `n` generated values
    /// against a real validator; returns them.
    fn check(version: OpenapiVersion, components: Value, schema: Value, dir: Dir) -> Vec<Value> {
        let spec = Spec {
            version,
            root_path: "a.json".into(),
            docs: BTreeMap::from([(
                "a.json".to_string(),
                json!({"openapi": "3.1.0", "paths": {}, "components": {"schemas": components}}),
            )]),
        };
        let mut c = Converter::new(&spec);
        let root = c.root("a.json", &schema, dir).expect("converts");
        let bundle = c.finish().expect("bundle");
        let validator = bundle.validator(&root).expect("validator");
        let mut out = Vec::new();
        for seed in 0..30 {
            let mut g = Gen::new(&bundle, seed, dir);
            g.vary = seed % 2 == 1;
            let v = g.value(&root);
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{v} is invalid: {errors:?}");
            out.push(v);
        }
        out
    }

    fn check31(schema: Value) -> Vec<Value> {
        check(OpenapiVersion::V3_1, json!({}), schema, Dir::Response)
    }

    #[test]
    fn every_type_and_format_is_valid() {
        for f in [
            "date-time",
            "date",
            "time",
            "uuid",
            "email",
            "uri",
            "hostname",
            "ipv4",
            "ipv6",
            "byte",
            "duration",
        ] {
            check31(json!({"type": "string", "format": f}));
        }
        check31(json!({"type": "boolean"}));
        check31(json!({"type": "null"}));
        check31(json!({"type": ["integer", "null"]}));
        check31(json!({"type": "integer", "format": "int32"}));
        check31(json!({"type": "integer", "format": "int64", "minimum": 9_000_000_000_i64}));
    }

    #[test]
    fn numbers_honour_bounds_and_multiples() {
        check31(json!({"type": "integer", "minimum": 5, "maximum": 7}));
        check31(json!({"type": "integer", "exclusiveMinimum": 5, "exclusiveMaximum": 7}));
        check31(json!({"type": "integer", "minimum": 3, "multipleOf": 5}));
        check31(json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1}));
        check31(json!({"type": "number", "multipleOf": 0.5, "minimum": 2}));
        check31(json!({"type": "number", "maximum": -1000000}));
    }

    #[test]
    fn strings_honour_lengths_enum_const_and_pattern() {
        check31(json!({"type": "string", "minLength": 30}));
        check31(json!({"type": "string", "maxLength": 2}));
        check31(json!({"type": "string", "pattern": "^[A-Z]{2}\\d{3}$"}));
        let v = check31(json!({"enum": ["a", "b", "c"]}));
        assert!(v.iter().any(|x| x != "a"), "dynamic varies enum choices");
        assert_eq!(check31(json!({"const": 42}))[0], json!(42));
    }

    #[test]
    fn arrays_honour_sizes_and_uniqueness() {
        check31(
            json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 5, "uniqueItems": true}),
        );
        check31(json!({"type": "array", "items": {"type": "string"}, "maxItems": 0}));
        check31(json!({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}]}));
    }

    #[test]
    fn objects_have_required_and_only_declared_properties() {
        let v = check31(
            json!({"type": "object", "required": ["a"], "additionalProperties": false,
            "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "minProperties": 2}),
        );
        assert!(v.iter().all(|o| o.get("a").is_some()));
        check31(
            json!({"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}}),
        );
    }

    #[test]
    fn composition_and_discriminator() {
        let components = json!({
            "Pet": {"type": "object", "required": ["petType"], "properties": {"petType": {"type": "string"}},
                    "discriminator": {"propertyName": "petType", "mapping": {"kitty": "#/components/schemas/Cat"}}},
            "Cat": {"allOf": [{"$ref": "#/components/schemas/Pet"}, {"type": "object", "required": ["meow"], "properties": {"meow": {"type": "boolean"}}}]},
            "Dog": {"allOf": [{"$ref": "#/components/schemas/Pet"}, {"type": "object", "required": ["bark"], "properties": {"bark": {"type": "string"}}}]}
        });
        let values = check(
            OpenapiVersion::V3_0,
            components,
            json!({"oneOf": [{"$ref": "#/components/schemas/Cat"}, {"$ref": "#/components/schemas/Dog"}],
                   "discriminator": {"propertyName": "petType", "mapping": {"kitty": "#/components/schemas/Cat"}}}),
            Dir::Response,
        );
        for v in values {
            if v.get("meow").is_some() {
                assert_eq!(v["petType"], "kitty");
            } else {
                assert_eq!(v["petType"], "Dog");
            }
        }
        check31(json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}));
        check31(json!({"allOf": [{"type": "integer", "minimum": 3}, {"maximum": 4}]}));
    }

    #[test]
    fn nullable_read_write_only_and_recursion() {
        check(
            OpenapiVersion::V3_0,
            json!({"Node": {"type": "object", "required": ["children", "parent"],
                "properties": {"children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                               "parent": {"allOf": [{"$ref": "#/components/schemas/Node"}], "nullable": true},
                               "secret": {"type": "string", "writeOnly": true},
                               "id": {"type": "string", "readOnly": true}}}}),
            json!({"$ref": "#/components/schemas/Node"}),
            Dir::Response,
        )
        .iter()
        .for_each(|v| assert!(v.get("secret").is_none(), "{v}"));
        check(
            OpenapiVersion::V3_0,
            json!({"P": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "readOnly": true}}}}),
            json!({"$ref": "#/components/schemas/P"}),
            Dir::Request,
        )
        .iter()
        .for_each(|v| assert!(v.get("id").is_none(), "{v}"));
    }

    #[test]
    fn same_seed_same_value_and_dates_are_civil() {
        assert_eq!(date_time(0), "2024-01-01T00:00:00Z");
        assert_eq!(date_time(86_400 * 60), "2024-03-01T00:00:00Z");
        let a = check31(
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}),
        );
        let b = check31(
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "number"}}}),
        );
        assert_eq!(a, b);
    }
}
