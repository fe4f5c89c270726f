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
        // 2 a second: the next grant after the burst comes 500 ms later, far more than this
        // test needs to ask again even on a loaded machine.
        let b = Budget::per_second(2);
        let burst = (0..10).filter(|_| b.take()).count();
        assert_eq!(burst, 2, "one second's worth at once");
        assert!(!b.take());
        std::thread::sleep(Duration::from_millis(600));
        assert!(b.take(), "refilled at 2 a second");
    }

    #[test]
    fn zero_grants_nothing() {
        assert!(!Budget::per_second(0).take());
    }
}
