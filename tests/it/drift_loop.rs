//! The whole drift loop with nothing staged: a real upstream on loopback that deviates from its
//! spec -> probes -> the exact incidents -> (seen `min_samples` times) the budget is exceeded ->
//! one `drift.threshold_exceeded` -> the example `drift-gitops-pr` pipeline -> one pull request
//! in the GitHub API emulator whose spec diff is the minimal patch -> a reviewer merges it ->
//! the daemon, following the same repository, reconciles the merge and the incidents resolve,
//! the budget recovers, and later probes find nothing.

use std::time::Duration;

use axum::response::IntoResponse;
use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, http};
use crate::support::github::GitHubEmulator;

const CONFIG_REPO: &str = "example/mock-config";
const SPEC_PATH: &str = "specs/pets.yaml";

/// The spec as a person wrote it: comments, flow mappings and quoting that a patch must keep.
const SPEC: &str = r#"openapi: 3.0.3
info:
  title: Pets   # the public pet registry
  version: "1.0"
paths:
  /pets/{id}:
    get:
      operationId: getPet
      parameters:
        - {name: id, in: path, required: true, example: "7", schema: {type: string}}
      responses:
        '200':
          description: One pet.
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Pet'}
components:
  schemas:
    # Closed on purpose: anything new must be reviewed.
    Pet:
      type: object
      additionalProperties: false
      required: [id, name, status]
      properties:
        id: {type: integer}
        name: {type: string}
        status:
          type: string
          enum: [available, sold]   # the states the shop knows
"#;

/// Answers every pet with a status the spec does not know and a property it does not declare.
async fn upstream() -> std::net::SocketAddr {
    async fn answer() -> axum::response::Response {
        (
            [("content-type", "application/json")],
            json!({"id": 7, "name": "Rex", "status": "pending", "color": "brown"}).to_string(),
        )
            .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().fallback(answer)).await;
    });
    addr
}

fn probe(d: &Daemon) -> Json {
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/drift/probe/pets"),
        None,
        Some(&d.auth()),
    )
    .expect("probe");
    assert_eq!(status, 200, "{body}");
    body
}

