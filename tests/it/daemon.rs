//! The daemon end to end: the real binary following a real Git repository, observed through
//! its HTTP API.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, http};

const SERVICE: &str = "services/payments.yaml";

fn set_description(repo: &Repo, text: &str) {
    let s = repo.read(SERVICE);
    let mut out = String::new();
    let mut done = false;
    for line in s.lines() {
        if line.starts_with("description:") {
            out.push_str(&format!("description: {text}\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        out.push_str(&format!("description: {text}\n"));
    }
    repo.write(SERVICE, &out);
}

fn of_type<'a>(events: &'a [Json], t: &str) -> Vec<&'a Json> {
    events.iter().filter(|e| e["event_type"] == t).collect()
}

#[test]
fn baseline_then_each_commit_in_order_with_its_events() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    // The baseline produces no events.
    assert!(d.all_events().is_empty());
    let status = d.get("/api/v1/status");
    assert_eq!(status["last_attempted_status"], "baseline");

    // Three commits land at once: each is processed, in order.
    let mut shas = Vec::new();
    for i in 1..=3 {
        set_description(&repo, &format!("Payments v{i}"));
        shas.push(repo.commit(&format!("payments v{i}")));
    }
    d.wait_attempted(shas.last().unwrap());
    let events = d.all_events();
    let changed = of_type(&events, "config.changed");
    let commits: Vec<&str> = changed
        .iter()
        .map(|e| e["payload"]["commit"].as_str().unwrap())
        .collect();
    assert_eq!(commits, shas.iter().map(String::as_str).collect::<Vec<_>>());
    let first = changed[0];
    assert_eq!(first["payload"]["config_path"], SERVICE);
    assert_eq!(first["payload"]["action"], "modified");
    assert_eq!(
        first["payload"]["author"],
        "Test Author <author@example.com>"
    );
    assert_eq!(first["workspace_id"], "workspace-payments-456");
    assert_eq!(first["source"], format!("commit:{}", shas[0]));
    let ch = &first["payload"]["changes"][0];
    assert_eq!(ch["field"], "description");
    assert_eq!(ch["new"], "Payments v1");
    assert!(
        first["payload"]["diff"]
            .as_str()
            .unwrap()
            .contains("+description: Payments v1")
    );
    // The applied state is served.
    let svc = d.get("/api/v1/services/payments");
    assert_eq!(svc["spec"]["description"], "Payments v3");
    let revs = d.get("/api/v1/revisions");
    assert_eq!(revs["revisions"].as_array().unwrap().len(), 4);
    assert!(d.terminate(), "graceful shutdown: {}", d.log_text());
}

#[test]
fn schema_scenario_and_workspace_events() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    // A breaking spec change: an endpoint moves.
    let spec = repo.read("specs/payments/openapi.yaml");
    assert!(spec.contains("  /charges/{id}:"));
    let spec = spec.replacen("  /charges/{id}:", "  /charges/{id}/details:", 1);
    repo.write("specs/payments/openapi.yaml", &spec);
    // A new scenario version and a new service with a new workspace.
    let sc = repo.read("environments/dev/scenarios/card-declined.yaml");
    let sc = sc
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                "version: 99".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    repo.write("environments/dev/scenarios/card-declined.yaml", &sc);
    repo.write(
        "services/ledger.yaml",
        "name: ledger\nworkspace_id: workspace-ledger-789\n",
    );
    let sha = repo.commit("breaking change, scenario v99, ledger service");
    let st = d.wait_attempted(&sha);
    assert_eq!(st["last_attempted_status"], "applied", "{st}");
    let events = d.all_events();
    let schema = of_type(&events, "schema.changed");
    assert_eq!(schema.len(), 1, "{events:#?}");
    let p = &schema[0]["payload"];
    assert_eq!(p["spec_path"], "specs/payments/openapi.yaml");
    assert_eq!(p["schema_type"], "openapi");
    assert_eq!(p["breaking"], true);
    assert_eq!(p["service"], "payments");
    assert!(!p["changes"].as_array().unwrap().is_empty());
    assert!(p["changes"][0]["kind"].is_string());
    assert!(p["changes"][0]["level"].is_string());
    let sc = of_type(&events, "scenario.published");
    assert_eq!(sc.len(), 1);
    assert_eq!(sc[0]["payload"]["version"], "99");
    assert_eq!(sc[0]["payload"]["environment"], "dev");
    let ws = of_type(&events, "workspace.created");
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0]["workspace_id"], "workspace-ledger-789");
    // Filters of the events endpoint.
    let page = d.get("/api/v1/events?type=workspace.created");
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    let page = d.get("/api/v1/events?workspace=workspace-payments-456");
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["workspace_id"] == "workspace-payments-456")
    );
}

