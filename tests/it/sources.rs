//! Sources against real Git: a local repository watched for commits, remotes served on loopback
//! by `git daemon`, by `git http-backend` behind a token and by `sshd` with pinned host keys, an
//! unreachable and a hanging remote, force-pushes, and the push webhook over HTTP.

use std::path::Path;
use std::time::{Duration, Instant};

use mockops::git::follow::webhook::{GithubWebhook, github_route, sign_github_payload};
use mockops::git::follow::{
    BranchFollower, FetchError, FollowError, Hints, HostKeyPolicy, LocalFollower, RemoteAuth,
    RemoteConfig, RemoteFollower, remote,
};
use mockops::git::hostkey;
use mockops::git::revision::{GitFiles, RevisionFiles};
use mockops::secret::SecretSource;

use crate::support::git_server::{
    AxumServer, GitDaemon, HttpGitServer, SilentServer, bare_repo, commit_on, git,
};
use crate::support::ssh_server::{SshServer, keygen};

/// Short libgit2 timeouts for the whole test process (the first call wins).
fn init() {
    remote::set_network_timeouts(Duration::from_secs(3), Duration::from_secs(3));
}

fn io_timeout() -> Duration {
    remote::network_timeouts().map_or(Duration::from_secs(30), |t| t.1)
}

fn remote_source(url: &str, branch: &str, state: &Path) -> RemoteFollower {
    init();
    RemoteFollower::new(RemoteConfig {
        fetch_deadline: Duration::from_secs(20),
        ..RemoteConfig::new(url, branch, state.join("mirror.git"))
    })
    .expect("remote source")
}

fn read_file(repo: &Path, commit: git2::Oid, file: &str) -> String {
    let files = GitFiles::open(repo, &commit.to_string()).expect("open commit");
    String::from_utf8(files.read(file).expect("read")).expect("utf-8")
}

#[test]
fn remote_first_fetch_clones_and_later_fetches_bring_new_commits() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "services.yaml", "v1");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = BranchFollower::Remote(remote_source(
        &daemon.url("config.git"),
        "main",
        state.path(),
    ));

    assert!(matches!(src.head(), Err(FollowError::NotFetched { .. })));
    assert_eq!(src.refresh().expect("first fetch"), a);
    assert_eq!(src.head().expect("head"), a);
    assert_eq!(read_file(src.repo_path(), a, "services.yaml"), "v1");

    let b = commit_on(&upstream, "main", Some(a), "services.yaml", "v2");
    // Other branches are not fetched.
    commit_on(&upstream, "feature", Some(a), "services.yaml", "wip");
    assert_eq!(src.refresh().expect("second fetch"), b);
    assert_eq!(src.head().expect("head"), b);
    assert_eq!(read_file(src.repo_path(), b, "services.yaml"), "v2");
    let mirror = git2::Repository::open_bare(src.repo_path()).expect("mirror");
    assert!(
        mirror
            .find_reference("refs/remotes/origin/feature")
            .is_err()
    );
    // Nothing new: the fetch answers the same head.
    assert_eq!(src.refresh().expect("third fetch"), b);
}

#[test]
fn remote_force_push_moves_the_head_back() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "f", "a");
    let b = commit_on(&upstream, "main", Some(a), "f", "b");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("config.git"), "main", state.path());
    assert_eq!(src.fetch().expect("fetch"), b);

    // A real force-push through the git daemon: a clone rewrites main to drop `b`.
    let work = tempfile::tempdir().expect("tempdir");
    git(
        work.path(),
        &["clone", "-q", &daemon.url("config.git"), "."],
    );
    git(work.path(), &["reset", "-q", "--hard", &a.to_string()]);
    std::fs::write(work.path().join("f"), "c").expect("write");
    git(work.path(), &["commit", "-q", "-am", "rewrite"]);
    git(work.path(), &["push", "-q", "--force", "origin", "main"]);
    let c = git2::Oid::from_str(git(work.path(), &["rev-parse", "HEAD"]).trim()).expect("oid");

    assert_eq!(src.fetch().expect("fetch after force-push"), c);
    assert_eq!(src.head().expect("head"), c);
    let mirror = git2::Repository::open_bare(src.repo_path()).expect("mirror");
    assert!(!mirror.graph_descendant_of(c, b).expect("graph"));
    assert_eq!(read_file(src.repo_path(), c, "f"), "c");

    // And back to an older commit the mirror already has.
    commit_on(&upstream, "main", None, "f", "unused");
    upstream
        .reference("refs/heads/main", b, true, "test")
        .expect("reset");
    assert_eq!(src.fetch().expect("fetch back"), b);
}

