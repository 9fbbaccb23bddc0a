//! The route table: every federation of one applied commit, with its services by base path,
//! their compiled mocks, upstreams and chaos settings. Built off the request path (on the
//! blocking pool) and swapped in whole, so a request keeps the table it started with.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use indexmap::IndexMap;
use serde_json::Value as Json;

use super::chaos::Chaos;
use super::grpc::ProtoService;
use super::mock::MockService;
use crate::config::load::DesiredState;
use crate::git::revision::RevisionFiles;
use crate::model::RealityLevel;
use crate::schema_diff::SchemaType;

/// Default connect timeout to an upstream.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default wait for an upstream's response head.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a table could not be built (the previous one keeps serving).
#[derive(Debug, thiserror::Error)]
#[error("{0}; the previous routes keep serving")]
pub struct BuildError(#[from] pub crate::config::load::CommitError);

/// Why a service cannot be mocked or proxied (answered as a 503 problem when needed).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unservable {
    #[error("service `{0}` has no `spec`, so it cannot be mocked")]
    NoSpec(String),
    #[error("service `{0}` has no `upstream`")]
    NoUpstream(String),
    #[error("spec `{path}` is a protobuf file: it is served over gRPC, not HTTP/JSON")]
    Protobuf { path: String },
    #[error("spec `{path}` is not in this revision")]
    Missing { path: String },
    #[error("spec `{path}`: {cause}")]
    Read { path: String, cause: String },
    #[error("spec `{path}` does not load: {cause}")]
    Load { path: String, cause: String },
    #[error("spec `{path}` cannot be mocked: {cause}")]
    Compile { path: String, cause: String },
    #[error("upstream `{url}` is not a URL: {cause}")]
    BadUrl { url: String, cause: String },
    #[error("upstream `{0}` is not http(s)")]
    NotHttp(String),
    #[error("`{0}` is not a header name")]
    HeaderName(String),
    #[error("upstream header `{name}`: {cause}")]
    HeaderValue { name: String, cause: String },
}

/// Where a `real`/`blended` service's requests go.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: reqwest::Url,
    /// Header name and the value as sealed (references resolved per request).
    pub headers: Vec<(HeaderName, String)>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
}

/// One service of a federation, as the gateway serves it.
pub struct ServiceRoute {
    pub name: String,
    pub base_path: String,
    pub level: RealityLevel,
    /// The compiled mock, or why there is none (answered as a 503 problem when needed).
    pub mock: Result<Arc<MockService>, Unservable>,
    /// The upstream, or why there is none.
    pub upstream: Result<Upstream, Unservable>,
    pub chaos: Option<Chaos>,
    pub dependencies: Vec<String>,
    /// The compiled `.proto` spec (served over gRPC) or why it does not compile; `None` when
    /// the spec is not a `.proto`.
    pub proto: Option<Result<Arc<ProtoService>, Unservable>>,
}

/// One federation's services, longest base path first.
pub struct FederationRoutes {
    pub name: String,
    pub services: Vec<Arc<ServiceRoute>>,
    /// The services of `.proto` specs by the fully qualified gRPC service names they declare.
    pub grpc: BTreeMap<String, Arc<ServiceRoute>>,
}

impl FederationRoutes {
    /// The service whose base path is the longest whole-segment prefix of `path`, and the
    /// rest of the path (`/` when nothing is left).
    pub fn find<'a>(&self, path: &'a str) -> Option<(&Arc<ServiceRoute>, &'a str)> {
        self.services.iter().find_map(|s| {
            let rest = strip_base(&s.base_path, path)?;
            Some((s, rest))
        })
    }

    /// The order the federation's services come up in: every service after the members it
    /// depends on (dependencies outside the federation do not order it), ties by name. A
    /// cycle (refused by validation) leaves its members last, by name.
    pub fn start_order(&self) -> Vec<&str> {
        start_order(
            self.services
                .iter()
                .map(|s| (s.name.as_str(), s.dependencies.as_slice())),
        )
    }

    pub fn base_paths(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.services.iter().map(|s| s.base_path.as_str()).collect();
        v.sort_unstable();
        v
    }
}

/// `path` without `base` when `base` is a whole-segment prefix of it (`/auth` strips from
/// `/auth/x` and `/auth`, never from `/authz`).
pub fn strip_base<'a>(base: &str, path: &'a str) -> Option<&'a str> {
    if base == "/" {
        return Some(if path.is_empty() { "/" } else { path });
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some("/")
    } else if rest.starts_with('/') {
        Some(rest)
    } else {
        None
    }
}

/// A persona's traits.
pub type Traits = Arc<IndexMap<String, Json>>;

