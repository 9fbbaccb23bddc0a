//! The plan of one commit: its desired state as store rows, the differences from the applied
//! rows, the events those differences produce, and the revision record. [`plan`] is pure: it
//! works on what was read beforehand (the loaded state, the applied rows, the commit, the two
//! sides for schema diffs, the promotion messages); the reconciler applies the [`Plan`] in one
//! store transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::config::diag::Severity;
use crate::config::load::{DesiredState, Loaded};
use crate::git::revision::RevisionFiles;
use crate::promotion::PromotionKey;
use crate::schema_diff::{self, DiffInput, DiffReport, Level};
use crate::store::{Commit, NewEvent, Origin, Revision, RevisionStatus, Row};

/// How a commit is compared with the applied state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A fresh store's first commit: its rows are stored, without events.
    Baseline,
    /// The next commit on the first-parent chain of the applied one.
    Next,
    /// The applied commit is no longer on the branch (a force-push): compared tree to tree.
    Forced,
}

/// Everything [`plan`] reads, gathered beforehand.
pub struct PlanInput<'a> {
    pub commit: &'a CommitInfo,
    pub mode: Mode,
    /// When the commit is processed (the revision record's `processed_at`).
    pub processed_at: String,
    /// The last applied commit, if any.
    pub compared_with: Option<String>,
    pub loaded: &'a Loaded,
    /// The applied rows.
    pub applied: &'a Rows,
    /// Workspace ids the store has already seen.
    pub known_workspaces: &'a BTreeSet<String>,
    pub sides: &'a Sides<'a>,
    /// The messages of the commits this commit brings in (itself, and a merge's merged side):
    /// where promotion trailers are looked for.
    pub promotion_messages: &'a [String],
    /// Trailers signed with this key are trusted; without it, none is.
    pub promotion_key: Option<&'a PromotionKey>,
}

/// What applying one commit writes, computed without IO.
#[derive(Debug)]
pub struct Plan {
    pub revision: Revision,
    /// Entities added, removed or modified (empty for an invalid commit).
    pub changes: Vec<EntityChange>,
    pub events: Vec<NewEvent>,
    /// Workspace ids seen for the first time.
    pub workspaces: Vec<String>,
    /// The applied rows once the plan is applied; `None` for an invalid commit (nothing of it
    /// is applied).
    pub rows: Option<Rows>,
}

impl Plan {
    /// The store transaction of this plan, and the rows it leaves applied.
    pub fn into_commit(self) -> (Commit, Option<Rows>) {
        let mut put = Vec::new();
        let mut delete = Vec::new();
        for c in &self.changes {
            match &c.new {
                Some(r) => put.push((c.key.clone(), Arc::clone(r))),
                None => delete.push(c.key.clone()),
            }
        }
        (
            Commit {
                revision: Some(self.revision),
                put,
                delete,
                events: self.events,
                workspaces: self.workspaces,
                replace_all: false,
            },
            self.rows,
        )
    }
}

/// The plan of one commit. Pure: no Git, store or clock access but through `input`.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let loaded = input.loaded;
    let (errors, warnings) = crate::config::diag::counts(&loaded.diagnostics);
    let mut revision = Revision {
        seq: 0,
        sha: input.commit.sha.clone(),
        status: RevisionStatus::Applied,
        compared_with: input.compared_with.clone(),
        forced: input.mode == Mode::Forced,
        author: input.commit.author.clone(),
        summary: input.commit.summary.clone(),
        committed_at: input.commit.committed_at.clone(),
        processed_at: input.processed_at.clone(),
        diagnostics: loaded
            .diagnostics
            .iter()
            .map(|d| serde_json::to_value(d).unwrap_or(Json::Null))
            .collect(),
        errors,
        warnings,
        events: Vec::new(),
        changed_entities: 0,
    };
    if loaded
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error)
    {
        revision.status = RevisionStatus::Invalid;
        return Plan {
            revision,
            changes: Vec::new(),
            events: Vec::new(),
            workspaces: Vec::new(),
            rows: None,
        };
    }
    let new_rows = rows(&loaded.state, input.applied);
    let changes = entity_changes(input.applied, &new_rows);
    let fresh_ws: Vec<(String, Option<String>, Option<String>)> = workspaces(&new_rows)
        .into_iter()
        .filter(|(id, _)| !input.known_workspaces.contains(id))
        .map(|(id, (name, service))| (id, name, service))
        .collect();
    let mut events = Vec::new();
    if input.mode == Mode::Baseline {
        revision.status = RevisionStatus::Baseline;
    } else {
        events = self::events(&changes, &new_rows, &fresh_ws, input.commit, input.sides);
        if let Some(key) = input.promotion_key {
            events.extend(promotion_events(
                input.promotion_messages,
                input.commit,
                key,
            ));
        }
    }
    revision.changed_entities = changes.len();
    Plan {
        revision,
        changes,
        events,
        workspaces: fresh_ws.into_iter().map(|w| w.0).collect(),
        rows: Some(new_rows),
    }
}

