//! The dashboard's pages. Each reads the store (in a blocking task when it may read much),
//! bounds what it shows (every list is a page of at most `MAX_*` items, with a link to the
//! next), and builds its HTML with every value from the store or the config repository
//! passed through [`esc`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::Query;
use axum::response::Html;
use serde::Deserialize;
use serde_json::Value as Json;

use super::html::{badge, esc, opt, page, pager, query_value, short};
use super::svg::{self, Node};
use super::{Ctx, UiError};
use crate::analytics::{self, AnalyticsError, Query as AQuery, catalog::Catalog};
use crate::store::RevisionStatus;
use crate::store::drift::IncidentFilter;
use crate::store::executions::ExecutionFilter;

type Page = Result<Html<String>, UiError>;

/// Most revisions per page.
pub const MAX_REVISIONS: usize = 100;
/// Most events per page.
pub const MAX_EVENTS: usize = 200;
/// Most executions per page.
pub const MAX_EXECUTIONS: usize = 100;
/// Most diagnostics shown per invalid commit.
const MAX_DIAGNOSTICS: usize = 50;
/// Most operations on one page of the coverage grid (whole services per page).
pub const COVERAGE_PAGE_OPS: usize = 1000;
/// Longest the federations page waits for the history walk of a newly applied commit.
const HISTORY_WAIT: std::time::Duration = std::time::Duration::from_millis(150);
/// Most incidents listed.
const MAX_INCIDENTS: usize = 200;
/// Longest payload shown in the events table.
const PAYLOAD_CHARS: usize = 300;

/// The serde name of a value (`"applied"` for `RevisionStatus::Applied`).
fn word<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Json::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn signed_in(ui: &super::Ui) -> bool {
    !ui.shared.auth.anonymous_read
}

fn yes_no(b: bool) -> String {
    if b {
        badge("yes", "yes")
    } else {
        badge("no", "no")
    }
}

fn limit_of(asked: Option<usize>, default: usize, max: usize) -> usize {
    asked.unwrap_or(default).clamp(1, max)
}

// ---------------------------------------------------------------------------------------------
// Overview

pub async fn overview(ui: Ctx) -> Page {
    let s = &ui.shared;
    let cursor = s.store.cursor()?;
    let counts = s.store.counts()?;
    let live = s.live.read().unwrap_or_else(|e| e.into_inner()).clone();
    let health = s.health();
    let attempted = match &cursor.last_attempted {
        Some(r) => s.store.revision(r.seq)?,
        None => None,
    };
    let in_sync = live.head.is_some()
        && live.head.as_deref() == cursor.last_attempted.as_ref().map(|r| r.sha.as_str());
    let federations = s.store.rows_of("federation")?.len();
    let services = s.store.rows_of("service")?.len();
    let pipelines = s.store.rows_of("pipeline")?.len();
    let open_incidents = s
        .store
        .incidents(&IncidentFilter {
            service: None,
            open_only: true,
        })?
        .len();
    let rev = |r: &Option<crate::store::RevisionRef>| match r {
        Some(r) => format!(
            "<code>{}</code> (revision {}, {})",
            short(&r.sha),
            r.seq,
            esc(&r.at)
        ),
        None => "—".into(),
    };
    let mut b = String::new();
    let _ = write!(
        b,
        "<section aria-labelledby=\"sync\"><h2 id=\"sync\">Reconcile status</h2><dl class=\"facts\">\
         <dt>Source</dt><dd><code>{}</code></dd>\
         <dt>Branch</dt><dd><code>{}</code></dd>\
         <dt>Head</dt><dd><code>{}</code></dd>\
         <dt>In sync</dt><dd>{}</dd>\
         <dt>Last applied</dt><dd>{}</dd>\
         <dt>Last attempted</dt><dd>{} {}</dd>\
         <dt>Last sync</dt><dd>{}</dd>\
         <dt>Last error</dt><dd>{}</dd>\
         <dt>Consecutive failures</dt><dd>{}</dd>\
         <dt>Health</dt><dd>{}{}</dd>\
         <dt>Version</dt><dd>{}</dd></dl></section>",
        esc(&live.source),
        esc(&live.branch),
        live.head
            .as_deref()
            .map(short)
            .unwrap_or_else(|| "—".into()),
        yes_no(in_sync),
        rev(&cursor.last_applied),
        rev(&cursor.last_attempted),
        attempted
            .as_ref()
            .map(|r| {
                let w = word(&r.status);
                format!(
                    "{} {}",
                    badge(&w, &w),
                    if r.errors > 0 {
                        format!(
                            "<a href=\"/ui/revisions?before={}&amp;limit=1\">{} errors</a>",
                            r.seq + 1,
                            r.errors
                        )
                    } else {
                        String::new()
                    }
                )
            })
            .unwrap_or_default(),
        opt(live.last_sync_at.as_deref()),
        opt(live.last_error.as_deref()),
        live.consecutive_failures,
        if health.healthy {
            badge("healthy", "healthy")
        } else {
            badge("unhealthy", "unhealthy")
        },
        if health.problems.is_empty() {
            String::new()
        } else {
            format!(
                "<ul>{}</ul>",
                health
                    .problems
                    .iter()
                    .map(|p| format!("<li>{}</li>", esc(p)))
                    .collect::<String>()
            )
        },
        esc(env!("CARGO_PKG_VERSION")),
    );
    let card = |n: u64, label: &str, href: &str| {
        format!(
            "<a class=\"card\" href=\"{href}\"><div class=\"big\">{n}</div>{}</a>",
            esc(label)
        )
    };
    b.push_str("<section aria-labelledby=\"state\"><h2 id=\"state\">Applied state</h2><div class=\"cards\">");
    b.push_str(&card(federations as u64, "federations", "/ui/federations"));
    b.push_str(&card(services as u64, "services", "/ui/federations"));
    b.push_str(&card(pipelines as u64, "pipelines", "/ui/executions"));
    b.push_str(&card(counts.revisions, "revisions", "/ui/revisions"));
    b.push_str(&card(counts.events, "events", "/ui/events"));
    b.push_str(&card(
        counts.executions,
        "pipeline executions",
        "/ui/executions",
    ));
    b.push_str(&card(
        open_incidents as u64,
        "open drift incidents",
        "/ui/drift",
    ));
    b.push_str("</div></section>");
    Ok(Html(page("Overview", "/ui", &b, signed_in(&ui))))
}

