//! The event catalog: every event type mockops produces and the fields each one carries.
//! Validation uses it to reject filters and templates that name fields an event cannot carry.

use serde::{Deserialize, Serialize};

/// Event types mockops knows. Anything else is a custom event posted to the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "schema.changed")]
    SchemaChanged,
    #[serde(rename = "config.changed")]
    ConfigChanged,
    #[serde(rename = "scenario.published")]
    ScenarioPublished,
    #[serde(rename = "persona.published")]
    PersonaPublished,
    #[serde(rename = "scenario.completed")]
    ScenarioCompleted,
    #[serde(rename = "scenario.failed")]
    ScenarioFailed,
    #[serde(rename = "workspace.created")]
    WorkspaceCreated,
    #[serde(rename = "promotion.completed")]
    PromotionCompleted,
    #[serde(rename = "drift.threshold_exceeded")]
    DriftThresholdExceeded,
    #[serde(rename = "pipeline.triggered")]
    PipelineTriggered,
    #[serde(rename = "pipeline.completed")]
    PipelineCompleted,
    #[serde(rename = "pipeline.failed")]
    PipelineFailed,
}

/// Fields of every event's envelope, available to filters and as `{{event.<field>}}`.
pub const ENVELOPE_FIELDS: &[&str] = &[
    "id",
    "event_type",
    "timestamp",
    "source",
    "workspace_id",
    "workspace_name",
    "org_id",
];

/// Payload fields that hold repository paths: filters on them accept globs.
pub const PATH_FIELDS: &[&str] = &["spec_path", "config_path", "path"];

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::SchemaChanged,
        EventType::ConfigChanged,
        EventType::ScenarioPublished,
        EventType::PersonaPublished,
        EventType::ScenarioCompleted,
        EventType::ScenarioFailed,
        EventType::WorkspaceCreated,
        EventType::PromotionCompleted,
        EventType::DriftThresholdExceeded,
        EventType::PipelineTriggered,
        EventType::PipelineCompleted,
        EventType::PipelineFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::SchemaChanged => "schema.changed",
            EventType::ConfigChanged => "config.changed",
            EventType::ScenarioPublished => "scenario.published",
            EventType::PersonaPublished => "persona.published",
            EventType::ScenarioCompleted => "scenario.completed",
            EventType::ScenarioFailed => "scenario.failed",
            EventType::WorkspaceCreated => "workspace.created",
            EventType::PromotionCompleted => "promotion.completed",
            EventType::DriftThresholdExceeded => "drift.threshold_exceeded",
            EventType::PipelineTriggered => "pipeline.triggered",
            EventType::PipelineCompleted => "pipeline.completed",
            EventType::PipelineFailed => "pipeline.failed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.iter().copied().find(|e| e.as_str() == s)
    }

    /// Payload fields the event always or may carry (besides [`ENVELOPE_FIELDS`]).
    pub fn payload_fields(self) -> &'static [&'static str] {
        match self {
            EventType::SchemaChanged => &[
                "spec_path",
                "schema_type",
                "changes",
                "breaking",
                "summary",
                // Set when the two versions could not be compared (`breaking` is then true).
                "diff_error",
                "service",
                "commit",
                "author",
            ],
            EventType::ConfigChanged => &[
                "config_path",
                "kind",
                "entity",
                "action",
                "changes",
                "commit",
                "author",
            ],
            EventType::ScenarioPublished => &[
                "scenario_id",
                "scenario_name",
                "name",
                "version",
                "environment",
                "path",
                "commit",
                "author",
            ],
            EventType::PersonaPublished => &[
                "persona_id",
                "persona_name",
                "name",
                "version",
                "environment",
                "path",
                "commit",
                "author",
            ],
            // A scenario run ended: every step passed (`completed`), or one failed.
            EventType::ScenarioCompleted | EventType::ScenarioFailed => &[
                "scenario_id",
                "scenario_name",
                "run_id",
                "environment",
                "federation",
                "persona",
                "status",
                "duration_ms",
                "commit",
                "steps",
                // `scenario.failed` only: the index of the step that failed, and why.
                "failed_step",
                "error",
            ],
            EventType::WorkspaceCreated => &["service", "commit", "author"],
            EventType::PromotionCompleted => &[
                "promotion_id",
                "entity_type",
                "entity_id",
                "from_environment",
                "to_environment",
                "commit",
                "author",
            ],
            EventType::DriftThresholdExceeded => &[
                "endpoint",
                "drift_count",
                "threshold",
                "drift_data",
                "service",
                "spec_path",
            ],
            EventType::PipelineTriggered | EventType::PipelineCompleted => &[
                "pipeline",
                "execution_id",
                "status",
                "trigger_event_id",
                "trigger_event_type",
            ],
            EventType::PipelineFailed => &[
                "pipeline",
                "execution_id",
                "status",
                "trigger_event_id",
                "trigger_event_type",
                "error",
                "failed_step",
            ],
        }
    }

    /// Every field of the event: envelope first, then payload.
    pub fn fields(self) -> impl Iterator<Item = &'static str> {
        ENVELOPE_FIELDS.iter().chain(self.payload_fields()).copied()
    }

    pub fn carries(self, field: &str) -> bool {
        self.fields().any(|f| f == field)
    }

    pub fn is_pipeline_event(self) -> bool {
        matches!(
            self,
            EventType::PipelineTriggered | EventType::PipelineCompleted | EventType::PipelineFailed
        )
    }
}

/// The event a trigger names: a known type, or a custom name posted to the API.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum TriggerEvent {
    Known(EventType),
    Custom(String),
}

impl TriggerEvent {
    pub fn as_str(&self) -> &str {
        match self {
            TriggerEvent::Known(e) => e.as_str(),
            TriggerEvent::Custom(s) => s,
        }
    }

    /// Whether the event can carry `field`; custom events carry anything.
    pub fn carries(&self, field: &str) -> bool {
        match self {
            TriggerEvent::Known(e) => e.carries(field),
            TriggerEvent::Custom(_) => true,
        }
    }
}
