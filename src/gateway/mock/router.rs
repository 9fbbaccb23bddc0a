//! Matching a request path against OpenAPI path templates: segments are percent-decoded
//! (malformed encoding is an error, not a guess), a literal segment beats a templated one at
//! the same position, and a template segment may hold text around its parameter
//! (`/files/{name}.json`).

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param {
        prefix: String,
        name: String,
        suffix: String,
    },
}

/// Decoded `name=value` pairs.
type Pairs = Vec<(String, String)>;

/// One method of a template: (method, operation index, query pairs the template requires).
type Entry = (String, usize, Pairs);

#[derive(Debug)]
struct Template {
    segments: Vec<Seg>,
    /// (method, operation index, query pairs the template requires: `/a?beta=true`)
    methods: Vec<Entry>,
}

/// The path templates of one service.
#[derive(Debug, Default)]
pub struct Router {
    templates: Vec<Template>,
    index: HashMap<String, usize>,
    by_len: HashMap<usize, Vec<usize>>,
}

/// What a request path and method match.
#[derive(Debug, PartialEq, Eq)]
pub enum Match {
    /// The operation index and the decoded path parameters.
    Found {
        op: usize,
        params: Vec<(String, String)>,
    },
    /// The path matches, the method does not: the methods it has.
    MethodNotAllowed(Vec<String>),
    NotFound,
    /// A segment is not valid percent-encoding of UTF-8.
    BadEncoding(String),
}

fn parse_template(path: &str) -> Vec<Seg> {
    split(path)
        .map(|s| match (s.find('{'), s.rfind('}')) {
            (Some(a), Some(b)) if a < b => Seg::Param {
                prefix: s[..a].to_string(),
                name: s[a + 1..b].to_string(),
                suffix: s[b + 1..].to_string(),
            },
            _ => Seg::Lit(s.to_string()),
        })
        .collect()
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// Percent-decodes one path segment; `None` when the encoding is malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl Router {
    /// Adds operation `op` for `method` (upper case) at `template`.
    /// A template may end in a literal query (`/responses?beta=true`, as some descriptions
    /// write variants of one path): such an operation matches when the query has those pairs.
    pub fn add(&mut self, template: &str, method: &str, op: usize) {
        let (template, query) = template.split_once('?').unwrap_or((template, ""));
        let required: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let i = match self.index.get(template) {
            Some(i) => *i,
            None => {
                let segments = parse_template(template);
                let i = self.templates.len();
                self.by_len.entry(segments.len()).or_default().push(i);
                self.templates.push(Template {
                    segments,
                    methods: Vec::new(),
                });
                self.index.insert(template.to_string(), i);
                i
            }
        };
        self.templates[i]
            .methods
            .push((method.to_string(), op, required));
    }

    /// The operation `method` and `path` (percent-encoded, starting with `/`) match.
    pub fn route(&self, method: &str, path: &str) -> Match {
        self.route_with_query(method, path, &[])
    }

    /// [`Router::route`], with the request's decoded query pairs choosing among templates that
    /// differ only by a literal query: the one whose pairs are all present and most numerous,
    /// else the one that requires fewest.
    pub fn route_with_query(&self, method: &str, path: &str, query: &[(String, String)]) -> Match {
        let mut decoded = Vec::new();
        for raw in split(path) {
            match percent_decode(raw) {
                Some(d) => decoded.push(d),
                None => return Match::BadEncoding(raw.chars().take(64).collect()),
            }
        }
        let Some(candidates) = self.by_len.get(&decoded.len()) else {
            return Match::NotFound;
        };
        let mut best: Option<(Vec<bool>, usize, Pairs)> = None;
        let mut allowed: Vec<String> = Vec::new();
        for &t in candidates {
            let tpl = &self.templates[t];
            let Some(params) = match_segments(&tpl.segments, &decoded) else {
                continue;
            };
            let candidates: Vec<&Entry> =
                tpl.methods.iter().filter(|(m, _, _)| m == method).collect();
            let satisfied = candidates
                .iter()
                .filter(|(_, _, req)| req.iter().all(|p| query.contains(p)))
                .max_by_key(|(_, _, req)| req.len());
            let fallback = candidates.iter().min_by_key(|(_, _, req)| req.len());
            let Some((_, op, _)) = satisfied.or(fallback) else {
                for (m, _, _) in &tpl.methods {
                    if !allowed.contains(m) {
                        allowed.push(m.clone());
                    }
                }
                continue;
            };
            let score: Vec<bool> = tpl
                .segments
                .iter()
                .map(|s| matches!(s, Seg::Lit(_)))
                .collect();
            if best.as_ref().is_none_or(|(b, _, _)| score > *b) {
                best = Some((score, *op, params));
            }
        }
        match best {
            Some((_, op, params)) => Match::Found { op, params },
            None if !allowed.is_empty() => Match::MethodNotAllowed(allowed),
            None => Match::NotFound,
        }
    }
}