/// Personas' traits, by id and environment.
#[derive(Debug, Default)]
pub struct Personas {
    by_id: BTreeMap<String, Vec<(String, Traits)>>,
}

/// Why a persona header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonaProblem {
    Unknown { known: Vec<String> },
    Ambiguous { candidates: Vec<String> },
}

impl Personas {
    /// `<id>` (when one environment has it) or `<environment>/<id>`.
    pub fn lookup(&self, key: &str) -> Result<Arc<IndexMap<String, Json>>, PersonaProblem> {
        if let Some((env, id)) = key.split_once('/')
            && let Some(found) = self
                .by_id
                .get(id)
                .and_then(|v| v.iter().find(|(e, _)| e == env))
        {
            return Ok(found.1.clone());
        }
        match self.by_id.get(key).map(Vec::as_slice) {
            Some([(_, traits)]) => Ok(traits.clone()),
            Some(many) if !many.is_empty() => Err(PersonaProblem::Ambiguous {
                candidates: many.iter().map(|(e, _)| format!("{e}/{key}")).collect(),
            }),
            _ => Err(PersonaProblem::Unknown {
                known: self
                    .by_id
                    .iter()
                    .flat_map(|(id, envs)| {
                        envs.iter().map(move |(e, _)| {
                            if envs.len() == 1 {
                                id.clone()
                            } else {
                                format!("{e}/{id}")
                            }
                        })
                    })
                    .take(100)
                    .collect(),
            }),
        }
    }
}

/// Every federation of one applied commit.
#[derive(Default)]
pub struct RouteTable {
    /// The applied commit the table was built from (none before the first).
    pub sha: Option<String>,
    pub federations: BTreeMap<String, Arc<FederationRoutes>>,
    /// Host (lower case, as claimed: with or without port) -> federation.
    pub hosts: HashMap<String, String>,
    pub personas: Personas,
    /// The compiled mocks, by spec path as the services write it (drift's contracts share them).
    pub mocks: HashMap<String, Arc<MockService>>,
}

impl RouteTable {
    /// The federation a `Host` header names, if one claims it (with its port, or without).
    pub fn by_host(&self, host: &str) -> Option<&Arc<FederationRoutes>> {
        let host = host.to_ascii_lowercase();
        let name = self.hosts.get(&host).or_else(|| {
            let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
            self.hosts.get(bare)
        })?;
        self.federations.get(name)
    }
}

/// The table of commit `sha` of the repository at `repo`: its desired state loaded and its
/// specs compiled once, shared by the gateway, drift's contracts and the analytics catalog
/// (blocking: call from a blocking task). Only the last table is kept: the gateway holds the
/// one it serves, and an older one (with its answer cache) is not kept alive here.
pub fn build(repo: &Path, sha: &str) -> Result<Arc<RouteTable>, BuildError> {
    static TABLES: crate::config::load::CommitMemo<RouteTable> =
        crate::config::load::CommitMemo::new(1);
    TABLES.get(repo, sha, || {
        let (files, state) = crate::config::load::load_valid(repo, sha)?;
        Ok(from_state(&state, &files, Some(sha.to_string())))
    })
}

/// The table of a validated desired state, reading specs through `files`.
pub fn from_state(
    state: &DesiredState,
    files: &dyn RevisionFiles,
    sha: Option<String>,
) -> RouteTable {
    let mut mocks: HashMap<String, Result<Arc<MockService>, Unservable>> = HashMap::new();
    let mut protos: HashMap<String, Option<Result<Arc<ProtoService>, Unservable>>> = HashMap::new();
    let mut table = RouteTable {
        sha,
        ..RouteTable::default()
    };
    for (name, fed) in &state.federations {
        let mut services = Vec::new();
        for m in &fed.spec.services {
            // An inline member (own `workspace_id`) takes its spec and upstream from the
            // service of the same name, when there is one.
            let service = state.services.get(m.service.as_ref().unwrap_or(&m.name));
            let spec_path = service.and_then(|s| s.spec.spec.clone());
            let mock = match &spec_path {
                None => Err(Unservable::NoSpec(m.name.clone())),
                Some(p) => mocks
                    .entry(p.clone())
                    .or_insert_with(|| compile(state, files, p))
                    .clone(),
            };
            let upstream = match service.and_then(|s| s.spec.upstream.as_deref()) {
                None => Err(Unservable::NoUpstream(m.name.clone())),
                Some(u) => upstream(u, service.map(|s| &*s.spec)),
            };
            let chaos = (m.reality_level == RealityLevel::ChaosDriven)
                .then(|| Chaos::from_spec(&m.chaos.clone().unwrap_or_default()));
            let proto = match &spec_path {
                None => None,
                Some(p) => protos
                    .entry(p.clone())
                    .or_insert_with(|| compile_proto(state, files, p))
                    .clone(),
            };
            services.push(Arc::new(ServiceRoute {
                name: m.name.clone(),
                base_path: m.base_path.clone(),
                level: m.reality_level,
                mock,
                upstream,
                chaos,
                dependencies: m.dependencies.clone(),
                proto,
            }));
        }
        services.sort_by_key(|s| std::cmp::Reverse(s.base_path.len()));
        // Validation refuses two members serving one gRPC service name; the first wins.
        let mut grpc = BTreeMap::new();
        for s in &services {
            if let Some(Ok(p)) = &s.proto {
                for name in &p.services {
                    grpc.entry(name.clone()).or_insert_with(|| s.clone());
                }
            }
        }
        for h in &fed.spec.hosts {
            table.hosts.insert(h.clone(), name.clone());
        }
        table.federations.insert(
            name.clone(),
            Arc::new(FederationRoutes {
                name: name.clone(),
                services,
                grpc,
            }),
        );
    }
    table.mocks = mocks
        .into_iter()
        .filter_map(|(p, m)| Some((p, m.ok()?)))
        .collect();
    for ((env, id), p) in &state.personas {
        table
            .personas
            .by_id
            .entry(id.clone())
            .or_default()
            .push((env.clone(), Arc::new(p.spec.traits.clone())));
    }
    table
}