#[test]
fn bad_commit_keeps_last_good_state_and_fixing_commit_applies() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let good = d.get("/api/v1/status")["last_applied"]["sha"].clone();
    let original = repo.read(SERVICE);
    repo.write(SERVICE, &format!("{original}reality_levle: real\n"));
    repo.write("pipelines/broken.yaml", "name: broken\ndefinition: [\n");
    let bad = repo.commit("two mistakes");
    let st = d.wait_attempted(&bad);
    assert_eq!(
        st["last_applied"]["sha"],
        good,
        "nothing of a bad commit is applied: {st} {}",
        d.get("/api/v1/revisions")
    );
    assert_eq!(st["last_attempted_status"], "invalid");
    let rev = d.get(&format!(
        "/api/v1/revisions/{}",
        st["last_attempted"]["seq"]
    ));
    let diags = rev["diagnostics"].as_array().unwrap();
    let files: Vec<&str> = diags.iter().map(|d| d["file"].as_str().unwrap()).collect();
    assert!(files.contains(&SERVICE), "{diags:#?}");
    assert!(files.contains(&"pipelines/broken.yaml"), "{diags:#?}");
    assert!(diags.iter().all(|d| d["line"].as_u64().unwrap() > 0));
    assert!(d.all_events().is_empty(), "an invalid commit emits nothing");
    // The daemon keeps serving, and the fix applies the net change once.
    assert_eq!(http("GET", &d.url("/readyz"), None, None).unwrap().0, 200);
    std::fs::remove_file(repo.path().join("pipelines/broken.yaml")).unwrap();
    repo.write(SERVICE, &original);
    set_description(&repo, "fixed");
    let fix = repo.commit("fix");
    let st = d.wait_attempted(&fix);
    assert_eq!(st["last_applied"]["sha"], fix);
    let events = d.all_events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["payload"]["commit"], fix);
    assert_eq!(events[0]["payload"]["changes"][0]["field"], "description");
}

#[test]
fn force_push_is_compared_tree_to_tree_and_flagged() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let base = d.get("/api/v1/status")["last_applied"]["sha"]
        .as_str()
        .unwrap()
        .to_string();
    set_description(&repo, "first try");
    let dropped = repo.commit("first try");
    d.wait_attempted(&dropped);
    set_description(&repo, "second try");
    let rewritten = repo.force_commit_on(&base, "second try");
    let st = d.wait_attempted(&rewritten);
    let rev = d.get(&format!(
        "/api/v1/revisions/{}",
        st["last_attempted"]["seq"]
    ));
    assert_eq!(rev["forced"], true);
    assert_eq!(rev["compared_with"], dropped);
    let events = d.all_events();
    let last = events.last().unwrap();
    assert_eq!(last["payload"]["changes"][0]["old"], "first try");
    assert_eq!(last["payload"]["changes"][0]["new"], "second try");
}

#[test]
fn restart_resumes_without_duplicates_and_replay_from_replays() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let first = repo.commit("empty");
    set_description(&repo, "one");
    let c1 = repo.commit("one");
    {
        let mut d = Daemon::start(repo.path(), state.path(), &[]);
        d.wait_ready();
        d.wait_attempted(&c1);
        assert!(d.terminate());
    }
    // Commits made while the daemon is down are processed on start, once.
    set_description(&repo, "two");
    let c2 = repo.commit("two");
    set_description(&repo, "three");
    let c3 = repo.commit("three");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    d.wait_attempted(&c3);
    let commits: Vec<Json> = d
        .all_events()
        .iter()
        .map(|e| e["payload"]["commit"].clone())
        .collect();
    assert_eq!(commits, vec![json!(c2), json!(c3)]);
    drop(d);

    // A fresh store with --replay-from replays history from that revision.
    let fresh = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), fresh.path(), &["--replay-from", &first]);
    d.wait_ready();
    d.wait_attempted(&c3);
    let commits: Vec<Json> = d
        .all_events()
        .iter()
        .map(|e| e["payload"]["commit"].clone())
        .collect();
    assert_eq!(commits, vec![json!(c1), json!(c2), json!(c3)]);
}

