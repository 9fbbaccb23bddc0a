//! The federation gateway against real upstreams on loopback: routing by segment, base path
//! and host; each reality level; reloads on commits with requests in flight; seeded chaos that
//! replays; unreachable, slow and refused upstreams; hostile requests; the traffic record and
//! federation health.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};
use crate::support::upstream::Upstream;

/// A spec whose every response declares an example: `GET /whoami` answers `{"service": name}`,
/// `GET /pets/{id}` a pet.
fn spec(name: &str) -> String {
    format!(
        r##"openapi: 3.0.3
info: {{title: {name}, version: "1"}}
paths:
  /whoami:
    get:
      operationId: whoAmI
      responses:
        "200":
          description: who answers
          content:
            application/json:
              schema:
                type: object
                required: [service]
                properties: {{service: {{type: string}}}}
              example: {{service: {name}}}
  /pets/{{id}}:
    get:
      operationId: getPet
      parameters:
        - {{name: id, in: path, required: true, schema: {{type: string}}}}
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: {{$ref: "#/components/schemas/Pet"}}
              example: {{id: "1", name: Rex}}
components:
  schemas:
    Pet:
      type: object
      required: [id, name]
      properties:
        id: {{type: string}}
        name: {{type: string}}
"##
    )
}

fn service(name: &str, base: &str, level: &str, extra: &str) -> String {
    format!(
        "name: {name}\nworkspace_id: ws-{name}\nspec: specs/{name}.yaml\nbase_path: {base}\nreality_level: {level}\n{extra}"
    )
}

/// A new Git repository on `main` with `files`, committed.
fn repo(files: &[(&str, String)]) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(
        git2::Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init"),
    );
    let r = Repo { dir };
    for (path, content) in files {
        r.write(path, content);
    }
    commit_all(r.path(), "gateway fixture");
    r
}

/// The `shop` federation: `auth` real, `authz`, `api` and `api-v2` mocked, `blend` blended
/// over a live upstream, `blend-down` and `down` over a closed port, `nospec` without a spec.
fn shop(up: &Upstream, closed: u16) -> Vec<(&'static str, String)> {
    let live = up.url("/v1");
    let dead = format!("http://127.0.0.1:{closed}");
    let mut files = vec![
        (
            "services/auth.yaml",
            service(
                "auth",
                "/auth",
                "real",
                &format!(
                    "upstream: {live}\nupstream_headers:\n  Authorization: \"Bearer ${{env:GW_TEST_TOKEN}}\"\n  X-Client: mockops-gateway\nupstream_timeouts: {{response_ms: 700}}\n"
                ),
            ),
        ),
        ("services/authz.yaml", service("authz", "/authz", "mock_v3", "")),
        ("services/api.yaml", service("api", "/api", "mock_v3", "")),
        ("services/api-v2.yaml", service("api-v2", "/api/v2", "mock_v3", "")),
        (
            "services/blend.yaml",
            service("blend", "/blend", "blended", &format!("upstream: {live}\n")),
        ),
        (
            "services/blend-down.yaml",
            service("blend-down", "/blend-down", "blended", &format!("upstream: {dead}\n")),
        ),
        (
            "services/down.yaml",
            service("down", "/down", "real", &format!("upstream: {dead}\n")),
        ),
        (
            "federations/shop.yaml",
            "name: shop\nhosts: [shop.test]\nservices:\n  - name: auth\n  - name: authz\n  - name: api\n    dependencies: [down]\n  - name: api-v2\n    dependencies: [api]\n  - name: blend\n  - name: blend-down\n  - name: down\n    dependencies: [auth]\n  - name: nospec\n    workspace_id: ws-nospec\n    base_path: /nospec\n".to_string(),
        ),
        (
            "environments/dev/personas/gold.yaml",
            "id: gold\nname: Gold customer\nversion: 1\ntraits: {tier: gold}\n".to_string(),
        ),
    ];
    for name in [
        "auth",
        "authz",
        "api",
        "api-v2",
        "blend",
        "blend-down",
        "down",
    ] {
        let path: &'static str = Box::leak(format!("specs/{name}.yaml").into_boxed_str());
        files.push((path, spec(name)));
    }
    files
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    free_port()
}

