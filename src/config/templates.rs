//! Pipeline templates (`templates/<name>.yaml`): a pipeline with `definition.uses: <template>`
//! and `with: {<variable>: value}` is expanded at load time into an ordinary pipeline. The
//! template's steps run first (a template may itself use another, whose steps come before its
//! own), then the pipeline's; the template's triggers apply when the pipeline has none; the
//! template's variables, their defaults overridden by `with`, become the pipeline's
//! `variables` (under the pipeline's own), so `{{variables.<name>}}` in a template step is
//! rendered like any other template at run time. The pipeline's `step_defaults` apply to the
//! template's steps as to its own.
//!
//! The expansion is checked like any pipeline, on a YAML tree spliced from the pipeline's and
//! the templates' trees: the nodes of the `k`-th template of the chain carry their own lines
//! shifted by `(k + 1) * LINE_OFFSET`, so every diagnostic about them can be moved back to the
//! template's file and line ([`Expansion::origin`]) and also reported at the pipeline's
//! `uses`.

use std::sync::Arc;

use indexmap::IndexMap;
use serde_json::Value as Json;

use super::state::Input;
use super::yaml::{Loc, Node, Value};
use crate::model::{PipelineSpec, StepSpec, TemplateSpec, Trigger};

/// Lines of spliced template nodes are shifted by a multiple of this.
pub(crate) const LINE_OFFSET: u32 = 1 << 24;
/// Templates using templates, at most.
pub(crate) const MAX_DEPTH: usize = 8;

/// A template of the revision: its file and what it says.
#[derive(Clone, Copy)]
pub(crate) struct Template<'a> {
    pub input: &'a Input,
    pub spec: &'a TemplateSpec,
}

/// Why a pipeline cannot be expanded; each names where it is reported.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ExpandError {
    /// `uses` names no template. `by`: the chain index of the template that names it, or
    /// `None` for the pipeline itself.
    #[error("no template named `{name}`")]
    Unknown { name: String, by: Option<usize> },
    /// The chain comes back to a template it went through.
    #[error("template `{}` uses itself: {}", .cycle[0], .cycle.join(" -> "))]
    Cycle {
        cycle: Vec<String>,
        by: Option<usize>,
    },
    #[error("templates use templates more than {MAX_DEPTH} deep")]
    TooDeep,
    /// Variables of template `template` that have no default and no value.
    #[error("template `{template}` needs a value for {}", names(.missing))]
    Missing {
        template: String,
        missing: Vec<String>,
        by: Option<usize>,
    },
    /// `with` keys that are not variables of the template.
    #[error("template `{template}` has no variable `{name}`")]
    UnknownVariable {
        template: String,
        name: String,
        known: Vec<String>,
        by: Option<usize>,
    },
}

fn names(v: &[String]) -> String {
    v.iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A pipeline expanded from its templates.
pub(crate) struct Expansion<'a> {
    pub spec: PipelineSpec,
    /// The spliced tree the checks locate in.
    pub node: Node,
    /// The templates, from the one the pipeline uses to the deepest.
    pub chain: Vec<Template<'a>>,
}

impl Expansion<'_> {
    /// The template file and its location of a location in the spliced tree, when it is a
    /// template's.
    pub fn origin(&self, loc: Loc) -> Option<(&Input, Loc)> {
        let k = (loc.line / LINE_OFFSET) as usize;
        if k == 0 {
            return None;
        }
        let t = self.chain.get(k - 1)?;
        Some((t.input, Loc::new(loc.line % LINE_OFFSET, loc.column)))
    }

    /// A content id of the expansion's sources: the pipeline's blob and its templates'.
    pub fn blob(&self, pipeline_blob: &str) -> String {
        let mut b = pipeline_blob.to_string();
        for t in &self.chain {
            b.push('+');
            b.push_str(&t.input.blob);
        }
        b
    }
}

