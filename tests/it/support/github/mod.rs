//! A stateful GitHub REST API emulator on loopback, backed by real bare Git repositories:
//! blobs, trees, commits and refs are stored by libgit2; pull requests, labels, reviewers and
//! comments are kept in memory. Every request is checked against GitHub's OpenAPI description
//! (see `openapi.rs`) and violations are recorded for the test to assert on. Faults (5xx before
//! or after performing the action, 403 secondary rate limits) can be injected per route.

pub mod openapi;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use git2::{ObjectType, Oid, Repository};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status without doing anything.
    ServerError(u16),
    /// Do the work, then answer 502 (the caller cannot know it happened).
    ServerErrorAfter,
    /// 403 secondary rate limit with `retry-after: <secs>`.
    SecondaryRateLimit(u64),
    /// 403 primary rate limit: `x-ratelimit-remaining: 0`, reset `<secs>` from now.
    PrimaryRateLimit(u64),
    /// Someone else commits onto the branch a `PATCH .../git/refs/heads/<branch>` names just
    /// before the request is handled (a push racing mockops' own).
    BranchMovedFirst,
}

struct FaultRule {
    method: Method,
    path_suffix: String,
    remaining: u32,
    fault: Fault,
}

#[derive(Debug, Clone)]
pub struct Pull {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub state: String,
    pub draft: bool,
    pub head: String,
    pub base: String,
    pub merged: bool,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub closed_at: Option<SystemTime>,
    pub labels: Vec<String>,
    pub reviewers: Vec<String>,
    pub teams: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub issue: u64,
    pub body: String,
    pub created_at: SystemTime,
}

struct RepoState {
    git: Repository,
    /// Branches with a protection rule: ref updates through the API are refused.
    protected: Vec<String>,
    pulls: Vec<Pull>,
    comments: Vec<Comment>,
    next_number: u64,
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub status: u16,
}

struct Inner {
    repos: HashMap<String, RepoState>,
    faults: Vec<FaultRule>,
    violations: Vec<String>,
    requests: Vec<Recorded>,
    next_id: u64,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base_path: String,
    origin: String,
    dir: Arc<tempfile::TempDir>,
}

/// A running emulator; stops when dropped.
pub struct GitHubEmulator {
    shared: Shared,
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn err(status: StatusCode, message: &str, doc: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "documentation_url": doc, "status": status.as_u16().to_string()})),
    )
        .into_response()
}

fn not_found() -> Response {
    err(
        StatusCode::NOT_FOUND,
        "Not Found",
        "https://docs.github.com/rest",
    )
}

fn unprocessable(message: &str, doc: &str) -> Response {
    err(StatusCode::UNPROCESSABLE_ENTITY, message, doc)
}

impl GitHubEmulator {
    /// Serves the API at `http://127.0.0.1:<port>/`.
    pub async fn start() -> Self {
        Self::start_at("").await
    }

