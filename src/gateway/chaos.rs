//! Fault injection of `chaos_driven` services. Each request gets a [`Decision`] drawn from a
//! generator seeded by the service's `seed` and the request's number within the service (a
//! counter kept across route reloads), so with a seed the same request sequence gets the same
//! faults on any daemon: a CI failure can be replayed.
//!
//! Latency: `latency_ms: 250` (fixed), `{min, max}` (uniform), or `{p50, p99}` (log-normal with
//! that median and 99th percentile, capped at ten times `p99`).

use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use http::StatusCode;

use crate::model::{ChaosLatency, ChaosOver, ChaosSpec};

/// Statuses injected when `error_statuses` is not set.
pub const DEFAULT_ERROR_STATUSES: [u16; 3] = [500, 502, 503];

/// A service's chaos settings, ready to draw from.
#[derive(Debug, Clone, PartialEq)]
pub struct Chaos {
    pub seed: u64,
    /// Whether `seed` was configured (else it was drawn when the routes were built).
    pub seeded: bool,
    pub latency: Option<ChaosLatency>,
    pub error_rate: f64,
    pub error_statuses: Vec<StatusCode>,
    pub drop_rate: f64,
    pub slow_body_bytes_per_sec: Option<u64>,
    pub over_real: bool,
}

/// The faults of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub latency: Duration,
    /// Close the connection without a response.
    pub drop: bool,
    /// Answer with this status instead.
    pub error: Option<StatusCode>,
    pub slow_body_bytes_per_sec: Option<u64>,
}

impl Decision {
    /// `X-Mockops-Chaos`: what was injected (`latency=12ms, error=503`), or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency={}ms", self.latency.as_millis()));
        }
        if let Some(s) = self.error {
            parts.push(format!("error={}", s.as_u16()));
        }
        if let Some(b) = self.slow_body_bytes_per_sec {
            parts.push(format!("slow_body={b}B/s"));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }
}

/// SplitMix64: a small, well-mixed generator; enough for fault sampling, and stable across
/// platforms and versions (the replay contract depends on it).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Chaos {
    /// From the merged settings; without a seed, one is drawn now.
    pub fn from_spec(spec: &ChaosSpec) -> Chaos {
        Chaos {
            seed: spec.seed.unwrap_or_else(|| fastrand::u64(..)),
            seeded: spec.seed.is_some(),
            latency: spec.latency_ms,
            error_rate: spec.error_rate.unwrap_or(0.0).clamp(0.0, 1.0),
            error_statuses: spec
                .error_statuses
                .clone()
                .unwrap_or_else(|| DEFAULT_ERROR_STATUSES.to_vec())
                .into_iter()
                .filter_map(|s| StatusCode::from_u16(s).ok())
                .collect(),
            drop_rate: spec.drop_rate.unwrap_or(0.0).clamp(0.0, 1.0),
            slow_body_bytes_per_sec: spec.slow_body_bytes_per_sec.filter(|b| *b > 0),
            over_real: spec.over == Some(ChaosOver::Real),
        }
    }

    /// The faults of the service's request number `n` (from 0). Draws happen in a fixed order
    /// (latency, drop, error, status) whatever the settings, so changing one rate does not
    /// shift the others' sequence.
    pub fn decide(&self, n: u64) -> Decision {
        let mut rng = Rng(self.seed ^ Rng(n).next_u64());
        let (u1, u2) = (rng.unit(), rng.unit());
        let latency_ms = match self.latency {
            None => 0.0,
            Some(ChaosLatency::Fixed(ms)) => ms as f64,
            Some(ChaosLatency::Range { min, max }) => {
                min as f64 + u1 * (max.saturating_sub(min)) as f64
            }
            Some(ChaosLatency::Percentiles { p50, p99 }) => {
                let p50 = p50.max(1) as f64;
                let p99 = (p99 as f64).max(p50);
                // ln(p99 / p50) = 2.326 sigma for a log-normal.
                let sigma = (p99 / p50).ln() / 2.326_347_874;
                let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                (p50 * (sigma * z).exp()).min(p99 * 10.0)
            }
        };
        let drop = rng.unit() < self.drop_rate;
        let error_draw = rng.unit();
        let status_draw = rng.next_u64();
        let error = (!drop && error_draw < self.error_rate && !self.error_statuses.is_empty())
            .then(|| {
                let i = (status_draw % self.error_statuses.len() as u64) as usize;
                self.error_statuses[i]
            });
        Decision {
            latency: Duration::from_micros((latency_ms.max(0.0) * 1000.0) as u64),
            drop,
            error,
            slow_body_bytes_per_sec: self.slow_body_bytes_per_sec,
        }
    }
}