#[test]
fn remote_down_fails_fast_and_the_mirror_keeps_the_last_head() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "f", "a");
    let mut daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("config.git"), "main", state.path());
    assert_eq!(src.fetch().expect("fetch"), a);

    daemon.stop();
    commit_on(&upstream, "main", Some(a), "f", "b");
    let started = Instant::now();
    let err = src.fetch().expect_err("remote is down");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, FetchError::Network { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("cannot reach"), "{err}");
    assert_eq!(src.head().expect("last good head"), a);
}

#[test]
fn remote_that_hangs_is_cut_off_by_the_timeout() {
    let silent = SilentServer::start();
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(
        &format!("git://127.0.0.1:{}/config.git", silent.port),
        "main",
        state.path(),
    );
    let started = Instant::now();
    let err = src.fetch().expect_err("no answer");
    let took = started.elapsed();
    assert!(
        took < io_timeout() + Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(err.is_transient());
}

#[test]
fn fetch_deadline_aborts_a_transfer() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let big: String = (0..200_000).map(|i| format!("{i}\n")).collect();
    commit_on(&upstream, "main", None, "big.txt", &big);
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    init();
    let src = RemoteFollower::new(RemoteConfig {
        fetch_deadline: Duration::ZERO,
        ..RemoteConfig::new(
            daemon.url("config.git"),
            "main",
            state.path().join("mirror.git"),
        )
    })
    .expect("source");
    let err = src.fetch().expect_err("deadline passed");
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(matches!(src.head(), Err(FollowError::NotFetched { .. })));
}

#[test]
fn remote_branch_missing_says_which_branches_exist() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "f", "a");
    commit_on(&upstream, "dev", Some(a), "f", "d");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("config.git"), "prod", state.path());
    let err = src.fetch().expect_err("no such branch");
    assert!(matches!(err, FetchError::BranchMissing { .. }), "{err}");
    assert!(
        err.to_string()
            .ends_with("branch `prod` does not exist on the remote (it has: dev, main)"),
        "{err}"
    );

    // The followed branch disappears after a good fetch: the mirror keeps it.
    let src = remote_source(&daemon.url("config.git"), "dev", state.path());
    let d = src.fetch().expect("fetch dev");
    upstream
        .find_reference("refs/heads/dev")
        .expect("dev")
        .delete()
        .expect("delete");
    assert!(matches!(src.fetch(), Err(FetchError::BranchMissing { .. })));
    assert_eq!(src.head().expect("kept"), d);
}

#[test]
fn remote_repository_missing_is_an_error() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("absent.git"), "main", state.path());
    let err = src.fetch().expect_err("no repository");
    assert!(matches!(err, FetchError::RepoNotFound { .. }), "{err}");
    assert!(err.to_string().contains("absent.git"), "{err}");
    assert!(!err.is_transient());
}

const TOKEN: &str = "ghs_looptoken1234567890";

fn token_source(url: &str, token: SecretSource, state: &Path) -> RemoteFollower {
    init();
    RemoteFollower::new(RemoteConfig {
        auth: RemoteAuth::Token {
            username: remote::DEFAULT_TOKEN_USERNAME.into(),
            token,
        },
        fetch_deadline: Duration::from_secs(20),
        ..RemoteConfig::new(url, "main", state.join("mirror.git"))
    })
    .expect("remote source")
}

