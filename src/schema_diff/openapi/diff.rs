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
            // Serialisation: `style` and `explode` with their defaults per location. A change
            // alters how clients must encode arrays and objects.
            let style = |v: &Value| -> (String, bool) {
                let default = if matches!(pin, "query" | "cookie") {
                    "form"
                } else {
                    "simple"
                };
                let st = str_of(v, "style").unwrap_or(default).to_string();
                let explode = v
                    .get("explode")
                    .and_then(Value::as_bool)
                    .unwrap_or(st == "form");
                (st, explode)
            };
            let (os, ns) = (style(ov), style(nv));
            if os != ns {
                self.emit(
                    "request-parameter-style-changed".into(),
                    Level::Warn,
                    Direction::Request,
                    ploc.clone(),
                    format!(
                        "the serialisation of the {pin} request parameter `{nname}` changed from style `{}` (explode {}) to `{}` (explode {})",
                        os.0, os.1, ns.0, ns.1
                    ),
                    ops(),
                );
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
}

mod schema;
