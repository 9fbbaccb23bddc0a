//! The traffic record: every exchange the gateway serves becomes one [`Exchange`], handed to a
//! bounded channel with `try_send` (the response path never waits: when the channel is full
//! the exchange is dropped and counted), and one writer task stores them in batches.
//! Sampling (`--traffic-sample`) keeps a share of exchanges; retention (`--retain-traffic`)
//! prunes the table with the rest of the store.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::Store;
pub use crate::store::traffic::Exchange;

/// Exchanges waiting for the writer, at most.
pub const CHANNEL_CAPACITY: usize = 8192;
/// Exchanges per write transaction, at most.
const BATCH: usize = 512;
/// How long the writer gathers a batch after its first exchange.
const GATHER: Duration = Duration::from_millis(100);

/// The sending side, cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Exchange>,
    sample: f64,
    dropped: Counter,
}

impl Recorder {
    /// A recorder keeping `sample` (0 to 1) of exchanges, and its receiving side for
    /// [`writer`]. `dropped` counts exchanges lost to a full channel.
    pub fn new(sample: f64, dropped: Counter) -> (Recorder, mpsc::Receiver<Exchange>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        (
            Recorder {
                tx,
                sample: sample.clamp(0.0, 1.0),
                dropped,
            },
            rx,
        )
    }

    /// Hands `e` to the writer without waiting.
    pub fn record(&self, e: Exchange) {
        if self.sample < 1.0 && fastrand::f64() >= self.sample {
            return;
        }
        if self.tx.try_send(e).is_err() {
            self.dropped.inc();
        }
    }
}

/// The one writer: stores exchanges in batches until `cancel`, then stores what is left.
pub async fn writer(store: Store, mut rx: mpsc::Receiver<Exchange>, cancel: CancellationToken) {
    loop {
        let first = tokio::select! {
            e = rx.recv() => e,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + GATHER;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        store_batch(&store, batch).await;
    }
    rx.close();
    let mut rest = Vec::new();
    while let Ok(e) = rx.try_recv() {
        rest.push(e);
    }
    store_batch(&store, rest).await;
}

async fn store_batch(store: &Store, batch: Vec<Exchange>) {
    if batch.is_empty() {
        return;
    }
    let store = store.clone();
    let n = batch.len();
    match tokio::task::spawn_blocking(move || store.append_traffic(&batch)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, exchanges = n, "traffic record: cannot store a batch")
        }
        Err(e) => tracing::warn!(error = %e, "traffic record: the writer task failed"),
    }
}
