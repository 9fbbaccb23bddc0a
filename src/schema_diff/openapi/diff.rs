//! The OpenAPI comparison: operations, parameters, request bodies, responses, headers,
//! security, and schemas, classified with oasdiff's rule ids. A schema reached through the
//! same `$ref` on both sides is compared once, as a unit, and its changes carry every
//! operation that reaches it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::load::{Spec, escape_pointer, ref_of};
use super::ops::{Operation, operations, path_param_names};
use super::reach::{Reach, compute};
use crate::schema_diff::{Change, Direction, Level};

/// Deepest schema nesting compared (a guard; real descriptions stay far below).
const MAX_DEPTH: usize = 96;

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Side {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Scope {
    Parameter,
    Body,
    Header,
}

/// Who a change concerns: one operation, or every operation reaching a unit.
#[derive(Debug, Clone)]
enum Reached {
    Ops(Vec<String>),
    Unit(String, Side),
}

struct Pending {
    change: Change,
    reached: Reached,
}

/// Where the schema walk is.
#[derive(Clone)]
struct Ctx {
    side: Side,
    scope: Scope,
    /// At the root of a body/parameter/header schema (not inside a property).
    root: bool,
    location: String,
    /// Property path for messages (`data/items/code`), empty at the root.
    prop: String,
    /// What the root is called in messages (`request body`, `query parameter \`limit\``,
    /// `schema \`Pet\``).
    subject: String,
    reached: Reached,
    old_file: String,
    new_file: String,
    depth: usize,
    /// Nullability at this level was already compared (a `{type: null}` union was unwrapped).
    skip_nullable: bool,
    /// Inside a property that this side never carries (readOnly in a request, writeOnly in a
    /// response): its changes cannot break that side.
    exempt: bool,
}

impl Ctx {
    fn prefix(&self) -> &'static str {
        match (self.side, self.scope, self.root) {
            (Side::Request, Scope::Parameter | Scope::Header, _) => "request-parameter",
            (Side::Request, Scope::Body, true) => "request-body",
            (Side::Request, Scope::Body, false) => "request-property",
            (Side::Response, Scope::Body, true) => "response-body",
            (Side::Response, Scope::Body, false) => "response-property",
            (Side::Response, Scope::Header | Scope::Parameter, _) => "response-header",
        }
    }

    fn direction(&self) -> Direction {
        match self.side {
            Side::Request => Direction::Request,
            Side::Response => Direction::Response,
        }
    }

    /// `the \`code\` response property of schema \`Error\``, or the subject at the root.
    fn what(&self) -> String {
        if self.prop.is_empty() {
            self.subject.clone()
        } else {
            format!("the {}", self.prop_desc())
        }
    }

    /// `\`code\` response property of schema \`Error\``.
    fn prop_desc(&self) -> String {
        let side = match self.side {
            Side::Request => "request",
            Side::Response => "response",
        };
        match (self.scope, &self.reached) {
            (Scope::Body, Reached::Unit(..)) => {
                format!("`{}` {side} property of {}", self.prop, self.subject)
            }
            (Scope::Body, Reached::Ops(_)) => format!("`{}` {side} property", self.prop),
            _ => format!("`{}` property of {}", self.prop, self.subject),
        }
    }

    fn child(&self, loc: &str, prop: Option<&str>) -> Ctx {
        let mut c = self.clone();
        c.location.push('/');
        c.location.push_str(loc);
        if let Some(p) = prop {
            if !c.prop.is_empty() {
                c.prop.push('/');
            }
            c.prop.push_str(p);
            c.root = false;
        }
        c.depth += 1;
        c.skip_nullable = false;
        c
    }
}

/// Compares two loaded descriptions. Changes are sorted by level (most severe first), then
/// location and rule id.
pub fn diff(old: &Spec, new: &Spec) -> Vec<Change> {
    let d = Differ {
        old,
        new,
        pending: Vec::new(),
        queued: HashSet::new(),
        queue: Vec::new(),
        stack: HashSet::new(),
    };
    // Reachability does not depend on the comparison: compute it alongside.
    let (pending, (old_reach, new_reach)) = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .stack_size(super::load::WALK_STACK_BYTES)
            .spawn_scoped(s, move || {
                let mut d = d;
                d.run();
                d.pending
            })
            .expect("spawning a thread succeeds");
        let reach = (compute(old), compute(new));
        (h.join().expect("the comparison does not panic"), reach)
    });
    finish(pending, &old_reach, &new_reach, old, new)
}

fn finish(
    pending: Vec<Pending>,
    old_reach: &Reach,
    new_reach: &Reach,
    old: &Spec,
    new: &Spec,
) -> Vec<Change> {
    // Display names: the new spec's spelling of a path wins over the old one.
    let mut names: HashMap<String, String> = HashMap::new();
    for op in operations(old) {
        names.insert(op.id.clone(), op.display());
    }
    for op in operations(new) {
        names.insert(op.id.clone(), op.display());
    }
    let mut cache: HashMap<(String, Side), Vec<String>> = HashMap::new();
    let out: Vec<Change> = pending
        .into_iter()
        .map(|p| {
            let mut change = p.change;
            change.operations = match p.reached {
                Reached::Ops(ops) => ops,
                Reached::Unit(key, side) => cache
                    .entry((key.clone(), side))
                    .or_insert_with(|| {
                        let req = side == Side::Request;
                        let set: BTreeSet<String> = old_reach
                            .operations(&key, req)
                            .chain(new_reach.operations(&key, req))
                            .map(|id| names.get(id).cloned().unwrap_or_else(|| id.to_string()))
                            .collect();
                        set.into_iter().collect()
                    })
                    .clone(),
            };
            change
        })
        .collect();
    // Changes that are the same finding reached from several operations (a path-level
    // parameter) become one change listing all of them.
    let mut merged: indexmap::IndexMap<(String, Level, Direction, String, String), Vec<String>> =
        indexmap::IndexMap::new();
    for c in out {
        merged
            .entry((c.id, c.level, c.direction, c.location, c.message))
            .or_default()
            .extend(c.operations);
    }
    let mut out: Vec<Change> = merged
        .into_iter()
        .map(
            |((id, level, direction, location, message), mut operations)| {
                operations.sort();
                operations.dedup();
                Change {
                    id,
                    level,
                    direction,
                    location,
                    message,
                    operations,
                }
            },
        )
        .collect();
    out.sort_by(|a, b| {
        b.level
            .cmp(&a.level)
            .then_with(|| a.location.cmp(&b.location))
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.message.cmp(&b.message))
    });
    out.dedup();
    out
}

struct Differ<'s> {
    old: &'s Spec,
    new: &'s Spec,
    pending: Vec<Pending>,
    queued: HashSet<(String, Side, Scope)>,
    queue: Vec<(String, Side, Scope)>,
    /// Pairs of `$ref` keys being compared (cycle guard for recursive schemas).
    stack: HashSet<(String, String)>,
}

fn op_location(path: &str, method: &str) -> String {
    format!("#/paths/{}/{method}", escape_pointer(path))
}