    /// Serves the API under a path prefix, as GitHub Enterprise Server does (`/api/v3`).
    pub async fn start_at(base_path: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                repos: HashMap::new(),
                faults: Vec::new(),
                violations: Vec::new(),
                requests: Vec::new(),
                next_id: 1000,
            })),
            base_path: base_path.trim_end_matches('/').to_string(),
            origin: format!("http://{addr}"),
            dir: Arc::new(tempfile::tempdir().expect("tempdir")),
        };
        // Load (and keep) the OpenAPI description before the first request.
        let spec = tokio::task::spawn_blocking(openapi::spec)
            .await
            .expect("load spec");
        drop(spec);
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            shared,
            addr,
            _stop: tx,
        }
    }

    /// What `GITHUB_API_URL` would be.
    pub fn api_url(&self) -> String {
        format!("{}{}", self.shared.origin, self.shared.base_path)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.shared.inner.lock().expect("emulator lock"))
    }

    fn with_repo<R>(&self, full: &str, f: impl FnOnce(&mut RepoState) -> R) -> R {
        self.with(|i| {
            f(i.repos
                .get_mut(full)
                .expect("repository exists in the emulator"))
        })
    }

    /// A repository whose `main` has one commit with these files.
    pub fn create_repo(&self, full: &str, files: &[(&str, &str)]) {
        let dir = self.shared.dir.path().join(full.replace('/', "__"));
        let git = Repository::init_bare(&dir).expect("init bare");
        {
            let tree = build_tree(
                &git,
                None,
                files.iter().map(|(p, c)| (*p, Some(c.as_bytes()))),
            );
            let tree = git.find_tree(tree).expect("tree");
            let sig = git2::Signature::now("Repo Owner", "owner@example.com").expect("sig");
            git.commit(
                Some("refs/heads/main"),
                &sig,
                &sig,
                "Initial commit",
                &tree,
                &[],
            )
            .expect("commit");
        }
        self.with(|i| {
            i.repos.insert(
                full.to_string(),
                RepoState {
                    git,
                    protected: Vec::new(),
                    pulls: Vec::new(),
                    comments: Vec::new(),
                    next_number: 1,
                },
            )
        });
    }

    /// The bare Git repository behind `full` (what a daemon following it reads).
    pub fn git_dir(&self, full: &str) -> std::path::PathBuf {
        self.shared.dir.path().join(full.replace('/', "__"))
    }

    pub fn branch_sha(&self, full: &str, branch: &str) -> Option<String> {
        self.with_repo(full, |r| {
            r.git
                .refname_to_id(&format!("refs/heads/{branch}"))
                .ok()
                .map(|o| o.to_string())
        })
    }

    /// A file's content on a branch.
    pub fn file(&self, full: &str, branch: &str, path: &str) -> Option<String> {
        self.with_repo(full, |r| {
            let c = r
                .git
                .find_reference(&format!("refs/heads/{branch}"))
                .ok()?
                .peel_to_commit()
                .ok()?;
            let e = c.tree().ok()?.get_path(std::path::Path::new(path)).ok()?;
            let blob = r.git.find_blob(e.id()).ok()?;
            Some(String::from_utf8_lossy(blob.content()).into_owned())
        })
    }

    /// Number of commits on `branch` that are not on `base`.
    pub fn commits_ahead(&self, full: &str, branch: &str, base: &str) -> usize {
        self.with_repo(full, |r| {
            let head = r
                .git
                .refname_to_id(&format!("refs/heads/{branch}"))
                .expect("branch");
            let base = r
                .git
                .refname_to_id(&format!("refs/heads/{base}"))
                .expect("base");
            r.git
                .graph_ahead_behind(head, base)
                .expect("ahead/behind")
                .0
        })
    }

    /// A commit by a person on `branch` (as if pushed from a clone).
    pub fn push_human_commit(&self, full: &str, branch: &str, path: &str, content: &str) -> String {
        self.with_repo(full, |r| human_commit(&r.git, branch, path, content))
    }

    /// Protects `branch`: the API refuses to move it, as GitHub does for a branch whose rules
    /// require pull requests.
    pub fn protect_branch(&self, full: &str, branch: &str) {
        self.with_repo(full, |r| r.protected.push(branch.to_string()));
    }

    /// A commit directly on a branch (e.g. someone else merging into `main`).
    pub fn commit_to(&self, full: &str, branch: &str, path: &str, content: &str) -> String {
        self.push_human_commit(full, branch, path, content)
    }

    pub fn pulls(&self, full: &str) -> Vec<Pull> {
        self.with_repo(full, |r| r.pulls.clone())
    }

    pub fn comments(&self, full: &str, number: u64) -> Vec<Comment> {
        self.with_repo(full, |r| {
            r.comments
                .iter()
                .filter(|c| c.issue == number)
                .cloned()
                .collect()
        })
    }

    /// The bare Git repository behind `full` (a daemon can follow it as its config repo, so
    /// what a pull request merges is what the daemon reconciles next).
    pub fn repo_dir(&self, full: &str) -> std::path::PathBuf {
        self.with_repo(full, |r| r.git.path().to_path_buf())
    }

    /// Merges a pull request as a reviewer pressing the button would: a merge commit of the
    /// head into the base (its tree: the merge of both), the pull request closed and merged.
    /// Returns the base's new commit.
    pub fn merge_pull(&self, full: &str, number: u64) -> String {
        self.with_repo(full, |r| {
            let p = r
                .pulls
                .iter_mut()
                .find(|p| p.number == number)
                .expect("pull");
            assert_eq!(p.state, "open", "only an open pull request merges");
            let base_ref = format!("refs/heads/{}", p.base);
            let base = r
                .git
                .find_reference(&base_ref)
                .expect("base")
                .peel_to_commit()
                .expect("base commit");
            let head = r
                .git
                .find_reference(&format!("refs/heads/{}", p.head))
                .expect("head")
                .peel_to_commit()
                .expect("head commit");
            let mut index = r.git.merge_commits(&base, &head, None).expect("merge");
            assert!(!index.has_conflicts(), "the pull request conflicts");
            let tree = index.write_tree_to(&r.git).expect("tree");
            let tree = r.git.find_tree(tree).expect("tree");
            let sig = git2::Signature::now("Rey Viewer", "rey@example.com").expect("sig");
            let sha = r
                .git
                .commit(
                    Some(&base_ref),
                    &sig,
                    &sig,
                    &format!("Merge pull request #{number} from {}", p.head),
                    &tree,
                    &[&base, &head],
                )
                .expect("merge commit");
            p.state = "closed".into();
            p.merged = true;
            p.closed_at = Some(SystemTime::now());
            sha.to_string()
        })
    }

    /// Closes a pull request without merging, as a reviewer would.
    pub fn close_pull(&self, full: &str, number: u64) {
        self.with_repo(full, |r| {
            let p = r
                .pulls
                .iter_mut()
                .find(|p| p.number == number)
                .expect("pull");
            p.state = "closed".into();
            p.closed_at = Some(SystemTime::now());
        })
    }

    /// The next `times` requests `method` to a path ending in `path_suffix` meet `fault`.
    pub fn inject(&self, method: Method, path_suffix: &str, times: u32, fault: Fault) {
        self.with(|i| {
            i.faults.push(FaultRule {
                method,
                path_suffix: path_suffix.to_string(),
                remaining: times,
                fault,
            })
        });
    }

    pub fn clear_faults(&self) {
        self.with(|i| i.faults.clear());
    }

    /// Requests that did not conform to GitHub's OpenAPI description.
    pub fn violations(&self) -> Vec<String> {
        self.with(|i| i.violations.clone())
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|i| i.requests.clone())
    }

    /// Requests with this method whose path ends with `suffix`.
    pub fn count(&self, method: &str, suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .count()
    }

    pub fn assert_conformant(&self) {
        let v = self.violations();
        assert!(
            v.is_empty(),
            "requests not conforming to GitHub's OpenAPI description:\n{}",
            v.join("\n")
        );
    }
}

