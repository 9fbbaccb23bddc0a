//! Daemon benchmark: commit-to-event latency on a local repository, a burst of 1,000 commits
//! processed in order, and resident memory idle and after the burst.
//!
//! Run: `cargo bench --bench daemon` (release build of the real binary, real Git repository in
//! a temp dir, API on loopback). The baseline measured in the same run is the naive way to
//! follow a repository: one `mockops validate --rev` process per commit.

mod common;
use common::{commit_all, ms, rss_kib};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_mockops"));
    let work = tempfile::tempdir().expect("tempdir");
    let repo = work.path().join("repo");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo-layout"),
        &repo,
    );
    let git = git2::Repository::init_opts(
        &repo,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    commit_all(&git, "initial");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let api = format!("http://127.0.0.1:{port}");
    let state = work.path().join("state");
    let mut child: Child = Command::new(&bin)
        .args(["daemon", "--repo"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--poll-interval", "30s"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("daemon.log")).expect("log"))
        .spawn()
        .expect("spawn");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let api = api.clone();
        rt.block_on(async move {
            let r = client.get(format!("{api}{path}")).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            let text = r.text().await.ok()?;
            Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while get("/readyz".into()).is_none() {
        assert!(Instant::now() < deadline, "daemon not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle = rss_kib(child.id());

    // Commit-to-event latency: one commit at a time, until its event is readable.
    let service = repo.join("services/payments.yaml");
    let original = std::fs::read_to_string(&service).expect("read");
    let mut last_id = 0u64;
    let mut latencies = Vec::new();
    for i in 0..50 {
        std::fs::write(
            &service,
            format!("{original}\n# rev {i}\n")
                .replace("Charges and refunds.", &format!("Rev {i}.")),
        )
        .expect("write");
        let t0 = Instant::now();
        commit_all(&git, &format!("latency {i}"));
        loop {
            if let Some(v) = get(format!("/api/v1/events?after={last_id}&limit=10"))
                && let Some(e) = v["events"].as_array().and_then(|a| a.first())
            {
                last_id = e["id"].as_u64().unwrap_or(last_id);
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no event for commit {i}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(30));
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    let p95 = latencies[latencies.len() * 95 / 100];

    // Burst: 1,000 commits land while the daemon is stopped (as after a deploy or an outage);
    // time from its start until the last one is applied, and check every one produced its
    // event, in order.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let t_make = Instant::now();
    let mut last = String::new();
    for i in 0..1000 {
        std::fs::write(
            &service,
            original.replace("Charges and refunds.", &format!("Burst {i}.")),
        )
        .expect("write");
        last = commit_all(&git, &format!("burst {i}")).to_string();
    }
    let made = t_make.elapsed();
    let t0 = Instant::now();
    child = Command::new(&bin)
        .args(["daemon", "--repo"])
        .arg(&repo)
        .arg("--state-dir")
        .arg(&state)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--poll-interval", "30s"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    loop {
        if let Some(s) = get("/api/v1/status".into())
            && s["last_attempted"]["sha"] == last.as_str()
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "burst not processed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let burst = t0.elapsed();
    let mut count = 0;
    let mut after = last_id;
    loop {
        let v = get(format!("/api/v1/events?after={after}&limit=1000")).expect("events");
        let events = v["events"].as_array().cloned().unwrap_or_default();
        count += events.len();
        match v["next_after"].as_u64() {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(count, 1000, "every commit of the burst has its event");
    let rss_after = rss_kib(child.id());
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    // Baseline: a process per commit (`mockops validate --rev <sha>`), over 50 commits.
    let revs: Vec<String> = {
        let mut walk = git.revwalk().expect("revwalk");
        walk.push_head().expect("head");
        walk.take(50).map(|o| o.expect("oid").to_string()).collect()
    };
    let t1 = Instant::now();
    for r in &revs {
        let ok = Command::new(&bin)
            .args(["validate"])
            .arg(&repo)
            .args(["--rev", r, "--format", "json"])
            .stdout(Stdio::null())
            .status()
            .expect("validate");
        assert!(ok.success());
    }
    let naive_per_commit = t1.elapsed() / revs.len() as u32;
    let ours_per_commit = burst / 1000;

    println!("daemon benchmark (local repository, examples/repo-layout, release build)");
    println!(
        "  commit-to-event latency: p50 {:.1} ms, p95 {:.1} ms (target p50 < 100 ms: {:.2}x of target)",
        ms(p50),
        ms(p95),
        ms(p50) / 100.0
    );
    println!(
        "  burst of 1000 commits, processed in order from a cold start: {:.2} s ({:.0} commits/s; making them took {:.2} s)",
        burst.as_secs_f64(),
        1000.0 / burst.as_secs_f64(),
        made.as_secs_f64()
    );
    println!(
        "  per commit: {:.1} ms in the daemon vs {:.1} ms for a process per commit (`validate --rev`): {:.1}x faster",
        ms(ours_per_commit),
        ms(naive_per_commit),
        naive_per_commit.as_secs_f64() / ours_per_commit.as_secs_f64()
    );
    println!(
        "  resident memory: {:.1} MB idle, {:.1} MB after the burst (target idle < 50 MB)",
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}
