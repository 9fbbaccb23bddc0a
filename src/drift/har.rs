//! The body of `POST /api/v1/drift/observations`: exchanges seen elsewhere (a test run,
//! another proxy), in a shape close to HAR 1.2 entries, parsed into [`Observation`]s
//! (source `api`).
//!
//! ```json
//! {"service": "payments", "federation": "shop",
//!  "entries": [{"startedDateTime": "2026-12-01T10:00:00Z",
//!               "request": {"method": "GET", "url": "https://api.example/pets/1",
//!                           "headers": [{"name": "Accept", "value": "application/json"}]},
//!               "response": {"status": 200,
//!                            "headers": [{"name": "Content-Type", "value": "application/json"}],
//!                            "content": {"mimeType": "application/json", "text": "{\"id\": 1}"}}}]}
//! ```
//!
//! A whole HAR file (`{"log": {"entries": [...]}}`) is taken as well; its service (and
//! federation) then come from the query. Of `request.url` only the path and the query are kept
//! (an absolute URL or a path); the path is taken as the service sees it and never touches the
//! file system. `content.encoding: "base64"` bodies are decoded; a body over the cap is
//! recorded as skipped with its size. A response with status 0 (what browsers write for a
//! request that got no response) is a failed exchange.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::observation::{
    Observation, ObservationSource, ObservedBody, ObservedRequest, ObservedResponse, Outcome,
};

/// Entries per request, at most.
pub const MAX_ENTRIES: usize = 1000;
/// Headers per request or response, at most.
const MAX_HEADERS: usize = 200;

/// Why a posted body was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HarError {
    /// Not JSON at all (including invalid UTF-8 and lone surrogates).
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// The top level is not the documented shape.
    #[error("{field}: {why}")]
    Shape { field: String, why: String },
    /// One entry is not the documented shape.
    #[error("entry {index}: `{field}` {why}")]
    Entry {
        index: usize,
        field: String,
        why: String,
    },
    #[error("{count} entries: at most {max} are taken per request; post them in batches")]
    TooMany { count: usize, max: usize },
}

/// What a request reported: the service and federation it names, and its observations.
#[derive(Debug)]
pub struct Batch {
    pub service: String,
    pub federation: Option<String>,
    pub observations: Vec<Observation>,
}

