//! Running the real `mockops daemon` binary against a repository in a temp dir, and talking to
//! its HTTP API on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// A daemon process. Killed (SIGKILL) when dropped unless stopped before.
pub struct Daemon {
    pub child: Option<Child>,
    pub port: u16,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `mockops daemon --repo <repo> --state-dir <state>` with `extra` arguments.
    pub fn start(repo: &Path, state: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["--repo".to_string(), repo.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(state, &args)
    }

    /// Starts the daemon on its built-in demo (no repository given), with `extra` arguments.
    pub fn start_demo(state: &Path, extra: &[&str]) -> Daemon {
        let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        Self::start_with(state, &args)
    }

    /// Starts the daemon following `url` (a remote) instead of a local path.
    pub fn start_remote(url: &str, state: &Path, extra: &[&str]) -> Daemon {
        let mut args = vec!["--repo-url".to_string(), url.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_with(state, &args)
    }

    /// [`Daemon::start_remote`] with extra environment variables.
    pub fn start_remote_env(
        url: &str,
        state: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut args = vec!["--repo-url".to_string(), url.to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_full(state, &args, env)
    }

    /// Like [`Daemon::start`], with extra environment variables for the daemon process.
    pub fn start_env(repo: &Path, state: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut args = vec!["--repo".to_string(), repo.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_full(state, &args, env)
    }

    /// Like [`Daemon::start_env`], with the log written to `log` instead of the state
    /// directory (for tests that fill or damage the state directory).
    pub fn start_logged(
        repo: &Path,
        state: &Path,
        log: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut args = vec!["--repo".to_string(), repo.display().to_string()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_opts(state, &args, env, Some(log.to_path_buf()))
    }

    fn start_with(state: &Path, args: &[String]) -> Daemon {
        Self::start_full(state, args, &[])
    }

    /// Starts the daemon with `args`. Unless they hold `--strict` (which is not passed on),
    /// the daemon may reach loopback (where the tests' receivers are), read secret files from
    /// the temp directory and run generator commands; `--strict` keeps its secure defaults.
    fn start_full(state: &Path, args: &[String], env: &[(&str, &str)]) -> Daemon {
        Self::start_opts(state, args, env, None)
    }

    fn start_opts(
        state: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: Option<PathBuf>,
    ) -> Daemon {
        let strict = args.iter().any(|a| a == "--strict");
        let mut extra: Vec<&str> = args
            .iter()
            .map(String::as_str)
            .filter(|a| *a != "--strict")
            .collect();
        let tmp = std::env::temp_dir().display().to_string();
        let allows = [
            "--allow-outbound",
            "127.0.0.0/8,::1",
            "--secret-dir",
            tmp.as_str(),
            "--git-push-dir",
            tmp.as_str(),
            "--allow-generator-commands",
        ];
        if !strict {
            extra.extend(allows);
        }
        let port = free_port();
        std::fs::create_dir_all(state).expect("state dir");
        let log = log.unwrap_or_else(|| state.join(format!("daemon-{port}.log")));
        let child = Command::new(super::bin())
            .args(["daemon"])
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(if extra.contains(&"--poll-interval") {
                &["--log-format", "json"][..]
            } else {
                &["--poll-interval", "200ms", "--log-format", "json"][..]
            })
            .args(&extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn daemon");
        Daemon {
            child: Some(child),
            port,
            state_dir: state.to_path_buf(),
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&mut self) -> &mut Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                panic!("daemon exited with {status}: {}", self.log_text());
            }
            if let Ok((200, _)) = http("GET", &self.url("/readyz"), None, None) {
                return self;
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready in 30 s: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls `f` every 100 ms until it gives a value (60 s at most, then fails with the log).
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The stored events of one type, oldest first.
    pub fn events_of(&self, kind: &str) -> Vec<Json> {
        self.all_events()
            .into_iter()
            .filter(|e| e["event_type"] == kind)
            .collect()
    }

    /// Waits until the daemon has looked at `sha` (applied or recorded invalid).
    pub fn wait_attempted(&self, sha: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, s)) = http("GET", &self.url("/api/v1/status"), None, Some(&self.auth()))
                && s["last_attempted"]["sha"] == sha
            {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not reach {sha}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Json {
        let (status, body) =
            http("GET", &self.url(path), None, Some(&self.auth())).expect("request");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `Authorization: Bearer <the state directory's token>` (none before it exists).
    pub fn auth(&self) -> Vec<(&'static str, String)> {
        match std::fs::read_to_string(self.state_dir.join("api-token")) {
            Ok(t) => vec![("authorization", format!("Bearer {}", t.trim()))],
            Err(_) => Vec::new(),
        }
    }

    /// Every stored event, oldest first.
    pub fn all_events(&self) -> Vec<Json> {
        let mut out = Vec::new();
        let mut after = 0u64;
        loop {
            let page = self.get(&format!("/api/v1/events?after={after}&limit=1000"));
            let events = page["events"].as_array().cloned().unwrap_or_default();
            out.extend(events);
            match page["next_after"].as_u64() {
                Some(n) => after = n,
                None => return out,
            }
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state_dir.join("api-token"))
            .expect("api token")
            .trim()
            .to_string()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit; returns whether it exited cleanly in time.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One HTTP request on loopback; returns the status and the body as JSON (or a JSON string
/// holding the text).
pub fn http(
    method: &str,
    url: &str,
    body: Option<Vec<u8>>,
    headers: Option<&[(&str, String)]>,
) -> Result<(u16, Json), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut req = client.request(
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?,
            url,
        );
        for (k, v) in headers.unwrap_or(&[]) {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        Ok((status, json))
    })
}

/// A Git repository in a temp dir made of the example config, with helpers to commit.
pub struct Repo {
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// The example configuration, committed on `main`.
    pub fn example() -> Repo {
        let fx = super::Fixture::example();
        let repo = git2::Repository::init_opts(
            fx.path(),
            git2::RepositoryInitOptions::new().initial_head("main"),
        )
        .expect("init");
        drop(repo);
        fx.commit("initial config");
        Repo { dir: fx.dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, content).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).expect("read")
    }

    /// Commits the work tree; returns the commit id as hex.
    pub fn commit(&self, message: &str) -> String {
        commit_all(self.path(), message).to_string()
    }

    /// Commits the work tree on top of `base` and moves `main` there in one ref update, as a
    /// force-push looks to a follower (no intermediate state to observe).
    pub fn force_commit_on(&self, base: &str, message: &str) -> String {
        let repo = git2::Repository::open(self.path()).expect("open");
        let parent = repo
            .find_commit(git2::Oid::from_str(base).expect("sha"))
            .expect("base commit");
        let oid = commit_index(&repo, None, message, &[&parent]);
        repo.reference("refs/heads/main", oid, true, "force-push")
            .expect("move main");
        oid.to_string()
    }

    /// Moves `main` to `sha` (as a force-push would), and the work tree with it.
    pub fn reset_hard(&self, sha: &str) {
        let repo = git2::Repository::open(self.path()).expect("open");
        let obj = repo.revparse_single(sha).expect("rev");
        repo.reset(&obj, git2::ResetType::Hard, None)
            .expect("reset");
    }
}

/// Stages everything and commits on HEAD.
pub fn commit_all(path: &Path, message: &str) -> git2::Oid {
    let repo = git2::Repository::open(path).expect("open");
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    commit_index(&repo, Some("HEAD"), message, &parents)
}

/// Stages the whole work tree and commits it with `parents`, updating `update_ref` if given.
fn commit_index(
    repo: &git2::Repository,
    update_ref: Option<&str>,
    message: &str,
    parents: &[&git2::Commit],
) -> git2::Oid {
    let mut index = repo.index().expect("index");
    index
        .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
        .expect("add");
    index.update_all(["*"], None).expect("update");
    index.write().expect("write index");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let sig = git2::Signature::now("Test Author", "author@example.com").expect("sig");
    repo.commit(update_ref, &sig, &sig, message, &tree, parents)
        .expect("commit")
}
