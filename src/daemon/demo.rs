//! The demo config repository: `examples/repo-layout` with the overlay `examples/demo` (built
//! into the binary), committed into a fresh Git repository in the state directory the first
//! time the daemon starts without a repository to follow.
//!
//! The demo runs its whole loop on the machine: Slack steps post to the daemon's own inbox
//! (`POST /demo/inbox/{channel}`, read with `GET /demo/inbox`, also appended to
//! `<state>/demo-inbox.jsonl`), and pull requests are branches pushed to
//! `<state>/remotes/demo-sdk.git`.

use std::path::{Path, PathBuf};

use include_dir::{Dir, include_dir};

use crate::git::write::{Identity, Repo, WriteError};

static EXAMPLE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/examples/repo-layout");
static OVERLAY: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/examples/demo");

/// Where the demo's pull requests go, under the state directory.
pub const REMOTE: &str = "remotes/demo-sdk.git";

/// Creates the demo repository under `state_dir` unless it exists; returns its path.
pub fn ensure(state_dir: &Path) -> Result<PathBuf, WriteError> {
    let path = state_dir.join("demo-repo");
    let remote = ensure_remote(state_dir)?;
    if path.join(".git").exists() {
        return Ok(path);
    }
    std::fs::create_dir_all(&path).map_err(io)?;
    write_dir(&EXAMPLE, &path, None)?;
    let remote_url = format!("file://{}", remote.display());
    write_dir(&OVERLAY, &path, Some(&remote_url))?;
    Repo::init_with_commit(&path, "main", None, "Demo config repository", DEMO)?;
    Ok(path)
}

/// The bare repository the demo's pull requests are pushed to, with a first commit on `main`
/// (a pull request needs a base branch).
fn ensure_remote(state_dir: &Path) -> Result<PathBuf, WriteError> {
    let path = state_dir.join(REMOTE);
    if path.join("HEAD").exists() {
        return std::fs::canonicalize(&path).map_err(io);
    }
    std::fs::create_dir_all(&path).map_err(io)?;
    let readme: &[u8] = b"# demo-sdk\n\nWhere the mockops demo pushes its pull requests: \
          `git --git-dir .state/remotes/demo-sdk.git branch` lists them.\n";
    Repo::init_with_commit(&path, "main", Some(("README.md", readme)), "Start", DEMO)?;
    std::fs::canonicalize(&path).map_err(io)
}

fn write_dir(dir: &Dir<'_>, root: &Path, remote: Option<&str>) -> Result<(), WriteError> {
    for f in dir.files() {
        let target = root.join(f.path());
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match (remote, f.contents_utf8()) {
            (Some(url), Some(text)) => {
                std::fs::write(&target, text.replace("@DEMO_REMOTE@", url)).map_err(io)?
            }
            _ => std::fs::write(&target, f.contents()).map_err(io)?,
        }
    }
    for d in dir.dirs() {
        write_dir(d, root, remote)?;
    }
    Ok(())
}

/// The demo's inbox: what Slack steps posted, newest last (the last [`INBOX_KEPT`] in memory,
/// all of them in `<state>/demo-inbox.jsonl`).
pub struct Inbox {
    file: PathBuf,
    recent: std::sync::Mutex<std::collections::VecDeque<serde_json::Value>>,
}

/// Messages the inbox keeps in memory.
pub const INBOX_KEPT: usize = 200;
/// Largest message the inbox takes.
const INBOX_MAX_BYTES: usize = 256 * 1024;