fn match_segments(tpl: &[Seg], path: &[String]) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    for (seg, p) in tpl.iter().zip(path) {
        match seg {
            Seg::Lit(l) => {
                if l != p {
                    return None;
                }
            }
            Seg::Param {
                prefix,
                name,
                suffix,
            } => {
                let v = p
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix(suffix.as_str())?;
                if v.is_empty() {
                    return None;
                }
                params.push((name.clone(), v.to_string()));
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::default();
        r.add("/pets/{id}", "GET", 0);
        r.add("/pets/mine", "GET", 1);
        r.add("/pets/{id}", "DELETE", 2);
        r.add("/files/{name}.json", "GET", 3);
        r.add("/", "GET", 4);
        r.add("/{a}/b", "GET", 5);
        r.add("/a/{b}", "GET", 6);
        r.add("/v?beta=true", "GET", 7);
        r.add("/v", "GET", 8);
        r
    }

    #[test]
    fn a_literal_query_in_a_template_picks_the_variant() {
        let r = router();
        let beta = [("beta".to_string(), "true".to_string())];
        assert_eq!(
            r.route("GET", "/v"),
            Match::Found {
                op: 8,
                params: vec![]
            }
        );
        assert_eq!(
            r.route_with_query("GET", "/v", &beta),
            Match::Found {
                op: 7,
                params: vec![]
            }
        );
    }

    #[test]
    fn literal_segments_beat_templates() {
        let r = router();
        assert_eq!(
            r.route("GET", "/pets/mine"),
            Match::Found {
                op: 1,
                params: vec![]
            }
        );
        assert_eq!(
            r.route("GET", "/pets/7"),
            Match::Found {
                op: 0,
                params: vec![("id".into(), "7".into())]
            }
        );
        assert_eq!(
            r.route("GET", "/a/b"),
            Match::Found {
                op: 6,
                params: vec![("b".into(), "b".into())]
            }
        );
        assert_eq!(
            r.route("GET", "/"),
            Match::Found {
                op: 4,
                params: vec![]
            }
        );
    }

    #[test]
    fn decoding_method_and_misses() {
        let r = router();
        assert_eq!(
            r.route("GET", "/pets/a%20b%2Fc"),
            Match::Found {
                op: 0,
                params: vec![("id".into(), "a b/c".into())]
            }
        );
        assert_eq!(
            r.route("GET", "/files/report.json"),
            Match::Found {
                op: 3,
                params: vec![("name".into(), "report".into())]
            }
        );
        assert!(matches!(r.route("GET", "/pets/%zz"), Match::BadEncoding(_)));
        assert!(matches!(r.route("GET", "/pets/%ff"), Match::BadEncoding(_)));
        assert!(matches!(r.route("GET", "/pets/%4"), Match::BadEncoding(_)));
        assert_eq!(
            r.route("POST", "/pets/1"),
            Match::MethodNotAllowed(vec!["GET".into(), "DELETE".into()])
        );
        assert_eq!(r.route("GET", "/nothing/here/at/all"), Match::NotFound);
        assert_eq!(r.route("GET", "/pets/"), Match::NotFound);
    }
}