fn human_commit(git: &Repository, branch: &str, path: &str, content: &str) -> String {
    let name = format!("refs/heads/{branch}");
    let parent = git
        .find_reference(&name)
        .expect("branch")
        .peel_to_commit()
        .expect("commit");
    let base_tree = parent.tree().expect("tree");
    let tree = build_tree(git, Some(&base_tree), [(path, Some(content.as_bytes()))]);
    let tree = git.find_tree(tree).expect("tree");
    let sig = git2::Signature::now("Ann Human", "ann@example.com").expect("sig");
    git.commit(
        Some(&name),
        &sig,
        &sig,
        "Fix the generated client by hand",
        &tree,
        &[&parent],
    )
    .expect("commit")
    .to_string()
}

fn build_tree<'a>(
    git: &Repository,
    base: Option<&git2::Tree<'_>>,
    files: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
) -> Oid {
    let empty;
    let base = match base {
        Some(b) => b,
        None => {
            let id = git
                .treebuilder(None)
                .expect("tb")
                .write()
                .expect("empty tree");
            empty = git.find_tree(id).expect("tree");
            &empty
        }
    };
    let mut up = git2::build::TreeUpdateBuilder::new();
    for (path, content) in files {
        match content {
            Some(c) => {
                let id = git.blob(c).expect("blob");
                up.upsert(path, id, git2::FileMode::Blob);
            }
            None => {
                up.remove(path);
            }
        }
    }
    up.create_updated(git, base).expect("tree")
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn handle(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let full_path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let json_body: Option<Json> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut i = s.inner.lock().expect("lock");
                i.violations
                    .push(format!("{method} {full_path}: body is not JSON: {e}"));
                return err(
                    StatusCode::BAD_REQUEST,
                    "Problems parsing JSON",
                    "https://docs.github.com/rest",
                );
            }
        }
    };
    let Some(path) = full_path.strip_prefix(&s.base_path).map(str::to_string) else {
        let mut i = s.inner.lock().expect("lock");
        i.violations.push(format!(
            "{method} {full_path}: outside the API base path {:?}",
            s.base_path
        ));
        return not_found();
    };
    let problems = openapi::spec().check(method.as_str(), &path, &query, json_body.as_ref());

    let mut guard = s.inner.lock().expect("lock");
    let inner = &mut *guard;
    inner.violations.extend(problems);
    let fault = inner
        .faults
        .iter_mut()
        .find(|f| f.remaining > 0 && f.method == method && path.ends_with(&f.path_suffix))
        .map(|f| {
            f.remaining -= 1;
            f.fault
        });
    let mut response = match fault {
        Some(Fault::ServerError(code)) => err(
            StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY),
            "Server Error",
            "https://docs.github.com/rest",
        ),
        Some(Fault::SecondaryRateLimit(secs)) => {
            let mut r = err(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
            );
            r.headers_mut()
                .insert("retry-after", secs.to_string().parse().expect("header"));
            r
        }
        Some(Fault::PrimaryRateLimit(secs)) => {
            let reset = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + secs;
            let mut r = err(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation ID 42.",
                "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
            );
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", "5000".parse().expect("header"));
            h.insert("x-ratelimit-remaining", "0".parse().expect("header"));
            h.insert(
                "x-ratelimit-reset",
                reset.to_string().parse().expect("header"),
            );
            r
        }
        Some(Fault::BranchMovedFirst) => {
            let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            if let ["repos", owner, name, "git", "refs", "heads", branch @ ..] = segs.as_slice()
                && let Some(repo) = inner.repos.get_mut(&format!("{owner}/{name}"))
            {
                human_commit(
                    &repo.git,
                    &branch.join("/"),
                    "concurrent.txt",
                    "pushed by someone else meanwhile\n",
                );
            }
            route(
                &s,
                inner,
                &method,
                &path,
                &query,
                json_body.as_ref(),
                authorization.as_deref(),
            )
        }
        Some(Fault::ServerErrorAfter) => {
            let _ = route(
                &s,
                inner,
                &method,
                &path,
                &query,
                json_body.as_ref(),
                authorization.as_deref(),
            );
            err(
                StatusCode::BAD_GATEWAY,
                "Server Error",
                "https://docs.github.com/rest",
            )
        }
        None => route(
            &s,
            inner,
            &method,
            &path,
            &query,
            json_body.as_ref(),
            authorization.as_deref(),
        ),
    };
    inner.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization,
        status: response.status().as_u16(),
    });
    response.headers_mut().insert(
        "x-github-api-version-selected",
        "2022-11-28".parse().expect("header"),
    );
    response
}

