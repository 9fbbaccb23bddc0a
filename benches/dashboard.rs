//! Dashboard benchmark: the first load of every dashboard page with 50 services of 100
//! operations each, 5,000 events and 20,000 recorded exchanges.
//!
//! Run: `cargo bench --bench dashboard` (release build of the real binary with the gateway on,
//! a generated repository in a temp dir, everything on loopback). For each page: the first
//! load (the page and the stylesheet and icon it links, as a browser with an empty cache
//! fetches them), then the median and worst of 20 more loads, and the bytes transferred
//! (headers and bodies, uncompressed). "Server time" is the time to the last byte on loopback.
//! Targets: under 200 ms and under 300 KB for the first load.

mod common;
use common::{commit_all, ms, rss_kib};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVICES: usize = 50;
const OPERATIONS: usize = 100;
const EVENTS: usize = 5_000;
const EXCHANGES: usize = 20_000;

const PAGES: &[&str] = &[
    "/ui",
    "/ui/revisions",
    "/ui/events",
    "/ui/executions",
    "/ui/federations",
    "/ui/drift",
    "/ui/coverage",
    "/ui/usage",
];

fn spec(service: usize) -> String {
    let mut paths = serde_json::Map::new();
    for i in 0..OPERATIONS {
        paths.insert(
            format!("/r{i}/{{id}}"),
            serde_json::json!({"get": {
                "operationId": format!("get{service}x{i}"),
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {
                    "schema": {"type": "object", "properties": {"id": {"type": "string"}}},
                    "example": {"id": "1"}}}}}
            }}),
        );
    }
    serde_json::to_string(&serde_json::json!({
        "openapi": "3.0.3",
        "info": {"title": format!("s{service}"), "version": "1"},
        "paths": paths,
    }))
    .expect("spec")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_mockops"));
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    let mut fed = String::from("name: bench\nservices:\n");
    for s in 0..SERVICES {
        std::fs::create_dir_all(repo.join("specs")).expect("mkdir");
        std::fs::create_dir_all(repo.join("services")).expect("mkdir");
        std::fs::write(repo.join(format!("specs/s{s:02}.json")), spec(s)).expect("spec");
        std::fs::write(
            repo.join(format!("services/s{s:02}.yaml")),
            format!(
                "name: s{s:02}\nworkspace_id: ws-{s:02}\nspec: specs/s{s:02}.json\nbase_path: /s{s:02}\nreality_level: mock_v3\n"
            ),
        )
        .expect("service");
        fed.push_str(&format!("  - name: s{s:02}\n"));
        if s > 0 {
            fed.push_str(&format!("    dependencies: [s{:02}]\n", (s - 1) / 2));
        }
    }
    std::fs::create_dir_all(repo.join("federations")).expect("mkdir");
    std::fs::write(repo.join("federations/bench.yaml"), fed).expect("federation");
    let git = git2::Repository::init_opts(
        &repo,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    commit_all(&git, "50 services x 100 operations");

    let free = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let (port, gw) = (free(), free());
    let api = format!("http://127.0.0.1:{port}");
    let state = work.path().join("state");
    let daemon = Killed(
        Command::new(&bin)
            .args(["daemon", "--repo"])
            .arg(&repo)
            .arg("--state-dir")
            .arg(&state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--gateway", &format!("127.0.0.1:{gw}")])
            .args(["--poll-interval", "30s"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("daemon.log")).expect("log"))
            .spawn()
            .expect("spawn"),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = rt.block_on(async {
            client
                .get(format!("{api}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "daemon not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let token = std::fs::read_to_string(state.join("api-token"))
        .expect("token")
        .trim()
        .to_string();

    // Seed: events through the API, exchanges through the gateway (8 at a time).
    let started = Instant::now();
    rt.block_on(async {
        let auth = format!("Bearer {token}");
        let mut pending = Vec::new();
        for i in 0..EVENTS {
            let req = client
                .post(format!("{api}/api/v1/events"))
                .header("authorization", &auth)
                .json(&serde_json::json!({"event_type": "bench.event", "payload": {"i": i}}));
            pending.push(tokio::spawn(
                async move { req.send().await.map(|r| r.status()) },
            ));
            if pending.len() == 8 {
                for p in pending.drain(..) {
                    let _ = p.await;
                }
            }
        }
        for p in pending.drain(..) {
            let _ = p.await;
        }
        let mut seed = 1u64;
        for i in 0..EXCHANGES {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = (seed >> 33) as usize % SERVICES;
            // Skewed: most traffic on the first operations, many never hit.
            let op = ((seed >> 20) as usize % OPERATIONS) * ((seed >> 40) as usize % 3) / 2;
            let mut req = client.get(format!("http://127.0.0.1:{gw}/bench/s{s:02}/r{op}/x"));
            if i % 4 == 0 {
                req = req
                    .header("x-mockops-scenario", format!("scenario-{}", i % 12))
                    .header("x-mockops-ci", "true");
            }
            pending.push(tokio::spawn(
                async move { req.send().await.map(|r| r.status()) },
            ));
            if pending.len() == 8 {
                for p in pending.drain(..) {
                    let _ = p.await;
                }
            }
        }
        for p in pending.drain(..) {
            let _ = p.await;
        }
    });
    // The traffic record is written in batches: wait until it holds every exchange.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = rt.block_on(async {
            let r = client
                .get(format!("{api}/api/v1/traffic?limit=1000"))
                .header("authorization", format!("Bearer {token}"))
                .send()
                .await
                .ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            Some(v["exchanges"].as_array().map_or(0, Vec::len))
        });
        if n == Some(1000) {
            std::thread::sleep(Duration::from_secs(2));
            break;
        }
        assert!(Instant::now() < deadline, "traffic not recorded");
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "seeded {EVENTS} events and {EXCHANGES} exchanges over {SERVICES} services x {OPERATIONS} operations in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let cookie = format!("mockops_ui={}", hex::encode(&token));
    // One request: time to the last byte, and bytes on the wire (status line and headers
    // approximated by their text, plus the body).
    let load = |path: &str| -> (Duration, usize, u16) {
        rt.block_on(async {
            let t = Instant::now();
            let r = client
                .get(format!("{api}{path}"))
                .header("cookie", &cookie)
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let head: usize = 17
                + r.headers()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len() + 4)
                    .sum::<usize>();
            let body = r.bytes().await.expect("body");
            (t.elapsed(), head + body.len(), status)
        })
    };
    println!(
        "{:<16} {:>12} {:>11} {:>11} {:>12}",
        "page", "first load", "p50 (20)", "max (20)", "transferred"
    );
    let mut worst_first = Duration::ZERO;
    let mut worst_bytes = 0;
    for (i, page) in PAGES.iter().enumerate() {
        let (t, bytes, status) = load(page);
        assert_eq!(status, 200, "{page}");
        let (mut first, mut total) = (t, bytes);
        if i == 0 {
            // A browser with an empty cache also fetches what the page links.
            for asset in ["/ui/assets/style.css", "/ui/assets/icon.svg"] {
                let (t, bytes, status) = load(asset);
                assert_eq!(status, 200, "{asset}");
                first += t;
                total += bytes;
            }
        }
        let mut times: Vec<Duration> = (0..20).map(|_| load(page).0).collect();
        times.sort();
        worst_first = worst_first.max(first);
        worst_bytes = worst_bytes.max(total);
        println!(
            "{page:<16} {:>9.1} ms {:>8.1} ms {:>8.1} ms {:>9.1} KB",
            ms(first),
            ms(times[10]),
            ms(times[19]),
            total as f64 / 1024.0
        );
    }
    println!(
        "slowest first load {:.1} ms (target < 200 ms), largest {:.1} KB (target < 300 KB)",
        ms(worst_first),
        worst_bytes as f64 / 1024.0
    );
    println!(
        "daemon resident memory after the loads: {:.1} MB",
        rss_kib(daemon.0.id()) as f64 / 1024.0
    );
}