/// `body` at about `bytes_per_sec`: pieces of a tenth of a second's worth, each after its
/// share of time.
pub fn throttle<S, E>(body: S, bytes_per_sec: u64) -> impl Stream<Item = Result<Bytes, E>> + Send
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let piece = usize::try_from((bytes_per_sec / 10).max(1)).unwrap_or(usize::MAX);
    body.flat_map(move |chunk| {
        let pieces: Vec<Result<Bytes, E>> = match chunk {
            Ok(mut b) => {
                let mut out = Vec::new();
                while !b.is_empty() {
                    let n = piece.min(b.len());
                    out.push(Ok(b.split_to(n)));
                }
                out
            }
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(pieces)
    })
    .then(move |piece| async move {
        if let Ok(b) = &piece {
            let secs = b.len() as f64 / bytes_per_sec as f64;
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        }
        piece
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ChaosSpec {
        ChaosSpec {
            seed: Some(42),
            latency_ms: Some(ChaosLatency::Range { min: 10, max: 50 }),
            error_rate: Some(0.3),
            error_statuses: Some(vec![500, 503]),
            drop_rate: Some(0.1),
            ..Default::default()
        }
    }

    #[test]
    fn a_seed_gives_the_same_faults_every_time() {
        let a = Chaos::from_spec(&spec());
        let b = Chaos::from_spec(&spec());
        let seq_a: Vec<Decision> = (0..200).map(|n| a.decide(n)).collect();
        let seq_b: Vec<Decision> = (0..200).map(|n| b.decide(n)).collect();
        assert_eq!(seq_a, seq_b);
        // The faults are there, in about the configured shares.
        let errors = seq_a.iter().filter(|d| d.error.is_some()).count();
        let drops = seq_a.iter().filter(|d| d.drop).count();
        assert!((30..=90).contains(&errors), "{errors} errors of 200");
        assert!((5..=40).contains(&drops), "{drops} drops of 200");
        assert!(
            seq_a
                .iter()
                .all(|d| (10..=50).contains(&(d.latency.as_millis() as u64)))
        );
        // Another seed, another sequence.
        let c = Chaos::from_spec(&ChaosSpec {
            seed: Some(43),
            ..spec()
        });
        let seq_c: Vec<Decision> = (0..200).map(|n| c.decide(n)).collect();
        assert_ne!(seq_a, seq_c);
    }

    #[test]
    fn percentile_latency_has_its_median() {
        let c = Chaos::from_spec(&ChaosSpec {
            seed: Some(7),
            latency_ms: Some(ChaosLatency::Percentiles { p50: 100, p99: 400 }),
            ..Default::default()
        });
        let mut l: Vec<u128> = (0..2000).map(|n| c.decide(n).latency.as_millis()).collect();
        l.sort_unstable();
        let median = l[1000];
        assert!((80..=120).contains(&median), "median {median}");
        assert!(l[1980] <= 4000);
    }

    #[test]
    fn no_settings_no_faults() {
        let c = Chaos::from_spec(&ChaosSpec::default());
        let d = c.decide(3);
        assert_eq!(d.describe(), "none");
        assert!(!d.drop && d.error.is_none() && d.latency.is_zero());
    }
}
