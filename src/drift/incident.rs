//! The incident: one kind of disagreement between a service's upstream and its spec, at one
//! place, with its counts and a few redacted samples. It is the seam between detection (which
//! makes incidents), budgets (which count them) and the patch (which fixes the spec from them).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many samples are kept per incident.
pub const MAX_SAMPLES: usize = 5;
/// A sample larger than this (as JSON text) is replaced by a note saying it was too large.
pub const MAX_SAMPLE_BYTES: usize = 16 * 1024;

/// What disagrees with the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// The response status is not declared for the operation (and there is no `default`).
    UndeclaredStatus,
    /// The response content type is not declared for the status.
    UndeclaredContentType,
    /// A property the schema requires is absent.
    MissingRequiredProperty,
    /// A property the schema does not declare is present (only where the schema closes
    /// `additionalProperties`, or, when the service asks for it, anywhere).
    UndocumentedProperty,
    /// The value's JSON type is not one the schema allows (integers are numbers).
    TypeMismatch,
    /// The value is not in the schema's `enum`.
    EnumValueNotInSpec,
    /// The value does not match the schema's `format` (or `pattern`).
    FormatViolation,
    /// A header the spec marks required is absent.
    MissingRequiredHeader,
}

impl IncidentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::UndeclaredStatus => "undeclared_status",
            IncidentKind::UndeclaredContentType => "undeclared_content_type",
            IncidentKind::MissingRequiredProperty => "missing_required_property",
            IncidentKind::UndocumentedProperty => "undocumented_property",
            IncidentKind::TypeMismatch => "type_mismatch",
            IncidentKind::EnumValueNotInSpec => "enum_value_not_in_spec",
            IncidentKind::FormatViolation => "format_violation",
            IncidentKind::MissingRequiredHeader => "missing_required_header",
        }
    }
}

/// Whether the disagreement is in what the client sent or what the upstream answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Request,
    Response,
}

/// Where the disagreement is, both in the exchange and in the spec file to change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Location {
    pub service: String,
    /// Upper-case HTTP method of the operation.
    pub method: String,
    /// The operation's path template as the spec writes it (`/pets/{id}`).
    pub path: String,
    pub operation_id: Option<String>,
    pub direction: Direction,
    /// The response status observed (0 for request incidents).
    pub status: u16,
    /// The media type observed (without parameters), when there was a body.
    pub content_type: Option<String>,
    /// JSON pointer into the observed body (`/items/0/name`; `""` for the whole body). For
    /// header incidents, the header name.
    pub pointer: String,
    /// Repo-relative path of the file holding the spec node to change (the file a `$ref`
    /// leads to, when it leads out of the service's spec file).
    pub spec_file: String,
    /// JSON pointer, into `spec_file`'s document, of the node the patch changes: the schema
    /// that rejected the value (for `undocumented_property`, the object schema; for
    /// `missing_required_property`, the schema holding `required`), the operation's
    /// `responses` object for `undeclared_status`, the response's `content` object for
    /// `undeclared_content_type`, the header parameter or response header for
    /// `missing_required_header`.
    pub spec_pointer: String,
}

/// Open until the spec accepts what was observed or it stops being seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentState {
    Open,
    /// A commit's spec accepts every sample.
    ResolvedBySpec,
    /// Not seen for the resolution window.
    ResolvedQuiet,
}

/// One deduplicated disagreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// The signature: a stable hash of kind and location (without samples or counts).
    pub id: String,
    pub kind: IncidentKind,
    pub location: Location,
    /// What the spec says, in a few words (`type string`, `enum [a, b]`, `statuses 200, 404`).
    pub expected: String,
    /// What was observed, in a few words.
    pub observed: String,
    pub count: u64,
    /// RFC 3339, UTC.
    pub first_seen: String,
    pub last_seen: String,
    /// Unix milliseconds of `last_seen`, for windows.
    pub last_seen_ms: u64,
    /// The observed values at `location.pointer` (for `undeclared_status` and
    /// `undeclared_content_type`, the whole bodies), redacted, at most [`MAX_SAMPLES`], each
    /// at most [`MAX_SAMPLE_BYTES`]. Distinct values first.
    pub samples: Vec<Value>,
    pub state: IncidentState,
    pub resolved_at: Option<String>,
    /// The applied commit whose spec the last observation was checked against.
    pub spec_sha: Option<String>,
}

impl Incident {
    /// The signature of an incident at `location` of `kind`: 16 hex digits, stable across
    /// releases (FNV-1a over the fields that locate it).
    pub fn signature(kind: IncidentKind, l: &Location) -> String {
        let mut h: u64 = 0xcbf29ce484222325;
        let dir = match l.direction {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        let status = l.status.to_string();
        for part in [
            kind.as_str(),
            &l.service,
            &l.method,
            &l.path,
            dir,
            &status,
            l.content_type.as_deref().unwrap_or(""),
            &l.pointer,
        ] {
            for b in part.bytes().chain([0u8]) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x100000001b3);
            }
        }
        format!("{h:016x}")
    }

    pub fn is_open(&self) -> bool {
        self.state == IncidentState::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc() -> Location {
        Location {
            service: "pets".into(),
            method: "GET".into(),
            path: "/pets/{id}".into(),
            operation_id: Some("getPet".into()),
            direction: Direction::Response,
            status: 200,
            content_type: Some("application/json".into()),
            pointer: "/status".into(),
            spec_file: "specs/pets.yaml".into(),
            spec_pointer: "/components/schemas/Pet/properties/status".into(),
        }
    }

    #[test]
    fn the_signature_is_stable_and_locates() {
        let a = Incident::signature(IncidentKind::EnumValueNotInSpec, &loc());
        assert_eq!(
            a,
            Incident::signature(IncidentKind::EnumValueNotInSpec, &loc())
        );
        assert_eq!(a.len(), 16);
        assert_ne!(a, Incident::signature(IncidentKind::TypeMismatch, &loc()));
        let mut other = loc();
        other.pointer = "/name".into();
        assert_ne!(
            a,
            Incident::signature(IncidentKind::EnumValueNotInSpec, &other)
        );
    }
}
