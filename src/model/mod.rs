//! The config repository's kinds as they are written in YAML: pipelines, federations, services,
//! scenarios, personas and the repo settings file. These raw types deny unknown fields, carry
//! the defaults of the design documents, and generate the JSON Schemas in `schemas/`.
//! `crate::config` checks them and builds the validated desired state.

pub mod events;

use std::borrow::Cow;

use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The kinds of file in a config repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Settings,
    Service,
    Federation,
    Pipeline,
    Scenario,
    Persona,
    Template,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Settings,
        Kind::Service,
        Kind::Federation,
        Kind::Pipeline,
        Kind::Scenario,
        Kind::Persona,
        Kind::Template,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Settings => "settings",
            Kind::Service => "service",
            Kind::Federation => "federation",
            Kind::Pipeline => "pipeline",
            Kind::Scenario => "scenario",
            Kind::Persona => "persona",
            Kind::Template => "template",
        }
    }

    /// The JSON Schema of the kind, as committed under `schemas/<kind>.schema.json`.
    pub fn schema(self) -> Schema {
        let settings = schemars::generate::SchemaSettings::draft2020_12();
        let generator = settings.into_generator();
        match self {
            Kind::Settings => generator.into_root_schema_for::<Settings>(),
            Kind::Service => generator.into_root_schema_for::<ServiceSpec>(),
            Kind::Federation => generator.into_root_schema_for::<FederationSpec>(),
            Kind::Pipeline => generator.into_root_schema_for::<PipelineSpec>(),
            Kind::Scenario => generator.into_root_schema_for::<ScenarioSpec>(),
            Kind::Persona => generator.into_root_schema_for::<PersonaSpec>(),
            Kind::Template => generator.into_root_schema_for::<TemplateSpec>(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// mockops.yaml

/// Repository-wide settings (`mockops.yaml`, optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Environments in promotion order. Default: `dev`, `test`, `prod`.
    #[serde(default = "default_environments")]
    pub environments: Vec<EnvironmentEntry>,
    /// Values available to templates as `{{variables.<name>}}`.
    #[serde(default)]
    pub variables: IndexMap<String, Json>,
    /// Defaults for notification channels, so pipelines need not repeat them.
    #[serde(default)]
    pub notify: NotifyDefaults,
    /// Limits and conventions for the pull requests mockops opens.
    #[serde(default)]
    pub pull_requests: PullRequestSettings,
    /// Execution defaults (timeout, retries) per step type.
    #[serde(default)]
    pub step_defaults: IndexMap<StepType, ExecutionDefaults>,
    /// Drift defaults: the budget of services without one, samples needed before a patch,
    /// when quiet incidents resolve.
    #[serde(default)]
    pub drift: DriftSettings,
    /// How `mockops pipelines create|enable|disable` (and their API) write their change to
    /// this repository.
    #[serde(default)]
    pub management: ManagementSettings,
}

/// The settings of a repository without `mockops.yaml`: the same as an empty file.
impl Default for Settings {
    fn default() -> Self {
        Self {
            environments: default_environments(),
            variables: IndexMap::new(),
            notify: NotifyDefaults::default(),
            pull_requests: PullRequestSettings::default(),
            step_defaults: IndexMap::new(),
            drift: DriftSettings::default(),
            management: ManagementSettings::default(),
        }
    }
}

/// How management verbs write to the config repository (`management:` in `mockops.yaml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManagementSettings {
    /// `pull_request` (default): a branch and a pull request to review; `direct`: a commit
    /// straight onto the followed branch.
    #[serde(default)]
    pub pipelines: WriteMode,
}

/// Whether a change is proposed for review or committed onto the followed branch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    #[default]
    PullRequest,
    Direct,
}

fn default_environments() -> Vec<EnvironmentEntry> {
    ["dev", "test", "prod"]
        .into_iter()
        .map(|n| EnvironmentEntry::Name(n.to_string()))
        .collect()
}

/// An environment: its name alone, or its name with its promotion policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum EnvironmentEntry {
    Name(String),
    Detailed(Environment),
}

impl EnvironmentEntry {
    pub fn name(&self) -> &str {
        match self {
            EnvironmentEntry::Name(n) => n,
            EnvironmentEntry::Detailed(e) => &e.name,
        }
    }

    /// Whether promotions into this environment may be committed without a pull request.
    /// Production (`prod`/`production`) always goes through review.
    pub fn allows_direct_commit(&self) -> bool {
        match self {
            EnvironmentEntry::Name(_) => false,
            EnvironmentEntry::Detailed(e) => e.direct_commit && !is_production(&e.name),
        }
    }
}