struct Gw {
    port: u16,
    client: reqwest::Client,
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Json,
    text: String,
}

impl Gw {
    fn new(port: u16) -> Gw {
        Gw {
            port,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .no_proxy()
                .build()
                .expect("client"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, reqwest::Error> {
        let r = req.send().await?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Json::Null);
        Ok(Reply {
            status,
            headers,
            body,
            text,
        })
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

impl Reply {
    fn source(&self) -> &str {
        self.headers
            .get("x-mockops-source")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Waits until the gateway answers `path` with `status`.
async fn until_status(gw: &Gw, path: &str, status: u16) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = gw.send(gw.client.get(gw.url(path))).await
            && r.status == status
        {
            return r;
        }
        assert!(Instant::now() < deadline, "{path} never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(repo: &Path, state: &Path, gw_port: u16, extra: &[&str]) -> Daemon {
    let port = gw_port.to_string();
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec!["--gateway", addr.as_str()];
    args.extend(extra);
    let mut d = Daemon::start_env(
        repo,
        state,
        &args,
        &[("GW_TEST_TOKEN", "s3cret-upstream-token")],
    );
    d.wait_ready();
    d
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn serves_each_level_by_segment_host_and_base_path() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let repo = repo(&shop(&up, closed_port()));
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let d = start(
        repo.path(),
        state.path(),
        gw_port,
        &["--gateway-max-body", "64KiB"],
    );
    let gw = Gw::new(gw_port);
    let token = d.token();
    rt.block_on(async {
        until_status(&gw, "/shop/authz/whoami", 200).await;

        // Whole segments: /authz is not /auth; the longest base path wins.
        let r = gw.get("/shop/authz/whoami").await;
        assert_eq!(
            (r.status, r.body.clone()),
            (200, json!({"service": "authz"}))
        );
        assert_eq!(r.source(), "mock");
        assert_eq!(
            gw.get("/shop/api/whoami").await.body,
            json!({"service": "api"})
        );
        assert_eq!(
            gw.get("/shop/api/v2/whoami").await.body,
            json!({"service": "api-v2"})
        );
        assert_eq!(gw.get("/shop/api/v20/whoami").await.status, 404);
        let pet = gw.get("/shop/api/v2/pets/7").await;
        assert_eq!((pet.status, pet.body["name"].clone()), (200, json!("Rex")));

        // The host a federation claims serves it at the root.
        let r = gw
            .send(
                gw.client
                    .get(gw.url("/authz/whoami"))
                    .header("host", "shop.test"),
            )
            .await
            .expect("host request");
        assert_eq!(
            (r.status, r.body.clone()),
            (200, json!({"service": "authz"}))
        );
        let r = gw
            .send(
                gw.client
                    .get(gw.url("/authz/whoami"))
                    .header("host", "Shop.Test:8481"),
            )
            .await
            .expect("host with port");
        assert_eq!(r.status, 200);

        // No route: problems that say what exists.
        let r = gw.get("/nowhere/x").await;
        assert_eq!(r.status, 404);
        assert_eq!(r.headers["content-type"], "application/problem+json");
        assert_eq!(r.body["federations"], json!(["shop"]));
        assert_eq!(r.source(), "gateway");
        let r = gw.get("/shop/authx/whoami").await;
        assert_eq!(r.status, 404);
        insta::assert_json_snapshot!("gateway_no_route", r.body);

        // real: the upstream's prefix kept, query as sent, forwarding headers set, hop-by-hop
        // and the gateway's own headers not forwarded, the daemon's token never forwarded,
        // the upstream credential resolved from its reference.
        let r = gw
            .send(
                gw.client
                    .get(gw.url("/shop/auth/echo/a%20b?x=1&y=%2F"))
                    .header("connection", "keep-alive, x-hop")
                    .header("x-hop", "1")
                    .header("x-mockops-persona", "gold")
                    .header("x-api-token", format!("Bearer {token}"))
                    .header("x-kept", "yes"),
            )
            .await
            .expect("real request");
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.source(), "upstream");
        assert_eq!(r.body["path"], "/v1/echo/a%20b");
        assert_eq!(r.body["query"], "x=1&y=%2F");
        let h = &r.body["headers"];
        assert_eq!(h["x-kept"], "yes");
        assert_eq!(h["authorization"], "Bearer s3cret-upstream-token");
        assert_eq!(h["x-client"], "mockops-gateway");
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(
            h["forwarded"]
                .as_str()
                .is_some_and(|f| f.starts_with("for=127.0.0.1"))
        );
        for gone in ["x-hop", "x-mockops-persona", "x-api-token"] {
            assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
        }
        // Bodies stream through both ways.
        let chunks =
            futures_util::stream::iter((0..6).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 10_000])));
        let r = gw
            .send(
                gw.client
                    .post(gw.url("/shop/auth/upload"))
                    .body(reqwest::Body::wrap_stream(chunks)),
            )
            .await
            .expect("upload");
        assert_eq!((r.status, r.body["body_len"].clone()), (200, json!(60_000)));
        let r = gw.get("/shop/auth/stream").await;
        assert_eq!(
            r.text,
            (0..10).map(|i| format!("chunk{i};")).collect::<String>()
        );

        // blended: the upstream when it answers (a required property it left out, `service`,
        // filled from the mock), the mock when it fails or is down.
        let r = gw.get("/shop/blend/whoami").await;
        assert_eq!((r.status, r.source()), (200, "blended"), "{}", r.text);
        assert_eq!(r.body["path"], "/v1/whoami");
        assert!(r.body["service"].is_string(), "{}", r.text);
        let r = gw.get("/shop/blend/fail").await;
        assert_eq!(r.source(), "mock", "{}", r.text);
        assert_ne!(r.status, 500);
        let r = gw.get("/shop/blend-down/whoami").await;
        assert_eq!((r.status, r.source()), (200, "mock"));
        assert_eq!(r.body, json!({"service": "blend-down"}));

        // Unreachable upstream: 502; slow upstream: 504; both problems.
        let r = gw.get("/shop/down/whoami").await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert_eq!(
            r.body["type"],
            "https://mockops.dev/problems/upstream-unreachable"
        );
        let started = Instant::now();
        let r = gw.get("/shop/auth/slow?ms=3000").await;
        assert_eq!(r.status, 504, "{}", r.text);
        assert!(started.elapsed() < Duration::from_millis(2500));
        assert_eq!(r.headers["content-type"], "application/problem+json");

        // A member without a spec answers 503 naming the cause; the others are unaffected.
        let r = gw.get("/shop/nospec/whoami").await;
        assert_eq!(r.status, 503);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("no `spec`")),
            "{}",
            r.text
        );

        // Personas: known ones pass, unknown ones are refused with the known ids.
        let r = gw
            .send(
                gw.client
                    .get(gw.url("/shop/authz/whoami"))
                    .header("x-mockops-persona", "nobody"),
            )
            .await
            .expect("persona");
        assert_eq!(r.status, 400);
        assert_eq!(r.body["known_personas"], json!(["gold"]));
        let r = gw
            .send(
                gw.client
                    .get(gw.url("/shop/authz/whoami"))
                    .header("x-mockops-persona", "gold")
                    .header("x-mockops-scenario", "checkout")
                    .header("x-mockops-ci", "true"),
            )
            .await
            .expect("tagged");
        assert_eq!(r.status, 200);
    });

