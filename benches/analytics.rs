//! Analytics benchmark: each view's query over one million recorded exchanges (target under
//! 100 ms for any view), against the naive way, a scan of the raw traffic record.
//!
//! Run: `cargo bench --bench analytics` (release build, in process). A real Git repository
//! holds two federations (`fleet`: 50 services of 20 operations each; `edge`: 10 of them)
//! over 20 commits that change reality levels and specs; one million exchanges spread over 30
//! days, 20 personas (a third from CI) and 10 scenarios are appended through
//! `Store::append_traffic` in batches of 512 (the gateway writer's batch), which keeps the
//! rollup; 200 drift incidents are open. Each view is timed as the API runs it (the catalog
//! and the Git history are built once per applied commit: their first, cold build is timed
//! apart), median of 5. The baseline reads every raw exchange once and counts endpoint
//! coverage from them: what answering any view costs without the rollup.

#[allow(dead_code)]
mod common;
use common::{commit_all, ms};

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mockops::analytics::{self, api::View};
use mockops::drift::{Direction, Incident, IncidentKind, IncidentState, Location};
use mockops::store::Store;
use mockops::store::traffic::{Exchange, TrafficFilter};

const EXCHANGES: usize = 1_000_000;
const SERVICES: usize = 50;
const OPERATIONS: usize = 20;
const DAYS: u64 = 30;
const BATCH: usize = 512;
const RUNS: usize = 5;

fn spec(service: usize, version: usize) -> String {
    let mut s =
        format!("openapi: 3.0.3\ninfo: {{title: s{service:02}, version: \"{version}\"}}\npaths:\n");
    for op in 0..OPERATIONS {
        s.push_str(&format!(
            "  /r{op:02}/{{id}}:\n    get:\n      operationId: op{op:02}\n      parameters:\n        - {{name: id, in: path, required: true, schema: {{type: string}}}}\n      responses:\n        \"200\":\n          description: ok\n          content:\n            application/json:\n              schema: {{type: object}}\n              example: {{id: \"1\"}}\n"
        ));
    }
    s
}

