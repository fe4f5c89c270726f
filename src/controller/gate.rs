//! Sync slots with two lanes: new and changed objects ahead of periodic refreshes.
//!
//! The queue hands out due objects in deadline order, so under a backlog (Vault slow, a burst
//! of polls) a newly applied ExternalSecret would wait behind every overdue refresh (ESO #5045).
//! The runner therefore starts many more syncs than there are slots (`runner::STARTED_SYNCS`)
//! and they queue here instead, where the urgent lane goes first.
//!
//! Built from two fair (FIFO) tokio semaphores: `slots` holds the sync slots; periodic refreshes
//! must first pass a one-permit `turnstile`, so at most one of them waits in `slots` at any time
//! and an urgent sync queues behind that one at most — never behind the whole backlog.
//!
//! Overload: when more polls fall due than the slots can serve (50,000 objects polled every
//! 30 s on two cores), the periodic lane would hold every sync the runner may start, and
//! a new object would wait for one of those to finish before it could even reach the urgent
//! lane (docs/benchmarks.md: at 50,000, thousands of new objects were never synced). So the
//! periodic lane is bounded: `periodic_full` tells a refresh to put itself off (it is requeued
//! and tries again later) while `PERIODIC_WAITING_PER_SLOT` refreshes per slot already wait, and
//! never more than half the started syncs, whatever SYNC_CONCURRENCY is.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::metrics::Metrics;

/// Why an object is synced now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// New to this process or spec changed: someone is waiting for it.
    Urgent = 0,
    /// A scheduled poll or retry of an object already handled.
    Periodic = 1,
}

/// Periodic refreshes that may wait per sync slot before more are put off: enough to ride out a
/// stall of a few hundred milliseconds at the polls 50,000 objects make (a refresh put off
/// misses its cycle's read), and at most `PERIODIC_WAITING_MAX`.
pub const PERIODIC_WAITING_PER_SLOT: usize = 16;

/// The most periodic refreshes that may wait in all: half the syncs the runner starts, so the
/// other half stays free for new objects whatever SYNC_CONCURRENCY is.
pub const PERIODIC_WAITING_MAX: usize = super::runner::STARTED_SYNCS / 2;

pub struct Gate {
    slots: Semaphore,
    turnstile: Semaphore,
    /// Periodic refreshes waiting now, and how many may.
    periodic_waiting: AtomicUsize,
    periodic_limit: usize,
    /// `queue_depth{lane}`: syncs waiting here, per lane.
    metrics: Arc<Metrics>,
}

/// A sync slot; released on drop.
pub struct Slot<'a> {
    _permit: SemaphorePermit<'a>,
}

impl Gate {
    pub fn new(slots: usize, metrics: Arc<Metrics>) -> Self {
        Gate {
            slots: Semaphore::new(slots.max(1)),
            turnstile: Semaphore::new(1),
            periodic_waiting: AtomicUsize::new(0),
            periodic_limit: periodic_limit(slots),
            metrics,
        }
    }

    /// Whether the periodic lane is full: a refresh due now should be put off, not queued.
    pub fn periodic_full(&self) -> bool {
        self.periodic_waiting.load(Ordering::Relaxed) >= self.periodic_limit
    }

    /// Waits for a sync slot in the given lane. `None` only if a semaphore were closed, which
    /// never happens (they are private); the caller then runs without a slot rather than hang.
    pub async fn acquire(&self, lane: Lane) -> Option<Slot<'_>> {
        let _waiting = Waiting::new(self, lane);
        let permit = match lane {
            Lane::Urgent => self.slots.acquire().await,
            Lane::Periodic => {
                let _turn = self.turnstile.acquire().await;
                self.slots.acquire().await
            }
        };
        permit.ok().map(|p| Slot { _permit: p })
    }
}

/// How many periodic refreshes may wait for `slots` sync slots.
fn periodic_limit(slots: usize) -> usize {
    slots
        .max(1)
        .saturating_mul(PERIODIC_WAITING_PER_SLOT)
        .min(PERIODIC_WAITING_MAX)
}

impl Lane {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Urgent => "urgent",
            Lane::Periodic => "periodic",
        }
    }
}

/// Counts a sync waiting in a lane (and the queue-depth gauge) for as long as it lives.
struct Waiting<'a>(&'a Gate, Lane);

