//! The dashboard at `/ui` against a real daemon: who may see it (the login form, the cookie,
//! wrong and missing tokens, cross-site posts, redirects that stay on the dashboard), what
//! every page answers (security headers, bounded pages, the escaping of hostile text from the
//! config repository and the API), and a real headless Chromium loading every page without a
//! console error, with one coverage cell per operation and a screenshot of each page kept
//! under `<target>/ui-screenshots/`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};

/// Every page of the dashboard.
const PAGES: &[&str] = &[
    "/ui",
    "/ui/revisions",
    "/ui/events",
    "/ui/executions",
    "/ui/federations",
    "/ui/drift",
    "/ui/drift/incidents",
    "/ui/coverage",
    "/ui/usage",
];

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>";

/// A spec with `n` operations (`op0`..), the first with a hostile operationId.
fn spec(n: usize) -> String {
    let mut paths = serde_json::Map::new();
    for i in 0..n {
        let id = if i == 0 {
            HOSTILE.to_string()
        } else {
            format!("op{i}")
        };
        paths.insert(
            format!("/things{i}"),
            json!({"get": {"operationId": id, "responses": {"200": {
                "description": "ok",
                "content": {"application/json": {"schema": {"type": "object"}, "example": {"i": i}}}
            }}}}),
        );
    }
    serde_json::to_string_pretty(&json!({
        "openapi": "3.0.3",
        "info": {"title": "things", "version": "1"},
        "paths": paths,
    }))
    .expect("spec")
}

/// A repository whose federation description, commit message and operationIds are hostile
/// HTML: `shop` with `front` (3 operations, depends on `back`) and `back` (2 operations).
fn hostile_repo() -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(
        git2::Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init"),
    );
    let r = Repo { dir };
    r.write("specs/front.json", &spec(3));
    r.write("specs/back.json", &spec(2));
    for name in ["front", "back"] {
        r.write(
            &format!("services/{name}.yaml"),
            &format!(
                "name: {name}\nworkspace_id: ws-{name}\nspec: specs/{name}.json\nbase_path: /{name}\nreality_level: mock_v3\n"
            ),
        );
    }
    r.write(
        "federations/shop.yaml",
        &format!(
            "name: shop\ndescription: {}\nservices:\n  - name: front\n    dependencies: [back]\n  - name: back\n",
            serde_json::to_string(HOSTILE).expect("json")
        ),
    );
    commit_all(r.path(), &format!("shop {HOSTILE}"));
    r
}

/// One request without following redirects: status, headers, body.
fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    form: Option<&[(&str, &str)]>,
) -> (u16, HeaderMap, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .expect("client");
        let mut req = client.request(
            reqwest::Method::from_bytes(method.as_bytes()).expect("method"),
            url,
        );
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(f) = form {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(f.iter())
                .finish();
            req = req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.text().await.expect("body"))
    })
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The dashboard's cookie for `token`, as the login form sets it.
fn cookie(token: &str) -> Vec<(&'static str, String)> {
    vec![("cookie", format!("mockops_ui={}", hex::encode(token)))]
}

/// How many rows the first table body of `html` has.
fn rows(html: &str) -> usize {
    html.split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .map(|b| b.matches("<tr").count())
        .unwrap_or(0)
}

fn post_event(d: &Daemon, ty: &str, payload: Json) {
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(serde_json::to_vec(&json!({"event_type": ty, "payload": payload})).expect("json")),
        Some(&d.auth()),
    )
    .expect("post event");
    assert_eq!(status, 201, "{body}");
}