// ---------------------------------------------------------------------------------------------
// Revisions

#[derive(Debug, Deserialize)]
pub struct RevisionsQuery {
    before: Option<u64>,
    limit: Option<usize>,
}

fn diagnostic(d: &Json) -> String {
    let s = |k: &str| d.get(k).and_then(Json::as_str).unwrap_or("");
    let n = |k: &str| d.get(k).and_then(Json::as_u64);
    let severity = s("severity");
    let mut place = esc(s("file"));
    if let Some(l) = n("line") {
        let _ = write!(place, ":{l}");
        if let Some(c) = n("column") {
            let _ = write!(place, ":{c}");
        }
    }
    let hint = match d.get("hint").and_then(Json::as_str) {
        Some(h) if !h.is_empty() => format!(" <span class=\"muted\">hint: {}</span>", esc(h)),
        _ => String::new(),
    };
    format!(
        "<li>{} <code>{}</code> <code>{place}</code> {}{hint}</li>",
        badge(severity, severity),
        esc(s("code")),
        esc(s("message")),
    )
}

pub async fn revisions(ui: Ctx, Query(q): Query<RevisionsQuery>) -> Page {
    let limit = limit_of(q.limit, 25, MAX_REVISIONS);
    let store = ui.shared.store.clone();
    let before = q.before;
    let revs = tokio::task::spawn_blocking(move || store.revisions(before, limit)).await??;
    let mut b = String::from(
        "<table><caption class=\"muted\">Newest first; invalid commits list their diagnostics.</caption>\
         <thead><tr><th scope=\"col\" class=\"num\">#</th><th scope=\"col\">Commit</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Author</th><th scope=\"col\">Summary</th><th scope=\"col\">Committed</th>\
         <th scope=\"col\" class=\"num\">Errors</th><th scope=\"col\" class=\"num\">Warnings</th>\
         <th scope=\"col\" class=\"num\">Changed</th></tr></thead><tbody>",
    );
    for r in &revs {
        let w = word(&r.status);
        let forced = if r.forced {
            format!(" {}", badge("warn", "forced"))
        } else {
            String::new()
        };
        let _ = write!(
            b,
            "<tr id=\"rev-{seq}\"><td class=\"num\">{seq}</td><td><code title=\"{sha}\">{short}</code></td><td>{}{forced}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            badge(&w, &w),
            esc(&r.author),
            esc(&r.summary),
            esc(&r.committed_at),
            r.errors,
            r.warnings,
            r.changed_entities,
            seq = r.seq,
            sha = esc(&r.sha),
            short = short(&r.sha),
        );
        if r.status == RevisionStatus::Invalid || !r.diagnostics.is_empty() {
            let shown: String = r
                .diagnostics
                .iter()
                .take(MAX_DIAGNOSTICS)
                .map(diagnostic)
                .collect();
            let more = r.diagnostics.len().saturating_sub(MAX_DIAGNOSTICS);
            let more = if more > 0 {
                format!(
                    "<li class=\"muted\">and {more} more (<code>GET /api/v1/revisions/{}</code>)</li>",
                    r.seq
                )
            } else {
                String::new()
            };
            let _ = write!(
                b,
                "<tr class=\"diagrow\"><td></td><td colspan=\"8\"><ul class=\"diags\" aria-label=\"Diagnostics of revision {}\">{shown}{more}</ul></td></tr>",
                r.seq
            );
        }
    }
    b.push_str("</tbody></table>");
    if revs.is_empty() {
        b.push_str("<p>No revisions here.</p>");
    }
    let next = (revs.len() == limit)
        .then(|| {
            revs.last()
                .map(|r| format!("/ui/revisions?before={}&limit={limit}", r.seq))
        })
        .flatten();
    let prev = q.before.map(|_| format!("/ui/revisions?limit={limit}"));
    b.push_str(&pager(prev, next));
    Ok(Html(page("Revisions", "/ui/revisions", &b, signed_in(&ui))))
}