#[test]
fn second_daemon_on_the_same_state_dir_is_refused() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let out = std::process::Command::new(crate::support::bin())
        .args(["daemon", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another mockops process"), "{err}");
}

#[test]
fn corrupt_store_is_rebuilt_from_git_and_says_so() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("mockops.redb"),
        b"this is not a redb file, it was damaged",
    )
    .unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let st = d.get("/api/v1/status");
    assert!(
        st["rebuilt"].as_str().unwrap().contains("rebuilt from Git"),
        "{st}"
    );
    assert!(st["counts"]["entities"].as_u64().unwrap() > 0);
    assert!(d.log_text().contains("rebuilt from Git"));
}

#[test]
fn events_can_be_posted_with_the_token_only() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let body = serde_json::to_vec(&json!({
        "event_type": "release.published",
        "workspace_id": "workspace-payments-456",
        "payload": {"version": "2.0.0"},
        "dedup_key": "release-2.0.0",
    }))
    .unwrap();
    let url = d.url("/api/v1/events");
    let (status, err) = http("POST", &url, Some(body.clone()), None).unwrap();
    assert_eq!(status, 401, "{err}");
    let wrong = [("authorization", "Bearer nope".to_string())];
    assert_eq!(
        http("POST", &url, Some(body.clone()), Some(&wrong))
            .unwrap()
            .0,
        401
    );
    let auth = [("authorization", format!("Bearer {}", d.token()))];
    let (status, ev) = http("POST", &url, Some(body.clone()), Some(&auth)).unwrap();
    assert_eq!(status, 201, "{ev}");
    assert_eq!(ev["source"], "api:api");
    // Posting again with the same dedup key stores nothing new.
    let (_, again) = http("POST", &url, Some(body), Some(&auth)).unwrap();
    assert_eq!(again["id"], ev["id"]);
    assert_eq!(of_type(&d.all_events(), "release.published").len(), 1);
    // Events mockops produces itself cannot be forged.
    let forged = serde_json::to_vec(&json!({"event_type": "schema.changed"})).unwrap();
    assert_eq!(
        http("POST", &url, Some(forged), Some(&auth)).unwrap().0,
        422
    );
    // The CLI reads the same log.
    let out = std::process::Command::new(crate::support::bin())
        .args(["events", "list", "--api", &d.url(""), "--format", "json"])
        .arg("--api-token-file")
        .arg(d.state_dir.join("api-token"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed["events"][0]["event_type"], "release.published");
}

