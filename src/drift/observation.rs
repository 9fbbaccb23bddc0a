//! An observation: one request a service's upstream answered (or failed to), as the gateway
//! proxied it, a probe sent it, or a client reported it (`POST /api/v1/drift/observations`).
//! Producers hand observations to the drift writer through an [`ObservationSender`], which
//! never waits: when the queue is full the observation is dropped and counted.

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;

/// Observations waiting for the drift writer, at most.
pub const QUEUE_CAPACITY: usize = 1024;

/// Who saw the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservationSource {
    /// The gateway proxied it (`real`, `blended`).
    Gateway,
    /// A scheduled or requested probe sent it.
    Probe,
    /// A client reported it through the API.
    Api,
}

/// A body as observed: its bytes, or only its size when it was over the cap.
#[derive(Debug, Clone, PartialEq)]
pub enum ObservedBody {
    None,
    Bytes(Bytes),
    /// Over the cap: recorded as skipped, not validated.
    Skipped {
        size: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedRequest {
    /// Upper-case.
    pub method: String,
    /// The path as the upstream saw it relative to the service (the federation's base path
    /// stripped), without the query.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: ObservedBody,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: ObservedBody,
}

/// What became of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Answered(ObservedResponse),
    /// No response: refused, unreachable, timed out. Not drift: the service's reachability is
    /// its own state.
    Failed {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub service: String,
    pub federation: Option<String>,
    pub source: ObservationSource,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub request: ObservedRequest,
    pub outcome: Outcome,
}

/// The producing side, cheap to clone.
#[derive(Clone)]
pub struct ObservationSender {
    tx: mpsc::Sender<Observation>,
    dropped: Counter,
}

impl ObservationSender {
    /// A queue of [`QUEUE_CAPACITY`]; `dropped` counts observations lost to a full queue.
    pub fn new(dropped: Counter) -> (ObservationSender, mpsc::Receiver<Observation>) {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        (ObservationSender { tx, dropped }, rx)
    }

    /// Hands `o` to the drift writer without waiting; false when it was dropped.
    pub fn send(&self, o: Observation) -> bool {
        if self.tx.try_send(o).is_err() {
            self.dropped.inc();
            return false;
        }
        true
    }
}