/// `promotion.completed` for every promotion the messages carry. Only trailers signed with
/// the daemon's key count: a hand-written trailer cannot forge a promotion.
pub fn promotion_events(
    messages: &[String],
    info: &CommitInfo,
    key: &PromotionKey,
) -> Vec<NewEvent> {
    let mut out = Vec::new();
    for m in messages {
        let Some((id, what)) = crate::promotion::verified(m, key) else {
            if m.contains(crate::promotion::ID_TRAILER) {
                tracing::warn!(
                    commit = %info.sha,
                    "a commit carries a promotion trailer without this daemon's signature; ignored"
                );
            }
            continue;
        };
        let parts: Vec<&str> = what.split_whitespace().collect();
        let [entity_type, entity_id, from, to] = parts[..] else {
            continue;
        };
        let mut e = NewEvent::new("promotion.completed", Origin::commit(&info.sha))
            .with("promotion_id", id.clone())
            .with("entity_type", entity_type)
            .with("entity_id", entity_id)
            .with("from_environment", from)
            .with("to_environment", to)
            .with("commit", info.sha.clone())
            .with("author", info.author.clone());
        e.dedup_key = Some(format!("promotion:{id}"));
        out.push(e);
    }
    out
}

/// Rows keyed `kind/name`.
pub type Rows = BTreeMap<String, Arc<Row>>;

/// Kinds whose changes are `config.changed` events.
const CONFIG_KINDS: &[&str] = &["settings", "service", "federation", "pipeline"];
/// Longest unified diff kept in a `config.changed` event.
const MAX_TEXT_DIFF: usize = 16 * 1024;
/// Most field changes listed per entity; the rest are counted.
const MAX_FIELD_CHANGES: usize = 200;

/// The rows of a desired state. Rows of files whose blob did not change are taken from
/// `previous` as they are, so the cost follows what changed.
pub fn rows(state: &DesiredState, previous: &Rows) -> Rows {
    let mut out = Rows::new();
    let mut put = |kind: &str, name: &str, path: &str, blob: &str, value: &dyn Fn() -> Json| {
        let key = format!("{kind}/{name}");
        if let Some(old) = previous.get(&key)
            && !blob.is_empty()
            && old.blob == blob
            && old.path == path
        {
            out.insert(key, old.clone());
            return;
        }
        let row = Row {
            kind: kind.to_string(),
            name: name.to_string(),
            path: path.to_string(),
            blob: blob.to_string(),
            value: value(),
        };
        out.insert(key, Arc::new(row));
    };
    put("settings", "mockops", "mockops.yaml", "", &|| {
        to_json(&state.settings)
    });
    for (name, e) in &state.services {
        put("service", name, &e.path, &e.blob, &|| to_json(&*e.spec));
    }
    // A federation's members are resolved against services: its value can change without its
    // file changing, so it is always recomputed (federations are few).
    for (name, e) in &state.federations {
        put("federation", name, &e.path, "", &|| to_json(&*e.spec));
    }
    for (name, e) in &state.pipelines {
        put("pipeline", name, &e.path, &e.blob, &|| to_json(&*e.spec));
    }
    for ((env, id), e) in &state.scenarios {
        put(
            "scenario",
            &format!("{env}/{id}"),
            &e.path,
            &e.blob,
            &|| to_json(&*e.spec),
        );
    }
    for ((env, id), e) in &state.personas {
        put("persona", &format!("{env}/{id}"), &e.path, &e.blob, &|| {
            to_json(&*e.spec)
        });
    }
    for (path, s) in &state.specs {
        put("spec", path, path, &s.blob, &|| to_json(s));
    }
    out
}

