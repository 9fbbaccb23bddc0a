//! Cross-file checks of a parsed revision (duplicate names, references, dependency cycles,
//! base paths, trigger filters, templates, environments, inline secrets), and assembly of the
//! validated [`DesiredState`]. Works on the parsed files alone: no IO.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value as Json;

use super::state::{
    DesiredState, Doc, Entity, FederatedService, Federation, FileClass, Input, SpecFile, file_stem,
};
use crate::config::diag::{Diagnostic, Severity, did_you_mean};
use crate::config::yaml::{Loc, Node};
use crate::model::events::{ENVELOPE_FIELDS, EventType, PATH_FIELDS, TriggerEvent};
use crate::model::{
    ChaosLatency, ChaosSpec, FederationSpec, FilterValue, Kind, PipelineSpec, SDK_PRESETS,
    ScenarioSpec, ServiceSpec, Settings, StepType,
};

struct Ctx<'a> {
    out: &'a mut Vec<Diagnostic>,
    memo: &'a mut Memo,
}

/// What validation needs from one template text: the variables it uses (sorted), or why it
/// does not parse.
#[derive(Debug, Clone, PartialEq)]
enum TemplateInfo {
    Uses(Vec<String>),
    Invalid(String),
}

/// Results of pure functions of a string (template analysis, glob parsing), kept across loads
/// by the `Loader`. They depend on the text alone, never on other
/// files, so they need no invalidation: every cross-file rule still runs on every load.
/// Entries unused by the last two loads are dropped.
#[derive(Default)]
pub(crate) struct Memo {
    generation: u64,
    templates: HashMap<String, (u64, Arc<TemplateInfo>)>,
    /// Glob text -> why it is invalid, if it is.
    globs: HashMap<String, (u64, Option<String>)>,
}

impl Memo {
    /// Starts a load: entries used from now on are kept for the next one.
    pub(crate) fn start(&mut self) {
        self.generation += 1;
        let keep = self.generation;
        self.templates.retain(|_, (g, _)| *g + 2 >= keep);
        self.globs.retain(|_, (g, _)| *g + 2 >= keep);
    }

    fn template(&mut self, text: &str) -> Arc<TemplateInfo> {
        let generation = self.generation;
        if let Some((g, info)) = self.templates.get_mut(text) {
            *g = generation;
            return Arc::clone(info);
        }
        let env = crate::util::template::environment();
        let info = match env.template_from_str(text) {
            Ok(t) => {
                let mut used: Vec<String> = t.undeclared_variables(true).into_iter().collect();
                used.sort();
                TemplateInfo::Uses(used)
            }
            Err(e) => TemplateInfo::Invalid(e.detail().unwrap_or("syntax error").to_string()),
        };
        let info = Arc::new(info);
        self.templates
            .insert(text.to_string(), (generation, Arc::clone(&info)));
        info
    }

    fn glob_problem(&mut self, glob: &str) -> Option<String> {
        let generation = self.generation;
        if let Some((g, problem)) = self.globs.get_mut(glob) {
            *g = generation;
            return problem.clone();
        }
        let problem = globset::Glob::new(glob).err().map(|e| e.kind().to_string());
        self.globs
            .insert(glob.to_string(), (generation, problem.clone()));
        problem
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.templates.len(), self.globs.len())
    }
}

impl Ctx<'_> {
    fn at(&self, input: &Input, pointer: &str) -> Loc {
        input
            .parsed
            .node
            .as_ref()
            .map_or(Loc::new(1, 1), |n| n.locate(pointer).loc)
    }

    fn key_at(&self, input: &Input, pointer: &str, key: &str) -> Loc {
        input
            .parsed
            .node
            .as_ref()
            .and_then(|n| n.locate(pointer).key(key).map(|k| k.loc))
            .unwrap_or_else(|| self.at(input, pointer))
    }

    fn error(
        &mut self,
        code: &'static str,
        input: &Input,
        loc: Loc,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        self.out
            .push(Diagnostic::error(code, &input.path, loc, msg));
        self.out.last_mut().expect("just pushed")
    }

    fn warn(
        &mut self,
        code: &'static str,
        input: &Input,
        loc: Loc,
        msg: impl Into<String>,
    ) -> &mut Diagnostic {
        self.out
            .push(Diagnostic::warning(code, &input.path, loc, msg));
        self.out.last_mut().expect("just pushed")
    }
}

/// A list of names in their reporting order (suggestions break ties by it), with a set for
/// membership tests.
struct Names<'a> {
    ordered: &'a [&'a str],
    set: HashSet<&'a str>,
}

impl<'a> Names<'a> {
    fn new(ordered: &'a [&'a str]) -> Self {
        Self {
            ordered,
            set: ordered.iter().copied().collect(),
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.set.contains(name)
    }
}

fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(input, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Entry point: checks everything across files and builds the desired state.
pub(crate) fn check(inputs: &[Input], out: &mut Vec<Diagnostic>, memo: &mut Memo) -> DesiredState {
    memo.start();
    let mut cx = Ctx { out, memo };
    let mut st = DesiredState::default();

    let settings_inputs: Vec<&Input> = inputs
        .iter()
        .filter(|i| i.class == FileClass::Config(Kind::Settings))
        .collect();
    if settings_inputs.len() > 1 {
        let second = settings_inputs[1];
        cx.error(
            "duplicate-settings",
            second,
            Loc::new(1, 1),
            "both mockops.yaml and mockops.yml exist",
        )
        .hint = Some("keep one settings file".into());
    }
    // When mockops.yaml exists but does not load, checks that depend on its defaults and
    // variables are skipped: its own errors say what is wrong.
    let settings_broken = settings_inputs
        .first()
        .is_some_and(|i| i.parsed.doc.is_none());
    if let Some(input) = settings_inputs.first()
        && let Some(Doc::Settings(s)) = &input.parsed.doc
    {
        check_settings(&mut cx, input, s);
        st.settings = (**s).clone();
    }

    for input in inputs {
        if let FileClass::Spec(t) = &input.class {
            st.specs.insert(
                input.path.clone(),
                SpecFile {
                    schema_type: *t,
                    blob: input.blob.clone(),
                    document: matches!(input.parsed.doc, Some(Doc::Spec { document: true, .. })),
                    grpc_services: match &input.parsed.doc {
                        Some(Doc::Spec { grpc_services, .. }) => grpc_services.clone(),
                        _ => Vec::new(),
                    },
                    operations: match &input.parsed.doc {
                        Some(Doc::Spec { operations, .. }) => operations.clone(),
                        _ => None,
                    },
                },
            );
        }
    }
    let spec_errors: BTreeSet<&str> = inputs
        .iter()
        .filter(|i| matches!(i.class, FileClass::Spec(_)))
        .filter(|i| {
            i.parsed
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
        })
        .map(|i| i.path.as_str())
        .collect();

    // Services.
    let mut service_inputs: BTreeMap<String, &Input> = BTreeMap::new();
    for input in inputs {
        if let Some(Doc::Service(s)) = &input.parsed.doc {
            if !unique_name(&mut cx, &mut service_inputs, input, &s.name, "service") {
                continue;
            }
            st.services.insert(
                s.name.clone(),
                Entity {
                    path: input.path.clone(),
                    blob: input.blob.clone(),
                    spec: s.clone(),
                },
            );
        }
    }
    // Services whose file has errors still exist: references to them are not reported again.
    let declared = declared_names(inputs, Kind::Service);
    let mut service_names: Vec<&str> = st.services.keys().map(String::as_str).collect();
    service_names.extend(declared.iter().map(String::as_str));
    let names = Names::new(&service_names);
    for (name, input) in &service_inputs {
        let s = &st.services[name].spec;
        check_service(&mut cx, input, s, &st.specs, &spec_errors, &names);
    }
    check_dependency_cycles(&mut cx, &st, &service_inputs);

    // Federations.
    let mut federation_inputs: BTreeMap<String, &Input> = BTreeMap::new();
    for input in inputs {
        if let Some(Doc::Federation(f)) = &input.parsed.doc {
            if !unique_name(
                &mut cx,
                &mut federation_inputs,
                input,
                &f.name,
                "federation",
            ) {
                continue;
            }
            let fed = check_federation(&mut cx, input, f, &st.services, &declared);
            st.federations.insert(
                f.name.clone(),
                Entity {
                    path: input.path.clone(),
                    blob: input.blob.clone(),
                    spec: Arc::new(fed),
                },
            );
        }
    }

    // A host serves one federation.
    let mut host_owner: BTreeMap<String, String> = BTreeMap::new();
    for (name, fed) in &st.federations {
        for h in &fed.spec.hosts {
            match host_owner.get(h) {
                Some(first) => {
                    if let Some(input) = federation_inputs.get(name) {
                        let i = fed.spec.hosts.iter().position(|x| x == h).unwrap_or(0);
                        let loc = cx.at(input, &format!("/hosts/{i}"));
                        cx.error(
                            "duplicate-host",
                            input,
                            loc,
                            format!("host `{h}` is already claimed by federation `{first}`"),
                        )
                        .hint = Some(
                            "a host name serves one federation; remove it from one of them".into(),
                        );
                    }
                }
                None => {
                    host_owner.insert(h.clone(), name.clone());
                }
            }
        }
    }

    check_grpc_services(&mut cx, &st, &federation_inputs);

    // Scenarios and personas.
    let env_names: Vec<String> = st
        .settings
        .environments
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    let workspaces: BTreeSet<&str> = st
        .services
        .values()
        .map(|s| s.spec.workspace_id.as_str())
        .chain(
            st.federations
                .values()
                .flat_map(|f| f.spec.services.iter().map(|s| s.workspace_id.as_str())),
        )
        .collect();
    let invalid_federations = declared_names(inputs, Kind::Federation);
    // Services some file declares, valid or not (by name, else by file name).
    let declared_services: BTreeSet<String> = inputs
        .iter()
        .filter(|i| i.class == FileClass::Config(Kind::Service))
        .flat_map(|i| {
            let by_doc = match &i.parsed.doc {
                Some(Doc::Service(s)) => Some(s.name.clone()),
                _ => None,
            };
            let by_node = i
                .parsed
                .node
                .as_ref()
                .and_then(|n| n.get("name"))
                .and_then(Node::as_str)
                .map(str::to_string);
            [by_doc, by_node, Some(file_stem(&i.path).to_string())]
        })
        .flatten()
        .collect();
    let persona_ids: BTreeSet<(String, String)> = inputs
        .iter()
        .filter_map(|input| match (&input.class, &input.parsed.doc) {
            (FileClass::EnvEntity(Kind::Persona, env), Some(Doc::Persona(p))) => Some((
                env.clone(),
                p.id.clone()
                    .unwrap_or_else(|| file_stem(&input.path).to_string()),
            )),
            _ => None,
        })
        .collect();
    let mut seen_env_entities: HashMap<(Kind, String, String), &Input> = HashMap::new();
    for input in inputs {
        let FileClass::EnvEntity(kind, env) = &input.class else {
            continue;
        };
        if !env_names.iter().any(|e| e == env) {
            let hint = suggest(env, env_names.iter().map(String::as_str)).unwrap_or_else(|| {
                format!(
                    "declared environments: {} (set `environments` in mockops.yaml)",
                    env_names.join(", ")
                )
            });
            cx.error(
                "unknown-environment",
                input,
                Loc::new(1, 1),
                format!("environment `{env}` is not declared"),
            )
            .hint = Some(hint);
        }
        let (id, ws, declared_id_ptr) = match &input.parsed.doc {
            Some(Doc::Scenario(s)) => (s.id.clone(), s.workspace_id.clone(), "/id"),
            Some(Doc::Persona(p)) => (p.id.clone(), p.workspace_id.clone(), "/id"),
            _ => continue,
        };
        let id = id.unwrap_or_else(|| file_stem(&input.path).to_string());
        let key = (*kind, env.clone(), id.clone());
        if let Some(first) = seen_env_entities.get(&key) {
            let loc = cx.at(input, declared_id_ptr);
            let msg = format!(
                "{} id `{id}` is already used by {} in environment `{env}`",
                kind.as_str(),
                first.path
            );
            cx.error("duplicate-name", input, loc, msg).hint =
                Some("ids must be unique per environment; rename one of them".into());
            continue;
        }
        seen_env_entities.insert(key, input);
        if let Some(ws) = &ws
            && !workspaces.contains(ws.as_str())
        {
            let loc = cx.at(input, "/workspace_id");
            let hint = suggest(ws, workspaces.iter().copied());
            cx.warn(
                "unknown-workspace",
                input,
                loc,
                format!("workspace `{ws}` belongs to no service or federation"),
            )
            .hint = hint;
        }
        match &input.parsed.doc {
            Some(Doc::Scenario(s)) => {
                check_scenario(
                    &mut cx,
                    input,
                    s,
                    &st,
                    &invalid_federations,
                    (env, &persona_ids),
                    &declared_services,
                );
                st.scenarios.insert(
                    (env.clone(), id),
                    Entity {
                        path: input.path.clone(),
                        blob: input.blob.clone(),
                        spec: s.clone(),
                    },
                );
            }
            Some(Doc::Persona(p)) => {
                st.personas.insert(
                    (env.clone(), id),
                    Entity {
                        path: input.path.clone(),
                        blob: input.blob.clone(),
                        spec: p.clone(),
                    },
                );
            }
            _ => {}
        }
    }

    // Pipeline templates.
    let templates = check_templates(&mut cx, inputs);

    // Pipelines, expanded from their templates.
    let mut pipeline_inputs: BTreeMap<String, &Input> = BTreeMap::new();
    for input in inputs {
        if let Some(Doc::Pipeline(p)) = &input.parsed.doc {
            if !unique_name(&mut cx, &mut pipeline_inputs, input, &p.name, "pipeline") {
                continue;
            }
            let expanded = match &p.definition.uses {
                None => {
                    if !p.definition.with.is_empty() {
                        cx.error(
                            "with-without-uses",
                            input,
                            cx.key_at(input, "/definition", "with"),
                            "`with` gives template variables, but the pipeline uses no template",
                        )
                        .hint = Some("add `uses: <template>` or remove `with`".into());
                    }
                    None
                }
                Some(name) => expand_pipeline(&mut cx, input, p, name, &templates),
            };
            let entity = match expanded {
                Some(x) => {
                    let spliced = super::templates::as_input(input, &x);
                    let start = cx.out.len();
                    check_pipeline(
                        &mut cx,
                        &spliced,
                        &x.spec,
                        &st,
                        &workspaces,
                        settings_broken,
                    );
                    relocate(&mut cx, start, input, &p.name, &x);
                    Entity {
                        path: input.path.clone(),
                        blob: x.blob(&input.blob),
                        spec: Arc::new(x.spec),
                    }
                }
                None => {
                    if p.definition.uses.is_none() {
                        check_pipeline(&mut cx, input, p, &st, &workspaces, settings_broken);
                    }
                    Entity {
                        path: input.path.clone(),
                        blob: input.blob.clone(),
                        spec: p.clone(),
                    }
                }
            };
            st.pipelines.insert(p.name.clone(), entity);
        }
    }

    st
}

/// The templates of the revision by name, each checked on its own: a unique, valid name, and
/// a `uses` that leads to templates without coming back.
fn check_templates<'a>(
    cx: &mut Ctx,
    inputs: &'a [Input],
) -> BTreeMap<String, super::templates::Template<'a>> {
    use super::templates::{self, ExpandError, Template};
    let mut out: BTreeMap<String, Template<'a>> = BTreeMap::new();
    for input in inputs {
        let Some(Doc::Template(t)) = &input.parsed.doc else {
            continue;
        };
        let name = &t.template;
        let loc = cx.at(input, "/template");
        if let Some(first) = out.get(name) {
            let msg = format!(
                "template `{name}` is already defined in {}",
                first.input.path
            );
            cx.error("duplicate-name", input, loc, msg).hint =
                Some("template names must be unique; rename or delete one".into());
            continue;
        }
        if !valid_name(name) {
            let msg = format!(
                "template name `{name}` may only contain letters, digits, `-`, `_` and `.`"
            );
            cx.error("invalid-name", input, loc, msg);
        } else if file_stem(&input.path) != name {
            let msg = format!(
                "template `{name}` is defined in a file named `{}`",
                input.path.rsplit('/').next().unwrap_or("")
            );
            cx.warn("name-mismatch", input, loc, msg).hint =
                Some(format!("rename the file to `{name}.yaml`"));
        }
        if t.uses.is_none() && !t.with.is_empty() {
            cx.error(
                "with-without-uses",
                input,
                cx.key_at(input, "", "with"),
                "`with` gives template variables, but the template uses no other template",
            );
        }
        out.insert(name.clone(), Template { input, spec: t });
    }
    let names: Vec<String> = out.keys().cloned().collect();
    for t in out.values() {
        let Some(uses) = &t.spec.uses else { continue };
        let loc = cx.at(t.input, "/uses");
        match templates::chain(uses, &|n| out.get(n).copied()) {
            Ok(_) => {}
            Err(ExpandError::Unknown { name, by: None }) => {
                cx.error(
                    "unknown-template",
                    t.input,
                    loc,
                    format!(
                        "template `{}` uses `{name}`, which is not a template",
                        t.spec.template
                    ),
                )
                .hint = suggest(&name, names.iter().map(String::as_str))
                    .or_else(|| Some(format!("templates: {}", names.join(", "))));
            }
            Err(ExpandError::Cycle { cycle, .. }) if cycle.contains(&t.spec.template) => {
                // The circle, from this template back to it.
                let ring = &cycle[..cycle.len() - 1];
                let at = ring.iter().position(|n| *n == t.spec.template).unwrap_or(0);
                let mut full: Vec<String> = ring[at..].iter().chain(&ring[..at]).cloned().collect();
                full.push(t.spec.template.clone());
                cx.error(
                    "template-cycle",
                    t.input,
                    loc,
                    format!("template `{}` uses itself: {}", t.spec.template, full.join(" -> ")),
                )
                .hint = Some("a template's steps come before its own: templates cannot use one another in a circle".into());
            }
            // Reported at the template the problem is in.
            Err(_) => {}
        }
    }
    out
}

/// The expansion of pipeline `p` through template `name`, or `None` with the reason reported
/// at the pipeline (and, for a template's own `with`, at that template).
fn expand_pipeline<'a>(
    cx: &mut Ctx,
    input: &Input,
    p: &PipelineSpec,
    name: &str,
    templates: &BTreeMap<String, super::templates::Template<'a>>,
) -> Option<super::templates::Expansion<'a>> {
    use super::templates::{self, ExpandError};
    let uses_loc = cx.at(input, "/definition/uses");
    let names: Vec<&str> = templates.keys().map(String::as_str).collect();
    let mut chain_paths: Vec<String> = Vec::new();
    let result = templates::chain(name, &|n| templates.get(n).copied()).and_then(|chain| {
        chain_paths = chain.iter().map(|t| t.input.path.clone()).collect();
        let node = input
            .parsed
            .node
            .clone()
            .unwrap_or(crate::config::yaml::Node {
                loc: Loc::new(1, 1),
                value: crate::config::yaml::Value::Null,
            });
        templates::expand(p, &node, chain)
    });
    let e = match result {
        Ok(x) => return Some(x),
        Err(e) => e,
    };
    let msg = format!("pipeline `{}` cannot use template `{name}`: {e}", p.name);
    match &e {
        ExpandError::Unknown {
            name: missing,
            by: None,
        } => {
            cx.error(
                "unknown-template",
                input,
                uses_loc,
                format!("no template named `{missing}`"),
            )
            .hint = suggest(missing, names.iter().copied()).or_else(|| {
                Some(if names.is_empty() {
                    "templates are read from `templates/<name>.yaml`; this repository has none"
                        .to_string()
                } else {
                    format!("templates: {}", names.join(", "))
                })
            });
        }
        ExpandError::UnknownVariable {
            name: var,
            known,
            by: None,
            ..
        } => {
            let loc = cx.key_at(input, "/definition/with", var);
            cx.error("unknown-variable", input, loc, msg).hint =
                suggest(var, known.iter().map(String::as_str))
                    .or_else(|| Some(format!("its variables: {}", known.join(", "))));
        }
        ExpandError::Missing {
            template,
            missing,
            by: None,
        } => {
            let vloc = templates.get(template).map(|t| {
                (
                    t.input,
                    missing.first().map(|m| cx.key_at(t.input, "/variables", m)),
                )
            });
            cx.error("missing-variable", input, uses_loc, msg).hint = Some(format!(
                "add `with: {{{}: …}}`; a variable without a default is `null` in the template",
                missing[0]
            ));
            if let Some((tinput, Some(loc))) = vloc {
                cx.error(
                    "missing-variable",
                    tinput,
                    loc,
                    format!(
                        "variable `{}` has no default, and pipeline `{}` ({}) gives it no value",
                        missing[0], p.name, input.path
                    ),
                );
            }
        }
        // A template's own `uses`/`with`: reported at that template too.
        ExpandError::Unknown { by: Some(k), .. }
        | ExpandError::UnknownVariable { by: Some(k), .. }
        | ExpandError::Missing { by: Some(k), .. } => {
            cx.error("template-invalid", input, uses_loc, msg.clone());
            if let Some(path) = chain_paths.get(*k)
                && let Some(t) = templates.values().find(|t| t.input.path == *path)
            {
                let loc = cx.at(t.input, "/uses");
                cx.error(
                    "template-invalid",
                    t.input,
                    loc,
                    format!("{e} (as pipeline `{}` uses it)", p.name),
                );
            }
        }
        ExpandError::Cycle { .. } | ExpandError::TooDeep => {
            cx.error("template-cycle", input, uses_loc, msg);
        }
    }
    None
}