// ---------------------------------------------------------------------------------------------
// Events

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "type")]
    event_type: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

pub async fn events(ui: Ctx, Query(q): Query<EventsQuery>) -> Page {
    let limit = limit_of(q.limit, 50, MAX_EVENTS);
    let ty = q.event_type.filter(|t| !t.trim().is_empty());
    if let Some(t) = &ty
        && t.len() > 200
    {
        return Err(UiError::BadRequest("the event type is too long".into()));
    }
    let store = ui.shared.store.clone();
    let (t, before) = (ty.clone(), q.before);
    let events =
        tokio::task::spawn_blocking(move || store.recent_events(t.as_deref(), before, limit))
            .await??;
    let mut b = String::new();
    let mut options = String::new();
    for t in crate::model::events::EventType::ALL {
        let _ = write!(options, "<option value=\"{}\"></option>", esc(t.as_str()));
    }
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/ui/events\" class=\"filter\" role=\"search\">\
         <label for=\"type\">Event type<input type=\"text\" id=\"type\" name=\"type\" list=\"event-types\" value=\"{}\"></label>\
         <datalist id=\"event-types\">{options}</datalist>\
         <label for=\"limit\">Per page<input type=\"text\" id=\"limit\" name=\"limit\" inputmode=\"numeric\" value=\"{limit}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(ty.as_deref().unwrap_or(""))
    );
    b.push_str(
        "<table><caption class=\"muted\">Newest first.</caption><thead><tr><th scope=\"col\" class=\"num\">Id</th>\
         <th scope=\"col\">Type</th><th scope=\"col\">Time</th><th scope=\"col\">Source</th>\
         <th scope=\"col\">Workspace</th><th scope=\"col\">Payload</th></tr></thead><tbody>",
    );
    for e in &events {
        let mut payload = Json::Object(e.payload.clone());
        crate::config::inline_secrets::mask_inline_json(&mut payload);
        let mut text = payload.to_string();
        if text.chars().count() > PAYLOAD_CHARS {
            text = text.chars().take(PAYLOAD_CHARS).collect::<String>() + "…";
        }
        let _ = write!(
            b,
            "<tr><td class=\"num\">{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td class=\"payload mono\">{}</td></tr>",
            e.id,
            esc(&e.event_type),
            esc(&e.timestamp),
            esc(&e.source.0),
            opt(e.workspace_name.as_deref().or(e.workspace_id.as_deref())),
            esc(&text)
        );
    }
    b.push_str("</tbody></table>");
    if events.is_empty() {
        b.push_str("<p>No events here.</p>");
    }
    let type_q = ty
        .as_deref()
        .map(|t| format!("&type={}", query_value(t)))
        .unwrap_or_default();
    let next = (events.len() == limit)
        .then(|| {
            events
                .last()
                .map(|e| format!("/ui/events?before={}&limit={limit}{type_q}", e.id))
        })
        .flatten();
    let prev = q
        .before
        .map(|_| format!("/ui/events?limit={limit}{type_q}"));
    b.push_str(&pager(prev, next));
    Ok(Html(page("Events", "/ui/events", &b, signed_in(&ui))))
}

// ---------------------------------------------------------------------------------------------
// Pipeline executions

#[derive(Debug, Deserialize)]
pub struct ExecutionsQuery {
    pipeline: Option<String>,
    before: Option<u64>,
    limit: Option<usize>,
}

