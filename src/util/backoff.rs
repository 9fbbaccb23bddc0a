//! Exponential backoff with full jitter, and jittered intervals for periodic polling: the one
//! implementation behind the reconcile loop's retries, the pipeline engine's step retries and
//! its dispatch retries.
//!
//! Full jitter (a uniform delay between zero and the exponential ceiling) spreads the retries of
//! many daemons that lost the same remote at the same instant, so they do not come back in step.

use std::time::Duration;

/// Retry delays for one failing activity: the ceiling doubles with each failure up to `max`,
/// the delay is drawn uniformly from `[0, ceiling]`, and a success resets it.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// `base` is the ceiling after the first failure, `max` the largest ceiling. A `max` below
    /// `base` is raised to `base`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            failures: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The same, with a seeded random source (reproducible delays in tests).
    pub fn with_seed(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            ..Self::new(base, max)
        }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling();
        draw(&mut self.rng, ceiling)
    }

    /// The largest delay the current failure count can produce: `base * 2^(failures-1)`,
    /// capped at `max`; zero before the first failure.
    pub fn ceiling(&self) -> Duration {
        ceiling(self.base, self.max, self.failures)
    }

    /// Call after a success: the next failure starts again from `base`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The delay after the `failures`-th failure in a row (1 is the first; 0 counts as 1), for a
/// caller that keeps the count itself (the pipeline engine stores a step's attempts): drawn as
/// [`Backoff::next_delay`] draws it after as many failures.
pub fn delay_after(base: Duration, max: Duration, failures: u32) -> Duration {
    let ceiling = ceiling(base, max.max(base), failures.max(1));
    draw(&mut fastrand::Rng::new(), ceiling)
}

/// `base * 2^(failures-1)` capped at `max`; zero for no failure.
fn ceiling(base: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(63);
    let factor = 1u64 << shift;
    let nanos = base.as_nanos().saturating_mul(u128::from(factor));
    if nanos >= max.as_nanos() {
        max
    } else {
        // Below `max`, which is a `Duration`, so it fits.
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Uniform in `[0, ceiling]`.
fn draw(rng: &mut fastrand::Rng, ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.u64(0..=nanos))
}

/// `interval` moved by a random amount of up to `fraction` of it either way (`fraction` is
/// clamped to `[0, 1]`), so periodic polls of many daemons drift apart.
pub fn jittered(interval: Duration, fraction: f64) -> Duration {
    jittered_with(&mut fastrand::Rng::new(), interval, fraction)
}

fn jittered_with(rng: &mut fastrand::Rng, interval: Duration, fraction: f64) -> Duration {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let spread = interval.as_secs_f64() * fraction;
    let offset = (rng.f64() * 2.0 - 1.0) * spread;
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn ceiling_doubles_up_to_max() {
        let mut b = Backoff::with_seed(BASE, MAX, 1);
        assert_eq!(b.ceiling(), Duration::ZERO);
        let expected = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for ms in expected {
            b.next_delay();
            assert_eq!(b.ceiling(), Duration::from_millis(ms));
        }
    }

    #[test]
    fn delays_stay_within_zero_and_ceiling() {
        for seed in 0..50 {
            let mut b = Backoff::with_seed(BASE, MAX, seed);
            for _ in 0..20 {
                let d = b.next_delay();
                assert!(d <= b.ceiling(), "{d:?} over {:?}", b.ceiling());
                assert!(d <= MAX);
            }
        }
    }

    #[test]
    fn delays_are_spread_not_fixed() {
        let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(1), 7);
        let delays: Vec<Duration> = (0..100).map(|_| b.next_delay()).collect();
        let low = delays
            .iter()
            .filter(|d| **d < Duration::from_millis(500))
            .count();
        // Uniform over [0, 1 s]: about half fall in the lower half.
        assert!((25..=75).contains(&low), "{low} of 100 below 500 ms");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::with_seed(BASE, MAX, 3);
        for _ in 0..10 {
            b.next_delay();
        }
        assert_eq!(b.ceiling(), MAX);
        b.reset();
        assert_eq!(b.failures(), 0);
        let d = b.next_delay();
        assert!(d <= BASE);
        assert_eq!(b.ceiling(), BASE);
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut b = Backoff::with_seed(Duration::from_secs(3600), Duration::from_secs(86400), 9);
        for _ in 0..1000 {
            assert!(b.next_delay() <= Duration::from_secs(86400));
        }
        assert_eq!(b.ceiling(), Duration::from_secs(86400));
    }

    #[test]
    fn max_below_base_is_raised() {
        let mut b = Backoff::with_seed(Duration::from_secs(2), Duration::from_secs(1), 0);
        b.next_delay();
        assert_eq!(b.ceiling(), Duration::from_secs(2));
    }

    #[test]
    fn delay_after_counts_like_next_delay() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for failures in 0..40 {
            let d = delay_after(base, max, failures);
            let mut b = Backoff::new(base, max);
            for _ in 0..failures.max(1) {
                b.next_delay();
            }
            assert!(d <= b.ceiling(), "{failures}: {d:?} over {:?}", b.ceiling());
        }
        // The first failure (and a count of zero) waits at most `base`.
        for _ in 0..100 {
            assert!(delay_after(base, max, 0) <= base);
            assert!(delay_after(base, max, 1) <= base);
        }
        let spread: std::collections::HashSet<u128> = (0..20)
            .map(|_| delay_after(base, max, 3).as_micros())
            .collect();
        assert!(spread.len() > 1, "not jittered");
    }

    #[test]
    fn jitter_bounds() {
        let mut rng = fastrand::Rng::with_seed(5);
        let interval = Duration::from_secs(60);
        for _ in 0..1000 {
            let d = jittered_with(&mut rng, interval, 0.1);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
        assert_eq!(jittered_with(&mut rng, interval, 0.0), interval);
        assert_eq!(jittered_with(&mut rng, interval, f64::NAN), interval);
        for _ in 0..100 {
            assert!(jittered_with(&mut rng, interval, 7.0) <= Duration::from_secs(120));
        }
    }
}
