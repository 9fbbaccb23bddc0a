//! RFC 9457 problem responses of the gateway (`application/problem+json`).

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};
use serde_json::{Map, Value, json};

/// Base of every problem `type`.
pub const TYPE_BASE: &str = "https://mockops.dev/problems/";

/// A problem body: `type`, `title`, `status`, `detail`, then the extensions.
pub fn body(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    ext: Map<String, Value>,
) -> Value {
    let mut out = json!({
        "type": format!("{TYPE_BASE}{slug}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Value::Object(o) = &mut out {
        o.extend(ext);
    }
    out
}

/// A problem response.
pub fn response(
    status: StatusCode,
    slug: &str,
    title: &str,
    detail: &str,
    ext: Map<String, Value>,
) -> Response<Body> {
    let text = body(status, slug, title, detail, ext).to_string();
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// One extension member.
pub fn ext(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}