pub async fn executions(ui: Ctx, Query(q): Query<ExecutionsQuery>) -> Page {
    let limit = limit_of(q.limit, 20, MAX_EXECUTIONS);
    let pipeline = q.pipeline.filter(|p| !p.trim().is_empty());
    let store = ui.shared.store.clone();
    let filter = ExecutionFilter {
        pipeline: pipeline.clone(),
        before: q.before,
        limit,
    };
    let items = tokio::task::spawn_blocking(move || store.executions(&filter)).await??;
    let mut b = String::new();
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/ui/executions\" class=\"filter\" role=\"search\">\
         <label for=\"pipeline\">Pipeline<input type=\"text\" id=\"pipeline\" name=\"pipeline\" value=\"{}\"></label>\
         <button type=\"submit\">Filter</button></form>",
        esc(pipeline.as_deref().unwrap_or(""))
    );
    for e in &items {
        let status = e.status.as_str();
        let mut steps = String::new();
        for st in &e.steps {
            let s = st.status.as_str();
            let err = st
                .error
                .as_deref()
                .map(|m| format!(" — <span>{}</span>", esc(m)))
                .unwrap_or_default();
            let _ = write!(
                steps,
                "<li><strong>{}</strong> <code>{}</code> {} <span class=\"muted\">{} attempt(s)</span>{err}</li>",
                esc(&st.name),
                esc(&word(&st.step_type)),
                badge(s, s),
                st.attempts
            );
        }
        let detail = [
            e.skipped_reason
                .as_deref()
                .map(|r| format!("skipped: {}", esc(r))),
            e.error.as_deref().map(|r| format!("error: {}", esc(r))),
        ]
        .into_iter()
        .flatten()
        .map(|t| format!("<p>{t}</p>"))
        .collect::<String>();
        let _ = write!(
            b,
            "<section class=\"exec\" aria-label=\"Execution {id}\"><h2>{pipeline} {badge} <span class=\"muted\">#{seq}</span></h2>\
             <p class=\"muted\">id <code>{id}</code>; triggered by {trigger} (event {event}); created {created}; finished {finished}</p>\
             {detail}<ol class=\"steps\" aria-label=\"Steps\">{steps}</ol></section>",
            id = esc(&e.id),
            pipeline = esc(&e.pipeline),
            badge = badge(status, status),
            seq = e.seq,
            trigger = if e.manual {
                "a manual run".to_string()
            } else {
                format!("<code>{}</code>", esc(&e.trigger_event_type))
            },
            event = e.trigger_event_id,
            created = esc(&e.created_at),
            finished = opt(e.finished_at.as_deref()),
        );
    }
    if items.is_empty() {
        b.push_str("<p>No pipeline executions here.</p>");
    }
    let p_q = pipeline
        .as_deref()
        .map(|p| format!("&pipeline={}", query_value(p)))
        .unwrap_or_default();
    let next = (items.len() == limit)
        .then(|| {
            items
                .last()
                .map(|e| format!("/ui/executions?before={}&limit={limit}{p_q}", e.seq))
        })
        .flatten();
    let prev = q
        .before
        .map(|_| format!("/ui/executions?limit={limit}{p_q}"));
    b.push_str(&pager(prev, next));
    Ok(Html(page(
        "Pipeline executions",
        "/ui/executions",
        &b,
        signed_in(&ui),
    )))
}

// ---------------------------------------------------------------------------------------------
// Federations

#[derive(Debug, Deserialize)]
struct FedRow {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    services: Vec<FedService>,
}

#[derive(Debug, Deserialize)]
struct FedService {
    name: String,
    #[serde(default)]
    base_path: String,
    #[serde(default)]
    reality_level: Json,
    #[serde(default)]
    dependencies: Vec<String>,
}

/// The order services come up in, as the gateway orders them.
fn start_order(nodes: &[Node]) -> Vec<String> {
    crate::gateway::routes::start_order(
        nodes
            .iter()
            .map(|s| (s.name.as_str(), s.dependencies.as_slice())),
    )
    .into_iter()
    .map(str::to_string)
    .collect()
}