fn route(
    s: &Shared,
    inner: &mut Inner,
    method: &Method,
    path: &str,
    query: &str,
    body: Option<&Json>,
    authorization: Option<&str>,
) -> Response {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let empty = json!({});
    let body = body.unwrap_or(&empty);
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            if !authorization.is_some_and(|a| a.starts_with("Bearer ey")) {
                return err(
                    StatusCode::UNAUTHORIZED,
                    "A JSON web token could not be decoded",
                    "https://docs.github.com/rest",
                );
            }
            let expires = SystemTime::now() + Duration::from_secs(3600);
            (
                StatusCode::CREATED,
                axum::Json(json!({
                    "token": format!("ghs_installation{id}"),
                    "expires_at": rfc3339(expires),
                    "permissions": {"contents": "write", "pull_requests": "write"},
                    "repository_selection": "all",
                })),
            )
                .into_response()
        }
        (_, ["repos", owner, name, rest @ ..]) => {
            let full = format!("{owner}/{name}");
            let next_id = &mut inner.next_id;
            let Some(repo) = inner.repos.get_mut(&full) else {
                return not_found();
            };
            let ctx = Ctx {
                api: format!("{}{}/repos/{full}", s.origin, s.base_path),
                web: format!("{}/{full}", s.origin),
                owner: owner.to_string(),
                full: full.clone(),
            };
            repo_route(&ctx, repo, next_id, method.as_str(), rest, query, body)
        }
        _ => {
            inner.violations.push(format!(
                "{method} {path}: the emulator does not implement this route"
            ));
            not_found()
        }
    }
}

struct Ctx {
    api: String,
    web: String,
    owner: String,
    full: String,
}

fn ok(status: StatusCode, v: Json) -> Response {
    (status, axum::Json(v)).into_response()
}

fn sig_json(sig: &git2::Signature<'_>) -> Json {
    let secs = sig.when().seconds();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    json!({
        "name": String::from_utf8_lossy(sig.name_bytes()),
        "email": String::from_utf8_lossy(sig.email_bytes()),
        "date": rfc3339(t),
    })
}

fn commit_json(ctx: &Ctx, c: &git2::Commit<'_>) -> Json {
    let sha = c.id().to_string();
    json!({
        "sha": sha,
        "node_id": format!("C_{sha}"),
        "url": format!("{}/git/commits/{sha}", ctx.api),
        "html_url": format!("{}/commit/{sha}", ctx.web),
        "author": sig_json(&c.author()),
        "committer": sig_json(&c.committer()),
        "message": String::from_utf8_lossy(c.message_bytes()),
        "tree": {"sha": c.tree_id().to_string(), "url": format!("{}/git/trees/{}", ctx.api, c.tree_id())},
        "parents": c.parent_ids().map(|p| json!({
            "sha": p.to_string(),
            "url": format!("{}/git/commits/{p}", ctx.api),
            "html_url": format!("{}/commit/{p}", ctx.web),
        })).collect::<Vec<_>>(),
        "verification": {"verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null},
    })
}

fn ref_json(ctx: &Ctx, name: &str, oid: Oid) -> Json {
    json!({
        "ref": name,
        "node_id": format!("REF_{name}"),
        "url": format!("{}/git/{name}", ctx.api),
        "object": {"type": "commit", "sha": oid.to_string(), "url": format!("{}/git/commits/{oid}", ctx.api)},
    })
}

fn pull_json(ctx: &Ctx, repo: &RepoState, p: &Pull) -> Json {
    let sha = |b: &str| {
        repo.git
            .refname_to_id(&format!("refs/heads/{b}"))
            .map(|o| o.to_string())
            .unwrap_or_else(|_| "0".repeat(40))
    };
    let user = json!({"login": ctx.owner, "id": 1, "type": "User", "html_url": format!("{}/{}", ctx.web.rsplit_once('/').map(|x| x.0).unwrap_or(""), ctx.owner)});
    let repo_json = json!({"full_name": ctx.full, "name": ctx.full.split('/').nth(1), "url": ctx.api, "html_url": ctx.web});
    json!({
        "url": format!("{}/pulls/{}", ctx.api, p.number),
        "id": 5000 + p.number,
        "node_id": format!("PR_{}", p.number),
        "html_url": format!("{}/pull/{}", ctx.web, p.number),
        "diff_url": format!("{}/pull/{}.diff", ctx.web, p.number),
        "patch_url": format!("{}/pull/{}.patch", ctx.web, p.number),
        "issue_url": format!("{}/issues/{}", ctx.api, p.number),
        "number": p.number,
        "state": p.state,
        "locked": false,
        "title": p.title,
        "user": user,
        "body": p.body,
        "labels": p.labels.iter().map(|l| json!({"name": l})).collect::<Vec<_>>(),
        "created_at": rfc3339(p.created_at),
        "updated_at": rfc3339(p.updated_at),
        "closed_at": p.closed_at.map(rfc3339),
        "merged_at": if p.merged { p.closed_at.map(rfc3339) } else { None },
        "draft": p.draft,
        "merged": p.merged,
        "head": {"label": format!("{}:{}", ctx.owner, p.head), "ref": p.head, "sha": sha(&p.head), "user": user, "repo": repo_json},
        "base": {"label": format!("{}:{}", ctx.owner, p.base), "ref": p.base, "sha": sha(&p.base), "user": user, "repo": repo_json},
        "requested_reviewers": p.reviewers.iter().map(|r| json!({"login": r})).collect::<Vec<_>>(),
        "requested_teams": p.teams.iter().map(|t| json!({"slug": t})).collect::<Vec<_>>(),
    })
}

fn comment_json(ctx: &Ctx, c: &Comment) -> Json {
    json!({
        "id": c.id,
        "node_id": format!("IC_{}", c.id),
        "url": format!("{}/issues/comments/{}", ctx.api, c.id),
        "html_url": format!("{}/pull/{}#issuecomment-{}", ctx.web, c.issue, c.id),
        "issue_url": format!("{}/issues/{}", ctx.api, c.issue),
        "body": c.body,
        "user": {"login": "mockops[bot]", "id": 2, "type": "Bot"},
        "created_at": rfc3339(c.created_at),
        "updated_at": rfc3339(c.created_at),
        "author_association": "NONE",
    })
}

fn object_exists(git: &Repository, sha: &str, kind: ObjectType) -> Option<Oid> {
    let oid = Oid::from_str(sha).ok()?;
    git.find_object(oid, Some(kind)).ok().map(|o| o.id())
}

fn str_field<'a>(body: &'a Json, k: &str) -> Option<&'a str> {
    body.get(k).and_then(Json::as_str)
}

