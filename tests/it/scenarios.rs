//! Scenarios that run: steps resolved against their services' specs at validation time (the
//! diagnostics as snapshots), and runs through the daemon's gateway with a real loopback
//! upstream (`real`) and a mock (`mock_v3`): one that passes, one whose assertion fails, one
//! whose service's upstream is unreachable. The traffic record carries the scenario and
//! persona tags, every run is stored, its event is emitted once and a pipeline triggers on it,
//! and running needs the write token and the gateway.

use std::path::Path;
use std::time::{Duration, Instant};

use axum::Json as AxumJson;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use mockops::config::diag;
use mockops::config::load::Loader;
use mockops::git::revision::{DirFiles, RevisionFiles};
use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};
use crate::support::receivers::HttpReceiver;
use crate::support::{Fixture, bin};

const AUTH_SPEC: &str = r##"openapi: 3.0.3
info: {title: auth, version: "1"}
paths:
  /login:
    post:
      operationId: Login
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [username, password]
              properties:
                username: {type: string}
                password: {type: string}
      responses:
        "200":
          description: signed in
          content:
            application/json:
              schema:
                type: object
                properties: {token: {type: string}}
  /me:
    get:
      operationId: who_am_i
      parameters:
        - {name: Authorization, in: header, required: true, schema: {type: string}}
        - {name: verbose, in: query, schema: {type: boolean}}
      responses:
        "200":
          description: the user
          content:
            application/json:
              schema:
                type: object
                properties: {user: {type: string}}
"##;

const PAYMENTS_SPEC: &str = r##"openapi: 3.0.3
info: {title: payments, version: "1"}
paths:
  /charges:
    post:
      operationId: createCharge
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [amount, currency]
              properties:
                amount: {type: integer}
                currency: {type: string, enum: [usd, eur]}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Charge"}
              example: {id: ch_1, amount: 100, currency: usd, status: succeeded}
  /charges/{id}:
    get:
      operationId: getCharge
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200":
          description: the charge
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Charge"}
              example: {id: ch_1, amount: 100, currency: usd, status: succeeded}
components:
  schemas:
    Charge:
      type: object
      required: [id, amount, currency, status]
      properties:
        id: {type: string}
        amount: {type: integer}
        currency: {type: string}
        status: {type: string}
"##;

const GHOST_SPEC: &str = r##"openapi: 3.0.3
info: {title: ghost, version: "1"}
paths:
  /ping:
    get:
      operationId: ping
      responses:
        "200": {description: pong}
"##;

const INVENTORY_PROTO: &str = r#"syntax = "proto3";
package inv.v1;
service Inventory {
  rpc ReserveItem(ReserveRequest) returns (Reservation);
}
message ReserveRequest {
  string item_id = 1;
  int32 quantity = 2;
}
message Reservation {
  string reservation_id = 1;
  string item_id = 2;
  int32 quantity = 3;
}
"#;

const CHECKOUT: &str = r#"id: checkout
name: Checkout
version: 1
federation: shop
persona: gold
steps:
  - step: login
    service: auth
    action: login
    username: alice
    password: correct-horse-battery
    expect: {status: 200}
    save: {token: /token}
  - service: auth
    action: WhoAmI
    Authorization: "Bearer {{steps.login.token}}"
    verbose: true
    expect:
      status: 200
      body: {/user: alice}
  - step: pay
    service: payments
    action: create-charge
    amount: 100
    currency: usd
    expect:
      status: 201
      body: {/status: succeeded, /amount: 100}
    save: {charge: /id}
  - service: payments
    action: get_charge
    id: "{{steps.pay.charge}}"
    expect: {body: {/id: ch_1}}
  - step: reserve
    service: inventory
    action: reserve-item
    itemId: item-7
    quantity: 2
    expect: {status: 0}
    save: {reservation: /reservation_id}
"#;

const DECLINED: &str = r#"name: Declined
version: 1
federation: shop
steps:
  - service: payments
    action: createCharge
    amount: 5
    currency: eur
    expect:
      status: 201
      body: {/status: failed}
  - service: payments
    request: {method: GET, path: /charges/ch_1}
"#;

const GHOSTLY: &str = r#"name: Ghostly
version: 1
federation: shop
steps:
  - service: ghost
    action: ping
  - service: payments
    action: getCharge
    id: ch_1
"#;