    // The traffic record has the exchanges with their tags.
    let deadline = Instant::now() + Duration::from_secs(10);
    let tagged = loop {
        let t = d.get("/api/v1/traffic?federation=shop&service=authz&limit=50");
        if let Some(e) = t["exchanges"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["persona"] == "gold").cloned())
        {
            break e;
        }
        assert!(Instant::now() < deadline, "no tagged exchange: {t}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(tagged["scenario"], "checkout");
    assert_eq!(tagged["ci"], true);
    assert_eq!(tagged["status"], 200);
    assert_eq!(tagged["source"], "mock");
    assert_eq!(tagged["operation"], "whoAmI");
    assert_eq!(tagged["method"], "GET");
    assert_eq!(tagged["path"], "/whoami");
    let all = d.get("/api/v1/traffic?federation=shop&limit=1000");
    let services: std::collections::BTreeSet<&str> = all["exchanges"]
        .as_array()
        .expect("exchanges")
        .iter()
        .filter_map(|e| e["service"].as_str())
        .collect();
    for s in [
        "auth",
        "authz",
        "api",
        "api-v2",
        "blend",
        "blend-down",
        "down",
    ] {
        assert!(services.contains(s), "{s} missing from {services:?}");
    }
    let (status, _) = http("GET", &d.url("/api/v1/traffic"), None, None).expect("request");
    assert_eq!(status, 401, "the record needs a token");
    let (status, _) =
        http("GET", &d.url("/api/v1/federations/shop/health"), None, None).expect("request");
    assert_eq!(status, 401, "federation health needs a token");
    let (status, _) = http(
        "GET",
        &d.url("/api/v1/traffic?limit=lots"),
        None,
        Some(&d.auth()),
    )
    .expect("request");
    assert_eq!(status, 400, "a limit that is not a number is refused");

    // Health: the real upstream is reachable, the closed port is not, a spec-less mock is
    // not ready; `down` waits on `auth`, which is ready.
    let (status, h) = http(
        "GET",
        &d.url("/api/v1/federations/shop/health"),
        None,
        Some(&d.auth()),
    )
    .expect("health");
    assert_eq!(status, 503, "{h}");
    assert_eq!(h["ready"], false);
    let svc = |n: &str| {
        h["services"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["name"] == n).cloned())
            .unwrap_or_else(|| panic!("{n} missing: {h}"))
    };
    assert_eq!(svc("auth")["ready"], true, "{h}");
    assert_eq!(svc("authz")["ready"], true);
    assert_eq!(svc("down")["ready"], false);
    assert_eq!(svc("down")["state"], "down");
    assert_eq!(
        svc("down")["dependencies"],
        json!([{"name": "auth", "ready": true}])
    );
    assert_eq!(svc("nospec")["ready"], false);
    // Readiness follows dependencies: `api` waits on `down`, `api-v2` on `api`, though both
    // mocks compiled; the start order puts every service after what it depends on.
    assert_eq!(
        (
            svc("api")["state"].clone(),
            svc("api")["waiting_for"].clone()
        ),
        (json!("waiting"), json!(["down"])),
        "{h}"
    );
    assert_eq!(svc("api")["ready"], false);
    assert_eq!(svc("api-v2")["waiting_for"], json!(["api"]));
    assert_eq!(svc("authz")["state"], "ready");
    let order: Vec<&str> = h["start_order"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    let at = |n: &str| {
        order
            .iter()
            .position(|o| *o == n)
            .unwrap_or_else(|| panic!("{n} not in {order:?}"))
    };
    assert_eq!(order.len(), 8, "{order:?}");
    assert!(at("auth") < at("down") && at("down") < at("api") && at("api") < at("api-v2"));
    let (status, _) = http(
        "GET",
        &d.url("/api/v1/federations/nope/health"),
        None,
        Some(&d.auth()),
    )
    .expect("health");
    assert_eq!(status, 404);
    let metrics = http("GET", &d.url("/metrics"), None, None)
        .expect("metrics")
        .1;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("mockops_gateway_requests_total{federation=\"shop\",service=\"authz\",source=\"mock\",status_class=\"2xx\"}"),
        "{metrics}"
    );
}

