//! Pure: ESO's ExternalSecret and store status — the `Ready` condition with ESO's reasons,
//! `refreshTime`, `syncedResourceVersion`, `binding` — and when it has changed enough to be
//! written (a condition change, a spec change, or the heartbeat; never every poll).

use chrono::{DateTime, Utc};

use super::crd::{Binding, ExternalSecretStatus};
use crate::api::condition::{self, Heartbeat, Observed, Side, ROLLOUT_CONDITION};

pub const SYNCED: &str = "SecretSynced";
pub const SYNC_ERROR: &str = "SecretSyncedError";
pub const DELETED: &str = "SecretDeleted";

/// A sync's result as ESO reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
    /// The Secret written (`binding.name`); `None` with `creationPolicy: None`.
    pub binding: Option<String>,
}

/// The status to write after a sync, or `None` when the current one still says it all. On
/// failure `refreshTime` and `syncedResourceVersion` keep the last success, as in ESO.
pub fn next_status(
    current: Option<&ExternalSecretStatus>,
    outcome: &Outcome,
    rollout: &Side,
    synced_resource_version: &str,
    now: DateTime<Utc>,
    heartbeat: Heartbeat<'_>,
) -> Option<ExternalSecretStatus> {
    let empty = ExternalSecretStatus::default();
    let current = current.unwrap_or(&empty);
    let ready = Observed {
        ok: outcome.ok,
        reason: outcome.reason,
        message: outcome.message.clone(),
    };
    let mut next = current.clone();
    next.conditions =
        condition::merge(&current.conditions, &ready, ROLLOUT_CONDITION, rollout, now);
    if outcome.ok {
        next.synced_resource_version = Some(synced_resource_version.to_string());
        if let Some(name) = &outcome.binding {
            next.binding = Some(Binding {
                name: Some(name.clone()),
            });
        }
    }
    let same_condition = condition::same(&current.conditions, &next.conditions);
    if same_condition
        && next.synced_resource_version == current.synced_resource_version
        && next.binding == current.binding
        && !(outcome.ok && heartbeat.due(current.refresh_time.as_deref(), now))
    {
        return None;
    }
    if outcome.ok {
        next.refresh_time = Some(condition::timestamp(now));
    }
    Some(next)
}

/// ESO's `syncedResourceVersion`: `<generation>-<hash of labels and annotations>`.
pub fn synced_resource_version(generation: Option<i64>, meta_hash: &str) -> String {
    format!("{}-{meta_hash}", generation.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ok() -> Outcome {
        Outcome {
            ok: true,
            reason: SYNCED,
            message: "Secret was synced".into(),
            binding: Some("app".into()),
        }
    }

    #[test]
    fn written_on_change_and_heartbeat_only() {
        let t0 = Utc::now();
        let hb = Heartbeat {
            every: Duration::from_secs(300),
            budget: &|| true,
        };
        let first = next_status(None, &ok(), &Side::Unknown, "1-h", t0, hb).unwrap();
        assert_eq!(first.conditions[0].status, "True");
        assert_eq!(first.binding.as_ref().unwrap().name.as_deref(), Some("app"));
        assert_eq!(first.synced_resource_version.as_deref(), Some("1-h"));
        let t1 = t0 + chrono::Duration::seconds(30);
        assert_eq!(
            next_status(Some(&first), &ok(), &Side::Unknown, "1-h", t1, hb),
            None,
            "steady state"
        );
        assert!(
            next_status(Some(&first), &ok(), &Side::Unknown, "2-h", t1, hb).is_some(),
            "spec changed"
        );
        let t2 = t0 + chrono::Duration::seconds(301);
        assert!(
            next_status(Some(&first), &ok(), &Side::Unknown, "1-h", t2, hb).is_some(),
            "heartbeat"
        );

        let fail = Outcome {
            ok: false,
            reason: SYNC_ERROR,
            message: "VaultReadFailed: boom".into(),
            binding: None,
        };
        let failed = next_status(Some(&first), &fail, &Side::Unknown, "2-h", t1, hb).unwrap();
        let ready = &failed.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("False", Some(SYNC_ERROR))
        );
        assert_eq!(
            failed.synced_resource_version.as_deref(),
            Some("1-h"),
            "kept from the last success"
        );
        assert_eq!(failed.refresh_time, first.refresh_time);
        assert_ne!(
            ready.last_transition_time,
            first.conditions[0].last_transition_time
        );
        assert_eq!(
            next_status(Some(&failed), &fail, &Side::Unknown, "2-h", t2, hb),
            None,
            "a failure repeats no write"
        );
    }
}