fn repo_route(
    ctx: &Ctx,
    repo: &mut RepoState,
    next_id: &mut u64,
    method: &str,
    rest: &[&str],
    query: &str,
    body: &Json,
) -> Response {
    const DOC_REFS: &str = "https://docs.github.com/rest/git/refs";
    match (method, rest) {
        ("GET", ["installation"]) => ok(
            StatusCode::OK,
            json!({"id": 42, "account": {"login": ctx.owner}, "app_id": 7, "target_type": "Organization",
                   "access_tokens_url": format!("{}/app/installations/42/access_tokens", ctx.api.split("/repos/").next().unwrap_or_default())}),
        ),
        ("GET", ["git", "ref", r @ ..]) => {
            let name = format!("refs/{}", r.join("/"));
            match repo.git.refname_to_id(&name) {
                Ok(oid) => ok(StatusCode::OK, ref_json(ctx, &name, oid)),
                Err(_) => not_found(),
            }
        }
        ("POST", ["git", "refs"]) => {
            let (Some(name), Some(sha)) = (str_field(body, "ref"), str_field(body, "sha")) else {
                return unprocessable("Invalid request.", DOC_REFS);
            };
            if !name.starts_with("refs/") || name.matches('/').count() < 2 {
                return unprocessable(
                    "Reference name must start with 'refs/' and have at least two slashes.",
                    DOC_REFS,
                );
            }
            let Some(oid) = object_exists(&repo.git, sha, ObjectType::Commit) else {
                return unprocessable("Object does not exist", DOC_REFS);
            };
            if repo.git.find_reference(name).is_ok() {
                return unprocessable("Reference already exists", DOC_REFS);
            }
            repo.git
                .reference(name, oid, false, "create")
                .expect("create ref");
            ok(StatusCode::CREATED, ref_json(ctx, name, oid))
        }
        ("PATCH", ["git", "refs", r @ ..]) => {
            let name = format!("refs/{}", r.join("/"));
            let Ok(old) = repo.git.refname_to_id(&name) else {
                return unprocessable("Reference does not exist", DOC_REFS);
            };
            let Some(new) = str_field(body, "sha")
                .and_then(|s| object_exists(&repo.git, s, ObjectType::Commit))
            else {
                return unprocessable("Object does not exist", DOC_REFS);
            };
            if repo
                .protected
                .iter()
                .any(|b| name == format!("refs/heads/{b}"))
            {
                return unprocessable(
                    &format!("Protected branch update failed for {name}."),
                    "https://docs.github.com/rest/git/refs#update-a-reference",
                );
            }
            let force = body.get("force").and_then(Json::as_bool).unwrap_or(false);
            if !force && old != new && !repo.git.graph_descendant_of(new, old).unwrap_or(false) {
                return unprocessable("Update is not a fast forward", DOC_REFS);
            }
            repo.git
                .reference(&name, new, true, "update")
                .expect("update ref");
            ok(StatusCode::OK, ref_json(ctx, &name, new))
        }
        ("DELETE", ["git", "refs", r @ ..]) => {
            let name = format!("refs/{}", r.join("/"));
            match repo.git.find_reference(&name) {
                Ok(mut rf) => {
                    rf.delete().expect("delete ref");
                    StatusCode::NO_CONTENT.into_response()
                }
                Err(_) => unprocessable("Reference does not exist", DOC_REFS),
            }
        }
        ("POST", ["git", "blobs"]) => {
            let content = str_field(body, "content").unwrap_or_default();
            let bytes = match str_field(body, "encoding").unwrap_or("utf-8") {
                "base64" => match base64::engine::general_purpose::STANDARD
                    .decode(content.replace(['\n', '\r'], ""))
                {
                    Ok(b) => b,
                    Err(_) => {
                        return unprocessable(
                            "content is not valid Base64",
                            "https://docs.github.com/rest/git/blobs",
                        );
                    }
                },
                _ => content.as_bytes().to_vec(),
            };
            let oid = repo.git.blob(&bytes).expect("blob");
            ok(
                StatusCode::CREATED,
                json!({"sha": oid.to_string(), "url": format!("{}/git/blobs/{oid}", ctx.api)}),
            )
        }
        ("GET", ["git", "blobs", sha]) => match object_exists(&repo.git, sha, ObjectType::Blob) {
            Some(oid) => {
                let blob = repo.git.find_blob(oid).expect("blob");
                ok(
                    StatusCode::OK,
                    json!({
                        "sha": oid.to_string(),
                        "node_id": format!("B_{oid}"),
                        "size": blob.size(),
                        "url": format!("{}/git/blobs/{oid}", ctx.api),
                        "content": base64::engine::general_purpose::STANDARD.encode(blob.content()),
                        "encoding": "base64",
                    }),
                )
            }
            None => not_found(),
        },
        ("POST", ["git", "trees"]) => create_tree(ctx, repo, body),
        ("GET", ["git", "trees", sha]) => {
            let Some(oid) = object_exists(&repo.git, sha, ObjectType::Tree) else {
                return not_found();
            };
            let recursive = parse_query(query).contains_key("recursive");
            ok(StatusCode::OK, tree_json(ctx, &repo.git, oid, recursive))
        }
        ("POST", ["git", "commits"]) => {
            const DOC: &str = "https://docs.github.com/rest/git/commits#create-a-commit";
            let Some(tree) =
                str_field(body, "tree").and_then(|t| object_exists(&repo.git, t, ObjectType::Tree))
            else {
                return unprocessable("Tree SHA does not exist", DOC);
            };
            let mut parents = Vec::new();
            for p in body
                .get("parents")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                match p
                    .as_str()
                    .and_then(|p| object_exists(&repo.git, p, ObjectType::Commit))
                {
                    Some(oid) => parents.push(repo.git.find_commit(oid).expect("parent")),
                    None => {
                        return unprocessable(
                            "Parent SHA does not exist or is not a commit object",
                            DOC,
                        );
                    }
                }
            }
            let sig = |k: &str| {
                let v = body.get(k)?;
                git2::Signature::now(v.get("name")?.as_str()?, v.get("email")?.as_str()?).ok()
            };
            let default = git2::Signature::now("Token Owner", "owner@example.com").expect("sig");
            let author = sig("author").unwrap_or_else(|| default.clone());
            let committer = sig("committer").unwrap_or_else(|| author.clone());
            let tree = repo.git.find_tree(tree).expect("tree");
            let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
            let oid = repo
                .git
                .commit(
                    None,
                    &author,
                    &committer,
                    str_field(body, "message").unwrap_or_default(),
                    &tree,
                    &refs,
                )
                .expect("commit");
            let c = repo.git.find_commit(oid).expect("commit");
            ok(StatusCode::CREATED, commit_json(ctx, &c))
        }
        ("GET", ["git", "commits", sha]) => match object_exists(&repo.git, sha, ObjectType::Commit)
        {
            Some(oid) => ok(
                StatusCode::OK,
                commit_json(ctx, &repo.git.find_commit(oid).expect("commit")),
            ),
            None => not_found(),
        },
        ("GET", ["commits"]) => {
            let q = parse_query(query);
            let per_page: usize = q
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30)
                .min(100);
            let start = q.get("sha").map(String::as_str).unwrap_or("main");
            let Some(tip) = repo
                .git
                .refname_to_id(&format!("refs/heads/{start}"))
                .ok()
                .or_else(|| object_exists(&repo.git, start, ObjectType::Commit))
            else {
                return not_found();
            };
            let mut walk = repo.git.revwalk().expect("revwalk");
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
                .expect("sorting");
            walk.push(tip).expect("push");
            let items: Vec<Json> = walk
                .take(per_page)
                .map(|oid| {
                    let c = repo.git.find_commit(oid.expect("walk")).expect("commit");
                    let sha = c.id().to_string();
                    json!({
                        "sha": sha,
                        "node_id": format!("C_{sha}"),
                        "url": format!("{}/commits/{sha}", ctx.api),
                        "html_url": format!("{}/commit/{sha}", ctx.web),
                        "comments_url": format!("{}/commits/{sha}/comments", ctx.api),
                        "commit": commit_json(ctx, &c),
                        "author": null,
                        "committer": null,
                        "parents": c.parent_ids().map(|p| json!({"sha": p.to_string(), "url": format!("{}/commits/{p}", ctx.api)})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            ok(StatusCode::OK, Json::Array(items))
        }
        ("GET", ["pulls"]) => {
            let q = parse_query(query);
            let state = q.get("state").map(String::as_str).unwrap_or("open");
            let per_page: usize = q
                .get("per_page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(30)
                .min(100);
            let page: usize = q
                .get("page")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
                .max(1);
            let asc = q.get("direction").map(String::as_str) == Some("asc");
            let mut list: Vec<&Pull> = repo
                .pulls
                .iter()
                .filter(|p| state == "all" || p.state == state)
                .filter(|p| match q.get("head") {
                    Some(h) => {
                        let (o, b) = h
                            .split_once(':')
                            .unwrap_or((ctx.owner.as_str(), h.as_str()));
                        o == ctx.owner && p.head == b
                    }
                    None => true,
                })
                .filter(|p| q.get("base").is_none_or(|b| &p.base == b))
                .collect();
            list.sort_by_key(|p| (p.created_at, p.number));
            if !asc {
                list.reverse();
            }
            let items: Vec<Json> = list
                .into_iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|p| pull_json(ctx, repo, p))
                .collect();
            ok(StatusCode::OK, Json::Array(items))
        }
        ("POST", ["pulls"]) => {
            const DOC: &str = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request";
            let (Some(head), Some(base)) = (str_field(body, "head"), str_field(body, "base"))
            else {
                return unprocessable("Validation Failed", DOC);
            };
            let head = head.split_once(':').map(|(_, b)| b).unwrap_or(head);
            let fail = |msg: String| {
                ok(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "code": "custom", "message": msg}], "documentation_url": DOC, "status": "422"}),
                )
            };
            if repo
                .pulls
                .iter()
                .any(|p| p.state == "open" && p.head == head && p.base == base)
            {
                return fail(format!(
                    "A pull request already exists for {}:{head}.",
                    ctx.owner
                ));
            }
            let (Ok(h), Ok(b)) = (
                repo.git.refname_to_id(&format!("refs/heads/{head}")),
                repo.git.refname_to_id(&format!("refs/heads/{base}")),
            ) else {
                return ok(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"message": "Validation Failed", "errors": [{"resource": "PullRequest", "field": "head", "code": "invalid"}], "documentation_url": DOC, "status": "422"}),
                );
            };
            if h == b || repo.git.graph_descendant_of(b, h).unwrap_or(false) {
                return fail(format!("No commits between {base} and {head}"));
            }
            let now = SystemTime::now();
            let pull = Pull {
                number: repo.next_number,
                title: str_field(body, "title").unwrap_or_default().to_string(),
                body: str_field(body, "body").unwrap_or_default().to_string(),
                state: "open".into(),
                draft: body.get("draft").and_then(Json::as_bool).unwrap_or(false),
                head: head.to_string(),
                base: base.to_string(),
                merged: false,
                created_at: now,
                updated_at: now,
                closed_at: None,
                labels: vec![],
                reviewers: vec![],
                teams: vec![],
            };
            repo.next_number += 1;
            let j = pull_json(ctx, repo, &pull);
            repo.pulls.push(pull);
            ok(StatusCode::CREATED, j)
        }
        ("GET", ["pulls", n]) => match repo.pulls.iter().find(|p| p.number.to_string() == *n) {
            Some(p) => ok(StatusCode::OK, pull_json(ctx, repo, p)),
            None => not_found(),
        },
        ("PATCH", ["pulls", n]) => {
            let Some(i) = repo.pulls.iter().position(|p| p.number.to_string() == *n) else {
                return not_found();
            };
            let p = &mut repo.pulls[i];
            if let Some(t) = str_field(body, "title") {
                p.title = t.to_string();
            }
            if let Some(b) = str_field(body, "body") {
                p.body = b.to_string();
            }
            if let Some(s) = str_field(body, "state") {
                p.state = s.to_string();
                p.closed_at = (s == "closed").then(SystemTime::now);
            }
            p.updated_at = SystemTime::now();
            let p = repo.pulls[i].clone();
            ok(StatusCode::OK, pull_json(ctx, repo, &p))
        }
        ("POST", ["pulls", n, "requested_reviewers"]) => {
            let Some(i) = repo.pulls.iter().position(|p| p.number.to_string() == *n) else {
                return not_found();
            };
            let list = |k: &str| -> Vec<String> {
                body.get(k)
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let p = &mut repo.pulls[i];
            p.reviewers.extend(list("reviewers"));
            p.teams.extend(list("team_reviewers"));
            let p = p.clone();
            ok(StatusCode::CREATED, pull_json(ctx, repo, &p))
        }
        ("POST", ["issues", n, "labels"]) => {
            let Some(p) = repo.pulls.iter_mut().find(|p| p.number.to_string() == *n) else {
                return not_found();
            };
            for l in body
                .get("labels")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
                .filter_map(Json::as_str)
            {
                if !p.labels.iter().any(|x| x == l) {
                    p.labels.push(l.to_string());
                }
            }
            let labels: Vec<Json> = p
                .labels
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"id": i + 1, "node_id": format!("L_{l}"), "url": format!("{}/labels/{l}", ctx.api), "name": l, "color": "ededed", "default": false, "description": null}))
                .collect();
            ok(StatusCode::OK, Json::Array(labels))
        }
        ("GET", ["issues", n, "comments"]) => {
            let items: Vec<Json> = repo
                .comments
                .iter()
                .filter(|c| c.issue.to_string() == *n)
                .map(|c| comment_json(ctx, c))
                .collect();
            ok(StatusCode::OK, Json::Array(items))
        }
        ("POST", ["issues", n, "comments"]) => {
            let Some(issue) = repo
                .pulls
                .iter()
                .find(|p| p.number.to_string() == *n)
                .map(|p| p.number)
            else {
                return not_found();
            };
            *next_id += 1;
            let c = Comment {
                id: *next_id,
                issue,
                body: str_field(body, "body").unwrap_or_default().to_string(),
                created_at: SystemTime::now(),
            };
            let j = comment_json(ctx, &c);
            repo.comments.push(c);
            ok(StatusCode::CREATED, j)
        }
        _ => not_found(),
    }
}

