//! Coverage analytics against a real daemon: a known traffic script through the gateway (a
//! mocked service and a real one over a loopback upstream; personas, the CI header and the
//! scenario header), then every number of every view, the filters and what they refuse, a
//! never-hit operation with zeros, staleness following the commits that change a reality level
//! or a spec, the metrics, and the rollup across a restart.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, Repo, commit_all, free_port, http};
use crate::support::upstream::Upstream;

const PETS: &str = r##"openapi: 3.0.3
info: {title: pets, version: "1"}
paths:
  /pets:
    get:
      operationId: listPets
      responses:
        "200":
          description: pets
          content:
            application/json:
              schema: {type: array, items: {type: object}}
              example: [{id: "1", name: Rex}]
    post:
      operationId: createPet
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              required: [name]
              properties: {name: {type: string}}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {type: object}
              example: {id: "2", name: Tom}
  /pets/{id}:
    get:
      operationId: getPet
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "200":
          description: a pet
          content:
            application/json:
              schema: {type: object}
              example: {id: "1", name: Rex}
    delete:
      operationId: deletePet
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
      responses:
        "204": {description: deleted}
"##;

/// The real service's spec: the loopback upstream echoes the request, which has no `email`,
/// so every observed `getUser` response drifts.
fn users_spec(title: &str) -> String {
    format!(
        r##"openapi: 3.0.3
info: {{title: {title}, version: "1"}}
paths:
  /users:
    get:
      operationId: listUsers
      responses:
        "200": {{description: users}}
  /users/{{id}}:
    get:
      operationId: getUser
      parameters:
        - {{name: id, in: path, required: true, schema: {{type: string}}}}
      responses:
        "200":
          description: a user
          content:
            application/json:
              schema:
                type: object
                required: [email]
                properties: {{email: {{type: string}}}}
"##
    )
}

fn shop(users_level: Option<&str>) -> String {
    let users = match users_level {
        None => "  - name: users\n".to_string(),
        Some(l) => format!("  - name: users\n    reality_level: {l}\n"),
    };
    format!("name: shop\nservices:\n  - name: pets\n{users}")
}

fn repo(up: &Upstream) -> Repo {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(
        git2::Repository::init_opts(
            dir.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init"),
    );
    let r = Repo { dir };
    r.write("specs/pets.yaml", PETS);
    r.write("specs/users.yaml", &users_spec("users"));
    r.write(
        "services/pets.yaml",
        "name: pets\nworkspace_id: ws-pets\nspec: specs/pets.yaml\nbase_path: /pets-api\nreality_level: mock_v3\n",
    );
    r.write(
        "services/users.yaml",
        &format!(
            "name: users\nworkspace_id: ws-users\nspec: specs/users.yaml\nbase_path: /users-api\nreality_level: real\nupstream: {}\n",
            up.url("/v1")
        ),
    );
    r.write("federations/shop.yaml", &shop(None));
    r.write(
        "federations/lab.yaml",
        "name: lab\nservices:\n  - name: pets\n",
    );
    r.write(
        "environments/dev/personas/gold.yaml",
        "id: gold\nname: Gold customer\nversion: 1\ntraits: {tier: gold}\n",
    );
    r.write(
        "environments/dev/personas/silver.yaml",
        "id: silver\nname: Silver customer\nversion: 1\ntraits: {tier: silver}\n",
    );
    commit_all(r.path(), "shop and lab");
    r
}

fn start(repo: &Repo, state: &std::path::Path, gw: u16) -> Daemon {
    let addr = format!("127.0.0.1:{gw}");
    let mut d = Daemon::start(repo.path(), state, &["--gateway", addr.as_str()]);
    d.wait_ready();
    d
}

/// One request of the script: method, path, tags (persona, CI, scenario), body.
struct Step {
    method: &'static str,
    path: &'static str,
    persona: Option<&'static str>,
    ci: bool,
    scenario: Option<&'static str>,
    body: Option<&'static str>,
    times: usize,
    status: u16,
}

const fn step(method: &'static str, path: &'static str, status: u16) -> Step {
    Step {
        method,
        path,
        persona: None,
        ci: false,
        scenario: None,
        body: None,
        times: 1,
        status,
    }
}

/// The traffic script: 11 exchanges.
fn script() -> Vec<Step> {
    vec![
        Step {
            persona: Some("gold"),
            ci: true,
            scenario: Some("checkout"),
            times: 3,
            ..step("GET", "/shop/pets-api/pets", 200)
        },
        Step {
            persona: Some("silver"),
            scenario: Some("checkout"),
            times: 2,
            ..step("GET", "/shop/pets-api/pets/1", 200)
        },
        Step {
            persona: Some("gold"),
            ci: true,
            ..step("GET", "/shop/pets-api/pets/1", 200)
        },
        Step {
            scenario: Some("signup"),
            body: Some("{}"),
            ..step("POST", "/shop/pets-api/pets", 422)
        },
        step("GET", "/shop/pets-api/nowhere", 404),
        Step {
            persona: Some("gold"),
            ci: true,
            scenario: Some("checkout"),
            ..step("GET", "/lab/pets-api/pets", 200)
        },
        Step {
            times: 2,
            ..step("GET", "/shop/users-api/users/7", 200)
        },
    ]
}

async fn run_script(gw: u16) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .no_proxy()
        .build()
        .expect("client");
    for s in script() {
        for _ in 0..s.times {
            let url = format!("http://127.0.0.1:{gw}{}", s.path);
            let mut req = client.request(s.method.parse().expect("method"), &url);
            if let Some(p) = s.persona {
                req = req.header("x-mockops-persona", p);
            }
            if s.ci {
                req = req.header("x-mockops-ci", "true");
            }
            if let Some(sc) = s.scenario {
                req = req.header("x-mockops-scenario", sc);
            }
            if let Some(b) = s.body {
                req = req.header("content-type", "application/json").body(b);
            }
            let r = req.send().await.expect("gateway");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert_eq!(status, s.status, "{} {}: {text}", s.method, s.path);
        }
    }
}