pub fn is_production(name: &str) -> bool {
    matches!(name, "prod" | "production")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    pub name: String,
    /// Promotions into this environment are committed directly instead of through a pull
    /// request. Ignored for production, which always goes through review.
    #[serde(default)]
    pub direct_commit: bool,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyDefaults {
    #[serde(default)]
    pub slack: Option<SlackDefaults>,
    #[serde(default)]
    pub email: Option<EmailDefaults>,
    #[serde(default)]
    pub webhook: Option<WebhookDefaults>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackDefaults {
    /// Incoming-webhook URL; write it as `${env:NAME}` or `${file:PATH}`.
    pub webhook_url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub icon_emoji: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailDefaults {
    pub smtp: SmtpConfig,
    #[serde(default)]
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookDefaults {
    /// HMAC-SHA256 key for the signature header; write it as `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequestSettings {
    /// Pull requests mockops may open per repository per hour.
    #[serde(default = "default_prs_per_hour")]
    pub max_per_hour: u32,
    /// Pull requests mockops may have open at once per repository.
    #[serde(default = "default_open_prs")]
    pub max_open: u32,
    /// Prefix of the branches mockops creates.
    #[serde(default = "default_branch_prefix")]
    pub branch_prefix: String,
    /// Labels added to every pull request mockops opens.
    #[serde(default)]
    pub labels: Vec<String>,
}

impl Default for PullRequestSettings {
    fn default() -> Self {
        Self {
            max_per_hour: default_prs_per_hour(),
            max_open: default_open_prs(),
            branch_prefix: default_branch_prefix(),
            labels: Vec::new(),
        }
    }
}

fn default_prs_per_hour() -> u32 {
    10
}
fn default_open_prs() -> u32 {
    20
}
fn default_branch_prefix() -> String {
    "mockops/".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutionDefaults {
    /// Seconds before a step attempt is abandoned.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Retries after a failed attempt (exponential backoff with jitter).
    #[serde(default)]
    pub retries: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// services/<name>.yaml

/// One service: its workspace, its spec, its real upstream, its default reality level, its
/// drift budget and its owners.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub name: String,
    pub workspace_id: String,
    #[serde(default)]
    pub workspace_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Repo-relative path of the service's OpenAPI document or .proto file.
    #[serde(default)]
    pub spec: Option<String>,
    /// Base URL of the real service, used when the reality level is `real` or `blended`.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Default path prefix when the service is used in a federation.
    #[serde(default)]
    pub base_path: Option<String>,
    #[serde(default = "default_reality")]
    pub reality_level: RealityLevel,
    #[serde(default)]
    pub dependencies: Vec<String>,
    #[serde(default)]
    pub drift_budget: Option<DriftBudget>,
    /// People or teams responsible (GitHub handles, teams or e-mail addresses).
    #[serde(default)]
    pub owners: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Headers the gateway adds to every request it sends upstream (`real`, `blended`). Values
    /// holding credentials must be `${env:NAME}` or `${file:PATH}` references.
    #[serde(default)]
    pub upstream_headers: IndexMap<String, String>,
    /// Timeouts of the gateway's requests to `upstream`.
    #[serde(default)]
    pub upstream_timeouts: Option<UpstreamTimeouts>,
    /// Faults the gateway injects when the reality level is `chaos_driven`.
    #[serde(default)]
    pub chaos: Option<ChaosSpec>,
    /// Scheduled requests to `upstream` whose responses are checked against `spec` (drift).
    #[serde(default)]
    pub probe: Option<ProbeSpec>,
}

/// When and what the daemon probes on a service's upstream to observe drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeSpec {
    /// Probe rounds run. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Seconds between rounds. Default 300, at least 1.
    #[serde(default = "default_probe_interval")]
    pub interval_seconds: u64,
    /// Share of the interval added or removed at random (0 to 1). Default 0.1.
    #[serde(default = "default_probe_jitter")]
    pub jitter: f64,
    /// Operations to call: operationIds or `"GET /path/{param}"`. Default: every GET or HEAD
    /// whose required parameters all have an example, an enum or a default; other methods
    /// are called only when listed.
    #[serde(default)]
    pub operations: Vec<String>,
    /// Headers added to every probe; values must be `${env:NAME}` or `${file:PATH}`
    /// references.
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Longest wait for a probe's response, in milliseconds. Default 10000.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn default_probe_interval() -> u64 {
    300
}
fn default_probe_jitter() -> f64 {
    0.1
}

/// Timeouts of the gateway's requests to a service's upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTimeouts {
    /// Longest wait for the TCP (and TLS) connection, in milliseconds. Default 2000.
    #[serde(default)]
    pub connect_ms: Option<u64>,
    /// Longest wait for the response head after the request was sent, in milliseconds.
    /// Default 30000.
    #[serde(default)]
    pub response_ms: Option<u64>,
}

/// Faults injected by the gateway (`chaos_driven`). Every field is optional; a federation
/// member's `chaos` overrides the service's field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    /// Seed of the fault sequence: with a seed, the same request sequence gets the same faults.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Added latency: a fixed number of milliseconds, `{min, max}` (uniform) or `{p50, p99}`
    /// (log-normal with that median and 99th percentile).
    #[serde(default)]
    pub latency_ms: Option<ChaosLatency>,
    /// Share of requests answered with one of `error_statuses` (0 to 1).
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Statuses of injected errors (400 to 599). Default: 500, 502, 503.
    #[serde(default)]
    pub error_statuses: Option<Vec<u16>>,
    /// Share of requests whose connection is closed without a response (0 to 1).
    #[serde(default)]
    pub drop_rate: Option<f64>,
    /// Sends response bodies at this many bytes per second.
    #[serde(default)]
    pub slow_body_bytes_per_sec: Option<u64>,
    /// What the faults are injected over: the mock (default) or the real upstream.
    #[serde(default)]
    pub over: Option<ChaosOver>,
}

/// Added latency of a chaos service.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ChaosLatency {
    /// Always this many milliseconds.
    Fixed(u64),
    /// Uniform between `min` and `max` milliseconds.
    Range { min: u64, max: u64 },
    /// Log-normal with median `p50` and 99th percentile `p99` milliseconds.
    Percentiles { p50: u64, p99: u64 },
}

/// What a chaos service's faults are injected over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChaosOver {
    Mock,
    Real,
}

