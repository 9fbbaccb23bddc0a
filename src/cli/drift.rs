//! `mockops drift`: contract drift of a running daemon, through its HTTP API: the status of
//! every service (reachability, budgets, open incidents), its incidents, and a probe round
//! run now, and (`drift_patch.rs`) the spec patch it would propose.

use clap::{Args, Subcommand};
use serde_json::{Value as Json, json};

use super::client::{ApiArgs, Format};
use super::exit;

#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(subcommand)]
    pub command: DriftCommand,
}

#[derive(Debug, Subcommand)]
pub enum DriftCommand {
    /// Per service: upstream reachable or not, budget state, open incidents by kind.
    Status,
    /// List incidents (open ones unless --state says otherwise).
    Incidents {
        /// Only this service's.
        service: Option<String>,
        /// open, resolved or all.
        #[arg(long, default_value = "open")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Run one probe round of a service now and print what it found.
    Probe { service: String },
    /// Print the spec patch proposed for a service's drift, without opening anything.
    Patch(super::drift_patch::PatchArgs),
}

pub fn run(args: &DriftArgs) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let json_out = args.api.format == Format::Json;
    let (body, text) = match &args.command {
        DriftCommand::Patch(p) => return super::drift_patch::patch(&args.api, p),
        DriftCommand::Status => {
            let body = rt.block_on(args.api.reader()?.get("/api/v1/drift", &[]))?;
            let text = status_text(&body);
            (body, text)
        }
        DriftCommand::Incidents {
            service,
            state,
            limit,
        } => {
            let mut q = vec![("state", state.clone()), ("limit", limit.to_string())];
            if let Some(s) = service {
                q.push(("service", s.clone()));
            }
            let body = rt.block_on(args.api.reader()?.get("/api/v1/drift/incidents", &q))?;
            let text = incidents_text(&body);
            (body, text)
        }
        DriftCommand::Probe { service } => {
            let service: String =
                url::form_urlencoded::byte_serialize(service.as_bytes()).collect();
            let body = rt.block_on(
                args.api
                    .writer()?
                    .post(&format!("/api/v1/drift/probe/{service}"), &json!({})),
            )?;
            let text = probe_text(&body);
            (body, text)
        }
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print!("{text}");
    }
    Ok(exit::OK)
}

fn s(v: &Json) -> &str {
    v.as_str().unwrap_or("")
}

fn status_text(body: &Json) -> String {
    let mut out = String::new();
    let services = body["services"].as_array().cloned().unwrap_or_default();
    if services.is_empty() {
        out.push_str("no service with a spec and an upstream\n");
    }
    for svc in &services {
        out.push_str(&format!(
            "{}  {}  open incidents: {}{}\n",
            s(&svc["service"]),
            s(&svc["status"]),
            svc["open_incidents"],
            if svc["exceeded"] == true {
                "  BUDGET EXCEEDED"
            } else {
                ""
            }
        ));
        if let Some(why) = svc["unreachable_reason"].as_str() {
            out.push_str(&format!("  unreachable: {why}\n"));
        }
        for (kind, n) in svc["open_by_kind"].as_object().into_iter().flatten() {
            if n.as_u64().unwrap_or(0) > 0 {
                out.push_str(&format!("  {kind}: {n}\n"));
            }
        }
    }
    for (name, why) in body["unchecked"].as_object().into_iter().flatten() {
        out.push_str(&format!("{name}  not checked: {}\n", s(why)));
    }
    out
}

fn incidents_text(body: &Json) -> String {
    let items = body["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return "no incidents\n".into();
    }
    let mut out = String::new();
    for i in &items {
        let l = &i["location"];
        out.push_str(&format!(
            "{} {} {} {} {} {}{}: expected {}, observed {} (x{}, last {})\n",
            s(&i["id"]),
            s(&i["state"]),
            s(&l["service"]),
            s(&l["method"]),
            s(&l["path"]),
            s(&i["kind"]),
            if s(&l["pointer"]).is_empty() {
                String::new()
            } else {
                format!(" at {}", s(&l["pointer"]))
            },
            s(&i["expected"]),
            s(&i["observed"]),
            i["count"],
            s(&i["last_seen"]),
        ));
    }
    out
}

fn probe_text(body: &Json) -> String {
    let mut out = String::new();
    for r in body["results"].as_array().into_iter().flatten() {
        match r["status"].as_u64() {
            Some(st) => out.push_str(&format!("{} -> {st}\n", s(&r["request"]))),
            None => out.push_str(&format!(
                "{} -> failed: {}\n",
                s(&r["request"]),
                s(&r["error"])
            )),
        }
        for f in r["findings"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {} at {} ({}#{}): expected {}, observed {}\n",
                s(&f["kind"]),
                s(&f["pointer"]),
                s(&f["spec_file"]),
                s(&f["spec_pointer"]),
                s(&f["expected"]),
                s(&f["observed"]),
            ));
        }
        for why in r["skipped"].as_array().into_iter().flatten() {
            out.push_str(&format!("  body not validated: {}\n", s(why)));
        }
    }
    if out.is_empty() {
        out.push_str("no operation to probe\n");
    }
    out
}