#[test]
fn https_token_wrong_is_refused_clearly_and_right_fetches() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "f", "a");
    let server = HttpGitServer::start(server_root.path(), TOKEN);
    let url = server.url("config.git");
    let state = tempfile::tempdir().expect("tempdir");

    let wrong = "ghs_wrongtoken0987654321";
    let src = token_source(
        &url,
        SecretSource::Value(mockops::secret::Secret::new(wrong)),
        state.path(),
    );
    let err = src.fetch().expect_err("wrong token");
    let msg = err.to_string();
    assert!(matches!(err, FetchError::Auth { .. }), "{msg}");
    assert!(msg.contains("refused the token"), "{msg}");
    assert!(msg.contains("x-access-token"), "{msg}");
    assert!(
        !msg.contains(wrong) && !format!("{err:?}").contains(wrong),
        "{msg}"
    );
    assert!(!err.is_transient());

    let anonymous = remote_source(&url, "main", state.path());
    let err = anonymous.fetch().expect_err("no credentials");
    assert!(matches!(err, FetchError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("none are configured"), "{err}");

    let src = token_source(
        &server.url("absent.git"),
        SecretSource::Value(mockops::secret::Secret::new(TOKEN)),
        state.path(),
    );
    let err = src.fetch().expect_err("no such repository");
    assert!(matches!(err, FetchError::RepoNotFound { .. }), "{err}");

    let token_file = state.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("write token");
    let src = token_source(&url, SecretSource::File(token_file.clone()), state.path());
    assert_eq!(src.fetch().expect("right token"), a);
    let b = commit_on(&upstream, "main", Some(a), "f", "b");
    assert_eq!(src.fetch().expect("incremental fetch over HTTP"), b);
    assert_eq!(read_file(src.repo_path(), b, "f"), "b");

    // The token file is read at each fetch: a rotated (here: broken) token takes effect.
    std::fs::write(&token_file, "revoked").expect("write token");
    assert!(matches!(src.fetch(), Err(FetchError::Auth { .. })));
    std::fs::remove_file(&token_file).expect("remove");
    let err = src.fetch().expect_err("token file gone");
    assert!(matches!(err, FetchError::Secret(_)), "{err}");
    assert!(
        err.to_string().contains(&token_file.display().to_string()),
        "{err}"
    );
    assert_eq!(src.head().expect("last good head"), b);
}

#[test]
fn local_watcher_sees_a_commit_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("f"), "1").expect("write");
    git(dir.path(), &["add", "f"]);
    git(dir.path(), &["commit", "-q", "-m", "one"]);
    let local = LocalFollower::open(dir.path(), None).expect("open");
    assert_eq!(local.branch(), "main");
    assert!(local.start_watching(mockops::git::follow::local::DEFAULT_DEBOUNCE));
    assert!(!local.hints().is_degraded());
    let src = BranchFollower::Local(local);
    let first = src.head().expect("head");

    for n in 2..5 {
        std::fs::write(dir.path().join("f"), n.to_string()).expect("write");
        let started = Instant::now();
        git(dir.path(), &["commit", "-q", "-am", &format!("commit {n}")]);
        let woke = block_on(src.hints().wait_timeout(Duration::from_secs(1)));
        assert!(woke, "no hint within 1 s of commit {n}");
        assert!(started.elapsed() < Duration::from_secs(1));
        let head = src.head().expect("head");
        assert_ne!(head, first);
        assert_eq!(read_file(src.repo_path(), head, "f"), n.to_string());
    }
    // Work-tree edits that move no ref give no hint (once late hints of the last commit are in).
    while block_on(src.hints().wait_timeout(Duration::from_millis(200))) {}
    std::fs::write(dir.path().join("f"), "dirty").expect("write");
    git(dir.path(), &["add", "f"]);
    // Nor does reading the head (its own reads must not feed back into hints).
    for _ in 0..3 {
        src.head().expect("head");
    }
    assert!(!block_on(
        src.hints().wait_timeout(Duration::from_millis(300))
    ));
}

