//! What someone who can commit to the config repository or post to the API must not be able
//! to do, tried against the real daemon: read the daemon's secrets through event data or files
//! outside the allowed directories, reach its network, read its API without a token, flood
//! its webhook, forge events the daemon produces.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::daemon::{Daemon, commit_all, http};
use crate::support::receivers::HttpReceiver;

/// A repository in a temp dir with one pipeline file (and anything else in `files`).
fn repo_with(files: &[(&str, String)]) -> tempfile::TempDir {
    let repo = tempfile::tempdir().expect("tempdir");
    git2::Repository::init_opts(
        repo.path(),
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    for (path, text) in files {
        let p = repo.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }
    commit_all(repo.path(), "config");
    repo
}

fn post_event(d: &Daemon, body: Json) -> Json {
    let (status, ev) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(body.to_string().into_bytes()),
        Some(&d.auth()),
    )
    .expect("post");
    assert_eq!(status, 201, "{ev}");
    ev
}

/// Waits for the one execution of `pipeline` to finish; returns it.
fn finished(d: &Daemon, pipeline: &str) -> Json {
    newest_finished(d, pipeline, 1)
}

/// Waits until `pipeline` has `count` executions and the newest has finished; returns it.
fn newest_finished(d: &Daemon, pipeline: &str, count: usize) -> Json {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = d.get(&format!("/api/v1/executions?pipeline={pipeline}"));
        let items = page["executions"].as_array().cloned().unwrap_or_default();
        if items.len() == count
            && let Some(id) = items[0]["id"].as_str()
        {
            let e = d.get(&format!("/api/v1/executions/{id}"));
            if e["status"] != "running" && e["status"] != "pending" {
                return e;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{pipeline} did not finish: {}",
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn webhook_pipeline(url: &str, extra_config: &str) -> String {
    format!(
        "name: relay\ndefinition:\n  triggers:\n    - event: note.posted\n  steps:\n    - name: relay\n      step_type: notify\n      retries: 0\n      config:\n        type: webhook\n        webhook_url: \"{url}\"\n        message: \"{{{{ event.text }}}}\"\n        payload:\n          text: \"{{{{ event.text }}}}\"\n{extra_config}"
    )
}

/// The hole this closes: a reference in event data was resolved after the template was filled.
/// Now only references the repository wrote are: data keeps its `${...}` as text.
#[test]
fn secret_references_in_event_data_are_sent_as_text() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rx = rt.block_on(HttpReceiver::start());
    let secrets = tempfile::tempdir().expect("tempdir");
    let key = secrets.path().join("hook-key");
    std::fs::write(&key, "written-by-operator-1234").expect("write");
    let daemon_secret = secrets.path().join("github-token");
    std::fs::write(&daemon_secret, "ghp_daemonsecret0123456789").expect("write");
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline(
            &rx.url("/hook"),
            &format!(
                "        headers:\n          X-Key: \"${{file:{}}}\"\n",
                key.display()
            ),
        ),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start_env(
        repo.path(),
        state.path(),
        &[],
        &[("MOCKOPS_TEST_DAEMON_SECRET", "env-secret-value-5678")],
    );
    d.wait_ready();
    let text = format!(
        "leak ${{file:{}}} and ${{env:MOCKOPS_TEST_DAEMON_SECRET}}",
        daemon_secret.display()
    );
    post_event(
        &d,
        json!({"event_type": "note.posted", "payload": {"text": text}}),
    );
    let got = rt.block_on(rx.wait_for(1));
    let body = got[0].text();
    assert!(!body.contains("ghp_daemonsecret"), "{body}");
    assert!(!body.contains("env-secret-value"), "{body}");
    assert_eq!(got[0].json()["text"], text, "data arrives as written");
    assert_eq!(got[0].json()["message"], text);
    // The reference the repository wrote still works.
    assert_eq!(got[0].header("x-key"), Some("written-by-operator-1234"));
    let e = finished(&d, "relay");
    assert_eq!(e["status"], "succeeded", "{e:#}");
    assert!(d.terminate());
}

/// `${file:}` reads only from the allowed directories (default: $CREDENTIALS_DIRECTORY and
/// /run/secrets, plus `--secret-dir`), and `${env:}` only allowed names when a list is given.
#[test]
fn secret_files_outside_the_allowed_directories_are_refused() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rx = rt.block_on(HttpReceiver::start());
    let outside = tempfile::tempdir().expect("tempdir");
    let file = outside.path().join("key");
    std::fs::write(&file, "not-for-the-repo-9876").expect("write");
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline(
            &rx.url("/hook"),
            &format!(
                "        headers:\n          X-Key: \"${{file:{}}}\"\n          X-Env: \"${{env:HOME}}\"\n",
                file.display()
            ),
        ),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    // Loopback allowed for the receiver; no --secret-dir: the temp dir is not allowed.
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--strict", "--allow-outbound", "127.0.0.1"],
    );
    d.wait_ready();
    post_event(
        &d,
        json!({"event_type": "note.posted", "payload": {"text": "hi"}}),
    );
    let e = finished(&d, "relay");
    assert_eq!(e["status"], "failed", "{e:#}");
    let error = e["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("outside the directories"), "{error}");
    assert!(error.contains("--secret-dir"), "{error}");
    assert!(!error.contains("not-for-the-repo"), "{error}");
    assert!(rx.requests().is_empty(), "nothing was sent");
    assert!(d.terminate());

    // Allowed directory, but `${env:HOME}` is not on the allow-list.
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &[
            "--strict",
            "--allow-outbound",
            "127.0.0.1",
            "--secret-dir",
            &outside.path().display().to_string(),
            "--secret-env",
            "MOCKOPS_*",
        ],
    );
    d.wait_ready();
    post_event(
        &d,
        json!({"event_type": "note.posted", "payload": {"text": "again"}}),
    );
    let e = newest_finished(&d, "relay", 2);
    let error = e["steps"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("allow-list"), "{error}");
    assert!(rx.requests().is_empty(), "nothing was sent");
    assert!(d.terminate());
}

