//! Pipeline benchmark: event-to-first-step latency, and the throughput of 1,000 events through
//! a one-step pipeline (`notify` to a signed webhook) to a receiver on loopback.
//!
//! Run: `cargo bench --bench pipelines` (release build of the real binary, a real Git
//! repository in a temp dir, the API and the receiver on loopback). Events are posted to
//! `POST /api/v1/events`; a step is "started" when its request reaches the receiver. The
//! baseline measured in the same run is the floor of the work: the same 1,000 signed requests
//! sent straight to the receiver from this process, at the daemon's concurrency (4), with no
//! event log, no execution records and no pipeline in between.

mod common;
use common::{commit_all, ms, rss_kib};

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::sync::Notify;

const EVENTS: usize = 1000;
const LATENCY_SAMPLES: usize = 100;
const CONCURRENCY: usize = 4;
const SECRET: &str = "bench-signing-secret";

/// Arrivals at the receiver: `seq` → when, how many times.
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<u64, (Instant, u32)>>,
    total: Mutex<usize>,
    changed: Notify,
    bad_signatures: Mutex<usize>,
}

async fn hook(State(a): State<Arc<Arrivals>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = Instant::now();
    let signed = headers
        .get(mockops::pipeline::steps::notify::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| {
            s == mockops::pipeline::steps::notify::signature(SECRET.as_bytes(), &body)
        });
    if !signed {
        *a.bad_signatures.lock().expect("lock") += 1;
    }
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let seq = v["seq"]
        .as_u64()
        .or_else(|| v["seq"].as_str().and_then(|s| s.parse().ok()));
    if let Some(seq) = seq {
        let mut at = a.at.lock().expect("lock");
        at.entry(seq).or_insert((now, 0)).1 += 1;
    }
    *a.total.lock().expect("lock") += 1;
    a.changed.notify_waiters();
    StatusCode::OK
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let arrivals = Arc::new(Arrivals::default());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind receiver");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(arrivals.clone());
    rt.spawn(async move { axum::serve(listener, app).await });

    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    std::fs::create_dir_all(repo.join("pipelines")).expect("mkdir");
    std::fs::write(
        repo.join("pipelines/bench.yaml"),
        format!(
            "name: bench\n\
             definition:\n  \
               triggers:\n    - event: bench.tick\n  \
               steps:\n    - name: deliver\n      step_type: notify\n      config:\n        \
                 type: webhook\n        webhook_url: {hook_url}\n        \
                 secret: ${{env:BENCH_WEBHOOK_SECRET}}\n        \
                 message: \"tick {{{{event.seq}}}}\"\n        \
                 payload:\n          seq: \"{{{{event.seq}}}}\"\n"
        ),
    )
    .expect("write pipeline");
    let git = git2::Repository::init_opts(
        &repo,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    commit_all(&git, "pipeline bench");
    let token_file = work.path().join("token");
    std::fs::write(&token_file, "bench-token").expect("token");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let api = format!("http://127.0.0.1:{port}");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mockops"));
    let mut child: Child = Command::new(&bin)
        .args(["daemon", "--repo"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--api-token-file")
        .arg(&token_file)
        .args(["--pipeline-concurrency", &CONCURRENCY.to_string()])
        .env("RUST_LOG", "warn")
        .env("BENCH_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("daemon.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let client = reqwest::Client::new();

    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{api}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(Instant::now() < deadline, "daemon not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    // Latency: one event at a time, from the POST until the step's request arrives.
    let mut latencies = Vec::new();
    let mut posts = Vec::new();
    for seq in 0..LATENCY_SAMPLES as u64 {
        let t0 = Instant::now();
        rt.block_on(post_event(&client, &api, seq));
        posts.push(t0.elapsed());
        let at = rt.block_on(arrival(&arrivals, seq, Duration::from_secs(30)));
        latencies.push(at - t0);
        std::thread::sleep(Duration::from_millis(10));
    }
    latencies.sort();
    posts.sort();

    // Throughput: 1,000 events posted by 4 clients; until the last step's request arrives.
    let first = 1_000_000u64;
    let t0 = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..CONCURRENCY as u64 {
            let (client, api) = (client.clone(), api.clone());
            tasks.spawn(async move {
                let mut seq = first + w;
                while seq < first + EVENTS as u64 {
                    post_event(&client, &api, seq).await;
                    seq += CONCURRENCY as u64;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let posted = t0.elapsed();
    rt.block_on(arrival(
        &arrivals,
        first + EVENTS as u64 - 1,
        Duration::from_secs(600),
    ));
    let deadline = Instant::now() + Duration::from_secs(600);
    while (first..first + EVENTS as u64)
        .any(|s| !arrivals.at.lock().expect("lock").contains_key(&s))
    {
        assert!(Instant::now() < deadline, "not every event was delivered");
        std::thread::sleep(Duration::from_millis(2));
    }
    let through = t0.elapsed();
    // Executions finish after their step's request is answered: wait until all are recorded.
    let succeeded = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = count_succeeded(&client, &api).await;
            if n >= LATENCY_SAMPLES + EVENTS || Instant::now() > deadline {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let rss = rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let duplicates = arrivals
        .at
        .lock()
        .expect("lock")
        .values()
        .filter(|(_, n)| *n > 1)
        .count();
    let bad = *arrivals.bad_signatures.lock().expect("lock");

    // Baseline: the same signed requests straight to the receiver, 4 at a time.
    let base_first = 2_000_000u64;
    let t1 = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..CONCURRENCY as u64 {
            let (client, url) = (client.clone(), hook_url.clone());
            tasks.spawn(async move {
                let mut seq = base_first + w;
                while seq < base_first + EVENTS as u64 {
                    let body = serde_json::to_vec(&serde_json::json!({
                        "message": format!("tick {seq}"),
                        "event": {"event_type": "bench.tick", "seq": seq},
                        "pipeline": "bench",
                        "step": "deliver",
                        "seq": seq.to_string(),
                    }))
                    .expect("json");
                    let sig = mockops::pipeline::steps::notify::signature(SECRET.as_bytes(), &body);
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header(mockops::pipeline::steps::notify::SIGNATURE_HEADER, sig)
                        .body(body)
                        .send()
                        .await
                        .expect("direct post");
                    assert!(r.status().is_success());
                    seq += CONCURRENCY as u64;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
    let direct = t1.elapsed();

    let p = |v: &[Duration], q: usize| ms(v[(v.len() * q / 100).min(v.len() - 1)]);
    println!("pipeline benchmark (one notify step to a signed webhook on loopback, release build)");
    println!(
        "  event-to-first-step latency ({LATENCY_SAMPLES} events, one at a time): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms (of which the POST itself: p50 {:.1} ms)",
        p(&latencies, 50),
        p(&latencies, 95),
        ms(*latencies.last().expect("samples")),
        p(&posts, 50),
    );
    println!(
        "  {EVENTS} events through the pipeline: {:.2} s ({:.0} events/s; posting them took {:.2} s), {} executions succeeded in all, {} duplicate deliveries, {} bad signatures",
        through.as_secs_f64(),
        EVENTS as f64 / through.as_secs_f64(),
        posted.as_secs_f64(),
        succeeded,
        duplicates,
        bad
    );
    println!(
        "  baseline, the same {EVENTS} signed requests sent directly: {:.2} s ({:.0}/s); the pipeline costs {:.2} ms per event more, {:.1}x the direct time",
        direct.as_secs_f64(),
        EVENTS as f64 / direct.as_secs_f64(),
        ms(through.saturating_sub(direct)) / EVENTS as f64,
        through.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "  daemon resident memory after the run: {:.1} MB",
        rss as f64 / 1024.0
    );
}

async fn post_event(client: &reqwest::Client, api: &str, seq: u64) {
    let r = client
        .post(format!("{api}/api/v1/events"))
        .bearer_auth("bench-token")
        .json(&serde_json::json!({"event_type": "bench.tick", "payload": {"seq": seq}}))
        .send()
        .await
        .expect("post event");
    assert_eq!(r.status().as_u16(), 201, "event {seq} not stored");
}

/// Waits until `seq` has arrived; returns when it did.
async fn arrival(a: &Arrivals, seq: u64, limit: Duration) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        let changed = a.changed.notified();
        if let Some((at, _)) = a.at.lock().expect("lock").get(&seq) {
            return *at;
        }
        assert!(Instant::now() < deadline, "event {seq} was never delivered");
        let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
    }
}

async fn count_succeeded(client: &reqwest::Client, api: &str) -> usize {
    let mut n = 0;
    let mut before: Option<u64> = None;
    loop {
        let mut url = format!("{api}/api/v1/executions?pipeline=bench&limit=500");
        if let Some(b) = before {
            url.push_str(&format!("&before={b}"));
        }
        let v: serde_json::Value = match client.get(url).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return n,
        };
        n += v["executions"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["status"] == "succeeded").count())
            .unwrap_or(0);
        match v["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => return n,
        }
    }
}
