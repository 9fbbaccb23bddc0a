//! Pull requests end to end: the lifecycle against the GitHub API emulator (every request
//! checked against GitHub's OpenAPI description), and the plain Git fallback against a real
//! bare repository.

use std::time::{Duration, Instant};

use axum::http::Method;
use mockops::github::{Auth, GitHub};
use mockops::pipeline::steps::create_pr::{
    EventInfo, GitRemote, PrAction, PrLimits, PrRequest, apply, apply_git, parse_metadata,
};

use crate::support::github::{Fault, GitHubEmulator};

const REPO: &str = "acme/sdk";

async fn emulator() -> GitHubEmulator {
    let emu = GitHubEmulator::start().await;
    emu.create_repo(
        REPO,
        &[
            ("README.md", "# SDK\n"),
            (
                "sdk/client.ts",
                "export const version = 1;\nexport function ping() {}\n",
            ),
        ],
    );
    emu
}

fn client(api_url: &str) -> GitHub {
    GitHub::builder()
        .api_url(api_url)
        .token("ghp_testtoken")
        .mutation_interval(Duration::ZERO)
        .server_error_backoff(2, Duration::from_millis(10))
        .build()
        .expect("client")
}

fn request(version: u32, event: &str) -> PrRequest {
    let mut req = PrRequest::new(
        REPO,
        "main",
        "auto-sdk",
        "specs/petstore.yaml",
        "Regenerate the SDK",
    )
    .write(
        "sdk/client.ts",
        format!("export const version = {version};\nexport function ping() {{}}\n"),
    )
    .expect("path")
    .write(
        "sdk/models/pet.ts",
        format!("export interface Pet {{ v{version}: string }}\n"),
    )
    .expect("path");
    req.description = Some("The Petstore spec changed, so the SDK was regenerated.".into());
    req.event = Some(EventInfo {
        id: event.into(),
        event_type: "schema.changed".into(),
        source: "commit:0123abcd".into(),
    });
    req.labels = vec!["sdk".into(), "mockops".into()];
    req.reviewers = vec!["alice".into()];
    req.team_reviewers = vec!["sdk-team".into()];
    req
}

#[tokio::test]
async fn the_same_request_twice_opens_one_pull_request() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let req = request(2, "evt-1");

    let first = apply(&gh, &req).await.expect("first");
    assert_eq!(first.action, PrAction::Opened, "{first:?}");
    assert_eq!(first.number, Some(1));
    assert_eq!(first.branch, "mockops/auto-sdk/specs-petstore.yaml");
    assert!(first.url.as_deref().unwrap().ends_with("/acme/sdk/pull/1"));

    let second = apply(&gh, &request(2, "evt-2")).await.expect("second");
    assert_eq!(second.action, PrAction::Unchanged, "{second:?}");
    assert_eq!(second.number, Some(1));

    let pulls = emu.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    let pr = &pulls[0];
    assert_eq!(pr.labels, ["sdk", "mockops"]);
    assert_eq!(pr.reviewers, ["alice"]);
    assert_eq!(pr.teams, ["sdk-team"]);
    assert!(
        pr.body.starts_with("The Petstore spec changed"),
        "{}",
        pr.body
    );
    assert!(
        pr.body
            .contains("`schema.changed` event `evt-1` from `commit:0123abcd`")
    );
    assert!(
        pr.body
            .contains("-export const version = 1;\n+export const version = 2;"),
        "{}",
        pr.body
    );
    assert!(pr.body.contains("| `sdk/models/pet.ts` | added |"));
    let meta = parse_metadata(&pr.body).expect("metadata");
    assert_eq!(meta.content_hash, req.content_hash());
    assert_eq!(meta.event_id.as_deref(), Some("evt-1"));

    assert_eq!(
        emu.commits_ahead(REPO, &first.branch, "main"),
        1,
        "one commit for all files"
    );
    assert_eq!(
        emu.file(REPO, &first.branch, "sdk/client.ts").unwrap(),
        "export const version = 2;\nexport function ping() {}\n"
    );
    assert_eq!(
        emu.file(REPO, &first.branch, "README.md").unwrap(),
        "# SDK\n",
        "base tree kept"
    );
    assert_eq!(
        emu.count("POST", "/git/commits"),
        1,
        "nothing pushed the second time"
    );
    assert_eq!(emu.count("PATCH", "/pulls/1"), 0);
    assert!(emu.requests().iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.ends_with("ghp_testtoken"))
    }));
    emu.assert_conformant();
}

/// A request validated against one base commit writes nothing once the base has moved.
#[tokio::test]
async fn a_request_for_a_base_that_moved_writes_nothing() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let validated = emu.branch_sha(REPO, "main").expect("main");
    let moved = emu.commit_to(REPO, "main", "README.md", "# SDK, edited\n");
    let mut req = request(2, "evt-1");
    req.expected_base = Some(validated.clone());
    let out = apply(&gh, &req).await.expect("apply");
    assert_eq!(out.action, PrAction::BaseMoved, "{out:?}");
    let reason = out.reason.unwrap_or_default();
    assert!(
        reason.contains(&validated) && reason.contains(&moved),
        "{reason}"
    );
    assert!(emu.pulls(REPO).is_empty());
    assert!(
        emu.branch_sha(REPO, &out.branch).is_none(),
        "no branch is written"
    );

    // On the current base it goes through.
    req.expected_base = Some(moved);
    let out = apply(&gh, &req).await.expect("apply");
    assert_eq!(out.action, PrAction::Opened, "{out:?}");
    emu.assert_conformant();
}

