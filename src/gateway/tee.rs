//! Drift capture of proxied exchanges: for `real`, `blended` and `chaos_driven` over `real`,
//! the gateway copies what it forwards into a bounded side buffer and hands one
//! [`Observation`] per exchange to the drift writer. Capture never waits and never buffers the
//! response path: [`TeeBody`] forwards every frame (data and trailers) as soon as the inner body
//! yields it and only copies data frames aside; the observation is sent from its last poll.
//!
//! Bounds: a body over `--drift-max-body` (default 8 MiB) is recorded as
//! [`ObservedBody::Skipped`] with its size, and so is a body that would take the bytes held by
//! all captures in flight past [`IN_FLIGHT_BUDGET`]. `--drift-sample` keeps a share of
//! exchanges; a request not sampled costs one random number.
//!
//! When the client goes away before the response body ended, nothing is sent: a body seen in
//! part cannot be held against the spec, and the upstream did nothing wrong. A body that ends
//! with an error from the upstream is an [`Outcome::Failed`].

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::drift::{
    Observation, ObservationSender, ObservationSource, ObservedBody, ObservedRequest,
    ObservedResponse, Outcome,
};
use crate::secret::Redactor;

/// Default largest body kept for an observation (`--drift-max-body`).
pub const DEFAULT_DRIFT_MAX_BODY: usize = 8 * 1024 * 1024;
/// Bytes all captures in flight may hold together; past it bodies are recorded as skipped.
pub const IN_FLIGHT_BUDGET: usize = 64 * 1024 * 1024;

type Labels = Vec<(&'static str, String)>;

/// The gateway's end of the drift queue, with its bounds. Cheap to clone.
#[derive(Clone)]
pub struct DriftTap {
    sender: ObservationSender,
    observed: Family<Labels, Counter>,
    max_body: usize,
    sample: f64,
    in_flight: Arc<AtomicUsize>,
    budget: usize,
}

impl DriftTap {
    /// `observed` counts observations the queue accepted, by source
    /// (`mockops_drift_observations_total`).
    pub fn new(
        sender: ObservationSender,
        observed: Family<Labels, Counter>,
        max_body: usize,
        sample: f64,
    ) -> DriftTap {
        DriftTap {
            sender,
            observed,
            max_body,
            sample: if sample.is_nan() {
                1.0
            } else {
                sample.clamp(0.0, 1.0)
            },
            in_flight: Arc::new(AtomicUsize::new(0)),
            budget: IN_FLIGHT_BUDGET,
        }
    }

    /// The same tap with another bound on the bytes held in flight.
    pub fn with_budget(mut self, budget: usize) -> DriftTap {
        self.budget = budget;
        self
    }

    /// Whether this exchange is observed (`--drift-sample`).
    pub fn sampled(&self) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && fastrand::f64() < self.sample)
    }

    /// Bytes held by captures in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// A new bounded side buffer.
    pub fn capture(&self) -> Capture {
        Capture {
            buf: BytesMut::new(),
            size: 0,
            skipped: false,
            max: self.max_body,
            in_flight: self.in_flight.clone(),
            budget: self.budget,
        }
    }

    /// A body already read whole, within the cap.
    pub fn whole(&self, body: &Bytes) -> ObservedBody {
        if body.is_empty() {
            ObservedBody::None
        } else if body.len() > self.max_body {
            ObservedBody::Skipped {
                size: body.len() as u64,
            }
        } else {
            ObservedBody::Bytes(body.clone())
        }
    }

    /// Hands `o` to the drift writer without waiting; counts it when the queue took it.
    pub fn send(&self, o: Observation) -> bool {
        let source = match o.source {
            ObservationSource::Gateway => "gateway",
            ObservationSource::Probe => "probe",
            ObservationSource::Api => "api",
        };
        let taken = self.sender.send(o);
        if taken {
            self.observed
                .get_or_create(&vec![("source", source.to_string())])
                .inc();
        }
        taken
    }

    /// The observation of one request now starting: its head as the client sent it (control
    /// headers and anything holding one of the daemon's secrets left out), `path` relative to
    /// the service.
    pub fn begin(
        &self,
        federation: &str,
        service: &str,
        path: &str,
        head: &http::request::Parts,
        redactor: &Redactor,
    ) -> Pending {
        Pending {
            tap: self.clone(),
            federation: federation.to_string(),
            service: service.to_string(),
            at_ms: now_ms(),
            request: ObservedRequest {
                method: head.method.as_str().to_ascii_uppercase(),
                path: path.to_string(),
                query: head.uri.query().map(str::to_string),
                headers: observed_headers(&head.headers, redactor),
                body: ObservedBody::None,
            },
            request_body: RequestBody::Known(ObservedBody::None),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Headers as observed: lower-case names (as `http` keeps them), the gateway's control headers
/// (`x-mockops-*`) and any value holding one of the daemon's secrets left out.
pub fn observed_headers(h: &HeaderMap, redactor: &Redactor) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| !k.as_str().starts_with("x-mockops-"))
        .filter_map(|(k, v)| {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (redactor.redact(&v).as_ref() == v).then(|| (k.as_str().to_string(), v))
        })
        .collect()
}