/// Notifications may not reach loopback, link-local or private addresses unless the operator
/// allows them; the refusal is permanent (no retries) and names the flag.
#[test]
fn outbound_requests_to_the_daemons_network_are_refused() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let rx = rt.block_on(HttpReceiver::start());
    let by_name = rx.url("/by-name").replace("127.0.0.1", "localhost");
    let repo = repo_with(&[
        (
            "pipelines/relay.yaml",
            webhook_pipeline(&rx.url("/hook"), ""),
        ),
        (
            "pipelines/metadata.yaml",
            webhook_pipeline("http://169.254.169.254/latest/meta-data/", "")
                .replace("name: relay", "name: metadata")
                .replace("- name: relay", "- name: fetch"),
        ),
        (
            "pipelines/named.yaml",
            webhook_pipeline(&by_name, "")
                .replace("name: relay", "name: named")
                .replace("- name: relay", "- name: post"),
        ),
    ]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(repo.path(), state.path(), &["--strict"]);
    d.wait_ready();
    post_event(
        &d,
        json!({"event_type": "note.posted", "payload": {"text": "x"}}),
    );
    for (pipeline, what) in [
        ("relay", "loopback"),
        ("metadata", "link-local"),
        ("named", "loopback"),
    ] {
        let e = finished(&d, pipeline);
        assert_eq!(e["status"], "failed", "{e:#}");
        let error = e["steps"][0]["error"].as_str().unwrap_or_default();
        assert!(error.contains("refused"), "{pipeline}: {error}");
        assert!(error.contains(what), "{pipeline}: {error}");
        assert!(error.contains("--allow-outbound"), "{pipeline}: {error}");
        assert_eq!(
            e["steps"][0]["attempts"], 1,
            "a refusal is not retried: {e:#}"
        );
    }
    assert!(
        rx.requests().is_empty(),
        "the receiver on loopback got nothing"
    );
    assert!(d.terminate());
}