#[test]
fn local_watcher_follows_a_branch_of_a_linked_worktree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("main");
    std::fs::create_dir(&main).expect("mkdir");
    git(&main, &["init", "-q", "-b", "main"]);
    git(&main, &["commit", "-q", "--allow-empty", "-m", "root"]);
    let wt = dir.path().join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            wt.to_str().expect("utf-8"),
        ],
    );
    let local = LocalFollower::open(&wt, None).expect("open worktree");
    assert_eq!(local.branch(), "feature");
    assert!(local.start_watching(Duration::from_millis(20)));
    git(&wt, &["commit", "-q", "--allow-empty", "-m", "on feature"]);
    assert!(block_on(local.hints().wait_timeout(Duration::from_secs(1))));
    let head = git(&wt, &["rev-parse", "HEAD"]);
    assert_eq!(local.head().expect("head").to_string(), head.trim());
}

#[test]
fn local_watcher_on_a_bare_repository_sees_pushes_and_packed_refs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bare = dir.path().join("config.git");
    git(
        dir.path(),
        &["init", "-q", "--bare", "-b", "main", "config.git"],
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["commit", "-q", "--allow-empty", "-m", "root"]);
    git(
        &work,
        &["push", "-q", bare.to_str().expect("utf-8"), "main"],
    );

    let local = LocalFollower::open(&bare, Some("main")).expect("open bare");
    assert!(local.start_watching(Duration::from_millis(20)));
    git(&work, &["commit", "-q", "--allow-empty", "-m", "second"]);
    git(
        &work,
        &["push", "-q", bare.to_str().expect("utf-8"), "main"],
    );
    assert!(block_on(local.hints().wait_timeout(Duration::from_secs(1))));
    let head = git(&work, &["rev-parse", "HEAD"]);
    assert_eq!(local.head().expect("head").to_string(), head.trim());

    // Packing the refs rewrites packed-refs and removes the loose ref; the head still reads.
    git(&bare, &["pack-refs", "--all"]);
    assert!(block_on(local.hints().wait_timeout(Duration::from_secs(1))));
    assert!(!bare.join("refs/heads/main").exists());
    assert_eq!(local.head().expect("head").to_string(), head.trim());
}

#[test]
fn local_refresh_async_reads_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = git2::Repository::init(dir.path()).expect("init");
    let a = commit_on(&repo, "main", None, "f", "a");
    let src = BranchFollower::Local(LocalFollower::open(dir.path(), Some("main")).expect("open"));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    assert_eq!(rt.block_on(src.refresh_async()).expect("refresh"), a);
    assert!(src.describe().starts_with("local "));
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(f)
}

const HOOK_SECRET: &str = "webhook-secret-for-tests";

#[tokio::test]
async fn webhook_checks_signatures_and_pokes_for_the_followed_branch() {
    let hints = Hints::new();
    let hook = GithubWebhook {
        secret: SecretSource::Value(mockops::secret::Secret::new(HOOK_SECRET)),
        redactor: mockops::secret::Redactor::new(),
        branch: "main".into(),
        hints: hints.clone(),
    };
    let router = axum::Router::new().route("/hooks/github", github_route(hook));
    let server = AxumServer::start(router);
    let url = format!("http://{}/hooks/github", server.addr);
    let client = reqwest::Client::new();
    let post = |event: &str, body: &'static str, signature: Option<String>| {
        let mut req = client
            .post(&url)
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", "d-1")
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send()
    };
    let push_main = r#"{"ref":"refs/heads/main","after":"0123","forced":false}"#;
    let sign = |b: &str| Some(sign_github_payload(HOOK_SECRET.as_bytes(), b.as_bytes()));

    let r = post("push", push_main, sign(push_main))
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    assert!(hints.wait_timeout(Duration::from_secs(1)).await);

    let r = post("push", push_main, None).await.expect("send");
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("no X-Hub-Signature-256")
    );

    let r = post("push", push_main, Some("sha256=nothex".into()))
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("malformed"));

    let forged = Some(sign_github_payload(b"not the secret", push_main.as_bytes()));
    let r = post("push", push_main, forged).await.expect("send");
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("does not match"));

    let other = r#"{"ref":"refs/heads/dev","after":"0123"}"#;
    let r = post("push", other, sign(other)).await.expect("send");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("body").contains("ignored"));

    let ping = r#"{"zen":"Design for failure.","hook_id":1}"#;
    let r = post("ping", ping, sign(ping)).await.expect("send");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("body"), "pong\n");

    // Only the one good push to main poked.
    assert!(!hints.wait_timeout(Duration::from_millis(100)).await);
    assert_eq!(hints.stats().pokes, 1);
}

