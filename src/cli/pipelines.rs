//! `mockops pipelines`: list pipelines, create, enable or disable them, run one by hand, and
//! read executions of a running daemon, through its HTTP API.
//!
//! `create`, `enable` and `disable` are requests to the daemon (`POST /api/v1/pipelines`,
//! `POST /api/v1/pipelines/{name}/enable|disable`): the daemon owns the Git credentials and
//! the push policy, validates the change on the followed branch's head and writes it to the
//! config repository (`crate::pipeline::manage`); this process writes nothing.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};

use super::client::{ApiArgs, ApiClient, Format};
use super::exit;

#[derive(Debug, Args)]
pub struct PipelinesArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: PipelinesCommand,
}

#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// List the applied pipelines: triggers, steps and their last run.
    List {
        /// Only the pipelines that run for events of this workspace (its own and those
        /// without a `workspace_id`).
        #[arg(long)]
        workspace: Option<String>,
        /// Only enabled pipelines.
        #[arg(long, conflicts_with = "disabled")]
        enabled: bool,
        /// Only disabled pipelines.
        #[arg(long)]
        disabled: bool,
    },
    /// Add the pipeline in FILE to the config repository. The daemon validates it on the
    /// followed branch's head like a commit and commits it, or opens a pull request
    /// (`management.pipelines` in mockops.yaml); it takes effect once reconciled.
    Create {
        /// The pipeline file (YAML); `-` reads standard input.
        file: PathBuf,
        /// Its path in the repository (default `pipelines/<name>.yaml`).
        #[arg(long)]
        path: Option<String>,
    },
    /// Set `enabled: true` in a pipeline's file, through the daemon (as `create` writes).
    Enable {
        /// Pipeline name.
        name: String,
    },
    /// Set `enabled: false` in a pipeline's file, through the daemon (as `create` writes).
    Disable {
        /// Pipeline name.
        name: String,
    },
    /// Run a pipeline now for an event, whatever its triggers say (to try a pipeline out).
    Trigger {
        /// Pipeline name.
        name: String,
        /// The event as JSON: `{"event_type": "...", "workspace_id": "...", "payload": {...}}`
        /// or a flat object whose other fields are the payload; `-` reads standard input.
        /// Default: an empty `manual` event.
        #[arg(long)]
        event: Option<PathBuf>,
        /// Wait for the execution to finish; exit 1 when it fails.
        #[arg(long)]
        wait: bool,
    },
    /// List executions, newest first.
    Executions {
        /// Only this pipeline's.
        name: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only executions older than this sequence number (the `next_before` of a page).
        #[arg(long)]
        before: Option<u64>,
    },
    /// Show one execution: steps, attempts, outputs, errors and logs.
    Execution {
        /// Execution id, as listed by `mockops pipelines executions`.
        id: String,
    },
}

pub fn run(args: &PipelinesArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let json_out = args.api.format == Format::Json;
    match &args.command {
        PipelinesCommand::List {
            workspace,
            enabled,
            disabled,
        } => {
            let mut q = Vec::new();
            if let Some(w) = workspace {
                q.push(("workspace", w.clone()));
            }
            if *enabled || *disabled {
                q.push(("enabled", enabled.to_string()));
            }
            rt.block_on(list(&args.api.reader()?, &q, json_out))
        }
        PipelinesCommand::Create { file, path } => {
            let content = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the pipeline from standard input")?;
                s
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read the pipeline file {}", file.display()))?
            };
            let body = json!({"path": path, "content": content});
            let api = args.api.writer()?;
            let answer = rt.block_on(api.post_answer("/api/v1/pipelines", &body))?;
            Ok(report(answer, Some(&content), json_out))
        }
        PipelinesCommand::Enable { name } | PipelinesCommand::Disable { name } => {
            let verb = match &args.command {
                PipelinesCommand::Enable { .. } => "enable",
                _ => "disable",
            };
            let api = args.api.writer()?;
            let answer = rt.block_on(
                api.post_answer(&format!("/api/v1/pipelines/{name}/{verb}"), &json!({})),
            )?;
            Ok(report(answer, None, json_out))
        }
        PipelinesCommand::Trigger { name, event, wait } => {
            let event = read_event(event.as_ref())?;
            let api = args.api.writer()?;
            rt.block_on(trigger(&api, name, event, *wait, json_out))
        }
        PipelinesCommand::Executions {
            name,
            limit,
            before,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(n) = name {
                q.push(("pipeline", n.clone()));
            }
            if let Some(b) = before {
                q.push(("before", b.to_string()));
            }
            let api = args.api.reader()?;
            let body = rt.block_on(api.get("/api/v1/executions", &q))?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(exit::OK);
            }
            let items = body["executions"].as_array().cloned().unwrap_or_default();
            if items.is_empty() {
                println!("no executions");
            }
            for e in &items {
                println!("{}", one_line(e));
            }
            if let Some(next) = body["next_before"].as_u64() {
                println!("more: --before {next}");
            }
            Ok(exit::OK)
        }
        PipelinesCommand::Execution { id } => {
            let api = args.api.reader()?;
            let body = rt.block_on(api.get(&format!("/api/v1/executions/{id}"), &[]))?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                print!("{}", describe(&body));
            }
            Ok(exit::OK)
        }
    }
}

