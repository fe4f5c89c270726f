//! Pure: status conditions, shared by both APIs — the `Ready` condition each front-end sets after
//! a sync, and side conditions other parts own (`RolloutRestart`). A condition's transition time
//! moves only when its status flips, and an unchanged set of conditions is never rewritten.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, or `RolloutRestart` on objects that name workloads to restart.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
}

/// The condition the rollout restarter owns, on objects that name workloads to restart.
pub const ROLLOUT_CONDITION: &str = "RolloutRestart";

/// What a condition should say now.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub ok: bool,
    pub reason: &'static str,
    pub message: String,
}

/// When a status that has not changed is written again, only to move its time (KES `lastSync`,
/// ESO `refreshTime`): once `every` has passed since that time, and only if `budget` grants the
/// write. `budget` is asked only for such a write, never for a status that changed.
#[derive(Clone, Copy)]
pub struct Heartbeat<'a> {
    pub every: Duration,
    pub budget: &'a dyn Fn() -> bool,
}

impl Heartbeat<'_> {
    /// Whether a status last stamped at `stamped` (RFC 3339; `None` or unreadable: never)
    /// may be written again now.
    pub fn due(&self, stamped: Option<&str>, now: DateTime<Utc>) -> bool {
        let age = stamped
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| now.signed_duration_since(t).to_std().unwrap_or_default());
        age.is_none_or(|age| age >= self.every) && (self.budget)()
    }
}

/// A side condition as its owner knows it.
#[derive(Clone, Debug, PartialEq)]
pub enum Side {
    /// Not known to this process (e.g. after a restart): the written one stays.
    Unknown,
    /// No longer applies: removed.
    Absent,
    Known(Observed),
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The condition `type_` should be, given the one written before (its transition time is kept
/// while the status does not flip).
pub fn next(
    previous: &[Condition],
    type_: &str,
    observed: &Observed,
    now: DateTime<Utc>,
) -> Condition {
    let status = if observed.ok { "True" } else { "False" };
    let last_transition_time = match previous.iter().find(|c| c.type_ == type_) {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(timestamp(now)),
    };
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(observed.reason.into()),
        message: Some(observed.message.clone()),
        last_transition_time,
    }
}

/// The conditions after setting `Ready` and a side condition; other types are kept as written.
pub fn merge(
    current: &[Condition],
    ready: &Observed,
    side_type: &str,
    side: &Side,
    now: DateTime<Utc>,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = current
        .iter()
        .filter(|c| c.type_ != "Ready" && c.type_ != side_type)
        .cloned()
        .collect();
    out.insert(0, next(current, "Ready", ready, now));
    match side {
        Side::Known(o) => out.push(next(current, side_type, o, now)),
        Side::Unknown => out.extend(current.iter().filter(|c| c.type_ == side_type).cloned()),
        Side::Absent => {}
    }
    out
}

/// Whether two condition lists say the same (transition times aside).
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        )
    };
    let mut a: Vec<_> = a.iter().map(key).collect();
    let mut b: Vec<_> = b.iter().map(key).collect();
    a.sort();
    b.sort();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn obs(ok: bool, reason: &'static str) -> Observed {
        Observed {
            ok,
            reason,
            message: reason.to_lowercase(),
        }
    }

    #[test]
    fn side_conditions_are_set_kept_or_removed() {
        let ready = obs(true, "SecretSynced");
        let failed = Side::Known(obs(false, "NotFound"));
        let c0 = merge(&[], &ready, "RolloutRestart", &failed, at(0));
        assert_eq!(c0.len(), 2);
        assert_eq!(
            (c0[1].type_.as_str(), c0[1].status.as_str()),
            ("RolloutRestart", "False")
        );
        // Unknown keeps what was written, transition time included.
        let c1 = merge(&c0, &ready, "RolloutRestart", &Side::Unknown, at(10));
        assert_eq!(c1, c0);
        assert!(same(&c0, &c1));
        // Recovered: flips, with a new transition time; Ready's stays.
        let c2 = merge(
            &c1,
            &ready,
            "RolloutRestart",
            &Side::Known(obs(true, "Restarted")),
            at(20),
        );
        assert!(!same(&c1, &c2));
        assert_eq!(c2[1].last_transition_time, Some(timestamp(at(20))));
        assert_eq!(c2[0].last_transition_time, Some(timestamp(at(0))));
        // The annotation was removed: so is the condition.
        let c3 = merge(&c2, &ready, "RolloutRestart", &Side::Absent, at(30));
        assert_eq!(c3.len(), 1);
    }
}
