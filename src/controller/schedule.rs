//! Pure: when to poll an ExternalSecret next, and how long to back off after a failure.
//!
//! Polls are phase-aligned: each object polls at wall-clock times `phase + k × interval`, its
//! phase derived from the first Vault path it reads. Objects are spread evenly over the interval
//! (no thundering herd), and objects that read the same path poll at the same instant,
//! so one coalesced Vault read serves them all.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

/// A stable phase key for a value (the first read of an object's plan).
pub fn phase_key(v: &impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// Delay from `now_ms` (Unix epoch milliseconds) to the object's next poll slot, at least half an
/// interval away so a sync triggered by a change is not followed by a poll right after it.
pub fn next_poll(phase: u64, interval: Duration, now_ms: u64) -> Duration {
    let interval_ms = u64::try_from(interval.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let offset = phase % interval_ms;
    let pos = now_ms % interval_ms;
    let mut delay = (offset + interval_ms - pos) % interval_ms;
    if delay < interval_ms / 2 {
        delay += interval_ms;
    }
    Duration::from_millis(delay)
}

/// When a refresh put off under overload (`gate::Gate::periodic_full`) comes back: its own next
/// poll slot when it has synced before (so it still shares its reads with the objects on the
/// same paths), else half an interval.
pub fn deferred(phase: Option<u64>, interval: Duration, now_ms: u64) -> Duration {
    match phase {
        Some(phase) => next_poll(phase, interval, now_ms),
        None => interval / 2,
    }
}

/// Backoff after `failures` consecutive failures. Transient causes (Vault 5xx, apiserver
/// conflicts) retry soon, doubling from 5 s up to 5 minutes; causes that need someone to act
/// (missing key, wrong role, foreign Secret) are retried at the poll interval. `jitter` in
/// [0, 1) spreads retries of objects that failed together.
pub fn failure_backoff(
    failures: u32,
    transient: bool,
    interval: Duration,
    jitter: f64,
) -> Duration {
    let base = if transient {
        let exp = failures.saturating_sub(1).min(16);
        Duration::from_secs(5)
            .saturating_mul(1u32 << exp)
            .min(Duration::from_secs(300))
    } else {
        interval.max(Duration::from_secs(5))
    };
    base.mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferred_refresh_keeps_its_slot() {
        let i = Duration::from_secs(30);
        assert_eq!(deferred(Some(1234), i, 99_000), next_poll(1234, i, 99_000));
        assert_eq!(deferred(None, i, 99_000), Duration::from_secs(15));
    }

    const I: Duration = Duration::from_secs(30);

    #[test]
    fn polls_land_on_the_phase() {
        let phase = 12_345u64; // 12.345 s into each 30 s interval
        let d = next_poll(phase, I, 1_000_000_000_000);
        let at = 1_000_000_000_000 + d.as_millis() as u64;
        assert_eq!(at % 30_000, 12_345);
        assert!(d >= I / 2 && d < I + I / 2);
        // Two objects with the same phase, synced at different moments, meet at the same slot
        // when both are due in the same interval.
        let a = 1_000_000_000_000 + next_poll(phase, I, 1_000_000_000_000).as_millis() as u64;
        let b = 1_000_000_001_000 + next_poll(phase, I, 1_000_000_001_000).as_millis() as u64;
        assert_eq!(a, b);
    }

    #[test]
    fn never_sooner_than_half_an_interval() {
        for now in (0..60_000u64).step_by(777) {
            let d = next_poll(7, I, now);
            assert!(d >= I / 2 && d < I + I / 2, "now={now} d={d:?}");
        }
    }

    #[test]
    fn phases_spread_evenly() {
        let mut buckets = [0u32; 10];
        for i in 0..10_000 {
            let p = phase_key(&format!("kv/data/app-{i}"));
            buckets[((p % 30_000) / 3_000) as usize] += 1;
        }
        for b in buckets {
            assert!((800..1200).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(failure_backoff(1, true, I, 0.0), Duration::from_secs(5));
        assert_eq!(failure_backoff(2, true, I, 0.0), Duration::from_secs(10));
        assert_eq!(failure_backoff(4, true, I, 0.0), Duration::from_secs(40));
        assert_eq!(failure_backoff(40, true, I, 0.0), Duration::from_secs(300));
        assert_eq!(failure_backoff(3, false, I, 0.0), I);
        assert_eq!(
            failure_backoff(1, true, I, 0.5),
            Duration::from_secs(5).mul_f64(1.1)
        );
    }
}