/// Moves the diagnostics from `start` on that are about template nodes of the expansion to
/// the template's file and line, and reports each at the pipeline's `uses` as well.
fn relocate(
    cx: &mut Ctx,
    start: usize,
    input: &Input,
    pipeline: &str,
    x: &super::templates::Expansion<'_>,
) {
    let uses_loc = cx.at(input, "/definition/uses");
    let mut extra = Vec::new();
    for d in cx.out.iter_mut().skip(start) {
        let Some((tinput, loc)) = x.origin(Loc::new(d.line, d.column)) else {
            continue;
        };
        let template = match &tinput.parsed.doc {
            Some(Doc::Template(t)) => t.template.clone(),
            _ => String::new(),
        };
        extra.push(Diagnostic {
            file: input.path.clone(),
            line: uses_loc.line,
            column: uses_loc.column,
            message: format!("template `{template}` expands to: {}", d.message),
            hint: Some(format!("at {}:{}:{}", tinput.path, loc.line, loc.column)),
            ..d.clone()
        });
        d.file = tinput.path.clone();
        d.line = loc.line;
        d.column = loc.column;
        d.message = format!(
            "{} (as pipeline `{pipeline}` uses this template)",
            d.message
        );
    }
    cx.out.extend(extra);
}

/// Names of the entities of `kind` whose files did not load (their own errors say why).
fn declared_names(inputs: &[Input], kind: Kind) -> BTreeSet<String> {
    inputs
        .iter()
        .filter(|i| i.class == FileClass::Config(kind) && i.parsed.doc.is_none())
        .filter_map(|i| {
            i.parsed
                .node
                .as_ref()
                .and_then(|n| n.get("name"))
                .and_then(Node::as_str)
                .map(str::to_string)
        })
        .collect()
}

fn unique_name<'a>(
    cx: &mut Ctx,
    seen: &mut BTreeMap<String, &'a Input>,
    input: &'a Input,
    name: &str,
    what: &str,
) -> bool {
    let loc = |cx: &Ctx| cx.at(input, "/name");
    if let Some(first) = seen.get(name) {
        let msg = format!("{what} `{name}` is already defined in {}", first.path);
        cx.error("duplicate-name", input, loc(cx), msg).hint =
            Some(format!("{what} names must be unique; rename or delete one"));
        return false;
    }
    if file_stem(&input.path) != name {
        let msg = format!(
            "{what} `{name}` is defined in a file named `{}`",
            input.path.rsplit('/').next().unwrap_or("")
        );
        cx.warn("name-mismatch", input, loc(cx), msg).hint = Some(format!(
            "rename the file to `{name}.yaml` so the repository is easy to navigate"
        ));
    }
    if !valid_name(name) {
        let msg =
            format!("{what} name `{name}` may only contain letters, digits, `-`, `_` and `.`");
        cx.error("invalid-name", input, loc(cx), msg);
    }
    seen.insert(name.to_string(), input);
    true
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_settings(cx: &mut Ctx, input: &Input, s: &Settings) {
    let mut seen = BTreeSet::new();
    for (i, e) in s.environments.iter().enumerate() {
        let loc = cx.at(input, &format!("/environments/{i}"));
        if !seen.insert(e.name()) {
            cx.error(
                "duplicate-name",
                input,
                loc,
                format!("environment `{}` is declared twice", e.name()),
            );
        }
        if !valid_name(e.name()) {
            cx.error(
                "invalid-name",
                input,
                loc,
                format!(
                    "environment name `{}` may only contain letters, digits, `-`, `_` and `.`",
                    e.name()
                ),
            );
        }
        if let crate::model::EnvironmentEntry::Detailed(d) = e
            && d.direct_commit
            && crate::model::is_production(&d.name)
        {
            let loc = cx.key_at(input, &format!("/environments/{i}"), "direct_commit");
            cx.warn(
                "production-direct-commit",
                input,
                loc,
                format!(
                    "`direct_commit` is ignored for `{}`: production always goes through review",
                    d.name
                ),
            );
        }
    }
    if s.environments.is_empty() {
        cx.error(
            "no-environments",
            input,
            cx.at(input, "/environments"),
            "at least one environment is needed",
        );
    }
}

/// A base path is `/` followed by non-empty segments, without a trailing slash, `.`/`..`
/// segments, query or fragment.
pub fn base_path_problem(p: &str) -> Option<&'static str> {
    if !p.starts_with('/') {
        return Some("must start with `/`");
    }
    if p.len() > 1 && p.ends_with('/') {
        return Some("must not end with `/`");
    }
    if p.contains("//") {
        return Some("must not contain empty segments (`//`)");
    }
    if p.contains(['?', '#', ' ', '\t', '*', '{', '}']) {
        return Some(
            "must be a literal path (no query, fragment, spaces, wildcards or parameters)",
        );
    }
    if p.split('/').any(|s| s == "." || s == "..") {
        return Some("must not contain `.` or `..` segments");
    }
    None
}

/// Whether `a` captures requests meant for `b` by path segment (`/api` captures `/api/v2`, not
/// `/apiv2`).
pub fn segment_prefix(a: &str, b: &str) -> bool {
    a == "/" || b == a || b.strip_prefix(a).is_some_and(|r| r.starts_with('/'))
}

