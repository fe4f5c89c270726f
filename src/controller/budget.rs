//! Rate budgets shared by many tasks: governor's GCRA limiter, at most `per_second` grants a
//! second in bursts of at most one second's worth. Used where a cause outside our control
//! (Vault's audit stream, the number of objects) would otherwise set how often we call a
//! server: event-driven Vault reads, heartbeat-only status writes.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

pub struct Budget(Option<DefaultDirectRateLimiter>);

impl Budget {
    /// A budget of `per_second` grants a second; 0 grants nothing.
    pub fn per_second(per_second: u32) -> Self {
        Budget(NonZeroU32::new(per_second).map(|n| RateLimiter::direct(Quota::per_second(n))))
    }

    /// Takes one grant if one is left now; never waits.
    pub fn take(&self) -> bool {
        self.0.as_ref().is_some_and(|l| l.check().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_of_one_second_then_the_rate() {
        let b = Budget::per_second(20);
        let burst = (0..40).filter(|_| b.take()).count();
        // One second's worth at once (one more may have refilled while counting).
        assert!((20..=21).contains(&burst), "{burst}");
        assert!(!b.take());
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.take(), "refilled at 20 a second");
    }

    #[test]
    fn zero_grants_nothing() {
        assert!(!Budget::per_second(0).take());
    }
}