/// Parses a posted body. `service`/`federation` come from the query and are needed for a
/// whole HAR log; in the documented shape the body's own fields win when both are given.
/// Bodies over `max_body` bytes are recorded as skipped.
pub fn parse(
    body: &[u8],
    service: Option<&str>,
    federation: Option<&str>,
    max_body: usize,
) -> Result<Batch, HarError> {
    let root: Json = serde_json::from_slice(body).map_err(|e| HarError::NotJson(e.to_string()))?;
    let Json::Object(root) = root else {
        return Err(shape(
            "(body)",
            "must be an object: {\"service\": ..., \"entries\": [...]} or a HAR log",
        ));
    };
    let (entries, service, federation) = if let Some(log) = root.get("log") {
        let entries = log
            .get("entries")
            .ok_or_else(|| shape("log.entries", "is missing"))?;
        (
            entries,
            service.map(str::to_string),
            federation.map(str::to_string),
        )
    } else {
        let entries = root
            .get("entries")
            .ok_or_else(|| shape("entries", "is missing"))?;
        let own = |k: &str| -> Result<Option<String>, HarError> {
            match root.get(k) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(shape(k, "must be a string")),
            }
        };
        (
            entries,
            own("service")?.or(service.map(str::to_string)),
            own("federation")?.or(federation.map(str::to_string)),
        )
    };
    let service = service.filter(|s| !s.is_empty()).ok_or_else(|| {
        shape(
            "service",
            "is missing: name the service in the body (\"service\") or, for a HAR log, as ?service=NAME",
        )
    })?;
    let Json::Array(entries) = entries else {
        return Err(shape("entries", "must be an array"));
    };
    if entries.len() > MAX_ENTRIES {
        return Err(HarError::TooMany {
            count: entries.len(),
            max: MAX_ENTRIES,
        });
    }
    let now = now_ms();
    let observations = entries
        .iter()
        .enumerate()
        .map(|(index, e)| {
            entry(e, max_body, now).map_err(|(field, why)| HarError::Entry { index, field, why })
        })
        .map(|r| {
            r.map(|(at_ms, request, outcome)| Observation {
                service: service.clone(),
                federation: federation.clone(),
                source: ObservationSource::Api,
                at_ms,
                request,
                outcome,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Batch {
        service,
        federation,
        observations,
    })
}

fn shape(field: &str, why: &str) -> HarError {
    HarError::Shape {
        field: field.to_string(),
        why: why.to_string(),
    }
}

/// Where in an entry and what is wrong.
type Bad = (String, String);

fn bad(field: &str, why: impl Into<String>) -> Bad {
    (field.to_string(), why.into())
}

fn entry(e: &Json, max_body: usize, now: u64) -> Result<(u64, ObservedRequest, Outcome), Bad> {
    let e = e
        .as_object()
        .ok_or_else(|| bad("(entry)", "must be an object"))?;
    let at_ms = match e.get("startedDateTime") {
        None | Some(Json::Null) => now,
        Some(Json::String(s)) => rfc3339_ms(s).ok_or_else(|| {
            bad(
                "startedDateTime",
                format!("`{}` is not an RFC 3339 time", clip(s)),
            )
        })?,
        Some(_) => return Err(bad("startedDateTime", "must be a string")),
    };
    let req = object(e, "request", "request")?.ok_or_else(|| bad("request", "is missing"))?;
    let method = string(req, "method", "request.method")?
        .ok_or_else(|| bad("request.method", "is missing"))?;
    if method.is_empty()
        || method.len() > 32
        || !method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        return Err(bad(
            "request.method",
            format!("`{}` is not an HTTP method", clip(method)),
        ));
    }
    let url = string(req, "url", "request.url")?.ok_or_else(|| bad("request.url", "is missing"))?;
    let (path, query) = path_and_query(url).ok_or_else(|| {
        bad(
            "request.url",
            format!("`{}` is neither an absolute URL nor a path", clip(url)),
        )
    })?;
    let mut req_headers = headers(req, "request.headers")?;
    let req_body = match object(req, "postData", "request.postData")? {
        None => ObservedBody::None,
        Some(pd) => {
            let (body, mime) = content(pd, "request.postData", max_body)?;
            add_content_type(&mut req_headers, mime);
            body
        }
    };
    let request = ObservedRequest {
        method: method.to_ascii_uppercase(),
        path,
        query,
        headers: req_headers,
        body: req_body,
    };
    let resp = object(e, "response", "response")?.ok_or_else(|| bad("response", "is missing"))?;
    let status = match resp.get("status") {
        None => return Err(bad("response.status", "is missing")),
        Some(s) => s
            .as_u64()
            .filter(|s| *s == 0 || (100..=599).contains(s))
            .ok_or_else(|| {
                bad(
                    "response.status",
                    "must be an HTTP status (100 to 599), or 0 for no response",
                )
            })?,
    };
    if status == 0 {
        let reason = match resp.get("_error") {
            Some(Json::String(s)) if !s.is_empty() => clip(s).to_string(),
            _ => "no response (status 0)".to_string(),
        };
        return Ok((at_ms, request, Outcome::Failed { reason }));
    }
    let mut resp_headers = headers(resp, "response.headers")?;
    let body = match object(resp, "content", "response.content")? {
        None => ObservedBody::None,
        Some(c) => {
            let (body, mime) = content(c, "response.content", max_body)?;
            add_content_type(&mut resp_headers, mime);
            body
        }
    };
    Ok((
        at_ms,
        request,
        Outcome::Answered(ObservedResponse {
            status: status as u16,
            headers: resp_headers,
            body,
        }),
    ))
}

fn object<'a>(
    o: &'a Map<String, Json>,
    key: &str,
    field: &str,
) -> Result<Option<&'a Map<String, Json>>, Bad> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(field, "must be an object")),
    }
}

fn string<'a>(o: &'a Map<String, Json>, key: &str, field: &str) -> Result<Option<&'a str>, Bad> {
    match o.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad(field, "must be a string")),
    }
}