fn default_reality() -> RealityLevel {
    RealityLevel::MockV3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RealityLevel {
    /// The real upstream, no mocking.
    Real,
    /// High-fidelity mock.
    MockV3,
    /// Mix of mock and real data.
    Blended,
    /// Failures and latency injected.
    ChaosDriven,
}

/// How much contract drift a service tolerates before `drift.threshold_exceeded` fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftBudget {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub max_breaking_changes: u32,
    #[serde(default = "default_non_breaking")]
    pub max_non_breaking_changes: u32,
    /// Window over which drift is counted, in hours.
    #[serde(default = "default_window_hours")]
    pub window_hours: u32,
    /// Open a pull request that fixes the spec when the budget is exceeded.
    #[serde(default)]
    pub open_pull_request: bool,
    /// Most open incidents (seen within the window) before the budget is exceeded; when
    /// unset, the budget is `max_breaking_changes` breaking incidents (missing required
    /// property, type mismatch, undeclared status, missing required header, enum value not in
    /// spec) or `max_non_breaking_changes` non-breaking ones (undocumented property, format
    /// violation, undeclared content type), whichever is crossed first.
    #[serde(default)]
    pub max_open_incidents: Option<u32>,
    /// Largest share (0 to 1) of the spec's operations with open incidents before the budget
    /// is exceeded. Unset: no limit.
    #[serde(default)]
    pub max_drifting_share: Option<f64>,
    /// Budgets of single endpoints (`"GET /pets/{id}"`), counted over that endpoint's
    /// incidents only; the most specific budget applies to an endpoint.
    #[serde(default)]
    pub endpoints: IndexMap<String, EndpointBudget>,
}

/// The budget of one endpoint: fields left out come from the service's budget.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBudget {
    #[serde(default)]
    pub max_breaking_changes: Option<u32>,
    #[serde(default)]
    pub max_non_breaking_changes: Option<u32>,
    #[serde(default)]
    pub max_open_incidents: Option<u32>,
}

/// Drift defaults of the repository (`drift:` in `mockops.yaml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftSettings {
    /// The budget of services that have an `upstream` and no `drift_budget`. Default: none
    /// (incidents are recorded, no budget events).
    #[serde(default)]
    pub budget: Option<DriftBudget>,
    /// Samples an incident needs before it counts toward a budget and before a spec patch
    /// is proposed for it. Default 3 (at least 2).
    #[serde(default = "default_min_samples")]
    pub min_samples: u32,
    /// Hours after which an incident not seen again resolves itself. Default 168 (7 days).
    #[serde(default = "default_resolve_after_hours")]
    pub resolve_after_hours: u32,
}

impl Default for DriftSettings {
    fn default() -> Self {
        Self {
            budget: None,
            min_samples: default_min_samples(),
            resolve_after_hours: default_resolve_after_hours(),
        }
    }
}

fn default_min_samples() -> u32 {
    3
}
fn default_resolve_after_hours() -> u32 {
    168
}

fn yes() -> bool {
    true
}
fn default_non_breaking() -> u32 {
    10
}
fn default_window_hours() -> u32 {
    24
}