fn to_json<T: Serialize>(v: &T) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// How an entity changed between two row sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Added,
    Removed,
    Modified,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Added => "added",
            Action::Removed => "removed",
            Action::Modified => "modified",
        }
    }
}

/// One changed entity.
#[derive(Debug, Clone)]
pub struct EntityChange {
    pub key: String,
    pub action: Action,
    pub old: Option<Arc<Row>>,
    pub new: Option<Arc<Row>>,
}

impl EntityChange {
    pub fn row(&self) -> &Row {
        match (&self.new, &self.old) {
            (Some(r), _) | (None, Some(r)) => r,
            (None, None) => unreachable!("a change has a side"),
        }
    }
}

/// Entities added, removed or modified (by value) between `old` and `new`.
pub fn entity_changes(old: &Rows, new: &Rows) -> Vec<EntityChange> {
    let mut out = Vec::new();
    for (k, o) in old {
        match new.get(k) {
            None => out.push(EntityChange {
                key: k.clone(),
                action: Action::Removed,
                old: Some(o.clone()),
                new: None,
            }),
            Some(n) if !Arc::ptr_eq(o, n) && (o.value != n.value || o.path != n.path) => {
                out.push(EntityChange {
                    key: k.clone(),
                    action: Action::Modified,
                    old: Some(o.clone()),
                    new: Some(n.clone()),
                })
            }
            Some(n) if o.blob != n.blob && o.kind == "spec" => out.push(EntityChange {
                key: k.clone(),
                action: Action::Modified,
                old: Some(o.clone()),
                new: Some(n.clone()),
            }),
            Some(_) => {}
        }
    }
    for (k, n) in new {
        if !old.contains_key(k) {
            out.push(EntityChange {
                key: k.clone(),
                action: Action::Added,
                old: None,
                new: Some(n.clone()),
            });
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// One changed field: a path like `definition.steps[0].timeout`, with both values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Json,
    pub new: Json,
}

/// Field-by-field differences between two JSON values.
pub fn field_changes(old: &Json, new: &Json) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(path: &str, old: &Json, new: &Json, out: &mut Vec<FieldChange>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Json::Object(a), Json::Object(b)) => {
            for (k, av) in a {
                let p = join(path, k);
                walk(&p, av, b.get(k).unwrap_or(&Json::Null), out);
            }
            for (k, bv) in b {
                if !a.contains_key(k) {
                    walk(&join(path, k), &Json::Null, bv, out);
                }
            }
        }
        (Json::Array(a), Json::Array(b)) if a.len() == b.len() => {
            for (i, (av, bv)) in a.iter().zip(b).enumerate() {
                walk(&format!("{path}[{i}]"), av, bv, out);
            }
        }
        _ => out.push(FieldChange {
            field: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            old: old.clone(),
            new: new.clone(),
        }),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A unified diff of two texts, cut at [`MAX_TEXT_DIFF`].
pub fn text_diff(path: &str, old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let mut s = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    if s.len() > MAX_TEXT_DIFF {
        let mut cut = MAX_TEXT_DIFF;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n… (diff truncated)\n");
    }
    s
}

/// The commit being planned, as read from Git.
#[derive(Debug, Clone)]
pub struct CommitInfo {
    pub sha: String,
    /// `Name <email>`.
    pub author: String,
    pub summary: String,
    /// RFC 3339.
    pub committed_at: String,
}

/// Reads both sides of a commit: the applied one (may be unavailable) and the new one.
pub struct Sides<'a> {
    pub old: Option<&'a dyn RevisionFiles>,
    pub new: &'a dyn RevisionFiles,
    /// Reads a blob by id (both sides share one object database).
    pub blob: &'a dyn Fn(&str) -> Option<Vec<u8>>,
}

/// The events of a commit, in a stable order: config, specs, scenarios/personas, workspaces.
pub fn events(
    changes: &[EntityChange],
    new_rows: &Rows,
    new_workspaces: &[(String, Option<String>, Option<String>)],
    commit: &CommitInfo,
    sides: &Sides<'_>,
) -> Vec<NewEvent> {
    let mut out = Vec::new();
    let source = Origin::commit(&commit.sha);
    let stamp = |e: NewEvent| {
        e.with("commit", commit.sha.clone())
            .with("author", commit.author.clone())
    };
    for c in changes {
        let row = c.row();
        if !CONFIG_KINDS.contains(&row.kind.as_str()) {
            continue;
        }
        let fields = match (&c.old, &c.new) {
            (Some(o), Some(n)) => field_changes(&o.value, &n.value),
            _ => Vec::new(),
        };
        let total = fields.len();
        let listed: Vec<Json> = fields
            .into_iter()
            .take(MAX_FIELD_CHANGES)
            .map(|f| json!({"entity": row.name, "field": f.field, "old": f.old, "new": f.new}))
            .collect();
        let (ws, wn) = workspace_of(row);
        let mut e = NewEvent::new("config.changed", source.clone())
            .workspace(ws, wn)
            .with("config_path", row.path.clone())
            .with("kind", row.kind.clone())
            .with("entity", row.name.clone())
            .with("action", c.action.as_str())
            .with("changes", Json::Array(listed));
        if total > MAX_FIELD_CHANGES {
            e = e.with("changes_omitted", total - MAX_FIELD_CHANGES);
        }
        if let Some(d) = file_diff(c, sides) {
            e = e.with("diff", d);
        }
        out.push(stamp(e));
    }
    out.extend(
        schema_events(changes, new_rows, sides, &source)
            .into_iter()
            .map(stamp),
    );
    for c in changes {
        let row = c.row();
        let (kind, id_field, name_field) = match row.kind.as_str() {
            "scenario" => ("scenario.published", "scenario_id", "scenario_name"),
            "persona" => ("persona.published", "persona_id", "persona_name"),
            _ => continue,
        };
        let published = match (&c.old, &c.new) {
            (None, Some(_)) => true,
            (Some(o), Some(n)) => o.value.get("version") != n.value.get("version"),
            _ => false,
        };
        if !published {
            continue;
        }
        let (env, id) = row.name.split_once('/').unwrap_or(("", &row.name));
        let v = &row.value;
        let name = v.get("name").cloned().unwrap_or(Json::Null);
        let e = NewEvent::new(kind, source.clone())
            .workspace(
                v.get("workspace_id")
                    .and_then(Json::as_str)
                    .map(str::to_string),
                None,
            )
            .with(id_field, id)
            .with(name_field, name.clone())
            .with("name", name)
            .with("version", v.get("version").cloned().unwrap_or(Json::Null))
            .with("environment", env)
            .with("path", row.path.clone());
        out.push(stamp(e));
    }
    for (id, name, service) in new_workspaces {
        let mut e = NewEvent::new("workspace.created", source.clone())
            .workspace(Some(id.clone()), name.clone());
        if let Some(s) = service {
            e = e.with("service", s.clone());
        }
        out.push(stamp(e));
    }
    out
}

fn workspace_of(row: &Row) -> (Option<String>, Option<String>) {
    let s = |k: &str| row.value.get(k).and_then(Json::as_str).map(str::to_string);
    match row.kind.as_str() {
        "service" => (s("workspace_id"), s("workspace_name").or(s("name"))),
        "pipeline" => (s("workspace_id"), None),
        _ => (None, None),
    }
}

fn file_diff(c: &EntityChange, sides: &Sides<'_>) -> Option<String> {
    let (o, n) = (c.old.as_ref()?, c.new.as_ref()?);
    if o.blob.is_empty() || n.blob.is_empty() || o.blob == n.blob {
        return None;
    }
    let old = String::from_utf8((sides.blob)(&o.blob)?).ok()?;
    let new = String::from_utf8((sides.blob)(&n.blob)?).ok()?;
    Some(text_diff(&n.path, &old, &new))
}

/// `schema.changed` for every spec document that changed, directly or through a file it
/// references.
fn schema_events(
    changes: &[EntityChange],
    new_rows: &Rows,
    sides: &Sides<'_>,
    source: &Origin,
) -> Vec<NewEvent> {
    let is_doc = |r: &Row| r.value.get("document").and_then(Json::as_bool) == Some(true);
    let mut direct: BTreeMap<String, Action> = BTreeMap::new();
    let mut fragments_changed = false;
    for c in changes {
        let row = c.row();
        if row.kind != "spec" {
            continue;
        }
        if is_doc(row) {
            direct.insert(row.path.clone(), c.action);
        } else {
            fragments_changed = true;
        }
    }
    // A changed fragment may change any document that references it: compare the documents
    // that did not change themselves too, and keep those with differences.
    let mut indirect = BTreeSet::new();
    if fragments_changed {
        for row in new_rows.values() {
            if row.kind == "spec" && is_doc(row) && !direct.contains_key(&row.path) {
                indirect.insert(row.path.clone());
            }
        }
    }
    let services: Vec<&Row> = new_rows
        .values()
        .filter(|r| r.kind == "service")
        .map(|r| r.as_ref())
        .collect();
    let mut out = Vec::new();
    for (path, action) in direct
        .iter()
        .map(|(p, a)| (p.clone(), *a))
        .chain(indirect.iter().map(|p| (p.clone(), Action::Modified)))
    {
        let schema_type = schema_diff::schema_type_of(&path)
            .map(|t| t.as_str())
            .unwrap_or("openapi");
        let service = services
            .iter()
            .find(|s| s.value.get("spec").and_then(Json::as_str) == Some(path.as_str()));
        let mut e = NewEvent::new("schema.changed", source.clone())
            .with("spec_path", path.clone())
            .with("schema_type", schema_type)
            .with("action", action.as_str());
        if let Some(s) = service {
            let (ws, wn) = workspace_of(s);
            e = e.workspace(ws, wn).with("service", s.name.clone());
        }
        let report = match (action, sides.old) {
            (Action::Modified, Some(old)) => Some(diff(old, sides.new, &path)),
            _ => None,
        };
        match (action, report) {
            (Action::Added, _) => {
                e = e
                    .with("changes", Json::Array(vec![]))
                    .with("breaking", false)
                    .with("summary", format!("{path} added"));
            }
            (Action::Removed, _) => {
                e = e
                    .with("changes", Json::Array(vec![]))
                    .with("breaking", true)
                    .with("summary", format!("{path} removed"));
            }
            (Action::Modified, Some(Ok(r))) => {
                if r.changes.is_empty() && !r.description_only {
                    // Formatting only: nothing for pipelines to act on.
                    continue;
                }
                e = report_payload(e, &r);
            }
            (Action::Modified, Some(Err(err))) => {
                if !direct.contains_key(&path) {
                    continue;
                }
                let msg = err.to_string();
                e = not_compared(e, format!("{path} changed; not compared: {msg}"), msg);
            }
            (Action::Modified, None) => {
                let msg = "the previous revision is not available".to_string();
                e = not_compared(e, format!("{path} changed; {msg}"), msg);
            }
        }
        out.push(e);
    }
    out
}

/// A change that could not be compared: nothing says it is safe, so it counts as possibly
/// breaking, and `diff_error` says why there is no list of changes.
fn not_compared(e: NewEvent, summary: String, error: String) -> NewEvent {
    e.with("changes", Json::Array(vec![]))
        .with("breaking", true)
        .with("summary", summary)
        .with("diff_error", error)
}

fn diff(
    old: &dyn RevisionFiles,
    new: &dyn RevisionFiles,
    path: &str,
) -> Result<DiffReport, schema_diff::DiffError> {
    schema_diff::diff_files(
        &DiffInput {
            label: format!("applied:{path}"),
            path: path.to_string(),
            files: old,
        },
        &DiffInput {
            label: format!("commit:{path}"),
            path: path.to_string(),
            files: new,
        },
    )
}

fn report_payload(e: NewEvent, r: &DiffReport) -> NewEvent {
    let changes: Vec<Json> = r
        .changes
        .iter()
        .map(|c| {
            let mut m = match serde_json::to_value(c) {
                Ok(Json::Object(m)) => m,
                _ => Map::new(),
            };
            m.insert("kind".into(), Json::from(change_kind(&c.id)));
            Json::Object(m)
        })
        .collect();
    let s = &r.summary;
    let summary = if r.description_only {
        format!("{}: documentation only", r.path)
    } else {
        format!(
            "{}: {} breaking, {} warning, {} info",
            r.path, s.err, s.warn, s.info
        )
    };
    e.with("changes", Json::Array(changes))
        .with("breaking", r.breaking)
        .with("summary", summary)
        .with(
            "max_level",
            r.max_level().map(Level::as_str).unwrap_or("NONE"),
        )
}

/// Whether a rule id names an addition, a removal or a modification.
pub fn change_kind(rule: &str) -> &'static str {
    let r = rule.to_ascii_lowercase();
    if r.contains("added") || r.starts_with("new-") || r.ends_with("_add") {
        "added"
    } else if r.contains("removed") || r.contains("delete") {
        "removed"
    } else {
        "modified"
    }
}