#[tokio::test]
async fn changed_content_updates_the_same_pull_request() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let first = apply(&gh, &request(2, "evt-1")).await.expect("first");
    let before = emu.branch_sha(REPO, &first.branch).unwrap();

    let req = request(3, "evt-2");
    let second = apply(&gh, &req).await.expect("second");
    assert_eq!(second.action, PrAction::Updated, "{second:?}");
    assert_eq!(second.number, first.number);
    let after = emu.branch_sha(REPO, &first.branch).unwrap();
    assert_ne!(before, after);
    assert_eq!(second.commit.as_deref(), Some(after.as_str()));
    assert_eq!(
        emu.commits_ahead(REPO, &first.branch, "main"),
        1,
        "still one commit on main"
    );
    assert!(
        emu.file(REPO, &first.branch, "sdk/client.ts")
            .unwrap()
            .contains("version = 3")
    );

    let pulls = emu.pulls(REPO);
    assert_eq!(pulls.len(), 1);
    assert!(pulls[0].body.contains("+export const version = 3;"));
    assert!(pulls[0].body.contains("event `evt-2`"));
    assert_eq!(
        parse_metadata(&pulls[0].body).unwrap().content_hash,
        req.content_hash()
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn a_human_commit_on_the_branch_gets_a_comment_not_a_force_push() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let first = apply(&gh, &request(2, "evt-1")).await.expect("first");
    let human = emu.push_human_commit(REPO, &first.branch, "sdk/client.ts", "hand-written\n");

    let second = apply(&gh, &request(3, "evt-2")).await.expect("second");
    assert_eq!(second.action, PrAction::Commented, "{second:?}");
    assert_eq!(
        emu.branch_sha(REPO, &first.branch).unwrap(),
        human,
        "branch untouched"
    );
    let comments = emu.comments(REPO, 1);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].body.contains("Ann Human <ann@example.com>"),
        "{}",
        comments[0].body
    );

    let third = apply(&gh, &request(3, "evt-3")).await.expect("third");
    assert_eq!(third.action, PrAction::Commented);
    assert_eq!(emu.comments(REPO, 1).len(), 1, "one comment per content");
    assert_eq!(emu.branch_sha(REPO, &first.branch).unwrap(), human);
    assert_eq!(
        emu.count(
            "PATCH",
            "/git/refs/heads/mockops/auto-sdk/specs-petstore.yaml"
        ),
        0
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn a_pull_request_closed_without_merge_is_not_reopened_for_the_same_content() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    apply(&gh, &request(2, "evt-1")).await.expect("first");
    emu.close_pull(REPO, 1);

    let again = apply(&gh, &request(2, "evt-2")).await.expect("again");
    assert_eq!(again.action, PrAction::SkippedClosed, "{again:?}");
    assert_eq!(again.number, Some(1));
    assert_eq!(emu.pulls(REPO).len(), 1);
    assert_eq!(emu.pulls(REPO)[0].state, "closed");

    let changed = apply(&gh, &request(3, "evt-3")).await.expect("changed");
    assert_eq!(
        changed.action,
        PrAction::Opened,
        "new content, new pull request"
    );
    assert_eq!(changed.number, Some(2));
    emu.assert_conformant();
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    emu.inject(Method::POST, "/pulls", 1, Fault::SecondaryRateLimit(1));
    let start = Instant::now();
    let out = apply(&gh, &request(2, "evt-1")).await.expect("apply");
    assert_eq!(out.action, PrAction::Opened);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited for retry-after"
    );
    assert_eq!(emu.count("POST", "/pulls"), 2);
    assert_eq!(emu.pulls(REPO).len(), 1);
    emu.assert_conformant();
}

#[tokio::test]
async fn a_primary_rate_limit_waits_for_the_reset() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    emu.inject(
        Method::GET,
        "/git/ref/heads/main",
        1,
        Fault::PrimaryRateLimit(1),
    );
    let start = Instant::now();
    let out = apply(&gh, &request(2, "evt-1")).await.expect("apply");
    assert_eq!(out.action, PrAction::Opened);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "waited for x-ratelimit-reset"
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn a_rate_limit_that_outlasts_the_retries_is_a_retryable_failure() {
    let emu = emulator().await;
    let gh = GitHub::builder()
        .api_url(emu.api_url())
        .token("ghp_testtoken")
        .mutation_interval(Duration::ZERO)
        .rate_limit_retries(1)
        .build()
        .expect("client");
    emu.inject(Method::POST, "/pulls", 10, Fault::SecondaryRateLimit(1));
    let err = apply(&gh, &request(2, "evt-1")).await.expect_err("limited");
    assert!(err.retryable(), "{err:?}");
    assert!(
        err.rendered().contains("secondary rate limit"),
        "{}",
        err.rendered()
    );
    assert!(!err.rendered().contains("ghp_testtoken"));
    emu.assert_conformant();
}