/// Waits until `f` holds of `GET path`, returning the body.
fn until(d: &Daemon, path: &str, what: &str, f: impl Fn(&Json) -> bool) -> Json {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = d.get(path);
        if f(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The body and status of an analytics request.
fn analytics(d: &Daemon, path: &str) -> (u16, Json) {
    http(
        "GET",
        &d.url(&format!("/api/v2/analytics/{path}")),
        None,
        Some(&d.auth()),
    )
    .expect("request")
}

/// Replaces what changes from run to run (days, commits, times, ages) by placeholders.
fn redact(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "from" | "to" | "at" | "upstream_last_observed" if v.is_string() => {
                            json!("[time]")
                        }
                        "commit" | "sha" => json!("[commit]"),
                        "days" => json!(format!("[{} days]", v.as_array().map_or(0, Vec::len))),
                        k if k.ends_with("_seconds") && !v.is_null() => json!("[seconds]"),
                        _ => redact(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(a) => Json::Array(a.iter().map(redact).collect()),
        other => other.clone(),
    }
}

fn rows(heatmap: &Json) -> Vec<(String, u64)> {
    heatmap["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let counts: Vec<u64> = r["counts"]
                .as_array()
                .expect("counts")
                .iter()
                .map(|c| c.as_u64().expect("count"))
                .collect();
            assert_eq!(
                counts.iter().sum::<u64>(),
                r["total"].as_u64().expect("total")
            );
            (
                r["key"].as_str().expect("key").to_string(),
                r["total"].as_u64().expect("total"),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, u64)]) -> Vec<(String, u64)> {
    v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// `(service, [(operation, requests, 2xx, 4xx)], operations, hit, unmatched)` per member of
/// `federation` in a coverage answer.
fn endpoints(cov: &Json, federation: &str, service: &str) -> Vec<(String, u64, u64, u64)> {
    let s = cov["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["federation"] == federation && s["service"] == service)
        .unwrap_or_else(|| panic!("{federation}/{service} missing: {cov}"));
    s["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().expect("op").to_string(),
                e["requests"].as_u64().expect("n"),
                e["by_class"]["2xx"].as_u64().expect("2xx"),
                e["by_class"]["4xx"].as_u64().expect("4xx"),
            )
        })
        .collect()
}

fn ops(v: &[(&str, u64, u64, u64)]) -> Vec<(String, u64, u64, u64)> {
    v.iter()
        .map(|(o, n, a, b)| (o.to_string(), *n, *a, *b))
        .collect()
}

/// The value of the metric line starting with `prefix`.
fn metric(d: &Daemon, prefix: &str) -> Option<f64> {
    let (_, text) = http("GET", &d.url("/metrics"), None, None).expect("metrics");
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .map(|v| v.trim().parse().expect("a number"))
}

#[test]
fn a_known_traffic_script_gives_known_numbers_in_every_view() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let up = rt.block_on(Upstream::start());
    let r = repo(&up);
    let first = git2::Repository::open(r.path())
        .expect("open")
        .head()
        .expect("head")
        .peel_to_commit()
        .expect("commit")
        .id()
        .to_string();
    // The users spec changes in content (a second commit) before the traffic.
    r.write("specs/users.yaml", &users_spec("users v2"));
    let second = r.commit("users: retitle the spec");
    let state = tempfile::tempdir().expect("state");
    let gw = free_port();
    let mut d = start(&r, state.path(), gw);
    d.wait_attempted(&second);

    // Before any traffic: every operation is listed, with zeros.
    let (status, empty) = analytics(&d, "endpoints/coverage");
    assert_eq!(status, 200, "{empty}");
    assert_eq!(
        (empty["operations"].as_u64(), empty["hit"].as_u64()),
        (Some(10), Some(0))
    );

    rt.block_on(run_script(gw));
    let traffic = until(
        &d,
        "/api/v1/traffic?limit=1000",
        "11 exchanges recorded",
        |t| t["exchanges"].as_array().is_some_and(|a| a.len() == 11),
    );
    let today = traffic["exchanges"][0]["at"]
        .as_str()
        .expect("at")
        .chars()
        .take(10)
        .collect::<String>();
    let range = format!("from={today}&to={today}T23:00:00Z");
    until(
        &d,
        "/api/v1/drift/incidents?service=users",
        "the real service's drift is recorded",
        |v| v["items"].as_array().is_some_and(|a| !a.is_empty()),
    );

    // Scenario usage: the default range is 7 days ending today.
    let (status, usage) = analytics(&d, "scenarios/usage");
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["days"].as_array().map(Vec::len), Some(7));
    assert_eq!(usage["to"], today.as_str());
    assert_eq!(usage["days"][6], today.as_str());
    assert_eq!(usage["rows"][0]["counts"], json!([0, 0, 0, 0, 0, 0, 6]));
    assert_eq!(rows(&usage), pairs(&[("checkout", 6), ("signup", 1)]));
    insta::assert_json_snapshot!("analytics_scenario_usage", redact(&usage));
    let (_, lab) = analytics(&d, &format!("scenarios/usage?{range}&federation=lab"));
    assert_eq!(lab["days"], json!([today]));
    assert_eq!(rows(&lab), pairs(&[("checkout", 1)]));
    let (_, env) = analytics(&d, &format!("scenarios/usage?{range}&environment=shop"));
    assert_eq!(rows(&env), pairs(&[("checkout", 5), ("signup", 1)]));
    let (_, users) = analytics(&d, &format!("scenarios/usage?{range}&service=users"));
    assert_eq!(rows(&users), pairs(&[]));

    // Persona CI hits: only what came from CI (silver never did).
    let (status, ci) = analytics(&d, &format!("personas/ci-hits?{range}"));
    assert_eq!(status, 200, "{ci}");
    assert_eq!(rows(&ci), pairs(&[("gold", 5)]));
    insta::assert_json_snapshot!("analytics_persona_ci_hits", redact(&ci));
    let (_, ci_shop) = analytics(
        &d,
        &format!("personas/ci-hits?{range}&federation=shop&service=pets"),
    );
    assert_eq!(rows(&ci_shop), pairs(&[("gold", 4)]));

    // Endpoint coverage: the spec is the denominator; deletePet and listUsers show with zeros.
    let (status, cov) = analytics(&d, &format!("endpoints/coverage?{range}"));
    assert_eq!(status, 200, "{cov}");
    assert_eq!(
        endpoints(&cov, "shop", "pets"),
        ops(&[
            ("listPets", 3, 3, 0),
            ("createPet", 1, 0, 1),
            ("getPet", 3, 3, 0),
            ("deletePet", 0, 0, 0),
        ])
    );
    assert_eq!(
        endpoints(&cov, "shop", "users"),
        ops(&[("listUsers", 0, 0, 0), ("getUser", 2, 2, 0)])
    );
    assert_eq!(
        endpoints(&cov, "lab", "pets"),
        ops(&[
            ("listPets", 1, 1, 0),
            ("createPet", 0, 0, 0),
            ("getPet", 0, 0, 0),
            ("deletePet", 0, 0, 0),
        ])
    );
    assert_eq!(
        (cov["operations"].as_u64(), cov["hit"].as_u64()),
        (Some(10), Some(5))
    );
    assert_eq!(cov["ratio"], json!(0.5));
    let by = |f: &str, s: &str| {
        cov["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|x| x["federation"] == f && x["service"] == s)
            .cloned()
            .expect("member")
    };
    assert_eq!(by("shop", "pets")["ratio"], json!(0.75));
    assert_eq!(by("shop", "pets")["unmatched_requests"], 1, "GET /nowhere");
    assert_eq!(by("shop", "users")["ratio"], json!(0.5));
    assert_eq!(by("lab", "pets")["ratio"], json!(0.25));
    insta::assert_json_snapshot!("analytics_endpoint_coverage", redact(&cov));
    let (_, only) = analytics(&d, &format!("endpoints/coverage?{range}&service=users"));
    assert_eq!(only["services"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        (only["operations"].as_u64(), only["hit"].as_u64()),
        (Some(2), Some(1))
    );
    // A day without traffic: every operation, all zeros.
    let (_, before) = analytics(&d, "endpoints/coverage?from=2026-01-01&to=2026-01-02");
    assert_eq!(
        (before["operations"].as_u64(), before["hit"].as_u64()),
        (Some(10), Some(0))
    );

    // Drift percentage: getUser has open incidents, one operation of two.
    let (status, drift) = analytics(&d, "drift/percentage");
    assert_eq!(status, 200, "{drift}");
    let share: Vec<(String, u64, u64, Json)> = drift["services"]
        .as_array()
        .expect("services")
        .iter()
        .map(|s| {
            (
                s["service"].as_str().expect("service").to_string(),
                s["operations"].as_u64().expect("ops"),
                s["drifting"].as_u64().expect("drifting"),
                s["percentage"].clone(),
            )
        })
        .collect();
    assert_eq!(
        share,
        vec![
            ("pets".to_string(), 4, 0, json!(0.0)),
            ("users".to_string(), 2, 1, json!(50.0)),
        ]
    );
    assert_eq!(drift["percentage"], json!(16.67));
    assert_eq!(drift["services"][1]["federations"], json!(["shop"]));
    let (_, lab_drift) = analytics(&d, "drift/percentage?federation=lab");
    assert_eq!(lab_drift["percentage"], json!(0.0));
    assert_eq!(lab_drift["services"].as_array().map(Vec::len), Some(1));

    // Staleness: the users spec since the second commit, every level since the first.
    let (status, stale) = analytics(&d, "reality-levels/staleness");
    assert_eq!(status, 200, "{stale}");
    let since = |v: &Json, f: &str, s: &str, what: &str| -> String {
        v["services"]
            .as_array()
            .expect("services")
            .iter()
            .find(|x| x["federation"] == f && x["service"] == s)
            .unwrap_or_else(|| panic!("{f}/{s}: {v}"))[what]["commit"]
            .as_str()
            .expect("commit")
            .to_string()
    };
    assert_eq!(since(&stale, "shop", "users", "reality_level_since"), first);
    assert_eq!(since(&stale, "shop", "users", "spec_since"), second);
    assert_eq!(since(&stale, "shop", "pets", "spec_since"), first);
    assert_eq!(since(&stale, "lab", "pets", "reality_level_since"), first);
    let users_row = stale["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|x| x["service"] == "users")
        .cloned()
        .expect("users");
    assert_eq!(users_row["upstream_status"], "reachable", "{users_row}");
    assert!(users_row["upstream_last_observed"].is_string());
    insta::assert_json_snapshot!("analytics_staleness", redact(&stale));

    // The metrics carry the same numbers, labelled by configuration names only.
    assert_eq!(
        metric(
            &d,
            "mockops_analytics_coverage_ratio{federation=\"shop\",service=\"pets\"} "
        ),
        Some(0.75)
    );
    assert_eq!(
        metric(
            &d,
            "mockops_analytics_operations_hit{federation=\"lab\",service=\"pets\"} "
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&d, "mockops_analytics_drift_ratio{service=\"users\"} "),
        Some(0.5)
    );
    assert!(
        metric(
            &d,
            "mockops_analytics_staleness_seconds{federation=\"shop\",service=\"users\",of=\"spec\"} "
        )
        .is_some()
    );
    let (_, text) = http("GET", &d.url("/metrics"), None, None).expect("metrics");
    let text = text.as_str().unwrap_or_default();
    for never in ["gold", "checkout", "getPet", "/pets"] {
        assert!(
            !text
                .lines()
                .any(|l| l.starts_with("mockops_analytics") && l.contains(never)),
            "`{never}` must never be a label value"
        );
    }

    // A commit that changes the users member's reality level moves its staleness.
    r.write("federations/shop.yaml", &shop(Some("blended")));
    let third = r.commit("shop: blend users");
    d.wait_attempted(&third);
    let stale = until(
        &d,
        "/api/v2/analytics/reality-levels/staleness",
        "staleness follows the commit",
        |v| v["sha"] == third.as_str(),
    );
    assert_eq!(since(&stale, "shop", "users", "reality_level_since"), third);
    assert_eq!(since(&stale, "shop", "users", "spec_since"), second);
    assert_eq!(since(&stale, "shop", "pets", "reality_level_since"), first);
    let users_row = stale["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|x| x["service"] == "users")
        .cloned()
        .expect("users");
    assert_eq!(users_row["reality_level"], "blended");

    // The rollup survives a restart: the same numbers from the same state directory.
    let (_, cov_before) = analytics(&d, &format!("endpoints/coverage?{range}"));
    let (_, usage_before) = analytics(&d, &format!("scenarios/usage?{range}"));
    assert!(d.terminate(), "clean stop: {}", d.log_text());
    let d = start(&r, state.path(), gw);
    d.wait_attempted(&third);
    let (_, cov_after) = analytics(&d, &format!("endpoints/coverage?{range}"));
    let (_, usage_after) = analytics(&d, &format!("scenarios/usage?{range}"));
    assert_eq!(cov_after, cov_before);
    assert_eq!(usage_after, usage_before);
    assert_eq!(cov_after["hit"], 5);
}

#[test]
fn analytics_refuse_unknown_filters_and_callers_without_a_token() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let up = rt.block_on(Upstream::start());
    let r = repo(&up);
    let state = tempfile::tempdir().expect("state");
    let d = start(&r, state.path(), free_port());
    for view in [
        "scenarios/usage",
        "personas/ci-hits",
        "endpoints/coverage",
        "reality-levels/staleness",
        "drift/percentage",
    ] {
        let (status, _) = http(
            "GET",
            &d.url(&format!("/api/v2/analytics/{view}")),
            None,
            None,
        )
        .expect("request");
        assert_eq!(status, 401, "{view} needs a token");
        for (query, says) in [
            ("fed=shop", "unknown parameter `fed`"),
            ("federation=nope", "no federation `nope`"),
            ("service=nope", "no service `nope`"),
            ("environment=prod", "each federation is its own environment"),
            ("from=last-week", "not an RFC 3339"),
            ("from=2026-12-05&to=2026-12-01", "is after"),
            ("from=2020-01-01&to=2026-01-01", "at most 366"),
        ] {
            let (status, body) = analytics(&d, &format!("{view}?{query}"));
            assert_eq!(status, 400, "{view}?{query}: {body}");
            let msg = body["error"].as_str().unwrap_or_default();
            assert!(msg.contains(says), "{view}?{query}: {msg}");
        }
        let (status, body) = analytics(&d, &format!("{view}?environment=lab&service=pets"));
        assert_eq!(status, 200, "{view}: {body}");
    }
    let (_, bad) = analytics(&d, "scenarios/usage?federation=nope");
    insta::assert_json_snapshot!("analytics_unknown_federation", bad);
}