/// Sends raw bytes and returns the status line's code (0 when the connection closed first).
fn raw_status(port: u16, request: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_requests_get_a_clean_4xx() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let repo = repo(&shop(&up, closed_port()));
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let mut d = start(
        repo.path(),
        state.path(),
        gw_port,
        &["--gateway-max-body", "64KiB"],
    );
    let gw = Gw::new(gw_port);
    rt.block_on(until_status(&gw, "/shop/authz/whoami", 200));
    // A body announced above the limit is refused from its head, before it is read (the
    // client sends only the head, so the refusal is not lost to a reset).
    for path in [
        "/shop/authz/whoami",
        "/shop/auth/upload",
        "/shop/blend/whoami",
    ] {
        let head = format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n");
        assert_eq!(raw_status(gw_port, head.as_bytes()), 413, "{path}");
    }
    // Sent in chunks without a length, the mock stops reading at the limit.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 10_000])));
    match rt.block_on(
        gw.send(
            gw.client
                .post(gw.url("/shop/authz/whoami"))
                .body(reqwest::Body::wrap_stream(chunks)),
        ),
    ) {
        Ok(r) => {
            assert_eq!(r.status, 413, "{}", r.text);
            assert_eq!(
                r.body["type"],
                "https://mockops.dev/problems/body-too-large"
            );
        }
        // The refusal may reach the client after it saw its upload cut off.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    for (what, request) in [
        (
            "bad percent-encoding",
            b"GET /shop/authz/%zz HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "a `..` segment",
            b"GET /shop/authz/../auth/x HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "an encoded `..`",
            b"GET /shop/authz/%2e%2E/x HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        (
            "an absurd header",
            [
                b"GET /shop/authz/whoami HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec(),
                vec![b'a'; 200_000],
                b"\r\n\r\n".to_vec(),
            ]
            .concat(),
        ),
        (
            "ten thousand headers",
            [
                b"GET /shop/authz/whoami HTTP/1.1\r\nHost: a\r\n".to_vec(),
                (0..10_000)
                    .flat_map(|i| format!("X-H{i}: v\r\n").into_bytes())
                    .collect(),
                b"\r\n".to_vec(),
            ]
            .concat(),
        ),
        (
            "a request line of garbage",
            b"\x01\x02 / HTTP/1.1\r\n\r\n".to_vec(),
        ),
    ] {
        let status = raw_status(gw_port, &request);
        assert!((400..500).contains(&status), "{what}: {status}");
    }
    // Still serving, and never panicked.
    let r = rt.block_on(gw.get("/shop/authz/whoami"));
    assert_eq!(r.status, 200);
    assert!(!d.log_text().contains("panicked"), "{}", d.log_text());
    assert!(d.terminate(), "the daemon stops cleanly");
}