#[tokio::test]
async fn server_errors_in_the_commit_sequence_leave_no_half_made_branch() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let branch = "mockops/auto-sdk/specs-petstore.yaml";

    emu.inject(Method::POST, "/git/commits", 1000, Fault::ServerError(502));
    let err = apply(&gh, &request(2, "evt-1"))
        .await
        .expect_err("commits fail");
    assert!(err.retryable(), "{err:?}");
    assert!(err.rendered().contains("502"), "{}", err.rendered());
    assert_eq!(
        emu.branch_sha(REPO, branch),
        None,
        "no branch without its commit"
    );
    assert!(emu.pulls(REPO).is_empty());

    emu.clear_faults();
    // The branch is created but the answer is lost, then the pull request likewise: the
    // replayed requests find them and carry on.
    emu.inject(Method::POST, "/git/refs", 1, Fault::ServerErrorAfter);
    emu.inject(Method::POST, "/pulls", 1, Fault::ServerErrorAfter);
    emu.inject(Method::POST, "/git/trees", 1, Fault::ServerError(500));
    let out = apply(&gh, &request(2, "evt-1"))
        .await
        .expect("retry repairs");
    assert_eq!(out.action, PrAction::Opened, "{out:?}");
    assert_eq!(emu.pulls(REPO).len(), 1);
    assert_eq!(emu.commits_ahead(REPO, branch, "main"), 1);
    assert_eq!(out.commit, emu.branch_sha(REPO, branch));
    assert_eq!(
        emu.count("POST", "/git/refs"),
        2,
        "the create was replayed once"
    );
    assert_eq!(
        emu.count("POST", "/pulls"),
        2,
        "the replay met 422 already exists"
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn a_failure_after_the_branch_is_repaired_by_the_next_attempt() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    emu.inject(Method::POST, "/pulls", 1000, Fault::ServerError(503));
    let err = apply(&gh, &request(2, "evt-1"))
        .await
        .expect_err("pulls fail");
    assert!(err.retryable());
    emu.clear_faults();
    let out = apply(&gh, &request(2, "evt-1"))
        .await
        .expect("second attempt");
    assert_eq!(out.action, PrAction::Opened, "{out:?}");
    assert_eq!(
        emu.count("POST", "/git/commits"),
        1,
        "the branch was already right"
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn unsafe_paths_are_rejected_before_any_request() {
    for bad in [
        "../escape.txt",
        "/etc/passwd",
        ".git/hooks/post-checkout",
        "a//b",
        "a\\b",
    ] {
        let err = PrRequest::new(REPO, "main", "p", "t", "T")
            .write(bad, "x")
            .expect_err(bad);
        assert!(!err.retryable());
        assert!(
            err.rendered().contains(bad.replace('\\', "\\\\").as_str()),
            "{}",
            err.rendered()
        );
    }
}

#[tokio::test]
async fn limits_per_hour_and_open_at_once_hold() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let topic = |t: &str, per_hour, open| {
        let mut r = request(2, "evt");
        r.topic = t.into();
        r.head_branch = mockops::pipeline::steps::create_pr::branch_name("mockops/", "auto-sdk", t);
        r.limits = PrLimits {
            max_per_hour: per_hour,
            max_open: open,
        };
        r
    };
    assert_eq!(
        apply(&gh, &topic("a", 10, 1)).await.unwrap().action,
        PrAction::Opened
    );
    let limited = apply(&gh, &topic("b", 10, 1)).await.unwrap();
    assert_eq!(limited.action, PrAction::Limited);
    assert!(limited.reason.unwrap().contains("max_open"));
    assert_eq!(
        emu.branch_sha(REPO, "mockops/auto-sdk/b"),
        None,
        "nothing pushed"
    );

    emu.close_pull(REPO, 1);
    let limited = apply(&gh, &topic("b", 1, 5)).await.unwrap();
    assert_eq!(limited.action, PrAction::Limited);
    assert!(limited.reason.unwrap().contains("max_per_hour"));
    assert_eq!(
        apply(&gh, &topic("b", 2, 5)).await.unwrap().action,
        PrAction::Opened
    );
    // Updating an open pull request is never limited.
    let mut upd = topic("b", 0, 0);
    upd = upd.write("extra.txt", "x").unwrap();
    assert_eq!(apply(&gh, &upd).await.unwrap().action, PrAction::Updated);
    emu.assert_conformant();
}

#[tokio::test]
async fn deletions_and_binary_files_make_one_commit() {
    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let req = request(2, "evt")
        .delete("README.md")
        .unwrap()
        .delete("not/there.txt")
        .unwrap()
        .write("logo.bin", vec![0u8, 159, 146, 150, 255])
        .unwrap();
    let out = apply(&gh, &req).await.expect("apply");
    assert_eq!(out.action, PrAction::Opened);
    assert_eq!(emu.file(REPO, &out.branch, "README.md"), None);
    assert!(emu.file(REPO, &out.branch, "logo.bin").is_some());
    assert_eq!(emu.commits_ahead(REPO, &out.branch, "main"), 1);
    let body = &emu.pulls(REPO)[0].body;
    assert!(body.contains("| `README.md` | deleted |"), "{body}");
    assert!(body.contains("logo.bin: binary file"), "{body}");
    emu.assert_conformant();
}

#[tokio::test]
async fn github_enterprise_base_path_is_kept() {
    let emu = GitHubEmulator::start_at("/api/v3").await;
    emu.create_repo(REPO, &[("README.md", "x\n")]);
    for url in [emu.api_url(), format!("{}/", emu.api_url())] {
        let gh = client(&url);
        let out = apply(&gh, &request(2, "evt")).await.expect("apply");
        assert!(
            matches!(out.action, PrAction::Opened | PrAction::Unchanged),
            "{out:?}"
        );
    }
    assert!(emu.requests().len() > 5);
    assert_eq!(emu.pulls(REPO).len(), 1);
    emu.assert_conformant();
}

#[tokio::test]
async fn github_app_authentication_uses_installation_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    let emu = emulator().await;
    let gh = GitHub::builder()
        .api_url(emu.api_url())
        .auth(Auth::App {
            app_id: 7,
            private_key_pem: std::fs::read(&key).unwrap(),
        })
        .mutation_interval(Duration::ZERO)
        .build()
        .expect("app client");
    assert_eq!(
        apply(&gh, &request(2, "e1")).await.unwrap().action,
        PrAction::Opened
    );
    assert_eq!(
        apply(&gh, &request(3, "e2")).await.unwrap().action,
        PrAction::Updated
    );
    assert_eq!(
        emu.count("GET", "/installation"),
        1,
        "installation looked up once"
    );
    assert_eq!(emu.count("POST", "/access_tokens"), 1, "token cached");
    let repo_calls: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/repos/") && !r.path.ends_with("/installation"))
        .collect();
    assert!(!repo_calls.is_empty());
    assert!(
        repo_calls
            .iter()
            .all(|r| r.authorization.as_deref() == Some("Bearer ghs_installation42")),
        "{repo_calls:?}"
    );
    emu.assert_conformant();
}

#[tokio::test]
async fn a_rendered_step_config_with_generated_files_becomes_one_pull_request() {
    use mockops::model::{CreatePrConfig, FileChange, FileOperation, PullRequestSettings};
    use mockops::pipeline::steps::StepContext;
    use serde_json::json;

    let emu = emulator().await;
    let gh = client(&emu.api_url());
    let cfg = CreatePrConfig {
        repository: format!("https://github.com/{REPO}"),
        branch: "main".into(),
        title: "SDK for specs/petstore.yaml".into(),
        body: Some("Regenerated after a schema change.".into()),
        files: vec![FileChange {
            path: "sdk/typescript".into(),
            content: None,
            from_step: Some("regenerate_sdk".into()),
            from_drift: None,
            operation: FileOperation::Update,
        }],
        topic: Some("specs/petstore.yaml".into()),
        labels: vec!["sdk".into()],
        reviewers: vec![],
        team_reviewers: vec![],
        draft: true,
        provider: None,
        commit_message: Some("Regenerate the TypeScript SDK".into()),
    };
    let ctx = StepContext {
        execution_id: "exec-7".into(),
        pipeline: "auto-sdk-regeneration".into(),
        step: "open_pr".into(),
        attempt: 1,
        idempotency_key: "exec-7/open_pr".into(),
        event: json!({"id": "evt-42", "event_type": "schema.changed", "source": "commit:abc"}),
        steps: serde_json::Value::Null,
    };
    let steps = json!({"regenerate_sdk": {"outputs": {"files": {
        "index.ts": "export * from './api';\n",
        "src/api.ts": "export class Api {}\n",
    }}}});
    let settings = PullRequestSettings {
        labels: vec!["mockops".into()],
        ..Default::default()
    };
    let req =
        mockops::pipeline::steps::create_pr::request_from_config(&cfg, &settings, &ctx, &steps)
            .expect("request");
    let out = apply(&gh, &req).await.expect("apply");
    assert_eq!(out.action, PrAction::Opened);
    assert_eq!(
        out.branch,
        "mockops/auto-sdk-regeneration/specs-petstore.yaml"
    );
    let outputs = out.outputs();
    assert_eq!(outputs["action"], "opened");
    assert_eq!(outputs["pr_number"], 1);
    assert_eq!(outputs["branch"], json!(out.branch));
    assert_eq!(
        emu.file(REPO, &out.branch, "sdk/typescript/src/api.ts")
            .as_deref(),
        Some("export class Api {}\n")
    );
    let pr = &emu.pulls(REPO)[0];
    assert!(pr.draft);
    assert_eq!(pr.labels, ["mockops", "sdk"]);
    emu.assert_conformant();
}