/// Workspace ids a state mentions, with a name and the service they belong to when known.
pub fn workspaces(rows: &Rows) -> BTreeMap<String, (Option<String>, Option<String>)> {
    let mut out: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    let s = |v: &Json, k: &str| v.get(k).and_then(Json::as_str).map(str::to_string);
    for r in rows.values() {
        match r.kind.as_str() {
            "service" => {
                if let Some(id) = s(&r.value, "workspace_id") {
                    out.insert(
                        id,
                        (
                            s(&r.value, "workspace_name").or(Some(r.name.clone())),
                            Some(r.name.clone()),
                        ),
                    );
                }
            }
            "federation" => {
                for m in r
                    .value
                    .get("services")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = s(m, "workspace_id") {
                        out.entry(id)
                            .or_insert((s(m, "name"), s(m, "service").or(s(m, "name"))));
                    }
                }
            }
            "pipeline" | "scenario" | "persona" => {
                if let Some(id) = s(&r.value, "workspace_id") {
                    out.entry(id).or_insert((None, None));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_changes_walk_objects_and_same_length_arrays() {
        let old = json!({"a": 1, "b": {"c": [1, 2]}, "d": [1]});
        let new = json!({"a": 2, "b": {"c": [1, 3]}, "d": [1, 2], "e": true});
        let ch = field_changes(&old, &new);
        let fields: Vec<&str> = ch.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, vec!["a", "b.c[1]", "d", "e"]);
        assert_eq!(ch[0].old, json!(1));
        assert_eq!(ch[0].new, json!(2));
        assert_eq!(ch[3].old, Json::Null);
    }

    #[test]
    fn change_kinds_follow_rule_ids() {
        assert_eq!(change_kind("endpoint-added"), "added");
        assert_eq!(
            change_kind("api-path-removed-without-deprecation"),
            "removed"
        );
        assert_eq!(change_kind("FIELD_NO_DELETE"), "removed");
        assert_eq!(change_kind("response-property-type-changed"), "modified");
        assert_eq!(change_kind("new-required-request-parameter"), "added");
    }

    struct Mem(BTreeMap<&'static str, &'static str>);

    impl RevisionFiles for Mem {
        fn read(&self, path: &str) -> Result<Vec<u8>, crate::git::revision::ReadError> {
            self.0
                .get(path)
                .map(|t| t.as_bytes().to_vec())
                .ok_or(crate::git::revision::ReadError::NotFound)
        }
    }

    const SPEC: &str = "specs/pets.yaml";
    const PETS: &str = "openapi: 3.0.3\ninfo: {title: pets, version: '1'}\npaths: {}\n";

    fn spec_change(old_blob: &str, new_blob: &str) -> (Vec<EntityChange>, Rows) {
        let row = |blob: &str| {
            Arc::new(Row {
                kind: "spec".into(),
                name: SPEC.into(),
                path: SPEC.into(),
                blob: blob.into(),
                value: json!({"document": true}),
            })
        };
        let (old, new) = (row(old_blob), row(new_blob));
        let rows: Rows = [(format!("spec/{SPEC}"), new.clone())]
            .into_iter()
            .collect();
        let change = EntityChange {
            key: format!("spec/{SPEC}"),
            action: Action::Modified,
            old: Some(old),
            new: Some(new),
        };
        (vec![change], rows)
    }

    fn schema_event(old: Option<&Mem>, new: &Mem) -> Json {
        let (changes, rows) = spec_change("b1", "b2");
        let no_blob = |_: &str| None;
        let sides = Sides {
            old: old.map(|m| m as &dyn RevisionFiles),
            new,
            blob: &no_blob,
        };
        let commit = CommitInfo {
            sha: "c0ffee".into(),
            author: "a".into(),
            summary: "s".into(),
            committed_at: "2026-01-01T00:00:00Z".into(),
        };
        let events = events(&changes, &rows, &[], &commit, &sides);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].event_type, "schema.changed");
        Json::Object(events[0].payload.clone())
    }

    #[test]
    fn a_schema_change_that_cannot_be_compared_is_possibly_breaking() {
        let new = Mem([(SPEC, PETS)].into_iter().collect());
        // The applied side does not load (here: not OpenAPI at all).
        let old = Mem([(SPEC, "just: text\n")].into_iter().collect());
        let p = schema_event(Some(&old), &new);
        assert_eq!(p["breaking"], json!(true), "{p:#}");
        let err = p["diff_error"].as_str().expect("diff_error is set");
        assert!(err.contains(SPEC), "{err}");
        assert_eq!(p["changes"], json!([]));
        assert!(
            p["summary"]
                .as_str()
                .is_some_and(|s| s.contains("not compared")),
            "{p:#}"
        );

        // The applied revision cannot be read at all.
        let p = schema_event(None, &new);
        assert_eq!(p["breaking"], json!(true), "{p:#}");
        assert_eq!(
            p["diff_error"],
            json!("the previous revision is not available")
        );
    }

    #[test]
    fn a_compared_schema_change_has_no_diff_error() {
        let new = Mem([(SPEC, PETS)].into_iter().collect());
        let old = Mem(
            [(SPEC, "openapi: 3.0.3\ninfo: {title: pets, version: '1'}\npaths:\n  /pets:\n    get:\n      responses: {'200': {description: ok}}\n")]
                .into_iter()
                .collect(),
        );
        let p = schema_event(Some(&old), &new);
        assert!(p.get("diff_error").is_none(), "{p:#}");
        assert_eq!(
            p["breaking"],
            json!(true),
            "removing an operation breaks: {p:#}"
        );
        assert!(!p["changes"].as_array().expect("changes").is_empty());
    }

    #[test]
    fn text_diff_is_unified_and_capped() {
        let d = text_diff("p.yaml", "a\nb\n", "a\nc\n");
        assert!(d.contains("--- a/p.yaml"));
        assert!(d.contains("-b\n+c"));
        let big_old = "x\n".repeat(20_000);
        let big_new = "y\n".repeat(20_000);
        let d = text_diff("p", &big_old, &big_new);
        assert!(d.len() < MAX_TEXT_DIFF + 64);
        assert!(d.ends_with("(diff truncated)\n"));
    }
}