fn compile(
    state: &DesiredState,
    files: &dyn RevisionFiles,
    path: &str,
) -> Result<Arc<MockService>, Unservable> {
    let cause = |e: &dyn std::fmt::Display| e.to_string();
    let normalized = crate::git::revision::normalize(path).map_err(|e| Unservable::Read {
        path: path.to_string(),
        cause: cause(&e),
    })?;
    match state.specs.get(&normalized).map(|s| s.schema_type) {
        Some(SchemaType::Openapi) => {}
        Some(SchemaType::Protobuf) => {
            return Err(Unservable::Protobuf {
                path: path.to_string(),
            });
        }
        None => {
            return Err(Unservable::Missing {
                path: path.to_string(),
            });
        }
    }
    let bytes = files.read(&normalized).map_err(|e| Unservable::Read {
        path: path.to_string(),
        cause: cause(&e),
    })?;
    let spec = crate::schema_diff::openapi::load::with_big_stack(|| {
        crate::schema_diff::openapi::load(&normalized, &bytes, files)
    })
    .map_err(|e| Unservable::Load {
        path: path.to_string(),
        cause: cause(&e),
    })?;
    MockService::compile(&spec)
        .map(Arc::new)
        .map_err(|e| Unservable::Compile {
            path: path.to_string(),
            cause: cause(&e),
        })
}

/// The compiled `.proto` spec at `path`; `None` when the spec is not a `.proto`.
fn compile_proto(
    state: &DesiredState,
    files: &dyn RevisionFiles,
    path: &str,
) -> Option<Result<Arc<ProtoService>, Unservable>> {
    let normalized = crate::git::revision::normalize(path).ok()?;
    if state.specs.get(&normalized).map(|s| s.schema_type) != Some(SchemaType::Protobuf) {
        return None;
    }
    Some(
        ProtoService::compile(files, &normalized)
            .map(Arc::new)
            .map_err(|e| Unservable::Load {
                path: path.to_string(),
                cause: e.to_string(),
            }),
    )
}

/// The upstream of a service: its URL (http or https) and its headers, sealed.
pub fn upstream(
    raw: &str,
    service: Option<&crate::model::ServiceSpec>,
) -> Result<Upstream, Unservable> {
    let url = reqwest::Url::parse(raw).map_err(|e| Unservable::BadUrl {
        url: raw.to_string(),
        cause: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Unservable::NotHttp(raw.to_string()));
    }
    let mut headers = Vec::new();
    let timeouts = service.and_then(|s| s.upstream_timeouts);
    if let Some(s) = service {
        for (k, v) in &s.upstream_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| Unservable::HeaderName(k.clone()))?;
            let sealed = crate::secret::seal(v).map_err(|e| Unservable::HeaderValue {
                name: k.clone(),
                cause: e.to_string(),
            })?;
            headers.push((name, sealed));
        }
    }
    Ok(Upstream {
        url,
        headers,
        connect_timeout: timeouts
            .and_then(|t| t.connect_ms)
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis),
        response_timeout: timeouts
            .and_then(|t| t.response_ms)
            .map_or(DEFAULT_RESPONSE_TIMEOUT, Duration::from_millis),
    })
}

