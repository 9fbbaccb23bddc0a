//! `mockops scenarios run NAME [--env ENV] [--federation F]`: runs a scenario through a
//! running daemon's gateway (`POST /api/v1/scenarios/{name}/runs`) and prints each step; exits
//! 1 when a step failed. `mockops scenarios runs NAME` lists its runs and `mockops scenarios
//! show NAME ID` prints one.

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};

use super::client::{ApiArgs, Format};
use super::exit;

#[derive(Debug, Args)]
pub struct ScenariosArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: ScenariosCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScenariosCommand {
    /// Run a scenario of the applied commit through the gateway; exit 1 when a step fails.
    Run {
        /// Scenario id (or name).
        name: String,
        /// Environment whose scenario runs (default: the only one that has it, else `dev`).
        #[arg(long)]
        env: Option<String>,
        /// Federation to run in (default: the scenario's, else the one serving its services).
        #[arg(long)]
        federation: Option<String>,
    },
    /// List a scenario's runs, newest first.
    Runs {
        name: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only runs older than this id (the `next_before` of a page).
        #[arg(long)]
        before: Option<u64>,
    },
    /// Show one run: every step's request, status, assertions and timing.
    Show { name: String, id: u64 },
}

fn segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub fn run(args: &ScenariosArgs) -> anyhow::Result<u8> {
    let rt = super::client::runtime()?;
    let json_out = args.api.format == Format::Json;
    match &args.command {
        ScenariosCommand::Run {
            name,
            env,
            federation,
        } => {
            let api = args.api.writer()?;
            let body = json!({"environment": env, "federation": federation});
            let run =
                rt.block_on(api.post(&format!("/api/v1/scenarios/{}/runs", segment(name)), &body))?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", render(&run));
            }
            Ok(
                if run.get("outcome").and_then(Json::as_str) == Some("passed") {
                    exit::OK
                } else {
                    exit::FAILED
                },
            )
        }
        ScenariosCommand::Runs {
            name,
            limit,
            before,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            if let Some(b) = before {
                q.push(("before", b.to_string()));
            }
            let api = args.api.reader()?;
            let page =
                rt.block_on(api.get(&format!("/api/v1/scenarios/{}/runs", segment(name)), &q))?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                for r in page
                    .get("runs")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = |k: &str| r.get(k).map(text).unwrap_or_default();
                    println!(
                        "{:>6}  {:<7}  {}  {}/{}  {} ms",
                        f("id"),
                        f("outcome"),
                        f("started_at"),
                        f("environment"),
                        f("federation"),
                        f("duration_ms")
                    );
                }
            }
            Ok(exit::OK)
        }
        ScenariosCommand::Show { name, id } => {
            let api = args.api.reader()?;
            let run = rt.block_on(api.get(
                &format!("/api/v1/scenarios/{}/runs/{id}", segment(name)),
                &[],
            ))?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&run)?);
            } else {
                print!("{}", render(&run));
            }
            Ok(exit::OK)
        }
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// The text form of a run: a header, then one block per step.
pub fn render(run: &Json) -> String {
    let f = |k: &str| run.get(k).map(text).unwrap_or_default();
    let mut out = format!(
        "scenario {} run {}: {} in {} ms ({} / {}, commit {})\n",
        f("scenario_id"),
        f("id"),
        f("outcome"),
        f("duration_ms"),
        f("environment"),
        f("federation"),
        f("commit").chars().take(12).collect::<String>()
    );
    for s in run
        .get("steps")
        .and_then(Json::as_array)
        .into_iter()
        .flatten()
    {
        let g = |k: &str| s.get(k).map(text).unwrap_or_default();
        let label = match s.get("id").and_then(Json::as_str) {
            Some(id) => format!("{} ({id})", g("index")),
            None => g("index"),
        };
        let status = s
            .pointer("/response/status")
            .map(text)
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "  step {label}: {} {} -> {} [{}] {} ms\n",
            g("service"),
            g("operation"),
            status,
            g("outcome"),
            g("duration_ms")
        ));
        if let Some(req) = s.get("request") {
            out.push_str(&format!(
                "    {} {}\n",
                req.get("method").map(text).unwrap_or_default(),
                req.get("url").map(text).unwrap_or_default()
            ));
        }
        for a in s
            .get("assertions")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let mark = if a.get("passed") == Some(&Json::Bool(true)) {
                "ok  "
            } else {
                "FAIL"
            };
            out.push_str(&format!(
                "    {mark} {}: expected {}, got {}\n",
                a.get("what").map(text).unwrap_or_default(),
                a.get("expected").cloned().unwrap_or(Json::Null),
                a.get("actual").cloned().unwrap_or(Json::Null)
            ));
        }
        if let Some(saved) = s.get("saved").and_then(Json::as_object) {
            for (k, v) in saved {
                out.push_str(&format!("    saved {k} = {v}\n"));
            }
        }
        if let Some(e) = s.get("error").and_then(Json::as_str) {
            out.push_str(&format!("    error: {e}\n"));
        }
    }
    out
}
