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
/// How long the writer gathers exchanges after the first of a batch.
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
        // Gather for a while without waiting on the channel (a waiting receiver would be
        // woken by every exchange: a thread wake-up per request), then take what came.
        tokio::select! {
            _ = tokio::time::sleep(GATHER) => {}
            _ = cancel.cancelled() => {}
        }
        let mut batch = vec![first];
        while let Ok(e) = rx.try_recv() {
            batch.push(e);
            if batch.len() == BATCH {
                store_batch(&store, std::mem::take(&mut batch)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            at: String::new(),
            at_micros: 1,
            federation: "f".into(),
            service: None,
            operation: None,
            method: "GET".into(),
            path: "/".into(),
            status: 200,
            latency_ms: 0.0,
            source: "mock".into(),
            persona: None,
            scenario: None,
            ci: false,
            grpc_status: None,
        }
    }

    #[test]
    fn a_full_record_drops_and_counts_without_waiting() {
        let dropped = Counter::default();
        let (recorder, mut rx) = Recorder::new(1.0, dropped.clone());
        let started = std::time::Instant::now();
        for _ in 0..CHANNEL_CAPACITY + 10 {
            recorder.record(exchange());
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(dropped.get(), 10);
        assert!(rx.try_recv().is_ok());
    }

    #[test]
    fn sampling_keeps_a_share() {
        let (none, mut rx) = Recorder::new(0.0, Counter::default());
        none.record(exchange());
        assert!(rx.try_recv().is_err());
        let (half, mut rx) = Recorder::new(0.5, Counter::default());
        for _ in 0..1000 {
            half.record(exchange());
        }
        let mut kept = 0;
        while rx.try_recv().is_ok() {
            kept += 1;
        }
        assert!((350..=650).contains(&kept), "{kept}");
    }

    #[tokio::test]
    async fn the_writer_stores_what_is_left_on_shutdown() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, _) = Store::open(dir.path()).expect("store");
        let (recorder, rx) = Recorder::new(1.0, Counter::default());
        for _ in 0..3 {
            recorder.record(exchange());
        }
        let cancel = CancellationToken::new();
        cancel.cancel();
        writer(store.clone(), rx, cancel).await;
        let stored = store
            .traffic(&crate::store::traffic::TrafficFilter {
                limit: 10,
                ..Default::default()
            })
            .expect("traffic");
        assert_eq!(stored.len(), 3);
    }
}
