//! Managing pipelines by writing Git (`mockops pipelines create|enable|disable`, `POST
//! /api/v1/pipelines[/{name}/enable|disable]`): each change is validated on the followed
//! branch's head like a commit and written as a direct commit or a branch and pull request,
//! against real repositories in temp dirs and the GitHub API emulator; the daemon binary for
//! the API, the CLI, the token and the list filters.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mockops::github::GitHub;
use mockops::pipeline::manage::{Change, ManageError, Manager};
use serde_json::{Value as Json, json};

use crate::support::Fixture;
use crate::support::daemon::{Daemon, http};
use crate::support::github::GitHubEmulator;

const NOTIFY: &str = "# Tell the team about contract changes.
name: notify-team
workspace_id: ws-1
definition:
  # paused during the migration
  enabled: true   # keep this comment
  triggers:
    - event: schema.changed
  steps:
    - name: tell
      step_type: notify
      config:
        type: webhook
        webhook_url: https://hooks.example.com/x
        message: \"changed\"
";

const NIGHTLY: &str = "name: nightly
definition:
  triggers:
    - event: schema.changed
  steps:
    - name: ping
      step_type: notify
      config:
        type: webhook
        webhook_url: https://hooks.example.com/nightly
        message: nightly
";

/// A pipeline whose step has a misspelt step type.
const BROKEN: &str = "name: broken
definition:
  triggers:
    - event: schema.changed
  steps:
    - name: ping
      step_type: notfy
      config:
        type: webhook
        webhook_url: https://hooks.example.com/b
        message: b
";

fn settings(mode: &str) -> String {
    format!("management:\n  pipelines: {mode}\npull_requests:\n  labels: [config]\n")
}