/// Keys made by `ssh-keygen` get the fingerprint `ssh-keygen -lf` prints for them.
#[test]
fn ssh_fingerprints_match_ssh_keygen() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    for kind in ["ed25519", "ecdsa", "rsa"] {
        let key = dir.path().join(format!("id_{kind}"));
        let key_s = key.to_str().expect("utf-8");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "test", "-f", key_s])
            .status()
            .expect("ssh-keygen (package openssh-client)");
        assert!(status.success());
        let listed = std::process::Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f", &format!("{key_s}.pub")])
            .output()
            .expect("ssh-keygen -l");
        let listed = String::from_utf8(listed.stdout).expect("utf-8");
        let expected = listed.split_whitespace().nth(1).expect("fingerprint field");
        let public = std::fs::read_to_string(format!("{key_s}.pub")).expect("pub");
        let blob = base64::engine::general_purpose::STANDARD
            .decode(public.split_whitespace().nth(1).expect("key field"))
            .expect("base64");
        assert_eq!(hostkey::fingerprint_sha256(&blob), expected, "{kind}");
        assert_eq!(hostkey::normalize_pin(expected).as_deref(), Ok(expected));

        // The same key in a known_hosts file is trusted for its host only.
        let kh = hostkey::KnownHosts::parse(&format!("[git.internal]:2222 {}", public.trim()));
        assert_eq!(
            hostkey::verify(&[], Some(&kh), "git.internal", 2222, expected),
            hostkey::Verdict::Trusted
        );
        assert_eq!(
            hostkey::verify(&[], Some(&kh), "git.internal", 22, expected),
            hostkey::Verdict::Unknown
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Git over SSH against a real sshd on loopback.

fn ssh_source(
    url: &str,
    key: &Path,
    passphrase: Option<&str>,
    hosts: HostKeyPolicy,
    state: &Path,
) -> RemoteFollower {
    init();
    RemoteFollower::new(RemoteConfig {
        auth: RemoteAuth::SshKey {
            private_key: key.to_path_buf(),
            passphrase: passphrase.map(|p| SecretSource::Value(mockops::secret::Secret::new(p))),
        },
        host_keys: hosts,
        fetch_deadline: Duration::from_secs(20),
        ..RemoteConfig::new(url, "main", state.join("mirror.git"))
    })
    .expect("remote source")
}

/// A pinned host key and an encrypted client key: the branch is fetched over SSH, and the
/// next commit with it. Trust through an explicit known_hosts file works the same way.
#[test]
fn ssh_remote_with_a_pinned_host_key_is_fetched() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("id_ed25519");
    keygen(&key, "correct horse");
    let sshd = SshServer::start(&keys.path().join("id_ed25519.pub"));
    let repos = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(repos.path(), "config.git");
    let a = commit_on(&upstream, "main", None, "services.yaml", "v1");
    let url = sshd.url(&repos.path().join("config.git"));
    let state = tempfile::tempdir().expect("tempdir");

    let pinned = HostKeyPolicy {
        fingerprints: vec![sshd.host_fingerprint()],
        known_hosts: None,
    };
    let src = ssh_source(&url, &key, Some("correct horse"), pinned, state.path());
    assert_eq!(
        src.fetch()
            .unwrap_or_else(|e| panic!("{e}\n{}", sshd.log())),
        a
    );
    assert_eq!(read_file(src.repo_path(), a, "services.yaml"), "v1");
    let b = commit_on(&upstream, "main", Some(a), "services.yaml", "v2");
    assert_eq!(src.fetch().expect("second fetch over SSH"), b);

    let known_hosts = keys.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {}", sshd.port, sshd.host_public_key()),
    )
    .expect("known_hosts");
    let other_state = tempfile::tempdir().expect("tempdir");
    let src = ssh_source(
        &url,
        &key,
        Some("correct horse"),
        HostKeyPolicy {
            fingerprints: vec![],
            known_hosts: Some(known_hosts),
        },
        other_state.path(),
    );
    assert_eq!(src.fetch().expect("trusted through known_hosts"), b);
}