#[test]
fn the_emulator_flags_requests_that_break_the_openapi_description() {
    use serde_json::json;
    let spec = crate::support::github::openapi::spec();
    let ok = spec.check(
        "POST",
        "/repos/o/r/git/trees",
        "",
        Some(&json!({"base_tree": "abc", "tree": [{"path": "a", "mode": "100644", "type": "blob", "sha": null}]})),
    );
    assert!(ok.is_empty(), "{ok:?}");
    let bad = spec.check(
        "POST",
        "/repos/o/r/git/trees",
        "",
        Some(&json!({"tree": [{"path": "a", "mode": "100645", "type": "blob", "sha": 5}]})),
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
    let bad = spec.check("POST", "/repos/o/r/pulls", "", Some(&json!({"title": "t"})));
    assert!(bad.iter().any(|v| v.contains("head")), "{bad:?}");
    let bad = spec.check(
        "GET",
        "/repos/o/r/pulls",
        "state=merged&per_page=x&colour=red",
        None,
    );
    assert_eq!(bad.len(), 3, "{bad:?}");
    assert!(
        spec.check("GET", "/repos/o/r/git/ref/heads/a/b/c", "", None)
            .is_empty()
    );
    assert!(
        spec.check(
            "PATCH",
            "/repos/o/r/git/refs/heads/a/b",
            "",
            Some(&json!({"sha": "x", "force": true}))
        )
        .is_empty()
    );
    assert_eq!(spec.check("GET", "/repos/o/r/nonsense", "", None).len(), 1);
    assert!(
        !spec.check("POST", "/repos/o/r/pulls", "", None).is_empty(),
        "body required"
    );
}

mod git_fallback {
    use super::*;
    use git2::Repository;

    fn bare_remote() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("git fixture");
        let repo = Repository::init_bare(dir.path()).expect("git fixture");
        let mut tb = repo.treebuilder(None).expect("git fixture");
        tb.insert(
            "README.md",
            repo.blob(b"# SDK\n").expect("git fixture"),
            0o100644,
        )
        .expect("git fixture");
        let tree = repo
            .find_tree(tb.write().expect("git fixture"))
            .expect("git fixture");
        let sig = git2::Signature::now("Owner", "owner@example.com").expect("git fixture");
        repo.commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[])
            .expect("git fixture");
        let url = format!("file://{}", dir.path().display());
        (dir, url)
    }

    fn file_at(dir: &std::path::Path, branch: &str, path: &str) -> Option<String> {
        let repo = Repository::open_bare(dir).expect("git fixture");
        let c = repo
            .find_reference(&format!("refs/heads/{branch}"))
            .ok()?
            .peel_to_commit()
            .ok()?;
        let e = c.tree().ok()?.get_path(std::path::Path::new(path)).ok()?;
        Some(
            String::from_utf8_lossy(repo.find_blob(e.id()).expect("git fixture").content())
                .into_owned(),
        )
    }

    fn head(dir: &std::path::Path, branch: &str) -> Option<git2::Oid> {
        Repository::open_bare(dir)
            .expect("git fixture")
            .refname_to_id(&format!("refs/heads/{branch}"))
            .ok()
    }

    #[tokio::test]
    async fn pushes_one_commit_updates_in_place_and_respects_humans() {
        let (dir, url) = bare_remote();
        let remote = GitRemote {
            url: url.clone(),
            ..Default::default()
        };
        let mut req = request(2, "evt-1");
        req.repository = url;

        let first = apply_git(&remote, &req).await.expect("push");
        assert_eq!(first.action, PrAction::Pushed, "{first:?}");
        let branch = first.branch.clone();
        assert!(
            file_at(dir.path(), &branch, "sdk/client.ts")
                .unwrap()
                .contains("version = 2")
        );
        assert_eq!(
            file_at(dir.path(), &branch, "README.md").unwrap(),
            "# SDK\n"
        );

        let again = apply_git(&remote, &req).await.expect("again");
        assert_eq!(again.action, PrAction::Unchanged);
        assert_eq!(
            head(dir.path(), &branch).map(|o| o.to_string()),
            first.commit
        );

        let mut changed = request(3, "evt-2");
        changed.repository = req.repository.clone();
        let upd = apply_git(&remote, &changed).await.expect("update");
        assert_eq!(upd.action, PrAction::Updated);
        let repo = Repository::open_bare(dir.path()).unwrap();
        let tip = head(dir.path(), &branch).unwrap();
        let main = head(dir.path(), "main").unwrap();
        assert_eq!(
            repo.graph_ahead_behind(tip, main).unwrap(),
            (1, 0),
            "one commit on the base"
        );

        // A person commits on the branch: mockops no longer pushes.
        let parent = repo.find_commit(tip).unwrap();
        let sig = git2::Signature::now("Ann Human", "ann@example.com").unwrap();
        let human = repo
            .commit(
                Some(&format!("refs/heads/{branch}")),
                &sig,
                &sig,
                "by hand",
                &parent.tree().unwrap(),
                &[&parent],
            )
            .unwrap();
        let mut next = request(4, "evt-3");
        next.repository = req.repository.clone();
        let skipped = apply_git(&remote, &next).await.expect("skip");
        assert_eq!(skipped.action, PrAction::SkippedForeign, "{skipped:?}");
        assert_eq!(head(dir.path(), &branch), Some(human));
    }

    #[tokio::test]
    async fn a_missing_base_branch_is_a_clear_permanent_error() {
        let (_dir, url) = bare_remote();
        let mut req = request(2, "evt");
        req.base_branch = "develop".into();
        let err = apply_git(
            &GitRemote {
                url,
                ..Default::default()
            },
            &req,
        )
        .await
        .expect_err("no base");
        assert!(!err.retryable());
        assert!(
            err.rendered().contains("\"develop\" does not exist"),
            "{}",
            err.rendered()
        );
    }
}

/// Promotions into environments with `direct_commit: true`: one commit straight onto the
/// followed branch, on GitHub, on any Git remote, and in a repository on this machine.
mod direct_commits {
    use std::path::Path;

    use mockops::pipeline::steps::create_pr::{
        DirectAction, DirectCommit, GitRemote, commit_git, commit_github, commit_local,
    };

    use super::{Fault, Method, client};
    use crate::support::git_server::{GitDaemon, bare_repo, git};
    use crate::support::github::GitHubEmulator;

    const CONFIG: &str = "acme/config";
    const PATH: &str = "environments/test/scenarios/card-declined.yaml";