/// At most 100 characters of `s`, for messages.
fn clip(s: &str) -> &str {
    match s.char_indices().nth(100) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// `[{"name", "value"}]` as lower-case names and values.
fn headers(o: &Map<String, Json>, field: &str) -> Result<Vec<(String, String)>, Bad> {
    let list = match o.get("headers") {
        None | Some(Json::Null) => return Ok(Vec::new()),
        Some(Json::Array(a)) => a,
        Some(_) => return Err(bad(field, "must be an array of {\"name\", \"value\"}")),
    };
    if list.len() > MAX_HEADERS {
        return Err(bad(
            field,
            format!("has {} headers; at most {MAX_HEADERS}", list.len()),
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, h)| {
            let at = format!("{field}[{i}]");
            let h = h
                .as_object()
                .ok_or_else(|| bad(&at, "must be an object {\"name\", \"value\"}"))?;
            let name = string(h, "name", &format!("{at}.name"))?
                .ok_or_else(|| bad(&format!("{at}.name"), "is missing"))?;
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(bad(
                    &format!("{at}.name"),
                    format!("`{}` is not a header name", clip(name)),
                ));
            }
            let value = string(h, "value", &format!("{at}.value"))?
                .ok_or_else(|| bad(&format!("{at}.value"), "is missing"))?;
            Ok((name.to_ascii_lowercase(), value.to_string()))
        })
        .collect()
}

/// A `postData` or `content` object: its body (decoded, capped) and its `mimeType`.
fn content<'a>(
    o: &'a Map<String, Json>,
    field: &str,
    max_body: usize,
) -> Result<(ObservedBody, Option<&'a str>), Bad> {
    let mime = string(o, "mimeType", &format!("{field}.mimeType"))?.filter(|m| !m.is_empty());
    let Some(text) = string(o, "text", &format!("{field}.text"))? else {
        return Ok((ObservedBody::None, mime));
    };
    let bytes = match string(o, "encoding", &format!("{field}.encoding"))? {
        None | Some("") => Bytes::copy_from_slice(text.as_bytes()),
        Some(enc) if enc.eq_ignore_ascii_case("base64") => {
            // Decoded size is at most 3/4 of the text: a text over the cap's worth is skipped
            // without decoding.
            if text.len() / 4 * 3 > max_body.saturating_add(3) {
                let size = (text.trim_end_matches('=').len() * 3 / 4) as u64;
                return Ok((ObservedBody::Skipped { size }, mime));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    bad(
                        &format!("{field}.text"),
                        format!("is not valid base64: {e}"),
                    )
                })?;
            Bytes::from(decoded)
        }
        Some(other) => {
            return Err(bad(
                &format!("{field}.encoding"),
                format!(
                    "`{}` is not supported: leave it out for text, or write \"base64\"",
                    clip(other)
                ),
            ));
        }
    };
    let body = if bytes.is_empty() {
        ObservedBody::None
    } else if bytes.len() > max_body {
        ObservedBody::Skipped {
            size: bytes.len() as u64,
        }
    } else {
        ObservedBody::Bytes(bytes)
    };
    Ok((body, mime))
}

/// Adds `content-type: mime` unless the headers have one.
fn add_content_type(headers: &mut Vec<(String, String)>, mime: Option<&str>) {
    if let Some(m) = mime
        && !headers.iter().any(|(k, _)| k == "content-type")
    {
        headers.push(("content-type".into(), m.to_string()));
    }
}

/// The path and query of an absolute URL or of a path (`/…`).
fn path_and_query(url: &str) -> Option<(String, Option<String>)> {
    let split = |s: &str| -> (String, Option<String>) {
        let s = s.split('#').next().unwrap_or("");
        match s.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (s.to_string(), None),
        }
    };
    if url.starts_with('/') && !url.starts_with("//") {
        let (p, q) = split(url);
        return Some((p, q));
    }
    let u = url::Url::parse(url).ok()?;
    if u.cannot_be_a_base() {
        return None;
    }
    let path = if u.path().is_empty() {
        "/".to_string()
    } else {
        u.path().to_string()
    };
    Some((path, u.query().map(str::to_string)))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds of an RFC 3339 time with `Z`, an offset (`+01:00`), or no zone (UTC).