// ---------------------------------------------------------------------------------------------
// federations/<name>.yaml

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Host names (optionally with `:port`) at whose root the gateway serves this federation,
    /// besides `/<name>/`.
    #[serde(default)]
    pub hosts: Vec<String>,
    pub services: Vec<FederationMember>,
}

/// A service of a federation: defined inline (with `workspace_id`), or a reference to
/// `services/<service or name>.yaml` whose fields given here override the service's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FederationMember {
    pub name: String,
    /// Name of the service in `services/` this entry refers to (default: `name`, when no
    /// `workspace_id` is given).
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub base_path: Option<String>,
    #[serde(default)]
    pub reality_level: Option<RealityLevel>,
    #[serde(default)]
    pub dependencies: Option<Vec<String>>,
    /// Per-service settings for the mock runtime (`failure_rate` is the chaos `error_rate`).
    #[serde(default)]
    pub config: IndexMap<String, Json>,
    /// Chaos settings overriding the service's, field by field.
    #[serde(default)]
    pub chaos: Option<ChaosSpec>,
}

// ---------------------------------------------------------------------------------------------
// pipelines/<name>.yaml

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Only events of this workspace trigger the pipeline (default: all).
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Only events of this organisation trigger the pipeline (default: all).
    #[serde(default)]
    pub org_id: Option<String>,
    pub definition: PipelineDefinition,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineDefinition {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The pipeline template (`templates/<name>.yaml`, by its `template` name) this pipeline
    /// is expanded from at load time: its steps run first, then this pipeline's; its triggers
    /// apply when this pipeline has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// Values of the template's variables (`{{variables.<name>}}` in its steps).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, Json>,
    /// Events that start the pipeline; any one of them is enough.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Steps, run in order.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
    /// Config keys merged under each step's `config` by step type (the step's keys win).
    #[serde(default)]
    pub step_defaults: IndexMap<StepType, IndexMap<String, Json>>,
    /// Values available to templates as `{{variables.<name>}}` (over `mockops.yaml`'s).
    #[serde(default)]
    pub variables: IndexMap<String, Json>,
}

// ---------------------------------------------------------------------------------------------
// templates/<name>.yaml

/// A reusable pipeline template: pipelines use it with `definition.uses: <template>` and
/// `with: {<variable>: value}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// The template's name, as pipelines name it in `uses`.
    pub template: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Variables with their defaults (`{{variables.<name>}}` in the steps); a variable whose
    /// value is `null` has no default and must be given by every pipeline that uses the
    /// template.
    #[serde(default)]
    pub variables: IndexMap<String, Json>,
    /// Another template this one extends: its steps run first.
    #[serde(default)]
    pub uses: Option<String>,
    /// Values of the extended template's variables.
    #[serde(default)]
    pub with: IndexMap<String, Json>,
    /// Triggers of the pipelines that use the template and have none of their own.
    #[serde(default)]
    pub triggers: Vec<Trigger>,
    /// Steps, run in order, before the using pipeline's own.
    #[serde(default)]
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// Event type (`schema.changed`, …) or the name of a custom event.
    pub event: String,
    /// All filters must match. A value matches by equality; a list means any of; on path
    /// fields (`spec_path`, `config_path`, `path`) a value may be a glob.
    #[serde(default)]
    pub filters: IndexMap<String, FilterValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FilterValue {
    One(Scalar),
    AnyOf(Vec<Scalar>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StepType {
    RegenerateSdk,
    AutoPromote,
    Notify,
    CreatePr,
}

impl StepType {
    pub const ALL: &'static [StepType] = &[
        StepType::RegenerateSdk,
        StepType::AutoPromote,
        StepType::Notify,
        StepType::CreatePr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepType::RegenerateSdk => "regenerate_sdk",
            StepType::AutoPromote => "auto_promote",
            StepType::Notify => "notify",
            StepType::CreatePr => "create_pr",
        }
    }

    pub fn parse(s: &str) -> Option<StepType> {
        Self::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// Outputs a step of this type records, for `{{steps.<name>.outputs.<key>}}`.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            StepType::RegenerateSdk => &[
                "files",
                "binary_files",
                "output_dir",
                "languages",
                "spec_path",
                "spec_files",
                "commit",
                "notes",
            ],
            StepType::AutoPromote => &[
                "promotion_id",
                "from_path",
                "to_path",
                "commit",
                "pr_url",
                "pr_number",
                "mode",
            ],
            StepType::Notify => &[
                "delivered",
                "channel",
                "status_code",
                "message_id",
                "deliveries",
                "to",
            ],
            StepType::CreatePr => &["pr_url", "pr_number", "branch", "commit", "action"],
        }
    }

    /// The JSON Schema of the step's `config`.
    fn config_schema(self, generator: &mut SchemaGenerator) -> Schema {
        match self {
            StepType::RegenerateSdk => generator.subschema_for::<RegenerateSdkConfig>(),
            StepType::AutoPromote => generator.subschema_for::<AutoPromoteConfig>(),
            StepType::Notify => generator.subschema_for::<NotifyConfig>(),
            StepType::CreatePr => generator.subschema_for::<CreatePrConfig>(),
        }
    }
}

