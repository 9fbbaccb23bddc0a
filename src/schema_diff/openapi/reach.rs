//! Which operations reach which referenced components (through any chain of `$ref`), per
//! side of the exchange. Computed once per spec so a change inside a shared component can be
//! reported once with the operations it affects.

use std::collections::HashMap;

use serde_json::Value;

use super::load::{Spec, ref_of};
use super::ops::{Operation, operations};

/// Component reachability of one spec: for each `$ref` key, the operations (by their
/// normalised id) that reach it from their request side and from their response side.
#[derive(Debug, Default)]
pub struct Reach {
    ops: Vec<String>,
    nodes: HashMap<String, usize>,
    request: Vec<Vec<u32>>,
    response: Vec<Vec<u32>>,
}

impl Reach {
    /// Operation ids reaching `key` from the request (`request == true`) or the response side.
    pub fn operations(&self, key: &str, request: bool) -> impl Iterator<Item = &str> {
        let lists = if request {
            &self.request
        } else {
            &self.response
        };
        self.nodes
            .get(key)
            .and_then(|&n| lists.get(n))
            .into_iter()
            .flatten()
            .map(|&op| self.ops[op as usize].as_str())
    }
}

struct Graph<'s> {
    spec: &'s Spec,
    nodes: HashMap<String, usize>,
    keys: Vec<String>,
    edges: Vec<Option<Vec<usize>>>,
}

impl<'s> Graph<'s> {
    fn node(&mut self, key: &str) -> usize {
        if let Some(&n) = self.nodes.get(key) {
            return n;
        }
        let n = self.edges.len();
        self.nodes.insert(key.to_string(), n);
        self.keys.push(key.to_string());
        self.edges.push(None);
        n
    }

    /// Nodes referenced directly from `v` (a value inside `file`), without following them.
    fn refs_in(&mut self, file: &str, v: &Value, out: &mut Vec<usize>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = ref_of(map)
                    && let Some(t) = self.spec.ref_target(file, r)
                {
                    out.push(self.node(&t.key));
                }
                for (k, child) in map {
                    if k != "$ref" && (child.is_object() || child.is_array()) {
                        self.refs_in(file, child, out);
                    }
                }
            }
            Value::Array(items) => {
                for child in items {
                    if child.is_object() || child.is_array() {
                        self.refs_in(file, child, out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Computes the outgoing edges of node `n` (the `$ref`s inside its target).
    fn expand(&mut self, n: usize) {
        let spec = self.spec;
        let key = self.keys[n].clone();
        let mut out = Vec::new();
        let t = spec.key_target(&key);
        if let Some((v, resolved)) = spec.lookup(&t) {
            if resolved.key != t.key {
                out.push(self.node(&resolved.key));
            }
            self.refs_in(&resolved.file, v, &mut out);
        }
        out.sort_unstable();
        out.dedup();
        self.edges[n] = Some(out);
    }
}

/// Computes the reachability of every component of `spec` from its operations.
pub fn compute(spec: &Spec) -> Reach {
    let mut g = Graph {
        spec,
        nodes: HashMap::new(),
        keys: Vec::new(),
        edges: Vec::new(),
    };
    let ops: Vec<Operation> = operations(spec);
    let mut reach = Reach::default();
    let mut seeds: Vec<(Vec<usize>, Vec<usize>)> = Vec::with_capacity(ops.len());
    for op in &ops {
        let mut req = Vec::new();
        let mut resp = Vec::new();
        for p in &op.parameters {
            g.refs_in(&op.file, p, &mut req);
        }
        if let Some(b) = op.value.get("requestBody") {
            g.refs_in(&op.file, b, &mut req);
        }
        if let Some(r) = op.value.get("responses") {
            g.refs_in(&op.file, r, &mut resp);
        }
        if let Some(c) = op.value.get("callbacks") {
            g.refs_in(&op.file, c, &mut resp);
        }
        seeds.push((req, resp));
    }
    // Expand every node reachable from any seed once, so the walks below only read.
    let mut next = 0;
    while next < g.edges.len() {
        if g.edges[next].is_none() {
            g.expand(next);
        }
        next += 1;
    }
    let edges: Vec<Vec<usize>> = g
        .edges
        .iter_mut()
        .map(|e| e.take().unwrap_or_default())
        .collect();
    let mut stamp: Vec<u32> = vec![0; edges.len()];
    let mut generation = 0u32;
    let mut request: Vec<Vec<u32>> = vec![Vec::new(); edges.len()];
    let mut response: Vec<Vec<u32>> = vec![Vec::new(); edges.len()];
    let mut stack = Vec::new();
    for (op_idx, (req, resp)) in seeds.into_iter().enumerate() {
        reach.ops.push(ops[op_idx].id.clone());
        for (side_seeds, lists) in [(req, &mut request), (resp, &mut response)] {
            generation += 1;
            stack.clear();
            stack.extend(side_seeds);
            while let Some(n) = stack.pop() {
                if stamp[n] == generation {
                    continue;
                }
                stamp[n] = generation;
                lists[n].push(op_idx as u32);
                stack.extend(edges[n].iter().copied().filter(|&m| stamp[m] != generation));
            }
        }
    }
    reach.nodes = g.nodes;
    reach.request = request;
    reach.response = response;
    reach
}