fn create_tree(ctx: &Ctx, repo: &mut RepoState, body: &Json) -> Response {
    const DOC: &str = "https://docs.github.com/rest/git/trees#create-a-tree";
    let git = &repo.git;
    let base = match str_field(body, "base_tree") {
        Some(sha) => match object_exists(git, sha, ObjectType::Tree) {
            Some(oid) => git.find_tree(oid).expect("tree"),
            None => return unprocessable("Invalid tree info", DOC),
        },
        None => {
            let id = git
                .treebuilder(None)
                .expect("tb")
                .write()
                .expect("empty tree");
            git.find_tree(id).expect("tree")
        }
    };
    let mut up = git2::build::TreeUpdateBuilder::new();
    for e in body
        .get("tree")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let path = str_field(e, "path").unwrap_or_default();
        if str_field(e, "type") != Some("blob") {
            return unprocessable("the emulator handles blob entries only", DOC);
        }
        let mode = match str_field(e, "mode") {
            Some("100755") => git2::FileMode::BlobExecutable,
            _ => git2::FileMode::Blob,
        };
        match (e.get("sha"), e.get("content")) {
            (Some(Json::Null), None) => {
                if base.get_path(std::path::Path::new(path)).is_err() {
                    return unprocessable(
                        &format!("GitRPC::BadObjectState: path {path} does not exist in base_tree"),
                        DOC,
                    );
                }
                up.remove(path);
            }
            (Some(Json::String(sha)), None) => match object_exists(git, sha, ObjectType::Blob) {
                Some(oid) => {
                    up.upsert(path, oid, mode);
                }
                None => return unprocessable("tree.sha is not a valid blob", DOC),
            },
            (None, Some(Json::String(c))) => {
                let oid = git.blob(c.as_bytes()).expect("blob");
                up.upsert(path, oid, mode);
            }
            _ => return unprocessable("Must supply either tree.sha or tree.content", DOC),
        }
    }
    let oid = up.create_updated(git, &base).expect("tree");
    ok(StatusCode::CREATED, tree_json(ctx, git, oid, false))
}

