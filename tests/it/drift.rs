//! Contract drift against a real upstream on loopback that deviates from its spec in
//! controlled ways (and answers valid edge cases that must stay silent): probe -> the exact
//! incident set -> (once seen `min_samples` times) budget exceeded -> one event -> one pipeline
//! run, even after more probes
//! and a restart -> a commit whose spec accepts the values resolves them and emits
//! `drift.recovered`. Also: unreachable and refused upstreams, hostile bodies, a spec changing
//! while scheduled probes run, and the token on every drift endpoint.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, http};
use crate::support::receivers::HttpReceiver;

/// The spec: `GET /pets/{id}` (a closed Pet), `GET /broken` (declares 200 only), hostile
/// `GET /deep`, `GET /huge`, `GET /bytes`, `GET /big`.
fn spec(enum_values: &str, broken_statuses: &str) -> String {
    format!(
        r##"openapi: 3.0.3
info: {{title: pets, version: "1"}}
paths:
  /pets/{{id}}:
    get:
      operationId: getPet
      parameters:
        - {{name: id, in: path, required: true, schema: {{type: string, enum: ["1"]}}}}
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: {{$ref: "#/components/schemas/Pet"}}
  /broken:
    get:
      operationId: broken
      responses:
{broken_statuses}
  /deep:
    get:
      responses:
        "200":
          description: nested
          content:
            application/json:
              schema: {{type: array}}
  /huge:
    get:
      responses:
        "200":
          description: many
          content:
            application/json:
              schema: {{type: array, items: {{type: integer}}}}
  /bytes:
    get:
      responses:
        "200":
          description: not UTF-8
          content:
            application/json:
              schema: {{type: object}}
  /big:
    get:
      responses:
        "200":
          description: over the cap
          content:
            application/json:
              schema: {{type: string}}
components:
  schemas:
    Pet:
      type: object
      additionalProperties: false
      required: [id, name, status]
      properties:
        id: {{type: integer}}
        name: {{type: string}}
        nickname: {{type: string, nullable: true}}
        status: {{type: string, enum: [{enum_values}]}}
        born: {{type: string, format: date-time}}
        weight: {{type: number}}
        extra_open: {{$ref: "common.yaml#/components/schemas/Open"}}
        animal:
          oneOf: [{{$ref: "#/components/schemas/Cat"}}, {{$ref: "#/components/schemas/Dog"}}]
          discriminator: {{propertyName: kind}}
        owner_email: {{type: string}}
    Cat:
      type: object
      required: [kind]
      properties: {{kind: {{type: string}}, meow: {{type: boolean}}}}
    Dog:
      type: object
      required: [kind]
      properties: {{kind: {{type: string}}, bark: {{type: boolean}}}}
"##
    )
}

const COMMON: &str = "components:\n  schemas:\n    Open:\n      type: object\n      properties: {label: {type: string}}\n";

const ONLY_200: &str = "        \"200\":\n          description: fine\n";
const WITH_500: &str = "        \"200\":\n          description: fine\n        \"500\":\n          description: broken\n          content:\n            text/plain:\n              schema: {type: string}\n";

/// The upstream: deviations on `/pets/1` and `/broken`, hostile bodies elsewhere.
async fn upstream() -> std::net::SocketAddr {
    async fn answer(req: axum::extract::Request) -> Response {
        let json_ct = [("content-type", "application/json")];
        match req.uri().path() {
            p if p.starts_with("/pets/") => (
                json_ct,
                json!({
                    // A type mismatch, an enum value not in spec, a bad date-time, an
                    // undocumented property; `name` is missing.
                    "id": "seven", "status": "pending", "born": "yesterday", "extra": 1,
                    // Valid edge cases: nullable null, an integer for a number, an extra
                    // property where additionalProperties is open, a oneOf that both
                    // branches accept (the discriminator decides).
                    "nickname": null, "weight": 3,
                    "extra_open": {"label": "x", "more": true},
                    "animal": {"kind": "Cat", "meow": true, "bark": true},
                    "owner_email": "ann@example.com"
                })
                .to_string(),
            )
                .into_response(),
            "/broken" => (StatusCode::INTERNAL_SERVER_ERROR, "upstream broke").into_response(),
            "/deep" => (
                json_ct,
                format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)),
            )
                .into_response(),
            "/huge" => {
                let mut s = String::with_capacity(2_000_002);
                s.push('[');
                for i in 0..500_000 {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push('1');
                }
                s.push(']');
                (json_ct, s).into_response()
            }
            "/bytes" => (json_ct, b"{\"a\": \"\xff\xfe\"}".to_vec()).into_response(),
            "/big" => (json_ct, format!("\"{}\"", "x".repeat(3 * 1024 * 1024))).into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new().fallback(answer);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

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
    commit_all(r.path(), "drift fixture");
    r
}