#[test]
fn github_webhook_checks_the_signature_and_wakes_the_loop() {
    use hmac::{Hmac, Mac};
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let secret_file = state.path().join("webhook-secret");
    std::fs::write(&secret_file, "hook-secret\n").unwrap();
    // A remote (no watcher) and a long poll interval: only the webhook can make the daemon
    // look in time.
    let url = format!("file://{}", repo.path().display());
    let mut d = Daemon::start_remote(
        &url,
        state.path(),
        &[
            "--branch",
            "main",
            "--webhook-secret-file",
            secret_file.to_str().unwrap(),
            "--poll-interval",
            "1h",
        ],
    );
    d.wait_ready();
    set_description(&repo, "via webhook");
    let sha = repo.commit("via webhook");
    let body = serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": sha})).unwrap();
    let sign = |key: &[u8]| {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
        mac.update(&body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let url = d.url("/api/v1/webhooks/github");
    let push = |sig: Option<String>| {
        let mut h = vec![("x-github-event", "push".to_string())];
        if let Some(s) = sig {
            h.push(("x-hub-signature-256", s));
        }
        http("POST", &url, Some(body.clone()), Some(&h)).unwrap()
    };
    assert_eq!(push(None).0, 401);
    assert_eq!(push(Some(sign(b"wrong-secret"))).0, 401);
    assert_eq!(push(Some("sha256=nothex".into())).0, 401);
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(
        d.get("/api/v1/status")["last_attempted"]["sha"],
        sha.as_str(),
        "nothing looked before the webhook"
    );
    let (status, reply) = push(Some(sign(b"hook-secret")));
    assert_eq!(status, 202, "{reply}");
    d.wait_attempted(&sha);
}

#[test]
fn health_metrics_and_status_cli() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    set_description(&repo, "metrics");
    let sha = repo.commit("metrics");
    d.wait_attempted(&sha);
    assert_eq!(http("GET", &d.url("/healthz"), None, None).unwrap().0, 200);
    let (_, text) = http("GET", &d.url("/metrics"), None, None).unwrap();
    let text = text.as_str().unwrap().to_string();
    for needle in [
        "mockops_commits_processed_total{status=\"applied\"} 1",
        "mockops_commits_processed_total{status=\"baseline\"} 1",
        "mockops_events_total{type=\"config.changed\"} 1",
        "mockops_reconcile_duration_seconds_count 2",
        "mockops_last_applied_timestamp_seconds",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    let out = std::process::Command::new(crate::support::bin())
        .args(["status", "--api", &d.url("")])
        .env("MOCKOPS_API_TOKEN_FILE", d.state_dir.join("api-token"))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    assert!(s.contains(&sha[..12]), "{s}");
    assert!(s.contains("1 events"), "{s}");
}

/// Kills the daemon with SIGKILL at many points while commits keep arriving; after each
/// restart it resumes, and in the end every commit produced its event exactly once and the
/// store matches the head.
#[test]
fn survives_sigkill_at_any_point_with_every_event_exactly_once() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    drop(d);
    let mut shas = Vec::new();
    let mut n = 0;
    for round in 0..8 {
        let mut d = Daemon::start(repo.path(), state.path(), &[]);
        // Commits arrive while the daemon starts and works.
        for _ in 0..6 {
            n += 1;
            set_description(&repo, &format!("rev {n}"));
            shas.push(repo.commit(&format!("rev {n}")));
            std::thread::sleep(Duration::from_millis(fastrand_ms(round, n)));
        }
        d.kill9();
    }
    let d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_attempted(shas.last().unwrap());
    let events = d.all_events();
    let mut per_commit: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        assert_eq!(e["event_type"], "config.changed", "{e}");
        *per_commit
            .entry(e["payload"]["commit"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    for sha in &shas {
        assert_eq!(
            per_commit.get(sha),
            Some(&1),
            "commit {sha}: {per_commit:?}"
        );
    }
    assert_eq!(per_commit.len(), shas.len());
    // Ids are dense and in commit order.
    let ids: Vec<u64> = events.iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    let order: Vec<&str> = events
        .iter()
        .map(|e| e["payload"]["commit"].as_str().unwrap())
        .collect();
    assert_eq!(order, shas.iter().map(String::as_str).collect::<Vec<_>>());
    let svc = d.get("/api/v1/services/payments");
    assert_eq!(svc["spec"]["description"], format!("rev {n}"));
}

/// A spread of delays so kills land before, during and after processing.
fn fastrand_ms(round: usize, n: usize) -> u64 {
    ((round * 37 + n * 53) % 90) as u64
}

/// `auto_promote` proposes the promotion as a branch of the config repository; once it is merged,
/// the daemon reconciles it and emits `promotion.completed` with the promotion id of the trailer.
#[test]
fn auto_promote_proposes_a_branch_and_completes_when_merged() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let path = "environments/dev/scenarios/card-declined.yaml";
    let sc = repo
        .read(path)
        .lines()
        .map(|l| {
            if l.starts_with("version:") {
                "version: 7".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    repo.write(path, &sc);
    let sha = repo.commit("card-declined v7 in dev");
    d.wait_attempted(&sha);
    // The promotion branch appears in the repository.
    let branch = "mockops/auto-promote-to-test/promote-scenario-card-declined-test";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let git = git2::Repository::open(repo.path()).unwrap();
    let tip = loop {
        if let Ok(b) = git.find_branch(branch, git2::BranchType::Local) {
            break b.get().peel_to_commit().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no promotion branch: {}\n{}",
            d.get("/api/v1/executions?pipeline=auto-promote-to-test"),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let message = tip.message().unwrap().to_string();
    assert!(
        message.contains("Mockops-Promotion-Id: promo-"),
        "{message}"
    );
    let promoted = tip
        .tree()
        .unwrap()
        .get_path(std::path::Path::new(
            "environments/test/scenarios/card-declined.yaml",
        ))
        .unwrap();
    let blob = git.find_blob(promoted.id()).unwrap();
    assert!(String::from_utf8_lossy(blob.content()).contains("version: 7"));
    // A reviewer merges it (fast-forward).
    let tip_id = tip.id();
    repo.reset_hard(&tip_id.to_string());
    let st = d.wait_attempted(&tip_id.to_string());
    assert_eq!(st["last_attempted_status"], "applied");
    let events = d.all_events();
    let done = of_type(&events, "promotion.completed");
    assert_eq!(done.len(), 1, "{events:#?}");
    let p = &done[0]["payload"];
    assert_eq!(p["entity_type"], "scenario");
    assert_eq!(p["entity_id"], "card-declined");
    assert_eq!(p["from_environment"], "dev");
    assert_eq!(p["to_environment"], "test");
    assert!(message.contains(p["promotion_id"].as_str().unwrap()));
    let published: Vec<_> = of_type(&events, "scenario.published")
        .into_iter()
        .filter(|e| e["payload"]["environment"] == "test")
        .collect();
    assert_eq!(published.len(), 1);
}

/// A remote that goes away: the daemon backs off, says why in `status`, and keeps serving the
/// last applied state; when the remote is back, it catches up.
#[test]
fn unreachable_remote_keeps_serving_the_last_good_state() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    let mut d = Daemon::start_remote(&url, state.path(), &["--branch", "main"]);
    d.wait_ready();
    // The remote disappears.
    let moved = repo.path().with_extension("away");
    std::fs::rename(repo.path(), &moved).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let st = loop {
        let st = d.get("/api/v1/status");
        if st["consecutive_failures"].as_u64().unwrap_or(0) >= 1 {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure seen: {st}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st["last_error"].as_str().unwrap().len() > 10, "{st}");
    assert!(st["last_applied"]["sha"].is_string());
    assert_eq!(http("GET", &d.url("/readyz"), None, None).unwrap().0, 200);
    assert_eq!(
        d.get("/api/v1/services/payments")["spec"]["name"],
        "payments"
    );
    let (_, metrics) = http("GET", &d.url("/metrics"), None, None).unwrap();
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("mockops_failures_total{kind=")
    );
    // Back again, with a new commit: the daemon catches up.
    std::fs::rename(&moved, repo.path()).unwrap();
    set_description(&repo, "back");
    let sha = repo.commit("back");
    d.wait_attempted(&sha);
}

/// `mockops sync` makes a daemon that would not look for an hour fetch and apply now, waits for
/// that pass, and exits 1 when the head it reached is invalid.
#[test]
fn sync_fetches_and_applies_now_and_reports_an_invalid_head() {
    let repo = Repo::example();
    let state = tempfile::tempdir().unwrap();
    let url = format!("file://{}", repo.path().display());
    let mut d = Daemon::start_remote(
        &url,
        state.path(),
        &["--branch", "main", "--poll-interval", "1h"],
    );
    d.wait_ready();
    let sync = |extra: &[&str]| {
        let out = std::process::Command::new(crate::support::bin())
            .args(["sync", "--api", &d.url(""), "--api-token-file"])
            .arg(state.path().join("api-token"))
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    set_description(&repo, "synced on request");
    let sha = repo.commit("synced on request");
    std::thread::sleep(Duration::from_millis(300));
    assert_ne!(d.get("/api/v1/status")["head"], sha.as_str(), "no poll yet");
    let (code, out, err) = sync(&[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!("last applied:    {}", &sha[..12])),
        "{out}"
    );
    assert_eq!(d.get("/api/v1/status")["last_applied"]["sha"], sha.as_str());

    repo.write(SERVICE, "name: [unclosed\n");
    let bad = repo.commit("broken");
    let (code, out, err) = sync(&["--format", "json"]);
    assert_eq!(code, Some(1), "{out}{err}");
    let status: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(status["last_attempted"]["sha"], bad.as_str());
    assert_eq!(status["last_attempted_status"], "invalid");
    assert_eq!(status["last_applied"]["sha"], sha.as_str());

    // Without the token, nothing is requested.
    let (status, body) = http("POST", &d.url("/api/v1/sync"), None, None).unwrap();
    assert_eq!(status, 401, "{body}");
}