pub async fn federations(ui: Ctx) -> Page {
    let rows = ui.shared.store.rows_of("federation")?;
    let mut b = String::new();
    if rows.is_empty() {
        b.push_str("<p>No federations in the applied state.</p>");
    }
    for (i, row) in rows.iter().enumerate() {
        let Ok(fed) = serde_json::from_value::<FedRow>(row.value.clone()) else {
            let _ = write!(
                b,
                "<h2>{}</h2><p>This federation's stored form could not be read.</p>",
                esc(&row.name)
            );
            continue;
        };
        let nodes: Vec<Node> = fed
            .services
            .iter()
            .map(|s| Node {
                name: s.name.clone(),
                level: s.reality_level.as_str().unwrap_or("").to_string(),
                dependencies: s.dependencies.clone(),
            })
            .collect();
        let _ = write!(
            b,
            "<section aria-labelledby=\"fed-{i}-h\"><h2 id=\"fed-{i}-h\">{}</h2>{}",
            esc(&fed.name),
            fed.description
                .as_deref()
                .map(|d| format!("<p>{}</p>", esc(d)))
                .unwrap_or_default()
        );
        let _ = write!(
            b,
            "<div class=\"topology-wrap\">{}</div>",
            svg::topology(
                &nodes,
                &format!("fed-{i}"),
                &format!("Topology of {}", fed.name)
            )
        );
        b.push_str("<h3>Start order</h3><ol>");
        for n in start_order(&nodes) {
            let _ = write!(b, "<li>{}</li>", esc(&n));
        }
        b.push_str("</ol><h3>Services</h3><table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Base path</th>\
                     <th scope=\"col\">Reality level</th><th scope=\"col\">Depends on</th></tr></thead><tbody>");
        for s in &fed.services {
            let level = s.reality_level.as_str().unwrap_or("");
            let _ = write!(
                b,
                "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&s.name),
                esc(&s.base_path),
                badge(level, svg::level_label(level)),
                if s.dependencies.is_empty() {
                    "—".to_string()
                } else {
                    esc(&s.dependencies.join(", "))
                }
            );
        }
        b.push_str("</tbody></table></section>");
    }
    let observed = analytics::api::observed(&ui.shared);
    // The first read of a commit walks the repository's history (cached per commit after): a
    // page that would wait longer says so and the walk goes on for the next load.
    let staleness = tokio::time::timeout(
        HISTORY_WAIT,
        analytics(&ui, BTreeMap::new(), move |a, catalog, q| {
            let histories = analytics::staleness::cached(a.repo, a.sha)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
            Ok(analytics::staleness(catalog, &histories, &observed, q, now))
        }),
    )
    .await;
    let Ok(staleness) = staleness else {
        b.push_str(
            "<p id=\"staleness-pending\">Since when each service has had its level and spec is \
             still being read from the repository's history; reload in a moment.</p>",
        );
        return Ok(Html(page(
            "Federations",
            "/ui/federations",
            &b,
            signed_in(&ui),
        )));
    };
    match staleness {
        Ok(Some(st)) if !st.services.is_empty() => {
            b.push_str(
                "<section aria-labelledby=\"staleness-h\"><h2 id=\"staleness-h\">Since when</h2>\
                 <table id=\"staleness\"><thead><tr><th scope=\"col\">Federation</th><th scope=\"col\">Service</th>\
                 <th scope=\"col\">Reality level</th><th scope=\"col\">Level since</th>\
                 <th scope=\"col\">Spec since</th><th scope=\"col\">Upstream last observed</th>\
                 </tr></thead><tbody>",
            );
            for m in &st.services {
                let since = |s: &analytics::staleness::Since| {
                    format!(
                        "{} <code>{}</code>{}",
                        esc(&s.at),
                        short(&s.commit),
                        if m.truncated { " or earlier" } else { "" }
                    )
                };
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td></tr>",
                    esc(&m.federation),
                    esc(&m.service),
                    badge(&m.reality_level, svg::level_label(&m.reality_level)),
                    since(&m.reality_level_since),
                    since(&m.spec_since),
                    badge(m.upstream_status, m.upstream_status),
                    m.upstream_last_observed
                        .as_deref()
                        .map(esc)
                        .unwrap_or_else(|| "—".into()),
                );
            }
            b.push_str("</tbody></table></section>");
        }
        Ok(_) => {}
        Err(e) => {
            let _ = write!(
                b,
                "<p>Since when each service has had its level and spec cannot be shown: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    Ok(Html(page(
        "Federations",
        "/ui/federations",
        &b,
        signed_in(&ui),
    )))
}

// ---------------------------------------------------------------------------------------------
// Drift

pub async fn drift(ui: Ctx) -> Page {
    let s = &ui.shared;
    let open = s.store.incidents(&IncidentFilter {
        service: None,
        open_only: true,
    })?;
    let budgets = s.store.budget_states()?;
    let mut open_by: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &open {
        *open_by.entry(i.location.service.as_str()).or_default() += 1;
    }
    let mut b = String::new();
    let Some(d) = s.drift.get() else {
        b.push_str("<p>Drift detection is not running yet.</p>");
        return Ok(Html(page("Drift", "/ui/drift", &b, signed_in(&ui))));
    };
    let contracts = d.contracts();
    let reach = d.reachability();
    b.push_str(
        "<table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Upstream</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Last observed</th><th scope=\"col\">Budget</th><th scope=\"col\" class=\"num\">Open incidents</th>\
         </tr></thead><tbody>",
    );
    for (name, c) in &contracts.services {
        let r = reach.get(name);
        let status = match r {
            None => "unobserved",
            Some(r) if r.reachable => "reachable",
            Some(_) => "unreachable",
        };
        let reason = r
            .and_then(|r| r.error.as_deref())
            .map(|e| format!("<br><span class=\"muted\">{}</span>", esc(e)))
            .unwrap_or_default();
        let exceeded: Vec<&str> = budgets
            .iter()
            .filter(|(_, st)| st.exceeded)
            .filter_map(|(k, _)| k.split_once('\0'))
            .filter(|(svc, _)| svc == name)
            .map(|(_, ep)| ep)
            .collect();
        let budget = if exceeded.is_empty() {
            badge("ok", "within budget")
        } else {
            format!(
                "{} <span>{}</span>",
                badge("exceeded", "exceeded"),
                esc(&exceeded.join(", "))
            )
        };
        let upstream = match &c.upstream {
            Ok(u) => format!("<code>{}</code>", esc(u.url.as_str())),
            Err(why) => format!("<span>{}</span>", esc(&why.to_string())),
        };
        let n = open_by.get(name.as_str()).copied().unwrap_or(0);
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{upstream}</td><td>{}{reason}</td><td>{}</td><td>{budget}</td>\
             <td class=\"num\"><a href=\"/ui/drift/incidents?service={}\">{n}</a></td></tr>",
            esc(name),
            badge(status, status),
            r.map(|r| esc(&crate::drift::detect::rfc3339(r.at_ms)))
                .unwrap_or_else(|| "—".into()),
            query_value(name),
        );
    }
    b.push_str("</tbody></table>");
    if contracts.services.is_empty() {
        b.push_str("<p>No service has both a spec and an upstream to check.</p>");
    }
    if !contracts.broken.is_empty() {
        b.push_str("<h2>Not checked</h2><ul>");
        for (name, why) in &contracts.broken {
            let _ = write!(b, "<li>{}: {}</li>", esc(name), esc(&why.to_string()));
        }
        b.push_str("</ul>");
    }
    let share = analytics(&ui, BTreeMap::new(), |a, catalog, q| {
        analytics::drift_percentage(a.store, catalog, q)
    })
    .await;
    match share {
        Ok(Some(share)) => {
            let pct = |p: Option<f64>| p.map_or_else(|| "—".to_string(), |p| format!("{p:.2} %"));
            let _ = write!(
                b,
                "<h2>Operations drifting</h2><p id=\"drift-share\">{} of {} operations ({}) have an open incident.</p>\
                 <table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\" class=\"num\">Operations</th>\
                 <th scope=\"col\" class=\"num\">Drifting</th><th scope=\"col\" class=\"num\">Share</th></tr></thead><tbody>",
                share.drifting,
                share.operations,
                pct(share.percentage)
            );
            for s in &share.services {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    esc(&s.service),
                    s.operations,
                    s.drifting,
                    pct(s.percentage)
                );
            }
            b.push_str("</tbody></table>");
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(
                b,
                "<p>The share of operations drifting cannot be shown: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    let _ = write!(
        b,
        "<p><a href=\"/ui/drift/incidents\">All {} open incidents</a></p>",
        open.len()
    );
    Ok(Html(page("Drift", "/ui/drift", &b, signed_in(&ui))))
}