/// A host key that matches no pin is refused before any credential is offered, and the error
/// shows the fingerprint the server presented so it can be checked and pinned; an unpinned
/// host is refused the same way; a client key the server does not accept is an auth error.
#[test]
fn ssh_remote_with_a_wrong_or_missing_pin_or_key_is_refused_clearly() {
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("id_ed25519");
    keygen(&key, "");
    let sshd = SshServer::start(&keys.path().join("id_ed25519.pub"));
    let repos = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(repos.path(), "config.git");
    commit_on(&upstream, "main", None, "f", "a");
    let url = sshd.url(&repos.path().join("config.git"));
    let state = tempfile::tempdir().expect("tempdir");
    let presented = sshd.host_fingerprint();

    let wrong = HostKeyPolicy {
        fingerprints: vec![format!("SHA256:{}", "A".repeat(43))],
        known_hosts: None,
    };
    let err = ssh_source(&url, &key, None, wrong, state.path())
        .fetch()
        .expect_err("wrong pin");
    assert!(matches!(err, FetchError::HostKeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&presented), "{err}");
    assert!(!err.is_transient());
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "no authentication against an untrusted host: {}",
        sshd.log()
    );

    let err = ssh_source(&url, &key, None, HostKeyPolicy::default(), state.path())
        .fetch()
        .expect_err("nothing pinned");
    assert!(matches!(err, FetchError::HostKeyUnknown { .. }), "{err}");
    assert!(err.to_string().contains(&presented), "{err}");

    let stranger = keys.path().join("stranger");
    keygen(&stranger, "");
    let pinned = HostKeyPolicy {
        fingerprints: vec![presented],
        known_hosts: None,
    };
    let err = ssh_source(&url, &stranger, None, pinned, state.path())
        .fetch()
        .expect_err("key not authorized");
    assert!(matches!(err, FetchError::Auth { .. }), "{err}");
}

