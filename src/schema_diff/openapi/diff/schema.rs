//! The schema half of the OpenAPI comparison: types and formats, the three spellings of
//! nullability, enums, constraints, combinators and discriminators, properties with
//! requiredness and readOnly/writeOnly, each classified by the side it is on.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use super::{Ctx, Differ, EMPTY, MAX_DEPTH, Scope, Side, bool_of, fmt_value, str_of};
use crate::schema_diff::Level;
use crate::schema_diff::openapi::load::{escape_pointer, ref_of};

impl<'s> Differ<'s> {
    /// Compares two schema values (either may be a `$ref`).
    pub(super) fn diff_schema(&mut self, ctx: &Ctx, o: &'s Value, n: &'s Value) {
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
        let (mut ou, mut nu) = (null_union(ov), null_union(nv));
        // Against another union, compare the lists branch by branch instead.
        if ou.is_some() && nu.is_none() && has_union(nv) {
            ou = None;
        }
        if nu.is_some() && ou.is_none() && has_union(ov) {
            nu = None;
        }
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

    pub(super) fn compare_schemas(&mut self, ctx: &Ctx, ov: &'s Value, nv: &'s Value) {
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
        let mut ot = Types::of(o);
        let mut nt = Types::of(n);
        self.all_of_types(false, &ctx.old_file, o, &mut ot);
        self.all_of_types(true, &ctx.new_file, n, &mut nt);
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
        // `const` (3.1): a single allowed value narrows like an enum of one.
        let req = ctx.side == Side::Request;
        match (o.get("const"), n.get("const")) {
            (None, Some(v)) => {
                let level = if req { Level::Err } else { Level::Info };
                let msg = format!("{what} was restricted to the constant `{}`", fmt_value(v));
                self.emit_schema(ctx, "const-added", level, msg);
            }
            (Some(v), None) => {
                let level = if req { Level::Info } else { Level::Err };
                let msg = format!("{what} is no longer the constant `{}`", fmt_value(v));
                self.emit_schema(ctx, "const-removed", level, msg);
            }
            (Some(a), Some(b)) if a != b => {
                let msg = format!(
                    "the constant of {what} changed from `{}` to `{}`",
                    fmt_value(a),
                    fmt_value(b)
                );
                self.emit_schema(ctx, "const-changed", Level::Err, msg);
            }
            _ => {}
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
                    None if kw == "allOf"
                        && self
                            .object_shape_branch(false, &ctx.old_file, ob[i].1)
                            .is_some() =>
                    {
                        // Its properties were compared as the schema's own.
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
            for (j, k) in nkeys.iter().enumerate() {
                if kw == "allOf"
                    && self
                        .object_shape_branch(true, &ctx.new_file, nb[j].1)
                        .is_some()
                {
                    continue;
                }
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

    /// A schema that declares no type of its own takes the types its `allOf` branches declare
    /// (`allOf: [{$ref: Base}, {properties: ..}]` is an object when `Base` is).
    fn all_of_types(&self, new_side: bool, file: &str, m: &'s Map<String, Value>, t: &mut Types) {
        if !t.types.is_empty() {
            return;
        }
        for (_, b) in branches(m, "allOf") {
            let (v, _, _) = self.resolve(new_side, file, b);
            if let Some(bm) = v.as_object() {
                let bt = Types::of(bm);
                if !bt.types.is_empty() {
                    t.types = bt.types;
                    if t.format.is_none() {
                        t.format = bt.format;
                    }
                    return;
                }
            }
        }
    }

    /// An `allOf` branch that only shapes an object (properties, required) and has no
    /// counterpart on the other side: its properties count as the schema's own, so moving
    /// properties into or out of a shared base schema is not reported as removing and adding
    /// them. Returns the resolved branch and its file.
    fn object_shape_branch(
        &self,
        new_side: bool,
        file: &str,
        branch: &'s Value,
    ) -> Option<(&'s Map<String, Value>, String)> {
        let (v, file, _) = self.resolve(new_side, file, branch);
        let m = v.as_object()?;
        let shape_only = m.iter().all(|(k, v)| match k.as_str() {
            "type" => v.as_str() == Some("object"),
            "properties" | "required" | "description" | "title" | "example" | "examples" => true,
            other => other.starts_with("x-"),
        });
        (shape_only && (m.contains_key("properties") || m.contains_key("required")))
            .then_some((m, file))
    }

    /// Properties and required names of `own`, with those of its unmatched object-shape
    /// `allOf` branches merged in (see [`Self::object_shape_branch`]). Each property carries
    /// the file its schema was written in.
    fn effective_properties(
        &self,
        new_side: bool,
        (file, own): (&str, &'s Map<String, Value>),
        (other_file, other): (&str, &'s Map<String, Value>),
    ) -> (
        indexmap::IndexMap<&'s str, (&'s Value, String)>,
        HashSet<&'s str>,
    ) {
        let mut props = indexmap::IndexMap::new();
        let mut required = required_set(own);
        if let Some(p) = own.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                props.insert(k.as_str(), (v, file.to_string()));
            }
        }
        let mine = branches(own, "allOf");
        if mine.is_empty() {
            return (props, required);
        }
        let theirs = branches(other, "allOf");
        let their_keys = self.branch_keys(!new_side, other_file, &theirs);
        let my_keys = self.branch_keys(new_side, file, &mine);
        for ((_, b), key) in mine.iter().zip(&my_keys) {
            if their_keys.contains(key) {
                continue;
            }
            let Some((m, bfile)) = self.object_shape_branch(new_side, file, b) else {
                continue;
            };
            required.extend(required_set(m));
            if let Some(p) = m.get("properties").and_then(Value::as_object) {
                for (k, v) in p {
                    props.entry(k.as_str()).or_insert((v, bfile.clone()));
                }
            }
        }
        (props, required)
    }

    fn compare_properties(
        &mut self,
        ctx: &Ctx,
        o: &'s Map<String, Value>,
        n: &'s Map<String, Value>,
    ) {
        let (op, oreq) = self.effective_properties(false, (&ctx.old_file, o), (&ctx.new_file, n));
        let (np, nreq) = self.effective_properties(true, (&ctx.new_file, n), (&ctx.old_file, o));
        let req = ctx.side == Side::Request;
        for (&name, (ov, ofile)) in &op {
            let mut child = ctx.child(&format!("properties/{}", escape_pointer(name)), Some(name));
            child.old_file = ofile.clone();
            let what = child.what();
            let (ovr, _, _) = self.resolve(false, ofile, ov);
            let Some((nv, nfile)) = np.get(name) else {
                let write_only = bool_of(ovr, "writeOnly");
                let required = oreq.contains(name);
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
            child.new_file = nfile.clone();
            let (nvr, _, _) = self.resolve(true, nfile, nv);
            let (was, is) = (oreq.contains(name), nreq.contains(name));
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
                    let newly_required_in_requests = req && was && is && kw == "readOnly" && !b;
                    let level = if newly_required_in_requests {
                        // A required property clients were told not to send must now be sent:
                        // it became required in requests, whatever oasdiff (INFO) says. A
                        // default softens it as it does `request-property-became-required`.
                        if nvr.get("default").is_some() {
                            Level::Info
                        } else {
                            Level::Err
                        }
                    } else if !req && is && kw == "writeOnly" && !b {
                        // The mirror case: the property becomes required in responses. That
                        // breaks no client (a response carrying more is compatible, as
                        // `response-property-became-required` is INFO), but a field the
                        // description said is never returned (a password, a secret) now is:
                        // WARN, as oasdiff.
                        Level::Warn
                    } else {
                        Level::Info
                    };
                    let rule = format!("!{side}-{kind}-property-became-{not}{label}");
                    self.emit_schema(
                        &child,
                        &rule,
                        level,
                        if newly_required_in_requests {
                            format!("{what} became not read-only: it is required, so requests must now send it")
                        } else {
                            format!("{what} became {}{label}", if b { "" } else { "not " })
                        },
                    );
                }
            }
            let mut inner = child;
            if (req && bool_of(nvr, "readOnly")) || (!req && bool_of(nvr, "writeOnly")) {
                inner.exempt = true;
            }
            self.diff_schema(&inner, ov, nv);
        }
        for (&name, (nv, nfile)) in &np {
            if op.contains_key(name) {
                continue;
            }
            let child = ctx.child(&format!("properties/{}", escape_pointer(name)), Some(name));
            let (nvr, _, _) = self.resolve(true, nfile, nv);
            let required = nreq.contains(name);
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

/// Whether a schema has a `oneOf` or `anyOf` list.
fn has_union(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| m.contains_key("oneOf") || m.contains_key("anyOf"))
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
