//! gRPC on the gateway, called by a standard client: grpcio with its reflection client
//! (`support/grpc_client.py`, no generated stubs) lists the services of a federation and calls
//! them; `mock_v3` answers deterministically with persona traits, `real` proxies to a real gRPC
//! upstream on loopback (the gateway's own mock, reached under another host, and a grpcio
//! server over TLS with a test CA), `blended` falls
//! back to the mock, an unreachable or refused upstream is `UNAVAILABLE`, streaming methods
//! are `UNIMPLEMENTED`, and hostile frames get clean gRPC errors. Needs python3 with grpcio,
//! grpcio-reflection and protobuf (`scripts/test` installs them).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};

const PROTO: &str = r#"syntax = "proto3";

package shop.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

enum Tier {
  TIER_UNSPECIFIED = 0;
  TIER_GOLD = 1;
}

message GetItemRequest {
  string item_id = 1;
}

message Item {
  string item_id = 1;
  string name = 2;
  int32 in_stock = 3;
  Tier tier = 4;
  repeated string tags = 5;
  map<string, int32> counts = 6;
  google.protobuf.Timestamp updated_at = 7;
  google.protobuf.StringValue note = 8;
  oneof price {
    int64 cents = 9;
    string free_text = 10;
  }
  Item parent = 11;
}

service Catalog {
  rpc GetItem(GetItemRequest) returns (Item);
  rpc WatchItems(GetItemRequest) returns (stream Item);
}
"#;

fn service(name: &str, level: &str, extra: &str) -> String {
    format!(
        "name: {name}\nworkspace_id: ws-{name}\nspec: specs/shop/v1/shop.proto\nbase_path: /{name}\nreality_level: {level}\n{extra}"
    )
}

fn federation(name: &str, host: &str, member: &str) -> String {
    format!("name: {name}\nhosts: [{host}]\nservices:\n  - name: {member}\n")
}

/// Six federations, each serving `shop.v1.Catalog` once, told apart by host: `back`
/// (`localhost`, the mock), `front` (real, proxying to `back` through the gateway itself),
/// `dead` (real, a closed port), `mixed` (blended over the closed port), `slow` (chaos with
/// 3 s of latency) and `flaky` (chaos answering every call with an error).
fn files(gw_port: u16, closed: u16) -> Vec<(String, String)> {
    let dead = format!("upstream: http://127.0.0.1:{closed}\n");
    vec![
        ("specs/shop/v1/shop.proto".into(), PROTO.into()),
        ("services/catalog-mock.yaml".into(), service("catalog-mock", "mock_v3", "")),
        (
            "services/catalog-real.yaml".into(),
            service(
                "catalog-real",
                "real",
                &format!("upstream: http://localhost:{gw_port}\nupstream_headers:\n  X-Client: mockops-gateway\n"),
            ),
        ),
        ("services/catalog-down.yaml".into(), service("catalog-down", "real", &dead)),
        ("services/catalog-blend.yaml".into(), service("catalog-blend", "blended", &dead)),
        (
            "services/catalog-slow.yaml".into(),
            service("catalog-slow", "chaos_driven", "chaos: {latency_ms: 3000}\n"),
        ),
        (
            "services/catalog-flaky.yaml".into(),
            service(
                "catalog-flaky",
                "chaos_driven",
                "chaos: {seed: 7, error_rate: 1, error_statuses: [500]}\n",
            ),
        ),
        (
            "federations/flaky.yaml".into(),
            federation("flaky", "flaky.test", "catalog-flaky"),
        ),
        ("federations/back.yaml".into(), federation("back", "localhost", "catalog-mock")),
        ("federations/front.yaml".into(), federation("front", "front.test", "catalog-real")),
        ("federations/dead.yaml".into(), federation("dead", "dead.test", "catalog-down")),
        ("federations/mixed.yaml".into(), federation("mixed", "mixed.test", "catalog-blend")),
        ("federations/slow.yaml".into(), federation("slow", "slow.test", "catalog-slow")),
        (
            "environments/dev/personas/gold.yaml".into(),
            "id: gold\nname: Gold customer\nversion: 1\ntraits: {name: Gold Item, in_stock: 42, tier: TIER_GOLD}\n".into(),
        ),
    ]
}