#[test]
fn pages_need_the_token_and_escape_hostile_text() {
    let repo = hostile_repo();
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    // An invalid commit whose diagnostics quote hostile text.
    repo.write(
        "services/back.yaml",
        &format!(
            "name: back\nworkspace_id: ws-back\nspec: specs/back.json\nbase_path: /back\nreality_level: mock_v3\n{}: 1\n",
            serde_json::to_string(HOSTILE).expect("json")
        ),
    );
    let bad = repo.commit("break back");
    let st = d.wait_attempted(&bad);
    assert_eq!(st["last_attempted_status"], "invalid", "{st}");
    for i in 0..250 {
        post_event(&d, "release.published", json!({"note": HOSTILE, "n": i}));
    }
    post_event(&d, "deploy.done", json!({"n": 0}));
    let token = d.token();

    // Without a session: every page sends the browser to the form, which comes back here.
    for page in PAGES {
        let (status, h, _) = fetch("GET", &d.url(page), &[], None);
        assert_eq!(status, 303, "{page}");
        let expected = format!(
            "/ui/login?next={}",
            url::form_urlencoded::byte_serialize(page.as_bytes()).collect::<String>()
        );
        assert_eq!(header(&h, "location"), expected, "{page}");
    }
    // A wrong token in the cookie: the same, and the cookie is dropped.
    let (status, h, _) = fetch("GET", &d.url("/ui/events"), &cookie("not-the-token"), None);
    assert_eq!(status, 303);
    assert!(header(&h, "set-cookie").contains("Max-Age=0"), "{h:?}");
    // The bearer header is not a dashboard session, and the API is not opened by the cookie.
    let (status, _, _) = fetch("GET", &d.url("/ui"), &d.auth(), None);
    assert_eq!(status, 303);
    let (status, _, _) = fetch("GET", &d.url("/api/v1/status"), &cookie(&token), None);
    assert_eq!(status, 401);

    // The form: a wrong token is refused without a cookie.
    let (status, h, body) = fetch(
        "POST",
        &d.url("/ui/login"),
        &[],
        Some(&[("token", "wrong"), ("next", "/ui/events")]),
    );
    assert_eq!(status, 401);
    assert!(h.get("set-cookie").is_none());
    assert!(body.contains("That token is not accepted."));
    // A post from another site is refused even with the right token.
    for evil in [
        ("origin", "http://evil.example".to_string()),
        ("sec-fetch-site", "cross-site".to_string()),
    ] {
        let (status, h, _) = fetch(
            "POST",
            &d.url("/ui/login"),
            std::slice::from_ref(&evil),
            Some(&[("token", &token)]),
        );
        assert_eq!(status, 403, "{evil:?}");
        assert!(h.get("set-cookie").is_none());
    }
    // The right token: a strict, script-proof cookie, and back to a dashboard page only.
    let (status, h, _) = fetch(
        "POST",
        &d.url("/ui/login"),
        &[("origin", d.url(""))],
        Some(&[("token", &token), ("next", "/ui/events?type=deploy.done")]),
    );
    assert_eq!(status, 303);
    assert_eq!(header(&h, "location"), "/ui/events?type=deploy.done");
    let set = header(&h, "set-cookie");
    for part in ["mockops_ui=", "HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert!(
        !set.contains(&token),
        "the token is not stored as written: {set}"
    );
    for next in [
        "//evil.example/x",
        "https://evil.example",
        "/ui/../api",
        "/api/v1/status",
    ] {
        let (status, h, _) = fetch(
            "POST",
            &d.url("/ui/login"),
            &[],
            Some(&[("token", &token), ("next", next)]),
        );
        assert_eq!(status, 303);
        assert_eq!(header(&h, "location"), "/ui", "{next}");
    }
    // Behind a TLS-terminating proxy the cookie is Secure.
    let (_, h, _) = fetch(
        "POST",
        &d.url("/ui/login"),
        &[("x-forwarded-proto", "https".into())],
        Some(&[("token", &token)]),
    );
    assert!(header(&h, "set-cookie").contains("; Secure"));

    // With the session: every page, with its security headers, without any script or
    // injected element, and with the hostile text shown as text.
    let session = cookie(&token);
    for page in PAGES {
        let (status, h, body) = fetch("GET", &d.url(page), &session, None);
        assert_eq!(status, 200, "{page}: {body}");
        assert!(
            header(&h, "content-type").starts_with("text/html"),
            "{page}"
        );
        let csp = header(&h, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{page}: {csp}");
        }
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(header(&h, "cache-control"), "no-store");
        assert!(!body.contains("<script"), "{page} carries a script");
        assert!(!body.contains("<img"), "{page} carries an injected element");
        assert!(body.contains("<title>"), "{page}");
    }
    let get = |p: &str| {
        let (status, _, body) = fetch("GET", &d.url(p), &session, None);
        assert_eq!(status, 200, "{p}: {body}");
        body
    };
    let escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;";
    let revisions = get("/ui/revisions");
    assert!(
        revisions.contains(escaped),
        "commit summary and diagnostics escaped"
    );
    assert!(
        revisions.contains("b-invalid"),
        "the invalid commit is marked"
    );
    assert!(
        revisions.contains("unknown-field") || revisions.contains("unknown"),
        "{revisions}"
    );
    assert!(revisions.contains("Diagnostics of revision 2"));
    assert!(get("/ui/federations").contains(escaped));
    let coverage = get("/ui/coverage");
    assert!(
        coverage.contains("&lt;script&gt;alert(1)"),
        "operationIds escaped"
    );
    assert_eq!(
        coverage.matches("<rect class=\"cell\"").count(),
        5,
        "one cell per operation"
    );
    let events = get("/ui/events");
    assert!(events.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let overview = get("/ui");
    assert!(overview.contains("b-invalid"));

    // Pages are bounded: at most 200 events whatever is asked, at least one, newest first,
    // and the next page goes on from the last one shown.
    let big = get("/ui/events?limit=100000");
    assert_eq!(rows(&big), 200);
    assert!(big.contains("rel=\"next\""));
    let one = get("/ui/events?limit=0");
    assert_eq!(rows(&one), 1);
    assert!(one.contains("deploy.done"), "newest first");
    let first = get("/ui/events?limit=100");
    let next = first
        .split("href=\"/ui/events?before=")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("next link")
        .replace("&amp;", "&");
    let second = get(&format!("/ui/events?before={next}"));
    assert_eq!(rows(&second), 100);
    let by_type = get("/ui/events?type=deploy.done");
    assert_eq!(rows(&by_type), 1);
    assert!(!by_type.contains("release.published</code>"));
    assert_eq!(
        rows(&get("/ui/revisions?limit=1")),
        2,
        "a revision and its diagnostics"
    );
    for bad in ["/ui/coverage?page=0", "/ui/coverage?page=99"] {
        let (status, _, body) = fetch("GET", &d.url(bad), &session, None);
        assert_eq!(status, 404, "{bad}");
        assert!(body.contains("there is no coverage page"));
    }
    let (status, _, _) = fetch("GET", &d.url("/ui/events?limit=lots"), &session, None);
    assert_eq!(status, 400);

    // Signing out clears the cookie; a forged sign-out is refused.
    let (status, _, _) = fetch(
        "POST",
        &d.url("/ui/logout"),
        &[("sec-fetch-site", "cross-site".into())],
        None,
    );
    assert_eq!(status, 403);
    let (status, h, _) = fetch("POST", &d.url("/ui/logout"), &session, None);
    assert_eq!(status, 303);
    assert!(header(&h, "set-cookie").contains("Max-Age=0"));
}

#[test]
fn anonymous_reads_open_the_dashboard_too() {
    let repo = hostile_repo();
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(repo.path(), state.path(), &["--anonymous-read"]);
    d.wait_ready();
    for page in PAGES {
        let (status, h, body) = fetch("GET", &d.url(page), &[], None);
        assert_eq!(status, 200, "{page}: {body}");
        assert!(header(&h, "content-security-policy").contains("frame-ancestors 'none'"));
    }
}

#[test]
fn the_read_only_token_signs_in_too() {
    let repo = hostile_repo();
    let state = tempfile::tempdir().expect("state");
    let read_file = state.path().join("read-token");
    std::fs::write(&read_file, "read-only-token-0123456789\n").expect("write token");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&read_file, std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
    }
    let read_arg = read_file.display().to_string();
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--api-read-token-file", &read_arg],
    );
    d.wait_ready();
    let (status, h, _) = fetch(
        "POST",
        &d.url("/ui/login"),
        &[],
        Some(&[("token", "read-only-token-0123456789")]),
    );
    assert_eq!(status, 303);
    assert!(header(&h, "set-cookie").starts_with("mockops_ui="));
    for page in PAGES {
        let (status, _, _) = fetch(
            "GET",
            &d.url(page),
            &cookie("read-only-token-0123456789"),
            None,
        );
        assert_eq!(status, 200, "{page}");
    }
    // A prefix of a good token is a wrong token.
    let (status, _, _) = fetch("GET", &d.url("/ui"), &cookie("read-only-token"), None);
    assert_eq!(status, 303);
}