#[test]
fn an_upstream_the_outbound_policy_refuses_is_not_reached() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let repo = repo(&shop(&up, closed_port()));
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let d = start(
        repo.path(),
        state.path(),
        gw_port,
        &["--strict", "--traffic-sample", "0"],
    );
    let gw = Gw::new(gw_port);
    rt.block_on(async {
        until_status(&gw, "/shop/authz/whoami", 200).await;
        let r = gw.get("/shop/auth/echo").await;
        assert_eq!(r.status, 502, "{}", r.text);
        assert_eq!(
            r.body["type"],
            "https://mockops.dev/problems/upstream-refused"
        );
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|t| t.contains("loopback")),
            "{}",
            r.text
        );
        assert_eq!(r.body["allow_with"], "--allow-outbound 127.0.0.1");
        // blended falls back to its mock rather than reaching the refused address.
        let r = gw.get("/shop/blend/whoami").await;
        assert_eq!((r.status, r.source()), (200, "mock"));
    });
    // The upstream saw nothing: health says why, too.
    let (_, h) = http(
        "GET",
        &d.url("/api/v1/federations/shop/health"),
        None,
        Some(&d.auth()),
    )
    .expect("health");
    let auth = h["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == "auth").cloned())
        .expect("auth");
    assert_eq!(auth["ready"], false);
    assert!(
        auth["detail"]
            .as_str()
            .is_some_and(|t| t.contains("--allow-outbound")),
        "{auth}"
    );
    // `--traffic-sample 0` keeps nothing.
    std::thread::sleep(Duration::from_millis(500));
    let t = d.get("/api/v1/traffic?federation=shop");
    assert_eq!(t["exchanges"], json!([]), "{t}");
}