fn write(root: &std::path::Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// The configuration repository; returns the head commit.
fn repository(root: &std::path::Path) -> String {
    let repo = git2::Repository::init_opts(
        root,
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    let levels = ["mock_v3", "real", "blended", "chaos_driven"];
    let mut head = None;
    for commit in 0..20usize {
        let mut fleet = String::from("name: fleet\nservices:\n");
        for s in 0..SERVICES {
            // Each commit moves one service's level and another's spec.
            let level = if s == commit % SERVICES {
                levels[commit % 4]
            } else {
                "mock_v3"
            };
            fleet.push_str(&format!("  - name: s{s:02}\n    reality_level: {level}\n"));
            let version = if s == (commit * 7) % SERVICES {
                commit
            } else {
                0
            };
            if commit == 0 || version > 0 {
                write(root, &format!("specs/s{s:02}.yaml"), &spec(s, version));
            }
            if commit == 0 {
                write(
                    root,
                    &format!("services/s{s:02}.yaml"),
                    &format!(
                        "name: s{s:02}\nworkspace_id: ws-{s:02}\nspec: specs/s{s:02}.yaml\nbase_path: /s{s:02}\nreality_level: mock_v3\nupstream: http://127.0.0.1:9/s{s:02}\n"
                    ),
                );
            }
        }
        write(root, "federations/fleet.yaml", &fleet);
        let mut edge = String::from("name: edge\nservices:\n");
        for s in 0..10 {
            edge.push_str(&format!("  - name: s{s:02}\n"));
        }
        write(root, "federations/edge.yaml", &edge);
        head = Some(commit_all(&repo, &format!("commit {commit}")));
    }
    head.expect("commits").to_string()
}

fn exchanges(now_micros: u64) -> impl Iterator<Item = Exchange> {
    let mut rng = fastrand::Rng::with_seed(7);
    let span = DAYS * 86_400_000_000;
    let start = now_micros - span;
    (0..EXCHANGES).map(move |i| {
        let at_micros = start + (i as u64) * (span / EXCHANGES as u64);
        let edge = rng.u8(..10) == 0;
        let s = if edge {
            rng.usize(..10)
        } else {
            rng.usize(..SERVICES)
        };
        let op = rng.usize(..OPERATIONS + 1);
        let status = match rng.u8(..20) {
            0 => 500,
            1 | 2 => 404,
            3 => 302,
            _ => 200,
        };
        let persona = (rng.u8(..3) > 0).then(|| format!("persona-{:02}", rng.u8(..20)));
        let scenario = (rng.u8(..4) == 0).then(|| format!("scenario-{}", rng.u8(..10)));
        Exchange {
            at: String::new(),
            at_micros,
            federation: if edge { "edge" } else { "fleet" }.into(),
            service: Some(format!("s{s:02}")),
            // One in 21 requests matches no operation.
            operation: (op < OPERATIONS).then(|| format!("op{op:02}")),
            method: "GET".into(),
            path: format!("/r{op:02}/{i}"),
            status,
            latency_ms: 1.5,
            source: "mock".into(),
            persona,
            scenario,
            ci: rng.u8(..3) == 0,
            grpc_status: None,
        }
    })
}

fn incidents() -> Vec<Incident> {
    (0..200)
        .map(|i| {
            let location = Location {
                service: format!("s{:02}", i % SERVICES),
                method: "GET".into(),
                path: format!("/r{:02}/{{id}}", i % OPERATIONS),
                operation_id: Some(format!("op{:02}", i % OPERATIONS)),
                direction: Direction::Response,
                status: 200,
                content_type: Some("application/json".into()),
                pointer: format!("/f{i}"),
                spec_file: format!("specs/s{:02}.yaml", i % SERVICES),
                spec_pointer: "/paths".into(),
            };
            Incident {
                id: Incident::signature(IncidentKind::TypeMismatch, &location),
                kind: IncidentKind::TypeMismatch,
                location,
                expected: "string".into(),
                observed: "integer".into(),
                count: 1,
                first_seen: String::new(),
                last_seen: String::new(),
                last_seen_ms: 0,
                samples: Vec::new(),
                state: IncidentState::Open,
                resolved_at: None,
                spec_sha: None,
            }
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let repo_dir = tempfile::tempdir().expect("repo dir");
    let state = tempfile::tempdir().expect("state dir");
    let sha = repository(repo_dir.path());
    let repo = repo_dir.path().to_path_buf();
    let (store, _) = Store::open(state.path()).expect("store");
    let now = SystemTime::now();
    let now_micros = now.duration_since(UNIX_EPOCH).expect("time").as_micros() as u64;

    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for e in exchanges(now_micros) {
        batch.push(e);
        if batch.len() == BATCH {
            store.append_traffic(&batch).expect("append");
            batch.clear();
        }
    }
    store.append_traffic(&batch).expect("append");
    let load = started.elapsed();
    store.put_incidents(&incidents()).expect("incidents");
    println!(
        "loaded {EXCHANGES} exchanges over {DAYS} days in {:.1} s ({:.0} exchanges/s, rollup included)",
        load.as_secs_f64(),
        EXCHANGES as f64 / load.as_secs_f64()
    );

    let t = Instant::now();
    let catalog = analytics::catalog::cached(&repo, &sha).expect("catalog");
    let catalog_cold = t.elapsed();
    let t = Instant::now();
    analytics::staleness::cached(&repo, &sha).expect("history");
    let history_cold = t.elapsed();
    println!(
        "once per applied commit: catalog {:.1} ms ({} federations, {} operations), Git history {:.1} ms (20 commits)",
        ms(catalog_cold),
        catalog.federations.len(),
        catalog
            .federations
            .values()
            .flat_map(|f| f.members.iter())
            .map(|m| m.operations.len())
            .sum::<usize>(),
        ms(history_cold)
    );

    let observed = BTreeMap::new();
    let month = {
        let mut p = BTreeMap::new();
        p.insert(
            "from".to_string(),
            analytics::day_name(analytics::day_of(now) - (DAYS as u32 - 1)),
        );
        p
    };
    let edge = {
        let mut p = month.clone();
        p.insert("federation".to_string(), "edge".to_string());
        p.insert("service".to_string(), "s03".to_string());
        p
    };
    let week = BTreeMap::new();
    let cases: Vec<(&str, View, &BTreeMap<String, String>)> = vec![
        ("scenario usage, 7 days", View::ScenarioUsage, &week),
        ("scenario usage, 30 days", View::ScenarioUsage, &month),
        ("persona CI hits, 30 days", View::PersonaCiHits, &month),
        ("endpoint coverage, 7 days", View::EndpointCoverage, &week),
        ("endpoint coverage, 30 days", View::EndpointCoverage, &month),
        ("coverage, 30 days, edge/s03", View::EndpointCoverage, &edge),
        ("reality-level staleness", View::Staleness, &week),
        ("drift percentage", View::DriftPercentage, &week),
    ];

    let mut rows = Vec::new();
    for (name, view, params) in &cases {
        let times: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                let v = analytics::api::answer(&store, &repo, &sha, &observed, params, *view, now)
                    .expect("view");
                let d = t.elapsed();
                std::hint::black_box(v);
                d
            })
            .collect();
        rows.push((*name, median(times)));
    }

    // The baseline: every raw exchange read once, coverage counted from them.
    let t = Instant::now();
    let all = store
        .traffic(&TrafficFilter {
            limit: usize::MAX,
            ..Default::default()
        })
        .expect("scan");
    let mut counts: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    for e in &all {
        *counts
            .entry((
                e.federation.clone(),
                e.service.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
            ))
            .or_default() += 1;
    }
    let scan = t.elapsed();
    assert_eq!(all.len(), EXCHANGES);
    drop(all);

    println!("view (median of {RUNS})                      ms   vs raw scan");
    let mut worst = Duration::ZERO;
    for (name, d) in &rows {
        worst = worst.max(*d);
        println!(
            "{name:<40} {:>7.2}   {:>7.0}x faster",
            ms(*d),
            scan.as_secs_f64() / d.as_secs_f64().max(1e-9)
        );
    }
    println!("naive scan of the raw record (baseline) {:>8.1}", ms(scan));
    println!(
        "slowest view: {:.2} ms (target < 100 ms: {})",
        ms(worst),
        if worst < Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
