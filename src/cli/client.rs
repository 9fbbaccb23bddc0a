//! `mockops status`, `mockops sync` and `mockops events`: clients of a running daemon's HTTP API.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value as Json, json};

use super::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Base URL of the daemon's API.
    #[arg(
        long,
        env = "MOCKOPS_API",
        default_value = "http://127.0.0.1:8480",
        global = true
    )]
    pub api: String,
    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,
    /// File with the API token, sent with every request (default: the state directory's
    /// `api-token`; or set MOCKOPS_API_TOKEN).
    #[arg(
        long,
        env = "MOCKOPS_API_TOKEN_FILE",
        default_value = ".state/api-token",
        global = true
    )]
    pub api_token_file: PathBuf,
}

impl ApiArgs {
    /// The token, when there is one: `MOCKOPS_API_TOKEN`, else the file.
    pub fn token(&self) -> Option<String> {
        api_token(&self.api_token_file).ok()
    }

    /// The token, or an error saying where it was looked for.
    pub fn require_token(&self) -> anyhow::Result<String> {
        api_token(&self.api_token_file)
    }

    /// A client for reads: it sends the token when there is one.
    pub fn reader(&self) -> anyhow::Result<ApiClient> {
        ApiClient::new(&self.api, self.token())
    }

    /// A client for writes, which need the token: an error says where it was looked for.
    pub fn writer(&self) -> anyhow::Result<ApiClient> {
        ApiClient::new(&self.api, Some(self.require_token()?))
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// Return once the request is taken, without waiting for the pass.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the pass (fetch and apply) to finish.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List stored events, oldest first.
    List {
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only events with an id above this one.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Post a custom event (it lands in the same log and triggers pipelines).
    Emit {
        /// Event name, e.g. `release.published`.
        event_type: String,
        /// Payload as a JSON object.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        workspace: Option<String>,
        /// Posting twice with the same key stores the event once.
        #[arg(long)]
        dedup_key: Option<String>,
    },
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// The one HTTP client of the daemon's API, shared by every CLI command that talks to it:
/// JSON in and out, a 30 s timeout, the bearer token when it has one, and one wording for a
/// daemon that cannot be reached or answers with an error.
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl ApiClient {
    /// A client of the API at `base` that sends `token` with every request.
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
            token,
        })
    }

    /// GET `path` with `query`; the answer's JSON.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Json> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url).query(query), &url).await
    }

    /// POSTs `body` as JSON; the answer's JSON.
    pub async fn post(&self, path: &str, body: &Json) -> anyhow::Result<Json> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.post(&url).json(body), &url).await
    }

    /// POSTs `body` as JSON; the status and the answer's JSON, whatever the status (for
    /// answers that explain a refusal in their body).
    pub async fn post_answer(&self, path: &str, body: &Json) -> anyhow::Result<(u16, Json)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.post(&url).json(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the daemon at {} (is `mockops daemon` running?)",
                self.base
            )
        })?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await.unwrap_or(Json::Null)))
    }

    async fn send(&self, mut req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Json> {
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the daemon at {} (is `mockops daemon` running?)",
                self.base
            )
        })?;
        let status = resp.status();
        let body: Json = resp.json().await.unwrap_or(Json::Null);
        anyhow::ensure!(
            status.is_success(),
            "{url}: {status}: {}",
            body.get("error").and_then(Json::as_str).unwrap_or("")
        );
        Ok(body)
    }
}

/// The API token: `MOCKOPS_API_TOKEN`, else the file.
pub fn api_token(file: &std::path::Path) -> anyhow::Result<String> {
    match std::env::var("MOCKOPS_API_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(t),
        _ => Ok(std::fs::read_to_string(file)
            .with_context(|| {
                format!(
                    "cannot read the API token from {} (set --api-token-file or MOCKOPS_API_TOKEN)",
                    file.display()
                )
            })?
            .trim()
            .to_string()),
    }
}

pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let api = args.api.reader()?;
    let body = runtime()?.block_on(api.get("/api/v1/status", &[]))?;
    print_status(&body, args.api.format)?;
    Ok(exit::OK)
}