#[test]
fn routes_follow_applied_commits_without_dropping_requests() {
    let rt = runtime();
    let up = rt.block_on(Upstream::start());
    let mut files = shop(&up, closed_port());
    // A slow-answering real service with a generous timeout.
    files.push((
        "services/slowpoke.yaml",
        service(
            "slowpoke",
            "/slowpoke",
            "real",
            &format!("upstream: {}\n", up.url("/v1")),
        ),
    ));
    files.push(("specs/slowpoke.yaml", spec("slowpoke")));
    let fed = files
        .iter_mut()
        .find(|(p, _)| *p == "federations/shop.yaml")
        .expect("federation");
    fed.1.push_str("  - name: slowpoke\n");
    let repo = repo(&files);
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let d = start(repo.path(), state.path(), gw_port, &[]);
    let gw = std::sync::Arc::new(Gw::new(gw_port));
    rt.block_on(until_status(&gw, "/shop/authz/whoami", 200));

    // A slow request in flight while a commit moves `authz` to /iam and drops `slowpoke`.
    let in_flight = {
        let gw = gw.clone();
        rt.spawn(async move { gw.get("/shop/slowpoke/slow?ms=2500").await })
    };
    std::thread::sleep(Duration::from_millis(300));
    repo.write(
        "services/authz.yaml",
        &service("authz", "/iam", "mock_v3", ""),
    );
    let fed = repo
        .read("federations/shop.yaml")
        .replace("  - name: slowpoke\n", "");
    repo.write("federations/shop.yaml", &fed);
    std::fs::remove_file(repo.path().join("services/slowpoke.yaml")).expect("rm");
    let sha = repo.commit("authz moves to /iam; slowpoke leaves");
    d.wait_attempted(&sha);
    rt.block_on(async {
        let r = until_status(&gw, "/shop/iam/whoami", 200).await;
        assert_eq!(r.body, json!({"service": "authz"}));
        assert_eq!(gw.get("/shop/authz/whoami").await.status, 404);
        assert_eq!(gw.get("/shop/slowpoke/whoami").await.status, 404);
    });
    let slow = rt.block_on(in_flight).expect("in-flight request");
    assert_eq!(
        slow.status, 200,
        "the in-flight request finished: {}",
        slow.text
    );
    assert_eq!(slow.body["slow"], true);

    // An invalid commit is never applied: the last good routes keep serving.
    repo.write("services/authz.yaml", "name: authz\noops: [\n");
    let bad = repo.commit("break authz");
    let status = d.wait_attempted(&bad);
    assert_eq!(status["last_applied"]["sha"], sha.as_str(), "{status}");
    rt.block_on(async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(gw.get("/shop/iam/whoami").await.status, 200);
    });

    // Shutdown lets a request in flight finish, then the daemon exits cleanly.
    let in_flight = {
        let gw = gw.clone();
        rt.spawn(async move { gw.get("/shop/auth/slow?ms=400").await })
    };
    std::thread::sleep(Duration::from_millis(150));
    let mut d = d;
    assert!(d.terminate(), "the daemon stops cleanly: {}", d.log_text());
    let slow = rt.block_on(in_flight).expect("in-flight request");
    assert_eq!(slow.status, 200, "{}", slow.text);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_err(),
        "the gateway no longer listens"
    );
}

/// The flaky federation: seeded chaos over the mock, and a member whose `failure_rate` is 1.
fn flaky() -> Vec<(&'static str, String)> {
    vec![
        (
            "services/flaky.yaml",
            service(
                "flaky",
                "/flaky",
                "chaos_driven",
                "chaos:\n  seed: 7\n  error_rate: 0.3\n  error_statuses: [503, 429]\n  drop_rate: 0.1\n  latency_ms: {min: 0, max: 5}\n",
            ),
        ),
        ("specs/flaky.yaml", spec("flaky")),
        ("services/legacy.yaml", service("legacy", "/legacy", "mock_v3", "")),
        ("specs/legacy.yaml", spec("legacy")),
        (
            "federations/lab.yaml",
            "name: lab\nservices:\n  - name: flaky\n  - name: legacy\n    reality_level: chaos_driven\n    config: {failure_rate: 1.0}\n  - name: slow-body\n    service: flaky\n    base_path: /slow-body\n    chaos: {error_rate: 0, drop_rate: 0, latency_ms: 0, slow_body_bytes_per_sec: 100}\n".to_string(),
        ),
    ]
}