fn check_service(
    cx: &mut Ctx,
    input: &Input,
    s: &ServiceSpec,
    specs: &BTreeMap<String, SpecFile>,
    spec_errors: &BTreeSet<&str>,
    services: &Names,
) {
    if s.workspace_id.trim().is_empty() {
        cx.error(
            "empty-field",
            input,
            cx.at(input, "/workspace_id"),
            "`workspace_id` is empty",
        );
    }
    if let Some(spec) = &s.spec {
        let loc = |cx: &Ctx| cx.at(input, "/spec");
        let normalized = crate::git::revision::normalize(spec);
        match normalized {
            Err(_) => {
                cx.error(
                    "unsafe-path",
                    input,
                    loc(cx),
                    format!("spec path `{spec}` leaves the repository"),
                )
                .hint = Some("write a repo-relative path such as `specs/payments.yaml`".into());
            }
            Ok(p) => {
                match specs.get(&p) {
                    None => {
                        let hint = suggest(&p, specs.keys().map(String::as_str)).or_else(|| {
                            (!p.starts_with("specs/"))
                                .then(|| "spec files live under `specs/`".to_string())
                        });
                        cx.error(
                            "spec-missing",
                            input,
                            loc(cx),
                            format!("spec `{spec}` does not exist in this revision"),
                        )
                        .hint = hint;
                    }
                    Some(f) if !f.document => {
                        cx.error("spec-invalid", input, loc(cx), format!("spec `{spec}` is not an OpenAPI document (no top-level `openapi` key)"));
                    }
                    Some(_) if spec_errors.contains(p.as_str()) => {
                        cx.error("spec-invalid", input, loc(cx), format!("spec `{spec}` does not parse (see the errors reported for that file)"));
                    }
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(u) = &s.upstream
        && !(u.starts_with("http://") || u.starts_with("https://"))
        && !u.starts_with("${")
    {
        cx.error(
            "invalid-url",
            input,
            cx.at(input, "/upstream"),
            format!("upstream `{u}` is not an http(s) URL"),
        );
    }
    if let Some(bp) = &s.base_path
        && let Some(why) = base_path_problem(bp)
    {
        cx.error(
            "invalid-base-path",
            input,
            cx.at(input, "/base_path"),
            format!("base_path `{bp}` {why}"),
        );
    }
    if let Some(c) = &s.chaos {
        check_chaos(cx, input, "/chaos", c);
    }
    for (name, value) in &s.upstream_headers {
        let ptr = format!(
            "/upstream_headers/{}",
            crate::schema_diff::openapi::load::escape_pointer(name)
        );
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            let loc = cx.key_at(input, "/upstream_headers", name);
            cx.error(
                "invalid-header",
                input,
                loc,
                format!("`{name}` is not a header name"),
            );
            continue;
        }
        let literal_credential = !crate::secret::has_references(value)
            && (super::inline_secrets::is_inline_secret(name, value)
                || ["authorization", "proxy-authorization", "cookie"]
                    .contains(&name.to_ascii_lowercase().as_str())
                || name.to_ascii_lowercase().contains("key")
                || name.to_ascii_lowercase().contains("token"));
        if literal_credential {
            let loc = cx.at(input, &ptr);
            let env = name.to_ascii_uppercase().replace(['-', '.'], "_");
            cx.error(
                "inline-secret",
                input,
                loc,
                format!("upstream header `{name}` holds a credential written in the repository"),
            )
            .hint = Some(format!(
                "reference it instead: `${{env:{env}}}` or `${{file:/run/secrets/{}}}`",
                env.to_ascii_lowercase()
            ));
        }
    }
    if let Some(p) = &s.probe {
        for (name, value) in &p.headers {
            let ptr = format!(
                "/probe/headers/{}",
                crate::schema_diff::openapi::load::escape_pointer(name)
            );
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                let loc = cx.key_at(input, "/probe/headers", name);
                cx.error(
                    "invalid-header",
                    input,
                    loc,
                    format!("`{name}` is not a header name"),
                );
                continue;
            }
            if !crate::secret::has_references(value) {
                let loc = cx.at(input, &ptr);
                let env = name.to_ascii_uppercase().replace(['-', '.'], "_");
                cx.error(
                    "inline-secret",
                    input,
                    loc,
                    format!(
                        "probe header `{name}` must be a secret reference, not a value written in the repository"
                    ),
                )
                .hint = Some(format!(
                    "reference it: `${{env:{env}}}` or `${{file:/run/secrets/{}}}`",
                    env.to_ascii_lowercase()
                ));
            }
        }
        if !(0.0..=1.0).contains(&p.jitter) {
            let loc = cx.at(input, "/probe/jitter");
            cx.error(
                "out-of-range",
                input,
                loc,
                format!("probe jitter {} is not between 0 and 1", p.jitter),
            );
        }
        if p.interval_seconds == 0 {
            let loc = cx.at(input, "/probe/interval_seconds");
            cx.error(
                "out-of-range",
                input,
                loc,
                "probe interval_seconds must be at least 1".to_string(),
            );
        }
    }
    for (i, dep) in s.dependencies.iter().enumerate() {
        let loc = |cx: &Ctx| cx.at(input, &format!("/dependencies/{i}"));
        if dep == &s.name {
            self_dependency(cx, input, loc(cx), dep);
        } else if !services.contains(dep) {
            let hint = suggest(dep, services.ordered.iter().copied());
            cx.error(
                "unknown-service",
                input,
                loc(cx),
                format!("dependency `{dep}` is not a service in services/"),
            )
            .hint = hint;
        }
    }
}

/// Finds a cycle in a dependency graph; returns it as `a -> b -> a`.
pub fn find_cycle(graph: &BTreeMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n, Mark::Visiting);
        stack.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if graph.contains_key(d)
                && let Some(c) = visit(d, graph, marks, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n, Mark::Done);
        None
    }
    let mut marks = HashMap::new();
    for n in graph.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(n, graph, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// The dependency graph of named services, without the edges from a service to itself (those
/// are reported where they are written, by `self_dependency`).
fn dependency_graph<'a>(
    services: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    services
        .into_iter()
        .map(|(name, deps)| {
            let deps = deps.iter().map(String::as_str).filter(|d| *d != name);
            (name, deps.collect())
        })
        .collect()
}

/// `dep` (a service's own name) in that service's dependencies.
fn self_dependency(cx: &mut Ctx, input: &Input, loc: Loc, dep: &str) {
    cx.error(
        "dependency-cycle",
        input,
        loc,
        format!("service `{dep}` depends on itself"),
    );
}

/// A cycle `find_cycle` found, reported at `loc` (where its first service is written).
fn cycle_error(cx: &mut Ctx, input: &Input, loc: Loc, cycle: &[String]) {
    cx.error(
        "dependency-cycle",
        input,
        loc,
        format!(
            "services depend on each other in a cycle: {}",
            cycle.join(" -> ")
        ),
    )
    .hint = Some("remove one of the dependencies to break the cycle".into());
}

fn check_dependency_cycles(cx: &mut Ctx, st: &DesiredState, inputs: &BTreeMap<String, &Input>) {
    let graph = dependency_graph(
        st.services
            .iter()
            .map(|(n, s)| (n.as_str(), s.spec.dependencies.as_slice())),
    );
    if let Some(cycle) = find_cycle(&graph)
        && let Some(input) = inputs.get(&cycle[0])
    {
        let loc = cx.at(input, "/dependencies");
        cycle_error(cx, input, loc, &cycle);
    }
}

fn check_federation(
    cx: &mut Ctx,
    input: &Input,
    f: &FederationSpec,
    services: &BTreeMap<String, Entity<ServiceSpec>>,
    invalid_services: &BTreeSet<String>,
) -> Federation {
    let mut members: Vec<FederatedService> = Vec::new();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    if f.services.is_empty() {
        cx.error(
            "empty-federation",
            input,
            cx.at(input, "/services"),
            "a federation needs at least one service",
        );
    }
    for (i, m) in f.services.iter().enumerate() {
        let ptr = format!("/services/{i}");
        if let Some(first) = seen.insert(&m.name, i) {
            let loc = cx.at(input, &format!("{ptr}/name"));
            cx.error(
                "duplicate-name",
                input,
                loc,
                format!(
                    "service `{}` appears twice in the federation (entries {} and {})",
                    m.name,
                    first + 1,
                    i + 1
                ),
            );
            continue;
        }
        let reference = m
            .service
            .clone()
            .or_else(|| m.workspace_id.is_none().then(|| m.name.clone()));
        let base = match &reference {
            Some(r) => match services.get(r) {
                Some(s) => Some(&s.spec),
                None if invalid_services.contains(r) => continue,
                None => {
                    let key = if m.service.is_some() {
                        "service"
                    } else {
                        "name"
                    };
                    let loc = cx.at(input, &format!("{ptr}/{key}"));
                    let hint = suggest(r, services.keys().map(String::as_str)).or_else(|| {
                        Some(format!("add `services/{r}.yaml`, or define the service inline with `workspace_id` and `base_path`"))
                    });
                    cx.error(
                        "unknown-service",
                        input,
                        loc,
                        format!("service `{r}` is not defined in services/"),
                    )
                    .hint = hint;
                    continue;
                }
            },
            None => None,
        };
        let workspace_id = m
            .workspace_id
            .clone()
            .or_else(|| base.map(|b| b.workspace_id.clone()))
            .unwrap_or_default();
        let base_path = m
            .base_path
            .clone()
            .or_else(|| base.and_then(|b| b.base_path.clone()));
        let Some(base_path) = base_path else {
            cx.error(
                "missing-field",
                input,
                cx.at(input, &ptr),
                format!("service `{}` has no `base_path`", m.name),
            )
            .hint = Some("set `base_path` here or in the service's file".into());
            continue;
        };
        if let Some(why) = base_path_problem(&base_path) {
            let loc = if m.base_path.is_some() {
                cx.at(input, &format!("{ptr}/base_path"))
            } else {
                cx.at(input, &ptr)
            };
            cx.error(
                "invalid-base-path",
                input,
                loc,
                format!("base_path `{base_path}` {why}"),
            );
            continue;
        }
        members.push(FederatedService {
            name: m.name.clone(),
            service: reference.clone(),
            workspace_id,
            base_path,
            reality_level: m
                .reality_level
                .or(base.map(|b| b.reality_level))
                .unwrap_or(crate::model::RealityLevel::MockV3),
            dependencies: m
                .dependencies
                .clone()
                .or_else(|| base.map(|b| b.dependencies.clone()))
                .unwrap_or_default(),
            config: m.config.clone(),
            chaos: merged_chaos(
                base.and_then(|b| b.chaos.as_ref()),
                m.chaos.as_ref(),
                m.config.get("failure_rate").and_then(Json::as_f64),
            ),
        });
        if let Some(c) = &m.chaos {
            check_chaos(cx, input, &format!("{ptr}/chaos"), c);
        }
        if let Some(rate) = m.config.get("failure_rate")
            && !rate.as_f64().is_some_and(|r| (0.0..=1.0).contains(&r))
        {
            let loc = cx.at(input, &format!("{ptr}/config/failure_rate"));
            cx.error(
                "invalid-chaos",
                input,
                loc,
                format!("`failure_rate` {rate} is not a number from 0 to 1"),
            );
        }
    }
    // Base paths: identical ones conflict; nested ones route by longest prefix (warned).
    let index_of = |name: &str| f.services.iter().position(|m| m.name == name).unwrap_or(0);
    for (a_i, a) in members.iter().enumerate() {
        for b in members.iter().skip(a_i + 1) {
            let loc = |cx: &Ctx| cx.at(input, &format!("/services/{}", index_of(&b.name)));
            if a.base_path == b.base_path {
                cx.error(
                    "base-path-conflict",
                    input,
                    loc(cx),
                    format!(
                        "services `{}` and `{}` both use base_path `{}`",
                        a.name, b.name, a.base_path
                    ),
                )
                .hint = Some("give each service its own path prefix".into());
            } else if segment_prefix(&a.base_path, &b.base_path)
                || segment_prefix(&b.base_path, &a.base_path)
            {
                let (outer, inner) = if segment_prefix(&a.base_path, &b.base_path) {
                    (a, b)
                } else {
                    (b, a)
                };
                cx.warn(
                    "base-path-overlap",
                    input,
                    loc(cx),
                    format!(
                        "base_path `{}` of `{}` is inside `{}` of `{}`",
                        inner.base_path, inner.name, outer.base_path, outer.name
                    ),
                )
                .hint = Some(format!(
                    "requests under `{}` go to `{}` (longest prefix wins); use disjoint prefixes if that is not intended",
                    inner.base_path, inner.name
                ));
            }
        }
    }
    let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
    for m in &members {
        let i = index_of(&m.name);
        for dep in &m.dependencies {
            if dep == &m.name {
                let loc = cx.at(input, &format!("/services/{i}/dependencies"));
                self_dependency(cx, input, loc, dep);
            } else if !names.contains(&dep.as_str()) {
                let loc = cx.at(input, &format!("/services/{i}/dependencies"));
                let hint = suggest(dep, names.iter().copied()).or_else(|| {
                    Some(format!(
                        "add `{dep}` to this federation's services, or remove the dependency"
                    ))
                });
                cx.error(
                    "unknown-dependency",
                    input,
                    loc,
                    format!(
                        "`{}` depends on `{dep}`, which is not in this federation",
                        m.name
                    ),
                )
                .hint = hint;
            }
        }
    }
    let graph = dependency_graph(
        members
            .iter()
            .map(|m| (m.name.as_str(), m.dependencies.as_slice())),
    );
    if let Some(cycle) = find_cycle(&graph) {
        let loc = cx.at(input, &format!("/services/{}", index_of(&cycle[0])));
        cycle_error(cx, input, loc, &cycle);
    }
    let mut hosts: Vec<String> = Vec::new();
    for (i, h) in f.hosts.iter().enumerate() {
        if let Some(why) = host_problem(h) {
            let loc = cx.at(input, &format!("/hosts/{i}"));
            cx.error("invalid-host", input, loc, format!("host `{h}` {why}"))
                .hint = Some("write a host name such as `shop.test` or `shop.test:8481`".into());
            continue;
        }
        let h = h.to_ascii_lowercase();
        if hosts.contains(&h) {
            let loc = cx.at(input, &format!("/hosts/{i}"));
            cx.error(
                "duplicate-host",
                input,
                loc,
                format!("host `{h}` is listed twice"),
            );
            continue;
        }
        hosts.push(h);
    }
    Federation {
        name: f.name.clone(),
        description: f.description.clone(),
        hosts,
        services: members,
    }
}

/// The gateway routes a gRPC call by its fully qualified service name, so within a
/// federation one member serves each name.
fn check_grpc_services(cx: &mut Ctx, st: &DesiredState, inputs: &BTreeMap<String, &Input>) {
    for (name, fed) in &st.federations {
        let Some(input) = inputs.get(name) else {
            continue;
        };
        let Some(Doc::Federation(raw)) = &input.parsed.doc else {
            continue;
        };
        let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
        for m in &fed.spec.services {
            let spec = st
                .services
                .get(m.service.as_ref().unwrap_or(&m.name))
                .and_then(|s| s.spec.spec.as_deref())
                .and_then(|p| crate::git::revision::normalize(p).ok())
                .and_then(|p| st.specs.get(&p));
            let Some(spec) = spec else { continue };
            for g in &spec.grpc_services {
                match owner.get(g.as_str()) {
                    Some(first) => {
                        let i = raw
                            .services
                            .iter()
                            .position(|x| x.name == m.name)
                            .unwrap_or(0);
                        let loc = cx.at(input, &format!("/services/{i}"));
                        cx.error(
                            "duplicate-grpc-service",
                            input,
                            loc,
                            format!(
                                "gRPC service `{g}` is served by both `{first}` and `{}` in this federation",
                                m.name
                            ),
                        )
                        .hint = Some(
                            "the gateway routes a gRPC call by its service name: keep one member per .proto service, or put the other in another federation".into(),
                        );
                    }
                    None => {
                        owner.insert(g.as_str(), m.name.as_str());
                    }
                }
            }
        }
    }
}

/// Why a `hosts:` entry is not a host name with an optional port, if it is not.
pub fn host_problem(h: &str) -> Option<&'static str> {
    if h.contains(['/', '@', '?', '#']) {
        return Some("is not a host name: write the name alone, without scheme, user or path");
    }
    let (name, port) = match h.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (h, None),
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return Some("has a port that is not a number from 1 to 65535");
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    (!valid).then_some("is not a host name (letters, digits, `-` and `.`, no scheme or path)")
}