impl Inbox {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            file: state_dir.join("demo-inbox.jsonl"),
            recent: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// The URL Slack steps post to when the daemon listens on `addr`.
    pub fn slack_url(addr: std::net::SocketAddr) -> String {
        let ip = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => std::net::IpAddr::from([127, 0, 0, 1]),
            ip if ip.is_unspecified() => std::net::IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
            ip => ip,
        };
        format!(
            "http://{}/demo/inbox/slack",
            std::net::SocketAddr::new(ip, addr.port())
        )
    }

    fn receive(&self, channel: &str, body: &[u8]) {
        use std::io::Write as _;
        let body = serde_json::from_slice::<serde_json::Value>(body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into()));
        let text = body
            .get("text")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        let entry = serde_json::json!({
            "received_at": crate::util::time::now_rfc3339(),
            "inbox": channel,
            "channel": body.get("channel"),
            "text": text,
            "body": body,
        });
        let line = format!("{entry}\n");
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .and_then(|mut f| f.write_all(line.as_bytes()))
        {
            tracing::warn!(file = %self.file.display(), error = %e, "cannot write the demo inbox");
        }
        tracing::info!(
            inbox = channel,
            channel = ?entry["channel"].as_str(),
            text = text.as_deref().unwrap_or(""),
            "demo inbox: message received"
        );
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.push_back(entry);
        while recent.len() > INBOX_KEPT {
            recent.pop_front();
        }
    }

    /// `POST /demo/inbox/{name}` (answers `ok`, as Slack does) and `GET /demo/inbox`.
    pub fn router(self: std::sync::Arc<Self>) -> axum::Router {
        use axum::extract::{Path as UrlPath, State};
        use axum::routing::{get, post};
        axum::Router::new()
            .route(
                "/demo/inbox/{name}",
                post(
                    |State(inbox): State<std::sync::Arc<Inbox>>,
                     UrlPath(name): UrlPath<String>,
                     body: axum::body::Bytes| async move {
                        inbox.receive(&name, &body);
                        "ok"
                    },
                ),
            )
            .route(
                "/demo/inbox",
                get(|State(inbox): State<std::sync::Arc<Inbox>>| async move {
                    let recent = inbox
                        .recent
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>();
                    axum::Json(serde_json::json!({ "messages": recent }))
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(INBOX_MAX_BYTES))
            .with_state(self)
    }
}

fn io(e: std::io::Error) -> WriteError {
    WriteError::io("writing", "the demo repository", e)
}

/// Who makes the demo's commits.
const DEMO: Identity<'static> = Identity {
    name: "mockops demo",
    email: "demo@mockops.invalid",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_repository_is_the_example_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = ensure(dir.path()).unwrap();
        let repo = git2::Repository::open(&path).unwrap();
        let head = repo.head().unwrap();
        assert_eq!(head.shorthand().unwrap(), "main");
        let tree = head.peel_to_tree().unwrap();
        assert!(
            tree.get_path(Path::new("pipelines/auto-sdk-regeneration.yaml"))
                .is_ok()
        );
        // A second start keeps the repository as the user left it.
        let again = ensure(dir.path()).unwrap();
        assert_eq!(again, path);
        // The overlay replaced what needs secrets or tools a fresh machine lacks, and points
        // pull requests at the local remote, which has a `main` to start from.
        let settings = std::fs::read_to_string(path.join("mockops.yaml")).unwrap();
        assert!(!settings.contains("SLACK_WEBHOOK_URL") && !settings.contains("smtp"));
        let pr = std::fs::read_to_string(path.join("pipelines/spec-change-pr.yaml")).unwrap();
        let remote = std::fs::canonicalize(dir.path().join(REMOTE)).unwrap();
        assert!(pr.contains(&format!("file://{}", remote.display())), "{pr}");
        let bare = git2::Repository::open_bare(&remote).unwrap();
        assert!(bare.find_reference("refs/heads/main").is_ok());
    }

    #[test]
    fn the_demo_repository_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let path = ensure(dir.path()).unwrap();
        let files = crate::git::revision::DirFiles::new(&path).unwrap();
        let loaded = crate::config::load::Loader::new().load(&files).unwrap();
        let errors: Vec<_> = loaded
            .diagnostics
            .iter()
            .filter(|d| d.severity == crate::config::diag::Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }
}