    fn promotion(repository: &str, id: &str, version: u32) -> DirectCommit {
        let marker = format!("Mockops-Promotion-Id: {id}");
        DirectCommit::new(
            repository,
            "main",
            format!(
                "Promote scenario card-declined from dev to test\n\n{marker}\nMockops-Promotion: scenario card-declined dev test\n"
            ),
            marker,
        )
        .write(PATH, format!("id: card-declined\nversion: {version}\n"))
        .expect("path")
    }

    async fn config_repo() -> GitHubEmulator {
        let emu = GitHubEmulator::start().await;
        emu.create_repo(
            CONFIG,
            &[
                ("README.md", "# config\n"),
                (PATH, "id: card-declined\nversion: 1\n"),
            ],
        );
        emu
    }

    #[tokio::test]
    async fn github_commits_onto_the_branch_once() {
        let emu = config_repo().await;
        let gh = client(&emu.api_url());
        let req = promotion(CONFIG, "promo-a1", 7);

        let done = commit_github(&gh, &req).await.expect("commit");
        assert_eq!(done.action, DirectAction::Committed, "{done:?}");
        let sha = done.commit.clone().unwrap();
        assert_eq!(emu.branch_sha(CONFIG, "main").as_ref(), Some(&sha));
        assert!(
            emu.file(CONFIG, "main", PATH)
                .unwrap()
                .contains("version: 7")
        );
        assert_eq!(emu.file(CONFIG, "main", "README.md").unwrap(), "# config\n");
        assert!(emu.pulls(CONFIG).is_empty(), "no pull request");
        let out = done.outputs();
        assert_eq!(out["mode"], "direct");
        assert_eq!(out["commit"], sha.as_str());

        // A retried attempt finds its commit by the trailer and does not commit again.
        let again = commit_github(&gh, &req).await.expect("again");
        assert_eq!(again.action, DirectAction::AlreadyCommitted, "{again:?}");
        assert_eq!(again.commit.as_ref(), Some(&sha));
        // Another promotion of the same content: nothing to commit.
        let same = commit_github(&gh, &promotion(CONFIG, "promo-b2", 7))
            .await
            .expect("same content");
        assert_eq!(same.action, DirectAction::Unchanged, "{same:?}");
        assert!(same.reason.unwrap().contains("already has this content"));
        assert_eq!(emu.branch_sha(CONFIG, "main").as_ref(), Some(&sha));
        assert_eq!(emu.count("POST", "/git/commits"), 1);
        emu.assert_conformant();
    }

    #[tokio::test]
    async fn github_push_race_is_reapplied_on_the_new_tip() {
        let emu = config_repo().await;
        let gh = client(&emu.api_url());
        // Someone pushes to main between mockops reading the tip and moving the branch.
        emu.inject(
            Method::PATCH,
            "/git/refs/heads/main",
            1,
            Fault::BranchMovedFirst,
        );
        let done = commit_github(&gh, &promotion(CONFIG, "promo-r1", 8))
            .await
            .expect("commit");
        assert_eq!(done.action, DirectAction::Committed);
        assert_eq!(done.attempts, 2, "{done:?}");
        assert!(
            emu.file(CONFIG, "main", PATH)
                .unwrap()
                .contains("version: 8")
        );
        assert!(
            emu.file(CONFIG, "main", "concurrent.txt").is_some(),
            "the other push is kept"
        );
        let rejected = emu
            .requests()
            .iter()
            .filter(|r| r.method == "PATCH" && r.status == 422)
            .count();
        assert_eq!(rejected, 1, "one non-fast-forward refusal, never a force");
        emu.assert_conformant();
    }

    #[tokio::test]
    async fn github_protected_branch_fails_with_what_to_change() {
        let emu = config_repo().await;
        emu.protect_branch(CONFIG, "main");
        let before = emu.branch_sha(CONFIG, "main");
        let err = commit_github(&client(&emu.api_url()), &promotion(CONFIG, "promo-p1", 9))
            .await
            .expect_err("protected");
        assert!(!err.retryable());
        assert!(err.rendered().contains("protected"), "{}", err.rendered());
        assert!(
            err.rendered().contains("direct_commit"),
            "{}",
            err.rendered()
        );
        assert_eq!(emu.branch_sha(CONFIG, "main"), before);
        emu.assert_conformant();
    }

