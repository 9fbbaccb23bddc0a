//! Signing in to the dashboard: the API token, kept in a cookie and checked on every request
//! exactly as the bearer header is (`ApiAuth::check_read_token`, constant time).

use axum::Form;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::Ui;
use super::html::{bare_page, esc};

/// The session cookie: the token, hex-encoded (any token fits a cookie value that way).
pub const COOKIE: &str = "mockops_ui";
/// How long a sign-in lasts (seconds).
const SESSION_SECS: u64 = 12 * 3600;

/// The token in the request's dashboard cookie, if there is one that decodes.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .and_then(|(_, v)| hex::decode(v).ok())
        .and_then(|b| String::from_utf8(b).ok())
}

/// The request came over HTTPS (directly, or through a proxy that says so).
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("mockops_ui=; Path=/ui; Max-Age=0"))
}

/// Where to go after signing in: a dashboard path, never another site (`//evil`, `/\evil`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if (n == "/ui" || n.starts_with("/ui/") || n.starts_with("/ui?"))
                && !n.contains("//")
                && !n.contains("..")
                && !n.contains('\\')
                && !n.chars().any(char::is_control) =>
        {
            n.to_string()
        }
        _ => "/ui".into(),
    }
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Lets a request through with a cookie (or without, when reads are open); otherwise sends
/// the browser to the sign-in form, which brings it back here.
pub async fn require_session(State(ui): State<Ui>, request: Request, next: Next) -> Response {
    let token = cookie_token(request.headers());
    if ui.shared.auth.check_read_token(token.as_deref()).is_ok() {
        return next.run(request).await;
    }
    let here = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/ui".into());
    let mut r = see_other(&format!(
        "/ui/login?next={}",
        super::html::query_value(&safe_next(Some(&here)))
    ));
    if token.is_some() {
        // A cookie whose token no longer works: drop it.
        r.headers_mut().insert(
            header::SET_COOKIE,
            session_cookie("", 0, over_tls(request.headers())),
        );
    }
    r
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn form(next: &str, error: Option<&str>) -> String {
    let alert = error
        .map(|e| format!("<p role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    bare_page(
        "Sign in to mockops",
        &format!(
            "{alert}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
             <input type=\"hidden\" name=\"next\" value=\"{next}\">\
             <label for=\"token\">API token</label>\
             <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"current-password\" required autofocus>\
             <p class=\"muted\">The token the CLI uses: the state directory's <code>api-token</code> \
             file, or the file given with <code>--api-token-file</code> or \
             <code>--api-read-token-file</code>.</p>\
             <button type=\"submit\">Sign in</button></form>",
            next = esc(next)
        ),
    )
}

pub async fn login_form(Query(q): Query<NextQuery>) -> Response {
    Html(form(&safe_next(q.next.as_deref()), None)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// A post from another site (a forged form): refused.
fn cross_site(headers: &HeaderMap) -> bool {
    // Browsers that send Fetch metadata say where the form came from; trust that first.
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let bare = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    bare != Some(host)
}

fn forbidden_cross_site() -> Response {
    (
        StatusCode::FORBIDDEN,
        Html(bare_page(
            "Refused",
            "<p role=\"alert\">This form was posted from another site.</p>",
        )),
    )
        .into_response()
}

pub async fn login(State(ui): State<Ui>, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if cross_site(&headers) {
        return forbidden_cross_site();
    }
    let next = safe_next(f.next.as_deref());
    let token = f.token.trim();
    if token.is_empty() || ui.shared.auth.check_read_token(Some(token)).is_err() {
        return (
            StatusCode::UNAUTHORIZED,
            Html(form(&next, Some("That token is not accepted."))),
        )
            .into_response();
    }
    let mut r = see_other(&next);
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(&hex::encode(token), SESSION_SECS, over_tls(&headers)),
    );
    r
}

pub async fn logout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return forbidden_cross_site();
    }
    let mut r = see_other("/ui/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie("", 0, over_tls(&headers)),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_the_dashboard() {
        assert_eq!(safe_next(Some("/ui/events?type=a")), "/ui/events?type=a");
        assert_eq!(safe_next(Some("/ui")), "/ui");
        for bad in [
            "//evil.example",
            "/ui//evil",
            "https://evil",
            "/uix",
            "/ui/\\x",
            "/api/v1/status",
        ] {
            assert_eq!(safe_next(Some(bad)), "/ui", "{bad}");
        }
        assert_eq!(safe_next(None), "/ui");
    }

    #[test]
    fn the_cookie_round_trips_any_token() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={}", hex::encode("t;ok\"en"))).unwrap(),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("t;ok\"en"));
        h.insert(header::COOKIE, HeaderValue::from_static("mockops_ui=zz"));
        assert_eq!(cookie_token(&h), None);
    }

    #[test]
    fn cross_site_posts_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:7000"));
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7000"),
        );
        assert!(!cross_site(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(cross_site(&h));
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!cross_site(&h));
    }
}
