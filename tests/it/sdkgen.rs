//! `regenerate_sdk` against real Git repositories and real generator processes: the spec as of
//! the triggering commit (never the working tree), the real `openapi-typescript`, `command`
//! generators, failures, timeouts, missing tools and escaping paths.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mockops::model::RegenerateSdkConfig;
use mockops::pipeline::steps::sdkgen::{SdkRequest, generate};
use mockops::pipeline::steps::{StepContext, StepError};
use serde_json::{Value as Json, json};

use crate::support::Fixture;

const API_YAML: &str = r#"openapi: 3.1.0
info: {title: Pets, version: 1.0.0}
paths:
  /pets:
    get:
      operationId: listPets
      responses:
        '200':
          description: the pets
          content:
            application/json:
              schema:
                type: array
                items:
                  $ref: 'common/pet.yaml#/Pet'
"#;

fn pet_yaml(field: &str) -> String {
    format!(
        "Pet:\n  type: object\n  required: [name]\n  properties:\n    name: {{type: string}}\n    {field}: {{type: string}}\n"
    )
}

/// A config repository with the spec split across two files: commit A has `nickname_at_a`,
/// commit B (the head) has `nickname_at_b`, and the working tree holds an uncommitted
/// `nickname_uncommitted`.
struct Repo {
    fixture: Fixture,
    a: git2::Oid,
    b: git2::Oid,
}

fn repo() -> Repo {
    let fixture = Fixture::empty();
    fixture
        .write("specs/api.yaml", API_YAML)
        .write("specs/common/pet.yaml", pet_yaml("nickname_at_a"))
        .write("specs/unrelated.yaml", "not: referenced\n")
        .write("README.md", "config repo\n");
    let a = fixture.commit("A");
    fixture.write("specs/common/pet.yaml", pet_yaml("nickname_at_b"));
    let b = fixture.commit("B");
    fixture.write("specs/common/pet.yaml", pet_yaml("nickname_uncommitted"));
    Repo { fixture, a, b }
}

fn config(value: Json) -> RegenerateSdkConfig {
    serde_json::from_value(value).expect("valid regenerate_sdk config")
}

fn ctx(event: Json) -> StepContext {
    StepContext {
        execution_id: "exec-1".into(),
        pipeline: "auto-sdk-regeneration".into(),
        step: "regenerate_sdk".into(),
        attempt: 1,
        idempotency_key: "exec-1/regenerate_sdk".into(),
        event,
        steps: Json::Null,
    }
}

/// A request as the daemon makes it with `--allow-generator-commands`.
fn request(repo: &Path, config_value: Json) -> SdkRequest {
    let mut req = SdkRequest::new(repo, config(config_value));
    req.allow_commands = true;
    req
}

/// A `command` generator running `script` with `sh -c`; `{spec}`, `{out}` and `{root}` are
/// replaced inside the script.
fn sh(language: &str, script: &str) -> Json {
    json!({language: {"command": ["sh", "-c", script]}})
}

async fn run(req: &SdkRequest, event: Json) -> Result<serde_json::Map<String, Json>, StepError> {
    generate(req, &ctx(event)).await
}

fn file<'a>(outputs: &'a serde_json::Map<String, Json>, key: &str) -> &'a str {
    outputs["files"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no file {key} in {:#}", outputs["files"]))
}

#[tokio::test]
async fn generates_from_the_triggering_commit_not_the_working_tree() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["listing"],
            "generators": sh("listing", "cd {root} && find . -type f | sort > {out}/files.txt && cat {spec} specs/common/pet.yaml > {out}/spec.txt"),
        }),
    );

    let at_a = run(&req, json!({"commit": r.a.to_string()}))
        .await
        .expect("generates at A");
    assert_eq!(at_a["commit"], json!(r.a.to_string()));
    assert_eq!(at_a["spec_path"], json!("specs/api.yaml"));
    assert_eq!(
        at_a["spec_files"],
        json!(["specs/api.yaml", "specs/common/pet.yaml"])
    );
    // Only the spec and what it references: no README, no unrelated spec, no .git.
    assert_eq!(
        file(&at_a, "listing/files.txt"),
        "./specs/api.yaml\n./specs/common/pet.yaml\n"
    );
    let spec_a = file(&at_a, "listing/spec.txt");
    assert!(spec_a.contains("nickname_at_a"), "{spec_a}");
    assert!(!spec_a.contains("nickname_at_b") && !spec_a.contains("uncommitted"));

    // No commit in the event: the head (B), still not the working tree.
    let at_head = run(&req, json!({})).await.expect("generates at HEAD");
    assert_eq!(at_head["commit"], json!(r.b.to_string()));
    let spec_b = file(&at_head, "listing/spec.txt");
    assert!(spec_b.contains("nickname_at_b"), "{spec_b}");
    assert!(!spec_b.contains("uncommitted"));
}