/// One step. `config` is kept as written (templates are rendered at run time); its shape is
/// checked against the step type's config schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub name: String,
    pub step_type: StepType,
    #[serde(default)]
    pub config: IndexMap<String, Json>,
    #[serde(default)]
    pub continue_on_error: bool,
    /// Seconds before an attempt is abandoned.
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Retries after a failed attempt.
    #[serde(default)]
    pub retries: Option<u32>,
}

impl JsonSchema for StepSpec {
    fn schema_name() -> Cow<'static, str> {
        "Step".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator
            .definitions_mut()
            .insert(TEMPLATE_DEF.to_string(), template_schema());
        let branches: Vec<Json> = StepType::ALL
            .iter()
            .map(|t| {
                let mut config = t.config_schema(generator).to_value();
                let mut done = std::collections::BTreeSet::new();
                accept_templates(&mut config, generator.definitions_mut(), &mut done);
                serde_json::json!({
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "step_type"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "pattern": "\\S", "description": "Unique, non-empty name of the step in the pipeline."},
                        "step_type": {"const": t.as_str()},
                        "config": config,
                        "continue_on_error": {"type": "boolean", "default": false, "description": "Keep running the pipeline when this step fails."},
                        "timeout": {"type": "integer", "minimum": 1, "description": "Seconds before an attempt is abandoned."},
                        "retries": {"type": "integer", "minimum": 0, "description": "Retries after a failed attempt."}
                    }
                })
            })
            .collect();
        json_schema!({
            "description": "One step of a pipeline; `config` depends on `step_type`.",
            "oneOf": branches
        })
    }
}

/// Name of the definition (`#/$defs/Template`) of a template string in the pipeline schema.
pub const TEMPLATE_DEF: &str = "Template";
/// What makes a string a template, as a JSON Schema `pattern`.
pub const TEMPLATE_PATTERN: &str = r"\{\{";

/// A template (`{{ … }}`): what a step `config` field may hold instead of its own type. Step
/// configs are rendered before they are read, and a string that is one `{{ expression }}`
/// keeps the expression's type (`languages: "{{ variables.sdk_languages }}"` is a list).
fn template_schema() -> Json {
    serde_json::json!({
        "description": "A template (`{{ … }}`), rendered when the step runs; the result must have the field's type.",
        "type": "string",
        "pattern": TEMPLATE_PATTERN
    })
}

/// Makes every field under the step config schema `schema` accept a template where its own
/// type is not already any string: `{anyOf: [<its schema>, {$ref: "#/$defs/Template"}]}`.
/// Definitions it references are rewritten in place in `defs` (each once, tracked in
/// `done`), so they must be used by step configs only (true of every config type here).
/// Constants stay as they are: `type` chooses the `notify` variant before anything renders.
fn accept_templates(
    schema: &mut Json,
    defs: &mut serde_json::Map<String, Json>,
    done: &mut std::collections::BTreeSet<String>,
) {
    let Json::Object(map) = schema else { return };
    if let Some(name) = map
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        if done.insert(name.to_string())
            && let Some(slot) = defs.get_mut(name)
        {
            // Taken out while it is rewritten (it may refer to others); put back in its place.
            let mut def = slot.take();
            accept_templates(&mut def, defs, done);
            if let Some(slot) = defs.get_mut(name) {
                *slot = def;
            }
        }
        return;
    }
    if let Some(Json::Object(props)) = map.get_mut("properties") {
        for value in props.values_mut() {
            template_field(value, defs, done);
        }
    }
    for key in ["additionalProperties", "items"] {
        if let Some(value) = map.get_mut(key) {
            template_field(value, defs, done);
        }
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Json::Array(branches)) = map.get_mut(key) {
            for b in branches {
                accept_templates(b, defs, done);
            }
        }
    }
}