#[derive(Debug, Deserialize)]
pub struct IncidentsQuery {
    service: Option<String>,
}

pub async fn incidents(ui: Ctx, Query(q): Query<IncidentsQuery>) -> Page {
    let service = q.service.filter(|s| !s.is_empty());
    let open = ui.shared.store.incidents(&IncidentFilter {
        service: service.clone(),
        open_only: true,
    })?;
    let mut b = String::new();
    if let Some(s) = &service {
        let _ = write!(b, "<p>Service <strong>{}</strong>.</p>", esc(s));
    }
    b.push_str(
        "<table><thead><tr><th scope=\"col\">Incident</th><th scope=\"col\">Kind</th><th scope=\"col\">Service</th>\
         <th scope=\"col\">Where</th><th scope=\"col\">Expected</th><th scope=\"col\">Observed</th>\
         <th scope=\"col\" class=\"num\">Seen</th><th scope=\"col\">Last seen</th></tr></thead><tbody>",
    );
    for i in open.iter().take(MAX_INCIDENTS) {
        let _ = write!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><code>{} {}</code> {} <code>{}</code></td>\
             <td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&i.id),
            esc(i.kind.as_str()),
            esc(&i.location.service),
            esc(&i.location.method),
            esc(&i.location.path),
            i.location.status,
            esc(&i.location.pointer),
            esc(&i.expected),
            esc(&i.observed),
            i.count,
            esc(&i.last_seen),
        );
    }
    b.push_str("</tbody></table>");
    if open.len() > MAX_INCIDENTS {
        let _ = write!(
            b,
            "<p class=\"muted\">The first {MAX_INCIDENTS} of {} open incidents.</p>",
            open.len()
        );
    } else if open.is_empty() {
        b.push_str("<p>No open incidents.</p>");
    }
    Ok(Html(page(
        "Open drift incidents",
        "/ui/drift",
        &b,
        signed_in(&ui),
    )))
}

// ---------------------------------------------------------------------------------------------
// Coverage and usage

/// One service's operations: `federation/service` and its cells, in catalog order.
pub type CoverageRow = (String, Vec<svg::OpCell>);

/// Runs `f` over the analytics of the applied commit with the range and filters of `params`
/// (`from`, `to`, `federation`, `service`, `environment`, checked as `/api/v2/analytics`
/// checks them). `None` before anything is applied.
async fn analytics<T: Send + 'static>(
    ui: &super::Ui,
    params: BTreeMap<String, String>,
    f: impl FnOnce(&Applied<'_>, &Catalog, &AQuery) -> Result<T, AnalyticsError> + Send + 'static,
) -> Result<Option<T>, UiError> {
    let Some(sha) = ui.shared.store.cursor()?.last_applied.map(|r| r.sha) else {
        return Ok(None);
    };
    let Some(repo) = ui.shared.repo_path().map(std::path::Path::to_path_buf) else {
        return Ok(None);
    };
    let store = ui.shared.store.clone();
    let out = tokio::task::spawn_blocking(move || {
        let catalog = analytics::catalog::cached(&repo, &sha)?;
        let today = analytics::day_of(std::time::SystemTime::now());
        let q = AQuery::resolve(&params, &catalog, today)?;
        f(
            &Applied {
                store: &store,
                repo: &repo,
                sha: &sha,
            },
            &catalog,
            &q,
        )
    })
    .await?;
    match out {
        Ok(v) => Ok(Some(v)),
        Err(AnalyticsError::NotApplied) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What an analytics page reads besides the catalog: the store and the applied commit.
struct Applied<'a> {
    store: &'a crate::store::Store,
    repo: &'a std::path::Path,
    sha: &'a str,
}

/// The query string of the analytics parameters in `params` (for links that keep them).
fn filter_query(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, v)| ANALYTICS_PARAMETERS.contains(&k.as_str()) && !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", query_value(v)))
        .collect()
}

