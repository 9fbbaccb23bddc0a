//! The contracts drift is held against: per applied commit, every service with an OpenAPI
//! `spec` and an `upstream`, its spec compiled into validators per operation, status and media
//! type (through the mock engine's converter: 3.0 `nullable`, readOnly/writeOnly by
//! direction, `format` asserted, 3.1 as 2020-12, `$ref`s only inside the repository), with the
//! place in the spec files each part came from, its budget and its probe policy.
//!
//! Built on the blocking pool when the applied commit changes; a commit that does not build
//! keeps the last good contracts.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use crate::config::load::DesiredState;
use crate::gateway::mock::MockService;
use crate::gateway::mock::router::{Match, Router};
use crate::gateway::mock::schema::{Bundle, Converter, Dir};
use crate::gateway::routes::Upstream;
use crate::git::revision::RevisionFiles;
use crate::model::{DriftBudget, ProbeSpec, ServiceSpec};
use crate::schema_diff::SchemaType;
use crate::schema_diff::openapi::load::{Spec, escape_pointer, ref_of};
use crate::schema_diff::openapi::ops;

/// Why a commit's contracts could not be built (the previous ones stay).
#[derive(Debug, thiserror::Error)]
#[error("{0}; the previous contracts stay")]
pub struct ContractsError(#[from] crate::config::load::CommitError);

/// Why one service has no contract.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ContractError {
    #[error("spec `{path}` is not an OpenAPI description in this revision")]
    NotOpenapi { path: String },
    #[error("spec `{path}`: {cause}")]
    Read { path: String, cause: String },
    #[error("spec `{path}` does not load: {cause}")]
    Load { path: String, cause: String },
    #[error("spec `{path}` cannot be compiled: {cause}")]
    Compile { path: String, cause: String },
}

/// The contracts of one applied commit.
#[derive(Default)]
pub struct Contracts {
    pub sha: Option<String>,
    /// Services with a spec and an upstream, by name.
    pub services: BTreeMap<String, Arc<Contract>>,
    /// Services with an upstream whose spec could not be compiled, and why.
    pub broken: BTreeMap<String, ContractError>,
    /// `drift:` of `mockops.yaml`.
    pub settings: crate::model::DriftSettings,
}

/// A place in the spec files: repo-relative file and JSON pointer into it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SpecPlace {
    pub file: String,
    pub pointer: String,
}

impl SpecPlace {
    fn child(&self, segment: &str) -> SpecPlace {
        SpecPlace {
            file: self.file.clone(),
            pointer: format!("{}/{}", self.pointer, escape_pointer(segment)),
        }
    }
}

/// One media type of a request body or response, with its validator.
pub struct ContractMedia {
    pub media_type: String,
    /// None when the media type has no schema (anything goes).
    pub validator: Option<jsonschema::Validator>,
    /// The `schema` node.
    pub place: SpecPlace,
}

/// A header the spec marks required.
pub struct RequiredHeader {
    /// Lower-case.
    pub name: String,
    /// The header parameter or response header object.
    pub place: SpecPlace,
}

pub struct ContractResponse {
    /// "200", "2XX" or "default".
    pub key: String,
    /// The response object (after `$ref`s).
    pub place: SpecPlace,
    pub media: Vec<ContractMedia>,
    pub headers: Vec<RequiredHeader>,
}

pub struct ContractBody {
    pub place: SpecPlace,
    pub media: Vec<ContractMedia>,
}

pub struct ContractOperation {
    /// Upper-case.
    pub method: String,
    pub template: String,
    pub operation_id: Option<String>,
    /// The operation object.
    pub place: SpecPlace,
    pub responses: Vec<ContractResponse>,
    pub request: Option<ContractBody>,
    pub request_headers: Vec<RequiredHeader>,
    /// Probed when the service's probe policy lists no operations: a GET or HEAD whose
    /// required parameters all have an example, an enum or a default.
    pub safe_to_probe: bool,
}

