//! Schema diff engine: compares two versions of an API description (OpenAPI 3.0/3.1 or
//! protobuf) and classifies every change as breaking (ERR), possibly breaking (WARN) or not
//! (INFO). The types here are the contract shared by both front ends, the `mockops diff` CLI
//! and the daemon's `schema.changed` payload.

pub mod proto;

use serde::{Deserialize, Serialize};

/// How severe a change is for existing clients. Ordered: `Info < Warn < Err`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Not breaking.
    Info,
    /// Possibly breaking; cannot be confirmed from the description alone.
    Warn,
    /// Breaking for existing clients.
    Err,
}

/// Which side of the exchange a change concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Request,
    Response,
    None,
}

/// The kind of API description a spec file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    Openapi,
    Protobuf,
}

impl SchemaType {
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaType::Openapi => "openapi",
            SchemaType::Protobuf => "protobuf",
        }
    }
}

/// One classified change. A change to a shared component is one `Change` whose `operations`
/// lists every operation it reaches, never one `Change` per reachable location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Stable rule id (oasdiff's id where the meaning is the same, buf's for protobuf).
    pub id: String,
    pub level: Level,
    pub direction: Direction,
    /// Where in the description the change is (a JSON pointer or a protobuf element path).
    pub location: String,
    pub message: String,
    /// Operations the change reaches (`GET /pets/{id}`, `pkg.Service/Method`), sorted.
    pub operations: Vec<String>,
}

pub use crate::source::{ReadError, SourceFiles};