/// The order services come up in, from `(name, dependencies)` pairs: every service after the
/// members it depends on (names that are not members do not order it), ties by name. A cycle
/// (refused by validation) leaves its members last, by name.
pub fn start_order<'a>(nodes: impl Iterator<Item = (&'a str, &'a [String])>) -> Vec<&'a str> {
    let nodes: Vec<(&str, &[String])> = nodes.collect();
    let member = |n: &str| nodes.iter().any(|(m, _)| *m == n);
    let mut names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    let mut order: Vec<&str> = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        let next = names.iter().copied().find(|n| {
            !order.contains(n)
                && nodes
                    .iter()
                    .filter(|(m, _)| m == n)
                    .flat_map(|(_, deps)| deps.iter())
                    .all(|d| d == n || !member(d) || order.contains(&d.as_str()))
        });
        match next {
            Some(n) => order.push(n),
            None => {
                let rest: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|n| !order.contains(n))
                    .collect();
                order.extend(rest);
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(base: &str) -> Arc<ServiceRoute> {
        Arc::new(ServiceRoute {
            name: base.trim_start_matches('/').replace('/', "-"),
            base_path: base.into(),
            level: RealityLevel::MockV3,
            mock: Err(Unservable::NoSpec("none".into())),
            upstream: Err(Unservable::NoUpstream("none".into())),
            chaos: None,
            dependencies: Vec::new(),
            proto: None,
        })
    }

    #[test]
    fn base_paths_match_by_whole_segments_longest_first() {
        let mut services = vec![
            route("/auth"),
            route("/authz"),
            route("/api"),
            route("/api/v2"),
        ];
        services.sort_by_key(|s| std::cmp::Reverse(s.base_path.len()));
        let fed = FederationRoutes {
            name: "f".into(),
            services,
            grpc: BTreeMap::new(),
        };
        let hit = |p: &str| {
            fed.find(p)
                .map(|(s, rest)| (s.base_path.clone(), rest.to_string()))
        };
        assert_eq!(hit("/auth/login"), Some(("/auth".into(), "/login".into())));
        assert_eq!(
            hit("/authz/check"),
            Some(("/authz".into(), "/check".into()))
        );
        assert_eq!(hit("/auth"), Some(("/auth".into(), "/".into())));
        assert_eq!(
            hit("/api/v2/pets"),
            Some(("/api/v2".into(), "/pets".into()))
        );
        assert_eq!(
            hit("/api/v20/pets"),
            Some(("/api".into(), "/v20/pets".into()))
        );
        assert_eq!(hit("/authx"), None);
        assert_eq!(hit("/"), None);
        assert_eq!(strip_base("/", "/x"), Some("/x"));
    }

    #[test]
    fn services_start_after_the_members_they_depend_on() {
        let dep = |base: &str, deps: &[&str]| {
            let mut r = Arc::into_inner(route(base)).expect("fresh");
            r.dependencies = deps.iter().map(|d| d.to_string()).collect();
            Arc::new(r)
        };
        let fed = FederationRoutes {
            name: "f".into(),
            services: vec![
                dep("/web", &["orders", "auth"]),
                dep("/orders", &["auth", "billing-outside"]),
                dep("/auth", &[]),
                dep("/zeta", &[]),
            ],
            grpc: BTreeMap::new(),
        };
        // `billing-outside` is no member: it orders nothing. Ties go by name.
        assert_eq!(fed.start_order(), vec!["auth", "orders", "web", "zeta"]);
        let cyclic = FederationRoutes {
            name: "c".into(),
            services: vec![dep("/b", &["a"]), dep("/a", &["b"]), dep("/c", &[])],
            grpc: BTreeMap::new(),
        };
        assert_eq!(cyclic.start_order(), vec!["c", "a", "b"]);
    }

    #[test]
    fn personas_by_id_or_environment() {
        let mut p = Personas::default();
        let t = Arc::new(IndexMap::from([("tier".to_string(), Json::from("gold"))]));
        p.by_id
            .insert("solo".into(), vec![("dev".into(), t.clone())]);
        p.by_id.insert(
            "twin".into(),
            vec![("dev".into(), t.clone()), ("test".into(), t.clone())],
        );
        assert!(p.lookup("solo").is_ok());
        assert!(p.lookup("test/twin").is_ok());
        assert_eq!(
            p.lookup("twin"),
            Err(PersonaProblem::Ambiguous {
                candidates: vec!["dev/twin".into(), "test/twin".into()]
            })
        );
        match p.lookup("nobody") {
            Err(PersonaProblem::Unknown { known }) => {
                assert_eq!(known, vec!["solo", "dev/twin", "test/twin"])
            }
            other => panic!("{other:?}"),
        }
    }
}
