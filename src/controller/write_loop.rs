//! Pure: noticing a write loop with another controller. When someone else changes our Secret
//! after each of our writes and we put it back each time, the two controllers rewrite it
//! forever (kube-controller-manager did so with service-account-token Secrets). Each time we
//! restore a Secret that another writer changed while our desired content stayed the same, we
//! count it; `LOOP_LIMIT` restores within `LOOP_WINDOW` stop the writing with a clear status,
//! until the window has passed without one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;

pub const LOOP_LIMIT: usize = 3;
pub const LOOP_WINDOW: Duration = Duration::from_secs(600);

#[derive(Default, Debug)]
pub struct Restores(VecDeque<Instant>);

impl Restores {
    /// Restores within the window, counting one more at `now` when `restoring`.
    pub fn count(&mut self, now: Instant, restoring: bool) -> usize {
        while self
            .0
            .front()
            .is_some_and(|t| now.duration_since(*t) > LOOP_WINDOW)
        {
            self.0.pop_front();
        }
        if restoring {
            self.0.push_back(now);
        }
        self.0.len()
    }

    /// Whether one more restore at `now` would close a loop (the restore is not counted).
    pub fn would_loop(&mut self, now: Instant) -> bool {
        self.count(now, false) + 1 >= LOOP_LIMIT
    }

    /// A poll found the Secret as we left it: whatever changed it has stopped.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// The most recent field manager of `secret` other than `ours`, to name in the message.
pub fn other_writer(secret: &Secret, ours: &str) -> String {
    secret
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref().is_some_and(|n| n != ours))
        .max_by(|a, b| {
            a.time
                .as_ref()
                .map(|t| t.0)
                .cmp(&b.time.as_ref().map(|t| t.0))
        })
        .and_then(|m| m.manager.clone())
        .unwrap_or_else(|| "another writer".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    #[test]
    fn three_restores_in_the_window_are_a_loop() {
        let mut r = Restores::default();
        let t0 = Instant::now();
        assert!(!r.would_loop(t0));
        assert_eq!(r.count(t0, true), 1);
        assert!(!r.would_loop(t0 + Duration::from_secs(30)));
        assert_eq!(r.count(t0 + Duration::from_secs(30), true), 2);
        assert!(
            r.would_loop(t0 + Duration::from_secs(60)),
            "the third would close it"
        );
        // Long after, the old restores have left the window: writing resumes.
        assert!(!r.would_loop(t0 + LOOP_WINDOW + Duration::from_secs(31)));
        r.count(t0, true);
        r.clear();
        assert!(!r.would_loop(t0));
    }

    #[test]
    fn names_the_latest_other_manager() {
        let entry = |m: &str, secs: i64| ManagedFieldsEntry {
            manager: Some(m.into()),
            time: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(secs).unwrap(),
            )),
            ..Default::default()
        };
        let mut s = Secret::default();
        s.metadata.managed_fields = Some(vec![
            entry("kubectl", 10),
            entry("kube-controller-manager", 20),
            entry("vault-external-secrets", 30),
        ]);
        assert_eq!(
            other_writer(&s, "vault-external-secrets"),
            "kube-controller-manager"
        );
        assert_eq!(other_writer(&Secret::default(), "x"), "another writer");
    }
}
