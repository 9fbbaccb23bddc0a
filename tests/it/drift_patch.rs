//! The drift fix end to end with the real daemon binary: open incidents in the daemon's store
//! -> a `drift.threshold_exceeded` run of the example `drift-gitops-pr` pipeline's `create_pr`
//! with `from_drift` -> one pull request in the GitHub API emulator whose spec diff is the
//! minimal patch; more incidents update the same pull request; too few observations open
//! nothing. `mockops drift patch` prints the same proposal.
//!
//! The daemon holds its store's lock while it runs, so incidents are written with the daemon
//! stopped, as the drift writer would have left them.

use std::path::Path;
use std::time::{Duration, Instant};

use mockops::drift::{Direction, Incident, IncidentKind, IncidentState, Location};
use mockops::store::Store;
use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, http};
use crate::support::github::GitHubEmulator;

const CONFIG_REPO: &str = "example/mock-config";
const SPEC: &str = "specs/payments/openapi.yaml";

fn incident(
    kind: IncidentKind,
    spec_pointer: &str,
    pointer: &str,
    status: u16,
    samples: Vec<Json>,
    count: u64,
) -> Incident {
    let location = Location {
        service: "payments".into(),
        method: "GET".into(),
        path: "/charges/{id}".into(),
        operation_id: Some("getCharge".into()),
        direction: Direction::Response,
        status,
        content_type: Some("application/json".into()),
        pointer: pointer.into(),
        spec_file: SPEC.into(),
        spec_pointer: spec_pointer.into(),
    };
    Incident {
        id: Incident::signature(kind, &location),
        kind,
        location,
        expected: String::new(),
        observed: String::new(),
        count,
        first_seen: "2026-12-01T10:00:00Z".into(),
        last_seen: "2026-12-01T12:00:00Z".into(),
        // Seen just now as far as the quiet window is concerned (the daemon resolves incidents
        // not seen for `resolve_after_hours`); the text times stay fixed for the snapshots.
        last_seen_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .expect("clock after 1970"),
        samples,
        state: IncidentState::Open,
        resolved_at: None,
        spec_sha: None,
    }
}

fn status_enum(count: u64) -> Incident {
    incident(
        IncidentKind::EnumValueNotInSpec,
        "/components/schemas/Charge/properties/status",
        "/status",
        200,
        vec![json!("refunded")],
        count,
    )
}

fn rate_limited() -> Incident {
    incident(
        IncidentKind::UndeclaredStatus,
        "/paths/~1charges~1{id}/get/responses",
        "",
        429,
        vec![
            json!({"code": "rate_limited", "retry_in": 2}),
            json!({"code": "rate_limited", "retry_in": 30}),
        ],
        4,
    )
}

fn fractional_amount() -> Incident {
    incident(
        IncidentKind::TypeMismatch,
        "/components/schemas/Charge/properties/amount",
        "/amount",
        200,
        vec![json!(12.5), json!(3)],
        3,
    )
}

fn put(state: &Path, incidents: &[Incident]) {
    let (store, _) = Store::open(state).expect("the state directory is free");
    store.put_incidents(incidents).expect("put");
}

fn start(repo: &Path, state: &Path, api_url: &str) -> Daemon {
    let mut d = Daemon::start_env(
        repo,
        state,
        &[],
        &[("GITHUB_API_URL", api_url), ("GITHUB_TOKEN", "ghp_drift")],
    );
    d.wait_ready();
    let head = git2::Repository::open(repo)
        .expect("repo")
        .head()
        .expect("head")
        .peel_to_commit()
        .expect("commit")
        .id()
        .to_string();
    d.wait_attempted(&head);
    d
}