impl ContractOperation {
    /// `"GET /pets/{id}"`.
    pub fn endpoint(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// The declared response for `status`: the exact code, else its range (`2XX`), else
    /// `default`.
    pub fn response_for(&self, status: u16) -> Option<&ContractResponse> {
        let exact = status.to_string();
        let range = format!("{}XX", status / 100);
        self.responses
            .iter()
            .find(|r| r.key == exact)
            .or_else(|| self.responses.iter().find(|r| r.key == range))
            .or_else(|| self.responses.iter().find(|r| r.key == "default"))
    }
}

/// One service's contract.
pub struct Contract {
    pub service: String,
    /// Repo-relative path of the service's spec file.
    pub spec_file: String,
    pub spec: Spec,
    pub bundle: Bundle,
    router: Router,
    pub operations: Vec<ContractOperation>,
    /// The mock engine's view of the same spec (probes build their requests from it).
    pub mock: Arc<MockService>,
    pub upstream: Result<Upstream, crate::gateway::routes::Unservable>,
    pub budget: Option<DriftBudget>,
    pub probe: Option<ProbeSpec>,
    pub workspace_id: Option<String>,
    pub workspace_name: Option<String>,
}

impl Contract {
    /// The operation a method and path (relative to the service, percent-encoded) match.
    pub fn operation_for(&self, method: &str, path: &str) -> Option<usize> {
        match self.router.route(method, path) {
            Match::Found { op, .. } => Some(op),
            _ => None,
        }
    }

    /// The index in [`MockService`] of operation `i` (the same walk, so the same order).
    pub fn mock_index(&self, i: usize) -> Option<usize> {
        let op = self.operations.get(i)?;
        (0..self.mock.operation_count()).find(|&j| {
            self.mock
                .operation_route(j)
                .is_some_and(|(m, t)| m.as_str() == op.method && t == op.template)
        })
    }
}

impl Contract {
    /// The contract of a loaded spec, without upstream, budget or probe (tests, benches).
    pub fn from_spec(service: &str, spec: Spec) -> Result<Contract, ContractError> {
        let path = spec.root_path.clone();
        let err = |e: &dyn std::fmt::Display| ContractError::Compile {
            path: path.clone(),
            cause: e.to_string(),
        };
        let mock = MockService::compile(&spec).map_err(|e| err(&e))?;
        let (bundle, router, operations) = compile_spec(&spec).map_err(|e| err(&e))?;
        Ok(Contract {
            service: service.to_string(),
            spec_file: spec.root_path.clone(),
            spec,
            bundle,
            router,
            operations,
            mock: Arc::new(mock),
            upstream: Err(crate::gateway::routes::Unservable::NoUpstream(
                service.to_string(),
            )),
            budget: None,
            probe: None,
            workspace_id: None,
            workspace_name: None,
        })
    }
}

/// Loads the desired state of `sha` from `repo` and builds its contracts, with the mocks the
/// gateway's route table of that commit compiled (a service no federation serves is compiled
/// here).
pub fn build(repo: &Path, sha: &str) -> Result<Contracts, ContractsError> {
    let table = crate::gateway::routes::build(repo, sha).map_err(|e| ContractsError(e.0))?;
    let (files, state) = crate::config::load::load_valid(repo, sha)?;
    Ok(from_state(
        &state,
        &files,
        Some(sha.to_string()),
        &table.mocks,
    ))
}

/// The contracts of a validated desired state, reading specs through `files`; `mocks` are
/// compiled mocks by spec path, taken instead of compiling again.
pub fn from_state(
    state: &DesiredState,
    files: &dyn RevisionFiles,
    sha: Option<String>,
    mocks: &std::collections::HashMap<String, Arc<MockService>>,
) -> Contracts {
    let mut out = Contracts {
        sha,
        settings: state.settings.drift.clone(),
        ..Contracts::default()
    };
    for (name, entity) in &state.services {
        let s: &ServiceSpec = &entity.spec;
        let (Some(path), Some(up)) = (&s.spec, &s.upstream) else {
            continue;
        };
        match compile_service(state, files, path, mocks.get(path)) {
            Ok((spec_file, spec, bundle, router, operations, mock)) => {
                out.services.insert(
                    name.clone(),
                    Arc::new(Contract {
                        service: name.clone(),
                        spec_file,
                        spec,
                        bundle,
                        router,
                        operations,
                        mock,
                        upstream: crate::gateway::routes::upstream(up, Some(s)),
                        budget: s.drift_budget.clone(),
                        probe: s.probe.clone(),
                        workspace_id: Some(s.workspace_id.clone()),
                        workspace_name: s.workspace_name.clone(),
                    }),
                );
            }
            Err(e) => {
                out.broken.insert(name.clone(), e);
            }
        }
    }
    out
}

type Compiled = (
    String,
    Spec,
    Bundle,
    Router,
    Vec<ContractOperation>,
    Arc<MockService>,
);

fn compile_service(
    state: &DesiredState,
    files: &dyn RevisionFiles,
    path: &str,
    mock: Option<&Arc<MockService>>,
) -> Result<Compiled, ContractError> {
    let normalized = crate::git::revision::normalize(path).map_err(|e| ContractError::Read {
        path: path.to_string(),
        cause: e.to_string(),
    })?;
    if state.specs.get(&normalized).map(|s| s.schema_type) != Some(SchemaType::Openapi) {
        return Err(ContractError::NotOpenapi {
            path: path.to_string(),
        });
    }
    let bytes = files.read(&normalized).map_err(|e| ContractError::Read {
        path: path.to_string(),
        cause: e.to_string(),
    })?;
    let spec = crate::schema_diff::openapi::load::with_big_stack(|| {
        crate::schema_diff::openapi::load(&normalized, &bytes, files)
    })
    .map_err(|e| ContractError::Load {
        path: path.to_string(),
        cause: e.to_string(),
    })?;
    let compile_err = |e: &dyn std::fmt::Display| ContractError::Compile {
        path: path.to_string(),
        cause: e.to_string(),
    };
    let mock = match mock {
        Some(m) => m.clone(),
        None => Arc::new(MockService::compile(&spec).map_err(|e| compile_err(&e))?),
    };
    let (bundle, router, operations) = compile_spec(&spec).map_err(|e| compile_err(&e))?;
    Ok((normalized, spec, bundle, router, operations, mock))
}

/// Why a spec could not be compiled into a contract.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{operation}: {source}")]
    Schema {
        operation: String,
        source: crate::gateway::mock::schema::ConvertError,
    },
    #[error("{operation}: {source}")]
    Validator {
        operation: String,
        source: jsonschema::ValidationError<'static>,
    },
    #[error("cannot prepare the schema registry: {0}")]
    Registry(#[source] jsonschema::ReferencingError),
}

/// Resolves `v` (written in `place.file`) through `$ref`s to the object and its place.
fn resolve<'s>(spec: &'s Spec, place: &SpecPlace, v: &'s Value) -> Option<(&'s Value, SpecPlace)> {
    match v.as_object().and_then(ref_of).and_then(Value::as_str) {
        Some(r) => {
            let t = spec.ref_target(&place.file, r)?;
            let (v, t) = spec.lookup(&t)?;
            Some((
                v,
                SpecPlace {
                    file: t.file,
                    pointer: t.pointer,
                },
            ))
        }
        None => Some((v, place.clone())),
    }
}

