//! Drift observations from the gateway and the API: `POST /api/v1/drift/observations` refuses
//! what it must (no token, malformed entries, unknown services, too much) and takes a HAR log;
//! the gateway's tee leaves a `real` service's responses byte-identical and as fast as the
//! upstream's own, and hands one observation per exchange to the drift queue (counted by
//! `mockops_drift_observations_total{source}`).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use futures_util::StreamExt as _;
use serde_json::{Value as Json, json};
use sha2::Digest as _;

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};

/// Bytes of the `/big` body: over the default `--drift-max-body` of 8 MiB.
const BIG: usize = 12 * 1024 * 1024;
const SLOW_CHUNKS: u64 = 8;
const SLOW_CHUNK_MS: u64 = 150;

/// Deterministic, incompressible-looking bytes.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x & 0xff) as u8
        })
        .collect()
}

/// The upstream: `/v1/big` streams [`BIG`] bytes in 64 KiB chunks, `/v1/slow` sends
/// [`SLOW_CHUNKS`] chunks [`SLOW_CHUNK_MS`] apart, `/v1/pets/1` a small JSON body, and a
/// `POST` echoes how many bytes it received.
async fn upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let path = req.uri().path().to_string();
        if req.method() == http::Method::POST {
            let mut n = 0usize;
            let mut s = req.into_body().into_data_stream();
            while let Some(Ok(c)) = s.next().await {
                n += c.len();
            }
            return Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(json!({"received": n}).to_string()))
                .expect("response");
        }
        match path.as_str() {
            "/v1/big" => {
                let data = bytes::Bytes::from(pattern(BIG));
                let chunks = (0..BIG)
                    .step_by(64 * 1024)
                    .map(move |i| Ok::<_, std::io::Error>(data.slice(i..(i + 64 * 1024).min(BIG))));
                Response::builder()
                    .header("content-type", "application/octet-stream")
                    .body(Body::from_stream(futures_util::stream::iter(chunks)))
                    .expect("response")
            }
            "/v1/slow" => {
                let chunks = futures_util::stream::iter(0..SLOW_CHUNKS).then(|i| async move {
                    tokio::time::sleep(Duration::from_millis(SLOW_CHUNK_MS)).await;
                    Ok::<_, std::io::Error>(bytes::Bytes::from(format!("chunk {i};")))
                });
                Response::builder()
                    .header("content-type", "text/plain")
                    .body(Body::from_stream(chunks))
                    .expect("response")
            }
            _ => Response::builder()
                .header("content-type", "application/json")
                .body(Body::from(r#"{"id":"1","name":"Rex"}"#))
                .expect("response"),
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

const SPEC: &str = r#"openapi: 3.0.3
info: {title: pets, version: "1"}
paths:
  /pets/{id}:
    get:
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: {type: object}
              example: {id: "1", name: Rex}
"#;

/// Federation `shop`: `pets` real over `up` (with a secret upstream header), `down` real over
/// a closed port, `mocked` served by the mock engine.
fn repo(up: std::net::SocketAddr) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(
        git2::Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init"),
    );
    let r = Repo { dir };
    let closed = free_port();
    r.write("specs/pets.yaml", SPEC);
    r.write(
        "services/pets.yaml",
        &format!(
            "name: pets\nworkspace_id: ws-pets\nspec: specs/pets.yaml\nbase_path: /pets-api\nreality_level: real\nupstream: http://{up}/v1\nupstream_headers:\n  Authorization: \"Bearer ${{env:DRIFT_TEST_TOKEN}}\"\n"
        ),
    );
    r.write(
        "services/down.yaml",
        &format!(
            "name: down\nworkspace_id: ws-down\nspec: specs/pets.yaml\nbase_path: /down\nreality_level: real\nupstream: http://127.0.0.1:{closed}\n"
        ),
    );
    r.write(
        "services/mocked.yaml",
        "name: mocked\nworkspace_id: ws-mocked\nspec: specs/pets.yaml\nbase_path: /mocked\nreality_level: mock_v3\n",
    );
    r.write(
        "federations/shop.yaml",
        "name: shop\nservices:\n  - name: pets\n  - name: down\n  - name: mocked\n",
    );
    commit_all(r.path(), "drift fixture");
    r
}

fn start(repo: &Repo, state: &std::path::Path, gw: u16, extra: &[&str]) -> Daemon {
    let addr = format!("127.0.0.1:{gw}");
    let mut args = vec!["--gateway", addr.as_str()];
    args.extend(extra);
    let mut d = Daemon::start_env(
        repo.path(),
        state,
        &args,
        &[("DRIFT_TEST_TOKEN", "upstream-secret-value")],
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

/// `mockops_drift_observations_total{source=…}` (0 before the first).
fn observed(d: &Daemon, source: &str) -> u64 {
    let (_, text) = http("GET", &d.url("/metrics"), None, None).expect("metrics");
    let text = text.as_str().unwrap_or_default().to_string();
    let prefix = format!("mockops_drift_observations_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().expect("a count"))
        .unwrap_or(0)
}

/// Waits until the count of `source` observations reaches `n`.
fn until_observed(d: &Daemon, source: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = observed(d, source);
        if got >= n {
            assert_eq!(got, n, "more {source} observations than exchanges");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} {source} observations: {}",
            http("GET", &d.url("/metrics"), None, None)
                .map(|m| m.1.to_string())
                .unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn post(d: &Daemon, query: &str, body: Vec<u8>, auth: bool) -> (u16, Json) {
    let headers = if auth { d.auth() } else { Vec::new() };
    http(
        "POST",
        &d.url(&format!("/api/v1/drift/observations{query}")),
        Some(body),
        Some(&headers),
    )
    .expect("request")
}

fn entry(method: &str, url: &str) -> Json {
    json!({
        "startedDateTime": "2026-12-01T10:00:00Z",
        "request": {"method": method, "url": url,
                    "headers": [{"name": "Accept", "value": "application/json"}]},
        "response": {"status": 200,
                     "headers": [{"name": "Content-Type", "value": "application/json"}],
                     "content": {"mimeType": "application/json", "text": "{\"id\":\"1\"}"}}
    })
}

#[test]
fn the_observation_api_refuses_what_it_must_and_takes_a_har_log() {
    let rt = runtime();
    let up = rt.block_on(upstream());
    let repo = repo(up);
    let state = tempfile::tempdir().expect("state");
    let d = start(&repo, state.path(), free_port(), &[]);
    let good = json!({"service": "pets", "entries": [entry("GET", "/pets/1")]});

    // No token, a wrong token.
    let (status, _) = post(&d, "", good.to_string().into_bytes(), false);
    assert_eq!(status, 401);
    let (status, _) = http(
        "POST",
        &d.url("/api/v1/drift/observations"),
        Some(good.to_string().into_bytes()),
        Some(&[("authorization", "Bearer not-the-token".to_string())]),
    )
    .expect("request");
    assert_eq!(status, 401);
    assert_eq!(observed(&d, "api"), 0);

    // A malformed entry: the problem names it and its field; nothing of the batch is taken.
    let bad = json!({"service": "pets", "entries": [
        entry("GET", "/pets/1"),
        {"request": {"url": "/pets/2"}, "response": {"status": 200}},
    ]});
    let (status, body) = post(&d, "", bad.to_string().into_bytes(), true);
    assert_eq!(status, 422, "{body}");
    insta::assert_json_snapshot!("drift_observation_bad_entry", body);
    let (status, body) = post(
        &d,
        "",
        b"{\"service\": \"pets\", \"entries\": [".to_vec(),
        true,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["type"],
        "https://mockops.dev/problems/bad-observations"
    );
    let (status, body) = post(&d, "", br#"{"entries": []}"#.to_vec(), true);
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("service")),
        "{body}"
    );
    let mut invalid_utf8 = br#"{"service":"pets","entries":[{"request":{"method":"GET","url":"/"},"response":{"status":200,"content":{"text":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}}]}"#);
    let (status, _) = post(&d, "", invalid_utf8, true);
    assert_eq!(status, 400);
    let (status, body) = post(
        &d,
        "",
        json!({"service": "pets", "entries": [{"request": {"method": "GET", "url": "/"},
               "response": {"status": 200, "content": {"text": "%%%", "encoding": "base64"}}}]})
        .to_string()
        .into_bytes(),
        true,
    );
    assert_eq!((status, body["entry"].as_u64()), (422, Some(0)), "{body}");
    assert_eq!(body["field"], "response.content.text");

    // Unknown service and federation: the problem names what exists.
    let (status, body) = post(
        &d,
        "",
        json!({"service": "petz", "entries": [entry("GET", "/")]})
            .to_string()
            .into_bytes(),
        true,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["known_services"], json!(["down", "mocked", "pets"]));
    assert!(body["detail"].as_str().unwrap_or("").contains("petz"));
    let (status, body) = post(
        &d,
        "",
        json!({"service": "pets", "federation": "nope", "entries": []})
            .to_string()
            .into_bytes(),
        true,
    );
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["known_federations"], json!(["shop"]));

    // Too many entries, too large a body.
    let many: Vec<Json> = (0..1001).map(|_| entry("GET", "/")).collect();
    let (status, body) = post(
        &d,
        "",
        json!({"service": "pets", "entries": many})
            .to_string()
            .into_bytes(),
        true,
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["limit"], 1000);
    // Too large a body is answered from its declared length, before any of it is read (a
    // client streaming it would race the daemon's early answer, so none is sent here).
    let token = &d.auth()[0].1;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::io::Write::write_all(
        &mut s,
        format!(
            "POST /api/v1/drift/observations HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            17 * 1024 * 1024
        )
        .as_bytes(),
    )
    .expect("write");
    let mut answer = [0u8; 512];
    let n = std::io::Read::read(&mut s, &mut answer).expect("an answer before any body byte");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(observed(&d, "api"), 0);

    // A whole HAR log, its service in the query; a traversal-looking path is only a path.
    let har = json!({"log": {"version": "1.2", "creator": {"name": "a browser"}, "entries": [
        entry("GET", "https://pets.example/pets/1?verbose=1"),
        entry("GET", "/../../etc/passwd"),
    ]}});
    let (status, body) = post(
        &d,
        "?service=pets&federation=shop",
        har.to_string().into_bytes(),
        true,
    );
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 2, "dropped": 0}));
    let (status, body) = post(&d, "", good.to_string().into_bytes(), true);
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    assert_eq!(observed(&d, "api"), 3);
    assert_eq!(observed(&d, "gateway"), 0);
}

async fn timed_get(client: &reqwest::Client, url: &str) -> (Duration, Duration, Vec<u8>) {
    let started = Instant::now();
    let r = client.get(url).send().await.expect("response");
    assert_eq!(r.status(), 200, "{url}");
    let mut s = r.bytes_stream();
    let mut first = None;
    let mut out = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.expect("chunk");
        if first.is_none() && !c.is_empty() {
            first = Some(started.elapsed());
        }
        out.extend_from_slice(&c);
    }
    (first.unwrap_or_default(), started.elapsed(), out)
}