/// The login upstream: `POST /login` answers a token for the user; `GET /me` says whose
/// token it is, only with the right bearer token.
async fn auth_upstream() -> std::net::SocketAddr {
    async fn login(AxumJson(body): AxumJson<Json>) -> impl IntoResponse {
        let user = body["username"].as_str().unwrap_or("").to_string();
        if body["password"] != "correct-horse-battery" {
            return (StatusCode::UNAUTHORIZED, AxumJson(json!({"error": "no"})));
        }
        (
            StatusCode::OK,
            AxumJson(json!({"token": format!("tok-{user}-9f8e7d")})),
        )
    }
    async fn me(headers: HeaderMap) -> impl IntoResponse {
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer tok-alice-9f8e7d") => (StatusCode::OK, AxumJson(json!({"user": "alice"}))),
            _ => (
                StatusCode::UNAUTHORIZED,
                AxumJson(json!({"error": "bad token"})),
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    let app = axum::Router::new()
        .route("/login", axum::routing::post(login))
        .route("/me", axum::routing::get(me));
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
    commit_all(r.path(), "scenario fixture");
    r
}

fn shop(auth: std::net::SocketAddr, closed: u16, hook: &str) -> Vec<(&'static str, String)> {
    vec![
        ("specs/auth.yaml", AUTH_SPEC.into()),
        ("specs/payments.yaml", PAYMENTS_SPEC.into()),
        ("specs/ghost.yaml", GHOST_SPEC.into()),
        ("specs/inv/v1/inventory.proto", INVENTORY_PROTO.into()),
        (
            "services/inventory.yaml",
            "name: inventory\nworkspace_id: ws-inv\nspec: specs/inv/v1/inventory.proto\nbase_path: /inventory\nreality_level: mock_v3\n".into(),
        ),
        (
            "services/auth.yaml",
            format!("name: auth\nworkspace_id: ws-auth\nspec: specs/auth.yaml\nbase_path: /auth\nreality_level: real\nupstream: http://{auth}\n"),
        ),
        (
            "services/payments.yaml",
            "name: payments\nworkspace_id: ws-pay\nspec: specs/payments.yaml\nbase_path: /payments\nreality_level: mock_v3\n".into(),
        ),
        (
            "services/ghost.yaml",
            format!("name: ghost\nworkspace_id: ws-ghost\nspec: specs/ghost.yaml\nbase_path: /ghost\nreality_level: real\nupstream: http://127.0.0.1:{closed}\nupstream_timeouts: {{connect_ms: 500, response_ms: 1000}}\n"),
        ),
        (
            "federations/shop.yaml",
            "name: shop\nservices:\n  - name: auth\n  - name: payments\n    dependencies: [auth]\n  - name: ghost\n  - name: inventory\n".into(),
        ),
        (
            "environments/dev/personas/gold.yaml",
            "id: gold\nname: Gold customer\nversion: 1\ntraits: {tier: gold, status: succeeded, amount: 100, id: ch_1}\n".into(),
        ),
        ("environments/dev/scenarios/checkout.yaml", CHECKOUT.into()),
        ("environments/dev/scenarios/declined.yaml", DECLINED.into()),
        ("environments/dev/scenarios/ghostly.yaml", GHOSTLY.into()),
        (
            "pipelines/scenario-alarm.yaml",
            format!(
                "name: scenario-alarm\ndefinition:\n  triggers:\n    - event: scenario.failed\n      filters:\n        scenario_id: declined\n  steps:\n    - name: tell\n      step_type: notify\n      config:\n        type: webhook\n        webhook_url: {hook}\n        message: \"{{{{event.scenario_id}}}} run {{{{event.run_id}}}} failed at step {{{{event.failed_step}}}}\"\n"
            ),
        ),
    ]
}

fn run(d: &Daemon, name: &str) -> (u16, Json) {
    http(
        "POST",
        &d.url(&format!("/api/v1/scenarios/{name}/runs")),
        Some(b"{}".to_vec()),
        Some(&d.auth()),
    )
    .expect("run")
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn scenarios_run_through_the_gateway_and_are_recorded() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let auth = rt.block_on(auth_upstream());
    let hook = rt.block_on(HttpReceiver::start());
    let repo = repo(&shop(auth, free_port(), &hook.url("/alarm")));
    let state = tempfile::tempdir().expect("state");
    let gw_port = free_port();
    let gw = format!("127.0.0.1:{gw_port}");
    let mut d = Daemon::start(repo.path(), state.path(), &["--gateway", &gw]);
    d.wait_ready();

    // Passing: the real login's token carried into the next step, the mock's charge id too.
    let (status, ok) = run(&d, "checkout");
    assert_eq!(status, 201, "{ok}");
    assert_eq!(ok["outcome"], "passed", "{ok:#}");
    assert_eq!(ok["environment"], "dev");
    assert_eq!(ok["federation"], "shop");
    assert_eq!(ok["persona"], "gold");
    let steps = ok["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5);
    assert!(steps.iter().all(|s| s["outcome"] == "passed"), "{ok:#}");
    assert_eq!(steps[0]["operation"], "Login");
    assert_eq!(steps[0]["response"]["source"], "upstream");
    assert_eq!(steps[2]["response"]["source"], "mock");
    assert_eq!(steps[2]["response"]["status"], 201);
    assert_eq!(
        steps[3]["request"]["url"],
        format!("http://{gw}/shop/payments/charges/ch_1")
    );
    assert_eq!(
        steps[1]["request"]["url"],
        format!("http://{gw}/shop/auth/me?verbose=true")
    );
    assert_eq!(
        steps[2]["assertions"],
        json!([
            {"what": "status", "expected": 201, "actual": 201, "passed": true},
            {"what": "/status", "expected": "succeeded", "actual": "succeeded", "passed": true},
            {"what": "/amount", "expected": 100, "actual": 100, "passed": true},
        ])
    );
    assert_eq!(steps[2]["saved"], json!({"charge": "ch_1"}));
    assert!(steps.iter().all(|s| s["duration_ms"].is_u64()));
    // The gRPC step: the keys as the input message, the mock's answer as JSON.
    assert_eq!(steps[4]["operation"], "ReserveItem");
    assert_eq!(
        steps[4]["request"]["url"],
        format!("http://{gw}/inv.v1.Inventory/ReserveItem")
    );
    assert_eq!(steps[4]["response"]["grpc_status"], 0);
    assert_eq!(steps[4]["response"]["source"], "mock");
    assert_eq!(steps[4]["assertions"][0]["what"], "grpc_status");
    assert!(
        steps[4]["saved"]["reservation"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        steps[4]
    );
    // Secrets are not kept: the password, the saved token and the header that carries it.
    let kept = ok.to_string();
    assert!(!kept.contains("correct-horse-battery"), "{kept}");
    assert!(!kept.contains("tok-alice-9f8e7d"), "{kept}");
    assert_eq!(steps[0]["saved"]["token"], "***");
    assert_eq!(steps[0]["request"]["body"]["password"], "***");
    assert_eq!(steps[1]["request"]["headers"]["Authorization"], "***");
    assert_eq!(
        steps[0]["request"]["headers"]["x-mockops-scenario"],
        "checkout"
    );
    assert_eq!(steps[0]["request"]["headers"]["x-mockops-persona"], "gold");

    // A failing assertion stops the run: the actual value is reported, later steps skipped.
    let (status, failed) = run(&d, "declined");
    assert_eq!(status, 201, "{failed}");
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["failed_step"], 0);
    let fsteps = failed["steps"].as_array().expect("steps");
    assert_eq!(fsteps[0]["outcome"], "failed");
    assert_eq!(
        fsteps[0]["assertions"][1],
        json!({"what": "/status", "expected": "failed", "actual": "succeeded", "passed": false})
    );
    assert!(
        fsteps[0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("/status")),
        "{failed:#}"
    );
    assert_eq!(fsteps[1]["outcome"], "skipped");
    assert!(
        fsteps[1].get("request").is_none(),
        "a skipped step sends nothing"
    );

    // An unreachable upstream fails its step with the gateway's answer.
    let (status, ghostly) = run(&d, "ghostly");
    assert_eq!(status, 201, "{ghostly}");
    assert_eq!(ghostly["outcome"], "failed");
    let g0 = &ghostly["steps"][0];
    let code = g0["response"]["status"].as_u64().expect("status");
    assert!(code == 502 || code == 504, "{g0}");
    assert_eq!(g0["assertions"][0]["passed"], false);
    // The failure says why, in the gateway's words.
    let error = g0["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("(the gateway: ") && error.contains("upstream"),
        "{g0}"
    );
    assert_eq!(ghostly["steps"][1]["outcome"], "skipped");

    // Stored and readable; newest first.
    let list = d.get("/api/v1/scenarios/checkout/runs");
    let runs = list["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"], ok["id"]);
    let one = d.get(&format!("/api/v1/scenarios/declined/runs/{}", failed["id"]));
    assert_eq!(one["steps"], failed["steps"]);
    let (status, _) = http(
        "GET",
        &d.url(&format!("/api/v1/scenarios/checkout/runs/{}", failed["id"])),
        None,
        Some(&d.auth()),
    )
    .expect("get");
    assert_eq!(status, 404, "a run is read under its own scenario");

    // The traffic record tags every request of a run with the scenario and the persona.
    let tagged = wait_for("tagged exchanges", || {
        let t = d.get("/api/v1/traffic?federation=shop&limit=1000");
        let ex: Vec<Json> = t["exchanges"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["scenario"] == "checkout")
            .collect();
        (ex.len() == 5).then_some(ex)
    });
    assert!(tagged.iter().all(|e| e["persona"] == "gold"), "{tagged:?}");
    let mut ops: Vec<&str> = tagged
        .iter()
        .filter_map(|e| e["operation"].as_str())
        .collect();
    ops.sort_unstable();
    assert_eq!(
        ops,
        [
            "Login",
            "createCharge",
            "getCharge",
            "inv.v1.Inventory/ReserveItem",
            "who_am_i"
        ]
    );

    // One event per run, through the event log, and a pipeline triggers on the failure.
    let events = d.all_events();
    let of = |t: &str| -> Vec<Json> {
        events
            .iter()
            .filter(|e| e["event_type"] == t)
            .cloned()
            .collect()
    };
    let completed = of("scenario.completed");
    assert_eq!(completed.len(), 1, "{completed:?}");
    assert_eq!(completed[0]["payload"]["run_id"], ok["id"]);
    assert_eq!(completed[0]["payload"]["status"], "passed");
    assert_eq!(
        completed[0]["payload"]["steps"].as_array().map(Vec::len),
        Some(5)
    );
    let failures = of("scenario.failed");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!(failures[0]["payload"]["scenario_id"], "declined");
    assert_eq!(failures[0]["payload"]["failed_step"], 0);
    let posted = wait_for("the pipeline's webhook", || {
        let r = hook.requests();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(posted.len(), 1, "only the declined run matches the filter");
    assert!(
        posted[0]
            .text()
            .contains(&format!("declined run {} failed at step 0", failed["id"])),
        "{}",
        posted[0].text()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hook.requests().len(), 1, "the pipeline ran once");

    // The CLI runs it too, and exits 1 on a failed run.
    let base = d.url("");
    let out = std::process::Command::new(bin())
        .args([
            "scenarios",
            "--api",
            base.trim_end_matches('/'),
            "run",
            "checkout",
            "--env",
            "dev",
        ])
        .env("MOCKOPS_API_TOKEN", d.token())
        .output()
        .expect("cli");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("passed"), "{text}");
    assert!(
        text.contains("step 2 (pay): payments createCharge -> 201 [passed]"),
        "{text}"
    );
    let out = std::process::Command::new(bin())
        .args([
            "scenarios",
            "--api",
            base.trim_end_matches('/'),
            "run",
            "declined",
        ])
        .env("MOCKOPS_API_TOKEN", d.token())
        .output()
        .expect("cli");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("FAIL /status: expected \"failed\", got \"succeeded\"")
    );

    // Refused: without a token, with a wrong one, and names that are not defined.
    let (status, _) = http(
        "POST",
        &d.url("/api/v1/scenarios/checkout/runs"),
        Some(b"{}".to_vec()),
        None,
    )
    .expect("post");
    assert_eq!(status, 401);
    let wrong = [("authorization", "Bearer nope".to_string())];
    let (status, _) = http(
        "POST",
        &d.url("/api/v1/scenarios/checkout/runs"),
        Some(b"{}".to_vec()),
        Some(&wrong),
    )
    .expect("post");
    assert_eq!(status, 401);
    let (status, body) = run(&d, "chekout");
    assert_eq!(status, 404, "{body}");
    assert!(
        body.to_string().contains("did you mean `checkout`?"),
        "{body}"
    );
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/scenarios/checkout/runs"),
        Some(br#"{"federation": "shops"}"#.to_vec()),
        Some(&d.auth()),
    )
    .expect("post");
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("did you mean `shop`?"), "{body}");
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/scenarios/checkout/runs"),
        Some(b"not json".to_vec()),
        Some(&d.auth()),
    )
    .expect("post");
    assert_eq!(status, 400, "{body}");
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(
            br#"{"event_type": "scenario.completed", "payload": {"scenario_id": "checkout"}}"#
                .to_vec(),
        ),
        Some(&d.auth()),
    )
    .expect("post");
    assert_eq!(status, 422, "a run's event cannot be posted: {body}");
    let runs_after = d.get("/api/v1/scenarios/checkout/runs");
    assert_eq!(
        runs_after["runs"].as_array().map(Vec::len),
        Some(2),
        "refusals store nothing"
    );
    assert!(d.terminate());
}