/// A bounded side buffer: keeps a copy of the bytes it is shown up to its cap and while the
/// budget shared by all captures allows, then only counts them.
pub struct Capture {
    buf: BytesMut,
    size: u64,
    skipped: bool,
    max: usize,
    in_flight: Arc<AtomicUsize>,
    budget: usize,
}

impl Capture {
    pub fn push(&mut self, chunk: &[u8]) {
        self.size += chunk.len() as u64;
        if self.skipped || chunk.is_empty() {
            return;
        }
        let n = chunk.len();
        if self.buf.len() + n > self.max {
            self.skip();
            return;
        }
        let before = self.in_flight.fetch_add(n, Ordering::SeqCst);
        if before + n > self.budget {
            self.in_flight.fetch_sub(n, Ordering::SeqCst);
            self.skip();
            return;
        }
        self.buf.extend_from_slice(chunk);
    }

    fn skip(&mut self) {
        self.skipped = true;
        self.release();
    }

    fn release(&mut self) {
        let held = self.buf.len();
        if held > 0 {
            self.in_flight.fetch_sub(held, Ordering::SeqCst);
        }
        self.buf = BytesMut::new();
    }

    /// Bytes seen so far (kept or not).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// What was seen: the bytes, or only the size when over a bound.
    pub fn finish(mut self) -> ObservedBody {
        if self.skipped {
            return ObservedBody::Skipped { size: self.size };
        }
        if self.size == 0 {
            return ObservedBody::None;
        }
        let held = self.buf.len();
        let bytes = std::mem::take(&mut self.buf).freeze();
        self.in_flight.fetch_sub(held, Ordering::SeqCst);
        ObservedBody::Bytes(bytes)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.release();
    }
}

/// How a [`TeeBody`] ended.
#[derive(Debug)]
pub enum Ended {
    /// Whole: what it saw.
    Whole(ObservedBody),
    /// The inner body failed; why.
    BrokenOff(String),
}

/// Called once when a [`TeeBody`] ended.
pub type OnEnd = Box<dyn FnOnce(Ended) + Send + Sync>;

/// A body that forwards every frame of `inner` unchanged and copies data frames into a
/// [`Capture`]; when `inner` ends (its last frame, `None`, all of its declared length, or
/// `is_end_stream` when it is dropped unpolled) it calls its [`OnEnd`] once. Dropped before
/// the end: never called.
pub struct TeeBody<B: Body> {
    inner: B,
    capture: Option<Capture>,
    on_end: Option<OnEnd>,
    /// The declared length (`Content-Length`): a server stops polling once it has written
    /// that much, so reaching it is the end.
    length: Option<u64>,
}

impl<B: Body> TeeBody<B> {
    pub fn new(inner: B, capture: Capture, on_end: OnEnd) -> TeeBody<B> {
        TeeBody {
            inner,
            capture: Some(capture),
            on_end: Some(on_end),
            length: None,
        }
    }

    /// The same tee, ending once `length` bytes have passed.
    pub fn with_length(mut self, length: Option<u64>) -> TeeBody<B> {
        self.length = length;
        self
    }

    fn at_length(&self) -> bool {
        matches!((self.length, &self.capture), (Some(n), Some(c)) if c.size() >= n)
    }

    /// Ends the tee: whole, or broken off for `broken`'s reason.
    fn end(&mut self, broken: Option<String>) {
        if let (Some(capture), Some(on_end)) = (self.capture.take(), self.on_end.take()) {
            on_end(match broken {
                None => Ended::Whole(capture.finish()),
                Some(why) => Ended::BrokenOff(why),
            });
        }
    }
}