/// `mockops sync`: asks the daemon to fetch and apply now (as `flux reconcile source git`
/// does), waits for that pass, and prints where the daemon then stands. Exits 1 when the pass
/// failed or the head commit is invalid.
pub fn sync(args: &SyncArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    let api = args.api.writer()?;
    let answer = rt.block_on(api.post("/api/v1/sync", &json!({})))?;
    let request = answer["request"]
        .as_u64()
        .context("the daemon's answer has no request number")?;
    if args.no_wait {
        if args.api.format == Format::Json {
            println!("{}", serde_json::to_string_pretty(&answer)?);
        } else {
            println!("sync requested (#{request})");
        }
        return Ok(exit::OK);
    }
    let deadline = std::time::Instant::now() + args.timeout;
    let body = rt.block_on(async {
        loop {
            let body = api.get("/api/v1/status", &[]).await?;
            if body["sync_served"].as_u64().unwrap_or(0) >= request {
                return Ok::<_, anyhow::Error>(body);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the daemon did not finish a pass within {} (a large commit backlog, or a fetch \
                 hanging until --fetch-timeout); `mockops status` shows where it stands",
                humantime::format_duration(args.timeout)
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })?;
    print_status(&body, args.api.format)?;
    let failed = !body["last_error"].is_null()
        || (body["in_sync"] == true && body["last_attempted_status"] == "invalid");
    Ok(if failed { exit::FAILED } else { exit::OK })
}

fn print_status(body: &Json, format: Format) -> anyhow::Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let s = |v: &Json| v.as_str().unwrap_or("-").to_string();
    let rev = |v: &Json| match v.get("sha").and_then(Json::as_str) {
        Some(sha) => format!(
            "{} (at {})",
            &sha[..sha.len().min(12)],
            s(v.get("at").unwrap_or(&Json::Null))
        ),
        None => "-".into(),
    };
    println!("source:          {}", s(&body["source"]));
    println!("branch:          {}", s(&body["branch"]));
    println!(
        "head:            {}",
        body["head"]
            .as_str()
            .map(|h| h[..h.len().min(12)].to_string())
            .unwrap_or("-".into())
    );
    println!("last applied:    {}", rev(&body["last_applied"]));
    println!(
        "last attempted:  {} {}",
        rev(&body["last_attempted"]),
        match body["last_attempted_status"].as_str() {
            Some("invalid") => format!(
                "INVALID ({} errors; see `mockops validate --rev`)",
                body["last_attempted_errors"]
            ),
            Some(st) => st.to_string(),
            None => String::new(),
        }
    );
    if let Some(e) = body["last_error"].as_str() {
        println!("last error:      {e}");
    }
    if let Some(r) = body["rebuilt"].as_str() {
        println!("note:            {r}");
    }
    if body["health"]["healthy"] == Json::Bool(false) {
        for p in body["health"]["problems"].as_array().into_iter().flatten() {
            println!("UNHEALTHY:       {}", s(p));
        }
    }
    let c = &body["counts"];
    println!(
        "store:           {} entities, {} revisions, {} events ({} not yet dispatched)",
        c["entities"], c["revisions"], c["events"], c["outbox"]
    );
    Ok(())
}

pub fn events(args: &EventsArgs) -> anyhow::Result<u8> {
    let rt = runtime()?;
    match &args.command {
        EventsCommand::List {
            event_type,
            workspace,
            since,
            after,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(t) = event_type {
                q.push(("type", t.clone()));
            }
            if let Some(w) = workspace {
                q.push(("workspace", w.clone()));
            }
            if let Some(s) = since {
                q.push(("since", s.clone()));
            }
            if let Some(a) = after {
                q.push(("after", a.to_string()));
            }
            let api = args.api.reader()?;
            let body = rt.block_on(api.get("/api/v1/events", &q))?;
            if args.api.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(exit::OK);
            }
            for e in body["events"].as_array().into_iter().flatten() {
                println!("{}", one_line(e));
            }
            Ok(exit::OK)
        }
        EventsCommand::Emit {
            event_type,
            payload,
            workspace,
            dedup_key,
        } => {
            let payload: Map<String, Json> = serde_json::from_str(payload)
                .context("--payload must be a JSON object, e.g. '{\"version\": \"1.2.0\"}'")?;
            let api = args.api.writer()?;
            let body = json!({
                "event_type": event_type,
                "workspace_id": workspace,
                "payload": payload,
                "dedup_key": dedup_key,
                "caller": "cli",
            });
            let out = rt.block_on(api.post("/api/v1/events", &body))?;
            if args.api.format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                println!("stored: {}", one_line(&out));
            }
            Ok(exit::OK)
        }
    }
}