#[tokio::test]
async fn spec_path_comes_from_the_event_when_not_configured() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({"languages": ["copy"], "generators": sh("copy", "cp {spec} {out}/")}),
    );
    let out = run(
        &req,
        json!({"commit": r.a.to_string(), "spec_path": "specs/./common/../api.yaml"}),
    )
    .await
    .expect("generates");
    assert_eq!(out["spec_path"], json!("specs/api.yaml"));
    assert_eq!(file(&out, "copy/api.yaml"), API_YAML);

    let e = run(&req, json!({"commit": r.a.to_string()}))
        .await
        .expect_err("no spec path anywhere");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("config.spec_path"),
        "{}",
        e.rendered()
    );
}

fn openapi_typescript_installed() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/openapi-typescript");
    assert!(
        bin.exists(),
        "openapi-typescript is not installed: run `npm install --no-save openapi-typescript@7` in the repository root (as .ci/run does)"
    );
    bin
}

#[tokio::test]
async fn typescript_preset_runs_the_real_openapi_typescript() {
    openapi_typescript_installed();
    let r = repo();
    // Found the way the daemon finds it: ./node_modules/.bin of the working directory (the
    // test binary runs in the package root).
    let mut req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["typescript"]}),
    );
    req.timeout = Duration::from_secs(120);

    let at_a = run(&req, json!({"commit": r.a.to_string()}))
        .await
        .expect("openapi-typescript at A");
    let files = at_a["files"].as_object().expect("files object");
    assert_eq!(files.keys().collect::<Vec<_>>(), ["typescript/schema.ts"]);
    let ts = file(&at_a, "typescript/schema.ts");
    assert!(ts.contains("auto-generated by openapi-typescript"), "{ts}");
    assert!(ts.contains("listPets"), "{ts}");
    // The $ref'd file was resolved from commit A's blobs.
    assert!(ts.contains("nickname_at_a?: string"), "{ts}");
    assert!(!ts.contains("nickname_at_b") && !ts.contains("uncommitted"));
    assert_eq!(at_a["languages"], json!(["typescript"]));
    assert_eq!(at_a["output_dir"], json!("./generated-sdks"));

    let at_b = run(&req, json!({"commit": r.b.to_string()}))
        .await
        .expect("openapi-typescript at B");
    assert!(file(&at_b, "typescript/schema.ts").contains("nickname_at_b?: string"));
}

/// The Python preset runs the real openapi-python-client (installed by `scripts/test`). It
/// does not follow `$ref`s into other files, so it gets the two-file spec bundled into one.
#[tokio::test]
async fn python_preset_runs_the_real_openapi_python_client_on_a_bundled_spec() {
    let r = repo();
    let mut req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["python"]}),
    );
    req.timeout = Duration::from_secs(120);
    let out = match run(&req, json!({"commit": r.a.to_string()})).await {
        Ok(out) => out,
        Err(e) => panic!(
            "openapi-python-client (install it with `python3 -m pip install openapi-python-client`, as scripts/test does): {}",
            e.rendered()
        ),
    };
    let files = out["files"].as_object().expect("files object");
    let keys: Vec<&String> = files.keys().collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with("python/") && !k.contains("cache")),
        "{keys:?}"
    );
    let model = file(&out, "python/models/pet.py");
    assert!(model.contains("class Pet"), "{model}");
    // The model comes from the $ref'd file as of commit A.
    assert!(model.contains("nickname_at_a"), "{model}");
    assert!(!model.contains("nickname_at_b") && !model.contains("uncommitted"));
    let api = file(&out, "python/api/default/list_pets.py");
    assert!(api.contains("def sync("), "{api}");
    assert!(api.contains("Pet"), "the response type is the model: {api}");
    assert!(files.contains_key("python/client.py"));
}

