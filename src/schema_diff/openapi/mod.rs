//! OpenAPI 3.0/3.1 front end of the schema diff: loading (`load`), operation identity
//! (`ops`), component reachability (`reach`) and the classified comparison (`diff`).
//!
//! How a comparison goes:
//! - Operations are matched by method and path with parameter names erased, so
//!   `/pets/{id}` and `/pets/{petId}` are one endpoint; path parameters match by position.
//! - Everything an operation holds inline is compared in the operation's context and carries
//!   that one operation. A schema reached through the same `$ref` on both sides is not
//!   descended into there: it is compared once, on its own (a *unit*), per side of the
//!   exchange, and its changes carry every operation that reaches it through any chain of
//!   references (`reach`). That is how one enum value added to a shared error schema is one
//!   change with 454 operations rather than 1.2 million findings.
//! - Rule ids are oasdiff's where the meaning is the same; levels follow "request-side
//!   narrowing and response-side widening break clients". The deliberate level differences
//!   from oasdiff are listed (with reasons) in the integration tests.

mod diff;
pub mod load;
pub(crate) mod ops;
mod reach;

pub use load::{
    LoadError, OpenapiVersion, RefTarget, Spec, SpecProblem, load, load_root, parse_document,
};

use crate::schema_diff::{Change, RevisionFiles};

/// Checks that the description at repo-relative `path` (content `bytes`) loads: it parses,
/// declares OpenAPI 3.0 or 3.1, and every `$ref` resolves inside the repository (external
/// files read through `files`). Returns every problem found, with line and column when the
/// parser knows them.
pub fn check_openapi(
    path: &str,
    bytes: &[u8],
    files: &dyn RevisionFiles,
) -> Result<(), Vec<SpecProblem>> {
    load(path, bytes, files)
        .map(|_| ())
        .map_err(|e| e.problems())
}

/// Compares two loaded descriptions; see the module docs of `diff` for the rules.
pub fn diff_specs(old: &Spec, new: &Spec) -> Vec<Change> {
    diff::diff(old, new)
}

/// True when the two descriptions differ, but only in documentation: descriptions, summaries,
/// examples, titles, `externalDocs`, `info`, top-level `tags` and `x-` extensions.
pub fn documentation_only(old: &Spec, new: &Spec) -> bool {
    // The root documents may sit at different paths (two files compared); others by path.
    let others = |s: &'_ Spec| -> Vec<(String, serde_json::Value)> {
        s.docs
            .iter()
            .filter(|(p, _)| **p != s.root_path)
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect()
    };
    let (oo, no) = (others(old), others(new));
    if old.root() == new.root() && oo == no {
        return false;
    }
    eq_ignoring_docs(old.root(), new.root(), true)
        && oo.len() == no.len()
        && oo
            .iter()
            .zip(&no)
            .all(|((op, ov), (np, nv))| op == np && eq_ignoring_docs(ov, nv, true))
}

fn is_doc_key(k: &str, top: bool) -> bool {
    matches!(
        k,
        "description" | "summary" | "example" | "examples" | "title" | "externalDocs"
    ) || k.starts_with("x-")
        || (top && matches!(k, "info" | "tags"))
}

fn eq_ignoring_docs(a: &serde_json::Value, b: &serde_json::Value, top: bool) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let xs = x.iter().filter(|(k, _)| !is_doc_key(k, top));
            let ys = y.iter().filter(|(k, _)| !is_doc_key(k, top));
            let (xn, yn) = (xs.clone().count(), ys.clone().count());
            // A property *named* like a documentation keyword is skipped here too; this is
            // only consulted once the structural diff found nothing, which compares names.
            xn == yn
                && xs
                    .into_iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| eq_ignoring_docs(v, w, false)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| eq_ignoring_docs(v, w, false))
        }
        _ => a == b,
    }
}