fn one_line(e: &Json) -> String {
    let p = &e["payload"];
    let detail = [
        "spec_path",
        "config_path",
        "scenario_id",
        "persona_id",
        "summary",
    ]
    .iter()
    .filter_map(|k| p.get(*k).and_then(Json::as_str).map(|v| format!("{k}={v}")))
    .collect::<Vec<_>>()
    .join(" ");
    format!(
        "{:>6}  {}  {:<22} {:<28} {}",
        e["id"],
        e["timestamp"].as_str().unwrap_or(""),
        e["event_type"].as_str().unwrap_or(""),
        e["workspace_id"].as_str().unwrap_or("-"),
        detail
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Json as AxumJson;
    use axum::extract::RawQuery;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    /// A daemon stand-in that echoes what it was sent.
    async fn echo_server() -> String {
        fn auth(h: &HeaderMap) -> Json {
            h.get("authorization")
                .and_then(|v| v.to_str().ok())
                .map_or(Json::Null, Json::from)
        }
        let app = axum::Router::new()
            .route(
                "/read",
                get(|h: HeaderMap, RawQuery(q): RawQuery| async move {
                    AxumJson(json!({"auth": auth(&h), "query": q}))
                }),
            )
            .route(
                "/write",
                post(|h: HeaderMap, AxumJson(body): AxumJson<Json>| async move {
                    AxumJson(json!({"auth": auth(&h), "body": body}))
                }),
            )
            .route(
                "/refused",
                get(|| async { (StatusCode::FORBIDDEN, AxumJson(json!({"error": "no"}))) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn sends_the_token_query_and_body() {
        let base = echo_server().await;
        let api = ApiClient::new(&base, Some("t0k".into())).unwrap();
        let r = api.get("/read", &[("limit", "5".into())]).await.unwrap();
        assert_eq!(r, json!({"auth": "Bearer t0k", "query": "limit=5"}));
        let w = api.post("/write", &json!({"a": 1})).await.unwrap();
        assert_eq!(w, json!({"auth": "Bearer t0k", "body": {"a": 1}}));

        let anonymous = ApiClient::new(&base, None).unwrap();
        let r = anonymous.get("/read", &[]).await.unwrap();
        assert_eq!(r["auth"], Json::Null);
    }

    #[tokio::test]
    async fn errors_name_the_url_status_and_reason() {
        let base = echo_server().await;
        let api = ApiClient::new(&base, None).unwrap();
        let e = api.get("/refused", &[]).await.unwrap_err().to_string();
        let url = format!("{}/refused", base.trim_end_matches('/'));
        assert_eq!(e, format!("{url}: 403 Forbidden: no"));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let e = ApiClient::new(&closed, None)
            .unwrap()
            .get("/read", &[])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("cannot reach the daemon at {closed}")),
            "{e}"
        );
    }

    #[test]
    fn writes_need_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let args = ApiArgs {
            api: "http://127.0.0.1:1".into(),
            format: Format::Text,
            api_token_file: dir.path().join("missing"),
        };
        assert!(
            std::env::var_os("MOCKOPS_API_TOKEN").is_none(),
            "this test reads the token file: unset MOCKOPS_API_TOKEN"
        );
        let e = args.writer().err().unwrap().to_string();
        assert!(e.contains("cannot read the API token"), "{e}");
        assert!(args.reader().is_ok());
    }
}