/// The Rust preset runs the real cargo-progenitor (installed into `.ci/cargo-tools` by
/// `scripts/test`) on the two-file spec, bundled into one document for it.
#[tokio::test]
async fn rust_preset_runs_the_real_progenitor_on_a_bundled_spec() {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/cargo-tools/bin");
    assert!(
        tools.join("cargo-progenitor").exists(),
        "cargo-progenitor is not installed: run `cargo install --locked --debug --root .ci/cargo-tools cargo-progenitor@0.15.1` (as scripts/test does)"
    );
    let fixture = Fixture::empty();
    fixture
        .write("specs/pet-store.yaml", API_YAML.replace("3.1.0", "3.0.3"))
        .write("specs/common/pet.yaml", pet_yaml("nickname_at_a"));
    fixture.commit("A");
    let mut req = request(
        fixture.path(),
        json!({"spec_path": "specs/pet-store.yaml", "languages": ["rust"]}),
    );
    req.tool_dirs = vec![tools];
    req.timeout = Duration::from_secs(120);
    let out = run(&req, json!({})).await.expect("cargo-progenitor");
    let manifest = file(&out, "rust/Cargo.toml");
    assert!(
        manifest.contains("name = \"pet-store-client\""),
        "{manifest}"
    );
    let lib = file(&out, "rust/src/lib.rs");
    assert!(lib.contains("pub struct Pet"), "{lib}");
    // The model comes from the $ref'd file.
    assert!(lib.contains("nickname_at_a"), "{lib}");
    assert!(lib.contains("pub async fn list_pets"), "{lib}");
}

/// progenitor reads OpenAPI 3.0 only: a 3.1 description is refused before anything runs, with
/// what to do instead.
#[tokio::test]
async fn rust_preset_refuses_openapi_3_1_with_the_way_out() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["rust"]}),
    );
    let e = run(&req, json!({"commit": r.a.to_string()}))
        .await
        .expect_err("3.1");
    assert!(!e.retryable());
    assert!(e.rendered().contains("OpenAPI 3.0"), "{}", e.rendered());
    assert!(
        e.rendered().contains("generators.rust.command"),
        "{}",
        e.rendered()
    );
}

#[tokio::test]
async fn several_languages_each_get_their_own_directory() {
    let r = repo();
    let mut generators = sh("one", "mkdir -p {out}/src && echo one > {out}/src/lib.txt");
    generators.as_object_mut().expect("object").extend(
        sh(
            "two",
            "printf '\\377\\000' > {out}/blob.bin && echo two > {out}/two.txt",
        )
        .as_object()
        .expect("object")
        .clone(),
    );
    let req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["one", "two"], "generators": generators}),
    );
    let out = run(&req, json!({})).await.expect("generates");
    assert_eq!(file(&out, "one/src/lib.txt"), "one\n");
    assert_eq!(file(&out, "two/two.txt"), "two\n");
    assert_eq!(out["binary_files"]["two/blob.bin"], json!("/wA="));
    assert_eq!(out["languages"], json!(["one", "two"]));
}

#[tokio::test]
async fn a_failing_generator_reports_its_stderr() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["broken"],
            "generators": sh("broken", "echo 'some progress' ; echo 'error: unsupported schema at #/paths/~1pets' >&2; exit 2"),
        }),
    );
    let e = run(&req, json!({})).await.expect_err("generator fails");
    assert!(!e.retryable(), "a generator's own failure is permanent");
    assert!(
        e.rendered().contains("language `broken`"),
        "{}",
        e.rendered()
    );
    assert!(
        e.rendered().contains("exited with status 2"),
        "{}",
        e.rendered()
    );
    assert!(
        e.rendered()
            .contains("error: unsupported schema at #/paths/~1pets"),
        "{}",
        e.rendered()
    );
}

#[tokio::test]
async fn long_stderr_is_cut_to_its_end() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["noisy"],
            "generators": sh("noisy", "i=0; while [ $i -lt 20000 ]; do echo \"line $i\" >&2; i=$((i+1)); done; echo 'the real cause' >&2; exit 1"),
        }),
    );
    let e = run(&req, json!({})).await.expect_err("fails");
    assert!(
        e.rendered().ends_with("the real cause"),
        "{}",
        &e.rendered()[e.rendered().len().saturating_sub(200)..]
    );
    assert!(
        e.rendered().len() < 6 * 1024,
        "{} bytes",
        e.rendered().len()
    );
}