/// The analytics parameters a page takes.
const ANALYTICS_PARAMETERS: [&str; 5] = ["from", "to", "federation", "service", "environment"];

/// The form that picks the range and filters of an analytics page, filled with `params`.
fn filter_form(action: &str, params: &BTreeMap<String, String>) -> String {
    let mut b = format!(
        "<form method=\"get\" action=\"{}\" class=\"filters\">",
        esc(action)
    );
    for (name, label) in [
        ("from", "From (UTC day)"),
        ("to", "To (UTC day)"),
        ("federation", "Federation"),
        ("service", "Service"),
        ("environment", "Environment"),
    ] {
        let _ = write!(
            b,
            "<label>{label} <input name=\"{name}\" value=\"{}\"></label> ",
            esc(params.get(name).map_or("", String::as_str))
        );
    }
    b.push_str("<button type=\"submit\">Show</button></form>");
    b
}

/// The coverage grid's rows: one per member, one cell per operation of its spec.
fn coverage_rows(c: &analytics::Coverage) -> Vec<CoverageRow> {
    c.services
        .iter()
        .map(|s| {
            let cells = s
                .endpoints
                .iter()
                .map(|e| {
                    let k = &e.by_class;
                    svg::OpCell {
                        label: e.operation.clone(),
                        hits: e.requests,
                        by_class: [k.c2xx, k.c3xx, k.c4xx, k.c5xx, k.other],
                    }
                })
                .collect();
            (format!("{}/{}", s.federation, s.service), cells)
        })
        .collect()
}

/// Splits rows into pages of whole services holding at most `per_page` operations (a
/// service with more fills a page of its own).
pub fn paginate<T>(rows: &[(String, Vec<T>)], per_page: usize) -> Vec<std::ops::Range<usize>> {
    let mut pages = Vec::new();
    let (mut start, mut ops) = (0, 0);
    for (i, r) in rows.iter().enumerate() {
        if i > start && ops + r.1.len() > per_page {
            pages.push(start..i);
            start = i;
            ops = 0;
        }
        ops += r.1.len();
    }
    if start < rows.len() || pages.is_empty() {
        pages.push(start..rows.len());
    }
    pages
}

const NOTHING_APPLIED: &str = "<p>Nothing is applied yet.</p>";

pub async fn coverage(ui: Ctx, Query(mut params): Query<BTreeMap<String, String>>) -> Page {
    let n = match params.remove("page") {
        None => 1,
        Some(p) => p.parse::<usize>().map_err(|_| {
            UiError::BadRequest(format!(
                "page=`{}` is not a page number",
                p.chars().take(100).collect::<String>()
            ))
        })?,
    };
    let filters = filter_query(&params);
    let mut b = filter_form("/ui/coverage", &params);
    let Some(c) = analytics(&ui, params, |a, catalog, q| {
        analytics::endpoint_coverage(a.store, catalog, q)
    })
    .await?
    else {
        b.push_str(NOTHING_APPLIED);
        return Ok(Html(page("Coverage", "/ui/coverage", &b, signed_in(&ui))));
    };
    let rows = coverage_rows(&c);
    let pages = paginate(&rows, COVERAGE_PAGE_OPS);
    if n == 0 || n > pages.len() {
        return Err(UiError::NotFound(format!(
            "there is no coverage page {n}: pages go from 1 to {}",
            pages.len()
        )));
    }
    let shown = &rows[pages[n - 1].clone()];
    let _ = write!(
        b,
        "<p id=\"coverage-summary\" data-hit=\"{}\" data-operations=\"{}\">{} of {} operations \
         were hit from {} to {} (UTC days). One cell per operation; hover a cell for its \
         requests by status class.</p>",
        c.hit,
        c.operations,
        c.hit,
        c.operations,
        esc(&c.from),
        esc(&c.to)
    );
    let unmatched: Vec<_> = c
        .services
        .iter()
        .filter(|s| s.unmatched_requests > 0 || s.error.is_some())
        .collect();
    if !unmatched.is_empty() {
        b.push_str("<ul>");
        for s in unmatched {
            let _ = write!(
                b,
                "<li><code>{}/{}</code>: {} requests matched no operation{}</li>",
                esc(&s.federation),
                esc(&s.service),
                s.unmatched_requests,
                s.error
                    .as_deref()
                    .map(|e| format!("; its operations could not be listed: {}", esc(e)))
                    .unwrap_or_default()
            );
        }
        b.push_str("</ul>");
    }
    if pages.len() > 1 {
        let _ = write!(b, "<p>Page {n} of {}.</p>", pages.len());
    }
    b.push_str(&svg::coverage_grid(
        shown,
        "coverage-map",
        "Endpoint coverage",
    ));
    b.push_str("<details><summary>Operations never hit on this page</summary><ul>");
    for (svc, cells) in shown {
        for c in cells.iter().filter(|c| c.hits == 0) {
            let _ = write!(b, "<li><code>{}</code> {}</li>", esc(svc), esc(&c.label));
        }
    }
    b.push_str("</ul></details>");
    if pages.len() > 1 {
        let link = |p: usize| format!("/ui/coverage?{filters}page={p}");
        let prev = (n > 1).then(|| link(n - 1));
        let next = (n < pages.len()).then(|| link(n + 1));
        b.push_str(&pager(prev, next));
    }
    Ok(Html(page("Coverage", "/ui/coverage", &b, signed_in(&ui))))
}