fn incidents(d: &Daemon, query: &str) -> Vec<Json> {
    d.get(&format!("/api/v1/drift/incidents?service=pets{query}"))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn kinds(items: &[Json]) -> Vec<String> {
    let mut k: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{} {} {}",
                i["kind"].as_str().unwrap_or(""),
                i["location"]["pointer"].as_str().unwrap_or(""),
                i["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_to_a_merged_pull_request_that_resolves_the_drift() {
    let up = upstream().await;
    let emu = std::sync::Arc::new(GitHubEmulator::start().await);
    let pipeline = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/repo-layout/pipelines/drift-gitops-pr.yaml"),
    )
    .expect("the example drift-gitops-pr pipeline");
    let service = format!(
        "name: pets\nworkspace_id: ws-pets\nspec: {SPEC_PATH}\nupstream: http://{up}\ndrift_budget:\n  max_open_incidents: 1\nprobe:\n  enabled: false\n"
    );
    emu.create_repo(
        CONFIG_REPO,
        &[
            (
                "mockops.yaml",
                "drift:\n  min_samples: 2\n  resolve_after_hours: 1000\n",
            ),
            ("services/pets.yaml", service.as_str()),
            (SPEC_PATH, SPEC),
            ("pipelines/drift-gitops-pr.yaml", pipeline.as_str()),
        ],
    );
    let repo_dir = emu.repo_dir(CONFIG_REPO);
    let api_url = emu.api_url();
    let state = tempfile::tempdir().expect("state");
    let state_path = state.path().to_path_buf();

    let emu2 = emu.clone();
    tokio::task::spawn_blocking(move || {
        let emu = emu2;
        let mut d = Daemon::start_env(
            &repo_dir,
            &state_path,
            &["--branch", "main"],
            &[("GITHUB_API_URL", &api_url), ("GITHUB_TOKEN", "ghp_drift")],
        );
        d.wait_ready();
        d.wait_for("the contract of pets", || {
            (d.get("/api/v1/drift")["services"]
                .as_array()
                .map_or(0, Vec::len)
                == 1)
                .then_some(())
        });

        // Seen once: two incidents, below `min_samples`, so no budget crossing and no pull
        // request. The probe asks for the pet the spec's example names.
        let first = probe(&d);
        assert_eq!(first["results"][0]["request"], "GET /pets/7", "{first}");
        let open = d.wait_for("two incidents", || {
            let items = incidents(&d, "");
            (items.len() == 2).then_some(items)
        });
        assert_eq!(
            kinds(&open),
            vec![
                "enum_value_not_in_spec /status open",
                "undocumented_property /color open"
            ]
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(d.events_of("drift.threshold_exceeded").is_empty());
        assert!(emu.pulls(CONFIG_REPO).is_empty());

        // Seen twice: confirmed, over the budget of one: one event, one pull request.
        let _ = probe(&d);
        let exceeded = d.wait_for("the threshold event", || {
            let e = d.events_of("drift.threshold_exceeded");
            (!e.is_empty()).then_some(e)
        });
        assert_eq!(exceeded.len(), 1);
        assert_eq!(exceeded[0]["payload"]["drift_count"], 2);
        assert_eq!(exceeded[0]["payload"]["threshold"], 1);
        let pr = d.wait_for("the pull request", || {
            emu.pulls(CONFIG_REPO).into_iter().next()
        });
        let patched = emu
            .file(CONFIG_REPO, &pr.head, SPEC_PATH)
            .expect("the patched spec is on the branch");
        let diff = similar::TextDiff::from_lines(SPEC, &patched)
            .unified_diff()
            .context_radius(1)
            .header("a/specs/pets.yaml", "b/specs/pets.yaml")
            .to_string();
        insta::assert_snapshot!("drift_loop_pr_diff", diff);
        assert!(pr.body.contains("enum_value_not_in_spec"), "{}", pr.body);
        assert!(pr.body.contains("undocumented_property"), "{}", pr.body);
        assert!(pr.title.contains("Drift Violation"), "{}", pr.title);

        // A third probe changes nothing: the crossing already ran its pipeline.
        let _ = probe(&d);
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(d.events_of("drift.threshold_exceeded").len(), 1);
        assert_eq!(
            emu.pulls(CONFIG_REPO).len(),
            1,
            "never a second pull request"
        );

        // A reviewer merges it; the daemon follows the same repository.
        let merged = emu.merge_pull(CONFIG_REPO, pr.number);
        let (status, body) =
            http("POST", &d.url("/api/v1/sync"), None, Some(&d.auth())).expect("sync");
        assert!((200..300).contains(&status), "{status}: {body}");
        let applied = d.wait_attempted(&merged);
        assert_eq!(applied["last_applied"]["sha"], merged, "{applied:#}");
        let resolved = d.wait_for("the incidents resolved by the merge", || {
            let items = incidents(&d, "&state=resolved");
            (items.len() == 2).then_some(items)
        });
        assert_eq!(
            kinds(&resolved),
            vec![
                "enum_value_not_in_spec /status resolved_by_spec",
                "undocumented_property /color resolved_by_spec"
            ]
        );
        let recovered = d.wait_for("the recovered event", || {
            let e = d.events_of("drift.recovered");
            (!e.is_empty()).then_some(e)
        });
        assert_eq!(recovered.len(), 1);

        // The upstream has not changed; the spec now says what it does: nothing opens again.
        let _ = probe(&d);
        let _ = probe(&d);
        std::thread::sleep(Duration::from_millis(500));
        assert!(incidents(&d, "&state=open").is_empty());
        assert_eq!(d.events_of("drift.threshold_exceeded").len(), 1);
        assert_eq!(emu.pulls(CONFIG_REPO).len(), 1);
        assert!(d.terminate(), "{}", d.log_text());
    })
    .await
    .expect("the drift loop");
    emu.assert_conformant();
}