/// The chaos settings of a member: the service's overridden field by field by the member's;
/// `failure_rate` (from the member's `config`) fills `error_rate` when neither sets it.
pub fn merged_chaos(
    service: Option<&ChaosSpec>,
    member: Option<&ChaosSpec>,
    failure_rate: Option<f64>,
) -> Option<ChaosSpec> {
    if service.is_none() && member.is_none() && failure_rate.is_none() {
        return None;
    }
    let s = service.cloned().unwrap_or_default();
    let m = member.cloned().unwrap_or_default();
    Some(ChaosSpec {
        seed: m.seed.or(s.seed),
        latency_ms: m.latency_ms.or(s.latency_ms),
        error_rate: m.error_rate.or(s.error_rate).or(failure_rate),
        error_statuses: m.error_statuses.or(s.error_statuses),
        drop_rate: m.drop_rate.or(s.drop_rate),
        slow_body_bytes_per_sec: m.slow_body_bytes_per_sec.or(s.slow_body_bytes_per_sec),
        over: m.over.or(s.over),
    })
}

/// Rates from 0 to 1, statuses from 400 to 599, latency ranges in order.
fn check_chaos(cx: &mut Ctx, input: &Input, ptr: &str, c: &ChaosSpec) {
    for (field, rate) in [("error_rate", c.error_rate), ("drop_rate", c.drop_rate)] {
        if let Some(r) = rate
            && !(0.0..=1.0).contains(&r)
        {
            let loc = cx.at(input, &format!("{ptr}/{field}"));
            cx.error(
                "invalid-chaos",
                input,
                loc,
                format!("`{field}` {r} is not from 0 to 1"),
            );
        }
    }
    for (i, st) in c.error_statuses.iter().flatten().enumerate() {
        if !(400..=599).contains(st) {
            let loc = cx.at(input, &format!("{ptr}/error_statuses/{i}"));
            cx.error(
                "invalid-chaos",
                input,
                loc,
                format!("error status {st} is not from 400 to 599"),
            );
        }
    }
    if c.error_statuses.as_ref().is_some_and(Vec::is_empty) {
        let loc = cx.at(input, &format!("{ptr}/error_statuses"));
        cx.error("invalid-chaos", input, loc, "`error_statuses` is empty");
    }
    let bad_range = match c.latency_ms {
        Some(ChaosLatency::Range { min, max }) => (min > max).then_some("`min` is above `max`"),
        Some(ChaosLatency::Percentiles { p50, p99 }) => {
            (p50 > p99 || p50 == 0).then_some("`p50` must be above 0 and at most `p99`")
        }
        _ => None,
    };
    if let Some(why) = bad_range {
        let loc = cx.at(input, &format!("{ptr}/latency_ms"));
        cx.error("invalid-chaos", input, loc, format!("`latency_ms`: {why}"));
    }
    if c.slow_body_bytes_per_sec == Some(0) {
        let loc = cx.at(input, &format!("{ptr}/slow_body_bytes_per_sec"));
        cx.error(
            "invalid-chaos",
            input,
            loc,
            "`slow_body_bytes_per_sec` must be above 0",
        );
    }
}

fn check_scenario(
    cx: &mut Ctx,
    input: &Input,
    s: &ScenarioSpec,
    st: &DesiredState,
    invalid_federations: &BTreeSet<String>,
    (env, personas): (&str, &BTreeSet<(String, String)>),
    declared_services: &BTreeSet<String>,
) {
    if let Some(p) = &s.persona
        && !personas.contains(&(env.to_string(), p.clone()))
    {
        let known = personas
            .iter()
            .filter(|(e, _)| e == env)
            .map(|(_, id)| id.as_str());
        let hint = suggest(p, known).or_else(|| {
            Some(format!(
                "personas are read from `environments/{env}/personas/<id>.yaml`"
            ))
        });
        cx.error(
            "unknown-persona",
            input,
            cx.at(input, "/persona"),
            format!("persona `{p}` is not defined in environment `{env}`"),
        )
        .hint = hint;
    }
    if s.steps.len() > crate::scenario::MAX_STEPS {
        cx.error(
            "too-many-steps",
            input,
            cx.at(input, "/steps"),
            format!(
                "scenario has {} steps; a scenario runs at most {}",
                s.steps.len(),
                crate::scenario::MAX_STEPS
            ),
        )
        .hint = Some("split it into several scenarios".into());
    }
    let fed = match &s.federation {
        Some(name) => match st.federations.get(name) {
            Some(f) => Some(&f.spec),
            None if invalid_federations.contains(name) => return,
            None => {
                let hint = suggest(name, st.federations.keys().map(String::as_str));
                cx.error(
                    "unknown-federation",
                    input,
                    cx.at(input, "/federation"),
                    format!("federation `{name}` is not defined in federations/"),
                )
                .hint = hint;
                return;
            }
        },
        None => None,
    };
    // Step names later steps may refer to, with what each saves.
    let mut earlier: Vec<(String, &indexmap::IndexMap<String, String>)> = Vec::new();
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for (i, step) in s.steps.iter().enumerate() {
        let step_ptr = format!("/steps/{i}");
        if let Some(id) = &step.step {
            if !valid_name(id) || id.chars().all(|c| c.is_ascii_digit()) {
                cx.error(
                    "invalid-name",
                    input,
                    cx.at(input, &format!("{step_ptr}/step")),
                    format!("step id `{id}` is not a valid name"),
                )
                .hint = Some(
                    "use letters, digits, `-` and `_`, starting with a letter (indexes name steps without an id)"
                        .into(),
                );
            } else if !ids.insert(id) {
                cx.error(
                    "duplicate-name",
                    input,
                    cx.at(input, &format!("{step_ptr}/step")),
                    format!("step id `{id}` is used by an earlier step"),
                )
                .hint = Some("step ids must be unique within a scenario".into());
            }
        }
        check_step_references(cx, input, &step_ptr, step, &earlier);
        for (name, pointer) in &step.save {
            if !crate::scenario::resolve::is_pointer(pointer) {
                cx.error(
                    "invalid-pointer",
                    input,
                    cx.at(input, &format!("{step_ptr}/save/{name}")),
                    format!("`save.{name}`: `{pointer}` is not a JSON pointer"),
                )
                .hint = Some(format!(
                    "write a pointer into the response body, such as `/{pointer}`"
                ));
            }
        }
        if let Some(e) = &step.expect {
            for pointer in e.body.keys() {
                if !crate::scenario::resolve::is_pointer(pointer) {
                    cx.error(
                        "invalid-pointer",
                        input,
                        cx.key_at(input, &format!("{step_ptr}/expect/body"), pointer),
                        format!("`expect.body`: `{pointer}` is not a JSON pointer"),
                    )
                    .hint = Some(format!(
                        "write a pointer into the response body, such as `/{pointer}`"
                    ));
                }
            }
        }
        if let Some(id) = &step.step {
            earlier.push((id.clone(), &step.save));
        }
        earlier.push((i.to_string(), &step.save));
        let Some(svc) = &step.service else {
            cx.error(
                "missing-service",
                input,
                cx.at(input, &step_ptr),
                "scenario step names no service",
            )
            .hint =
                Some("add `service: <name>`: the service of the federation the step calls".into());
            continue;
        };
        let member = match fed {
            Some(f) => f
                .services
                .iter()
                .find(|m| &m.name == svc)
                .map(|m| m.service.as_ref().unwrap_or(&m.name)),
            None => st.services.contains_key(svc).then_some(svc),
        };
        let Some(service_name) = member else {
            let known: Vec<&str> = match fed {
                Some(f) => f.services.iter().map(|m| m.name.as_str()).collect(),
                None => st.services.keys().map(String::as_str).collect(),
            };
            let loc = cx.at(input, &format!("{step_ptr}/service"));
            let scope = if fed.is_some() {
                "in the federation"
            } else {
                "in services/"
            };
            let hint = suggest(svc, known.iter().copied());
            cx.error(
                "unknown-service",
                input,
                loc,
                format!("scenario step names service `{svc}`, which is not {scope}"),
            )
            .hint = hint;
            continue;
        };
        let catalog = scenario_catalog(st, service_name);
        // A gRPC step's `status` is the call's status code.
        let grpc = step
            .action
            .as_deref()
            .and_then(|a| catalog.as_deref()?.find(a))
            .is_some_and(|o| o.grpc.is_some());
        if let Some(code) = step.expect.as_ref().and_then(|e| e.status) {
            let (range, what) = if grpc {
                (0..=16, "a gRPC status code (0 to 16)")
            } else {
                (100..=599, "an HTTP status (100 to 599)")
            };
            if !range.contains(&code) {
                cx.error(
                    "invalid-status",
                    input,
                    cx.at(input, &format!("{step_ptr}/expect/status")),
                    format!("`{code}` is not {what}"),
                )
                .hint = Some(format!("write {what}"));
            }
        }
        // A service file that does not load, or a spec that is missing or does not load, is
        // reported there: the step is not resolved against it.
        let has_spec = match st.services.get(service_name) {
            Some(e) => e.spec.spec.is_some(),
            None => declared_services.contains(service_name),
        };
        if catalog.is_none() && has_spec {
            continue;
        }
        if let Err(problems) = crate::scenario::resolve::plan(step, svc, catalog.as_deref()) {
            for p in problems {
                let ptr = format!("{step_ptr}{}", p.pointer);
                let loc = match p.pointer.strip_prefix('/') {
                    Some(key) if p.code == "unknown-step-key" => {
                        cx.key_at(input, &step_ptr, &key.replace("~1", "/").replace("~0", "~"))
                    }
                    _ => cx.at(input, &ptr),
                };
                // A service without a spec may be meant for explicit requests only: the
                // step is reported, and fails when run.
                let d = if p.code == "unresolved-action" {
                    cx.warn(p.code, input, loc, p.message)
                } else {
                    cx.error(p.code, input, loc, p.message)
                };
                d.hint = p.hint;
            }
        }
    }
}