/// [`accept_templates`] for the schema of one field's value, which then also takes a template.
fn template_field(
    schema: &mut Json,
    defs: &mut serde_json::Map<String, Json>,
    done: &mut std::collections::BTreeSet<String>,
) {
    if !schema.is_object() {
        return;
    }
    accept_templates(schema, defs, done);
    if schema.get("const").is_some() || takes_any_string(schema, defs) {
        return;
    }
    let Json::Object(mut own) = schema.take() else {
        return;
    };
    // Annotations describe the field, whichever form it takes: they stay outside.
    let mut outer = serde_json::Map::new();
    for key in ["title", "description", "default", "deprecated", "examples"] {
        if let Some(v) = own.remove(key) {
            outer.insert(key.to_string(), v);
        }
    }
    let template = serde_json::json!({"$ref": format!("#/$defs/{TEMPLATE_DEF}")});
    outer.insert(
        "anyOf".into(),
        Json::Array(vec![Json::Object(own), template]),
    );
    *schema = Json::Object(outer);
}

/// Whether `schema` accepts every string (so also every template).
fn takes_any_string(schema: &Json, defs: &serde_json::Map<String, Json>) -> bool {
    let schema = match schema
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => match defs.get(name) {
            Some(def) => def,
            None => return false,
        },
        None => schema,
    };
    match schema {
        Json::Bool(b) => *b,
        Json::Object(m) if m.is_empty() => true,
        Json::Object(m) => {
            if ["const", "enum", "pattern", "minLength", "maxLength"]
                .iter()
                .any(|k| m.contains_key(*k))
            {
                return false;
            }
            match m.get("type") {
                Some(Json::String(t)) => t == "string",
                Some(Json::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => ["anyOf", "oneOf"].iter().any(|k| {
                    m.get(*k)
                        .and_then(Json::as_array)
                        .is_some_and(|bs| bs.iter().any(|b| takes_any_string(b, defs)))
                }),
            }
        }
        _ => false,
    }
}

/// `regenerate_sdk`: run SDK generators on a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateSdkConfig {
    /// Spec to generate from. Default: the triggering event's `spec_path`.
    #[serde(default)]
    pub spec_path: Option<String>,
    /// Languages to generate: presets `typescript`, `python`, `rust`, or any name with an
    /// entry in `generators`.
    pub languages: Vec<String>,
    #[serde(default = "default_output_dir")]
    pub output_dir: String,
    /// Custom generators by language: a command run with `{spec}` and `{out}` substituted.
    #[serde(default)]
    pub generators: IndexMap<String, GeneratorConfig>,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub enable_cors: Option<bool>,
    #[serde(default)]
    pub default_delay_ms: Option<u64>,
    #[serde(default)]
    pub mock_data_strategy: Option<MockDataStrategy>,
}

fn default_output_dir() -> String {
    "./generated-sdks".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// Program and arguments; `{spec}`, `{out}` and `{root}` are replaced by the spec file, the
    /// output directory and the repository root as of the commit (also the working directory).
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MockDataStrategy {
    Random,
    Examples,
    Defaults,
    ExamplesOrRandom,
}

/// Languages with a built-in generator preset.
pub const SDK_PRESETS: &[&str] = &["typescript", "python", "rust"];

/// `auto_promote`: copy an entity from one environment to the next, as a Git change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AutoPromoteConfig {
    pub entity_type: EntityType,
    pub entity_id: String,
    pub from_environment: String,
    pub to_environment: String,
    #[serde(default)]
    pub entity_version: Option<String>,
    #[serde(default)]
    pub comments: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntityType {
    Scenario,
    Persona,
    Config,
}

/// `notify`: Slack, e-mail or a generic webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum NotifyConfig {
    Slack {
        message: String,
        /// Default: `notify.slack.webhook_url` in `mockops.yaml`.
        #[serde(default)]
        slack_webhook_url: Option<String>,
        #[serde(default)]
        channels: Vec<String>,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        icon_emoji: Option<String>,
    },
    Email {
        message: String,
        /// Default: `notify.email.smtp` in `mockops.yaml`.
        #[serde(default)]
        smtp: Option<SmtpConfig>,
        #[serde(default)]
        to: Vec<String>,
        /// Same as `to` (the design documents use both names).
        #[serde(default)]
        email_to: Vec<String>,
        #[serde(default)]
        subject: Option<String>,
    },
    Webhook {
        message: String,
        #[serde(default)]
        webhook_url: Option<String>,
        #[serde(default)]
        webhook_urls: Vec<String>,
        #[serde(default)]
        method: Option<HttpMethod>,
        #[serde(default)]
        headers: IndexMap<String, String>,
        /// Extra JSON merged into the body.
        #[serde(default)]
        payload: IndexMap<String, Json>,
        /// HMAC-SHA256 key; the body's signature goes in `X-Mockops-Signature-256`.
        #[serde(default)]
        secret: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Post,
    Put,
    Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default)]
    pub port: Option<u16>,
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Write it as `${env:NAME}` or `${file:PATH}`.
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub tls: Option<SmtpTls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    Starttls,
    Tls,
    None,
}