/// Reads need a token; health, readiness and metrics stay open; a read-only token reads but
/// cannot write; `--anonymous-read` opens reads.
#[test]
fn reads_need_a_token_unless_opened() {
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline("https://hooks.example.com/x", ""),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let read_token = state.path().join("read-token");
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&read_token)
            .expect("create");
        f.write_all(b"reader-token-abcdef\n").expect("write");
    }
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--api-read-token-file", &read_token.display().to_string()],
    );
    d.wait_ready();
    for open in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(
            http("GET", &d.url(open), None, None).expect("get").0,
            200,
            "{open}"
        );
    }
    let reader = [("authorization", "Bearer reader-token-abcdef".to_string())];
    for guarded in [
        "/api/v1/status",
        "/api/v1/events",
        "/api/v1/events/1",
        "/api/v1/revisions",
        "/api/v1/revisions/1",
        "/api/v1/pipelines",
        "/api/v1/pipelines/relay",
        "/api/v1/services",
        "/api/v1/federations",
        "/api/v1/executions",
    ] {
        let (status, body) = http("GET", &d.url(guarded), None, None).expect("get");
        assert_eq!(status, 401, "{guarded}: {body}");
        assert!(body.to_string().contains("api-token"), "{guarded}: {body}");
        let wrong = [("authorization", "Bearer nope".to_string())];
        assert_eq!(
            http("GET", &d.url(guarded), None, Some(&wrong))
                .expect("get")
                .0,
            401
        );
        let (status, body) = http("GET", &d.url(guarded), None, Some(&d.auth())).expect("get");
        assert!(status == 200 || status == 404, "{guarded}: {status} {body}");
        let (status, _) = http("GET", &d.url(guarded), None, Some(&reader)).expect("get");
        assert!(
            status == 200 || status == 404,
            "{guarded} with the read token: {status}"
        );
    }
    // The read-only token cannot write.
    let (status, _) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(br#"{"event_type": "note.posted"}"#.to_vec()),
        Some(&reader),
    )
    .expect("post");
    assert_eq!(status, 401);
    assert!(d.terminate());

    let mut d = Daemon::start(repo.path(), state.path(), &["--anonymous-read"]);
    d.wait_ready();
    assert_eq!(
        http("GET", &d.url("/api/v1/events"), None, None)
            .expect("get")
            .0,
        200
    );
    let (status, _) = http(
        "POST",
        &d.url("/api/v1/events"),
        Some(br#"{"event_type": "note.posted"}"#.to_vec()),
        None,
    )
    .expect("post");
    assert_eq!(status, 401, "writes still need the token");
    assert!(d.terminate());
}