/// The operations of the spec of service `name`, when it has a usable one.
fn scenario_catalog(
    st: &DesiredState,
    name: &str,
) -> Option<Arc<crate::scenario::catalog::Catalog>> {
    let path = st.services.get(name)?.spec.spec.as_deref()?;
    let normalized = crate::git::revision::normalize(path).ok()?;
    st.specs.get(&normalized)?.operations.clone()
}

/// Every string inside `v` with its JSON pointer.
fn string_leaves<'v>(ptr: &str, v: &'v Json, out: &mut Vec<(String, &'v str)>) {
    match v {
        Json::String(s) => out.push((ptr.to_string(), s)),
        Json::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_leaves(&format!("{ptr}/{i}"), item, out);
            }
        }
        Json::Object(m) => {
            for (k, item) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                string_leaves(&format!("{ptr}/{key}"), item, out);
            }
        }
        _ => {}
    }
}

/// `{{steps.<step>.<name>}}` in a step's values must name an earlier step and a value it saves.
fn check_step_references(
    cx: &mut Ctx,
    input: &Input,
    step_ptr: &str,
    step: &crate::model::ScenarioStep,
    earlier: &[(String, &indexmap::IndexMap<String, String>)],
) {
    use crate::scenario::resolve::{Reference, references};
    let mut values: Vec<(String, Json)> = step
        .params
        .iter()
        .map(|(k, v)| {
            let key = k.replace('~', "~0").replace('/', "~1");
            (format!("{step_ptr}/{key}"), v.clone())
        })
        .collect();
    if let Some(r) = &step.request
        && let Ok(v) = serde_json::to_value(r)
    {
        values.push((format!("{step_ptr}/request"), v));
    }
    if let Some(e) = &step.expect {
        values.push((
            format!("{step_ptr}/expect/body"),
            Json::Object(e.body.clone().into_iter().collect()),
        ));
    }
    let mut leaves = Vec::new();
    for (ptr, v) in &values {
        string_leaves(ptr, v, &mut leaves);
    }
    for (ptr, v) in leaves {
        let mut refs = Vec::new();
        references(&Json::String(v.to_string()), &mut refs);
        for r in refs {
            let problem = match &r {
                Reference::Unknown(inner) => Some((
                    format!("`{{{{{inner}}}}}` is not a value a scenario step can use"),
                    "write `{{steps.<step id or index>.<saved name>}}`".to_string(),
                )),
                Reference::Step { step: s, name } => match earlier.iter().find(|(id, _)| id == s) {
                    None => Some((
                        format!("`{{{{steps.{s}.{name}}}}}` names no earlier step"),
                        match did_you_mean(s, earlier.iter().map(|(id, _)| id.as_str())) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => "a step refers to steps before it, by their `step` id or index"
                                .into(),
                        },
                    )),
                    Some((_, saved)) if !saved.contains_key(name) => Some((
                        format!("`{{{{steps.{s}.{name}}}}}`: step `{s}` saves no `{name}`"),
                        match did_you_mean(name, saved.keys().map(String::as_str)) {
                            Some(c) => format!("did you mean `{c}`?"),
                            None => format!("add `save: {{{name}: /<pointer>}}` to step `{s}`"),
                        },
                    )),
                    Some(_) => None,
                },
            };
            if let Some((msg, hint)) = problem {
                cx.error("unknown-reference", input, cx.at(input, &ptr), msg)
                    .hint = Some(hint);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pipelines

fn parse_trigger_event(name: &str) -> Result<TriggerEvent, Option<&'static str>> {
    if let Some(e) = EventType::parse(name) {
        return Ok(TriggerEvent::Known(e));
    }
    let known = EventType::ALL.iter().map(|e| e.as_str());
    if let Some(close) = did_you_mean(name, known) {
        return Err(Some(close));
    }
    let well_formed = !name.is_empty()
        && name.contains('.')
        && name.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if well_formed {
        Ok(TriggerEvent::Custom(name.to_string()))
    } else {
        Err(None)
    }
}

fn check_pipeline(
    cx: &mut Ctx,
    input: &Input,
    p: &PipelineSpec,
    st: &DesiredState,
    workspaces: &BTreeSet<&str>,
    settings_broken: bool,
) {
    let def = &p.definition;
    if def.triggers.is_empty() {
        cx.error(
            "no-triggers",
            input,
            cx.at(input, "/definition/triggers"),
            "the pipeline has no triggers, so it can never run",
        )
        .hint = Some("add a trigger such as `- event: schema.changed`".into());
    }
    if def.steps.is_empty() {
        cx.error(
            "no-steps",
            input,
            cx.at(input, "/definition/steps"),
            "the pipeline has no steps",
        );
    }
    if let Some(ws) = &p.workspace_id
        && !workspaces.contains(ws.as_str())
    {
        let hint = suggest(ws, workspaces.iter().copied());
        cx.warn(
            "unknown-workspace",
            input,
            cx.at(input, "/workspace_id"),
            format!("workspace `{ws}` belongs to no service or federation"),
        )
        .hint = hint;
    }
    let mut events: Vec<TriggerEvent> = Vec::new();
    for (i, t) in def.triggers.iter().enumerate() {
        let ptr = format!("/definition/triggers/{i}");
        let ev = match parse_trigger_event(&t.event) {
            Ok(e) => e,
            Err(close) => {
                let loc = cx.at(input, &format!("{ptr}/event"));
                let hint = close.map(|c| format!("did you mean `{c}`?")).or_else(|| {
                    Some("known events: schema.changed, config.changed, scenario.published, scenario.completed|failed, persona.published, workspace.created, promotion.completed, drift.threshold_exceeded, pipeline.triggered|completed|failed; custom events are dotted names like `deploy.finished`".into())
                });
                cx.error(
                    "unknown-event",
                    input,
                    loc,
                    format!("unknown event `{}`", t.event),
                )
                .hint = hint;
                continue;
            }
        };
        if let TriggerEvent::Known(e) = &ev
            && e.is_pipeline_event()
            && !t.filters.contains_key("pipeline")
        {
            cx.warn("pipeline-loop", input, cx.at(input, &format!("{ptr}/event")), format!("`{}` without a `pipeline` filter also fires on this pipeline's own runs", t.event))
                .hint = Some("add `filters: {pipeline: <other pipeline>}`; a pipeline's own events never start it again, and chains of pipeline events stop after 3 runs".into());
        }
        for (key, value) in &t.filters {
            if !ev.carries(key) {
                let kloc = cx.key_at(input, &format!("{ptr}/filters"), key);
                let fields: Vec<&str> = match &ev {
                    TriggerEvent::Known(e) => e.fields().collect(),
                    TriggerEvent::Custom(_) => ENVELOPE_FIELDS.to_vec(),
                };
                let hint = suggest(key, fields.iter().copied())
                    .or_else(|| Some(format!("`{}` carries: {}", ev.as_str(), fields.join(", "))));
                cx.error(
                    "unknown-filter-field",
                    input,
                    kloc,
                    format!(
                        "`{}` events do not carry `{key}`, so this filter never matches",
                        ev.as_str()
                    ),
                )
                .hint = hint;
                continue;
            }
            if PATH_FIELDS.contains(&key.as_str()) {
                let vals: Vec<&crate::model::Scalar> = match value {
                    FilterValue::One(v) => vec![v],
                    FilterValue::AnyOf(vs) => vs.iter().collect(),
                };
                for v in vals {
                    if let crate::model::Scalar::Str(g) = v
                        && let Some(why) = cx.memo.glob_problem(g)
                    {
                        let loc = cx.at(input, &format!("{ptr}/filters/{key}"));
                        cx.error(
                            "invalid-glob",
                            input,
                            loc,
                            format!("`{g}` is not a valid glob: {why}"),
                        );
                    }
                }
            }
            if key == "schema_type" {
                let vals: Vec<&crate::model::Scalar> = match value {
                    FilterValue::One(v) => vec![v],
                    FilterValue::AnyOf(vs) => vs.iter().collect(),
                };
                for v in vals {
                    let ok = matches!(v, crate::model::Scalar::Str(s) if s == "openapi" || s == "protobuf");
                    if !ok {
                        let loc = cx.at(input, &format!("{ptr}/filters/{key}"));
                        cx.error(
                            "unknown-value",
                            input,
                            loc,
                            "`schema_type` is `openapi` or `protobuf`".to_string(),
                        );
                    }
                }
            }
        }
        events.push(ev);
    }

    // Steps.
    let mut step_names: Vec<(&str, StepType)> = Vec::new();
    let mut variables: BTreeSet<&str> = st.settings.variables.keys().map(String::as_str).collect();
    variables.extend(def.variables.keys().map(String::as_str));
    let env_names: Vec<&str> = st.settings.environments.iter().map(|e| e.name()).collect();
    for (i, step) in def.steps.iter().enumerate() {
        let ptr = format!("/definition/steps/{i}");
        if step.name.trim().is_empty() {
            cx.error(
                "empty-field",
                input,
                cx.at(input, &format!("{ptr}/name")),
                format!("`definition.steps[{i}].name` is empty"),
            )
            .hint = Some(format!(
                "name the step (e.g. `name: {}`); names are unique in the pipeline and later steps read its outputs as `{{{{steps.<name>.outputs…}}}}`",
                free_step_name(def, step.step_type, i)
            ));
        } else if step_names.iter().any(|(n, _)| *n == step.name) {
            cx.error(
                "duplicate-name",
                input,
                cx.at(input, &format!("{ptr}/name")),
                format!("step `{}` is defined twice", step.name),
            )
            .hint = Some(
                "step names are used in `{{steps.<name>.outputs…}}` and must be unique".into(),
            );
        }
        if step.timeout == Some(0) {
            cx.error(
                "out-of-range",
                input,
                cx.at(input, &format!("{ptr}/timeout")),
                "`timeout` must be at least 1 second",
            );
        }
        let tctx = TemplateCtx {
            settings_broken,
            events: &events,
            earlier: &step_names,
            variables: &variables,
        };
        let mut tptr = String::new();
        for (key, value) in &step.config {
            tptr.clear();
            tptr.push_str(&ptr);
            tptr.push_str("/config/");
            tptr.push_str(key);
            check_templates_in(cx, input, &mut tptr, value, &tctx);
        }
        if !settings_broken || step.step_type != StepType::Notify {
            check_step_config(
                cx,
                input,
                &ptr,
                step.step_type,
                &step.config,
                &events,
                &st.settings,
                &env_names,
                &step_names,
            );
        }
        step_names.push((&step.name, step.step_type));
    }
}

/// A name for the unnamed step `i` that no step of `def` has: its type, or its type and
/// position.
fn free_step_name(def: &crate::model::PipelineDefinition, ty: StepType, i: usize) -> String {
    let taken = |n: &str| def.steps.iter().any(|s| s.name == n);
    let plain = ty.as_str();
    if taken(plain) {
        format!("{plain}_{}", i + 1)
    } else {
        plain.to_string()
    }
}

struct TemplateCtx<'a> {
    settings_broken: bool,
    events: &'a [TriggerEvent],
    earlier: &'a [(&'a str, StepType)],
    variables: &'a BTreeSet<&'a str>,
}