/// A config repository on `main` with `mockops.yaml` (management `mode`) and `notify-team`.
fn local_repo(mode: &str) -> Fixture {
    let fx = Fixture::empty();
    git2::Repository::init_opts(
        fx.path(),
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .expect("init");
    fx.write("mockops.yaml", settings(mode))
        .write("pipelines/notify-team.yaml", NOTIFY);
    fx.commit("initial config");
    fx
}

fn tip(dir: &Path, branch: &str) -> Option<String> {
    let repo = git2::Repository::open(dir).expect("open");
    repo.refname_to_id(&format!("refs/heads/{branch}"))
        .ok()
        .map(|o| o.to_string())
}

fn file_at(dir: &Path, rev: &str, path: &str) -> Option<String> {
    let repo = git2::Repository::open(dir).expect("open");
    let commit = repo.revparse_single(rev).ok()?.peel_to_commit().ok()?;
    let entry = commit.tree().ok()?.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}

fn parent_of(dir: &Path, sha: &str) -> String {
    let repo = git2::Repository::open(dir).expect("open");
    let c = repo
        .find_commit(git2::Oid::from_str(sha).expect("sha"))
        .expect("commit");
    c.parent_id(0).expect("parent").to_string()
}

fn manager(fx: &Fixture) -> Arc<Manager> {
    Arc::new(Manager::new(fx.path().display().to_string(), "main"))
}

fn disable(name: &str) -> Change {
    Change::SetEnabled {
        name: name.into(),
        enabled: false,
    }
}

fn create(content: &str, path: Option<&str>) -> Change {
    Change::Create {
        path: path.map(str::to_string),
        content: content.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_and_disable_commit_only_the_enabled_line_on_a_local_repository() {
    let fx = local_repo("direct");
    let m = manager(&fx);
    let before = tip(fx.path(), "main").expect("main");

    let off = m.apply(disable("notify-team")).await.expect("disable");
    assert_eq!((off.mode, off.action.as_str()), ("direct", "committed"));
    let commit = off.commit.clone().expect("a commit");
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(commit.as_str()));
    assert_eq!(parent_of(fx.path(), &commit), before);
    assert_eq!(off.base, before);
    let expected = NOTIFY.replace("enabled: true   #", "enabled: false   #");
    assert_eq!(
        file_at(fx.path(), &commit, "pipelines/notify-team.yaml").as_deref(),
        Some(expected.as_str())
    );
    // The checked-out work tree follows the commit.
    assert_eq!(fx.read("pipelines/notify-team.yaml"), expected);
    let repo = git2::Repository::open(fx.path()).expect("open");
    let message = repo
        .find_commit(git2::Oid::from_str(&commit).expect("sha"))
        .expect("commit")
        .message()
        .expect("utf-8")
        .to_string();
    assert!(
        message.starts_with("Disable pipeline notify-team"),
        "{message}"
    );
    assert!(
        message.contains("Mockops-Pipeline-Change: disable notify-team"),
        "{message}"
    );
    // The warning of the validated tree comes along.
    assert!(
        off.warnings.iter().any(|d| d.code == "unknown-workspace"),
        "{:?}",
        off.warnings
    );

    let again = m
        .apply(disable("notify-team"))
        .await
        .expect("disable again");
    assert_eq!(again.action, "unchanged");
    assert_eq!(again.commit, None);
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(commit.as_str()));

    let on = m
        .apply(Change::SetEnabled {
            name: "notify-team".into(),
            enabled: true,
        })
        .await
        .expect("enable");
    let back = on.commit.expect("a commit");
    assert_eq!(
        file_at(fx.path(), &back, "pipelines/notify-team.yaml").as_deref(),
        Some(NOTIFY)
    );

    let missing = m.apply(disable("nobody")).await.unwrap_err();
    assert!(matches!(missing, ManageError::NotFound(_)), "{missing}");
    assert!(missing.to_string().contains("notify-team"), "{missing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_adds_a_file_under_pipelines_and_refuses_names_paths_and_links_it_may_not_use() {
    let fx = local_repo("direct");
    let m = manager(&fx);

    let made = m.apply(create(NIGHTLY, None)).await.expect("create");
    assert_eq!(made.path, "pipelines/nightly.yaml");
    let commit = made.commit.expect("a commit");
    assert_eq!(
        file_at(fx.path(), &commit, "pipelines/nightly.yaml").as_deref(),
        Some(NIGHTLY)
    );
    let head = tip(fx.path(), "main").expect("main");
    assert_eq!(head, commit);

    // The same name again, at its default path or another one.
    for path in [None, Some("pipelines/nightly-2.yaml")] {
        let e = m.apply(create(NIGHTLY, path)).await.unwrap_err();
        assert!(matches!(e, ManageError::Conflict(_)), "{path:?}: {e}");
        assert!(e.to_string().contains("already exists"), "{e}");
    }
    // Paths outside `pipelines/`.
    let other = NIGHTLY.replace("name: nightly", "name: elsewhere");
    for path in [
        "../outside.yaml",
        "pipelines/../mockops.yaml",
        "services/elsewhere.yaml",
        "pipelines/sub/elsewhere.yaml",
        "/tmp/elsewhere.yaml",
        ".git/hooks/elsewhere.yaml",
    ] {
        let e = m.apply(create(&other, Some(path))).await.unwrap_err();
        assert!(matches!(e, ManageError::BadRequest(_)), "{path}: {e}");
    }
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(head.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_file_reached_through_a_symbolic_link_is_not_written() {
    let fx = local_repo("direct");
    fx.write("library/linked.yaml", NIGHTLY.replace("nightly", "linked"))
        .symlink("pipelines/linked.yaml", "../library/linked.yaml");
    fx.commit("a pipeline kept elsewhere");
    let head = tip(fx.path(), "main").expect("main");
    let m = manager(&fx);
    let e = m.apply(disable("linked")).await.unwrap_err();
    assert!(matches!(e, ManageError::BadRequest(_)), "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = m
        .apply(create(
            &NIGHTLY.replace("nightly", "other"),
            Some("pipelines/linked.yaml"),
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ManageError::BadRequest(_) | ManageError::Conflict(_)),
        "{e}"
    );
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(head.as_str()));
    assert!(fx.read("library/linked.yaml").contains("name: linked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_change_is_refused_with_the_diagnostics_validate_prints() {
    let fx = local_repo("direct");
    let head = tip(fx.path(), "main").expect("main");
    let m = manager(&fx);
    let e = m.apply(create(BROKEN, None)).await.unwrap_err();
    let ManageError::Invalid {
        path,
        base,
        diagnostics,
    } = e
    else {
        panic!("not refused as invalid: {e}");
    };
    assert_eq!(path, "pipelines/broken.yaml");
    assert_eq!(base, head);
    insta::assert_json_snapshot!("manage_invalid_create", diagnostics);
    // `mockops validate` of the same tree reports the same diagnostics.
    fx.write("pipelines/broken.yaml", BROKEN);
    let out = std::process::Command::new(crate::support::bin())
        .args(["validate", "--format", "json"])
        .arg(fx.path())
        .output()
        .expect("validate");
    let v: Json = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        v["diagnostics"],
        serde_json::to_value(&diagnostics).unwrap()
    );
    // Nothing was written.
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(head.as_str()));
    assert_eq!(file_at(fx.path(), "main", "pipelines/broken.yaml"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_between_validation_and_write_is_built_on_and_validated_again() {
    let fx = Arc::new(local_repo("direct"));
    let human = Arc::new(std::sync::Mutex::new(None::<String>));
    let hook_fx = fx.clone();
    let hook_human = human.clone();
    let m = Arc::new(
        Manager::new(fx.path().display().to_string(), "main").before_write(Arc::new(
            move |attempt| {
                if attempt == 1 {
                    hook_fx.write("README.md", "by hand\n");
                    *hook_human.lock().unwrap() =
                        Some(hook_fx.commit("a person commits meanwhile").to_string());
                }
            },
        )),
    );
    let off = m.apply(disable("notify-team")).await.expect("disable");
    let human = human.lock().unwrap().clone().expect("the hook committed");
    assert_eq!(off.attempts, 2, "{off:?}");
    assert_eq!(off.base, human);
    let commit = off.commit.expect("a commit");
    assert_eq!(
        parent_of(fx.path(), &commit),
        human,
        "built on the new head"
    );
    assert_eq!(
        file_at(fx.path(), &commit, "README.md").as_deref(),
        Some("by hand\n")
    );

    // A concurrent commit that makes the change invalid: refused on the new head.
    let fx2 = Arc::new(local_repo("direct"));
    let hook_fx = fx2.clone();
    let m = Arc::new(
        Manager::new(fx2.path().display().to_string(), "main").before_write(Arc::new(
            move |attempt| {
                if attempt == 1 {
                    hook_fx.write("pipelines/nightly-by-hand.yaml", NIGHTLY);
                    hook_fx.commit("the same pipeline, by hand");
                }
            },
        )),
    );
    let head_before = tip(fx2.path(), "main").expect("main");
    let e = m.apply(create(NIGHTLY, None)).await.unwrap_err();
    assert!(matches!(e, ManageError::Conflict(_)), "{e}");
    let head = tip(fx2.path(), "main").expect("main");
    assert_ne!(head, head_before);
    assert_eq!(file_at(fx2.path(), &head, "pipelines/nightly.yaml"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_direct_commits_a_local_repository_gets_a_branch_to_merge() {
    let fx = local_repo("pull_request");
    let head = tip(fx.path(), "main").expect("main");
    let off = manager(&fx)
        .apply(disable("notify-team"))
        .await
        .expect("disable");
    assert_eq!(off.mode, "branch");
    assert_eq!(off.branch, "mockops/pipelines/disable-notify-team");
    let commit = off.commit.expect("a commit");
    assert_eq!(
        tip(fx.path(), &off.branch).as_deref(),
        Some(commit.as_str())
    );
    assert_eq!(parent_of(fx.path(), &commit), head);
    assert!(
        file_at(fx.path(), &commit, "pipelines/notify-team.yaml")
            .expect("file")
            .contains("enabled: false")
    );
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(head.as_str()));
}

/// A commit by a person on `main` of the bare repository at `dir`, adding `path`.
fn push_by_hand(dir: &Path, path: &str, content: &str) -> String {
    let repo = git2::Repository::open(dir).expect("open");
    let parent = repo
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .expect("main");
    let blob = repo.blob(content.as_bytes()).expect("blob");
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert(path, blob, git2::FileMode::Blob);
    let tree = update
        .create_updated(&repo, &parent.tree().expect("tree"))
        .expect("tree");
    let tree = repo.find_tree(tree).expect("tree");
    let sig = git2::Signature::now("Ann Human", "ann@example.com").expect("sig");
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "by hand",
        &tree,
        &[&parent],
    )
    .expect("commit")
    .to_string()
}

/// Any Git remote (`git://` here): a direct commit is pushed with a lease and rebuilt when
/// someone pushed meanwhile; without direct commits, the branch to merge is pushed.
#[test]
fn on_a_git_remote_changes_are_pushed_with_a_lease() {
    use crate::support::git_server::{GitDaemon, git};
    let root = tempfile::tempdir().expect("root");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for mode in ["direct", "pull_request"] {
        let fx = local_repo(mode);
        let name = format!("{mode}.git");
        git(
            root.path(),
            &["clone", "--bare", &fx.path().display().to_string(), &name],
        );
        let bare = root.path().join(&name);
        let server = GitDaemon::start(root.path());
        let pushed = Arc::new(AtomicBool::new(false));
        let (hook_bare, hook_pushed) = (bare.clone(), pushed.clone());
        let m = Arc::new(
            Manager::new(server.url(&name), "main").before_write(Arc::new(move |attempt| {
                if attempt == 1 && !hook_pushed.swap(true, Ordering::SeqCst) {
                    push_by_hand(&hook_bare, "README.md", "by hand\n");
                }
            })),
        );
        let off = rt.block_on(m.apply(disable("notify-team"))).expect(mode);
        let commit = off.commit.clone().expect("a commit");
        if mode == "direct" {
            assert_eq!((off.mode, off.attempts), ("direct", 2), "{off:?}");
            assert_eq!(tip(&bare, "main").as_deref(), Some(commit.as_str()));
            assert_eq!(
                file_at(&bare, "main", "README.md").as_deref(),
                Some("by hand\n")
            );
        } else {
            assert_eq!(
                (off.mode, off.action.as_str()),
                ("branch", "pushed"),
                "{off:?}"
            );
            // Built on the head it was validated on.
            assert_eq!(parent_of(&bare, &commit), off.base);
            assert_eq!(
                tip(&bare, "mockops/pipelines/disable-notify-team").as_deref(),
                Some(commit.as_str())
            );
            assert!(
                file_at(&bare, "main", "pipelines/notify-team.yaml")
                    .expect("file")
                    .contains("enabled: true")
            );
        }
        assert!(
            file_at(&bare, &commit, "pipelines/notify-team.yaml")
                .expect("file")
                .contains("enabled: false   # keep this comment")
        );
        drop(server);
    }
}

// ---------------------------------------------------------------------------------------------
// GitHub

const CONFIG: &str = "acme/config";

fn client(emu: &GitHubEmulator) -> GitHub {
    GitHub::builder()
        .api_url(emu.api_url())
        .token("ghp_manage")
        .mutation_interval(Duration::ZERO)
        .build()
        .expect("client")
}

fn on_github(emu: &GitHubEmulator, mode: &str) -> Manager {
    emu.create_repo(
        CONFIG,
        &[
            ("mockops.yaml", settings(mode).as_str()),
            ("pipelines/notify-team.yaml", NOTIFY),
        ],
    );
    Manager::new(emu.git_dir(CONFIG).display().to_string(), "main")
        .with_github_repository(Some(CONFIG.into()))
        .with_github(Some(client(emu)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_change_is_proposed_as_a_pull_request() {
    let emu = GitHubEmulator::start().await;
    let m = Arc::new(on_github(&emu, "pull_request"));
    let main = emu.branch_sha(CONFIG, "main").expect("main");

    let off = m.apply(disable("notify-team")).await.expect("disable");
    assert_eq!(off.mode, "pull_request", "{off:?}");
    assert_eq!(off.action, "opened");
    let pr = off.pull_request.clone().expect("a pull request");
    let pulls = emu.pulls(CONFIG);
    assert_eq!(pulls.len(), 1);
    assert_eq!(Some(pulls[0].number), pr.number);
    assert_eq!(pulls[0].head, "mockops/pipelines/disable-notify-team");
    assert_eq!(pulls[0].base, "main");
    assert_eq!(pulls[0].labels, vec!["config".to_string()]);
    assert!(
        pr.url.as_deref().is_some_and(|u| u.ends_with("/pull/1")),
        "{pr:?}"
    );
    assert_eq!(
        emu.file(CONFIG, &pulls[0].head, "pipelines/notify-team.yaml")
            .as_deref(),
        Some(
            NOTIFY
                .replace("enabled: true   #", "enabled: false   #")
                .as_str()
        )
    );
    assert_eq!(
        emu.branch_sha(CONFIG, "main").as_deref(),
        Some(main.as_str())
    );

    // An invalid change opens nothing.
    let e = m.apply(create(BROKEN, None)).await.unwrap_err();
    assert!(matches!(e, ManageError::Invalid { .. }), "{e}");
    assert_eq!(emu.pulls(CONFIG).len(), 1);

    let made = m.apply(create(NIGHTLY, None)).await.expect("create");
    assert_eq!(made.mode, "pull_request");
    assert_eq!(emu.pulls(CONFIG).len(), 2);
    assert_eq!(
        emu.file(
            CONFIG,
            "mockops/pipelines/create-nightly",
            "pipelines/nightly.yaml"
        )
        .as_deref(),
        Some(NIGHTLY)
    );
    emu.assert_conformant();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_github_a_direct_commit_is_rebuilt_when_someone_pushed_meanwhile() {
    let emu = Arc::new(GitHubEmulator::start().await);
    let pushed = Arc::new(AtomicBool::new(false));
    let (hook_emu, hook_pushed) = (emu.clone(), pushed.clone());
    let m = Arc::new(
        on_github(&emu, "direct").before_write(Arc::new(move |attempt| {
            // Once: on the first build of the first change.
            if attempt == 1 && !hook_pushed.swap(true, Ordering::SeqCst) {
                hook_emu.push_human_commit(CONFIG, "main", "README.md", "by hand\n");
            }
        })),
    );
    let off = m.apply(disable("notify-team")).await.expect("disable");
    assert!(pushed.load(Ordering::SeqCst));
    assert_eq!((off.mode, off.action.as_str()), ("direct", "committed"));
    assert_eq!(off.attempts, 2, "{off:?}");
    let commit = off.commit.clone().expect("a commit");
    assert_eq!(
        emu.branch_sha(CONFIG, "main").as_deref(),
        Some(commit.as_str())
    );
    assert_eq!(
        emu.file(CONFIG, "main", "README.md").as_deref(),
        Some("by hand\n"),
        "the person's commit is kept (nothing forced)"
    );
    assert!(
        emu.file(CONFIG, "main", "pipelines/notify-team.yaml")
            .expect("file")
            .contains("enabled: false   # keep this comment")
    );
    assert!(emu.pulls(CONFIG).is_empty());

    let on = m
        .apply(Change::SetEnabled {
            name: "notify-team".into(),
            enabled: true,
        })
        .await
        .expect("enable");
    assert_eq!((on.attempts, on.action.as_str()), (1, "committed"));
    assert_eq!(
        emu.file(CONFIG, "main", "pipelines/notify-team.yaml")
            .as_deref(),
        Some(NOTIFY)
    );
    emu.assert_conformant();
}

/// The daemon following the emulator's repository with `--github-repository`: the API's
/// answer names the pull request it opened with the daemon's GitHub credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_opens_pull_requests_on_the_repository_it_follows() {
    let emu = GitHubEmulator::start().await;
    emu.create_repo(
        CONFIG,
        &[
            ("mockops.yaml", settings("pull_request").as_str()),
            ("pipelines/notify-team.yaml", NOTIFY),
        ],
    );
    let main = emu.branch_sha(CONFIG, "main").expect("main");
    let (dir, api_url) = (emu.git_dir(CONFIG), emu.api_url());
    let state = tempfile::tempdir().expect("state");
    let state_path = state.path().to_path_buf();
    let answer = tokio::task::spawn_blocking(move || {
        let mut d = Daemon::start_env(
            &dir,
            &state_path,
            &["--branch", "main", "--github-repository", CONFIG],
            &[
                ("GITHUB_API_URL", api_url.as_str()),
                ("GITHUB_TOKEN", "ghp_daemon"),
            ],
        );
        d.wait_ready();
        d.wait_attempted(&main);
        let answer = post(
            &d,
            "/api/v1/pipelines/notify-team/disable",
            json!({}),
            &d.auth(),
        );
        // Proposed, not applied: the pipeline stays enabled on the followed branch.
        let listed = d.get("/api/v1/pipelines?enabled=true");
        (answer, listed)
    })
    .await
    .expect("daemon");
    let ((status, body), listed) = answer;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mode"], "pull_request");
    assert_eq!(body["pull_request"]["number"], 1);
    assert_eq!(names(&listed), ["notify-team"]);
    let pulls = emu.pulls(CONFIG);
    assert_eq!(pulls.len(), 1);
    assert_eq!(pulls[0].head, "mockops/pipelines/disable-notify-team");
    assert!(emu.requests().iter().all(|r| {
        r.authorization
            .as_deref()
            .is_some_and(|a| a.contains("ghp_daemon"))
    }));
    emu.assert_conformant();
}

// ---------------------------------------------------------------------------------------------
// The daemon: API, token, CLI, list filters

fn post(d: &Daemon, path: &str, body: Json, auth: &[(&str, String)]) -> (u16, Json) {
    http(
        "POST",
        &d.url(path),
        Some(body.to_string().into_bytes()),
        Some(auth),
    )
    .expect("request")
}

fn names(page: &Json) -> Vec<String> {
    let mut n: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    n.sort();
    n
}

fn wait_for(d: &Daemon, what: &str, ok: impl Fn(&Daemon) -> bool) {
    let until = Instant::now() + Duration::from_secs(30);
    while !ok(d) {
        assert!(Instant::now() < until, "{what}\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_daemon_writes_changes_for_its_api_and_cli_and_lists_by_workspace_and_state() {
    let fx = local_repo("direct");
    fx.write(
        "pipelines/payments-only.yaml",
        NIGHTLY
            .replace("name: nightly", "name: payments-only\nworkspace_id: ws-2")
            .replace("definition:\n", "definition:\n  enabled: false\n"),
    );
    let head = fx.commit("a pipeline of ws-2").to_string();
    let state = tempfile::tempdir().expect("state");
    let mut d = Daemon::start(fx.path(), state.path(), &[]);
    d.wait_ready();
    d.wait_attempted(&head);

    // List filters.
    assert_eq!(
        names(&d.get("/api/v1/pipelines")),
        ["notify-team", "payments-only"]
    );
    assert_eq!(
        names(&d.get("/api/v1/pipelines?workspace=ws-2")),
        ["payments-only"]
    );
    assert_eq!(
        names(&d.get("/api/v1/pipelines?enabled=false")),
        ["payments-only"]
    );
    assert_eq!(
        names(&d.get("/api/v1/pipelines?workspace=ws-1&enabled=true")),
        ["notify-team"]
    );

    // Without the write token nothing is written.
    for auth in [
        vec![],
        vec![("authorization", "Bearer not-the-token".to_string())],
    ] {
        let (status, body) = post(
            &d,
            "/api/v1/pipelines/notify-team/disable",
            json!({}),
            &auth,
        );
        assert_eq!(status, 401, "{body}");
        let (status, _) = post(&d, "/api/v1/pipelines", json!({"content": NIGHTLY}), &auth);
        assert_eq!(status, 401);
    }
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(head.as_str()));

    // The API: a commit, which takes effect once reconciled.
    let (status, body) = post(
        &d,
        "/api/v1/pipelines/notify-team/disable",
        json!({}),
        &d.auth(),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["mode"], "direct");
    let commit = body["commit"].as_str().expect("commit").to_string();
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(commit.as_str()));
    d.wait_attempted(&commit);
    wait_for(&d, "notify-team disabled in the applied state", |d| {
        names(&d.get("/api/v1/pipelines?enabled=false")).contains(&"notify-team".to_string())
    });

    // An invalid pipeline: 422 with validate's diagnostics, nothing written.
    let (status, body) = post(
        &d,
        "/api/v1/pipelines",
        json!({"content": BROKEN}),
        &d.auth(),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["valid"], false);
    assert_eq!(body["base"], commit.as_str());
    insta::assert_json_snapshot!("manage_invalid_create_api", body["diagnostics"]);
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(commit.as_str()));

    // The CLI asks the daemon.
    let cli = |args: &[&str]| {
        std::process::Command::new(crate::support::bin())
            .arg("pipelines")
            .args(["--api", &d.url("")])
            .args(args)
            .env("MOCKOPS_API_TOKEN", d.token())
            .output()
            .expect("cli")
    };
    let out = cli(&["enable", "notify-team"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("commit "), "{stdout}");
    let enabled_at = tip(fx.path(), "main").expect("main");
    assert_ne!(enabled_at, commit);
    d.wait_attempted(&enabled_at);

    let broken = fx.path().join("broken.yaml");
    std::fs::write(&broken, BROKEN).expect("write");
    let out = cli(&["create", broken.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error[unknown-value]: `definition.steps[0].step_type`"),
        "{stderr}"
    );
    assert!(stderr.contains("7 |       step_type: notfy"), "{stderr}");
    assert!(stderr.contains("pipelines/broken.yaml"), "{stderr}");
    assert_eq!(tip(fx.path(), "main").as_deref(), Some(enabled_at.as_str()));

    // The pipeline file itself as the body, its path as a query parameter.
    let (status, body) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let resp = reqwest::Client::new()
                .post(d.url("/api/v1/pipelines?path=pipelines/nightly.yml"))
                .header("content-type", "application/yaml")
                .bearer_auth(d.token())
                .body(NIGHTLY)
                .send()
                .await
                .expect("post");
            (
                resp.status().as_u16(),
                resp.json::<Json>().await.expect("json"),
            )
        });
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["path"], "pipelines/nightly.yml");
    let created = body["commit"].as_str().expect("commit");
    assert_eq!(
        file_at(fx.path(), created, "pipelines/nightly.yml").as_deref(),
        Some(NIGHTLY)
    );

    let out = cli(&["list", "--disabled", "--format", "json"]);
    assert!(out.status.success());
    let listed: Json = serde_json::from_slice(&out.stdout).expect("json");
    let listed: Vec<&str> = listed["pipelines"]
        .as_array()
        .expect("pipelines")
        .iter()
        .map(|p| p["name"].as_str().expect("name"))
        .collect();
    assert_eq!(listed, ["payments-only"]);
    drop(d);
}