fn probe(d: &Daemon, service: &str) -> Json {
    let (status, body) = http(
        "POST",
        &d.url(&format!("/api/v1/drift/probe/{service}")),
        None,
        Some(&d.auth()),
    )
    .expect("probe");
    assert_eq!(status, 200, "{body}");
    body
}

fn incidents(d: &Daemon, query: &str) -> Vec<Json> {
    d.get(&format!("/api/v1/drift/incidents?{query}"))["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The incidents without what changes from run to run (ids stay: they are signatures).
fn summary(items: &[Json]) -> Json {
    let mut rows: Vec<Json> = items
        .iter()
        .map(|i| {
            let l = &i["location"];
            json!({
                "id": i["id"], "kind": i["kind"], "state": i["state"],
                "endpoint": format!("{} {}", l["method"].as_str().unwrap_or(""), l["path"].as_str().unwrap_or("")),
                "status": l["status"], "pointer": l["pointer"],
                "spec_file": l["spec_file"], "spec_pointer": l["spec_pointer"],
                "expected": i["expected"], "observed": i["observed"], "samples": i["samples"],
            })
        })
        .collect();
    rows.sort_by_key(|r| r.to_string());
    Json::Array(rows)
}

#[test]
fn probes_find_exactly_the_drift_budgets_fire_once_and_a_fixing_commit_resolves_it() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let up = rt.block_on(upstream());
    let rx = rt.block_on(HttpReceiver::start());
    let r = repo(&[
        (
            "services/pets.yaml",
            format!(
                "name: pets\nworkspace_id: ws-pets\nspec: specs/pets.yaml\nupstream: http://{up}\ndrift_budget:\n  max_open_incidents: 5\nprobe:\n  enabled: false\n"
            ),
        ),
        (
            "services/down.yaml",
            format!(
                "name: down\nworkspace_id: ws-down\nspec: specs/pets.yaml\nupstream: http://127.0.0.1:{}\n",
                crate::support::receivers::closed_port()
            ),
        ),
        (
            "services/elsewhere.yaml",
            "name: elsewhere\nworkspace_id: ws-else\nspec: specs/pets.yaml\nupstream: http://10.255.255.1:9\n".to_string(),
        ),
        ("specs/pets.yaml", spec("available, sold", ONLY_200)),
        ("specs/common.yaml", COMMON.to_string()),
        ("mockops.yaml", "drift:\n  resolve_after_hours: 1000\n  min_samples: 2\n".to_string()),
        (
            "pipelines/on-drift.yaml",
            format!(
                "name: on-drift\ndefinition:\n  triggers:\n    - event: drift.threshold_exceeded\n  steps:\n    - name: tell\n      step_type: notify\n      config:\n        type: webhook\n        webhook_url: {}\n        message: \"drift {{{{event.service}}}} {{{{event.drift_count}}}}/{{{{event.threshold}}}}\"\n",
                rx.url("/drift")
            ),
        ),
    ]);
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(r.path(), state.path(), &["--drift-max-body", "2MiB"]);
    d.wait_ready();

    // Every drift endpoint wants the token.
    for (method, path) in [
        ("GET", "/api/v1/drift"),
        ("GET", "/api/v1/drift/incidents"),
        ("GET", "/api/v1/drift/incidents/0000000000000000"),
        ("POST", "/api/v1/drift/probe/pets"),
    ] {
        let (status, _) = http(method, &d.url(path), None, None).expect("request");
        assert_eq!(status, 401, "{method} {path}");
    }
    let status = d.wait_for("the contracts", || {
        let s = d.get("/api/v1/drift");
        (s["services"].as_array().map_or(0, Vec::len) == 3).then_some(s)
    });
    assert_eq!(status["services"][0]["status"], "unobserved");

    // One probe round through the CLI.
    let out = std::process::Command::new(crate::support::bin())
        .args(["drift", "--api", &d.url(""), "probe", "pets"])
        .env("MOCKOPS_API_TOKEN_FILE", state.path().join("api-token"))
        .output()
        .expect("cli");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("GET /pets/1 -> 200"), "{text}");
    assert!(text.contains("GET /broken -> 500"), "{text}");
    assert!(text.contains("undeclared_status"), "{text}");
    assert!(
        text.contains("body not validated: skipped: too deep"),
        "{text}"
    );
    assert!(text.contains("body not validated: not JSON"), "{text}");
    assert!(text.contains("over the size cap"), "{text}");

    // Exactly the expected incidents.
    let open = d.wait_for("six incidents", || {
        let items = incidents(&d, "service=pets");
        (items.len() >= 6).then_some(items)
    });
    insta::assert_json_snapshot!("drift_incidents_after_probe", summary(&open));

    // Seen once, they do not count toward the budget yet (`min_samples: 2`).
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.events_of("drift.threshold_exceeded").is_empty());

    // Seen twice: the budget (5 open incidents) is exceeded: one event, one pipeline run.
    probe(&d, "pets");
    let exceeded = d.wait_for("the threshold event", || {
        let e = d.events_of("drift.threshold_exceeded");
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(exceeded.len(), 1);
    let p = &exceeded[0]["payload"];
    assert_eq!(p["service"], "pets");
    assert_eq!(p["endpoint"], "*");
    assert_eq!(p["drift_count"], 6);
    assert_eq!(p["threshold"], 5);
    assert_eq!(
        p["drift_data"]["incidents"].as_array().map(Vec::len),
        Some(6)
    );
    rt.block_on(rx.wait_for(1));

    // More probes and a restart do not emit it again.
    probe(&d, "pets");
    assert!(d.terminate(), "clean shutdown: {}", d.log_text());
    let mut d = Daemon::start(r.path(), state.path(), &["--drift-max-body", "2MiB"]);
    d.wait_ready();
    d.wait_for("the contracts after the restart", || {
        (d.get("/api/v1/drift")["services"]
            .as_array()
            .map_or(0, Vec::len)
            == 3)
            .then_some(())
    });
    probe(&d, "pets");
    d.wait_for("the counts of the later probes", || {
        let items = incidents(&d, "service=pets");
        items
            .iter()
            .all(|i| i["count"].as_u64() == Some(4))
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.events_of("drift.threshold_exceeded").len(), 1);
    assert_eq!(rx.requests().len(), 1, "the pipeline ran once");
    let status = d.get("/api/v1/drift");
    let pets = status["services"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["service"] == "pets").cloned())
        .expect("pets");
    assert_eq!(pets["status"], "reachable");
    assert_eq!(pets["exceeded"], true);
    assert_eq!(pets["open_by_kind"]["type_mismatch"], 1);
    // Redacted samples: no e-mail address leaves the daemon (it is valid, so never a sample;
    // the evidence bodies are redacted too).
    let one = d.get(&format!(
        "/api/v1/drift/incidents/{}",
        open[0]["id"].as_str().unwrap_or_default()
    ));
    assert_eq!(one["id"], open[0]["id"]);
    let (nf, _) = http(
        "GET",
        &d.url("/api/v1/drift/incidents/ffffffffffffffff"),
        None,
        Some(&d.auth()),
    )
    .expect("request");
    assert_eq!(nf, 404);

    // Unreachable and refused upstreams: their own state, no incidents.
    let down = probe(&d, "down");
    assert!(down["results"][0]["error"].as_str().is_some(), "{down}");
    let refused = probe(&d, "elsewhere");
    let why = refused["results"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(why.contains("--allow-outbound"), "{why}");
    d.wait_for("unreachable states", || {
        let s = d.get("/api/v1/drift");
        let st = |n: &str| {
            s["services"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["service"] == n))
                .map(|x| x["status"].clone())
        };
        (st("down") == Some(json!("unreachable")) && st("elsewhere") == Some(json!("unreachable")))
            .then_some(())
    });
    assert!(incidents(&d, "service=down").is_empty());
    assert!(incidents(&d, "service=elsewhere").is_empty());
    let (bad, _) = http(
        "GET",
        &d.url("/api/v1/drift/incidents?state=sideways"),
        None,
        Some(&d.auth()),
    )
    .expect("request");
    assert_eq!(bad, 400);

    // A commit whose spec accepts `pending` and declares 500 resolves those two, and the
    // budget recovers (4 open <= 5).
    r.write(
        "specs/pets.yaml",
        &spec("available, sold, pending", WITH_500),
    );
    let sha = r.commit("pets: accept what the upstream says");
    d.wait_attempted(&sha);
    let resolved = d.wait_for("incidents resolved by the spec", || {
        let items = incidents(&d, "service=pets&state=resolved");
        (items.len() == 2).then_some(items)
    });
    let mut kinds: Vec<String> = resolved
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["kind"].as_str().unwrap_or(""),
                i["state"].as_str().unwrap_or("")
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec![
            "enum_value_not_in_spec resolved_by_spec",
            "undeclared_status resolved_by_spec"
        ]
    );
    assert_eq!(incidents(&d, "service=pets").len(), 4);
    let recovered = d.wait_for("the recovered event", || {
        let e = d.events_of("drift.recovered");
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["payload"]["drift_count"], 4);
    // The gauges follow the stored state (the event is stored first).
    let metrics = d.wait_for("the budget gauge back at 0", || {
        let m = http("GET", &d.url("/metrics"), None, None)
            .expect("metrics")
            .1;
        let m = m.as_str().unwrap_or_default().to_string();
        m.contains("mockops_drift_budget_exceeded{service=\"pets\"} 0")
            .then_some(m)
    });
    assert!(
        metrics.contains("mockops_drift_incidents_open{service=\"pets\",kind=\"type_mismatch\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mockops_drift_observations_total{source=\"probe\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mockops_drift_bodies_skipped_total"),
        "{metrics}"
    );
}

/// Scheduled probes keep running while commits change the spec: every incident is checked
/// against the commit applied when it was seen, and the writer never stops.
#[test]
fn a_commit_changing_the_spec_while_probes_run() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let up = rt.block_on(upstream());
    let service = format!(
        "name: pets\nworkspace_id: ws-pets\nspec: specs/pets.yaml\nupstream: http://{up}\nprobe:\n  interval_seconds: 1\n  jitter: 0\n  operations: [getPet, broken]\n"
    );
    let r = repo(&[
        ("services/pets.yaml", service),
        ("specs/pets.yaml", spec("available, sold", ONLY_200)),
        ("specs/common.yaml", COMMON.to_string()),
    ]);
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(r.path(), state.path(), &[]);
    d.wait_ready();
    d.wait_for("scheduled probes", || {
        (incidents(&d, "service=pets").len() == 6).then_some(())
    });
    for round in 0..3 {
        let fixed = round % 2 == 0;
        r.write(
            "specs/pets.yaml",
            &if fixed {
                spec("available, sold, pending", WITH_500)
            } else {
                spec("available, sold", ONLY_200)
            },
        );
        let sha = r.commit(&format!("spec round {round}"));
        d.wait_attempted(&sha);
        let want = if fixed { 4 } else { 6 };
        d.wait_for("the open incidents of the new spec", || {
            let items = incidents(&d, "service=pets");
            (items.len() == want && items.iter().all(|i| i["spec_sha"] == sha)).then_some(())
        });
    }
    let s = d.get("/api/v1/drift");
    assert_eq!(s["services"][0]["status"], "reachable");
    assert!(d.terminate(), "clean shutdown: {}", d.log_text());
}

/// What the config repository may not make probes do: send a credential written in the
/// repository, or probe with a nonsensical schedule.
#[test]
fn probe_policies_are_validated() {
    use mockops::config::load::Loader;
    use mockops::git::revision::DirFiles;
    let dir = tempfile::tempdir().expect("dir");
    let write = |p: &str, c: &str| {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, c).expect("write");
    };
    write("specs/pets.yaml", &spec("available", ONLY_200));
    write("specs/common.yaml", COMMON);
    write(
        "services/pets.yaml",
        "name: pets\nworkspace_id: ws\nspec: specs/pets.yaml\nupstream: http://127.0.0.1:9\nprobe:\n  interval_seconds: 0\n  jitter: 1.5\n  headers:\n    Authorization: Bearer abc123\n    X-Ok: \"${env:PROBE_TOKEN}\"\n    \"bad header\": \"${env:X}\"\n",
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
    insta::assert_debug_snapshot!("drift_probe_config_errors", errors);
}