/// The Chromium to drive: `$MOCKOPS_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("MOCKOPS_CHROMIUM") {
        return PathBuf::from(p);
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!(
        "the dashboard's browser test needs a headless Chromium: install Debian's `chromium` \
         (`apt-get install -y chromium`; `.ci/run` does) or point MOCKOPS_CHROMIUM at one"
    );
}

/// `<target>/ui-screenshots`.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("ui-screenshots"))
        .expect("target dir")
}

#[test]
fn a_real_browser_loads_every_page_without_console_errors() {
    let browser = chromium();
    let repo = hostile_repo();
    let state = tempfile::tempdir().expect("state");
    let gw = free_port();
    let gw_addr = format!("127.0.0.1:{gw}");
    let mut d = Daemon::start(repo.path(), state.path(), &["--gateway", &gw_addr]);
    d.wait_ready();
    // Traffic through the gateway: hits on two operations, tagged with a scenario and a CI
    // persona, so every picture has something to show.
    let tags = vec![
        ("x-mockops-scenario", "checkout".to_string()),
        ("x-mockops-ci", "true".to_string()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = http(
            "GET",
            &format!("http://{gw_addr}/shop/front/things1"),
            None,
            Some(&tags),
        )
        .expect("gateway");
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway never served front");
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in [
        "/shop/front/things1",
        "/shop/back/things1",
        "/shop/back/nothing",
    ] {
        http("GET", &format!("http://{gw_addr}{p}"), None, Some(&tags)).expect("gateway");
    }
    // A client may name any scenario: the usage page shows it as text.
    http(
        "GET",
        &format!("http://{gw_addr}/shop/front/things2"),
        None,
        Some(&[("x-mockops-scenario", HOSTILE.to_string())]),
    )
    .expect("gateway");
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.get("/api/v1/traffic")["exchanges"]
        .as_array()
        .map_or(0, Vec::len)
        < 5
    {
        assert!(Instant::now() < deadline, "traffic not recorded");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The coverage page counts what the analytics API counts, for the default range and for
    // a range and filter given as parameters.
    let session = cookie(&d.token());
    let today = d.get("/api/v2/analytics/endpoints/coverage")["to"]
        .as_str()
        .expect("to")
        .to_string();
    for params in [
        String::new(),
        format!("from={today}&to={today}&federation=shop"),
        "from=2020-01-01&to=2020-01-31".to_string(),
    ] {
        let api = d.get(&format!("/api/v2/analytics/endpoints/coverage?{params}"));
        let (status, _, page) = fetch(
            "GET",
            &d.url(&format!("/ui/coverage?{params}")),
            &session,
            None,
        );
        assert_eq!(status, 200, "{params}: {page}");
        let attr = |name: &str| -> u64 {
            page.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|s| s.split('"').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {page}"))
        };
        assert_eq!(
            attr("data-hit"),
            api["hit"].as_u64().expect("hit"),
            "{params}"
        );
        assert_eq!(
            attr("data-operations"),
            api["operations"].as_u64().expect("operations"),
            "{params}"
        );
        assert_eq!(
            page.matches("<rect class=\"cell\"").count() as u64,
            api["operations"].as_u64().expect("operations"),
            "one cell per operation of the catalog: {params}"
        );
    }
    let api = d.get("/api/v2/analytics/endpoints/coverage");
    assert!(api["hit"].as_u64().expect("hit") >= 2, "{api}");
    // The federations page says since when each member has had its level and spec, as the
    // staleness view does; the drift page the share of operations drifting.
    let stale = d.get("/api/v2/analytics/reality-levels/staleness");
    let deadline = Instant::now() + Duration::from_secs(30);
    let feds = loop {
        let (_, _, feds) = fetch("GET", &d.url("/ui/federations"), &session, None);
        if !feds.contains("staleness-pending") {
            break feds;
        }
        assert!(Instant::now() < deadline, "the history walk never ended");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(feds.contains("id=\"staleness\""), "{feds}");
    for m in stale["services"].as_array().expect("services") {
        let since = m["reality_level_since"]["at"].as_str().expect("since");
        assert!(feds.contains(since), "{since} in {feds}");
    }
    let share = d.get("/api/v2/analytics/drift/percentage");
    let (_, _, drift) = fetch("GET", &d.url("/ui/drift"), &session, None);
    assert!(
        drift.contains(&format!(
            "{} of {} operations",
            share["drifting"], share["operations"]
        )),
        "{share} in {drift}"
    );
    // Bad parameters: the API's 400 and its message, as a page, the value escaped.
    for (bad, says) in [
        ("from=yesterday", "is not an RFC 3339 date"),
        ("from=2026-02-01&to=2026-01-01", "is after"),
        ("federation=%3Cscript%3E", "no federation `&lt;script&gt;`"),
        ("color=red", "unknown parameter `color`"),
        ("page=two", "is not a page number"),
    ] {
        for path in ["/ui/coverage", "/ui/usage"] {
            if path == "/ui/usage" && bad.starts_with("page") {
                continue;
            }
            let url = format!("{path}?{bad}");
            let (status, _, body) = fetch("GET", &d.url(&url), &session, None);
            assert_eq!(status, 400, "{url}: {body}");
            assert!(body.contains(says), "{url}: {body}");
            assert!(!body.contains("<script>"), "{url}");
            if !bad.starts_with("page") {
                let (api_status, _) = http(
                    "GET",
                    &d.url(&format!("/api/v2/analytics/endpoints/coverage?{bad}")),
                    None,
                    Some(&d.auth()),
                )
                .expect("request");
                assert_eq!(api_status, 400, "{bad}");
            }
        }
    }
    post_event(&d, "release.published", json!({"note": HOSTILE}));
    let (status, _, usage) = fetch("GET", &d.url("/ui/usage"), &cookie(&d.token()), None);
    assert_eq!(status, 200);
    assert!(
        usage.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{usage}"
    );
    assert!(!usage.contains("<script") && !usage.contains("<img"));

    let out = screenshot_dir();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/dashboard_browser.py");
    let run = Command::new("python3")
        .arg(&script)
        .arg(&browser)
        .arg(d.url(""))
        .arg(d.token())
        .arg(&out)
        .args(PAGES)
        .output()
        .expect("run the browser driver");
    assert!(
        run.status.success(),
        "the browser driver failed: {}\n{}",
        String::from_utf8_lossy(&run.stderr),
        d.log_text()
    );
    let report: Json = serde_json::from_slice(&run.stdout).expect("driver report");
    assert_eq!(
        report["login"]["redirected_to"],
        "/ui/login?next=%2Fui%2Fcoverage"
    );
    assert_eq!(report["login"]["landed_on"], "/ui/coverage", "{report}");
    assert_eq!(report["login"]["cookie_visible_to_scripts"], "", "HttpOnly");
    assert_eq!(report["login"]["errors"], json!([]), "{report}");
    let pages = report["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), PAGES.len());
    for p in pages {
        let path = p["path"].as_str().expect("path");
        assert_eq!(p["location"], path, "{p}");
        assert_eq!(p["errors"], json!([]), "console errors on {path}: {p}");
        assert_eq!(p["svgs_without_name"], 0, "{p}");
        assert!(
            p["title"]
                .as_str()
                .is_some_and(|t| t.ends_with("· mockops")),
            "{p}"
        );
        let shot = p["screenshot"].as_str().expect("screenshot");
        let size = std::fs::metadata(shot).map(|m| m.len()).unwrap_or(0);
        assert!(size > 2000, "{shot}: {size} bytes");
    }
    let coverage = pages
        .iter()
        .find(|p| p["path"] == "/ui/coverage")
        .expect("coverage page");
    assert_eq!(
        coverage["coverage_cells"], 5,
        "one cell per operation: {coverage}"
    );
}