    /// A non-bare repository with `main` checked out and the scenario committed at version 1.
    fn checkout() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(dir.path().join("environments/test/scenarios"))
            .expect("git fixture");
        std::fs::write(dir.path().join(PATH), "id: card-declined\nversion: 1\n")
            .expect("git fixture");
        std::fs::write(dir.path().join("notes.txt"), "mine\n").expect("git fixture");
        git(dir.path(), &["add", "-A"]);
        git(dir.path(), &["commit", "-q", "-m", "initial"]);
        dir
    }

    #[tokio::test]
    async fn local_checkout_gets_the_commit_and_its_work_tree_follows() {
        let dir = checkout();
        // Unrelated local edits are not touched.
        std::fs::write(dir.path().join("notes.txt"), "mine, edited\n").expect("git fixture");
        let repo_path = dir.path().display().to_string();
        let req = promotion(&repo_path, "promo-l1", 7);
        let done = commit_local(dir.path(), &req).await.expect("commit");
        assert_eq!(done.action, DirectAction::Committed, "{done:?}");
        let head = git(dir.path(), &["rev-parse", "HEAD"]);
        assert_eq!(head.trim(), done.commit.as_deref().expect("git fixture"));
        let message = git(dir.path(), &["log", "-1", "--format=%B"]);
        assert!(
            message.contains("Mockops-Promotion-Id: promo-l1"),
            "{message}"
        );
        assert!(
            std::fs::read_to_string(dir.path().join(PATH))
                .expect("git fixture")
                .contains("version: 7")
        );
        assert_eq!(
            git(dir.path(), &["status", "--porcelain"]),
            " M notes.txt\n",
            "index and work tree match the new commit; the other edit stays"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("notes.txt")).expect("git fixture"),
            "mine, edited\n"
        );
        let again = commit_local(dir.path(), &req).await.expect("again");
        assert_eq!(again.action, DirectAction::AlreadyCommitted);
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), head);
    }

    #[tokio::test]
    async fn local_uncommitted_changes_to_the_path_stop_the_commit() {
        let dir = checkout();
        let head = git(dir.path(), &["rev-parse", "HEAD"]);
        std::fs::write(
            dir.path().join(PATH),
            "id: card-declined\nversion: 1 # wip\n",
        )
        .expect("git fixture");
        let repo_path = dir.path().display().to_string();
        let err = commit_local(dir.path(), &promotion(&repo_path, "promo-d1", 7))
            .await
            .expect_err("dirty");
        assert!(!err.retryable());
        assert!(err.rendered().contains(PATH), "{}", err.rendered());
        assert!(err.rendered().contains("uncommitted"), "{}", err.rendered());
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), head, "no commit");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(PATH)).expect("git fixture"),
            "id: card-declined\nversion: 1 # wip\n",
            "nothing lost"
        );

        // Staged changes count too.
        git(dir.path(), &["add", PATH]);
        let err = commit_local(dir.path(), &promotion(&repo_path, "promo-d2", 7))
            .await
            .expect_err("staged");
        assert!(err.rendered().contains("staged"), "{}", err.rendered());
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), head);

        // A symbolic link on the way is never written through.
        git(dir.path(), &["reset", "-q", "--hard"]);
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(outside.path().join("scenarios")).unwrap();
        let env = dir.path().join("environments/test");
        std::fs::rename(&env, dir.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(outside.path(), &env).unwrap();
        let err = commit_local(dir.path(), &promotion(&repo_path, "promo-d3", 7))
            .await
            .expect_err("symlink");
        assert!(
            err.rendered().contains("symbolic link"),
            "{}",
            err.rendered()
        );
        assert!(!outside.path().join("scenarios/card-declined.yaml").exists());
        assert_eq!(git(dir.path(), &["rev-parse", "HEAD"]), head);
    }

    #[tokio::test]
    async fn local_bare_repository_moves_only_the_branch() {
        let dir = tempfile::tempdir().expect("git fixture");
        let bare = bare_repo(dir.path(), "config.git");
        seed(&bare, PATH, "id: card-declined\nversion: 1\n");
        let path = dir.path().join("config.git");
        let done = commit_local(
            &path,
            &promotion(&path.display().to_string(), "promo-b1", 3),
        )
        .await
        .expect("commit");
        assert_eq!(done.action, DirectAction::Committed);
        assert_eq!(
            bare.refname_to_id("refs/heads/main")
                .expect("git fixture")
                .to_string(),
            done.commit.expect("git fixture")
        );
    }

    /// A root commit on `main` of `repo` with one file at a nested path.
    fn seed(repo: &git2::Repository, path: &str, content: &str) -> git2::Oid {
        let empty = repo
            .find_tree(
                repo.treebuilder(None)
                    .expect("git fixture")
                    .write()
                    .expect("git fixture"),
            )
            .expect("git fixture");
        let mut update = git2::build::TreeUpdateBuilder::new();
        update.upsert(
            path,
            repo.blob(content.as_bytes()).expect("git fixture"),
            git2::FileMode::Blob,
        );
        let tree = repo
            .find_tree(update.create_updated(repo, &empty).expect("git fixture"))
            .expect("git fixture");
        let sig = git2::Signature::now("Owner", "owner@example.com").expect("git fixture");
        repo.commit(Some("refs/heads/main"), &sig, &sig, "initial", &tree, &[])
            .expect("git fixture")
    }

    /// A bare repository served by `git daemon` whose pre-receive hook, once, lets someone
    /// else's commit land on `main` while mockops' push is being received.
    fn racing_remote(root: &Path) -> git2::Oid {
        let bare = bare_repo(root, "config.git");
        let first = seed(&bare, PATH, "id: card-declined\nversion: 1\n");
        let hooks = root.join("config.git/hooks");
        std::fs::create_dir_all(&hooks).expect("git fixture");
        let hook = hooks.join("pre-receive");
        std::fs::write(
            &hook,
            r#"#!/bin/sh
[ -e race-done ] && exit 0
touch race-done
unset GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
tip=$(git rev-parse refs/heads/main)
blob=$(echo 'pushed meanwhile' | git hash-object -w --stdin)
tree=$( (git ls-tree "$tip"; printf '100644 blob %s\tconcurrent.txt\n' "$blob") | git mktree)
commit=$(GIT_AUTHOR_NAME=Ann GIT_AUTHOR_EMAIL=ann@example.com GIT_COMMITTER_NAME=Ann GIT_COMMITTER_EMAIL=ann@example.com git commit-tree "$tree" -p "$tip" -m 'pushed meanwhile')
git update-ref refs/heads/main "$commit" "$tip"
"#,
        )
        .expect("git fixture");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))
            .expect("git fixture");
        first
    }

    fn file_on_main(root: &Path, repo: &str, path: &str) -> Option<String> {
        let repo = git2::Repository::open_bare(root.join(repo)).expect("git fixture");
        let tip = repo
            .find_reference("refs/heads/main")
            .ok()?
            .peel_to_commit()
            .ok()?;
        let e = tip.tree().ok()?.get_path(Path::new(path)).ok()?;
        Some(
            String::from_utf8_lossy(repo.find_blob(e.id()).expect("git fixture").content())
                .into_owned(),
        )
    }

    /// One `git daemon` for both: a push race made by the remote's hook, then three direct
    /// commits racing each other.
    #[tokio::test]
    async fn git_remote_push_races_are_reapplied_on_the_new_tip() {
        let root = tempfile::tempdir().unwrap();
        let first = racing_remote(root.path());
        let daemon = GitDaemon::start(root.path());
        let url = daemon.url("config.git");
        let remote = GitRemote {
            url: url.clone(),
            ..Default::default()
        };
        let req = promotion(&url, "promo-g1", 5);
        let done = commit_git(&remote, &req).await.expect("commit");
        assert_eq!(done.action, DirectAction::Committed, "{done:?}");
        assert_eq!(done.attempts, 2, "the first push lost the race: {done:?}");
        assert!(
            file_on_main(root.path(), "config.git", PATH)
                .unwrap()
                .contains("version: 5")
        );
        assert_eq!(
            file_on_main(root.path(), "config.git", "concurrent.txt").as_deref(),
            Some("pushed meanwhile\n"),
            "the other push is kept"
        );
        let repo = git2::Repository::open_bare(root.path().join("config.git")).unwrap();
        let tip = repo.refname_to_id("refs/heads/main").unwrap();
        assert_eq!(tip.to_string(), done.commit.clone().unwrap());
        assert_eq!(repo.graph_ahead_behind(tip, first).unwrap(), (2, 0));

        let again = commit_git(&remote, &req).await.expect("again");
        assert_eq!(again.action, DirectAction::AlreadyCommitted);
        assert_eq!(again.commit, done.commit);
        assert_eq!(repo.refname_to_id("refs/heads/main").unwrap(), tip);

        concurrent_direct_commits_all_land(&daemon).await;
    }

    async fn concurrent_direct_commits_all_land(daemon: &GitDaemon) {
        let bare = bare_repo(&daemon.root, "other.git");
        let first = seed(&bare, "README.md", "# config\n");
        let url = daemon.url("other.git");
        let remote = GitRemote {
            url: url.clone(),
            ..Default::default()
        };
        let paths = [
            "environments/test/a.yaml",
            "environments/test/b.yaml",
            "environments/test/c.yaml",
        ];
        let tasks: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let marker = format!("Mockops-Promotion-Id: promo-c{i}");
                let req =
                    DirectCommit::new(&url, "main", format!("Promote {p}\n\n{marker}\n"), marker)
                        .write(p, format!("n: {i}\n"))
                        .expect("git fixture");
                let remote = remote.clone();
                tokio::spawn(async move { commit_git(&remote, &req).await })
            })
            .collect();
        for t in tasks {
            let done = t.await.expect("git fixture").expect("commit");
            assert_eq!(done.action, DirectAction::Committed, "{done:?}");
        }
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(
                file_on_main(&daemon.root, "other.git", p),
                Some(format!("n: {i}\n")),
                "{p}"
            );
        }
        let tip = bare.refname_to_id("refs/heads/main").expect("git fixture");
        assert_eq!(
            bare.graph_ahead_behind(tip, first).expect("git fixture"),
            (3, 0),
            "linear, nothing lost"
        );
    }
}

