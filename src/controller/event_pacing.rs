//! Pure: when a change event for a secret may set off a read. At most one event-driven read per
//! secret per `AUDIT_MIN_REFRESH`, and an event inside that interval is deferred, not dropped: it
//! sets off one read at the interval's end. So of several writes in quick succession the last one
//! still reaches the Secret within about a second, instead of waiting for the next poll (an hour,
//! with ESO's default `refreshInterval`), and a flood of events costs one read per interval.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Secrets whose last read is remembered before old ones are forgotten (only secrets some
/// object reads get in, so the map is bounded by those anyway).
const FORGET_ABOVE: usize = 10_000;

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Pace {
    /// Read now (then tell the pacer: `read`).
    Now,
    /// Too soon after the last read: read at this instant (then `read`, or `refused`).
    Defer(Instant),
    /// A deferred read is already waiting; it will see this write too.
    Pending,
}

#[derive(Clone, Copy)]
struct Slot {
    last_read: Instant,
    deferred: bool,
}

pub struct Pacer {
    min_refresh: Duration,
    secrets: HashMap<String, Slot>,
}

impl Pacer {
    pub fn new(min_refresh: Duration) -> Self {
        Pacer {
            min_refresh,
            secrets: HashMap::new(),
        }
    }

    /// An event for `secret` arrived at `now`.
    pub fn event(&mut self, secret: &str, now: Instant) -> Pace {
        match self.secrets.get_mut(secret) {
            Some(slot) if slot.deferred => Pace::Pending,
            Some(slot) if now.duration_since(slot.last_read) < self.min_refresh => {
                slot.deferred = true;
                Pace::Defer(slot.last_read + self.min_refresh)
            }
            _ => Pace::Now,
        }
    }

    /// A read of `secret` was set off at `now` (at once, or deferred).
    pub fn read(&mut self, secret: String, now: Instant) {
        if self.secrets.len() >= FORGET_ABOVE && !self.secrets.contains_key(&secret) {
            let min_refresh = self.min_refresh;
            self.secrets
                .retain(|_, s| s.deferred || now.duration_since(s.last_read) < min_refresh);
        }
        let slot = Slot {
            last_read: now,
            deferred: false,
        };
        self.secrets.insert(secret, slot);
    }

    /// A deferred read did not happen (the read budget refused it, or nobody reads the secret
    /// any more): the next event is paced from the last read again.
    pub fn refused(&mut self, secret: &str) {
        if let Some(slot) = self.secrets.get_mut(secret) {
            slot.deferred = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn an_event_inside_the_interval_defers_one_read_to_its_end() {
        let t0 = Instant::now();
        let mut p = Pacer::new(SECOND);
        assert_eq!(p.event("kv/a", t0), Pace::Now);
        p.read("kv/a".into(), t0);
        let soon = t0 + Duration::from_millis(300);
        assert_eq!(p.event("kv/a", soon), Pace::Defer(t0 + SECOND));
        for ms in [301, 500, 999] {
            let t = t0 + Duration::from_millis(ms);
            assert_eq!(p.event("kv/a", t), Pace::Pending, "{ms} ms");
        }
        assert_eq!(p.event("kv/b", soon), Pace::Now, "secrets are paced apart");
        // The deferred read happens; the next event inside its interval defers again.
        p.read("kv/a".into(), t0 + SECOND);
        let t = t0 + Duration::from_millis(1500);
        assert_eq!(p.event("kv/a", t), Pace::Defer(t0 + 2 * SECOND));
        assert_eq!(p.event("kv/a", t0 + 3 * SECOND), Pace::Pending);
    }

    #[test]
    fn after_the_interval_or_a_refused_read_events_are_paced_from_the_last_read() {
        let t0 = Instant::now();
        let mut p = Pacer::new(SECOND);
        p.read("kv/a".into(), t0);
        assert_eq!(p.event("kv/a", t0 + SECOND), Pace::Now);
        assert_eq!(
            p.event("kv/a", t0 + Duration::from_millis(10)),
            Pace::Defer(t0 + SECOND)
        );
        p.refused("kv/a");
        assert_eq!(
            p.event("kv/a", t0 + Duration::from_millis(20)),
            Pace::Defer(t0 + SECOND),
            "a refused deferred read leaves no read pending"
        );
    }

    #[test]
    fn old_secrets_are_forgotten_but_not_a_pending_one() {
        let t0 = Instant::now();
        let mut p = Pacer::new(SECOND);
        p.read("pending".into(), t0);
        assert!(matches!(p.event("pending", t0), Pace::Defer(_)));
        for i in 0..FORGET_ABOVE {
            p.read(format!("kv/{i}"), t0);
        }
        p.read("new".into(), t0 + 2 * SECOND);
        assert_eq!(p.secrets.len(), 2, "the old reads are forgotten");
        assert_eq!(p.event("pending", t0 + 2 * SECOND), Pace::Pending);
    }
}
