//! Events as stored in the log and shown by the API and to pipelines.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// Who produced an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Origin(pub String);

impl Origin {
    pub fn commit(sha: &str) -> Self {
        Origin(format!("commit:{sha}"))
    }
    pub fn api(caller: &str) -> Self {
        Origin(format!("api:{caller}"))
    }
    pub fn pipeline(execution_id: &str) -> Self {
        Origin(format!("pipeline:{execution_id}"))
    }
}

/// A stored event. `id` grows by one per event, in the order events were stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: u64,
    pub event_type: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub source: Origin,
    pub workspace_id: Option<String>,
    pub workspace_name: Option<String>,
    pub org_id: Option<String>,
    /// Producers that may retry give a key; an event with a key already stored is not stored
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_key: Option<String>,
    pub payload: Map<String, Json>,
}

impl Event {
    /// The event as templates and filters see it: the envelope with the payload beside it.
    pub fn flattened(&self) -> Json {
        let mut m = Map::new();
        for (k, v) in &self.payload {
            m.insert(k.clone(), v.clone());
        }
        m.insert("id".into(), Json::from(self.id));
        m.insert("event_type".into(), Json::from(self.event_type.clone()));
        m.insert("timestamp".into(), Json::from(self.timestamp.clone()));
        m.insert("source".into(), Json::from(self.source.0.clone()));
        m.insert("workspace_id".into(), opt(&self.workspace_id));
        m.insert("workspace_name".into(), opt(&self.workspace_name));
        m.insert("org_id".into(), opt(&self.org_id));
        Json::Object(m)
    }
}

fn opt(v: &Option<String>) -> Json {
    v.as_ref()
        .map(|s| Json::from(s.clone()))
        .unwrap_or(Json::Null)
}

/// An event about to be stored: the store gives it its id and timestamp.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_type: String,
    pub source: Origin,
    pub workspace_id: Option<String>,
    pub workspace_name: Option<String>,
    pub org_id: Option<String>,
    pub dedup_key: Option<String>,
    pub payload: Map<String, Json>,
    /// Keep the producer's timestamp (API ingestion may give one); otherwise the store's clock.
    pub timestamp: Option<String>,
}

impl NewEvent {
    pub fn new(event_type: &str, source: Origin) -> Self {
        Self {
            event_type: event_type.to_string(),
            source,
            workspace_id: None,
            workspace_name: None,
            org_id: None,
            dedup_key: None,
            payload: Map::new(),
            timestamp: None,
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Json>) -> Self {
        self.payload.insert(key.to_string(), value.into());
        self
    }

    pub fn workspace(mut self, id: Option<String>, name: Option<String>) -> Self {
        self.workspace_id = id;
        self.workspace_name = name;
        self
    }

    pub(super) fn into_event(self, id: u64, now: &str) -> Event {
        Event {
            id,
            event_type: self.event_type,
            timestamp: self.timestamp.unwrap_or_else(|| now.to_string()),
            source: self.source,
            workspace_id: self.workspace_id,
            workspace_name: self.workspace_name,
            org_id: self.org_id,
            dedup_key: self.dedup_key,
            payload: self.payload,
        }
    }
}

/// Which events to read.
#[derive(Debug, Clone)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub workspace_id: Option<String>,
    /// Only events with an id above this one (paging cursor).
    pub after: Option<u64>,
    /// Only events at or after this RFC 3339 time.
    pub since: Option<String>,
    pub limit: usize,
}

impl Default for EventFilter {
    fn default() -> Self {
        Self {
            event_type: None,
            workspace_id: None,
            after: None,
            since: None,
            limit: 100,
        }
    }
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        if let Some(t) = &self.event_type
            && &e.event_type != t
        {
            return false;
        }
        if let Some(w) = &self.workspace_id
            && e.workspace_id.as_ref() != Some(w)
        {
            return false;
        }
        if let Some(since) = &self.since
            && !crate::util::time::not_before(&e.timestamp, since)
        {
            return false;
        }
        true
    }
}

/// Microseconds since the epoch of an RFC 3339 time (0 before the epoch), for the time
/// index; `None` when it does not parse.
pub(crate) fn time_key(ts: &str) -> Option<u64> {
    let t = crate::util::time::parse(ts)?;
    Some(
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX - 1))
            .unwrap_or(0),
    )
}

/// The time index key of an event: its time, or `u64::MAX` (after every time, so every time
/// query looks at it and its filter decides) when it does not parse.
pub(crate) fn time_key_of(ts: &str) -> u64 {
    time_key(ts).unwrap_or(u64::MAX)
}

/// Unix seconds of an RFC 3339 time.
pub(crate) fn unix_secs(ts: &str) -> Option<u64> {
    crate::util::time::parse(ts)?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}