fn read_event(path: Option<&PathBuf>) -> anyhow::Result<Json> {
    let Some(path) = path else {
        return Ok(Json::Null);
    };
    let text = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the event from standard input")?;
        s
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the event file {}", path.display()))?
    };
    let event: Json =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    anyhow::ensure!(
        event.is_object(),
        "{}: the event must be a JSON object, e.g. {{\"event_type\": \"schema.changed\", \
         \"spec_path\": \"specs/users.yaml\"}}",
        path.display()
    );
    Ok(event)
}

/// Prints the daemon's answer to a management verb: what was written, or why nothing was
/// (a refused change with its diagnostics laid out as `mockops validate` prints them).
fn report((status, body): (u16, Json), source: Option<&str>, json_out: bool) -> u8 {
    let ok = (200..300).contains(&status);
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
    } else if ok {
        println!("{}", s(&body["message"]));
        for w in body["warnings"].as_array().into_iter().flatten() {
            print!("{}", diagnostic_text(w, source, s(&body["path"])));
        }
    } else if let Some(diags) = body["diagnostics"].as_array() {
        eprintln!("{}", s(&body["error"]));
        for d in diags {
            eprint!("{}", diagnostic_text(d, source, s(&body["path"])));
        }
        eprintln!("{} errors, {} warnings", body["errors"], body["warnings"]);
    } else {
        eprintln!(
            "the daemon refused the change ({status}): {}",
            body["error"].as_str().unwrap_or("no reason given")
        );
    }
    if ok { exit::OK } else { exit::FAILED }
}

/// One diagnostic (as JSON) in `validate`'s text layout; the line is shown for the file
/// being written when its text is known.
fn diagnostic_text(d: &Json, source: Option<&str>, written: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let (line, column) = (
        d["line"].as_u64().unwrap_or(0),
        d["column"].as_u64().unwrap_or(0),
    );
    let _ = writeln!(
        out,
        "{}[{}]: {}",
        s(&d["severity"]),
        s(&d["code"]),
        s(&d["message"])
    );
    let _ = writeln!(out, "  --> {}:{line}:{column}", s(&d["file"]));
    if line > 0
        && d["file"] == written
        && let Some(text) = source
        && let Some(l) = text
            .lines()
            .nth(usize::try_from(line - 1).unwrap_or(usize::MAX))
    {
        let num = line.to_string();
        let pad = " ".repeat(num.len());
        let _ = writeln!(out, "{pad} |\n{num} | {l}");
        let caret = usize::try_from(column.max(1) - 1).unwrap_or(0);
        let _ = writeln!(out, "{pad} | {}^", " ".repeat(caret));
    }
    if let Some(h) = d["hint"].as_str() {
        let _ = writeln!(out, "  = help: {h}");
    }
    out.push('\n');
    out
}

async fn list(api: &ApiClient, query: &[(&str, String)], json_out: bool) -> anyhow::Result<u8> {
    let body = api.get("/api/v1/pipelines", query).await?;
    let items = body["items"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for p in &items {
        let name = p["name"].as_str().unwrap_or("");
        let last = api
            .get(
                "/api/v1/executions",
                &[("pipeline", name.to_string()), ("limit", "1".into())],
            )
            .await?;
        let last = last["executions"].get(0).cloned().unwrap_or(Json::Null);
        out.push(json!({
            "name": name,
            "path": p["path"],
            "enabled": p["spec"]["definition"]["enabled"].as_bool().unwrap_or(true),
            "triggers": p["spec"]["definition"]["triggers"]
                .as_array()
                .map(|ts| ts.iter().filter_map(|t| t["event"].as_str()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "steps": p["spec"]["definition"]["steps"]
                .as_array()
                .map(|ss| ss.iter().filter_map(|s| s["name"].as_str()).collect::<Vec<_>>())
                .unwrap_or_default(),
            "last_execution": if last.is_null() { Json::Null } else {
                json!({"id": last["id"], "status": last["status"], "created_at": last["created_at"]})
            },
        }));
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"pipelines": out}))?
        );
        return Ok(exit::OK);
    }
    if out.is_empty() {
        println!("no pipelines applied");
    }
    for p in &out {
        let list = |v: &Json| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Json::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let last = match p["last_execution"]["id"].as_str() {
            Some(id) => format!(
                "last run {id} {}",
                p["last_execution"]["status"].as_str().unwrap_or("")
            ),
            None => "never run".to_string(),
        };
        println!(
            "{:<28} {:<9} on {:<40} steps: {:<30} {last}",
            p["name"].as_str().unwrap_or(""),
            if p["enabled"].as_bool().unwrap_or(true) {
                "enabled"
            } else {
                "disabled"
            },
            list(&p["triggers"]),
            list(&p["steps"]),
        );
    }
    Ok(exit::OK)
}