/// The renderer's shape of an analytics heatmap: at most [`MAX_HEAT_ROWS`] rows, busiest
/// first.
fn heat(map: analytics::Heatmap) -> svg::Heatmap {
    let mut rows: Vec<(String, Vec<u64>, u64)> = map
        .rows
        .into_iter()
        .map(|r| (r.key, r.counts, r.total))
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    rows.truncate(MAX_HEAT_ROWS);
    svg::Heatmap {
        columns: map.days,
        rows: rows.into_iter().map(|(k, v, _)| (k, v)).collect(),
    }
}

/// Most rows of a usage heatmap (the busiest keys).
pub const MAX_HEAT_ROWS: usize = 40;

pub async fn usage(ui: Ctx, Query(params): Query<BTreeMap<String, String>>) -> Page {
    let mut b = filter_form("/ui/usage", &params);
    let Some((scenarios, personas)) = analytics(&ui, params, |a, catalog, q| {
        Ok((
            analytics::scenario_usage(a.store, catalog, q)?,
            analytics::persona_ci_hits(a.store, catalog, q)?,
        ))
    })
    .await?
    else {
        b.push_str(NOTHING_APPLIED);
        return Ok(Html(page(
            "Scenarios & personas",
            "/ui/usage",
            &b,
            signed_in(&ui),
        )));
    };
    let _ = write!(
        b,
        "<p>Requests per UTC day from {} to {}; at most {MAX_HEAT_ROWS} rows, busiest first.</p>",
        esc(&scenarios.from),
        esc(&scenarios.to),
    );
    let (scenarios, personas) = (heat(scenarios), heat(personas));
    b.push_str("<h2>Scenario usage</h2>");
    if scenarios.rows.is_empty() {
        b.push_str("<p>No request named a scenario.</p>");
    }
    b.push_str(&svg::heatmap(
        &scenarios,
        "scenario-usage",
        "Scenario usage per day",
    ));
    b.push_str("<h2>Persona hits from CI</h2>");
    if personas.rows.is_empty() {
        b.push_str("<p>No CI request named a persona.</p>");
    }
    b.push_str(&svg::heatmap(
        &personas,
        "persona-ci-hits",
        "Persona hits from CI per day",
    ));
    Ok(Html(page(
        "Scenarios & personas",
        "/ui/usage",
        &b,
        signed_in(&ui),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_pages_hold_whole_services() {
        let rows: Vec<(String, Vec<u8>)> = [3, 3, 5, 1]
            .iter()
            .enumerate()
            .map(|(i, &n)| (i.to_string(), vec![0; n]))
            .collect();
        assert_eq!(paginate(&rows, 6), vec![0..2, 2..4]);
        assert_eq!(paginate(&rows, 5), vec![0..1, 1..2, 2..3, 3..4]);
        assert_eq!(paginate(&rows, 100), vec![0..4]);
        assert_eq!(paginate(&rows, 2), vec![0..1, 1..2, 2..3, 3..4]);
        let none: Vec<(String, Vec<u8>)> = Vec::new();
        assert_eq!(paginate(&none, 10), vec![0..0]);
    }

    #[test]
    fn start_order_puts_dependencies_first() {
        let n = |name: &str, deps: &[&str]| Node {
            name: name.into(),
            level: String::new(),
            dependencies: deps.iter().map(|d| d.to_string()).collect(),
        };
        let order = start_order(&[
            n("shipping", &["inventory"]),
            n("payments", &["auth"]),
            n("auth", &[]),
            n("inventory", &["outside"]),
        ]);
        assert_eq!(order, ["auth", "inventory", "payments", "shipping"]);
    }
}
