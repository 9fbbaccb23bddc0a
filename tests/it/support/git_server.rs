//! Real Git servers on loopback for source tests: `git daemon` (git://, with receive-pack so
//! tests can push), smart HTTP through `git http-backend` behind a token check, and a TCP
//! server that accepts connections and never answers. Plus helpers to commit into bare
//! repositories with git2.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn wait_listening(port: u16) {
    let until = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates a bare repository `<root>/<name>`.
pub fn bare_repo(root: &Path, name: &str) -> git2::Repository {
    git2::Repository::init_opts(
        root.join(name),
        git2::RepositoryInitOptions::new()
            .bare(true)
            .initial_head("main"),
    )
    .expect("init bare")
}

/// Commits one file on `branch` of `repo` (bare or not, without touching any work tree) with
/// `parent` as the only parent (none for a root commit), and moves the branch, forced.
pub fn commit_on(
    repo: &git2::Repository,
    branch: &str,
    parent: Option<git2::Oid>,
    file: &str,
    content: &str,
) -> git2::Oid {
    let blob = repo.blob(content.as_bytes()).expect("blob");
    let mut builder = repo.treebuilder(None).expect("treebuilder");
    builder
        .insert(file, blob, i32::from(git2::FileMode::Blob))
        .expect("insert");
    let tree = repo
        .find_tree(builder.write().expect("tree"))
        .expect("find tree");
    let sig = git2::Signature::now("Test Author", "author@example.com").expect("sig");
    let parents: Vec<git2::Commit> = parent
        .map(|p| repo.find_commit(p).expect("parent"))
        .into_iter()
        .collect();
    let refs: Vec<&git2::Commit> = parents.iter().collect();
    let id = repo
        .commit(None, &sig, &sig, &format!("set {file}"), &tree, &refs)
        .expect("commit");
    repo.reference(&format!("refs/heads/{branch}"), id, true, "test")
        .expect("move branch");
    id
}

/// `git` with a fixed identity and no user or system configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Test Author")
        .env("GIT_COMMITTER_EMAIL", "author@example.com")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `git daemon` serving every repository under `root` on a loopback port, push enabled.
pub struct GitDaemon {
    child: Option<Child>,
    pub port: u16,
    pub root: PathBuf,
}

impl GitDaemon {
    pub fn start(root: &Path) -> Self {
        let port = free_port();
        // `git daemon` would run `git-daemon` as a child of the `git` wrapper, and killing the
        // wrapper would leave the daemon serving; start the real program so `stop` stops it.
        let exec_path = git(root, &["--exec-path"]);
        let child = Command::new(Path::new(exec_path.trim()).join("git-daemon"))
            .arg("--export-all")
            .arg("--reuseaddr")
            .arg("--informative-errors")
            .arg("--enable=receive-pack")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", root.display()))
            .arg(root)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start git daemon");
        wait_listening(port);
        Self {
            child: Some(child),
            port,
            root: root.to_path_buf(),
        }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// Stops the daemon; its port refuses connections afterwards.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs an async server on its own thread and runtime, so blocking tests can use it.
struct Background {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    fn serve(router: axum::Router) -> (Self, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async {
                        let _ = rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        (
            Self {
                shutdown: Some(tx),
                thread: Some(thread),
            },
            addr,
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Smart HTTP: `git http-backend` as CGI under `root`, behind HTTP basic auth with user
/// `x-access-token` and a fixed token.
pub struct HttpGitServer {
    _bg: Background,
    pub addr: SocketAddr,
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    expected_auth: String,
}

impl HttpGitServer {
    pub fn start(root: &Path, token: &str) -> Self {
        let expected =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        let state = HttpState {
            root: root.to_path_buf(),
            expected_auth: format!("Basic {expected}"),
        };
        let router = axum::Router::new()
            .fallback(http_backend)
            .with_state(Arc::new(state));
        let (bg, addr) = Background::serve(router);
        Self { _bg: bg, addr }
    }

    pub fn url(&self, repo: &str) -> String {
        format!("http://{}/{repo}", self.addr)
    }
}

async fn http_backend(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != state.expected_auth {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"git\"")
            .body(Body::from("unauthorized\n"))
            .expect("response");
    }
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &state.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", uri.path())
        .env("QUERY_STRING", uri.query().unwrap_or(""))
        .env("REQUEST_METHOD", method.as_str())
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "x-access-token")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn git http-backend");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        let _ = stdin.shutdown().await;
    });
    let mut out = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut out)
        .await
        .expect("read cgi output");
    let _ = writer.await;
    let _ = child.wait().await;
    cgi_response(&out)
}

/// Turns CGI output (headers, a blank line, the body) into a response.
fn cgi_response(out: &[u8]) -> Response {
    let (head, body) = match find(out, b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match find(out, b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => (&out[..0], out),
        },
    };
    let mut builder = Response::builder().status(StatusCode::OK);
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(500);
            builder = builder.status(code);
        } else {
            builder = builder.header(name.trim(), value);
        }
    }
    builder
        .body(Body::from(body.to_vec()))
        .expect("cgi response")
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Accepts TCP connections and never sends a byte: a remote that hangs.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => held.push(s),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            }
        });
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves an axum router on loopback for the life of the value.
pub struct AxumServer {
    _bg: Background,
    pub addr: SocketAddr,
}

impl AxumServer {
    pub fn start(router: axum::Router) -> Self {
        let (bg, addr) = Background::serve(router);
        Self { _bg: bg, addr }
    }
}