fn tree_json(ctx: &Ctx, git: &Repository, oid: Oid, recursive: bool) -> Json {
    let tree = git.find_tree(oid).expect("tree");
    let mut items = Vec::new();
    let mut push = |root: &str, e: &git2::TreeEntry<'_>| {
        let kind = match e.kind() {
            Some(ObjectType::Tree) => "tree",
            Some(ObjectType::Commit) => "commit",
            _ => "blob",
        };
        let mut item = json!({
            "path": format!("{root}{}", e.name().unwrap_or_default()),
            "mode": format!("{:06o}", e.filemode()),
            "type": kind,
            "sha": e.id().to_string(),
            "url": format!("{}/git/{}s/{}", ctx.api, kind, e.id()),
        });
        if kind == "blob"
            && let Ok(b) = git.find_blob(e.id())
        {
            item["size"] = json!(b.size());
        }
        items.push(item);
    };
    if recursive {
        tree.walk(git2::TreeWalkMode::PreOrder, |root, e| {
            push(root, e);
            git2::TreeWalkResult::Ok
        })
        .expect("walk");
    } else {
        for e in tree.iter() {
            push("", &e);
        }
    }
    json!({"sha": oid.to_string(), "url": format!("{}/git/trees/{oid}", ctx.api), "tree": items, "truncated": false})
}