/// Runs the pipeline on a `drift.threshold_exceeded` for payments (only mockops emits those,
/// so it is given to the pipeline's trigger) and waits for the `n`th execution of the
/// pipeline to finish; returns it.
fn trigger(d: &Daemon, n: usize) -> Json {
    let body = json!({
        "event_type": "drift.threshold_exceeded",
        "workspace_id": "workspace-payments-456",
        "payload": {
            "service": "payments",
            "spec_path": SPEC,
            "endpoint": "GET /charges/{id}",
            "drift_count": 7,
            "threshold": 5,
            "drift_data": {"incidents": 2, "window_hours": 24}
        }
    });
    let (status, v) = http(
        "POST",
        &d.url("/api/v1/pipelines/drift-gitops-pr/trigger"),
        Some(serde_json::to_vec(&body).expect("json")),
        Some(&d.auth()),
    )
    .expect("post");
    assert!((200..300).contains(&status), "{status}: {v}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let page = d.get("/api/v1/executions?pipeline=drift-gitops-pr");
        let finished: Vec<Json> = page["executions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["status"] == "succeeded" || e["status"] == "failed")
            .collect();
        if finished.len() >= n {
            let id = finished[0]["id"].as_str().expect("id").to_string();
            let full = d.get(&format!("/api/v1/executions/{id}"));
            assert_eq!(full["status"], "succeeded", "{full:#}\n{}", d.log_text());
            return full;
        }
        assert!(
            Instant::now() < deadline,
            "no execution finished: {page}\n{}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli_patch(d: &Daemon) -> String {
    let out = std::process::Command::new(crate::support::bin())
        .args([
            "drift",
            "patch",
            "payments",
            "--api",
            &d.url(""),
            "--api-token-file",
        ])
        .arg(d.state_dir.join("api-token"))
        .env_remove("MOCKOPS_API_TOKEN")
        .output()
        .expect("run mockops");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn diff(before: &str, after: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header("a/spec", "b/spec")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_incidents_become_one_pull_request_per_service_updated_in_place() {
    let emu = GitHubEmulator::start().await;
    let repo = Repo::example();
    // The daemon's own budget for payments stays quiet: this test drives the pipeline with
    // its own events (the whole loop with the daemon's events is `drift_loop`).
    let quiet = repo
        .read("services/payments.yaml")
        .replace("max_breaking_changes: 0", "max_breaking_changes: 100");
    repo.write("services/payments.yaml", &quiet);
    repo.commit("payments: a budget this test does not cross");
    let original = repo.read(SPEC);
    emu.create_repo(CONFIG_REPO, &[(SPEC, original.as_str())]);
    let api_url = emu.api_url();
    let state = tempfile::tempdir().expect("state");
    let (repo_path, state_path) = (repo.path().to_path_buf(), state.path().to_path_buf());

    // Seen once: below min_samples, nothing is proposed and nothing opened.
    put(&state_path, &[status_enum(1)]);
    let (first_cli, first) = tokio::task::spawn_blocking({
        let (repo_path, state_path, api_url) =
            (repo_path.clone(), state_path.clone(), api_url.clone());
        move || {
            let mut d = start(&repo_path, &state_path, &api_url);
            // The proposal is a read: it needs a token, and names only applied services.
            let (status, _) =
                http("GET", &d.url("/api/v1/drift/patch/payments"), None, None).expect("get");
            assert_eq!(status, 401);
            for name in ["nope", "..%2F..%2Fetc", "payments%2F..%2Fauth"] {
                let (status, body) = http(
                    "GET",
                    &d.url(&format!("/api/v1/drift/patch/{name}")),
                    None,
                    Some(&d.auth()),
                )
                .expect("get");
                assert_eq!(status, 404, "{name}: {body}");
            }
            let api = d.get("/api/v1/drift/patch/payments");
            assert_eq!(api["diff"], "");
            assert_eq!(api["accepted"], json!([]));
            let exec = trigger(&d, 1);
            let cli = cli_patch(&d);
            assert!(d.terminate(), "{}", d.log_text());
            (cli, exec)
        }
    })
    .await
    .expect("phase 1");
    assert!(emu.pulls(CONFIG_REPO).is_empty(), "nothing is opened");
    let text = first.to_string();
    assert!(text.contains("nothing_to_propose"), "{first:#}");
    insta::assert_snapshot!("drift_patch_cli_nothing", first_cli);

    // Seen often enough: one pull request with the minimal patch and the evidence.
    put(&state_path, &[status_enum(5), rate_limited()]);
    let second_cli = tokio::task::spawn_blocking({
        let (repo_path, state_path, api_url) =
            (repo_path.clone(), state_path.clone(), api_url.clone());
        move || {
            let mut d = start(&repo_path, &state_path, &api_url);
            trigger(&d, 2);
            let cli = cli_patch(&d);
            assert!(d.terminate(), "{}", d.log_text());
            cli
        }
    })
    .await
    .expect("phase 2");
    let pulls = emu.pulls(CONFIG_REPO);
    assert_eq!(pulls.len(), 1, "exactly one pull request");
    let pr = pulls[0].clone();
    let patched = emu
        .file(CONFIG_REPO, &pr.head, SPEC)
        .expect("the patched spec is on the branch");
    insta::assert_snapshot!("drift_patch_pr_diff", diff(&original, &patched));
    insta::assert_snapshot!("drift_patch_cli", second_cli);
    assert!(pr.body.contains("enum_value_not_in_spec"), "{}", pr.body);
    assert!(pr.body.contains("undeclared_status"), "{}", pr.body);
    assert!(pr.body.contains("`\"refunded\"`"), "{}", pr.body);
    let report = emu
        .file(CONFIG_REPO, &pr.head, "drift-report.json")
        .expect("the report is on the branch");
    assert_eq!(
        serde_json::from_str::<Json>(&report).expect("the report is JSON"),
        json!({"incidents": 2, "window_hours": 24})
    );
    let head_before = emu.branch_sha(CONFIG_REPO, &pr.head).expect("branch");

    // More observed: the same pull request is updated, none is added.
    put(&state_path, &[fractional_amount()]);
    tokio::task::spawn_blocking({
        let (repo_path, state_path, api_url) =
            (repo_path.clone(), state_path.clone(), api_url.clone());
        move || {
            let mut d = start(&repo_path, &state_path, &api_url);
            trigger(&d, 3);
            assert!(d.terminate(), "{}", d.log_text());
        }
    })
    .await
    .expect("phase 3");
    let pulls = emu.pulls(CONFIG_REPO);
    assert_eq!(pulls.len(), 1, "still one pull request");
    assert_eq!(pulls[0].number, pr.number);
    assert_eq!(pulls[0].head, pr.head, "the branch is stable per service");
    assert_ne!(
        emu.branch_sha(CONFIG_REPO, &pr.head).expect("branch"),
        head_before,
        "the branch moved"
    );
    let patched = emu.file(CONFIG_REPO, &pr.head, SPEC).expect("spec");
    assert!(
        patched.contains("amount: {type: number}"),
        "{}",
        diff(&original, &patched)
    );
    assert!(pulls[0].body.contains("type_mismatch"), "{}", pulls[0].body);
    emu.assert_conformant();
}
