//! Which RPCs reach which types: for every `pkg.Service/Method`, the messages and enums its
//! request and response transitively contain. Cycle-guarded; computed once per side.

use std::collections::{BTreeMap, BTreeSet};

use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

use super::compile::CompiledProto;
use crate::schema_diff::Direction;

/// Type full name -> operations reaching it, each with the side of the exchange it is on.
#[derive(Debug, Default, Clone)]
pub(crate) struct Reach {
    by_type: BTreeMap<String, BTreeSet<(String, Dir)>>,
    /// Operations per service full name.
    pub ops_by_service: BTreeMap<String, BTreeSet<String>>,
    /// Operations per local file (import name).
    pub ops_by_file: BTreeMap<String, BTreeSet<String>>,
}

/// Request or response side, ordered so sets of them are deterministic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Dir {
    Request,
    Response,
}

impl Reach {
    /// Walks every RPC of the local files of `compiled`. `rename` maps the target's import
    /// name as in [`super::model::Model::build`].
    pub(crate) fn build(compiled: &CompiledProto, rename: Option<(&str, &str)>) -> Reach {
        let mut reach = Reach::default();
        let pool: &DescriptorPool = &compiled.pool;
        for service in pool.services() {
            let file = service.parent_file();
            if !compiled.local_files.contains(file.name()) {
                continue;
            }
            let file_name = match rename {
                Some((from, to)) if from == file.name() => to.to_string(),
                _ => file.name().to_string(),
            };
            for method in service.methods() {
                let op = format!("{}/{}", service.full_name(), method.name());
                reach
                    .ops_by_service
                    .entry(service.full_name().to_string())
                    .or_default()
                    .insert(op.clone());
                reach
                    .ops_by_file
                    .entry(file_name.clone())
                    .or_default()
                    .insert(op.clone());
                for (dir, root) in [
                    (Dir::Request, method.input()),
                    (Dir::Response, method.output()),
                ] {
                    for ty in reachable(&root) {
                        reach
                            .by_type
                            .entry(ty)
                            .or_default()
                            .insert((op.clone(), dir));
                    }
                }
            }
        }
        reach
    }

    /// Operations reaching the type `full_name`, with their sides.
    pub(crate) fn of_type(&self, full_name: &str) -> impl Iterator<Item = &(String, Dir)> {
        self.by_type.get(full_name).into_iter().flatten()
    }
}

/// Every message and enum reachable from `root` through fields (map entries included),
/// `root` itself first. Iterative, with a visited set, so recursive types terminate.
fn reachable(root: &MessageDescriptor) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.clone()];
    seen.insert(root.full_name().to_string());
    while let Some(message) = stack.pop() {
        for field in message.fields() {
            match field.kind() {
                Kind::Message(m) if seen.insert(m.full_name().to_string()) => {
                    stack.push(m);
                }
                Kind::Enum(e) => {
                    seen.insert(e.full_name().to_string());
                }
                _ => {}
            }
        }
    }
    seen
}

/// Folds the sides a change was reached from into one [`Direction`].
pub(crate) fn direction_of(dirs: &BTreeSet<Dir>) -> Direction {
    match (dirs.contains(&Dir::Request), dirs.contains(&Dir::Response)) {
        (true, false) => Direction::Request,
        (false, true) => Direction::Response,
        _ => Direction::None,
    }
}