fn rfc3339_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (local, offset_secs) = match s.get(19..) {
        Some(tail) => match tail.rfind(['+', '-']) {
            Some(i) => {
                let (head, off) = s.split_at(19 + i);
                let sign = if off.starts_with('-') { -1i64 } else { 1 };
                let (h, m) = off[1..].split_once(':').unwrap_or((&off[1..], "0"));
                let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
                if h > 23 || m > 59 {
                    return None;
                }
                (head, sign * (h * 3600 + m * 60))
            }
            None => (s.trim_end_matches(['Z', 'z']), 0),
        },
        None => (s, 0),
    };
    let t = humantime::parse_rfc3339_weak(local).ok()?;
    let t = if offset_secs >= 0 {
        t.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))?
    } else {
        t.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))?
    };
    u64::try_from(t.duration_since(UNIX_EPOCH).ok()?.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAP: usize = 1024;

    fn one(entry: Json) -> Result<Observation, HarError> {
        let body = json!({"service": "pets", "entries": [entry]}).to_string();
        parse(body.as_bytes(), None, None, CAP).map(|mut b| b.observations.remove(0))
    }

    fn get(url: &str) -> Json {
        json!({"request": {"method": "get", "url": url}, "response": {"status": 200}})
    }

    fn entry_error(r: Result<Observation, HarError>) -> (usize, String) {
        match r {
            Err(HarError::Entry { index, field, .. }) => (index, field),
            other => panic!("expected an entry error, got {other:?}"),
        }
    }

    #[test]
    fn a_documented_entry_becomes_an_observation() {
        let o = one(json!({
            "startedDateTime": "2026-12-01T10:00:00.250+01:00",
            "request": {
                "method": "post",
                "url": "https://api.example/v1/pets?limit=2#top",
                "headers": [{"name": "Content-Type", "value": "application/json"}],
                "postData": {"mimeType": "application/json", "text": "{\"name\":\"Rex\"}"}
            },
            "response": {
                "status": 201,
                "headers": [{"name": "X-Request-Id", "value": "abc"}],
                "content": {"mimeType": "application/json", "text": "eyJpZCI6MX0=", "encoding": "base64"}
            }
        }))
        .expect("parses");
        assert_eq!(o.service, "pets");
        assert_eq!(o.source, ObservationSource::Api);
        assert_eq!(o.at_ms, 1_796_115_600_250);
        assert_eq!(o.request.method, "POST");
        assert_eq!(o.request.path, "/v1/pets");
        assert_eq!(o.request.query.as_deref(), Some("limit=2"));
        assert_eq!(
            o.request.headers,
            vec![("content-type".to_string(), "application/json".to_string())]
        );
        assert_eq!(
            o.request.body,
            ObservedBody::Bytes(Bytes::from_static(b"{\"name\":\"Rex\"}"))
        );
        let Outcome::Answered(r) = o.outcome else {
            panic!("answered")
        };
        assert_eq!(r.status, 201);
        assert_eq!(
            r.body,
            ObservedBody::Bytes(Bytes::from_static(b"{\"id\":1}"))
        );
        assert_eq!(
            r.headers,
            vec![
                ("x-request-id".to_string(), "abc".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
    }

    #[test]
    fn a_har_log_takes_its_service_from_the_query() {
        let log = json!({"log": {"version": "1.2", "entries": [get("/a"), get("/b")]}}).to_string();
        let b = parse(log.as_bytes(), Some("pets"), Some("shop"), CAP).expect("parses");
        assert_eq!(b.service, "pets");
        assert_eq!(b.federation.as_deref(), Some("shop"));
        assert_eq!(b.observations.len(), 2);
        assert_eq!(b.observations[1].request.path, "/b");
        let e = parse(log.as_bytes(), None, None, CAP).expect_err("no service");
        assert!(
            matches!(e, HarError::Shape { ref field, .. } if field == "service"),
            "{e}"
        );
    }

    #[test]
    fn status_zero_is_a_failed_exchange() {
        let o = one(json!({"request": {"method": "GET", "url": "/x"},
                            "response": {"status": 0, "_error": "net::ERR_CONNECTION_REFUSED"}}))
        .expect("parses");
        assert_eq!(
            o.outcome,
            Outcome::Failed {
                reason: "net::ERR_CONNECTION_REFUSED".into()
            }
        );
    }

    #[test]
    fn traversal_looking_urls_are_only_paths() {
        let o = one(get("/../../etc/passwd?x=1")).expect("parses");
        assert_eq!(o.request.path, "/../../etc/passwd");
        // An absolute URL is normalised by the URL parser; nothing is read either way.
        let o = one(get("http://h/a/../../etc/passwd")).expect("parses");
        assert_eq!(o.request.path, "/etc/passwd");
        assert_eq!(one(get("http://h")).expect("parses").request.path, "/");
    }

    #[test]
    fn missing_and_mistyped_fields_name_the_entry_and_the_field() {
        let cases = [
            (json!({"response": {"status": 200}}), "request"),
            (
                json!({"request": {"url": "/x"}, "response": {"status": 200}}),
                "request.method",
            ),
            (
                json!({"request": {"method": "GET"}, "response": {"status": 200}}),
                "request.url",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x"}}),
                "response",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x"}, "response": {}}),
                "response.status",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x"}, "response": {"status": 99}}),
                "response.status",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x"}, "response": {"status": "200"}}),
                "response.status",
            ),
            (
                json!({"request": {"method": "G ET", "url": "/x"}, "response": {"status": 200}}),
                "request.method",
            ),
            (
                json!({"request": {"method": "GET", "url": "x y"}, "response": {"status": 200}}),
                "request.url",
            ),
            (
                json!({"request": {"method": "GET", "url": "mailto:a@b"}, "response": {"status": 200}}),
                "request.url",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x", "headers": {}}, "response": {"status": 200}}),
                "request.headers",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x", "headers": [{"name": "a b", "value": "1"}]}, "response": {"status": 200}}),
                "request.headers[0].name",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x", "headers": [{"name": "a"}]}, "response": {"status": 200}}),
                "request.headers[0].value",
            ),
            (
                json!({"startedDateTime": "yesterday", "request": {"method": "GET", "url": "/x"}, "response": {"status": 200}}),
                "startedDateTime",
            ),
            (
                json!({"request": {"method": "GET", "url": "/x"}, "response": {"status": 200, "content": {"text": "x", "encoding": "gzip"}}}),
                "response.content.encoding",
            ),
            (json!(7), "(entry)"),
        ];
        for (entry, field) in cases {
            let body = json!({"service": "s", "entries": [get("/ok"), entry.clone()]}).to_string();
            let e = parse(body.as_bytes(), None, None, CAP);
            let (index, f) = entry_error(e.map(|mut b| b.observations.remove(0)));
            assert_eq!((index, f.as_str()), (1, field), "{entry}");
        }
    }

    #[test]
    fn invalid_base64_is_refused_with_its_field() {
        let e = one(json!({"request": {"method": "GET", "url": "/x"},
                            "response": {"status": 200, "content": {"text": "!!not base64!!", "encoding": "base64"}}}));
        assert_eq!(entry_error(e), (0, "response.content.text".to_string()));
    }

    #[test]
    fn bodies_over_the_cap_are_skipped_with_their_size() {
        let big = "x".repeat(CAP + 1);
        let o = one(json!({"request": {"method": "POST", "url": "/x", "postData": {"text": big}},
                            "response": {"status": 200, "content": {"text": "x".repeat(10 * CAP), "encoding": "base64"}}}))
        .expect("parses");
        assert_eq!(
            o.request.body,
            ObservedBody::Skipped {
                size: (CAP + 1) as u64
            }
        );
        let Outcome::Answered(r) = o.outcome else {
            panic!("answered")
        };
        assert!(matches!(r.body, ObservedBody::Skipped { size } if size > CAP as u64));
    }

    #[test]
    fn hostile_bodies_are_clean_errors() {
        // Invalid UTF-8 inside a string, a lone surrogate, not JSON, the wrong top level.
        let mut invalid = br#"{"service":"s","entries":[{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":""#.to_vec();
        invalid.extend_from_slice(&[0xff, 0xfe]);
        invalid.extend_from_slice(br#""}}}]}"#);
        assert!(matches!(
            parse(&invalid, None, None, CAP),
            Err(HarError::NotJson(_))
        ));
        let surrogate = r#"{"service":"s","entries":[{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":"\ud800"}}}]}"#;
        assert!(matches!(
            parse(surrogate.as_bytes(), None, None, CAP),
            Err(HarError::NotJson(_))
        ));
        assert!(matches!(
            parse(b"{", None, None, CAP),
            Err(HarError::NotJson(_))
        ));
        assert!(matches!(
            parse(b"[]", None, None, CAP),
            Err(HarError::Shape { .. })
        ));
        assert!(matches!(
            parse(br#"{"service": 1, "entries": []}"#, None, None, CAP),
            Err(HarError::Shape { .. })
        ));
        assert!(matches!(
            parse(br#"{"service": "s", "entries": {}}"#, None, None, CAP),
            Err(HarError::Shape { .. })
        ));
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse(deep.as_bytes(), None, None, CAP),
            Err(HarError::NotJson(_))
        ));
    }

    #[test]
    fn too_many_entries_are_refused() {
        let entries: Vec<Json> = (0..=MAX_ENTRIES).map(|_| get("/")).collect();
        let body = json!({"service": "s", "entries": entries}).to_string();
        assert_eq!(
            parse(body.as_bytes(), None, None, CAP).expect_err("too many"),
            HarError::TooMany {
                count: MAX_ENTRIES + 1,
                max: MAX_ENTRIES
            }
        );
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T01:00:01+01:00"), Some(1000));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01.5-00:30"), Some(1_801_500));
        assert_eq!(rfc3339_ms("1970-01-01T00:00:01+25:00"), None);
        assert_eq!(rfc3339_ms("nope"), None);
    }
}
