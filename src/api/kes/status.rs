//! Pure: the status an ExternalSecret should have after a sync, and whether it must be written.
//!
//! KES PUT the status on every poll (apiserver 429s at 725 objects). We write only when the
//! outcome changes, and otherwise refresh `lastSync` at most once per `heartbeat` (5 minutes).

use chrono::{DateTime, SecondsFormat, Utc};

use super::crd::ExternalSecretStatus;
use crate::api::condition::{self, Heartbeat, Observed, Side, ROLLOUT_CONDITION};

/// Longest status message kept (the apiserver would take more; people read less).
const MAX_MESSAGE: usize = 1024;

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    /// Fixed set: `SecretSynced` or an `Error::reason`.
    pub reason: &'static str,
    pub message: String,
}

impl Outcome {
    pub fn synced() -> Self {
        Outcome {
            ok: true,
            reason: "SecretSynced",
            message: "Secret is in sync with Vault".into(),
        }
    }
}

/// Returns the status to write, or `None` when the current one already says it all.
///
/// `lastSync` is the time the Secret was last confirmed in sync: a failure keeps the previous
/// one, so `kubectl get es` shows how stale the Secret may be. `rollout` is the
/// `RolloutRestart` condition as the restarter knows it.
pub fn next_status(
    current: Option<&ExternalSecretStatus>,
    outcome: &Outcome,
    rollout: &Side,
    generation: Option<i64>,
    now: DateTime<Utc>,
    heartbeat: Heartbeat<'_>,
) -> Option<ExternalSecretStatus> {
    let message = truncate(&outcome.message);
    let status_text = if outcome.ok {
        "SUCCESS".to_string()
    } else {
        format!("ERROR, {message}")
    };
    let current_conditions = current
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let ready = Observed {
        ok: outcome.ok,
        reason: outcome.reason,
        message,
    };
    let conditions = condition::merge(current_conditions, &ready, ROLLOUT_CONDITION, rollout, now);

    let last_sync_current = current.and_then(|s| s.last_sync.clone());
    let unchanged = current.is_some_and(|s| {
        s.status.as_deref() == Some(status_text.as_str())
            && s.observed_generation == generation
            && condition::same(current_conditions, &conditions)
    });
    if unchanged && !(outcome.ok && heartbeat.due(last_sync_current.as_deref(), now)) {
        return None;
    }
    Some(ExternalSecretStatus {
        last_sync: if outcome.ok {
            Some(rfc3339(now))
        } else {
            last_sync_current
        },
        status: Some(status_text),
        observed_generation: generation,
        conditions: Some(conditions),
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn always() -> bool {
        true
    }
    const HB: Heartbeat<'static> = Heartbeat {
        every: Duration::from_secs(300),
        budget: &always,
    };

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn fail(msg: &str) -> Outcome {
        Outcome {
            ok: false,
            reason: "VaultReadFailed",
            message: msg.into(),
        }
    }

    #[test]
    fn first_success_writes_everything() {
        let s = next_status(None, &Outcome::synced(), &Side::Unknown, Some(1), t(0), HB).unwrap();
        assert_eq!(s.status.as_deref(), Some("SUCCESS"));
        assert_eq!(s.observed_generation, Some(1));
        assert_eq!(s.last_sync, Some(rfc3339(t(0))));
        let c = &s.conditions.as_ref().unwrap()[0];
        assert_eq!((c.type_.as_str(), c.status.as_str()), ("Ready", "True"));
        assert_eq!(c.reason.as_deref(), Some("SecretSynced"));
    }

    #[test]
    fn steady_success_writes_only_a_heartbeat() {
        let s0 = next_status(None, &Outcome::synced(), &Side::Unknown, Some(1), t(0), HB).unwrap();
        assert_eq!(
            next_status(
                Some(&s0),
                &Outcome::synced(),
                &Side::Unknown,
                Some(1),
                t(10),
                HB
            ),
            None
        );
        assert_eq!(
            next_status(
                Some(&s0),
                &Outcome::synced(),
                &Side::Unknown,
                Some(1),
                t(299),
                HB
            ),
            None
        );
        let s1 = next_status(
            Some(&s0),
            &Outcome::synced(),
            &Side::Unknown,
            Some(1),
            t(300),
            HB,
        )
        .unwrap();
        assert_eq!(s1.last_sync, Some(rfc3339(t(300))));
        // The condition did not change: its transition time stays.
        assert_eq!(
            s1.conditions.unwrap()[0].last_transition_time,
            Some(rfc3339(t(0)))
        );
        // A new generation is written at once.
        assert!(next_status(
            Some(&s0),
            &Outcome::synced(),
            &Side::Unknown,
            Some(2),
            t(10),
            HB
        )
        .is_some());
    }

    #[test]
    fn the_budget_holds_back_heartbeats_only() {
        let asked = std::cell::Cell::new(0);
        let refuse = || {
            asked.set(asked.get() + 1);
            false
        };
        let spent = Heartbeat {
            every: HB.every,
            budget: &refuse,
        };
        let s0 = next_status(
            None,
            &Outcome::synced(),
            &Side::Unknown,
            Some(1),
            t(0),
            spent,
        );
        assert!(s0.is_some(), "a first status is a change, not a heartbeat");
        let s0 = s0.unwrap();
        assert_eq!(asked.get(), 0);
        let heartbeat = next_status(
            Some(&s0),
            &Outcome::synced(),
            &Side::Unknown,
            Some(1),
            t(600),
            spent,
        );
        assert_eq!(
            heartbeat, None,
            "due, but the budget is spent: tried next poll"
        );
        assert_eq!(asked.get(), 1);
        // Changes go through without asking: a new generation, a failure.
        let synced = Outcome::synced();
        let changed = next_status(Some(&s0), &synced, &Side::Unknown, Some(2), t(600), spent);
        assert!(changed.is_some());
        let failed = next_status(
            Some(&s0),
            &fail("x"),
            &Side::Unknown,
            Some(1),
            t(600),
            spent,
        );
        assert!(failed.is_some());
        assert_eq!(asked.get(), 1);
    }

    #[test]
    fn failures_keep_last_sync_and_write_once() {
        let ok = next_status(None, &Outcome::synced(), &Side::Unknown, Some(1), t(0), HB).unwrap();
        let f = next_status(
            Some(&ok),
            &fail("reading kv/a: Vault answered 503"),
            &Side::Unknown,
            Some(1),
            t(20),
            HB,
        )
        .unwrap();
        assert_eq!(
            f.status.as_deref(),
            Some("ERROR, reading kv/a: Vault answered 503")
        );
        assert_eq!(f.last_sync, ok.last_sync);
        let c = &f.conditions.as_ref().unwrap()[0];
        assert_eq!(c.status, "False");
        assert_eq!(c.last_transition_time, Some(rfc3339(t(20))));
        // The same failure again, even after the heartbeat: nothing to write.
        assert_eq!(
            next_status(
                Some(&f),
                &fail("reading kv/a: Vault answered 503"),
                &Side::Unknown,
                Some(1),
                t(900),
                HB
            ),
            None
        );
        // A different failure: written.
        assert!(
            next_status(Some(&f), &fail("other"), &Side::Unknown, Some(1), t(30), HB).is_some()
        );
        // Recovery: written, new transition.
        let r = next_status(
            Some(&f),
            &Outcome::synced(),
            &Side::Unknown,
            Some(1),
            t(40),
            HB,
        )
        .unwrap();
        assert_eq!(
            r.conditions.unwrap()[0].last_transition_time,
            Some(rfc3339(t(40)))
        );
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "é".repeat(2000);
        let s = next_status(None, &fail(&long), &Side::Unknown, None, t(0), HB).unwrap();
        assert!(s.status.unwrap().len() < 1100);
    }
}