/// `create_pr`: open (or update) a pull request with file changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePrConfig {
    /// `https://github.com/OWNER/REPO`, `OWNER/REPO`, or any Git URL (with `provider: git`).
    pub repository: String,
    /// Base branch the pull request targets.
    pub branch: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub files: Vec<FileChange>,
    /// Key of the topic: the same topic always maps to the same head branch.
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub reviewers: Vec<String>,
    #[serde(default)]
    pub team_reviewers: Vec<String>,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub provider: Option<PrProvider>,
    #[serde(default)]
    pub commit_message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrProvider {
    Github,
    Git,
}

/// One entry of `create_pr`'s `files`: a file written from `content` (or deleted), or a whole
/// directory of files from an earlier step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileChange {
    /// Repo-relative path; no absolute paths, no `..`, nothing under `.git`. With `from_step`,
    /// the directory the step's files go into (`.` for the repository root). Not used with
    /// `from_drift` (the patched spec files keep their paths).
    #[serde(default)]
    pub path: String,
    /// The file's text. A list or object (such as `"{{event.drift_data}}"`) is written as
    /// pretty-printed JSON.
    #[serde(default, deserialize_with = "content_text")]
    pub content: Option<String>,
    /// Take the files from an earlier step's outputs: a step name (its `files`, plus its
    /// `binary_files`) or `steps.<name>.outputs.<key>`, an object of relative path → content.
    /// The entry replaces the directory `path`: files under it in the base branch that the
    /// step did not produce this time (left from an earlier generation) are deleted in the
    /// same commit, so keep hand-written files outside it. At the repository root nothing is
    /// deleted. With `operation: delete`, the listed files are deleted instead.
    #[serde(default)]
    pub from_step: Option<String>,
    /// The drift fix of this service (`"{{event.service}}"`): the spec files patched so they
    /// accept what its upstream was observed doing, from its open incidents seen at least
    /// `min_samples` times; the pull request body gets the evidence. With nothing to patch the
    /// step opens nothing. The topic (and so the branch) defaults to the service.
    #[serde(default)]
    pub from_drift: Option<String>,
    #[serde(default = "default_operation")]
    pub operation: FileOperation,
}

/// `content` as text: a string as it is, a list or object as pretty JSON, a number or boolean
/// as written.
fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v: Option<serde_json::Value> = Option::deserialize(d)?;
    Ok(match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_))) => {
            Some(serde_json::to_string_pretty(&v).map_err(serde::de::Error::custom)? + "\n")
        }
        Some(other) => Some(other.to_string()),
    })
}

fn default_operation() -> FileOperation {
    FileOperation::Update
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FileOperation {
    Create,
    Update,
    Delete,
}

// ---------------------------------------------------------------------------------------------
// environments/<env>/scenarios/*.yaml and personas/*.yaml

/// A version as written: `3`, `1.2` or `"2024-05-01"` are all kept as text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Scalar", into = "String")]
pub struct Version(pub String);

impl From<Scalar> for Version {
    fn from(s: Scalar) -> Self {
        Version(match s {
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Str(s) => s,
        })
    }
}

impl From<Version> for String {
    fn from(v: Version) -> Self {
        v.0
    }
}

impl JsonSchema for Version {
    fn schema_name() -> Cow<'static, str> {
        "Version".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": ["string", "number"], "description": "Version of the entity; a change publishes it."})
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSpec {
    /// Stable id (default: the file name without extension).
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub version: Version,
    /// Workspace the scenario belongs to (omit for a federation-wide scenario).
    #[serde(default)]
    pub workspace_id: Option<String>,
    /// Federation a system-wide scenario runs across.
    #[serde(default)]
    pub federation: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Persona (id of `environments/<env>/personas/*.yaml`) every request of a run is tagged
    /// with (`X-Mockops-Persona`).
    #[serde(default)]
    pub persona: Option<String>,
    #[serde(default)]
    pub steps: Vec<ScenarioStep>,
}

/// A scenario step: which service, what action (an operationId of the service's spec, matched
/// case- and separator-insensitively) or which explicit `request`, and the action's own
/// parameters: every other key names a path, query or header parameter or a request-body
/// property of the operation (a property named like a step field is sent through `request`).
/// String values may use `{{steps.<step id or index>.<saved name>}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ScenarioStep {
    /// The step's id, which later steps use in `{{steps.<id>.<saved name>}}` (the step's index
    /// works too). Not `id`, which is a common parameter name.
    #[serde(default)]
    pub step: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    /// An operation of the service's spec (operationId, or RPC method of a .proto).
    #[serde(default)]
    pub action: Option<String>,
    /// The request written out, instead of `action`.
    #[serde(default)]
    pub request: Option<StepRequest>,
    /// What the response must be; a failed assertion stops the run.
    #[serde(default)]
    pub expect: Option<StepExpect>,
    /// Values kept for later steps: name -> JSON pointer into the response body.
    #[serde(default)]
    pub save: IndexMap<String, String>,
    #[serde(flatten)]
    pub params: IndexMap<String, Json>,
}

/// An explicit request of a scenario step, relative to the service's base path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    /// HTTP method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// Path below the service's base path, starting with `/`.
    pub path: String,
    #[serde(default)]
    pub query: IndexMap<String, Json>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// JSON body.
    #[serde(default)]
    pub body: Option<Json>,
}