#[tokio::test]
async fn a_hanging_generator_is_killed_with_its_children_at_the_timeout() {
    let r = repo();
    let pid_file = r.fixture.path().join("sleeper.pid");
    let script = format!(
        "sleep 300 & echo $! > {}; echo 'still working' >&2; wait",
        pid_file.display()
    );
    let mut req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["slow"], "generators": sh("slow", &script)}),
    );
    req.timeout = Duration::from_secs(2);
    let started = Instant::now();
    let e = run(&req, json!({})).await.expect_err("times out");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(e.retryable(), "a timeout may pass on a retry");
    assert!(
        e.rendered().contains("did not finish within"),
        "{}",
        e.rendered()
    );
    assert!(e.rendered().contains("still working"), "{}", e.rendered());

    // The background `sleep` was in the generator's process group and is gone too.
    let pid = std::fs::read_to_string(&pid_file).expect("pid written");
    let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
    let gone = (0..50).any(|_| {
        let alive = std::fs::read_to_string(&stat)
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        if alive {
            std::thread::sleep(Duration::from_millis(100));
        }
        !alive
    });
    assert!(gone, "the generator's child {pid} outlived the timeout");
}

#[tokio::test]
async fn a_missing_preset_tool_says_what_to_install() {
    let r = repo();
    // The Rust preset's generator reads OpenAPI 3.0 only.
    let v30 = Fixture::empty();
    v30.write("specs/api.yaml", API_YAML.replace("3.1.0", "3.0.3"))
        .write("specs/common/pet.yaml", pet_yaml("nickname"));
    v30.commit("3.0");
    let empty = tempfile::tempdir().expect("tempdir");
    for (language, program, hint) in [
        ("rust", "cargo-progenitor", "cargo install cargo-progenitor"),
        (
            "python",
            "openapi-python-client",
            "pipx install openapi-python-client",
        ),
        (
            "typescript",
            "openapi-typescript",
            "npm install -g openapi-typescript@7",
        ),
    ] {
        let repo = if language == "rust" {
            v30.path()
        } else {
            r.fixture.path()
        };
        let mut req = request(
            repo,
            json!({"spec_path": "specs/api.yaml", "languages": [language]}),
        );
        req.path = Some(empty.path().as_os_str().to_owned());
        req.search_install_dirs = false;
        let e = run(&req, json!({})).await.expect_err("tool missing");
        assert!(!e.retryable(), "installing a tool needs an operator");
        assert!(
            e.rendered()
                .contains(&format!("`{program}`, which is not installed")),
            "{}",
            e.rendered()
        );
        assert!(e.rendered().contains(hint), "{}", e.rendered());
        assert!(
            e.rendered()
                .contains(&format!("generators.{language}.command")),
            "{}",
            e.rendered()
        );
    }
}

#[tokio::test]
async fn a_missing_command_program_is_a_clear_error() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["go"],
            "generators": {"go": {"command": ["oapi-codegen-not-installed", "{spec}"]}},
        }),
    );
    let e = run(&req, json!({})).await.expect_err("no such program");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("no such program in PATH"),
        "{}",
        e.rendered()
    );
}

/// A program the repository names runs only when the operator allowed it; nothing is run
/// before the refusal. A command generator sees an empty home of its own, not the daemon's.
#[tokio::test]
async fn repository_commands_need_the_operators_permission_and_get_an_empty_home() {
    let r = repo();
    let marker = tempfile::tempdir().expect("tempdir");
    let script = format!("touch {}/ran; touch {{out}}/x", marker.path().display());
    let mut req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["go"], "generators": sh("go", &script)}),
    );
    req.allow_commands = false;
    let e = run(&req, json!({})).await.expect_err("not allowed");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("--allow-generator-commands"),
        "{}",
        e.rendered()
    );
    assert!(
        !marker.path().join("ran").exists(),
        "the command did not run"
    );

    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["go"],
            "generators": sh("go", "ls -A \"$HOME\" > {out}/home.txt; echo \"$HOME\" > {out}/where.txt; pwd > {out}/cwd.txt"),
        }),
    );
    let out = run(&req, json!({})).await.expect("allowed");
    let files = &out["files"];
    assert_eq!(files["go/home.txt"], "", "the home is empty: {files:#}");
    let home = files["go/where.txt"].as_str().unwrap_or_default().trim();
    let daemon_home = std::env::var("HOME").unwrap_or_default();
    assert_ne!(home, daemon_home);
    assert!(!home.is_empty());
    let cwd = files["go/cwd.txt"].as_str().unwrap_or_default().trim();
    assert_ne!(cwd, std::env::current_dir().unwrap().display().to_string());
}