/// Top-level names a template may use besides `event`, `steps` and `variables`.
const TEMPLATE_GLOBALS: &[&str] = &[
    "workspace_id",
    "workspace_name",
    "timestamp",
    "pipeline",
    "execution_id",
    "event",
    "steps",
    "variables",
];

/// Checks every template under `value`; `ptr` is its JSON pointer, extended in place for
/// nested values and restored before returning.
fn check_templates_in(
    cx: &mut Ctx,
    input: &Input,
    ptr: &mut String,
    value: &Json,
    tctx: &TemplateCtx,
) {
    use std::fmt::Write as _;
    let len = ptr.len();
    match value {
        Json::String(s) if s.contains("{{") || s.contains("{%") => {
            check_template(cx, input, ptr, s, tctx)
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let _ = write!(ptr, "/{i}");
                check_templates_in(cx, input, ptr, v, tctx);
                ptr.truncate(len);
            }
        }
        Json::Object(map) => {
            for (k, v) in map {
                ptr.push('/');
                for c in k.chars() {
                    match c {
                        '~' => ptr.push_str("~0"),
                        '/' => ptr.push_str("~1"),
                        c => ptr.push(c),
                    }
                }
                check_templates_in(cx, input, ptr, v, tctx);
                ptr.truncate(len);
            }
        }
        _ => {}
    }
}