#[test]
fn running_needs_the_gateway() {
    let repo = repo(&shop(
        "127.0.0.1:9".parse().expect("addr"),
        free_port(),
        "http://127.0.0.1:9/x",
    ));
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let (status, body) = run(&d, "checkout");
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("--gateway")),
        "{body}"
    );
    assert!(
        d.get("/api/v1/scenarios/checkout/runs")["runs"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

/// The diagnostics of a repository made of the example with `files` changed.
fn diagnostics(files: &[(&str, &str)]) -> String {
    let fx = Fixture::example();
    for (path, content) in files {
        fx.write(path, content);
    }
    render_dir(fx.path())
}

fn render_dir(path: &Path) -> String {
    let files = DirFiles::new(path).expect("dir");
    let loaded = Loader::new().load(&files).expect("load");
    let source = |f: &str| files.read(f).ok().and_then(|b| String::from_utf8(b).ok());
    diag::render_text(&loaded.diagnostics, &source)
}

#[test]
fn steps_resolve_against_the_spec_at_validation() {
    let out = diagnostics(&[(
        "environments/dev/scenarios/broken.yaml",
        r#"name: Broken
version: 1
federation: e-commerce-platform
persona: premium-customr
steps:
  - step: login
    service: auth
    action: logn
    username: a
  - service: payments
    action: CREATE_CHARGE
    amout: 5
    currency: usd
  - service: payments
    action: getCharge
  - service: shipping
    action: create-shipment
  - service: payments
    action: createCharge
    request: {path: /charges}
  - service: payments
    request: {method: FETCH, path: charges}
    expect:
      status: 99
      body: {status: ok}
    save: {id: id}
  - service: payments
    request:
      path: "/charges/{{steps.login.token}}"
      headers: {X-Trace: "{{steps.pay.id}} {{event.id}}"}
    currency: usd
"#,
    )]);
    insta::assert_snapshot!("unresolved_steps", out);
}

#[test]
fn the_example_resolves_and_its_steps_plan_requests() {
    let files = DirFiles::new(crate::support::example_repo()).expect("dir");
    let loaded = Loader::new().load(&files).expect("load");
    assert_eq!(
        loaded.diagnostics,
        vec![],
        "{}",
        render_dir(&crate::support::example_repo())
    );
    let st = &loaded.state;
    let prepared = mockops::scenario::run::prepare(
        st,
        "checkout-happy-path",
        &mockops::scenario::run::RunRequest::default(),
    )
    .expect("prepared");
    assert_eq!(
        prepared.environment, "dev",
        "dev when several environments have it"
    );
    assert_eq!(prepared.federation, "e-commerce-platform");
    let (_, catalog) = &prepared.services[1];
    let planned =
        mockops::scenario::resolve::plan(&prepared.spec.steps[1], "payments", catalog.as_deref())
            .expect("planned");
    assert_eq!(
        (planned.method.as_str(), planned.path.as_str()),
        ("POST", "/charges")
    );
    assert_eq!(
        planned.body,
        Some(json!({"amount": 100, "currency": "usd"}))
    );
    // The workspace scenario runs in the one federation that serves its service.
    let declined = mockops::scenario::run::prepare(
        st,
        "card-declined",
        &mockops::scenario::run::RunRequest::default(),
    )
    .expect("prepared");
    assert_eq!(declined.federation, "e-commerce-platform");
    let err = mockops::scenario::run::prepare(
        st,
        "checkout-happy-path",
        &mockops::scenario::run::RunRequest {
            environment: Some("staging".into()),
            federation: None,
        },
    )
    .expect_err("no staging");
    assert!(
        err.to_string()
            .contains("not defined in environment `staging`"),
        "{err}"
    );
}