#[tokio::test]
async fn paths_escaping_the_repository_are_refused() {
    let r = repo();
    for spec_path in ["../outside.yaml", "/etc/passwd.yaml", "specs/../../x.yaml"] {
        let req = request(
            r.fixture.path(),
            json!({"spec_path": spec_path, "languages": ["x"], "generators": sh("x", "touch {out}/x")}),
        );
        let e = run(&req, json!({})).await.expect_err("escapes");
        assert!(!e.retryable());
        assert!(
            e.rendered().contains("leaves the repository"),
            "{spec_path}: {}",
            e.rendered()
        );
    }

    // A $ref that climbs out of the repository is refused too, before any generator runs.
    r.fixture.write(
        "specs/escape.yaml",
        "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    A: {$ref: '../../../etc/passwd#/x'}\n",
    );
    r.fixture.commit("escape");
    let marker = r.fixture.path().join("ran");
    let req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/escape.yaml",
            "languages": ["x"],
            "generators": sh("x", &format!("touch {}", marker.display())),
        }),
    );
    let e = run(&req, json!({})).await.expect_err("escaping $ref");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("must stay inside the repository"),
        "{}",
        e.rendered()
    );
    assert!(
        !marker.exists(),
        "the generator ran on a spec that did not load"
    );
}

#[tokio::test]
async fn unknown_commit_and_missing_spec_are_permanent() {
    let r = repo();
    let req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["x"], "generators": sh("x", "touch {out}/x")}),
    );
    let e = run(
        &req,
        json!({"commit": "0123456789abcdef0123456789abcdef01234567"}),
    )
    .await
    .expect_err("unknown commit");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("not found in the repository"),
        "{}",
        e.rendered()
    );

    let req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/gone.yaml", "languages": ["x"], "generators": sh("x", "touch {out}/x")}),
    );
    let e = run(&req, json!({})).await.expect_err("no such spec");
    assert!(e.rendered().contains("specs/gone.yaml"), "{}", e.rendered());
    assert!(e.rendered().contains(&r.b.to_string()), "{}", e.rendered());
}

#[tokio::test]
async fn output_over_the_cap_is_refused() {
    let r = repo();
    let mut req = request(
        r.fixture.path(),
        json!({
            "spec_path": "specs/api.yaml",
            "languages": ["big"],
            "generators": sh("big", "head -c 3000000 /dev/zero | tr '\\0' a > {out}/big.txt"),
        }),
    );
    req.limits.max_total_bytes = 1024 * 1024;
    let e = run(&req, json!({})).await.expect_err("too big");
    assert!(e.rendered().contains("exceed 1 MiB"), "{}", e.rendered());

    let req = request(
        r.fixture.path(),
        json!({"spec_path": "specs/api.yaml", "languages": ["none"], "generators": sh("none", "true")}),
    );
    let e = run(&req, json!({})).await.expect_err("nothing written");
    assert!(e.rendered().contains("wrote no files"), "{}", e.rendered());
}

#[tokio::test]
async fn proto_specs_bring_their_imports_and_need_a_command() {
    let fixture = Fixture::empty();
    fixture
        .write(
            "specs/proto/acme/pets/v1/pets.proto",
            "syntax = \"proto3\";\npackage acme.pets.v1;\nimport \"acme/common/v1/money.proto\";\nmessage Pet { string name = 1; acme.common.v1.Money price = 2; }\n",
        )
        .write(
            "specs/proto/acme/common/v1/money.proto",
            "syntax = \"proto3\";\npackage acme.common.v1;\nmessage Money { int64 units = 1; }\n",
        )
        .write(
            "specs/proto/acme/other/v1/other.proto",
            "syntax = \"proto3\";\npackage acme.other.v1;\n",
        );
    fixture.commit("protos");
    let req = request(
        fixture.path(),
        json!({
            "spec_path": "specs/proto/acme/pets/v1/pets.proto",
            "languages": ["listing"],
            "generators": sh("listing", "cd {root} && find . -type f | sort > {out}/files.txt"),
        }),
    );
    let out = run(&req, json!({})).await.expect("generates");
    assert_eq!(
        file(&out, "listing/files.txt"),
        "./specs/proto/acme/common/v1/money.proto\n./specs/proto/acme/pets/v1/pets.proto\n"
    );

    let req = request(
        fixture.path(),
        json!({"spec_path": "specs/proto/acme/pets/v1/pets.proto", "languages": ["python"]}),
    );
    let e = run(&req, json!({})).await.expect_err("no proto preset");
    assert!(!e.retryable());
    assert!(
        e.rendered().contains("no preset generator for .proto"),
        "{}",
        e.rendered()
    );
}