/// A long-running mirror gets a pack per fetch; past `MAX_PACKS` they are consolidated into
/// one, and every object stays readable, a commit dropped by a force-push included.
#[test]
fn mirror_packs_are_consolidated_without_losing_objects() {
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("config.git"), "main", state.path());
    let pack_count = || {
        std::fs::read_dir(src.repo_path().join("objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
            .count()
    };

    let mut tip = commit_on(&upstream, "main", None, "f", "0");
    assert_eq!(src.fetch().expect("fetch"), tip);
    let base = tip;
    tip = commit_on(&upstream, "main", Some(base), "f", "dropped");
    let dropped = tip;
    assert_eq!(src.fetch().expect("fetch"), dropped);
    // Force-push: `dropped` is no longer on the branch.
    tip = commit_on(&upstream, "main", Some(base), "f", "1");
    assert_eq!(src.fetch().expect("fetch"), tip);
    let mut all = vec![base, tip];
    let mut most = 0;
    let mut consolidated = false;
    for i in 2..(remote::MAX_PACKS + 6) {
        let before = pack_count();
        tip = commit_on(&upstream, "main", Some(tip), "f", &i.to_string());
        all.push(tip);
        assert_eq!(src.fetch().expect("fetch"), tip);
        most = most.max(pack_count());
        consolidated |= pack_count() < before;
    }
    assert!(
        consolidated,
        "each fetch added a pack until they were consolidated"
    );
    assert!(
        most <= remote::MAX_PACKS + 1,
        "at most {} packs at any time, saw {most}",
        remote::MAX_PACKS + 1
    );
    assert!(
        pack_count() < remote::MAX_PACKS,
        "consolidated: {}",
        pack_count()
    );
    assert_eq!(read_file(src.repo_path(), dropped, "f"), "dropped");
    for (i, id) in all.iter().enumerate().skip(1) {
        assert_eq!(read_file(src.repo_path(), *id, "f"), i.to_string());
    }
    assert_eq!(read_file(src.repo_path(), base, "f"), "0");
}

/// Retention of the mirror: an object no longer reachable from the branch stays while it is
/// young (a force-push comparison may read it) and is dropped once it has been unreachable
/// longer than the retention; reachable objects, and commits the daemon asks to keep (the
/// applied one), always stay. The repack leaves one pack and no loose objects.
#[test]
fn mirror_prune_drops_objects_unreachable_for_longer_than_the_retention() {
    use remote::PrunePolicy;
    use std::time::SystemTime;
    let server_root = tempfile::tempdir().expect("tempdir");
    let upstream = bare_repo(server_root.path(), "config.git");
    let daemon = GitDaemon::start(server_root.path());
    let state = tempfile::tempdir().expect("tempdir");
    let src = remote_source(&daemon.url("config.git"), "main", state.path());
    let readable = |id: git2::Oid| {
        git2::Repository::open_bare(src.repo_path())
            .expect("mirror")
            .find_commit(id)
            .is_ok()
    };

    let base = commit_on(&upstream, "main", None, "f", "base");
    src.fetch().expect("fetch");
    let dropped = commit_on(&upstream, "main", Some(base), "f", "dropped");
    src.fetch().expect("fetch");
    // Two force-pushes: both commits leave the branch; the daemon keeps the one it applied.
    let applied = commit_on(&upstream, "main", Some(base), "g", "applied");
    src.fetch().expect("fetch");
    let tip = commit_on(&upstream, "main", Some(base), "f", "tip");
    assert_eq!(src.fetch().expect("fetch"), tip);
    src.keep_commits(vec![applied]);

    let now = SystemTime::now();
    let day = Duration::from_secs(86400);
    let policy = |after: Duration, now: SystemTime| PrunePolicy {
        unreachable_after: after,
        keep: vec![applied],
        now,
    };
    let first = src
        .prune_mirror_with(&policy(14 * day, now))
        .expect("repack")
        .expect("there was something to do");
    assert_eq!(first.dropped, 0, "nothing is old enough yet");
    assert!(first.unreachable_kept >= 2, "{first:?}");
    assert!(readable(dropped) && readable(applied) && readable(base) && readable(tip));
    let packs = || {
        std::fs::read_dir(src.repo_path().join("objects/pack"))
            .expect("pack dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
            .count()
    };
    assert_eq!(packs(), 1);

    // Thirteen days later: still within the retention (counted from when it was first found
    // unreachable, not from the repack that rewrote it).
    let kept = src
        .prune_mirror_with(&policy(14 * day, now + 13 * day))
        .expect("repack");
    assert!(kept.is_none_or(|c| c.dropped == 0), "{kept:?}");
    assert!(readable(dropped));

    // Past the retention: the dropped commit and its blob go; everything else stays.
    let second = src
        .prune_mirror_with(&policy(14 * day, now + 15 * day))
        .expect("repack")
        .expect("something to drop");
    assert!(second.dropped >= 2, "the commit and its blob: {second:?}");
    assert!(!readable(dropped), "dropped from the mirror");
    assert!(readable(applied), "a kept commit stays");
    assert_eq!(read_file(src.repo_path(), applied, "g"), "applied");
    assert_eq!(read_file(src.repo_path(), tip, "f"), "tip");
    assert_eq!(read_file(src.repo_path(), base, "f"), "base");
    assert_eq!(packs(), 1);
    let loose = std::fs::read_dir(src.repo_path().join("objects"))
        .expect("objects")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().len() == 2)
        .count();
    assert_eq!(loose, 0, "no loose objects left");

    // Nothing left to do: no rewrite.
    assert!(
        src.prune_mirror_with(&policy(14 * day, now + 15 * day))
            .expect("repack")
            .is_none()
    );
    // Fetching still works on the repacked mirror.
    let next = commit_on(&upstream, "main", Some(tip), "f", "next");
    assert_eq!(src.fetch().expect("fetch"), next);
}