fn check_template(cx: &mut Ctx, input: &Input, ptr: &str, text: &str, tctx: &TemplateCtx) {
    let loc = |cx: &Ctx| cx.at(input, ptr);
    let info = cx.memo.template(text);
    let used = match &*info {
        TemplateInfo::Uses(used) => used,
        TemplateInfo::Invalid(detail) => {
            cx.error(
                "template-syntax",
                input,
                loc(cx),
                format!("template does not parse: {detail}"),
            )
            .hint =
                Some("templates use `{{ name }}`; write `{{ '{{' }}` for a literal `{{`".into());
            return;
        }
    };
    for var in used {
        let mut parts = var.split('.');
        let head = parts.next().unwrap_or("");
        match head {
            "event" => {
                let Some(field) = parts.next() else { continue };
                for ev in tctx.events {
                    if !ev.carries(field) {
                        let fields: Vec<&str> = match ev {
                            TriggerEvent::Known(e) => e.fields().collect(),
                            TriggerEvent::Custom(_) => vec![],
                        };
                        let hint = suggest(field, fields.iter().copied()).or_else(|| {
                            Some(format!("`{}` carries: {}", ev.as_str(), fields.join(", ")))
                        });
                        cx.error("template-unknown-variable", input, loc(cx), format!("`{{{{event.{field}}}}}` names a field that `{}` events do not carry", ev.as_str())).hint = hint;
                    }
                }
            }
            "variables" => {
                let Some(name) = parts.next() else { continue };
                if !tctx.variables.contains(name) && !tctx.settings_broken {
                    let hint = suggest(name, tctx.variables.iter().copied()).or_else(|| {
                        Some(
                            "define it under `definition.variables` or `variables` in mockops.yaml"
                                .into(),
                        )
                    });
                    cx.error(
                        "template-unknown-variable",
                        input,
                        loc(cx),
                        format!("variable `{name}` is not defined"),
                    )
                    .hint = hint;
                }
            }
            "steps" => {
                let Some(step) = parts.next() else { continue };
                match tctx.earlier.iter().find(|(n, _)| *n == step) {
                    None => {
                        let hint =
                            suggest(step, tctx.earlier.iter().map(|(n, _)| *n)).or_else(|| {
                                Some("a step can use the outputs of the steps before it".into())
                            });
                        cx.error(
                            "template-unknown-variable",
                            input,
                            loc(cx),
                            format!("`steps.{step}` is not a step that runs before this one"),
                        )
                        .hint = hint;
                    }
                    Some((_, ty)) => {
                        let next = parts.next();
                        let key = parts.next();
                        if next != Some("outputs") {
                            cx.error(
                                "template-unknown-variable",
                                input,
                                loc(cx),
                                format!("write `steps.{step}.outputs.<key>`"),
                            );
                        } else if let Some(key) = key
                            && !ty.outputs().contains(&key)
                        {
                            let hint = suggest(key, ty.outputs().iter().copied()).or_else(|| {
                                Some(format!(
                                    "`{}` outputs: {}",
                                    ty.as_str(),
                                    ty.outputs().join(", ")
                                ))
                            });
                            cx.error(
                                "template-unknown-variable",
                                input,
                                loc(cx),
                                format!("`{}` steps have no output `{key}`", ty.as_str()),
                            )
                            .hint = hint;
                        }
                    }
                }
            }
            other if TEMPLATE_GLOBALS.contains(&other) => {}
            other => {
                let hint = suggest(other, TEMPLATE_GLOBALS.iter().copied())
                    .or_else(|| Some(format!("available: {}, event.<field>, steps.<name>.outputs.<key>, variables.<name>", TEMPLATE_GLOBALS[..5].join(", "))));
                cx.error(
                    "template-unknown-variable",
                    input,
                    loc(cx),
                    format!("`{other}` is not a template variable"),
                )
                .hint = hint;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_step_config(
    cx: &mut Ctx,
    input: &Input,
    ptr: &str,
    ty: StepType,
    config: &indexmap::IndexMap<String, Json>,
    events: &[TriggerEvent],
    settings: &Settings,
    envs: &[&str],
    earlier: &[(&str, StepType)],
) {
    let cptr = format!("{ptr}/config");
    let str_of = |k: &str| config.get(k).and_then(Json::as_str);
    match ty {
        StepType::RegenerateSdk => {
            if !config.contains_key("spec_path") {
                for ev in events {
                    if !ev.carries("spec_path") {
                        cx.error("missing-field", input, cx.at(input, &cptr), format!("`spec_path` is needed: `{}` events carry no spec path", ev.as_str()))
                            .hint = Some("set `spec_path`, or trigger on `schema.changed` whose spec is the default".into());
                    }
                }
            }
            if let Some(Json::Array(langs)) = config.get("languages") {
                let custom: Vec<&str> = config
                    .get("generators")
                    .and_then(Json::as_object)
                    .map(|m| m.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                if langs.is_empty() {
                    cx.error(
                        "too-few-items",
                        input,
                        cx.at(input, &format!("{cptr}/languages")),
                        "`languages` is empty",
                    );
                }
                for (i, l) in langs.iter().enumerate() {
                    let Some(l) = l.as_str() else { continue };
                    if l.contains("{{") || SDK_PRESETS.contains(&l) || custom.contains(&l) {
                        continue;
                    }
                    let loc = cx.at(input, &format!("{cptr}/languages/{i}"));
                    let hint = suggest(l, SDK_PRESETS.iter().copied()).or_else(|| {
                        Some(format!("presets: {}; for another language add `generators: {{{l}: {{command: [...]}}}}`", SDK_PRESETS.join(", ")))
                    });
                    cx.error(
                        "unknown-language",
                        input,
                        loc,
                        format!("no generator for language `{l}`"),
                    )
                    .hint = hint;
                }
            }
        }
        StepType::AutoPromote => {
            let from = str_of("from_environment");
            let to = str_of("to_environment");
            for (k, v) in [("from_environment", from), ("to_environment", to)] {
                if let Some(v) = v
                    && !v.contains("{{")
                    && !envs.contains(&v)
                {
                    let hint = suggest(v, envs.iter().copied())
                        .or_else(|| Some(format!("declared environments: {}", envs.join(", "))));
                    cx.error(
                        "unknown-environment",
                        input,
                        cx.at(input, &format!("{cptr}/{k}")),
                        format!("environment `{v}` is not declared"),
                    )
                    .hint = hint;
                }
            }
            if let (Some(f), Some(t)) = (from, to) {
                if f == t {
                    cx.error(
                        "invalid-promotion",
                        input,
                        cx.at(input, &format!("{cptr}/to_environment")),
                        "a promotion needs two different environments",
                    );
                } else if let (Some(fi), Some(ti)) = (
                    envs.iter().position(|e| *e == f),
                    envs.iter().position(|e| *e == t),
                ) {
                    if ti < fi {
                        cx.error(
                            "invalid-promotion",
                            input,
                            cx.at(input, &format!("{cptr}/to_environment")),
                            format!("promotion goes backwards: `{t}` comes before `{f}`"),
                        )
                        .hint = Some(format!(
                            "environments promote in order: {}",
                            envs.join(" -> ")
                        ));
                    } else if ti > fi + 1 {
                        cx.warn(
                            "promotion-skips-environment",
                            input,
                            cx.at(input, &format!("{cptr}/to_environment")),
                            format!(
                                "promotion from `{f}` to `{t}` skips {}",
                                envs[fi + 1..ti].join(", ")
                            ),
                        );
                    }
                }
            }
        }
        StepType::Notify => match str_of("type") {
            Some("slack")
                if !config.contains_key("slack_webhook_url") && settings.notify.slack.is_none() =>
            {
                cx.warn("missing-field", input, cx.at(input, &cptr), "no Slack webhook URL in the repository: the step posts to the daemon's own (MOCKOPS_SLACK_WEBHOOK_URL in its environment) and fails when the daemon has none")
                        .hint = Some("set `slack_webhook_url` in the step or `notify.slack.webhook_url` in mockops.yaml, written as `${env:SLACK_WEBHOOK_URL}` so the URL stays out of the repository".into());
            }
            Some("email") => {
                if !config.contains_key("smtp") && settings.notify.email.is_none() {
                    cx.error(
                        "missing-field",
                        input,
                        cx.at(input, &cptr),
                        "no SMTP server: set `smtp` or `notify.email.smtp` in mockops.yaml",
                    );
                }
                let has_to = ["to", "email_to"].iter().any(|k| {
                    config
                        .get(*k)
                        .and_then(Json::as_array)
                        .is_some_and(|a| !a.is_empty())
                }) || settings
                    .notify
                    .email
                    .as_ref()
                    .is_some_and(|e| !e.to.is_empty());
                if !has_to {
                    cx.error(
                        "missing-field",
                        input,
                        cx.at(input, &cptr),
                        "no recipients: set `to`",
                    );
                }
            }
            Some("webhook") => {
                let has_url = config.contains_key("webhook_url")
                    || config
                        .get("webhook_urls")
                        .and_then(Json::as_array)
                        .is_some_and(|a| !a.is_empty());
                if !has_url {
                    cx.error(
                        "missing-field",
                        input,
                        cx.at(input, &cptr),
                        "no webhook URL: set `webhook_url` or `webhook_urls`",
                    );
                }
            }
            _ => {}
        },
        StepType::CreatePr => {
            if let Some(Json::Array(files)) = config.get("files") {
                if files.is_empty() {
                    cx.error(
                        "too-few-items",
                        input,
                        cx.at(input, &format!("{cptr}/files")),
                        "`files` is empty: a pull request needs at least one change",
                    );
                }
                for (i, f) in files.iter().enumerate() {
                    let fptr = format!("{cptr}/files/{i}");
                    if let Some(path) = f.get("path").and_then(Json::as_str)
                        && !path.contains("{{")
                        && let Some(why) = unsafe_path(path)
                    {
                        cx.error(
                            "unsafe-path",
                            input,
                            cx.at(input, &format!("{fptr}/path")),
                            format!("file path `{path}` {why}"),
                        )
                        .hint = Some("write a path relative to the repository root".into());
                    }
                    let op = f
                        .get("operation")
                        .and_then(Json::as_str)
                        .unwrap_or("update");
                    let has_content = f.get("content").is_some()
                        || f.get("from_step").is_some()
                        || f.get("from_drift").is_some();
                    if op != "delete" && !has_content {
                        cx.error(
                            "missing-field",
                            input,
                            cx.at(input, &fptr),
                            format!("a `{op}` needs `content`, `from_step` or `from_drift`"),
                        );
                    }
                    if f.get("from_drift").is_none()
                        && f.get("path")
                            .and_then(Json::as_str)
                            .is_none_or(str::is_empty)
                    {
                        cx.error(
                            "missing-field",
                            input,
                            cx.at(input, &fptr),
                            "a file needs a `path` (only `from_drift` entries name none)",
                        );
                    }
                    if let Some(from) = f.get("from_step").and_then(Json::as_str)
                        && !earlier.iter().any(|(n, _)| *n == from)
                    {
                        let hint = suggest(from, earlier.iter().map(|(n, _)| *n)).or_else(|| {
                            Some("`from_step` names a step that runs before this one".into())
                        });
                        cx.error(
                            "unknown-step",
                            input,
                            cx.at(input, &format!("{fptr}/from_step")),
                            format!("`{from}` is not an earlier step"),
                        )
                        .hint = hint;
                    }
                }
            }
            if let Some(repo) = str_of("repository")
                && !repo.contains("{{")
                && repo_spec_problem(repo)
            {
                cx.error(
                    "invalid-repository",
                    input,
                    cx.at(input, &format!("{cptr}/repository")),
                    format!("`{repo}` is neither `OWNER/REPO` nor a Git URL"),
                );
            }
        }
    }
}

/// Why a path for a file operation is unsafe, if it is.
pub fn unsafe_path(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("is empty");
    }
    if path.starts_with('/') || path.starts_with('\\') || path.get(1..2) == Some(":") {
        return Some("is absolute");
    }
    let parts: Vec<&str> = path.split(['/', '\\']).collect();
    if parts.contains(&"..") {
        return Some("climbs out of the repository with `..`");
    }
    if parts.iter().any(|p| p.eq_ignore_ascii_case(".git")) {
        return Some("writes under `.git`");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    None
}

fn repo_spec_problem(repo: &str) -> bool {
    let is_url = repo.starts_with("https://")
        || repo.starts_with("http://")
        || repo.starts_with("ssh://")
        || repo.starts_with("git@")
        || repo.starts_with("file://");
    let is_slug = {
        let parts: Vec<&str> = repo.split('/').collect();
        parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            })
    };
    !(is_url || is_slug)
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_match_by_segment() {
        assert!(segment_prefix("/auth", "/auth/login"));
        assert!(!segment_prefix("/auth", "/authz"));
        assert!(segment_prefix("/", "/x"));
        assert_eq!(base_path_problem("/auth"), None);
        assert!(base_path_problem("auth").is_some());
        assert!(base_path_problem("/auth/").is_some());
        assert!(base_path_problem("/a//b").is_some());
        assert!(base_path_problem("/a/../b").is_some());
    }

    #[test]
    fn cycles_are_named() {
        let mut g: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        g.insert("a", vec!["b"]);
        g.insert("b", vec!["c"]);
        g.insert("c", vec!["a"]);
        assert_eq!(
            find_cycle(&g).map(|c| c.join(" -> ")).as_deref(),
            Some("a -> b -> c -> a")
        );
        g.insert("c", vec![]);
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn a_self_dependency_is_not_a_cycle_of_the_graph() {
        let a = vec!["a".to_string(), "b".to_string()];
        let b = vec!["b".to_string()];
        let g = dependency_graph([("a", a.as_slice()), ("b", b.as_slice())]);
        assert_eq!(g["a"], vec!["b"]);
        assert!(g["b"].is_empty());
        assert_eq!(find_cycle(&g), None);
    }

    #[test]
    fn unsafe_paths() {
        assert!(unsafe_path("../x").is_some());
        assert!(unsafe_path("/etc/passwd").is_some());
        assert!(unsafe_path(".git/config").is_some());
        assert!(unsafe_path("a/.GIT/hooks/x").is_some());
        assert_eq!(unsafe_path("sdk/index.ts"), None);
    }
}