async fn trigger(
    api: &ApiClient,
    name: &str,
    event: Json,
    wait: bool,
    json_out: bool,
) -> anyhow::Result<u8> {
    let body = if event.is_null() { json!({}) } else { event };
    let created = api
        .post(&format!("/api/v1/pipelines/{name}/trigger"), &body)
        .await?;
    let id = created["execution_id"]
        .as_str()
        .context("the daemon answered without an execution id")?
        .to_string();
    if !wait {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&created)?);
        } else {
            println!("started execution {id} (see `mockops pipelines execution {id}`)");
        }
        return Ok(exit::OK);
    }
    let exec = loop {
        let e = api.get(&format!("/api/v1/executions/{id}"), &[]).await?;
        if !matches!(e["status"].as_str(), Some("pending" | "running")) {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&exec)?);
    } else {
        print!("{}", describe(&exec));
    }
    Ok(if exec["status"] == "succeeded" {
        exit::OK
    } else {
        exit::FAILED
    })
}

fn s(v: &Json) -> &str {
    v.as_str().unwrap_or("-")
}

fn one_line(e: &Json) -> String {
    let detail = match (e["failed_step"].as_str(), e["skipped_reason"].as_str()) {
        (Some(step), _) => format!("failed at `{step}`: {}", s(&e["error"])),
        (None, Some(why)) => why.to_string(),
        _ => String::new(),
    };
    format!(
        "{:<16} {:<28} {:<10} {}  event {} {}{}  {detail}",
        s(&e["id"]),
        s(&e["pipeline"]),
        s(&e["status"]),
        s(&e["created_at"]),
        e["trigger_event_id"],
        s(&e["trigger_event_type"]),
        if e["manual"] == true { " (manual)" } else { "" },
    )
}

fn describe(e: &Json) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "execution {}  pipeline {}  {}",
        s(&e["id"]),
        s(&e["pipeline"]),
        s(&e["status"]).to_uppercase()
    );
    let _ = writeln!(
        out,
        "trigger:   event {} {}{}",
        e["trigger_event_id"],
        s(&e["trigger_event_type"]),
        if e["manual"] == true { " (manual)" } else { "" }
    );
    let _ = writeln!(
        out,
        "times:     created {}  started {}  finished {}",
        s(&e["created_at"]),
        s(&e["started_at"]),
        s(&e["finished_at"])
    );
    if let Some(why) = e["skipped_reason"].as_str() {
        let _ = writeln!(out, "skipped:   {why}");
    }
    if let Some(step) = e["failed_step"].as_str() {
        let _ = writeln!(out, "failed at: {step}: {}", s(&e["error"]));
    }
    let _ = writeln!(out, "steps:");
    for (i, st) in e["steps"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} ({})  {}  attempts {}  timeout {}s  retries {}{}",
            i + 1,
            s(&st["name"]),
            s(&st["step_type"]),
            s(&st["status"]),
            st["attempts"],
            st["timeout_secs"],
            st["retries"],
            if st["continue_on_error"] == true {
                "  continue_on_error"
            } else {
                ""
            }
        );
        if let Some(o) = st["outputs"].as_object()
            && !o.is_empty()
        {
            let _ = writeln!(out, "     outputs: {}", Json::Object(o.clone()));
        }
        if let Some(err) = st["error"].as_str() {
            let _ = writeln!(out, "     error:   {err}");
        }
        if let Some(n) = st["logs_dropped"].as_u64()
            && n > 0
        {
            let _ = writeln!(out, "     ({n} older log lines dropped)");
        }
        for line in st["logs"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "     | {}", s(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn execution_text_names_the_failure() {
        let e = json!({
            "id": "3-0a0b0c0d", "pipeline": "notify", "status": "failed",
            "trigger_event_id": 12, "trigger_event_type": "schema.changed", "manual": false,
            "created_at": "2026-01-01T00:00:00Z", "started_at": null, "finished_at": null,
            "failed_step": "slack", "error": "HTTP 500",
            "steps": [{"name": "slack", "step_type": "notify", "status": "failed", "attempts": 4,
                       "timeout_secs": 30, "retries": 3, "continue_on_error": false,
                       "outputs": {}, "error": "HTTP 500", "logs": ["l1"], "logs_dropped": 0}]
        });
        let text = describe(&e);
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("failed at: slack: HTTP 500"), "{text}");
        assert!(text.contains("attempts 4"), "{text}");
        assert!(one_line(&e).contains("failed at `slack`"));
    }
}