/// The chain of templates `first` leads to, `first` included.
pub(crate) fn chain<'a>(
    first: &str,
    find: &dyn Fn(&str) -> Option<Template<'a>>,
) -> Result<Vec<Template<'a>>, ExpandError> {
    let mut out: Vec<Template<'a>> = Vec::new();
    let mut next = Some(first.to_string());
    while let Some(name) = next {
        let by = out.len().checked_sub(1);
        if let Some(i) = out.iter().position(|t| t.spec.template == name) {
            let mut cycle: Vec<String> = out[i..].iter().map(|t| t.spec.template.clone()).collect();
            cycle.push(name);
            return Err(ExpandError::Cycle { cycle, by });
        }
        if out.len() == MAX_DEPTH {
            return Err(ExpandError::TooDeep);
        }
        let t = find(&name).ok_or(ExpandError::Unknown { name, by })?;
        next = t.spec.uses.clone();
        out.push(t);
    }
    Ok(out)
}

/// The variables of `t` with `with` applied: defaults overridden; unknown or missing ones are
/// errors.
fn resolve(
    t: &TemplateSpec,
    with: &IndexMap<String, Json>,
    by: Option<usize>,
) -> Result<IndexMap<String, Json>, ExpandError> {
    if let Some(name) = with.keys().find(|k| !t.variables.contains_key(*k)) {
        return Err(ExpandError::UnknownVariable {
            template: t.template.clone(),
            name: name.clone(),
            known: t.variables.keys().cloned().collect(),
            by,
        });
    }
    let mut out = IndexMap::new();
    let mut missing = Vec::new();
    for (k, default) in &t.variables {
        match with.get(k) {
            Some(v) => {
                out.insert(k.clone(), v.clone());
            }
            None if default.is_null() => missing.push(k.clone()),
            None => {
                out.insert(k.clone(), default.clone());
            }
        }
    }
    if !missing.is_empty() {
        return Err(ExpandError::Missing {
            template: t.template.clone(),
            missing,
            by,
        });
    }
    Ok(out)
}

/// Expands `p` (which uses a template) through `chain`; `node` is the pipeline's tree.
pub(crate) fn expand<'a>(
    p: &PipelineSpec,
    node: &Node,
    chain: Vec<Template<'a>>,
) -> Result<Expansion<'a>, ExpandError> {
    let def = &p.definition;
    // Variables: the deepest template's first, each shallower one over it, the pipeline's own
    // over all.
    let mut levels = Vec::with_capacity(chain.len());
    for (k, t) in chain.iter().enumerate() {
        let with = match k {
            0 => &def.with,
            _ => &chain[k - 1].spec.with,
        };
        levels.push(resolve(t.spec, with, k.checked_sub(1))?);
    }
    let mut variables = IndexMap::new();
    for level in levels.into_iter().rev() {
        variables.extend(level);
    }
    variables.extend(def.variables.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut steps: Vec<StepSpec> = Vec::new();
    let mut step_nodes: Vec<Node> = Vec::new();
    for (k, t) in chain.iter().enumerate().rev() {
        let shift = LINE_OFFSET * (k as u32 + 1);
        for s in &t.spec.steps {
            let mut s = s.clone();
            if let Some(defaults) = def.step_defaults.get(&s.step_type) {
                for (key, v) in defaults {
                    s.config.entry(key.clone()).or_insert_with(|| v.clone());
                }
            }
            steps.push(s);
        }
        let tnode = t.input.parsed.node.as_ref();
        for n in tnode
            .and_then(|n| n.get("steps"))
            .map_or(&[][..], Node::as_seq)
        {
            step_nodes.push(shifted(n, shift));
        }
    }
    steps.extend(def.steps.iter().cloned());
    let own_steps = node
        .get("definition")
        .and_then(|d| d.get("steps"))
        .map_or(&[][..], Node::as_seq);
    step_nodes.extend(own_steps.iter().cloned());

    let mut triggers: Vec<Trigger> = def.triggers.clone();
    let mut trigger_node = None;
    if triggers.is_empty()
        && let Some((k, t)) = chain
            .iter()
            .enumerate()
            .find(|(_, t)| !t.spec.triggers.is_empty())
    {
        triggers = t.spec.triggers.clone();
        trigger_node = t
            .input
            .parsed
            .node
            .as_ref()
            .and_then(|n| n.get("triggers"))
            .map(|n| shifted(n, LINE_OFFSET * (k as u32 + 1)));
    }

    let mut spec = p.clone();
    spec.definition.steps = steps;
    spec.definition.triggers = triggers;
    spec.definition.variables = variables;

    let mut node = node.clone();
    if let Value::Map(root) = &mut node.value
        && let Some((_, d)) = root.iter_mut().find(|(k, _)| k.name == "definition")
        && let Value::Map(def_entries) = &mut d.value
    {
        let def_loc = d.loc;
        set(def_entries, "steps", def_loc, Value::Seq(step_nodes));
        if let Some(t) = trigger_node {
            set(def_entries, "triggers", def_loc, t.value);
        }
    }
    Ok(Expansion { spec, node, chain })
}