async fn chaos_sequence(gw: &Gw, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        // A fresh connection per request: a dropped one must not poison the next.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        match gw.send(client.get(gw.url("/lab/flaky/whoami"))).await {
            Err(_) => out.push("dropped".to_string()),
            Ok(r) => out.push(format!(
                "{} {} {}",
                r.status,
                r.source(),
                r.headers
                    .get("x-mockops-chaos")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            )),
        }
    }
    out
}

#[test]
fn seeded_chaos_replays_identically() {
    let rt = runtime();
    let repo = repo(&flaky());
    let mut runs = Vec::new();
    for _ in 0..2 {
        let state = tempfile::tempdir().expect("state");
        let gw_port = free_port();
        let d = start(repo.path(), state.path(), gw_port, &[]);
        let gw = Gw::new(gw_port);
        // Ready: a member without faults answers (its own counter; `flaky`'s is untouched).
        rt.block_on(until_status(&gw, "/lab/slow-body/whoami", 200));
        runs.push(rt.block_on(chaos_sequence(&gw, 40)));
        if runs.len() == 1 {
            // `failure_rate: 1.0` is an error rate: every request fails.
            for _ in 0..5 {
                let r = rt.block_on(gw.get("/lab/legacy/whoami"));
                assert!([500, 502, 503].contains(&r.status), "{}", r.status);
                assert_eq!(
                    r.body["type"],
                    "https://mockops.dev/problems/chaos-injected"
                );
            }
            // A slow body arrives at about the configured rate (the example is ~16 bytes).
            let started = Instant::now();
            let r = rt.block_on(gw.get("/lab/slow-body/whoami"));
            assert_eq!(r.body, json!({"service": "flaky"}));
            assert!(
                started.elapsed() >= Duration::from_millis(100),
                "{:?}",
                started.elapsed()
            );
            // Dropped connections are in the traffic record too, with status 0.
            let dropped = runs[0].iter().filter(|r| *r == "dropped").count();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let t = d.get("/api/v1/traffic?federation=lab&service=flaky&limit=100");
                let rows = t["exchanges"].as_array().cloned().unwrap_or_default();
                if rows.len() == 40 {
                    assert_eq!(rows.iter().filter(|e| e["status"] == 0).count(), dropped);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of 40 exchanges recorded",
                    rows.len()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        drop(d);
    }
    assert_eq!(runs[0], runs[1], "the same seed gives the same faults");
    let faults = |kind: &str| runs[0].iter().filter(|r| r.contains(kind)).count();
    assert!(faults("dropped") > 0, "{:?}", runs[0]);
    assert!(faults("error=") > 0, "{:?}", runs[0]);
    assert!(
        runs[0].iter().any(|r| r.starts_with("200 mock")),
        "{:?}",
        runs[0]
    );
}

#[test]
fn hosts_and_chaos_settings_are_validated() {
    use mockops::config::load::Loader;
    use mockops::git::revision::DirFiles;
    let dir = tempfile::tempdir().expect("dir");
    let write = |p: &str, c: &str| {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    };
    write("specs/a.yaml", &spec("a"));
    write(
        "services/a.yaml",
        &service(
            "a",
            "/a",
            "chaos_driven",
            "chaos: {error_rate: 1.5, drop_rate: -0.1, error_statuses: [200, 503], latency_ms: {min: 10, max: 5}}\nupstream_headers:\n  Authorization: Bearer abc123\n  X-Token: \"${env:A_TOKEN}\"\n",
        ),
    );
    write(
        "federations/one.yaml",
        "name: one\nhosts: [shop.test, \"http://bad\", shop.test:99999]\nservices:\n  - name: a\n    config: {failure_rate: 2}\n",
    );
    write(
        "federations/two.yaml",
        "name: two\nhosts: [SHOP.test]\nservices:\n  - name: a\n",
    );
    let files = DirFiles::new(dir.path()).expect("dir");
    let loaded = Loader::new().load(&files).expect("load");
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == mockops::config::diag::Severity::Error)
        .map(|d| {
            format!(
                "{}:{}:{} {} {}",
                d.file, d.line, d.column, d.code, d.message
            )
        })
        .collect();
    insta::assert_debug_snapshot!("gateway_config_errors", errors);
}