impl<'a> Waiting<'a> {
    fn new(gate: &'a Gate, lane: Lane) -> Self {
        if lane == Lane::Periodic {
            gate.periodic_waiting.fetch_add(1, Ordering::Relaxed);
        }
        gate.metrics
            .queue_depth
            .with_label_values(&[lane.as_str()])
            .inc();
        Waiting(gate, lane)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.1 == Lane::Periodic {
            self.0.periodic_waiting.fetch_sub(1, Ordering::Relaxed);
        }
        self.0
            .metrics
            .queue_depth
            .with_label_values(&[self.1.as_str()])
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The periodic lane fills at `PERIODIC_WAITING_PER_SLOT` per slot and empties as they run;
    /// urgent syncs never count against it.
    #[tokio::test(flavor = "current_thread")]
    async fn the_periodic_lane_is_bounded() {
        let gate = gate(2);
        let held = (
            gate.acquire(Lane::Urgent).await,
            gate.acquire(Lane::Urgent).await,
        );
        let mut tasks = Vec::new();
        for _ in 0..5 {
            let g = gate.clone();
            tasks.push(tokio::spawn(async move {
                g.acquire(Lane::Urgent).await.is_some()
            }));
        }
        tokio::task::yield_now().await;
        assert!(!gate.periodic_full(), "urgent waiters do not fill it");
        for _ in 0..2 * PERIODIC_WAITING_PER_SLOT {
            assert!(!gate.periodic_full());
            let g = gate.clone();
            tasks.push(tokio::spawn(async move {
                g.acquire(Lane::Periodic).await.is_some()
            }));
            tokio::task::yield_now().await;
        }
        assert!(gate.periodic_full());
        drop(held);
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert!(!gate.periodic_full(), "drained");
    }

    /// The default 32 slots may hold half the started syncs with refreshes; more slots no more.
    #[test]
    fn the_periodic_lane_never_takes_more_than_half_the_started_syncs() {
        assert_eq!(periodic_limit(2), 2 * PERIODIC_WAITING_PER_SLOT);
        assert_eq!(periodic_limit(32), super::super::runner::STARTED_SYNCS / 2);
        assert_eq!(
            periodic_limit(1024),
            super::super::runner::STARTED_SYNCS / 2
        );
        assert_eq!(periodic_limit(0), PERIODIC_WAITING_PER_SLOT);
    }

    fn gate(slots: usize) -> Arc<Gate> {
        Arc::new(Gate::new(slots, Arc::new(Metrics::new().unwrap())))
    }

    /// With the only slot taken, 20 periodic syncs queue, then 3 urgent ones: once the slot
    /// frees, the urgent ones run before all periodic ones but at most one.
    #[tokio::test(flavor = "current_thread")]
    async fn urgent_overtakes_the_periodic_backlog() {
        let gate = gate(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = gate.acquire(Lane::Urgent).await;
        let mut tasks = Vec::new();
        let lanes =
            std::iter::repeat_n(Lane::Periodic, 20).chain(std::iter::repeat_n(Lane::Urgent, 3));
        for (i, lane) in lanes.enumerate() {
            let (gate, order) = (gate.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = gate.acquire(lane).await;
                order.lock().unwrap().push((i, lane));
                tokio::task::yield_now().await;
            }));
            tokio::task::yield_now().await; // queue in spawn order
        }
        let depth = |l: Lane| {
            gate.metrics
                .queue_depth
                .with_label_values(&[l.as_str()])
                .get()
        };
        assert_eq!((depth(Lane::Periodic), depth(Lane::Urgent)), (20, 3));
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap();
        assert_eq!(order.len(), 23);
        let urgent_done = order.iter().rposition(|(_, l)| *l == Lane::Urgent).unwrap();
        assert!(
            urgent_done <= 3,
            "urgent finished at position {urgent_done}: {order:?}"
        );
        // Within a lane, first come first served.
        let periodic: Vec<usize> = order
            .iter()
            .filter(|(_, l)| *l == Lane::Periodic)
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(periodic, (0..20).collect::<Vec<_>>());
        assert_eq!((depth(Lane::Periodic), depth(Lane::Urgent)), (0, 0));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn never_more_than_the_slots_run() {
        let gate = gate(3);
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (gate, running, peak) = (gate.clone(), running.clone(), peak.clone());
                tokio::spawn(async move {
                    let lane = if i % 2 == 0 {
                        Lane::Urgent
                    } else {
                        Lane::Periodic
                    };
                    let _slot = gate.acquire(lane).await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 3);
    }
}