fn is_success(status: &str) -> bool {
    status.starts_with('2')
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

fn bool_of(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'s> Differ<'s> {
    fn emit(
        &mut self,
        id: String,
        level: Level,
        direction: Direction,
        location: String,
        message: String,
        reached: Reached,
    ) {
        self.pending.push(Pending {
            change: Change {
                id,
                level,
                direction,
                location,
                message,
                operations: Vec::new(),
            },
            reached,
        });
    }

    fn emit_schema(&mut self, ctx: &Ctx, rule: &str, level: Level, message: String) {
        let mut id = match rule.strip_prefix('!') {
            Some(own) => own.to_string(),
            None => format!("{}-{rule}", ctx.prefix()),
        };
        let mut level = level;
        if ctx.exempt {
            // oasdiff's `request-read-only-property-*` / `response-write-only-property-*`.
            level = Level::Info;
            if let Some(rest) = id.strip_prefix("request-property-") {
                id = format!("request-read-only-property-{rest}");
            } else if let Some(rest) = id.strip_prefix("response-property-") {
                id = format!("response-write-only-property-{rest}");
            }
        }
        self.emit(
            id,
            level,
            ctx.direction(),
            ctx.location.clone(),
            message,
            ctx.reached.clone(),
        );
    }

    /// Resolves a value that may be a `$ref` (in `file`) on the old or new side.
    fn resolve(
        &self,
        new_side: bool,
        file: &str,
        v: &'s Value,
    ) -> (&'s Value, String, Option<String>) {
        let spec = if new_side { self.new } else { self.old };
        if let Some(r) = v.as_object().and_then(ref_of).and_then(Value::as_str)
            && let Some(t) = spec.ref_target(file, r)
            && let Some((target, resolved)) = spec.lookup(&t)
        {
            return (target, resolved.file.clone(), Some(resolved.key));
        }
        (v, file.to_string(), None)
    }

    fn run(&mut self) {
        self.diff_paths();
        self.diff_global_security();
        self.diff_security_schemes();
        self.diff_components();
        self.diff_webhooks();
        while let Some((key, side, scope)) = self.queue.pop() {
            self.diff_unit(&key, side, scope);
        }
    }

    fn diff_unit(&mut self, key: &str, side: Side, scope: Scope) {
        let (ot, nt) = (self.old.key_target(key), self.new.key_target(key));
        let (Some((ov, ot)), Some((nv, nt))) = (self.old.lookup(&ot), self.new.lookup(&nt)) else {
            return;
        };
        let name = key.rsplit('/').next().unwrap_or(key);
        let ctx = Ctx {
            side,
            scope,
            root: false,
            location: key.to_string(),
            prop: String::new(),
            subject: format!("schema `{name}`"),
            reached: Reached::Unit(key.to_string(), side),
            old_file: ot.file.clone(),
            new_file: nt.file.clone(),
            depth: 0,
            skip_nullable: false,
            exempt: false,
        };
        self.stack.insert((key.to_string(), key.to_string()));
        self.compare_schemas(&ctx, ov, nv);
        self.stack.remove(&(key.to_string(), key.to_string()));
    }

    // ---- operations -------------------------------------------------------------------

    fn diff_paths(&mut self) {
        let old_ops = operations(self.old);
        let new_ops = operations(self.new);
        let new_by_id: BTreeMap<&str, &Operation> =
            new_ops.iter().map(|o| (o.id.as_str(), o)).collect();
        let old_by_id: BTreeMap<&str, &Operation> =
            old_ops.iter().map(|o| (o.id.as_str(), o)).collect();
        let new_paths: HashSet<String> = new_ops
            .iter()
            .map(|o| super::ops::normalize_path(&o.path))
            .collect();
        for o in &old_ops {
            match new_by_id.get(o.id.as_str()) {
                Some(n) => self.diff_operation(o, n),
                None => {
                    let deprecated = bool_of(o.value, "deprecated");
                    let path_gone = !new_paths.contains(&super::ops::normalize_path(&o.path));
                    let (id, level) = match (path_gone, deprecated) {
                        (true, false) => ("api-path-removed-without-deprecation", Level::Err),
                        (true, true) => ("api-path-removed-with-deprecation", Level::Info),
                        (false, false) => ("api-removed-without-deprecation", Level::Err),
                        (false, true) => ("api-removed-with-deprecation", Level::Info),
                    };
                    let what = if path_gone {
                        "path and endpoint"
                    } else {
                        "endpoint"
                    };
                    let dep = if deprecated {
                        "after deprecation"
                    } else {
                        "without deprecation"
                    };
                    self.emit(
                        id.into(),
                        level,
                        Direction::None,
                        op_location(&o.path, o.method),
                        format!("removed the {what} `{}` {dep}", o.display()),
                        Reached::Ops(vec![o.display()]),
                    );
                }
            }
        }
        for n in &new_ops {
            if !old_by_id.contains_key(n.id.as_str()) {
                self.emit(
                    "endpoint-added".into(),
                    Level::Info,
                    Direction::None,
                    op_location(&n.path, n.method),
                    format!("added the endpoint `{}`", n.display()),
                    Reached::Ops(vec![n.display()]),
                );
            }
        }
    }

    fn diff_operation(&mut self, o: &Operation<'s>, n: &Operation<'s>) {
        let name = n.display();
        let loc = op_location(&n.path, n.method);
        let ops = || Reached::Ops(vec![name.clone()]);
        match (
            bool_of(o.value, "deprecated"),
            bool_of(n.value, "deprecated"),
        ) {
            (false, true) => self.emit(
                "endpoint-deprecated".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("endpoint `{name}` deprecated"),
                ops(),
            ),
            (true, false) => self.emit(
                "endpoint-reactivated".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("endpoint `{name}` reactivated"),
                ops(),
            ),
            _ => {}
        }
        match (
            str_of(o.value, "operationId"),
            str_of(n.value, "operationId"),
        ) {
            (Some(a), Some(b)) if a != b => {
                self.emit(
                    "api-operation-id-removed".into(),
                    Level::Info,
                    Direction::None,
                    loc.clone(),
                    format!("operation id changed from `{a}` to `{b}`"),
                    ops(),
                );
            }
            (Some(a), None) => self.emit(
                "api-operation-id-removed".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("removed operation id `{a}`"),
                ops(),
            ),
            (None, Some(b)) => self.emit(
                "api-operation-id-added".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("added operation id `{b}`"),
                ops(),
            ),
            _ => {}
        }
        let tags = |v: &Value| -> BTreeSet<String> {
            v.get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let (ot, nt) = (tags(o.value), tags(n.value));
        for t in ot.difference(&nt) {
            self.emit(
                "api-tag-removed".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("removed the tag `{t}`"),
                ops(),
            );
        }
        for t in nt.difference(&ot) {
            self.emit(
                "api-tag-added".into(),
                Level::Info,
                Direction::None,
                loc.clone(),
                format!("added the tag `{t}`"),
                ops(),
            );
        }
        self.diff_parameters(o, n, &name, &loc);
        self.diff_request_body(o, n, &name, &loc);
        self.diff_responses(o, n, &name, &loc);
        self.diff_op_security(o, n, &name, &loc);
    }

    /// Effective parameters keyed by (in, name); path parameters keyed by their position in
    /// the template so a renamed path parameter is the same parameter.
    fn params(
        &self,
        new_side: bool,
        op: &Operation<'s>,
    ) -> BTreeMap<String, (&'s Value, String, String, bool)> {
        let positions: Vec<&str> = path_param_names(&op.path);
        let mut out = BTreeMap::new();
        for (i, p) in op.parameters.iter().enumerate() {
            let (v, file, _) = self.resolve(new_side, &op.file, p);
            let (Some(pin), Some(pname)) = (str_of(v, "in"), str_of(v, "name")) else {
                continue;
            };
            let key = match pin {
                "path" => match positions.iter().position(|x| *x == pname) {
                    Some(i) => format!("path#{i}"),
                    None => format!("path:{pname}"),
                },
                "header" => format!("header:{}", pname.to_ascii_lowercase()),
                _ => format!("{pin}:{pname}"),
            };
            // Operation-level parameters come later and override path-level ones.
            out.insert(key, (v, file, pname.to_string(), i < op.path_level));
        }
        out
    }

    fn diff_parameters(&mut self, o: &Operation<'s>, n: &Operation<'s>, name: &str, loc: &str) {
        let op_ = self.params(false, o);
        let np = self.params(true, n);
        let ops = || Reached::Ops(vec![name.to_string()]);
        // A parameter declared on the path item is located there, so its changes (identical
        // for every operation of the path) merge into one change listing those operations.
        let path_loc = format!("#/paths/{}", escape_pointer(&n.path));
        let old_path_loc = format!("#/paths/{}", escape_pointer(&o.path));
        for (key, (ov, ofile, oname, o_from_path)) in &op_ {
            let pin = str_of(ov, "in").unwrap_or("query");
            let base = if *o_from_path { &old_path_loc } else { loc };
            let ploc = format!("{base}/parameters/{pin}/{}", escape_pointer(oname));
            let Some((nv, nfile, nname, n_from_path)) = np.get(key) else {
                let (id, level) = if bool_of(ov, "deprecated") {
                    ("request-parameter-removed-with-deprecation", Level::Info)
                } else {
                    ("request-parameter-removed", Level::Warn)
                };
                self.emit(
                    id.into(),
                    level,
                    Direction::Request,
                    ploc,
                    format!("removed the {pin} request parameter `{oname}`"),
                    ops(),
                );
                continue;
            };
            let base = if *n_from_path { &path_loc } else { loc };
            let ploc = format!("{base}/parameters/{pin}/{}", escape_pointer(nname));
            let oreq = pin == "path" || bool_of(ov, "required");
            let nreq = pin == "path" || bool_of(nv, "required");
            if !oreq && nreq {
                self.emit(
                    "request-parameter-became-required".into(),
                    Level::Err,
                    Direction::Request,
                    ploc.clone(),
                    format!("the {pin} request parameter `{nname}` became required"),
                    ops(),
                );
            } else if oreq && !nreq {
                self.emit(
                    "request-parameter-became-optional".into(),
                    Level::Info,
                    Direction::Request,
                    ploc.clone(),
                    format!("the {pin} request parameter `{nname}` became optional"),
                    ops(),
                );
            }
            match (bool_of(ov, "deprecated"), bool_of(nv, "deprecated")) {
                (false, true) => self.emit(
                    "request-parameter-deprecated".into(),
                    Level::Info,
                    Direction::Request,
                    ploc.clone(),
                    format!("the {pin} request parameter `{nname}` was deprecated"),
                    ops(),
                ),
                (true, false) => self.emit(
                    "request-parameter-reactivated".into(),
                    Level::Info,
                    Direction::Request,
                    ploc.clone(),
                    format!("the {pin} request parameter `{nname}` was reactivated"),
                    ops(),
                ),
                _ => {}
            }
            let schema_of = |v: &'s Value| -> Option<(&'s Value, String)> {
                if let Some(s) = v.get("schema") {
                    return Some((s, "schema".into()));
                }
                let (mt, media) = v.get("content")?.as_object()?.iter().next()?;
                Some((
                    media.get("schema")?,
                    format!("content/{}/schema", escape_pointer(mt)),
                ))
            };
            if let (Some((os, _)), Some((ns, nsloc))) = (schema_of(ov), schema_of(nv)) {
                let ctx = Ctx {
                    side: Side::Request,
                    scope: Scope::Parameter,
                    root: true,
                    location: format!("{ploc}/{nsloc}"),
                    prop: String::new(),
                    subject: format!("the {pin} request parameter `{nname}`"),
                    reached: ops(),
                    old_file: ofile.clone(),
                    new_file: nfile.clone(),
                    depth: 0,
                    skip_nullable: false,
                    exempt: false,
                };
                self.diff_schema(&ctx, os, ns);
            }
        }
        for (key, (nv, _, nname, n_from_path)) in &np {
            if op_.contains_key(key) {
                continue;
            }
            let pin = str_of(nv, "in").unwrap_or("query");
            let base = if *n_from_path { &path_loc } else { loc };
            let ploc = format!("{base}/parameters/{pin}/{}", escape_pointer(nname));
            let required = bool_of(nv, "required");
            let (id, level, what) = match (pin, required, *n_from_path) {
                ("path", _, _) => ("new-request-path-parameter", Level::Err, "path"),
                (_, true, true) => (
                    "new-required-request-default-parameter-to-existing-path",
                    Level::Err,
                    "required",
                ),
                (_, false, true) => (
                    "new-optional-request-default-parameter-to-existing-path",
                    Level::Info,
                    "optional",
                ),
                (_, true, false) => ("new-required-request-parameter", Level::Err, "required"),
                (_, false, false) => ("new-optional-request-parameter", Level::Info, "optional"),
            };
            self.emit(
                id.into(),
                level,
                Direction::Request,
                ploc,
                format!("added the new {what} {pin} request parameter `{nname}`"),
                ops(),
            );
        }
    }

    fn diff_request_body(&mut self, o: &Operation<'s>, n: &Operation<'s>, name: &str, loc: &str) {
        let ops = || Reached::Ops(vec![name.to_string()]);
        let bloc = format!("{loc}/requestBody");
        let ob = o
            .value
            .get("requestBody")
            .map(|b| self.resolve(false, &o.file, b));
        let nb = n
            .value
            .get("requestBody")
            .map(|b| self.resolve(true, &n.file, b));
        let (ob, nb) = match (ob, nb) {
            (None, None) => return,
            (Some(_), None) => {
                self.emit(
                    "request-body-removed".into(),
                    Level::Err,
                    Direction::Request,
                    bloc,
                    "removed the request body".into(),
                    ops(),
                );
                return;
            }
            (None, Some((nb, _, _))) => {
                let (id, level, what) = if bool_of(nb, "required") {
                    ("request-body-added-required", Level::Err, "required")
                } else {
                    ("request-body-added-optional", Level::Info, "optional")
                };
                self.emit(
                    id.into(),
                    level,
                    Direction::Request,
                    bloc,
                    format!("added a {what} request body"),
                    ops(),
                );
                return;
            }
            (Some(o), Some(n)) => (o, n),
        };
        match (bool_of(ob.0, "required"), bool_of(nb.0, "required")) {
            (false, true) => self.emit(
                "request-body-became-required".into(),
                Level::Err,
                Direction::Request,
                bloc.clone(),
                "the request body became required".into(),
                ops(),
            ),
            (true, false) => self.emit(
                "request-body-became-optional".into(),
                Level::Info,
                Direction::Request,
                bloc.clone(),
                "the request body became optional".into(),
                ops(),
            ),
            _ => {}
        }
        self.diff_content(Side::Request, ob, nb, &bloc, ops(), "request body".into());
    }

    /// Media types of a request body or response, and their schemas.
    fn diff_content(
        &mut self,
        side: Side,
        (ov, ofile, _): (&'s Value, String, Option<String>),
        (nv, nfile, _): (&'s Value, String, Option<String>),
        loc: &str,
        reached: Reached,
        subject: String,
    ) {
        let empty: &'static Map<String, Value> = &EMPTY;
        let oc = ov
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        let nc = nv
            .get("content")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        let (dir, prefix) = match side {
            Side::Request => (Direction::Request, "request-body"),
            Side::Response => (Direction::Response, "response"),
        };
        for (mt, omedia) in oc {
            let mloc = format!("{loc}/content/{}", escape_pointer(mt));
            let Some(nmedia) = nc.get(mt) else {
                self.emit(
                    format!("{prefix}-media-type-removed"),
                    Level::Err,
                    dir,
                    mloc,
                    format!("removed the media type `{mt}` from the {subject}"),
                    reached.clone(),
                );
                continue;
            };
            if let (Some(os), Some(ns)) = (omedia.get("schema"), nmedia.get("schema")) {
                let ctx = Ctx {
                    side,
                    scope: Scope::Body,
                    root: true,
                    location: format!("{mloc}/schema"),
                    prop: String::new(),
                    subject: format!("the {subject} (`{mt}`)"),
                    reached: reached.clone(),
                    old_file: ofile.clone(),
                    new_file: nfile.clone(),
                    depth: 0,
                    skip_nullable: false,
                    exempt: false,
                };
                self.diff_schema(&ctx, os, ns);
            }
        }
        for mt in nc.keys() {
            if !oc.contains_key(mt) {
                let mloc = format!("{loc}/content/{}", escape_pointer(mt));
                self.emit(
                    format!("{prefix}-media-type-added"),
                    Level::Info,
                    dir,
                    mloc,
                    format!("added the media type `{mt}` to the {subject}"),
                    reached.clone(),
                );
            }
        }
    }

    fn diff_responses(&mut self, o: &Operation<'s>, n: &Operation<'s>, name: &str, loc: &str) {
        let ops = || Reached::Ops(vec![name.to_string()]);
        let empty: &'static Map<String, Value> = &EMPTY;
        let or = o
            .value
            .get("responses")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        let nr = n
            .value
            .get("responses")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        for (status, oresp) in or {
            let rloc = format!("{loc}/responses/{}", escape_pointer(status));
            let Some(nresp) = nr.get(status) else {
                let (id, level) = if is_success(status) {
                    ("response-success-status-removed", Level::Err)
                } else {
                    ("response-non-success-status-removed", Level::Info)
                };
                self.emit(
                    id.into(),
                    level,
                    Direction::Response,
                    rloc,
                    format!("removed the response status `{status}`"),
                    ops(),
                );
                continue;
            };
            let ores = self.resolve(false, &o.file, oresp);
            let nres = self.resolve(true, &n.file, nresp);
            self.diff_headers(ores.0, &ores.1, nres.0, &nres.1, &rloc, status, ops());
            self.diff_content(
                Side::Response,
                ores,
                nres,
                &rloc,
                ops(),
                format!("response with status `{status}`"),
            );
        }
        for status in nr.keys() {
            if !or.contains_key(status) {
                let rloc = format!("{loc}/responses/{}", escape_pointer(status));
                let id = if is_success(status) {
                    "response-success-status-added"
                } else {
                    "response-non-success-status-added"
                };
                self.emit(
                    id.into(),
                    Level::Info,
                    Direction::Response,
                    rloc,
                    format!("added the response status `{status}`"),
                    ops(),
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn diff_headers(
        &mut self,
        ov: &'s Value,
        ofile: &str,
        nv: &'s Value,
        nfile: &str,
        rloc: &str,
        status: &str,
        reached: Reached,
    ) {
        let collect = |this: &Self,
                       new_side: bool,
                       v: &'s Value,
                       file: &str|
         -> BTreeMap<String, (String, &'s Value, String)> {
            let mut m = BTreeMap::new();
            if let Some(h) = v.get("headers").and_then(Value::as_object) {
                for (name, hv) in h {
                    let (hv, hfile, _) = this.resolve(new_side, file, hv);
                    m.insert(name.to_ascii_lowercase(), (name.clone(), hv, hfile));
                }
            }
            m
        };
        let oh = collect(self, false, ov, ofile);
        let nh = collect(self, true, nv, nfile);
        for (k, (oname, ohv, ohfile)) in &oh {
            let hloc = format!("{rloc}/headers/{}", escape_pointer(oname));
            let Some((nname, nhv, nhfile)) = nh.get(k) else {
                let (id, level, what) = if bool_of(ohv, "required") {
                    ("required-response-header-removed", Level::Err, "required")
                } else {
                    ("optional-response-header-removed", Level::Warn, "optional")
                };
                self.emit(
                    id.into(),
                    level,
                    Direction::Response,
                    hloc,
                    format!("removed the {what} response header `{oname}` (status `{status}`)"),
                    reached.clone(),
                );
                continue;
            };
            match (bool_of(ohv, "required"), bool_of(nhv, "required")) {
                (true, false) => self.emit(
                    "response-header-became-optional".into(),
                    Level::Err,
                    Direction::Response,
                    hloc.clone(),
                    format!("the response header `{nname}` (status `{status}`) became optional"),
                    reached.clone(),
                ),
                (false, true) => self.emit(
                    "response-header-became-required".into(),
                    Level::Info,
                    Direction::Response,
                    hloc.clone(),
                    format!("the response header `{nname}` (status `{status}`) became required"),
                    reached.clone(),
                ),
                _ => {}
            }
            if let (Some(os), Some(ns)) = (ohv.get("schema"), nhv.get("schema")) {
                let ctx = Ctx {
                    side: Side::Response,
                    scope: Scope::Header,
                    root: true,
                    location: format!("{hloc}/schema"),
                    prop: String::new(),
                    subject: format!("the response header `{nname}` (status `{status}`)"),
                    reached: reached.clone(),
                    old_file: ohfile.clone(),
                    new_file: nhfile.clone(),
                    depth: 0,
                    skip_nullable: false,
                    exempt: false,
                };
                self.diff_schema(&ctx, os, ns);
            }
        }
        for (k, (nname, _, _)) in &nh {
            if !oh.contains_key(k) {
                let hloc = format!("{rloc}/headers/{}", escape_pointer(nname));
                self.emit(
                    "response-header-added".into(),
                    Level::Info,
                    Direction::Response,
                    hloc,
                    format!("added the response header `{nname}` (status `{status}`)"),
                    reached.clone(),
                );
            }
        }
    }

    // ---- security ---------------------------------------------------------------------

    fn diff_op_security(&mut self, o: &Operation<'s>, n: &Operation<'s>, name: &str, loc: &str) {
        // An operation without its own `security` inherits the global one; global changes are
        // reported once by `diff_global_security`.
        let (Some(os), Some(ns)) = (o.value.get("security"), n.value.get("security")) else {
            let oeff = o
                .value
                .get("security")
                .or_else(|| self.old.root().get("security"));
            let neff = n
                .value
                .get("security")
                .or_else(|| self.new.root().get("security"));
            if o.value.get("security").is_some() || n.value.get("security").is_some() {
                self.diff_security(
                    oeff,
                    neff,
                    "api-security",
                    &format!("{loc}/security"),
                    Reached::Ops(vec![name.to_string()]),
                );
            }
            return;
        };
        self.diff_security(
            Some(os),
            Some(ns),
            "api-security",
            &format!("{loc}/security"),
            Reached::Ops(vec![name.to_string()]),
        );
    }

    fn diff_global_security(&mut self) {
        let (og, ng) = (
            self.old.root().get("security"),
            self.new.root().get("security"),
        );
        if og == ng {
            return;
        }
        let inheriting: Vec<String> = operations(self.new)
            .iter()
            .filter(|op| op.value.get("security").is_none())
            .map(Operation::display)
            .collect();
        self.diff_security(
            og,
            ng,
            "api-global-security",
            "#/security",
            Reached::Ops(inheriting),
        );
    }

    /// Security requirements are alternatives (OR) of scheme sets (AND). Removing an
    /// alternative breaks clients using it; requiring auth where none was breaks everyone;
    /// a new scope on a scheme may not be granted to existing tokens.
    fn diff_security(
        &mut self,
        ov: Option<&Value>,
        nv: Option<&Value>,
        prefix: &str,
        loc: &str,
        reached: Reached,
    ) {
        type Req = BTreeMap<String, BTreeSet<String>>;
        let parse = |v: Option<&Value>| -> Vec<Req> {
            v.and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_object)
                        .map(|m| {
                            m.iter()
                                .map(|(k, s)| {
                                    (
                                        k.clone(),
                                        s.as_array()
                                            .map(|a| {
                                                a.iter()
                                                    .filter_map(Value::as_str)
                                                    .map(String::from)
                                                    .collect()
                                            })
                                            .unwrap_or_default(),
                                    )
                                })
                                .collect()
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let (o, n) = (parse(ov), parse(nv));
        let key = |r: &Req| r.keys().cloned().collect::<Vec<_>>().join(" + ");
        let okeys: BTreeMap<String, &Req> = o.iter().map(|r| (key(r), r)).collect();
        let nkeys: BTreeMap<String, &Req> = n.iter().map(|r| (key(r), r)).collect();
        let label = |k: &str| {
            if k.is_empty() {
                "no authentication".to_string()
            } else {
                format!("`{k}`")
            }
        };
        for (k, oreq) in &okeys {
            match nkeys.get(k) {
                None => {
                    let level = if n.is_empty() {
                        Level::Info
                    } else {
                        Level::Err
                    };
                    self.emit(
                        format!("{prefix}-removed"),
                        level,
                        Direction::Request,
                        loc.to_string(),
                        format!("removed the security requirement {}", label(k)),
                        reached.clone(),
                    );
                }
                Some(nreq) => {
                    for (scheme, oscopes) in oreq.iter() {
                        let nscopes = &nreq[scheme];
                        for s in nscopes.difference(oscopes) {
                            self.emit(
                                format!("{prefix}-scope-added"),
                                Level::Err,
                                Direction::Request,
                                loc.to_string(),
                                format!("added the scope `{s}` to the security scheme `{scheme}`"),
                                reached.clone(),
                            );
                        }
                        for s in oscopes.difference(nscopes) {
                            self.emit(
                                format!("{prefix}-scope-removed"),
                                Level::Info,
                                Direction::Request,
                                loc.to_string(),
                                format!(
                                    "removed the scope `{s}` from the security scheme `{scheme}`"
                                ),
                                reached.clone(),
                            );
                        }
                    }
                }
            }
        }
        for k in nkeys.keys() {
            if !okeys.contains_key(k) {
                let level = if o.is_empty() {
                    Level::Err
                } else {
                    Level::Info
                };
                self.emit(
                    format!("{prefix}-added"),
                    level,
                    Direction::Request,
                    loc.to_string(),
                    format!("added the security requirement {}", label(k)),
                    reached.clone(),
                );
            }
        }
    }

    /// `components.securitySchemes`: schemes removed, added or retyped, and OAuth scopes.
    /// Informational (as in oasdiff): what breaks clients is the operations' requirements.
    fn diff_security_schemes(&mut self) {
        let schemes = |s: &'s Spec| {
            s.root()
                .pointer("/components/securitySchemes")
                .and_then(Value::as_object)
        };
        let (Some(o), Some(n)) = (schemes(self.old), schemes(self.new)) else {
            return;
        };
        let users = |scheme: &str| -> Vec<String> {
            let global = self.new.root().get("security");
            operations(self.new)
                .iter()
                .filter(|op| {
                    op.value
                        .get("security")
                        .or(global)
                        .and_then(Value::as_array)
                        .is_some_and(|reqs| reqs.iter().any(|r| r.get(scheme).is_some()))
                })
                .map(Operation::display)
                .collect()
        };
        for (name, ov) in o {
            let loc = format!("#/components/securitySchemes/{}", escape_pointer(name));
            let Some(nv) = n.get(name) else {
                self.emit(
                    "api-security-component-removed".into(),
                    Level::Info,
                    Direction::None,
                    loc,
                    format!("removed the security scheme `{name}`"),
                    Reached::Ops(vec![]),
                );
                continue;
            };
            let (ov, _, _) = self.resolve(false, &self.old.root_path, ov);
            let (nv, _, _) = self.resolve(true, &self.new.root_path, nv);
            if str_of(ov, "type") != str_of(nv, "type") {
                let msg = format!(
                    "the type of the security scheme `{name}` changed from `{}` to `{}`",
                    str_of(ov, "type").unwrap_or(""),
                    str_of(nv, "type").unwrap_or("")
                );
                self.emit(
                    "api-security-component-type-changed".into(),
                    Level::Info,
                    Direction::Request,
                    loc.clone(),
                    msg,
                    Reached::Ops(users(name)),
                );
            }
            let flows = |v: &'s Value| v.get("flows").and_then(Value::as_object);
            if let (Some(of), Some(nf)) = (flows(ov), flows(nv)) {
                for (flow, ofv) in of {
                    let Some(nfv) = nf.get(flow) else { continue };
                    let scopes = |v: &'s Value| -> BTreeSet<&'s str> {
                        v.get("scopes")
                            .and_then(Value::as_object)
                            .map(|m| m.keys().map(String::as_str).collect())
                            .unwrap_or_default()
                    };
                    let (os, ns) = (scopes(ofv), scopes(nfv));
                    for sc in os.difference(&ns) {
                        let msg = format!(
                            "removed the scope `{sc}` from the `{flow}` flow of the security scheme `{name}`"
                        );
                        self.emit(
                            "api-security-component-oauth-scope-removed".into(),
                            Level::Info,
                            Direction::Request,
                            loc.clone(),
                            msg,
                            Reached::Ops(users(name)),
                        );
                    }
                    for sc in ns.difference(&os) {
                        let msg = format!(
                            "added the scope `{sc}` to the `{flow}` flow of the security scheme `{name}`"
                        );
                        self.emit(
                            "api-security-component-oauth-scope-added".into(),
                            Level::Info,
                            Direction::Request,
                            loc.clone(),
                            msg,
                            Reached::Ops(vec![]),
                        );
                    }
                }
            }
        }
        for name in n.keys() {
            if !o.contains_key(name) {
                let loc = format!("#/components/securitySchemes/{}", escape_pointer(name));
                self.emit(
                    "api-security-component-added".into(),
                    Level::Info,
                    Direction::None,
                    loc,
                    format!("added the security scheme `{name}`"),
                    Reached::Ops(vec![]),
                );
            }
        }
    }

    fn diff_components(&mut self) {
        let names = |s: &Spec| -> Vec<String> {
            s.root()
                .pointer("/components/schemas")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let (o, n) = (names(self.old), names(self.new));
        let ns: HashSet<&String> = n.iter().collect();
        let os: HashSet<&String> = o.iter().collect();
        for name in &o {
            if !ns.contains(name) {
                self.emit(
                    "api-schema-removed".into(),
                    Level::Info,
                    Direction::None,
                    format!("#/components/schemas/{}", escape_pointer(name)),
                    format!("removed the schema `{name}`"),
                    Reached::Ops(vec![]),
                );
            }
        }
        for name in &n {
            if !os.contains(name) {
                self.emit(
                    "api-schema-added".into(),
                    Level::Info,
                    Direction::None,
                    format!("#/components/schemas/{}", escape_pointer(name)),
                    format!("added the schema `{name}`"),
                    Reached::Ops(vec![]),
                );
            }
        }
    }

    fn diff_webhooks(&mut self) {
        let keys = |s: &Spec| -> BTreeSet<String> {
            s.root()
                .get("webhooks")
                .and_then(Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        };
        let (o, n) = (keys(self.old), keys(self.new));
        for w in o.difference(&n) {
            self.emit(
                "webhook-removed".into(),
                Level::Err,
                Direction::None,
                format!("#/webhooks/{}", escape_pointer(w)),
                format!("removed the webhook `{w}`"),
                Reached::Ops(vec![]),
            );
        }
        for w in n.difference(&o) {
            self.emit(
                "webhook-added".into(),
                Level::Info,
                Direction::None,
                format!("#/webhooks/{}", escape_pointer(w)),
                format!("added the webhook `{w}`"),
                Reached::Ops(vec![]),
            );
        }
    }

    // ---- schemas ----------------------------------------------------------------------

    /// Compares two schema values (either may be a `$ref`).
    fn diff_schema(&mut self, ctx: &Ctx, o: &'s Value, n: &'s Value) {
        if ctx.depth > MAX_DEPTH {
            return;
        }
        let (ov, ofile, okey) = self.resolve(false, &ctx.old_file, o);
        let (nv, nfile, nkey) = self.resolve(true, &ctx.new_file, n);
        if let (Some(ok), Some(nk)) = (&okey, &nkey)
            && ok == nk
        {
            // Same component on both sides: compared once, on its own.
            let unit = (ok.clone(), ctx.side, ctx.scope);
            if self.queued.insert(unit.clone()) {
                self.queue.push(unit);
            }
            return;
        }
        let pair = (
            okey.clone().unwrap_or_default(),
            nkey.clone().unwrap_or_default(),
        );
        let guarded = okey.is_some() || nkey.is_some();
        if guarded && !self.stack.insert(pair.clone()) {
            return;
        }
        let (ou, nu) = (null_union(ov), null_union(nv));
        if ou.is_some() || nu.is_some() {
            // `anyOf/oneOf: [X, {type: null}]` is X made nullable: compare the nullability,
            // then X itself (through its `$ref`, so shared components stay units).
            let nullable = |u: Option<&Value>, v: &Value| {
                u.is_some() || v.as_object().is_some_and(|m| Types::of(m).nullable)
            };
            if !ctx.skip_nullable {
                self.compare_nullable(ctx, nullable(ou, ov), nullable(nu, nv));
            }
            let mut inner = ctx.clone();
            inner.skip_nullable = true;
            let oi = match ou {
                Some(i) => {
                    inner.old_file = ofile;
                    i
                }
                None => o,
            };
            let ni = match nu {
                Some(i) => {
                    inner.new_file = nfile;
                    i
                }
                None => n,
            };
            self.diff_schema(&inner, oi, ni);
            if guarded {
                self.stack.remove(&pair);
            }
            return;
        }
        let mut c = ctx.clone();
        c.old_file = ofile;
        c.new_file = nfile;
        if let (Some(ok), Some(nk)) = (&okey, &nkey) {
            let short = |k: &str| k.rsplit('/').next().unwrap_or(k).to_string();
            let (so, sn) = (short(ok), short(nk));
            if so != sn && c.depth == 0 && c.prop.is_empty() {
                // Reported for information; the structural comparison below decides.
                self.emit_schema(
                    &c,
                    "!schema-ref-changed",
                    Level::Info,
                    format!("{} now refers to `{sn}` instead of `{so}`", c.what()),
                );
            }
        }
        self.compare_schemas(&c, ov, nv);
        if guarded {
            self.stack.remove(&pair);
        }
    }

    fn compare_schemas(&mut self, ctx: &Ctx, ov: &'s Value, nv: &'s Value) {
        let (Some(o), Some(n)) = (ov.as_object(), nv.as_object()) else {
            if ov != nv {
                let level = match (ov.as_bool(), nv.as_bool(), ctx.side) {
                    (_, Some(true), Side::Request) | (Some(true), _, Side::Response) => Level::Info,
                    _ => Level::Err,
                };
                self.emit_schema(
                    ctx,
                    "type-changed",
                    level,
                    format!("the schema of {} changed from `{ov}` to `{nv}`", ctx.what()),
                );
            }
            return;
        };
        if ctx.old_file == ctx.new_file && self.same_queueing_units(ctx, ov, nv) {
            return;
        }
        let ot = Types::of(o);
        let nt = Types::of(n);
        self.compare_types(ctx, &ot, &nt);
        if !ctx.skip_nullable {
            self.compare_nullable(ctx, ot.nullable, nt.nullable);
        }
        self.compare_enum(ctx, o, n);
        self.compare_constraints(ctx, o, n);
        self.compare_misc(ctx, o, n);
        self.compare_combinators(ctx, o, n);
        self.compare_properties(ctx, o, n);
        for kw in ["items", "additionalProperties", "not"] {
            if let (Some(oi), Some(ni)) = (o.get(kw), n.get(kw))
                && (oi.is_object() && ni.is_object())
            {
                let child = ctx.child(kw, if kw == "not" { None } else { Some(kw) });
                self.diff_schema(&child, oi, ni);
            }
        }
    }

    /// Whether two schema subtrees are identical, queueing the units their `$ref`s reach on
    /// the way (an unchanged subtree still leads to components that may have changed). One
    /// pass instead of a comparison plus a walk: most of a large description is unchanged.
    fn same_queueing_units(&mut self, ctx: &Ctx, o: &'s Value, n: &'s Value) -> bool {
        match (o, n) {
            (Value::Object(a), Value::Object(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                if let Some(r) = ref_of(a) {
                    if ref_of(b) != Some(r) {
                        return false;
                    }
                    let (_, _, ok) = self.resolve(false, &ctx.old_file, o);
                    let (_, _, nk) = self.resolve(true, &ctx.new_file, n);
                    if let (Some(ok), Some(nk)) = (ok, nk)
                        && ok == nk
                    {
                        let unit = (ok, ctx.side, ctx.scope);
                        if self.queued.insert(unit.clone()) {
                            self.queue.push(unit);
                        }
                    }
                }
                // Unchanged maps keep their key order: walk both in step and only hash keys
                // when the orders differ.
                if a.keys().zip(b.keys()).all(|(x, y)| x == y) {
                    for ((k, v), (_, w)) in a.iter().zip(b.iter()) {
                        if k != "$ref" && !self.same_queueing_units(ctx, v, w) {
                            return false;
                        }
                    }
                } else {
                    for (k, v) in a {
                        if k == "$ref" {
                            continue;
                        }
                        let Some(w) = b.get(k) else { return false };
                        if !self.same_queueing_units(ctx, v, w) {
                            return false;
                        }
                    }
                }
                true
            }
            (Value::Array(a), Value::Array(b)) => {
                if a.len() != b.len() {
                    return false;
                }
                for (v, w) in a.iter().zip(b) {
                    if !self.same_queueing_units(ctx, v, w) {
                        return false;
                    }
                }
                true
            }
            _ => o == n,
        }
    }

    fn compare_types(&mut self, ctx: &Ctx, ot: &Types, nt: &Types) {
        let fmt = |t: &Types| {
            let ty = if t.types.is_empty() {
                "any".to_string()
            } else {
                t.types.iter().cloned().collect::<Vec<_>>().join("|")
            };
            match &t.format {
                Some(f) => format!("{ty} ({f})"),
                None => ty,
            }
        };
        let changed_types = ot.types != nt.types;
        let changed_format = ot.format != nt.format;
        if !changed_types && !changed_format {
            return;
        }
        let widens = |from: &Types, to: &Types| -> bool {
            // `to` accepts everything `from` does.
            let types_ok = to.types.is_empty()
                || (!from.types.is_empty()
                    && from.types.iter().all(|t| {
                        to.types.contains(t) || (t == "integer" && to.types.contains("number"))
                    }));
            let format_ok = to.format.is_none() || to.format == from.format;
            types_ok && format_ok
        };
        let what = ctx.what();
        let msg = format!(
            "the type/format of {what} changed from `{}` to `{}`",
            fmt(ot),
            fmt(nt)
        );
        match ctx.side {
            Side::Request if widens(ot, nt) => self.emit_schema(
                ctx,
                "type-generalized",
                Level::Info,
                msg.replace("changed", "was generalized"),
            ),
            Side::Response if widens(nt, ot) => self.emit_schema(
                ctx,
                "type-specialized",
                Level::Info,
                msg.replace("changed", "was specialized"),
            ),
            _ => self.emit_schema(ctx, "type-changed", Level::Err, msg),
        }
    }

    fn compare_nullable(&mut self, ctx: &Ctx, o: bool, n: bool) {
        if o == n {
            return;
        }
        let what = ctx.what();
        match (ctx.side, n) {
            (Side::Request, true) => self.emit_schema(
                ctx,
                "became-nullable",
                Level::Info,
                format!("{what} became nullable"),
            ),
            (Side::Request, false) => self.emit_schema(
                ctx,
                "became-not-nullable",
                Level::Err,
                format!("{what} became not nullable"),
            ),
            (Side::Response, true) => self.emit_schema(
                ctx,
                "became-nullable",
                Level::Err,
                format!("{what} became nullable"),
            ),
            (Side::Response, false) => self.emit_schema(
                ctx,
                "became-not-nullable",
                Level::Info,
                format!("{what} became not nullable"),
            ),
        }
    }

    fn compare_enum(&mut self, ctx: &Ctx, o: &Map<String, Value>, n: &Map<String, Value>) {
        // `x-extensible-enum` announces that values will be added: adding one breaks nobody,
        // removing one breaks requests that send it.
        let (oe, ne) = (o.get("x-extensible-enum"), n.get("x-extensible-enum"));
        if let (Some(Value::Array(oe)), Some(Value::Array(ne))) = (oe, ne) {
            for v in oe.iter().filter(|v| !ne.contains(v)) {
                let level = if ctx.side == Side::Request {
                    Level::Err
                } else {
                    Level::Info
                };
                let msg = format!(
                    "removed the `{}` x-extensible-enum value from {}",
                    fmt_value(v),
                    ctx.what()
                );
                self.emit_schema(ctx, "x-extensible-enum-value-removed", level, msg);
            }
            for v in ne.iter().filter(|v| !oe.contains(v)) {
                let msg = format!(
                    "added the `{}` x-extensible-enum value to {}",
                    fmt_value(v),
                    ctx.what()
                );
                self.emit_schema(ctx, "x-extensible-enum-value-added", Level::Info, msg);
            }
        }
        let (ov, nv) = (enum_values(o), enum_values(n));
        let what = ctx.what();
        match (ov, nv) {
            (Some(ov), Some(nv)) => {
                for v in &ov {
                    if !nv.contains(v) {
                        let level = if ctx.side == Side::Request {
                            Level::Err
                        } else {
                            Level::Info
                        };
                        self.emit_schema(
                            ctx,
                            "enum-value-removed",
                            level,
                            format!("removed the `{}` enum value from {what}", fmt_value(v)),
                        );
                    }
                }
                for v in &nv {
                    if !ov.contains(v) {
                        let level = if ctx.side == Side::Request {
                            Level::Info
                        } else {
                            Level::Warn
                        };
                        self.emit_schema(
                            ctx,
                            "enum-value-added",
                            level,
                            format!("added the new `{}` enum value to {what}", fmt_value(v)),
                        );
                    }
                }
            }
            (None, Some(_)) => {
                let level = if ctx.side == Side::Request {
                    Level::Err
                } else {
                    Level::Info
                };
                self.emit_schema(
                    ctx,
                    "became-enum",
                    level,
                    format!("{what} was restricted to an enum"),
                );
            }
            (Some(_), None) => {
                let level = if ctx.side == Side::Request {
                    Level::Info
                } else {
                    Level::Warn
                };
                self.emit_schema(
                    ctx,
                    "enum-removed",
                    level,
                    format!("{what} is no longer restricted to an enum"),
                );
            }
            (None, None) => {}
        }
    }

    fn compare_constraints(&mut self, ctx: &Ctx, o: &Map<String, Value>, n: &Map<String, Value>) {
        let (ob, nb) = (Bounds::of(o), Bounds::of(n));
        // (rule name, old, new, is an upper bound)
        let pairs = [
            ("max", ob.max, nb.max, true),
            ("min", ob.min, nb.min, false),
            ("exclusive-max", ob.xmax, nb.xmax, true),
            ("exclusive-min", ob.xmin, nb.xmin, false),
            ("max-length", num(o, "maxLength"), num(n, "maxLength"), true),
            (
                "min-length",
                num(o, "minLength"),
                num(n, "minLength"),
                false,
            ),
            ("max-items", num(o, "maxItems"), num(n, "maxItems"), true),
            ("min-items", num(o, "minItems"), num(n, "minItems"), false),
            (
                "max-properties",
                num(o, "maxProperties"),
                num(n, "maxProperties"),
                true,
            ),
            (
                "min-properties",
                num(o, "minProperties"),
                num(n, "minProperties"),
                false,
            ),
        ];
        let what = ctx.what();
        let req = ctx.side == Side::Request;
        for (rule, ov, nv, upper) in pairs {
            let shown = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
            let (suffix, narrows) = match (ov, nv) {
                (None, Some(_)) => ("set", true),
                (Some(_), None) => ("unset", false),
                (Some(a), Some(b)) if a != b => {
                    let increased = b > a;
                    (
                        if increased { "increased" } else { "decreased" },
                        increased != upper,
                    )
                }
                _ => continue,
            };
            let level = match (req, narrows, suffix) {
                (true, true, "set") => Level::Warn,
                (true, true, _) => Level::Err,
                (true, false, _) => Level::Info,
                (false, true, _) => Level::Info,
                (false, false, _) => Level::Err,
            };
            let kw = rule.replace('-', " ");
            self.emit_schema(
                ctx,
                &format!("{rule}-{suffix}"),
                level,
                format!(
                    "the {kw} of {what} changed from {} to {}",
                    shown(ov),
                    shown(nv)
                ),
            );
        }
        // pattern
        match (str_of_map(o, "pattern"), str_of_map(n, "pattern")) {
            (None, Some(p)) => {
                let level = if req { Level::Err } else { Level::Info };
                self.emit_schema(
                    ctx,
                    "pattern-added",
                    level,
                    format!("added the pattern `{p}` to {what}"),
                );
            }
            (Some(p), None) => {
                let level = if req { Level::Info } else { Level::Warn };
                self.emit_schema(
                    ctx,
                    "pattern-removed",
                    level,
                    format!("removed the pattern `{p}` from {what}"),
                );
            }
            (Some(a), Some(b)) if a != b => {
                let level = if req { Level::Warn } else { Level::Info };
                self.emit_schema(
                    ctx,
                    "pattern-changed",
                    level,
                    format!("changed the pattern of {what} from `{a}` to `{b}`"),
                );
            }
            _ => {}
        }
        // multipleOf: the new value accepts everything the old did iff old is a multiple of new.
        match (num(o, "multipleOf"), num(n, "multipleOf")) {
            (a, b) if a == b => {}
            (a, b) => {
                let widened = match (a, b) {
                    (_, None) => true,
                    (None, Some(_)) => false,
                    (Some(a), Some(b)) => b != 0.0 && ((a / b).fract()).abs() < 1e-9,
                };
                let (rule, level) = match (req, widened) {
                    (true, false) => ("multiple-of-narrowed", Level::Err),
                    (true, true) => ("multiple-of-widened", Level::Info),
                    (false, false) => ("multiple-of-narrowed", Level::Info),
                    (false, true) => ("multiple-of-widened", Level::Err),
                };
                let shown = |v: Option<f64>| v.map_or("none".to_string(), |v| v.to_string());
                self.emit_schema(
                    ctx,
                    rule,
                    level,
                    format!(
                        "the multipleOf of {what} changed from {} to {}",
                        shown(a),
                        shown(b)
                    ),
                );
            }
        }
    }

    fn compare_misc(&mut self, ctx: &Ctx, o: &Map<String, Value>, n: &Map<String, Value>) {
        let what = ctx.what();
        // Deprecation of a property (parameters and endpoints are handled by their owners).
        if !ctx.root && ctx.scope == Scope::Body {
            if !bool_map(o, "deprecated") && bool_map(n, "deprecated") {
                self.emit_schema(
                    ctx,
                    "deprecated",
                    Level::Info,
                    format!("{what} was deprecated"),
                );
            } else if bool_map(o, "deprecated") && !bool_map(n, "deprecated") {
                self.emit_schema(
                    ctx,
                    "reactivated",
                    Level::Info,
                    format!("{what} is no longer deprecated"),
                );
            }
        }
        match (o.get("default"), n.get("default")) {
            (None, Some(v)) => self.emit_schema(
                ctx,
                "default-value-added",
                Level::Info,
                format!("added the default value `{}` to {what}", fmt_value(v)),
            ),
            (Some(v), None) => {
                let level = if ctx.side == Side::Request {
                    Level::Warn
                } else {
                    Level::Info
                };
                self.emit_schema(
                    ctx,
                    "default-value-removed",
                    level,
                    format!("removed the default value `{}` from {what}", fmt_value(v)),
                );
            }
            (Some(a), Some(b)) if a != b => {
                let level = if ctx.side == Side::Request {
                    Level::Warn
                } else {
                    Level::Info
                };
                self.emit_schema(
                    ctx,
                    "default-value-changed",
                    level,
                    format!(
                        "changed the default value of {what} from `{}` to `{}`",
                        fmt_value(a),
                        fmt_value(b)
                    ),
                );
            }
            _ => {}
        }
        // Discriminator
        let od = o.get("discriminator").and_then(Value::as_object);
        let nd = n.get("discriminator").and_then(Value::as_object);
        match (od, nd) {
            (None, Some(_)) => self.emit_schema(
                ctx,
                "discriminator-added",
                Level::Info,
                format!("added a discriminator to {what}"),
            ),
            (Some(_), None) => self.emit_schema(
                ctx,
                "discriminator-removed",
                Level::Info,
                format!("removed the discriminator from {what}"),
            ),
            (Some(od), Some(nd)) => {
                let (op, np) = (od.get("propertyName"), nd.get("propertyName"));
                if op != np {
                    // Clients that dispatch on the old property no longer find their variant.
                    let level = if ctx.side == Side::Response {
                        Level::Err
                    } else {
                        Level::Warn
                    };
                    self.emit_schema(
                        ctx,
                        "discriminator-property-name-changed",
                        level,
                        format!(
                            "the discriminator property of {what} changed from `{}` to `{}`",
                            op.map(fmt_value).unwrap_or_default(),
                            np.map(fmt_value).unwrap_or_default()
                        ),
                    );
                }
                let empty: &'static Map<String, Value> = &EMPTY;
                let om = od
                    .get("mapping")
                    .and_then(Value::as_object)
                    .unwrap_or(empty);
                let nm = nd
                    .get("mapping")
                    .and_then(Value::as_object)
                    .unwrap_or(empty);
                for (k, v) in om {
                    match nm.get(k) {
                        None => {
                            let level = if ctx.side == Side::Request {
                                Level::Err
                            } else {
                                Level::Info
                            };
                            self.emit_schema(
                                ctx,
                                "discriminator-mapping-deleted",
                                level,
                                format!("removed the discriminator mapping `{k}` from {what}"),
                            );
                        }
                        Some(nv) if nv != v => {
                            self.emit_schema(ctx, "discriminator-mapping-changed", Level::Warn, format!("the discriminator mapping `{k}` of {what} changed from `{}` to `{}`", fmt_value(v), fmt_value(nv)));
                        }
                        _ => {}
                    }
                }
                for k in nm.keys() {
                    if !om.contains_key(k) {
                        let level = if ctx.side == Side::Response {
                            Level::Warn
                        } else {
                            Level::Info
                        };
                        self.emit_schema(
                            ctx,
                            "discriminator-mapping-added",
                            level,
                            format!("added the discriminator mapping `{k}` to {what}"),
                        );
                    }
                }
            }
            (None, None) => {}
        }
    }

    fn compare_combinators(
        &mut self,
        ctx: &Ctx,
        o: &'s Map<String, Value>,
        n: &'s Map<String, Value>,
    ) {
        for kw in ["allOf", "oneOf", "anyOf"] {
            let ob = branches(o, kw);
            let nb = branches(n, kw);
            if ob.is_empty() && nb.is_empty() {
                continue;
            }
            let rule = match kw {
                "allOf" => "all-of",
                "oneOf" => "one-of",
                _ => "any-of",
            };
            let okeys = self.branch_keys(false, &ctx.old_file, &ob);
            let nkeys = self.branch_keys(true, &ctx.new_file, &nb);
            let what = ctx.what();
            for (i, k) in okeys.iter().enumerate() {
                match nkeys.iter().position(|x| x == k) {
                    Some(j) => {
                        let child = ctx.child(&format!("{kw}/{}", nb[j].0), None);
                        self.diff_schema(&child, ob[i].1, nb[j].1);
                    }
                    None => {
                        let level = match (kw, ctx.side) {
                            ("allOf", Side::Request) => Level::Warn,
                            (_, Side::Request) => Level::Err,
                            (_, Side::Response) => Level::Info,
                        };
                        let child = ctx.child(kw, None);
                        self.emit_schema(
                            &child,
                            &format!("{rule}-removed"),
                            level,
                            format!("removed `{k}` from the `{kw}` list of {what}"),
                        );
                    }
                }
            }
            for k in &nkeys {
                if !okeys.contains(k) {
                    // Response side: a new alternative is a value old clients cannot decode.
                    let level = match (kw, ctx.side) {
                        ("allOf", Side::Request) => Level::Err,
                        (_, Side::Request) => Level::Info,
                        ("allOf", Side::Response) => Level::Info,
                        ("oneOf", Side::Response) => Level::Err,
                        (_, Side::Response) => Level::Warn,
                    };
                    let child = ctx.child(kw, None);
                    self.emit_schema(
                        &child,
                        &format!("{rule}-added"),
                        level,
                        format!("added `{k}` to the `{kw}` list of {what}"),
                    );
                }
            }
        }
    }

    /// Identities of combinator branches: the `$ref` key, else the title, else the position
    /// among untitled inline branches.
    fn branch_keys(&self, new_side: bool, file: &str, b: &[(usize, &'s Value)]) -> Vec<String> {
        let spec = if new_side { self.new } else { self.old };
        let mut seen: HashMap<String, usize> = HashMap::new();
        b.iter()
            .map(|(_, v)| {
                let base = if let Some(r) = v.get("$ref").and_then(Value::as_str) {
                    spec.ref_target(file, r)
                        .map_or_else(|| r.to_string(), |t| t.key)
                } else if let Some(t) = str_of(v, "title") {
                    format!("title: {t}")
                } else {
                    let types = v
                        .as_object()
                        .map(Types::of)
                        .map(|t| t.types)
                        .unwrap_or_default();
                    if types.is_empty() {
                        "subschema".to_string()
                    } else {
                        format!("type: {}", types.into_iter().collect::<Vec<_>>().join("|"))
                    }
                };
                let n = seen.entry(base.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    base
                } else {
                    format!("{base} #{n}")
                }
            })
            .collect()
    }

    fn compare_properties(
        &mut self,
        ctx: &Ctx,
        o: &'s Map<String, Value>,
        n: &'s Map<String, Value>,
    ) {
        let empty: &'static Map<String, Value> = &EMPTY;
        let op = o
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        let np = n
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(empty);
        let oreq = required_set(o);
        let nreq = required_set(n);
        let req = ctx.side == Side::Request;
        for (name, ov) in op {
            let child = ctx.child(&format!("properties/{}", escape_pointer(name)), Some(name));
            let what = child.what();
            let (ovr, _, _) = self.resolve(false, &ctx.old_file, ov);
            let Some(nv) = np.get(name) else {
                let write_only = bool_of(ovr, "writeOnly");
                let required = oreq.contains(name.as_str());
                let (rule, level) = match (req, required, write_only) {
                    (true, _, _) => ("!request-property-removed", Level::Warn),
                    (false, true, true) => (
                        "!response-required-write-only-property-removed",
                        Level::Info,
                    ),
                    (false, false, true) => (
                        "!response-optional-write-only-property-removed",
                        Level::Info,
                    ),
                    (false, true, false) => ("!response-required-property-removed", Level::Err),
                    (false, false, false) => ("!response-optional-property-removed", Level::Warn),
                };
                let kind = if required { "required" } else { "optional" };
                self.emit_schema(
                    &child,
                    rule,
                    level,
                    format!("removed the {kind} {}", child.prop_desc()),
                );
                continue;
            };
            let (nvr, _, _) = self.resolve(true, &ctx.new_file, nv);
            let (was, is) = (oreq.contains(name.as_str()), nreq.contains(name.as_str()));
            if was != is {
                let read_only = bool_of(nvr, "readOnly");
                let write_only = bool_of(nvr, "writeOnly");
                let has_default = nvr.get("default").is_some();
                let rule_level = match (req, is) {
                    (true, true) if read_only => None,
                    (true, true) if has_default => Some((
                        "!request-property-became-required-with-default",
                        Level::Info,
                    )),
                    (true, true) => Some(("!request-property-became-required", Level::Err)),
                    (true, false) => Some(("!request-property-became-optional", Level::Info)),
                    (false, false) if write_only => {
                        Some(("!response-write-only-property-became-optional", Level::Info))
                    }
                    (false, false) => Some(("!response-property-became-optional", Level::Err)),
                    (false, true) => Some(("!response-property-became-required", Level::Info)),
                };
                if let Some((rule, level)) = rule_level {
                    let became = if is { "required" } else { "optional" };
                    self.emit_schema(&child, rule, level, format!("{what} became {became}"));
                }
            }
            for (kw, label) in [("readOnly", "read-only"), ("writeOnly", "write-only")] {
                let (a, b) = (bool_of(ovr, kw), bool_of(nvr, kw));
                if a != b {
                    let side = if req { "request" } else { "response" };
                    let kind = if is { "required" } else { "optional" };
                    let not = if b { "" } else { "not-" };
                    let level = if !req && is && kw == "writeOnly" && !b {
                        Level::Warn
                    } else {
                        Level::Info
                    };
                    let rule = format!("!{side}-{kind}-property-became-{not}{label}");
                    self.emit_schema(
                        &child,
                        &rule,
                        level,
                        format!("{what} became {}{label}", if b { "" } else { "not " }),
                    );
                }
            }
            let mut inner = child;
            if (req && bool_of(nvr, "readOnly")) || (!req && bool_of(nvr, "writeOnly")) {
                inner.exempt = true;
            }
            self.diff_schema(&inner, ov, nv);
        }
        for (name, nv) in np {
            if op.contains_key(name) {
                continue;
            }
            let child = ctx.child(&format!("properties/{}", escape_pointer(name)), Some(name));
            let (nvr, _, _) = self.resolve(true, &ctx.new_file, nv);
            let required = nreq.contains(name.as_str());
            let read_only = bool_of(nvr, "readOnly");
            let write_only = bool_of(nvr, "writeOnly");
            let (rule, level) = match (req, required) {
                (true, true) if read_only => ("!new-optional-request-property", Level::Info),
                (true, true) if nvr.get("default").is_some() => {
                    ("!new-required-request-property-with-default", Level::Info)
                }
                (true, true) => ("!new-required-request-property", Level::Err),
                (true, false) => ("!new-optional-request-property", Level::Info),
                (false, true) if write_only => {
                    ("!response-required-write-only-property-added", Level::Info)
                }
                (false, false) if write_only => {
                    ("!response-optional-write-only-property-added", Level::Info)
                }
                (false, true) => ("!response-required-property-added", Level::Info),
                (false, false) => ("!response-optional-property-added", Level::Info),
            };
            let kind = if required { "required" } else { "optional" };
            self.emit_schema(
                &child,
                rule,
                level,
                format!("added the new {kind} {}", child.prop_desc()),
            );
            // The new property's own referenced schemas are new to these operations; nothing
            // to compare inside them.
        }
    }
}

fn enum_values(m: &Map<String, Value>) -> Option<Vec<&Value>> {
    m.get("enum")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter(|v| !v.is_null()).collect())
}

fn branches<'v>(m: &'v Map<String, Value>, kw: &str) -> Vec<(usize, &'v Value)> {
    m.get(kw)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .enumerate()
                .filter(|(_, v)| !is_null_schema(v))
                .collect()
        })
        .unwrap_or_default()
}

/// The non-null branch of `anyOf/oneOf: [X, {type: null}]` when that union is all the schema
/// says (besides documentation and annotations).
fn null_union(v: &Value) -> Option<&Value> {
    let m = v.as_object()?;
    let kw = if m.contains_key("oneOf") {
        "oneOf"
    } else {
        "anyOf"
    };
    let list = m.get(kw)?.as_array()?;
    if list.len() != 2 || !list.iter().any(is_null_schema) {
        return None;
    }
    let structural = m.keys().any(|k| {
        !(k == kw
            || k.starts_with("x-")
            || matches!(
                k.as_str(),
                "description"
                    | "title"
                    | "nullable"
                    | "default"
                    | "example"
                    | "examples"
                    | "deprecated"
                    | "readOnly"
                    | "writeOnly"
            ))
    });
    if structural {
        return None;
    }
    list.iter().find(|b| !is_null_schema(b))
}

fn is_null_schema(v: &Value) -> bool {
    v.as_object().is_some_and(|m| {
        m.get("type").and_then(Value::as_str) == Some("null")
            && m.keys()
                .all(|k| matches!(k.as_str(), "type" | "description" | "title"))
    })
}

fn required_set(m: &Map<String, Value>) -> HashSet<&str> {
    m.get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn num(m: &Map<String, Value>, key: &str) -> Option<f64> {
    m.get(key).and_then(Value::as_f64)
}

fn str_of_map<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    m.get(key).and_then(Value::as_str)
}

fn bool_map(m: &Map<String, Value>, key: &str) -> bool {
    m.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Type, format and nullability, with the three spellings of nullability unified:
/// `nullable: true` (3.0), `type: [T, "null"]` (3.1), and a `{type: "null"}` branch of
/// `oneOf`/`anyOf`; an enum listing `null` counts too.
struct Types {
    types: BTreeSet<String>,
    format: Option<String>,
    nullable: bool,
}

impl Types {
    fn of(m: &Map<String, Value>) -> Types {
        let mut types = BTreeSet::new();
        let mut nullable = bool_map(m, "nullable");
        match m.get("type") {
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                types.insert(t.clone());
            }
            Some(Value::Array(a)) => {
                for t in a.iter().filter_map(Value::as_str) {
                    if t == "null" {
                        nullable = true;
                    } else {
                        types.insert(t.to_string());
                    }
                }
            }
            _ => {}
        }
        for kw in ["oneOf", "anyOf"] {
            if let Some(a) = m.get(kw).and_then(Value::as_array)
                && a.iter().any(is_null_schema)
            {
                nullable = true;
            }
        }
        if m.get("enum")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(Value::is_null))
        {
            nullable = true;
        }
        Types {
            types,
            format: m.get("format").and_then(Value::as_str).map(String::from),
            nullable,
        }
    }
}

/// Numeric bounds with 3.0's boolean `exclusiveMinimum/Maximum` folded into 3.1's numbers.
struct Bounds {
    min: Option<f64>,
    max: Option<f64>,
    xmin: Option<f64>,
    xmax: Option<f64>,
}

impl Bounds {
    fn of(m: &Map<String, Value>) -> Bounds {
        let mut b = Bounds {
            min: num(m, "minimum"),
            max: num(m, "maximum"),
            xmin: num(m, "exclusiveMinimum"),
            xmax: num(m, "exclusiveMaximum"),
        };
        if bool_map(m, "exclusiveMinimum") {
            b.xmin = b.min.take();
        }
        if bool_map(m, "exclusiveMaximum") {
            b.xmax = b.max.take();
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_unions_unwrap_only_when_they_are_the_whole_schema() {
        let u = json!({"anyOf": [{"$ref": "#/x"}, {"type": "null"}], "description": "d"});
        assert_eq!(null_union(&u), Some(&json!({"$ref": "#/x"})));
        let not = json!({"anyOf": [{"type": "string"}, {"type": "null"}], "properties": {}});
        assert_eq!(null_union(&not), None);
        let three = json!({"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]});
        assert_eq!(null_union(&three), None);
    }

    #[test]
    fn openapi_3_0_exclusive_bounds_fold_into_3_1_numbers() {
        let m = json!({"minimum": 1, "exclusiveMinimum": true, "maximum": 5});
        let b = Bounds::of(m.as_object().expect("object"));
        assert_eq!(
            (b.min, b.xmin, b.max, b.xmax),
            (None, Some(1.0), Some(5.0), None)
        );
    }

    #[test]
    fn nullability_spellings_agree() {
        for v in [
            json!({"type": "string", "nullable": true}),
            json!({"type": ["string", "null"]}),
            json!({"oneOf": [{"type": "string"}, {"type": "null"}]}),
            json!({"type": "string", "enum": ["a", null]}),
        ] {
            assert!(Types::of(v.as_object().expect("object")).nullable, "{v}");
        }
    }
}