fn repo(files: &[(String, String)]) -> Repo {
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
    commit_all(r.path(), "gRPC fixture");
    r
}

fn start(repo: &Path, state: &Path, gw_port: u16, extra: &[&str]) -> Daemon {
    let addr = format!("127.0.0.1:{gw_port}");
    let mut args = vec!["--gateway", addr.as_str(), "--gateway-max-body", "64KiB"];
    args.extend(extra);
    let mut d = Daemon::start(repo, state, &args);
    d.wait_ready();
    d
}

/// Runs the grpcio client (`support/grpc_client.py`) and returns what it printed.
fn client(args: &[&str]) -> Json {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/grpc_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "grpc_client.py {args:?} failed (python3 needs grpcio, grpcio-reflection and protobuf: \
         scripts/test installs them): {stderr}"
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"))
}

/// Waits until reflection at `authority` lists services.
fn until_listed(addr: &str, authority: &str) -> Json {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client(&["list", addr, "--authority", authority]);
        if r["services"].is_array() {
            return r;
        }
        assert!(Instant::now() < deadline, "never listed: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn call(addr: &str, authority: &str, method: &str, request: Json, extra: &[&str]) -> Json {
    let req = request.to_string();
    let mut args = vec![
        "call",
        addr,
        "shop.v1.Catalog",
        method,
        req.as_str(),
        "--authority",
        authority,
    ];
    args.extend(extra);
    client(&args)
}

/// A hand-made HTTP/2 gRPC request (frames the client would never send), over h2c with
/// prior knowledge; the status and message of the answer, from its trailers or from the
/// headers of a Trailers-Only answer.
async fn raw(
    port: u16,
    host: &str,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{host}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("request");
    let r = tokio::time::timeout(Duration::from_secs(15), sender.send_request(req))
        .await
        .expect("an answer in time")
        .expect("an answer");
    assert_eq!(r.status(), 200, "gRPC answers are HTTP 200");
    assert_eq!(r.headers()["content-type"], "application/grpc");
    let head = r.headers().clone();
    let collected = r.into_body().collect().await.expect("the body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes().to_vec();
    let from = |name: &str| {
        trailers
            .get(name)
            .or_else(|| head.get(name))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let status = from("grpc-status")
        .and_then(|v| v.parse().ok())
        .expect("a grpc-status");
    (status, from("grpc-message").unwrap_or_default(), body)
}

fn frame(flag: u8, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![flag];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn grpc_calls_by_reflection_at_each_level() {
    let gw_port = free_port();
    let repo = repo(&files(gw_port, free_port()));
    let state = tempfile::tempdir().expect("state");
    let d = start(repo.path(), state.path(), gw_port, &[]);
    let addr = format!("127.0.0.1:{gw_port}");
    let addr = addr.as_str();

    // Reflection lists the federation's services; a standard client finds the descriptors.
    assert_eq!(
        until_listed(addr, "localhost"),
        json!({"services": ["shop.v1.Catalog"]})
    );

    // mock_v3: a valid message, the same bytes for the same request.
    let a = call(addr, "localhost", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(a["code"], "OK", "{a}");
    let item = &a["response"];
    assert_eq!(item["item_id"].as_str().map(str::len), Some(36), "{item}");
    assert_eq!(item["tier"], "TIER_GOLD");
    assert!(
        item["updated_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("202")),
        "{item}"
    );
    assert!(
        item["tags"].as_array().is_some_and(|t| !t.is_empty()),
        "{item}"
    );
    assert!(
        item["counts"].as_object().is_some_and(|c| c.len() == 1),
        "{item}"
    );
    assert!(
        item.get("cents").is_some() ^ item.get("free_text").is_some(),
        "{item}"
    );
    assert_eq!(
        call(addr, "localhost", "GetItem", json!({"item_id": "a"}), &[])["hex"],
        a["hex"]
    );
    let b = call(addr, "localhost", "GetItem", json!({"item_id": "b"}), &[]);
    assert_ne!(b["hex"], a["hex"]);

    // Persona traits fill fields of the same name; an unknown persona is refused.
    let gold = call(
        addr,
        "localhost",
        "GetItem",
        json!({"item_id": "a"}),
        &["--metadata", "x-mockops-persona=gold"],
    );
    assert_eq!(gold["response"]["name"], "Gold Item", "{gold}");
    assert_eq!(gold["response"]["in_stock"], 42);
    let nobody = call(
        addr,
        "localhost",
        "GetItem",
        json!({}),
        &["--metadata", "x-mockops-persona=nobody"],
    );
    assert_eq!(nobody["code"], "INVALID_ARGUMENT", "{nobody}");

    // Unknown service or method, streaming methods: UNIMPLEMENTED, saying why.
    let r = client(&[
        "raw",
        addr,
        "/shop.v1.Nope/GetItem",
        "",
        "--authority",
        "localhost",
    ]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert!(
        r["details"]
            .as_str()
            .is_some_and(|m| m.contains("shop.v1.Catalog")),
        "{r}"
    );
    let r = client(&[
        "raw",
        addr,
        "/shop.v1.Catalog/Nope",
        "",
        "--authority",
        "localhost",
    ]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    let r = client(&[
        "raw",
        addr,
        "/shop.v1.Catalog/WatchItems",
        "",
        "--authority",
        "localhost",
    ]);
    assert_eq!(r["code"], "UNIMPLEMENTED", "{r}");
    assert!(
        r["details"]
            .as_str()
            .is_some_and(|m| m.contains("streaming is not served")),
        "{r}"
    );

    // Without a host any federation claims, a service several serve is ambiguous.
    let r = client(&["raw", addr, "/shop.v1.Catalog/GetItem", ""]);
    assert_eq!(r["code"], "NOT_FOUND", "{r}");
    assert!(
        r["details"].as_str().is_some_and(|m| m.contains("back")),
        "{r}"
    );

    // real: proxied to a real gRPC upstream (the mock of `back`), answer and all.
    let real = call(addr, "front.test", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(real["code"], "OK", "{real}");
    assert_eq!(
        real["hex"], a["hex"],
        "the upstream's answer comes back unchanged"
    );
    // An unreachable upstream is UNAVAILABLE; blended falls back to the mock.
    let down = call(addr, "dead.test", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(down["code"], "UNAVAILABLE", "{down}");
    assert!(
        down["details"]
            .as_str()
            .is_some_and(|m| m.contains("cannot reach")),
        "{down}"
    );
    let blend = call(addr, "mixed.test", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(blend["code"], "OK", "{blend}");
    assert_eq!(blend["hex"], a["hex"]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let get = "/shop.v1.Catalog/GetItem";
        let ok = frame(0, 3, &[0x0a, 0x01, b'a']);
        assert_eq!(raw(gw_port, "localhost", get, ok.clone(), &[]).await.0, 0);
        // A length prefix larger than the body, a message over the limit (announced or
        // sent), garbage protobuf, a compressed message, two messages, a bad timeout.
        type Case = (
            Vec<u8>,
            Vec<(&'static str, &'static str)>,
            u16,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (frame(0, 100, b"abc"), vec![], 3, "announces 100 bytes"),
            (frame(0, 1 << 30, b""), vec![], 8, "65536"),
            (frame(0, 70_000, &vec![0; 70_000]), vec![], 8, "65536"),
            (frame(0, 3, &[0xff, 0xff, 0xff]), vec![], 3, "not a valid"),
            (
                frame(1, 3, b"abc"),
                vec![("grpc-encoding", "gzip")],
                12,
                "compressed",
            ),
            ([ok.clone(), ok.clone()].concat(), vec![], 3, "exactly one"),
            (vec![0, 0], vec![], 3, "prefix"),
            (
                ok.clone(),
                vec![("grpc-timeout", "soon")],
                3,
                "grpc-timeout",
            ),
        ];
        for (body, headers, want, says) in cases {
            let (status, message, _) = raw(gw_port, "localhost", get, body, &headers).await;
            assert_eq!(status, want, "{message}");
            assert!(message.contains(says), "{message}");
        }
        // grpc-timeout is honoured: the 3 s of chaos latency outlast a 300 ms deadline.
        let started = Instant::now();
        let (status, message, _) = raw(
            gw_port,
            "slow.test",
            get,
            ok.clone(),
            &[("grpc-timeout", "300m")],
        )
        .await;
        assert_eq!(status, 4, "{message}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Chaos errors are gRPC statuses; a dropped connection has no answer.
        let (status, message, _) = raw(gw_port, "flaky.test", get, ok.clone(), &[]).await;
        assert_eq!(status, 13, "{message}");
        assert!(message.contains("chaos"), "{message}");
        // Reflection v1 by hand: `list_services` (field 7, empty); a request that is not a
        // reflection request ends the stream with INVALID_ARGUMENT.
        let reflect = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        let (status, _, body) = raw(
            gw_port,
            "localhost",
            reflect,
            frame(0, 2, &[0x3a, 0x00]),
            &[],
        )
        .await;
        assert_eq!(status, 0);
        assert!(
            body.windows(15).any(|w| w == b"shop.v1.Catalog"),
            "{body:?}"
        );
        let (status, message, _) = raw(
            gw_port,
            "localhost",
            reflect,
            frame(0, 3, &[0xff, 0xff, 0xff]),
            &[],
        )
        .await;
        assert_eq!(status, 3, "{message}");
        // Still serving.
        assert_eq!(raw(gw_port, "localhost", get, ok, &[]).await.0, 0);
    });

    // The traffic record has each call, with its gRPC status.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = d.get("/api/v1/traffic?federation=front&limit=10");
        let rows = t["exchanges"].as_array().cloned().unwrap_or_default();
        if let Some(row) = rows.first() {
            assert_eq!(row["operation"], "shop.v1.Catalog/GetItem", "{row}");
            assert_eq!(row["status"], 200);
            assert_eq!(row["grpc_status"], 0);
            assert_eq!(row["source"], "upstream");
            assert_eq!(row["service"], "catalog-real");
            break;
        }
        assert!(Instant::now() < deadline, "not recorded: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = d.get("/api/v1/traffic?federation=dead&limit=10");
        if let Some(row) = t["exchanges"].as_array().and_then(|r| r.first()) {
            assert_eq!(row["grpc_status"], 14, "{row}");
            break;
        }
        assert!(Instant::now() < deadline, "not recorded: {t}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_refused_upstream_is_unavailable_naming_the_policy() {
    let gw_port = free_port();
    let repo = repo(&files(gw_port, free_port()));
    let state = tempfile::tempdir().expect("state");
    let _d = start(repo.path(), state.path(), gw_port, &["--strict"]);
    let addr = format!("127.0.0.1:{gw_port}");
    until_listed(&addr, "front.test");
    let r = call(&addr, "front.test", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    let details = r["details"].as_str().unwrap_or_default();
    assert!(details.contains("--allow-outbound"), "{details}");
    assert!(details.contains("localhost"), "{details}");
    // The mock still answers: the policy is about where the daemon connects.
    let m = call(&addr, "localhost", "GetItem", json!({"item_id": "a"}), &[]);
    assert_eq!(m["code"], "OK", "{m}");
}

#[test]
fn the_demo_inventory_answers_over_grpc() {
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let addr = format!("127.0.0.1:{gw_port}");
    let mut d = Daemon::start_demo(state.path(), &["--gateway", &addr]);
    d.wait_ready();
    assert_eq!(
        until_listed(&addr, "localhost"),
        json!({"services": ["inventory.v1.InventoryService"]})
    );
    let r = client(&[
        "call",
        &addr,
        "inventory.v1.InventoryService",
        "ReserveItem",
        r#"{"item_id": "sku-1", "quantity": 2}"#,
    ]);
    assert_eq!(r["code"], "OK", "{r}");
    assert!(r["response"]["expires_at"].is_string(), "{r}");
    // The federation is not ready (the demo's `auth` upstream does not resolve); its gRPC
    // service's own check passes, and it waits for `auth`, which it depends on.
    let (_, health) = http(
        "GET",
        &d.url("/api/v1/federations/e-commerce-platform/health"),
        None,
        Some(&d.auth()),
    )
    .expect("health");
    let inventory = health["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "inventory"))
        .cloned()
        .expect("inventory");
    assert_eq!(inventory["state"], "waiting", "{inventory}");
    assert_eq!(
        inventory["waiting_for"],
        serde_json::json!(["auth"]),
        "{inventory}"
    );
    assert_eq!(inventory["detail"], "spec compiled (served over gRPC)");
}

#[test]
fn two_members_serving_one_grpc_service_are_refused() {
    use mockops::config::load::Loader;
    use mockops::git::revision::DirFiles;
    let dir = tempfile::tempdir().expect("dir");
    let write = |p: &str, c: &str| {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    };
    write("specs/shop/v1/shop.proto", PROTO);
    write("services/one.yaml", &service("one", "mock_v3", ""));
    write("services/two.yaml", &service("two", "mock_v3", ""));
    write(
        "federations/both.yaml",
        "name: both\nservices:\n  - name: one\n  - name: two\n",
    );
    // In separate federations the same service is fine.
    write(
        "federations/solo.yaml",
        "name: solo\nservices:\n  - name: one\n",
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
    assert_eq!(
        errors,
        vec![
            "federations/both.yaml:4:5 duplicate-grpc-service gRPC service `shop.v1.Catalog` is served by both `one` and `two` in this federation"
        ]
    );
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.pem`) and a certificate for `localhost` it signed (`leaf.pem`, `leaf.key`).
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mockops test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    );
}

#[test]
fn real_proxies_to_a_tls_upstream_whose_certificate_is_trusted() {
    use std::io::BufRead as _;
    let certs = tempfile::tempdir().expect("certs");
    certificates(certs.path());
    let up_port = free_port();
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/grpc_tls_upstream.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(certs.path().join("leaf.pem"))
        .arg(certs.path().join("leaf.key"))
        .arg(up_port.to_string())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().expect("stdout");
    let _upstream = Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the upstream starts");
    assert_eq!(line.trim(), "ready", "the TLS upstream did not start");

    let repo = repo(&[
        ("specs/shop/v1/shop.proto".into(), PROTO.into()),
        (
            "services/catalog-tls.yaml".into(),
            service(
                "catalog-tls",
                "real",
                &format!("upstream: https://localhost:{up_port}\n"),
            ),
        ),
        (
            "federations/tls.yaml".into(),
            federation("tls", "tls.test", "catalog-tls"),
        ),
    ]);
    let ca = certs.path().join("ca.pem").display().to_string();

    // Trusted (the test CA is the daemon's SSL_CERT_FILE): the call and its answer go
    // through TLS.
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let addr = format!("127.0.0.1:{gw_port}");
    let mut d = Daemon::start_env(
        repo.path(),
        state.path(),
        &["--gateway", &addr],
        &[("SSL_CERT_FILE", ca.as_str())],
    );
    d.wait_ready();
    until_listed(&addr, "tls.test");
    let r = call(
        &addr,
        "tls.test",
        "GetItem",
        json!({"item_id": "over-tls"}),
        &[],
    );
    assert_eq!(r["code"], "OK", "{r}");
    assert_eq!(r["response"], json!({"item_id": "over-tls"}));
    drop(d);

    // Not trusted: UNAVAILABLE, saying TLS failed.
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let addr = format!("127.0.0.1:{gw_port}");
    let mut d = Daemon::start_env(
        repo.path(),
        state.path(),
        &["--gateway", &addr],
        &[("SSL_CERT_FILE", "/nonexistent/ca.pem")],
    );
    d.wait_ready();
    until_listed(&addr, "tls.test");
    let r = call(
        &addr,
        "tls.test",
        "GetItem",
        json!({"item_id": "over-tls"}),
        &[],
    );
    assert_eq!(r["code"], "UNAVAILABLE", "{r}");
    assert!(
        r["details"].as_str().is_some_and(|m| m.contains("TLS")),
        "{r}"
    );
}
