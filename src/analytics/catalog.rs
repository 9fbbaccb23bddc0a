//! What the analytics count against: every federation of the applied commit, its members, and
//! every operation of each member's spec (OpenAPI operations by operationId, else `METHOD
//! /path`, as the gateway labels them; gRPC methods as `package.Service/Method`). Built once
//! per applied commit and kept (the last one) for the views and the metrics.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::gateway::routes;

/// Why the catalog of a commit cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("the applied commit has no catalog: {0}")]
pub struct CatalogError(#[from] pub crate::config::load::CommitError);

/// One operation of a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The label the gateway records (`operationId`, else `GET /pets/{id}`).
    pub name: String,
    /// Upper case (`POST` for gRPC).
    pub method: String,
    /// The path template as the spec writes it (`/package.Service/Method` for gRPC).
    pub path: String,
}

/// A member of a federation.
#[derive(Debug, Clone)]
pub struct Member {
    /// The name the gateway records (the member's name).
    pub name: String,
    /// The entry of `services/` it refers to (drift incidents are filed under it).
    pub service: String,
    /// `real`, `mock_v3`, `blended` or `chaos_driven`.
    pub reality_level: String,
    /// Repo-relative spec path, when the member has one.
    pub spec: Option<String>,
    pub operations: Vec<Operation>,
    /// Why the spec's operations could not be listed, if they could not.
    pub error: Option<String>,
}

/// A federation of the applied commit.
#[derive(Debug, Clone)]
pub struct Federation {
    pub name: String,
    /// The environment the federation belongs to. Nothing in the configuration assigns
    /// federations to environments (environments order promotions of scenarios and personas),
    /// so each federation is its own environment: the federation's name.
    pub environment: String,
    pub members: Vec<Member>,
}

/// Everything the applied commit declares that analytics count against.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub sha: String,
    /// By name.
    pub federations: BTreeMap<String, Federation>,
}

impl Catalog {
    /// The environments (see [`Federation::environment`]), sorted.
    pub fn environments(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .federations
            .values()
            .map(|f| f.environment.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every member name of every federation, sorted.
    pub fn member_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .federations
            .values()
            .flat_map(|f| f.members.iter().map(|m| m.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Builds the catalog of commit `sha` of the repository at `repo`.
    pub fn build(repo: &Path, sha: &str) -> Result<Catalog, CatalogError> {
        let table = routes::build(repo, sha).map_err(|e| CatalogError(e.0))?;
        let state = crate::config::load::valid_state(repo, sha)?;
        let mut federations = BTreeMap::new();
        for (name, fed) in &state.federations {
            let served = table.federations.get(name);
            let mut members = Vec::new();
            for m in &fed.spec.services {
                let service = m.service.clone().unwrap_or_else(|| m.name.clone());
                let spec = state
                    .services
                    .get(&service)
                    .and_then(|s| s.spec.spec.clone());
                let route = served.and_then(|f| f.services.iter().find(|s| s.name == m.name));
                let (operations, error) = match route {
                    None => (Vec::new(), Some("not served".to_string())),
                    Some(r) => operations_of(r, spec.is_some()),
                };
                members.push(Member {
                    name: m.name.clone(),
                    service,
                    reality_level: level_name(m.reality_level),
                    spec,
                    operations,
                    error,
                });
            }
            members.sort_by(|a, b| a.name.cmp(&b.name));
            federations.insert(
                name.clone(),
                Federation {
                    name: name.clone(),
                    environment: name.clone(),
                    members,
                },
            );
        }
        Ok(Catalog {
            sha: sha.to_string(),
            federations,
        })
    }
}

/// `mock_v3` and the like.
pub fn level_name(level: crate::model::RealityLevel) -> String {
    serde_json::to_value(level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn operations_of(r: &routes::ServiceRoute, has_spec: bool) -> (Vec<Operation>, Option<String>) {
    if let Some(proto) = &r.proto {
        return match proto {
            Ok(p) => {
                let mut ops = Vec::new();
                for s in &p.services {
                    if let Some(sd) = p.pool.get_service_by_name(s) {
                        for m in sd.methods() {
                            let name = format!("{s}/{}", m.name());
                            ops.push(Operation {
                                path: format!("/{name}"),
                                name,
                                method: "POST".into(),
                            });
                        }
                    }
                }
                (ops, None)
            }
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
    }
    match &r.mock {
        Ok(m) => {
            let ops = (0..m.operation_count())
                .filter_map(|i| {
                    let name = m.operation_name(i)?;
                    let (method, path) = m.operation_route(i)?;
                    Some(Operation {
                        name: name.to_string(),
                        method: method.as_str().to_ascii_uppercase(),
                        path: path.to_string(),
                    })
                })
                .collect();
            (ops, None)
        }
        Err(e) if has_spec => (Vec::new(), Some(e.to_string())),
        Err(_) => (Vec::new(), Some("the member has no spec".into())),
    }
}

/// The catalog of `sha`, built once (blocking: call from a blocking task).
pub fn cached(repo: &Path, sha: &str) -> Result<Arc<Catalog>, CatalogError> {
    static LAST: crate::config::load::CommitMemo<Catalog> = crate::config::load::CommitMemo::new(1);
    LAST.get(repo, sha, || Catalog::build(repo, sha))
}
