//! Real receivers on loopback: an HTTP server that records every request and answers as told
//! (fail the next N, hang, per-path replies), an SMTP server (aiosmtpd, in Python) that saves
//! every message it accepts, and a TCP listener that accepts and never speaks.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the receiver answers a request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, String),
    /// Never answers.
    Hang,
}

#[derive(Default)]
struct ReceiverState {
    requests: Vec<Recorded>,
    next: VecDeque<Reply>,
    by_path: HashMap<String, Reply>,
    default: Option<Reply>,
}

type Shared = Arc<(Mutex<ReceiverState>, tokio::sync::Notify)>;

/// An HTTP server on 127.0.0.1 that records requests. By default it answers `200 ok` (what a
/// Slack incoming webhook answers). Stops when dropped.
pub struct HttpReceiver {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl HttpReceiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let shared: Shared = Arc::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Self { addr, shared, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ReceiverState> {
        self.shared.0.lock().expect("receiver state")
    }

    /// Answers the next request (after those already queued) this way.
    pub fn reply_next(&self, reply: Reply) {
        self.state().next.push_back(reply);
    }

    /// Answers the next `n` requests with `status` and `body`.
    pub fn fail_next(&self, n: usize, status: u16, body: &str) {
        let mut st = self.state();
        for _ in 0..n {
            st.next.push_back(Reply::Status(status, body.to_string()));
        }
    }

    /// Never answers the next `n` requests.
    pub fn hang_next(&self, n: usize) {
        let mut st = self.state();
        for _ in 0..n {
            st.next.push_back(Reply::Hang);
        }
    }

    /// Answers every request to `path` (after the queued replies) this way.
    pub fn reply_on(&self, path: &str, reply: Reply) {
        self.state().by_path.insert(path.to_string(), reply);
    }

    /// Answers every other request this way (default `200 ok`).
    pub fn reply_by_default(&self, reply: Reply) {
        self.state().default = Some(reply);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state().requests.clone()
    }

    /// Waits until `n` requests have arrived (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.shared.1.notified();
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("{} of {n} requests after 10 s", requests.len()));
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

impl Drop for HttpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let reply = {
        let mut st = shared.0.lock().expect("receiver state");
        st.requests.push(Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().map(str::to_string),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
        st.next
            .pop_front()
            .or_else(|| st.by_path.get(uri.path()).cloned())
            .or_else(|| st.default.clone())
            .unwrap_or(Reply::Status(200, "ok".into()))
    };
    shared.1.notify_waiters();
    match reply {
        Reply::Status(status, body) => {
            (StatusCode::from_u16(status).expect("valid status"), body).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// A TCP listener on 127.0.0.1 that accepts connections and never sends a byte (an SMTP server
/// that never greets, an HTTP server that never answers). Stops when dropped.
pub struct SilentListener {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl SilentListener {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let task = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        Self { port, task }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A loopback port nothing listens on.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    l.local_addr().expect("local addr").port()
}

/// An SMTP server on 127.0.0.1 (Python aiosmtpd, see `smtp_server.py`). Stops when dropped.
pub struct SmtpServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl SmtpServer {
    /// Accepts mail without authentication.
    pub fn start() -> Self {
        Self::spawn(None)
    }

    /// Requires AUTH (PLAIN or LOGIN) with this account; allowed without TLS.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/smtp_server.py");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("server.log")).expect("log file"),
            ));
        if let Some((user, password)) = auth {
            cmd.arg("--auth-user")
                .arg(user)
                .env("SMTP_TEST_PASSWORD", password);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 runs (the SMTP tests need python3 with aiosmtpd)");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the server's first line");
        let Some(port) = line
            .strip_prefix("READY ")
            .and_then(|p| p.trim().parse::<u16>().ok())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let err = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            panic!(
                "the SMTP test server did not start (install aiosmtpd: `pip install aiosmtpd`):\n{err}"
            );
        };
        Self { port, dir, child }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The messages accepted so far, oldest first (see `smtp_server.py` for the fields).
    pub fn messages(&self) -> Vec<Json> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("read message dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                serde_json::from_slice(&std::fs::read(p).expect("read message"))
                    .expect("message JSON")
            })
            .collect()
    }

    /// Waits until `n` messages have been accepted (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Json> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages after 10 s",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