/// A `create_pr` entry that takes a step's output into a directory replaces that directory:
/// generated files the step no longer produces are deleted in the same commit, on GitHub and
/// through the plain Git fallback alike.
mod stale_generated_files {
    use mockops::model::{CreatePrConfig, FileChange, FileOperation, PrProvider};
    use mockops::pipeline::steps::StepContext;
    use mockops::pipeline::steps::create_pr::{
        GitRemote, PrAction, PrRequest, apply, apply_git, request_from_config,
    };
    use serde_json::{Value as Json, json};

    use super::client;
    use crate::support::github::GitHubEmulator;

    const SDK: &str = "acme/payments-sdk";
    /// The SDK repository as the last generation left it, plus a hand-written file beside it.
    const BASE: &[(&str, &str)] = &[
        ("README.md", "# Payments SDK\n"),
        ("generated/typescript/schema.ts", "export type Old = 1;\n"),
        (
            "generated/typescript/refunds.ts",
            "export type Refund = 1;\n",
        ),
        ("generated/python/client.py", "class Client: ...\n"),
        (
            "generated-notes.md",
            "Not generated; beside the directory.\n",
        ),
    ];

    fn cfg(repository: &str, provider: PrProvider) -> CreatePrConfig {
        CreatePrConfig {
            repository: repository.into(),
            branch: "main".into(),
            title: "Regenerate the SDK".into(),
            body: None,
            files: vec![FileChange {
                path: "generated".into(),
                content: None,
                from_step: Some("regenerate_sdk".into()),
                from_drift: None,
                operation: FileOperation::Update,
            }],
            topic: Some("payments".into()),
            labels: vec![],
            reviewers: vec![],
            team_reviewers: vec![],
            draft: false,
            provider: Some(provider),
            commit_message: None,
        }
    }

    fn ctx() -> StepContext {
        StepContext {
            execution_id: "exec-1".into(),
            pipeline: "auto-sdk-regeneration".into(),
            step: "open_sdk_pr".into(),
            attempt: 1,
            idempotency_key: "exec-1/open_sdk_pr".into(),
            event: json!({"id": "evt-1", "event_type": "schema.changed"}),
            steps: Json::Null,
        }
    }

    fn request(cfg: &CreatePrConfig, files: Json) -> PrRequest {
        let steps = json!({"regenerate_sdk": {"outputs": {"files": files}}});
        request_from_config(cfg, &Default::default(), &ctx(), &steps).expect("request")
    }

    #[tokio::test]
    async fn github_deletes_what_the_generator_no_longer_writes() {
        let emu = GitHubEmulator::start().await;
        emu.create_repo(SDK, BASE);
        let gh = client(&emu.api_url());
        let cfg = cfg(SDK, PrProvider::Github);

        // This generation: TypeScript only, and no refunds module any more.
        let first = request(
            &cfg,
            json!({"typescript/schema.ts": "export type New = 2;\n", "typescript/charges.ts": "export type Charge = 1;\n"}),
        );
        let out = apply(&gh, &first).await.expect("apply");
        assert_eq!(out.action, PrAction::Opened, "{out:?}");
        let b = out.branch.clone();
        let file = |p: &str| emu.file(SDK, &b, p);
        assert_eq!(
            file("generated/typescript/schema.ts").as_deref(),
            Some("export type New = 2;\n")
        );
        assert!(file("generated/typescript/charges.ts").is_some());
        assert_eq!(
            file("generated/typescript/refunds.ts"),
            None,
            "stale file deleted"
        );
        assert_eq!(
            file("generated/python/client.py"),
            None,
            "dropped language deleted"
        );
        assert_eq!(file("README.md").as_deref(), Some("# Payments SDK\n"));
        assert!(
            file("generated-notes.md").is_some(),
            "outside the directory: kept"
        );
        assert_eq!(emu.commits_ahead(SDK, &b, "main"), 1, "one commit");
        let body = &emu.pulls(SDK)[0].body;
        assert!(body.contains("generated/typescript/refunds.ts"), "{body}");

        // The same generation again: nothing to push.
        let again = apply(&gh, &first).await.expect("again");
        assert_eq!(again.action, PrAction::Unchanged, "{again:?}");

        // The next generation drops charges.ts, which only the pull request's branch has.
        let next = request(
            &cfg,
            json!({"typescript/schema.ts": "export type New = 2;\n"}),
        );
        let upd = apply(&gh, &next).await.expect("update");
        assert_eq!(upd.action, PrAction::Updated, "{upd:?}");
        assert_eq!(emu.file(SDK, &b, "generated/typescript/charges.ts"), None);
        assert!(
            emu.file(SDK, &b, "generated/typescript/schema.ts")
                .is_some()
        );
        assert_eq!(emu.commits_ahead(SDK, &b, "main"), 1);
        emu.assert_conformant();
    }

