//! The desired state of one revision and the files it is assembled from: how a path is
//! classified, a parsed document, and the validated entities. Shared by the loader
//! (`load.rs`) and the cross-file checks (`check.rs`): the loader runs the checks, and the
//! checks need nothing of the loader but these types.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value as Json;

use crate::config::diag::Diagnostic;
use crate::config::yaml::Node;
use crate::model::{
    FederationSpec, Kind, PersonaSpec, PipelineSpec, ScenarioSpec, ServiceSpec, Settings,
    TemplateSpec,
};
use crate::schema_diff::SchemaType;

/// What a path in the repository is, by convention of the layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileClass {
    Config(Kind),
    /// `environments/<env>/scenarios|personas/*.yaml`: the kind and the environment.
    EnvEntity(Kind, String),
    Spec(SchemaType),
    /// A file under a watched directory that mockops does not read.
    Ignored,
}

fn is_yaml(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// Classifies a repo-relative path.
pub fn classify(path: &str) -> FileClass {
    if path == "mockops.yaml" || path == "mockops.yml" {
        return FileClass::Config(Kind::Settings);
    }
    if path.starts_with("specs/") {
        let f = path.rsplit('/').next().unwrap_or(path);
        return if f.ends_with(".proto") {
            FileClass::Spec(SchemaType::Protobuf)
        } else if is_yaml(f) || f.ends_with(".json") {
            FileClass::Spec(SchemaType::Openapi)
        } else {
            FileClass::Ignored
        };
    }
    // Config paths have two or four segments; no allocation for the split.
    let mut parts = [""; 4];
    let mut n = 0;
    for part in path.split('/') {
        if n == parts.len() {
            return FileClass::Ignored;
        }
        parts[n] = part;
        n += 1;
    }
    match &parts[..n] {
        ["services", f] if is_yaml(f) => FileClass::Config(Kind::Service),
        ["federations", f] if is_yaml(f) => FileClass::Config(Kind::Federation),
        ["pipelines", f] if is_yaml(f) => FileClass::Config(Kind::Pipeline),
        ["templates", f] if is_yaml(f) => FileClass::Config(Kind::Template),
        ["environments", env, "scenarios", f] if is_yaml(f) => {
            FileClass::EnvEntity(Kind::Scenario, (*env).to_string())
        }
        ["environments", env, "personas", f] if is_yaml(f) => {
            FileClass::EnvEntity(Kind::Persona, (*env).to_string())
        }
        _ => FileClass::Ignored,
    }
}

/// The file name without directory and extension.
pub fn file_stem(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// One parsed config document.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Settings(Box<Settings>),
    Service(Arc<ServiceSpec>),
    Federation(FederationSpec),
    Pipeline(Arc<PipelineSpec>),
    Scenario(Arc<ScenarioSpec>),
    Persona(Arc<PersonaSpec>),
    Template(Arc<TemplateSpec>),
    /// A spec file; `document` when it is a whole OpenAPI document or a .proto file.
    Spec {
        document: bool,
        /// The fully qualified gRPC services a .proto file declares.
        grpc_services: Vec<String>,
        /// The operations scenario steps resolve against (a usable document only).
        operations: Option<Arc<crate::scenario::catalog::Catalog>>,
    },
}

/// The outcome of parsing one blob as one kind. Diagnostics have an empty `file`; the loader
/// fills it in, since the same blob may sit at several paths.
#[derive(Debug)]
pub struct ParsedFile {
    pub node: Option<Node>,
    pub doc: Option<Doc>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A validated entity with where it came from. The spec is shared with the loader's parse
/// cache: loading an unchanged file again copies no part of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(bound(serialize = "T: Serialize"))]
pub struct Entity<T> {
    pub path: String,
    pub blob: String,
    #[serde(serialize_with = "shared")]
    pub spec: Arc<T>,
}

fn shared<T: Serialize, S: serde::Serializer>(value: &Arc<T>, s: S) -> Result<S::Ok, S::Error> {
    T::serialize(value, s)
}

/// A spec file of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecFile {
    pub schema_type: SchemaType,
    pub blob: String,
    /// Whether the file is a whole document (an OpenAPI root or a .proto), not a fragment
    /// referenced by `$ref`.
    pub document: bool,
    /// The fully qualified gRPC services a .proto file declares (`package.Service`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grpc_services: Vec<String>,
    /// The operations scenario steps resolve against; `None` when the spec is not usable.
    #[serde(skip)]
    pub operations: Option<Arc<crate::scenario::catalog::Catalog>>,
}

/// A federation with its members resolved against `services/`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Federation {
    pub name: String,
    pub description: Option<String>,
    /// Host names whose root the gateway serves this federation at (lower case).
    pub hosts: Vec<String>,
    pub services: Vec<FederatedService>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FederatedService {
    pub name: String,
    /// The entry of `services/` this member refers to, if any.
    pub service: Option<String>,
    pub workspace_id: String,
    pub base_path: String,
    pub reality_level: crate::model::RealityLevel,
    pub dependencies: Vec<String>,
    pub config: indexmap::IndexMap<String, Json>,
    /// The chaos settings in effect: the service's, overridden field by field by the member's,
    /// with `config.failure_rate` as `error_rate` when neither sets one.
    pub chaos: Option<crate::model::ChaosSpec>,
}

/// The whole desired state of one revision.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DesiredState {
    pub settings: Settings,
    pub services: BTreeMap<String, Entity<ServiceSpec>>,
    pub federations: BTreeMap<String, Entity<Federation>>,
    pub pipelines: BTreeMap<String, Entity<PipelineSpec>>,
    /// Keyed by (environment, scenario id).
    pub scenarios: BTreeMap<(String, String), Entity<ScenarioSpec>>,
    /// Keyed by (environment, persona id).
    pub personas: BTreeMap<(String, String), Entity<PersonaSpec>>,
    pub specs: BTreeMap<String, SpecFile>,
}

/// A file of the snapshot, read and parsed.
pub(crate) struct Input {
    pub path: String,
    pub blob: String,
    pub class: FileClass,
    pub parsed: Arc<ParsedFile>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_by_layout() {
        use FileClass as C;
        let env = |k, e: &str| C::EnvEntity(k, e.to_string());
        for (path, class) in [
            ("mockops.yaml", C::Config(Kind::Settings)),
            ("services/a.yaml", C::Config(Kind::Service)),
            ("services/a.yml", C::Config(Kind::Service)),
            ("services/sub/a.yaml", C::Ignored),
            ("services/a.json", C::Ignored),
            ("federations/f.yaml", C::Config(Kind::Federation)),
            ("pipelines/p.yaml", C::Config(Kind::Pipeline)),
            ("templates/t.yaml", C::Config(Kind::Template)),
            ("templates/sub/t.yaml", C::Ignored),
            (
                "environments/dev/scenarios/s.yaml",
                env(Kind::Scenario, "dev"),
            ),
            ("environments/dev/personas/p.yml", env(Kind::Persona, "dev")),
            ("environments/dev/scenarios/x/s.yaml", C::Ignored),
            ("specs/a/b/c/openapi.yaml", C::Spec(SchemaType::Openapi)),
            ("specs/a.json", C::Spec(SchemaType::Openapi)),
            ("specs/x/v1/svc.proto", C::Spec(SchemaType::Protobuf)),
            ("specs/README", C::Ignored),
            ("specs", C::Ignored),
            ("README.md", C::Ignored),
        ] {
            assert_eq!(classify(path), class, "{path}");
        }
    }
}