/// Assertions on a step's response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepExpect {
    /// Expected HTTP status.
    #[serde(default)]
    pub status: Option<u16>,
    /// JSON pointer into the response body -> the value it must hold.
    #[serde(default)]
    pub body: IndexMap<String, Json>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonaSpec {
    /// Stable id (default: the file name without extension).
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub version: Version,
    #[serde(default)]
    pub workspace_id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Attributes of the persona used by mocks (free-form).
    #[serde(default)]
    pub traits: IndexMap<String, Json>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_pipeline_loads_unchanged() {
        let yaml = r#"
name: auto-sdk-regeneration
definition:
  enabled: true
  triggers:
    - event: schema.changed
      filters:
        schema_type: openapi
  steps:
    - name: regenerate_sdk
      step_type: regenerate_sdk
      config:
        spec_path: "{{event.spec_path}}"
        languages: [typescript, rust]
        output_dir: ./generated-sdks
      continue_on_error: false
      timeout: 300
"#;
        let p: PipelineSpec = serde_saphyr::from_str(yaml).expect("loads");
        assert_eq!(p.definition.steps[0].step_type, StepType::RegenerateSdk);
        assert_eq!(p.definition.steps[0].timeout, Some(300));
    }

    #[test]
    fn default_settings_equal_an_empty_file() {
        let empty: Settings = serde_json::from_value(serde_json::json!({})).expect("empty");
        assert_eq!(Settings::default(), empty);
        assert_eq!(Settings::default().environments.len(), 3);
    }

    #[test]
    fn notify_variants_deny_unknown_fields() {
        let ok: NotifyConfig = serde_json::from_value(
            serde_json::json!({"type": "slack", "message": "hi", "channels": ["#a"]}),
        )
        .expect("slack");
        assert!(matches!(ok, NotifyConfig::Slack { .. }));
        let bad = serde_json::from_value::<NotifyConfig>(
            serde_json::json!({"type": "slack", "message": "hi", "chanels": ["#a"]}),
        );
        assert!(bad.is_err());
    }

    /// Every field of every step config takes either any string or a template, except the
    /// constant that picks the `notify` variant; nothing outside step configs does.
    #[test]
    fn step_config_fields_take_templates() {
        let schema = Kind::Pipeline.schema().to_value();
        let defs = schema["$defs"].as_object().expect("defs");
        let template_ref = serde_json::json!({"$ref": "#/$defs/Template"});
        let takes_template = |field: &Json| {
            takes_any_string(field, defs)
                || field.get("const").is_some()
                || field["anyOf"]
                    .as_array()
                    .is_some_and(|bs| bs.contains(&template_ref))
        };
        let mut fields = 0;
        let mut objects: Vec<&Json> = [
            "RegenerateSdkConfig",
            "AutoPromoteConfig",
            "CreatePrConfig",
            "SmtpConfig",
            "FileChange",
            "GeneratorConfig",
        ]
        .iter()
        .map(|n| &defs[*n])
        .collect();
        objects.extend(defs["NotifyConfig"]["oneOf"].as_array().expect("variants"));
        for object in objects {
            for (name, field) in object["properties"].as_object().expect("properties") {
                assert!(takes_template(field), "{name}: {field:#}");
                fields += 1;
            }
        }
        assert!(fields > 40, "{fields} fields");
        let languages = &defs["RegenerateSdkConfig"]["properties"]["languages"];
        assert_eq!(languages["anyOf"][0]["type"], "array");
        assert!(
            languages["description"].is_string(),
            "annotations stay outside"
        );
        assert_eq!(defs["Template"]["pattern"], TEMPLATE_PATTERN);
        // Outside step configs nothing is rendered, so nothing takes a template.
        let step = &defs["Step"]["oneOf"][0]["properties"];
        assert_eq!(step["timeout"]["type"], "integer");
        assert!(
            !Kind::Service
                .schema()
                .to_value()
                .to_string()
                .contains("Template")
        );
    }
}