/// The place of the path item of `path` in the root document (after its `$ref`).
fn path_item_place(spec: &Spec, path: &str) -> SpecPlace {
    let here = SpecPlace {
        file: spec.root_path.clone(),
        pointer: format!("/paths/{}", escape_pointer(path)),
    };
    match spec.root().pointer(&here.pointer) {
        Some(v) => resolve(spec, &here, v).map_or(here, |(_, p)| p),
        None => here,
    }
}

struct Pending {
    op: usize,
    target: Target,
    root: Value,
}

enum Target {
    Response(usize, usize),
    Request(usize),
}

/// Compiles every operation of `spec`: responses, media types, required headers, with the
/// places they came from.
pub fn compile_spec(spec: &Spec) -> Result<(Bundle, Router, Vec<ContractOperation>), CompileError> {
    let mut conv = Converter::new(spec);
    let mut router = Router::default();
    let mut out: Vec<ContractOperation> = Vec::new();
    let mut pending: Vec<Pending> = Vec::new();
    for op in ops::operations(spec) {
        let display = op.display();
        let schema_err = |source| CompileError::Schema {
            operation: display.clone(),
            source,
        };
        let op_place = path_item_place(spec, &op.path).child(op.method);
        let mut request_headers = Vec::new();
        let mut fillable = true;
        let path_level = op.path_level;
        let item_place = path_item_place(spec, &op.path);
        for (n, p) in op.parameters.iter().enumerate() {
            let written = if n < path_level {
                item_place.child("parameters").child(&n.to_string())
            } else {
                op_place
                    .child("parameters")
                    .child(&(n - path_level).to_string())
            };
            let Some((p, place)) = resolve(spec, &written, p) else {
                continue;
            };
            let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
            let required =
                location == "path" || p.get("required").and_then(Value::as_bool) == Some(true);
            if required {
                let schema = p.get("schema");
                let has_value = p.get("example").is_some()
                    || p.get("examples").is_some()
                    || schema.is_some_and(|s| {
                        s.get("example").is_some()
                            || s.get("enum").is_some()
                            || s.get("default").is_some()
                    });
                fillable &= has_value;
            }
            if location == "header"
                && required
                && let Some(name) = p.get("name").and_then(Value::as_str)
            {
                let lower = name.to_ascii_lowercase();
                request_headers.retain(|h: &RequiredHeader| h.name != lower);
                request_headers.push(RequiredHeader { name: lower, place });
            }
        }
        let index = out.len();
        let request = match op.value.get("requestBody") {
            Some(b) => match resolve(spec, &op_place.child("requestBody"), b) {
                Some((b, place)) => {
                    let media = media_of(
                        &mut conv,
                        &place,
                        b.get("content"),
                        Dir::Request,
                        |m, root| {
                            pending.push(Pending {
                                op: index,
                                target: Target::Request(m),
                                root,
                            })
                        },
                    )
                    .map_err(schema_err)?;
                    Some(ContractBody { place, media })
                }
                None => None,
            },
            None => None,
        };
        let mut responses = Vec::new();
        let responses_place = op_place.child("responses");
        for (key, r) in op
            .value
            .get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Some((r, place)) = resolve(spec, &responses_place.child(key), r) else {
                continue;
            };
            let mut headers = Vec::new();
            for (name, h) in r
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let Some((h, hplace)) = resolve(spec, &place.child("headers").child(name), h)
                else {
                    continue;
                };
                let lower = name.to_ascii_lowercase();
                if h.get("required") == Some(&Value::Bool(true)) && lower != "content-type" {
                    headers.push(RequiredHeader {
                        name: lower,
                        place: hplace,
                    });
                }
            }
            let ri = responses.len();
            let media = media_of(
                &mut conv,
                &place,
                r.get("content"),
                Dir::Response,
                |m, root| {
                    pending.push(Pending {
                        op: index,
                        target: Target::Response(ri, m),
                        root,
                    })
                },
            )
            .map_err(schema_err)?;
            responses.push(ContractResponse {
                key: key.to_ascii_uppercase().replace("DEFAULT", "default"),
                place,
                media,
                headers,
            });
        }
        let method = op.method.to_ascii_uppercase();
        router.add(&op.path, &method, index);
        out.push(ContractOperation {
            safe_to_probe: (method == "GET" || method == "HEAD") && fillable,
            method,
            template: op.path.clone(),
            operation_id: op
                .value
                .get("operationId")
                .and_then(Value::as_str)
                .map(str::to_string),
            place: op_place,
            responses,
            request,
            request_headers,
        });
    }
    let bundle = conv.finish().map_err(CompileError::Registry)?;
    for p in pending {
        let op = &mut out[p.op];
        let label = op.endpoint();
        let v = bundle
            .validator(&p.root)
            .map_err(|source| CompileError::Validator {
                operation: label,
                source,
            })?;
        let media = match p.target {
            Target::Request(m) => op.request.as_mut().and_then(|b| b.media.get_mut(m)),
            Target::Response(r, m) => op.responses.get_mut(r).and_then(|r| r.media.get_mut(m)),
        };
        if let Some(media) = media {
            media.validator = Some(v);
        }
    }
    Ok((bundle, router, out))
}

fn media_of(
    conv: &mut Converter<'_>,
    place: &SpecPlace,
    content: Option<&Value>,
    dir: Dir,
    mut schema_root: impl FnMut(usize, Value),
) -> Result<Vec<ContractMedia>, crate::gateway::mock::schema::ConvertError> {
    let mut out = Vec::new();
    for (media_type, m) in content.and_then(Value::as_object).into_iter().flatten() {
        let mplace = place.child("content").child(media_type);
        let splace = mplace.child("schema");
        if let Some(s) = m.get("schema") {
            let root = conv.root_at(&splace.file, &splace.pointer, s, dir)?;
            schema_root(out.len(), root);
        }
        out.push(ContractMedia {
            media_type: media_type.to_ascii_lowercase(),
            validator: None,
            place: splace,
        });
    }
    Ok(out)
}