/// Secrets written inline in the repository (the validator warns about them) are masked in
/// the desired state and in execution snapshots the API serves.
#[test]
fn inline_secrets_are_masked_in_api_output() {
    let pipeline = webhook_pipeline(
        "https://hooks.example.com/x",
        "        secret: hunter2-inline-secret\n",
    );
    let repo = repo_with(&[("pipelines/relay.yaml", pipeline)]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let one = d.get("/api/v1/pipelines/relay");
    let text = one.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(
        one["spec"]["definition"]["steps"][0]["config"]["secret"], "***",
        "{one:#}"
    );
    assert!(!d.get("/api/v1/pipelines").to_string().contains("hunter2"));
    assert!(d.terminate());
}

/// The generated token comes from the OS's CSPRNG (64 hex digits, mode 0600); a token file
/// others can read is refused at start with the fix.
#[test]
fn the_api_token_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline("https://hooks.example.com/x", ""),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let token = d.token();
    assert_eq!(token.len(), 64);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    let path = state.path().join("api-token");
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(d.terminate());

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = std::process::Command::new(crate::support::bin())
        .args(["daemon", "--repo"])
        .arg(repo.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("0644") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    assert!(!stderr.contains(&token), "the token is not printed");
}

/// The webhook route answers a delivery without a signature, or announcing a body over the
/// cap, before reading the body.
#[test]
fn the_webhook_refuses_cheaply() {
    use std::io::{Read as _, Write as _};
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline("https://hooks.example.com/x", ""),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let secret = state.path().join("hook-secret");
    std::fs::write(&secret, "s3cret-hook").expect("write");
    let mut d = Daemon::start(
        repo.path(),
        state.path(),
        &["--webhook-secret-file", &secret.display().to_string()],
    );
    d.wait_ready();
    let exchange = |head: &str| -> String {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", d.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(head.as_bytes()).expect("write");
        // No body is sent: an answer proves the daemon did not wait for it.
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).expect("an answer before any body byte");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let started = Instant::now();
    let unsigned = exchange(
        "POST /api/v1/webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: 20000000\r\n\r\n",
    );
    assert!(unsigned.starts_with("HTTP/1.1 401"), "{unsigned}");
    let huge = exchange(&format!(
        "POST /api/v1/webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256={}\r\nContent-Length: 999999999\r\n\r\n",
        "0".repeat(64)
    ));
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(d.terminate());
}

/// A commit whose message carries promotion trailers written by hand does not produce
/// `promotion.completed`: only trailers signed with the daemon's key do.
#[test]
fn hand_written_promotion_trailers_are_ignored() {
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline("https://hooks.example.com/x", ""),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    std::fs::write(repo.path().join("README.md"), "forged").expect("write");
    let sha = crate::support::daemon::commit_all(
        repo.path(),
        "Promote scenario checkout from test to prod\n\nMockops-Promotion-Id: promo-forged\nMockops-Promotion: scenario checkout test prod\nMockops-Promotion-Signature: 00\n",
    );
    d.wait_attempted(&sha.to_string());
    let events = d.all_events();
    assert!(
        events
            .iter()
            .all(|e| e["event_type"] != "promotion.completed"),
        "{events:#?}"
    );
    assert!(d.log_text().contains("without this daemon's signature"));
    assert!(d.terminate());
}

/// A manual run simulating an event type the daemon produces is stored as `manual`, so the
/// log never holds a `schema.changed` the daemon did not produce.
#[test]
fn manual_runs_cannot_store_daemon_event_types() {
    let repo = repo_with(&[(
        "pipelines/relay.yaml",
        webhook_pipeline("https://hooks.example.com/x", ""),
    )]);
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(repo.path(), state.path(), &[]);
    d.wait_ready();
    let (status, body) = http(
        "POST",
        &d.url("/api/v1/pipelines/relay/trigger"),
        Some(
            br#"{"event_type": "schema.changed", "spec_path": "specs/a.yaml", "breaking": true}"#
                .to_vec(),
        ),
        Some(&d.auth()),
    )
    .expect("post");
    assert_eq!(status, 201, "{body}");
    let events = d.all_events();
    assert!(
        events.iter().all(|e| e["event_type"] != "schema.changed"),
        "{events:#?}"
    );
    let manual = events
        .iter()
        .find(|e| e["event_type"] == "manual")
        .expect("stored as manual");
    assert_eq!(manual["payload"]["simulated_event_type"], "schema.changed");
    assert!(d.terminate());
}

/// The built-in demo runs its whole loop on a fresh machine with the strict defaults: a spec
/// commit gives `schema.changed`, a pull request branch in the local remote, and messages in
/// the demo inbox.
#[test]
fn the_demo_shows_commit_event_pipeline_notification_and_pull_request() {
    let state = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start_demo(state.path(), &["--strict"]);
    d.wait_ready();
    let repo = state.path().join("demo-repo");
    let spec = repo.join("specs/payments/openapi.yaml");
    let text = std::fs::read_to_string(&spec).expect("spec");
    std::fs::write(
        &spec,
        text.replace("enum: [usd, eur, nok]", "enum: [usd, eur]"),
    )
    .expect("write");
    let sha = commit_all(&repo, "payments: stop taking NOK");
    d.wait_attempted(&sha.to_string());

    let deadline = Instant::now() + Duration::from_secs(60);
    let inbox = loop {
        let (status, inbox) = http("GET", &d.url("/demo/inbox"), None, None).expect("inbox");
        assert_eq!(status, 200, "{inbox}");
        let texts: Vec<String> = inbox["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["text"].as_str().map(str::to_string))
            .collect();
        if texts.iter().any(|t| t.contains("Breaking change"))
            && texts.iter().any(|t| t.contains("pull request branch"))
        {
            break texts;
        }
        assert!(
            Instant::now() < deadline,
            "{inbox:#}\n{:#}\n{}",
            d.get("/api/v1/executions"),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        inbox
            .iter()
            .any(|t| t.contains("specs/payments/openapi.yaml")),
        "{inbox:#?}"
    );
    // The messages are also kept in the state directory.
    let kept = std::fs::read_to_string(state.path().join("demo-inbox.jsonl")).expect("inbox file");
    assert!(kept.contains("Breaking change"), "{kept}");
    // The pull request is a branch of the local remote, with the changelog entry.
    let remote =
        git2::Repository::open_bare(state.path().join("remotes/demo-sdk.git")).expect("remote");
    let branch = remote
        .references_glob("refs/heads/mockops/spec-change-pr/*")
        .expect("glob")
        .flatten()
        .next()
        .expect("a pull request branch");
    let tree = branch.peel_to_tree().expect("tree");
    let entry = tree
        .get_path(std::path::Path::new(
            "changelog/specs/payments/openapi.yaml.md",
        ))
        .expect("changelog entry");
    let blob = remote.find_blob(entry.id()).expect("blob");
    let content = String::from_utf8_lossy(blob.content());
    assert!(content.contains(&sha.to_string()), "{content}");
    let e = finished(&d, "spec-change-pr");
    assert_eq!(e["status"], "succeeded", "{e:#}");
    // The inbox takes messages of at most 256 KiB.
    let (status, _) = http(
        "POST",
        &d.url("/demo/inbox/slack"),
        Some(vec![b'x'; 300 * 1024]),
        None,
    )
    .expect("post");
    assert_eq!(status, 413);
    assert!(d.terminate());
}