#[test]
fn the_gateway_tee_keeps_responses_identical_and_on_time_and_observes_each_exchange() {
    let rt = runtime();
    let up = rt.block_on(upstream());
    let repo = repo(up);
    let state = tempfile::tempdir().expect("state");
    let gw = free_port();
    let d = start(&repo, state.path(), gw, &[]);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("client");
    let through = |p: &str| format!("http://127.0.0.1:{gw}/shop/pets-api{p}");
    let direct = |p: &str| format!("http://{up}/v1{p}");
    rt.block_on(async {
        // The routes of the applied commit serve.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(through("/pets/1")).send().await
                && r.status() == 200
            {
                // Read to the end: an exchange the client leaves mid-body is not observed.
                r.bytes().await.expect("body");
                break;
            }
            assert!(Instant::now() < deadline, "the gateway never served pets");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    until_observed(&d, "gateway", 1);

    rt.block_on(async {
        // A large streamed body (over the capture cap) arrives byte-identical.
        let (_, _, via) = timed_get(&client, &through("/big")).await;
        let (_, _, straight) = timed_get(&client, &direct("/big")).await;
        assert_eq!(via.len(), BIG);
        assert_eq!(
            sha2::Sha256::digest(&via),
            sha2::Sha256::digest(&straight),
            "the body through the gateway differs"
        );

        // A slow body streams through as it comes: the first chunk long before the last, and
        // the whole no slower than straight from the upstream (give or take scheduling).
        let (first, total, via) = timed_get(&client, &through("/slow")).await;
        let (_, direct_total, straight) = timed_get(&client, &direct("/slow")).await;
        assert_eq!(via, straight);
        let body_time = Duration::from_millis(SLOW_CHUNKS * SLOW_CHUNK_MS);
        assert!(
            first < body_time / 2,
            "the first chunk took {first:?}: the response was held back"
        );
        assert!(
            total < direct_total + Duration::from_millis(600),
            "through the gateway {total:?}, straight {direct_total:?}"
        );

        // An upload streams upstream and is teed.
        let upload = pattern(3 * 1024 * 1024);
        let r = client
            .post(through("/pets"))
            .body(upload.clone())
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 200);
        let echoed: Json = r.json().await.expect("json");
        assert_eq!(echoed["received"], upload.len());

        // An unreachable upstream is observed too (as a failed exchange); a mocked service
        // is not.
        let r = client
            .get(format!("http://127.0.0.1:{gw}/shop/down/pets/1"))
            .send()
            .await
            .expect("down");
        assert_eq!(r.status(), 502);
        let r = client
            .get(format!("http://127.0.0.1:{gw}/shop/mocked/pets/1"))
            .send()
            .await
            .expect("mocked");
        assert_eq!(r.status(), 200);
    });
    // pets/1 (at least once while waiting for the routes, counted above), big, slow, the
    // upload, down.
    let before = 1;
    until_observed(&d, "gateway", before + 4);
    assert_eq!(observed(&d, "api"), 0);
}

#[test]
fn drift_sample_zero_observes_nothing() {
    let rt = runtime();
    let up = rt.block_on(upstream());
    let repo = repo(up);
    let state = tempfile::tempdir().expect("state");
    let gw = free_port();
    let d = start(&repo, state.path(), gw, &["--drift-sample", "0"]);
    let mut served = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while served < 5 {
        if let Ok((200, _)) = http(
            "GET",
            &format!("http://127.0.0.1:{gw}/shop/pets-api/pets/1"),
            None,
            None,
        ) {
            served += 1;
        }
        assert!(Instant::now() < deadline, "the gateway never served pets");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(observed(&d, "gateway"), 0);
}

#[test]
fn bad_drift_flags_are_refused() {
    for (flag, value) in [
        ("--drift-sample", "1.5"),
        ("--drift-sample", "often"),
        ("--drift-max-body", "lots"),
    ] {
        let out = std::process::Command::new(crate::support::bin())
            .args(["daemon", flag, value])
            .output()
            .expect("run");
        assert!(!out.status.success(), "{flag} {value} was taken");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(flag), "{flag} {value}: {err}");
    }
}
