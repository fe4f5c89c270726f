//! The shared failure state of one Vault server.
//!
//! When a request fails because the server is down (sealed, unreachable, 502/503/504), every
//! other sync would otherwise send its own request and retry it: at 1,000 objects that is
//! thousands of requests into a sealed Vault, and minutes before the last object reports the
//! outage. Instead the breaker opens: requests fail at once with `Unavailable` (so every object
//! shows the error within one pass of the queue), one prober asks the unauthenticated
//! `sys/health` with backoff, and when the server answers again the breaker closes and bumps the
//! recovery counter, which the controller watches to reschedule the objects that failed. An
//! outage that outlasts `OUTAGE_CONFIRM` bumps the outage counter once, so the controller can
//! sync the objects that have not failed yet (they fail at once, without a request) and every
//! status shows the outage within seconds instead of at each object's next poll.

use std::sync::Mutex;

use tokio::sync::watch;

use super::{Op, VaultError};

/// How long the server must stay down before the outage is announced to every object; a blip
/// shorter than this touches only the syncs that ran into it.
pub const OUTAGE_CONFIRM: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Breaker {
    /// `Some(last error)` while open.
    open: Mutex<Option<String>>,
    recoveries: watch::Sender<u64>,
    outages: watch::Sender<u64>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            open: Mutex::new(None),
            recoveries: watch::channel(0).0,
            outages: watch::channel(0).0,
        }
    }
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // Poisoning only means a panic elsewhere while holding a plain String.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(Unavailable)` while open: the request must not be sent.
    pub fn check(&self, op: Op) -> Result<(), VaultError> {
        match self.state().as_ref() {
            Some(last) => Err(VaultError::Unavailable {
                op,
                last: last.clone(),
            }),
            None => Ok(()),
        }
    }

    pub fn is_open(&self) -> bool {
        self.state().is_some()
    }

    /// Opens on a server-down failure. Returns true when it was closed before, i.e. the caller
    /// must start the one prober.
    pub fn trip(&self, e: &VaultError) -> bool {
        let mut st = self.state();
        let was_closed = st.is_none();
        *st = Some(brief(e));
        was_closed
    }

    /// Closes after a successful probe or request; a close that ends an outage counts as a
    /// recovery.
    pub fn close(&self) {
        let was_open = self.state().take().is_some();
        if was_open {
            self.recovered();
        }
    }

    /// Tells the watchers that something that failed for many objects works again.
    pub fn recovered(&self) {
        self.recoveries.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn recoveries(&self) -> watch::Receiver<u64> {
        self.recoveries.subscribe()
    }

    /// Announces a confirmed outage (the prober, once per outage).
    pub fn outage_confirmed(&self) {
        self.outages.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn outages(&self) -> watch::Receiver<u64> {
        self.outages.subscribe()
    }
}

/// What the Unavailable message repeats of the error that opened the breaker: the status and
/// Vault's message, or the transport failure, without the path (it was another object's).
fn brief(e: &VaultError) -> String {
    match e {
        VaultError::Status {
            status, message, ..
        } => format!("last answer {status}: {message}"),
        VaultError::Transport { reason, .. } => format!("last request failed: {reason}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> VaultError {
        VaultError::Status {
            op: Op::Read,
            status: 503,
            path: "kv/data/team-a/db".into(),
            message: "Vault is sealed".into(),
            retry_after: None,
        }
    }

    #[test]
    fn opens_once_fails_fast_and_counts_a_recovery_on_close() {
        let b = Breaker::default();
        let rx = b.recoveries();
        assert!(b.check(Op::Read).is_ok());
        assert!(b.trip(&sealed()), "first trip starts the prober");
        assert!(!b.trip(&sealed()), "a second trip does not start another");
        let e = b.check(Op::Login).unwrap_err();
        assert_eq!(e.op(), Some(Op::Login));
        let text = e.to_string();
        assert!(text.contains("503") && text.contains("sealed"), "{text}");
        assert!(!text.contains("team-a"), "another object's path: {text}");
        b.close();
        assert!(b.check(Op::Read).is_ok());
        assert_eq!(*rx.borrow(), 1);
        b.close();
        assert_eq!(*rx.borrow(), 1, "closing a closed breaker is no recovery");
    }
}
