//! Contract drift: what real upstreams answer, held against their specs.
//!
//! Observations (gateway exchanges of `real`/`blended` services, scheduled probes, and
//! `POST /api/v1/drift/observations`) are validated against the service's spec at the applied
//! commit; each disagreement becomes an [`Incident`], deduplicated by signature and stored
//! (`store::drift`). Budgets turn incidents into `drift.threshold_exceeded` /
//! `drift.recovered` events; `patch` proposes the spec change that accepts what was observed.

pub mod api;
pub mod budget;
pub mod contracts;
pub mod detect;
pub mod har;
pub mod incident;
pub mod observation;
pub mod patch;
pub mod probe;
pub mod validate;

pub use incident::{Direction, Incident, IncidentKind, IncidentState, Location};
pub use observation::{
    Observation, ObservationSender, ObservationSource, ObservedBody, ObservedRequest,
    ObservedResponse, Outcome,
};