    #[tokio::test]
    async fn git_fallback_deletes_what_the_generator_no_longer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let repo = git2::Repository::init_bare(dir.path()).unwrap();
        let mut update = git2::build::TreeUpdateBuilder::new();
        for (p, c) in BASE {
            update.upsert(*p, repo.blob(c.as_bytes()).unwrap(), git2::FileMode::Blob);
        }
        let empty = repo
            .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
            .unwrap();
        let tree = repo
            .find_tree(update.create_updated(&repo, &empty).unwrap())
            .unwrap();
        let sig = git2::Signature::now("Owner", "owner@example.com").unwrap();
        let main = repo
            .commit(Some("refs/heads/main"), &sig, &sig, "init", &tree, &[])
            .unwrap();
        let url = format!("file://{}", dir.path().display());
        let remote = GitRemote {
            url: url.clone(),
            ..Default::default()
        };
        let cfg = cfg(&url, PrProvider::Git);
        let at = |branch: &str, p: &str| -> Option<String> {
            let c = repo
                .find_reference(&format!("refs/heads/{branch}"))
                .ok()?
                .peel_to_commit()
                .ok()?;
            let e = c.tree().ok()?.get_path(std::path::Path::new(p)).ok()?;
            Some(String::from_utf8_lossy(repo.find_blob(e.id()).unwrap().content()).into_owned())
        };

        let first = request(
            &cfg,
            json!({"typescript/schema.ts": "export type New = 2;\n", "typescript/charges.ts": "export type Charge = 1;\n"}),
        );
        let out = apply_git(&remote, &first).await.expect("push");
        assert_eq!(out.action, PrAction::Pushed, "{out:?}");
        let b = out.branch.clone();
        assert_eq!(
            at(&b, "generated/typescript/schema.ts").as_deref(),
            Some("export type New = 2;\n")
        );
        assert_eq!(at(&b, "generated/typescript/refunds.ts"), None);
        assert_eq!(at(&b, "generated/python/client.py"), None);
        assert!(at(&b, "generated-notes.md").is_some());
        assert!(at(&b, "README.md").is_some());
        let tip = repo.refname_to_id(&format!("refs/heads/{b}")).unwrap();
        assert_eq!(repo.graph_ahead_behind(tip, main).unwrap(), (1, 0));

        assert_eq!(
            apply_git(&remote, &first).await.unwrap().action,
            PrAction::Unchanged
        );

        let next = request(
            &cfg,
            json!({"typescript/schema.ts": "export type New = 2;\n"}),
        );
        let upd = apply_git(&remote, &next).await.expect("update");
        assert_eq!(upd.action, PrAction::Updated, "{upd:?}");
        assert_eq!(at(&b, "generated/typescript/charges.ts"), None);
        assert!(at(&b, "generated/typescript/schema.ts").is_some());
    }
}

/// Pushes (pull-request branches and direct promotion commits) reach a remote through the
/// same access policy as the followed branch's fetches: an SSH host key that no pin matches is
/// refused before any key is offered, an unpinned host is refused the same way, and a remote
/// that stops answering ends the push by its deadline instead of holding a thread.
mod push_access {
    use std::time::{Duration, Instant};

    use mockops::git::access::{HostKeyPolicy, RemoteAuth};
    use mockops::pipeline::steps::create_pr::{
        DirectCommit, GitRemote, PrAction, apply_git, commit_git,
    };

    use crate::support::git_server::{SilentServer, bare_repo, commit_on};
    use crate::support::ssh_server::{SshServer, keygen};

    fn promotion(url: &str) -> DirectCommit {
        let marker = "Mockops-Promotion-Id: promo-access";
        DirectCommit::new(url, "main", format!("Promote a\n\n{marker}\n"), marker)
            .write("environments/test/a.yaml", "a: 1\n")
            .expect("path")
    }

    #[tokio::test]
    async fn a_push_to_an_ssh_remote_needs_a_pinned_host_key() {
        let keys = tempfile::tempdir().expect("tempdir");
        let key = keys.path().join("id_ed25519");
        keygen(&key, "");
        let sshd = SshServer::start(&keys.path().join("id_ed25519.pub"));
        let repos = tempfile::tempdir().expect("tempdir");
        let upstream = bare_repo(repos.path(), "sdk.git");
        commit_on(&upstream, "main", None, "README.md", "# SDK\n");
        let url = sshd.url(&repos.path().join("sdk.git"));
        let presented = sshd.host_fingerprint();
        let remote = |fingerprints: Vec<String>| GitRemote {
            url: url.clone(),
            auth: RemoteAuth::SshKey {
                private_key: key.clone(),
                passphrase: None,
            },
            host_keys: HostKeyPolicy {
                fingerprints,
                known_hosts: None,
            },
            deadline: Duration::from_secs(20),
            ..Default::default()
        };
        let wrong = || vec![format!("SHA256:{}", "A".repeat(43))];
        let mut req = super::request(2, "evt-ssh");
        req.repository = url.clone();

        let err = apply_git(&remote(wrong()), &req)
            .await
            .expect_err("wrong pin");
        assert!(!err.retryable(), "{err:?}");
        assert!(
            err.rendered().contains("does not match") && err.rendered().contains(&presented),
            "{}",
            err.rendered()
        );
        let err = commit_git(&remote(wrong()), &promotion(&url))
            .await
            .expect_err("wrong pin, direct commit");
        assert!(!err.retryable(), "{err:?}");
        assert!(err.rendered().contains(&presented), "{}", err.rendered());
        assert!(
            !sshd.log().contains("Accepted publickey"),
            "no key offered to an untrusted host: {}",
            sshd.log()
        );

        let err = apply_git(&remote(vec![]), &req)
            .await
            .expect_err("nothing pinned");
        assert!(!err.retryable(), "{err:?}");
        assert!(
            err.rendered().contains("not pinned") && err.rendered().contains(&presented),
            "{}",
            err.rendered()
        );

        let pushed = apply_git(&remote(vec![presented.clone()]), &req)
            .await
            .unwrap_or_else(|e| panic!("{}\n{}", e.rendered(), sshd.log()));
        assert_eq!(pushed.action, PrAction::Pushed, "{pushed:?}");
    }

    #[tokio::test]
    async fn a_push_to_a_remote_that_stops_answering_ends_by_its_deadline() {
        let silent = SilentServer::start();
        let url = format!("git://127.0.0.1:{}/sdk.git", silent.port);
        let remote = GitRemote {
            url: url.clone(),
            deadline: Duration::from_secs(2),
            ..Default::default()
        };
        let mut req = super::request(2, "evt-hang");
        req.repository = url.clone();

        let started = Instant::now();
        let err = apply_git(&remote, &req).await.expect_err("no answer");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(6), "took {took:?}");
        assert!(err.retryable(), "{err:?}");
        assert!(err.rendered().contains("timed out"), "{}", err.rendered());

        let started = Instant::now();
        let err = commit_git(&remote, &promotion(&url))
            .await
            .expect_err("no answer");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(6), "took {took:?}");
        assert!(err.retryable(), "{err:?}");
        assert!(err.rendered().contains("timed out"), "{}", err.rendered());
    }
}