/// Sets `key` of a mapping to `value` (added at `loc` when missing).
fn set(entries: &mut Vec<(super::yaml::Key, Node)>, key: &str, loc: Loc, value: Value) {
    match entries.iter_mut().find(|(k, _)| k.name == key) {
        Some((_, n)) => n.value = value,
        None => entries.push((
            super::yaml::Key {
                loc,
                name: key.to_string(),
            },
            Node { loc, value },
        )),
    }
}

/// A copy of `n` with every line shifted by `by`.
fn shifted(n: &Node, by: u32) -> Node {
    let loc = Loc::new(n.loc.line.saturating_add(by), n.loc.column);
    let value = match &n.value {
        Value::Seq(items) => Value::Seq(items.iter().map(|i| shifted(i, by)).collect()),
        Value::Map(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        super::yaml::Key {
                            loc: Loc::new(k.loc.line.saturating_add(by), k.loc.column),
                            name: k.name.clone(),
                        },
                        shifted(v, by),
                    )
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Node { loc, value }
}

/// The spliced tree of an expansion as a parsed file, for the pipeline checks.
pub(crate) fn as_input(input: &Input, x: &Expansion<'_>) -> Input {
    Input {
        path: input.path.clone(),
        blob: input.blob.clone(),
        class: input.class.clone(),
        parsed: Arc::new(super::state::ParsedFile {
            node: Some(x.node.clone()),
            doc: Some(super::state::Doc::Pipeline(Arc::new(x.spec.clone()))),
            diagnostics: Vec::new(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::state::{Doc, FileClass, ParsedFile};
    use crate::model::Kind;

    fn template_input(yaml: &str) -> Input {
        let node = crate::config::yaml::parse(yaml.as_bytes(), crate::config::yaml::Limits::CONFIG)
            .expect("yaml");
        let spec: TemplateSpec = serde_json::from_value(node.to_json()).expect("template");
        Input {
            path: format!("templates/{}.yaml", spec.template),
            blob: format!("blob-{}", spec.template),
            class: FileClass::Config(Kind::Template),
            parsed: Arc::new(ParsedFile {
                node: Some(node),
                doc: Some(Doc::Template(Arc::new(spec))),
                diagnostics: Vec::new(),
            }),
        }
    }

    fn spec(i: &Input) -> &TemplateSpec {
        match &i.parsed.doc {
            Some(Doc::Template(t)) => t,
            _ => panic!("a template"),
        }
    }

    fn pipeline(yaml: &str) -> (PipelineSpec, Node) {
        let node = crate::config::yaml::parse(yaml.as_bytes(), crate::config::yaml::Limits::CONFIG)
            .expect("yaml");
        (
            serde_json::from_value(node.to_json()).expect("pipeline"),
            node,
        )
    }

    #[test]
    fn chains_stop_at_cycles_unknown_names_and_depth() {
        let a = template_input("template: a\nuses: b\n");
        let b = template_input("template: b\nuses: a\n");
        let c = template_input("template: c\nuses: nope\n");
        let all = [&a, &b, &c];
        let find = |n: &str| {
            all.iter()
                .find(|i| spec(i).template == n)
                .map(|i| Template {
                    input: i,
                    spec: spec(i),
                })
        };
        assert_eq!(
            chain("a", &find).err(),
            Some(ExpandError::Cycle {
                cycle: vec!["a".into(), "b".into(), "a".into()],
                by: Some(1)
            })
        );
        assert_eq!(
            chain("c", &find).err(),
            Some(ExpandError::Unknown {
                name: "nope".into(),
                by: Some(0)
            })
        );
        assert_eq!(
            chain("x", &find).err(),
            Some(ExpandError::Unknown {
                name: "x".into(),
                by: None
            })
        );
    }

    #[test]
    fn expansion_orders_steps_merges_variables_and_locates_template_lines() {
        let base = template_input(
            "template: base\nvariables: {channel: '#ops'}\nsteps:\n  - {name: first, step_type: notify, config: {type: slack, message: a}}\n",
        );
        let sdk = template_input(
            "template: sdk\nuses: base\nwith: {channel: '#sdk'}\nvariables:\n  repo: null\n  lang: rust\ntriggers: [{event: schema.changed}]\nsteps:\n  - {name: second, step_type: notify, config: {type: slack, message: b}}\n",
        );
        let chain = vec![
            Template {
                input: &sdk,
                spec: spec(&sdk),
            },
            Template {
                input: &base,
                spec: spec(&base),
            },
        ];
        let (p, node) = pipeline(
            "name: p\ndefinition:\n  uses: sdk\n  with: {repo: acme/sdk}\n  step_defaults: {notify: {channels: ['#x']}}\n  steps:\n    - {name: third, step_type: notify, config: {type: slack, message: c}}\n",
        );
        let x = expand(&p, &node, chain.clone()).expect("expands");
        let names: Vec<&str> = x
            .spec
            .definition
            .steps
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["first", "second", "third"]);
        assert_eq!(x.spec.definition.triggers.len(), 1);
        let vars = &x.spec.definition.variables;
        assert_eq!(vars["channel"], "#sdk");
        assert_eq!(vars["repo"], "acme/sdk");
        assert_eq!(vars["lang"], "rust");
        // The pipeline's step defaults reach the template's steps.
        assert_eq!(
            x.spec.definition.steps[0].config["channels"],
            serde_json::json!(["#x"])
        );
        // The spliced tree locates each step in its own file.
        let first = x.node.locate("/definition/steps/0/name").loc;
        let (file, loc) = x.origin(first).expect("a template's line");
        assert_eq!((file.path.as_str(), loc.line), ("templates/base.yaml", 4));
        let second = x.node.locate("/definition/steps/1/name").loc;
        assert_eq!(
            x.origin(second).map(|(f, l)| (f.path.clone(), l.line)),
            Some(("templates/sdk.yaml".into(), 9))
        );
        let third = x.node.locate("/definition/steps/2/name").loc;
        assert!(x.origin(third).is_none());
        assert_eq!(third.line, 7);
        assert_eq!(x.blob("p1"), "p1+blob-sdk+blob-base");

        let (missing, node) = pipeline("name: p\ndefinition:\n  uses: sdk\n");
        assert_eq!(
            expand(&missing, &node, chain.clone()).err(),
            Some(ExpandError::Missing {
                template: "sdk".into(),
                missing: vec!["repo".into()],
                by: None
            })
        );
        let (unknown, node) =
            pipeline("name: p\ndefinition:\n  uses: sdk\n  with: {repo: r, langs: [go]}\n");
        assert!(matches!(
            expand(&unknown, &node, chain).err(),
            Some(ExpandError::UnknownVariable { name, by: None, .. }) if name == "langs"
        ));
    }
}