impl<B> Body for TeeBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(c)) = (frame.data_ref(), this.capture.as_mut()) {
                    c.push(data);
                }
                if this.inner.is_end_stream() || this.at_length() {
                    this.end(None);
                }
            }
            Poll::Ready(Some(Err(e))) => this.end(Some(e.to_string())),
            Poll::Ready(None) => this.end(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Body> Drop for TeeBody<B> {
    fn drop(&mut self) {
        // An empty body may never be polled: the server reads `is_end_stream` and drops it.
        if self.on_end.is_some() && (self.inner.is_end_stream() || self.at_length()) {
            self.end(None);
        }
    }
}

/// Where a streamed request body's capture lands once the upstream has read it all.
type Slot = Arc<Mutex<Option<ObservedBody>>>;

enum RequestBody {
    Known(ObservedBody),
    Streamed(Slot),
}

/// The observation of one exchange, waiting for its response.
pub struct Pending {
    tap: DriftTap,
    federation: String,
    service: String,
    at_ms: u64,
    request: ObservedRequest,
    request_body: RequestBody,
}

impl Pending {
    /// The request body, read whole by the gateway.
    pub fn request_read(&mut self, body: &Bytes) {
        self.request_body = RequestBody::Known(self.tap.whole(body));
    }

    /// The request body as it streams upstream: a tee of `body`.
    pub fn tee_request<B: Body>(&mut self, body: B) -> TeeBody<B> {
        let slot: Slot = Arc::new(Mutex::new(None));
        self.request_body = RequestBody::Streamed(slot.clone());
        TeeBody::new(
            body,
            self.tap.capture(),
            Box::new(move |r| {
                let body = match r {
                    Ended::Whole(b) => b,
                    Ended::BrokenOff(_) => ObservedBody::Skipped { size: 0 },
                };
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(body);
            }),
        )
    }

    fn send(self, outcome: Outcome) {
        let Pending {
            tap,
            federation,
            service,
            at_ms,
            mut request,
            request_body,
        } = self;
        request.body = match request_body {
            RequestBody::Known(b) => b,
            // The upstream answered before it read the whole request body.
            RequestBody::Streamed(slot) => slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or(ObservedBody::Skipped { size: 0 }),
        };
        tap.send(Observation {
            service,
            federation: Some(federation),
            source: ObservationSource::Gateway,
            at_ms,
            request,
            outcome,
        });
    }

    /// No response: refused, unreachable, timed out.
    pub fn failed(self, reason: String) {
        self.send(Outcome::Failed { reason });
    }

    /// A response whose body was read whole.
    pub fn answered(self, status: u16, headers: &HeaderMap, redactor: &Redactor, body: &Bytes) {
        let body = self.tap.whole(body);
        let headers = observed_headers(headers, redactor);
        self.send(Outcome::Answered(ObservedResponse {
            status,
            headers,
            body,
        }));
    }

    /// A response whose body streams to the client: `body` wrapped in a tee that sends the
    /// observation when it ends. `redactor` leaves out response headers holding a secret.
    pub fn tee_response<B: Body>(
        self,
        status: u16,
        headers: &HeaderMap,
        redactor: &Redactor,
        body: B,
    ) -> TeeBody<B> {
        // No body follows a HEAD request's response, nor a 204 or 304.
        let length = if self.request.method == "HEAD" || status == 204 || status == 304 {
            Some(0)
        } else {
            crate::http::declared_length(headers)
        };
        let headers = observed_headers(headers, redactor);
        let capture = self.tap.capture();
        TeeBody::new(
            body,
            capture,
            Box::new(move |r| match r {
                Ended::Whole(body) => self.send(Outcome::Answered(ObservedResponse {
                    status,
                    headers,
                    body,
                })),
                Ended::BrokenOff(why) => self.send(Outcome::Failed {
                    reason: format!("the upstream's response body broke off: {why}"),
                }),
            }),
        )
        .with_length(length)
    }
}

impl Pending {
    /// A response the gateway does not forward (a `blended` upstream's server error, answered
    /// by the mock instead): its body is read off the response path, bounded by `within`.
    pub fn answered_in_background(
        self,
        up: reqwest::Response,
        redactor: &Redactor,
        within: std::time::Duration,
    ) {
        let status = up.status().as_u16();
        let mut headers = up.headers().clone();
        super::proxy::strip_hop_by_hop(&mut headers);
        let headers = observed_headers(&headers, redactor);
        let mut capture = self.tap.capture();
        tokio::spawn(async move {
            let mut up = up;
            let read = tokio::time::timeout(within, async {
                loop {
                    match up.chunk().await {
                        Ok(Some(c)) => capture.push(&c),
                        Ok(None) => return Ok(()),
                        Err(e) => return Err(e.without_url().to_string()),
                    }
                }
            })
            .await;
            match read {
                Ok(Ok(())) => self.send(Outcome::Answered(ObservedResponse {
                    status,
                    headers,
                    body: capture.finish(),
                })),
                Ok(Err(why)) => {
                    self.failed(format!("the upstream's response body broke off: {why}"))
                }
                Err(_) => self.failed(format!(
                    "the upstream's response body did not end within {within:?}"
                )),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt as _, StreamBody};
    use tokio::sync::mpsc;

    type Frames = Vec<Result<Frame<Bytes>, std::io::Error>>;

    fn tap(max_body: usize) -> (DriftTap, mpsc::Receiver<Observation>) {
        let (sender, rx) = ObservationSender::new(Counter::default());
        (DriftTap::new(sender, Family::default(), max_body, 1.0), rx)
    }

    fn pending(tap: &DriftTap) -> Pending {
        let (head, ()) = http::Request::get("/shop/pets/1?a=1")
            .header("accept", "*/*")
            .header("x-mockops-persona", "gold")
            .header("authorization", "Bearer daemon-token")
            .body(())
            .expect("request")
            .into_parts();
        let redactor = Redactor::new();
        redactor.register("daemon-token");
        tap.begin("shop", "pets", "/pets/1", &head, &redactor)
    }

    type FrameStream =
        futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;

    fn body(frames: Frames) -> StreamBody<FrameStream> {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    fn answered(o: &Observation) -> &ObservedResponse {
        match &o.outcome {
            Outcome::Answered(r) => r,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn frames_pass_unchanged_and_the_observation_is_sent_once_at_the_end() {
        let (tap, mut rx) = tap(1024);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = vec![
            data("he"),
            data("llo"),
            Ok(Frame::trailers(trailers.clone())),
        ];
        let mut resp_headers = HeaderMap::new();
        resp_headers.insert("content-type", http::HeaderValue::from_static("text/plain"));
        let mut tee =
            pending(&tap).tee_response(200, &resp_headers, &Redactor::new(), body(frames));
        let mut seen = Vec::new();
        while let Some(f) = tee.frame().await {
            let f = f.expect("frame");
            assert!(
                rx.try_recv().is_err() || f.is_trailers(),
                "sent before the end"
            );
            seen.push(f);
        }
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].data_ref().map(|b| &b[..]), Some(&b"he"[..]));
        assert_eq!(seen[1].data_ref().map(|b| &b[..]), Some(&b"llo"[..]));
        assert_eq!(seen[2].trailers_ref(), Some(&trailers));
        drop(tee);
        let o = rx.try_recv().expect("one observation");
        assert!(rx.try_recv().is_err(), "only one");
        assert_eq!(o.service, "pets");
        assert_eq!(o.federation.as_deref(), Some("shop"));
        assert_eq!(o.source, ObservationSource::Gateway);
        assert_eq!(o.request.path, "/pets/1");
        assert_eq!(o.request.query.as_deref(), Some("a=1"));
        // The client's headers, without the control header and the daemon's token.
        assert_eq!(
            o.request.headers,
            vec![("accept".to_string(), "*/*".to_string())]
        );
        let r = answered(&o);
        assert_eq!(r.status, 200);
        assert_eq!(r.body, ObservedBody::Bytes(Bytes::from_static(b"hello")));
        assert_eq!(
            r.headers,
            vec![("content-type".to_string(), "text/plain".to_string())]
        );
        assert_eq!(tap.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_skipped_with_its_size_and_still_forwarded() {
        let (tap, mut rx) = tap(4);
        let mut tee = pending(&tap).tee_response(
            200,
            &HeaderMap::new(),
            &Redactor::new(),
            body(vec![data("abc"), data("defg")]),
        );
        let got = (&mut tee).collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"abcdefg");
        drop(tee);
        let o = rx.try_recv().expect("observation");
        assert_eq!(answered(&o).body, ObservedBody::Skipped { size: 7 });
        assert_eq!(tap.in_flight(), 0);
    }

    #[tokio::test]
    async fn the_shared_budget_bounds_what_captures_hold_together() {
        let (tap, mut rx) = tap(1024);
        let tap = tap.with_budget(5);
        let mut first = tap.capture();
        first.push(b"abcd");
        assert_eq!(tap.in_flight(), 4);
        let mut tee = pending(&tap).tee_response(
            200,
            &HeaderMap::new(),
            &Redactor::new(),
            body(vec![data("xyz")]),
        );
        let got = (&mut tee).collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"xyz");
        drop(tee);
        assert_eq!(
            answered(&rx.try_recv().expect("observation")).body,
            ObservedBody::Skipped { size: 3 }
        );
        assert_eq!(
            first.finish(),
            ObservedBody::Bytes(Bytes::from_static(b"abcd"))
        );
        assert_eq!(tap.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_client_gone_mid_body_sends_nothing_and_releases_its_bytes() {
        let (tap, mut rx) = tap(1024);
        let mut tee = pending(&tap).tee_response(
            200,
            &HeaderMap::new(),
            &Redactor::new(),
            body(vec![data("abc"), data("def")]),
        );
        tee.frame().await.expect("a frame").expect("data");
        assert_eq!(tap.in_flight(), 3);
        drop(tee);
        assert!(rx.try_recv().is_err());
        assert_eq!(tap.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_body_at_its_declared_length_is_observed_without_the_last_poll() {
        let (tap, mut rx) = tap(1024);
        let mut h = HeaderMap::new();
        h.insert("content-length", http::HeaderValue::from_static("5"));
        let mut tee =
            pending(&tap).tee_response(200, &h, &Redactor::new(), body(vec![data("hello")]));
        tee.frame().await.expect("a frame").expect("data");
        // A server that wrote `Content-Length` bytes drops the body without polling on.
        drop(tee);
        let o = rx.try_recv().expect("observation");
        assert_eq!(
            answered(&o).body,
            ObservedBody::Bytes(Bytes::from_static(b"hello"))
        );
    }

    #[tokio::test]
    async fn an_empty_body_dropped_unpolled_is_observed() {
        let (tap, mut rx) = tap(1024);
        let tee = pending(&tap).tee_response(
            204,
            &HeaderMap::new(),
            &Redactor::new(),
            http_body_util::Empty::<Bytes>::new(),
        );
        drop(tee);
        let o = rx.try_recv().expect("observation");
        assert_eq!(answered(&o).status, 204);
        assert_eq!(answered(&o).body, ObservedBody::None);
    }

    #[tokio::test]
    async fn a_body_broken_off_by_the_upstream_is_a_failed_exchange() {
        let (tap, mut rx) = tap(1024);
        let mut tee = pending(&tap).tee_response(
            200,
            &HeaderMap::new(),
            &Redactor::new(),
            body(vec![data("ab"), Err(std::io::Error::other("reset"))]),
        );
        while let Some(f) = tee.frame().await {
            if f.is_err() {
                break;
            }
        }
        drop(tee);
        let o = rx.try_recv().expect("observation");
        assert!(
            matches!(&o.outcome, Outcome::Failed { reason } if reason.contains("reset")),
            "{o:?}"
        );
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_request_tee_lands_in_the_observation() {
        let (tap, mut rx) = tap(1024);
        let mut p = pending(&tap);
        let mut req = p.tee_request(body(vec![data("up"), data("load")]));
        let got = (&mut req).collect().await.expect("body").to_bytes();
        assert_eq!(&got[..], b"upload");
        drop(req);
        p.failed("the upstream did not answer".into());
        let o = rx.try_recv().expect("observation");
        assert_eq!(
            o.request.body,
            ObservedBody::Bytes(Bytes::from_static(b"upload"))
        );
        assert_eq!(
            o.outcome,
            Outcome::Failed {
                reason: "the upstream did not answer".into()
            }
        );
    }

    #[test]
    fn sampling_and_a_full_queue_never_wait() {
        let (sender, _rx) = ObservationSender::new(Counter::default());
        let never = DriftTap::new(sender.clone(), Family::default(), 1, 0.0);
        assert!((0..100).all(|_| !never.sampled()));
        let always = DriftTap::new(sender, Family::default(), 1, f64::NAN);
        assert!(always.sampled());
        let (sender, _rx) = ObservationSender::new(Counter::default());
        let observed = Family::<Labels, Counter>::default();
        let tap = DriftTap::new(sender, observed.clone(), 16, 1.0);
        let started = std::time::Instant::now();
        let cap = crate::drift::observation::QUEUE_CAPACITY;
        for _ in 0..cap + 5 {
            pending(&tap).answered(200, &HeaderMap::new(), &Redactor::new(), &Bytes::new());
        }
        let counted = observed
            .get_or_create(&vec![("source", "gateway".to_string())])
            .get();
        assert_eq!(counted, cap as u64);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
