//! Pure: what the last restart of each object's workloads came to, and the `RolloutRestart`
//! condition that follows from it (with the annotation as it is now).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::rollout::parse_targets;
use crate::api::condition::{Observed, Side};

/// Why a restart failed (a bounded set: it is also a condition reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    NotFound,
    Forbidden,
    Error,
}

impl Failure {
    /// The `outcome` label of the restarts metric.
    pub fn label(self) -> &'static str {
        match self {
            Failure::NotFound => "not_found",
            Failure::Forbidden => "forbidden",
            Failure::Error => "error",
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Failure::NotFound => "TargetNotFound",
            Failure::Forbidden => "TargetForbidden",
            Failure::Error => "RestartFailed",
        }
    }
}

/// One restart's result: done, or why not (the reason and the apiserver's brief message).
pub type Restart = Result<(), (Failure, String)>;

/// Object uid → workload (`kind/name`) → its last restart's result.
#[derive(Default)]
pub struct Outcomes(HashMap<String, BTreeMap<String, Restart>>);

impl Outcomes {
    /// Records a restart's result; returns whether the object's record changed.
    pub fn record(
        &mut self,
        uid: &str,
        target: &str,
        result: Result<(), (Failure, String)>,
    ) -> bool {
        let per = self.0.entry(uid.to_string()).or_default();
        per.insert(target.to_string(), result.clone()) != Some(result)
    }

    pub fn retain(&mut self, live: &HashSet<&str>) {
        self.0.retain(|uid, _| live.contains(uid.as_str()));
    }

    /// The `RolloutRestart` condition of an object whose annotation is `annotation`.
    pub fn condition(&self, uid: &str, annotation: Option<&str>) -> Side {
        let Some(annotation) = annotation else {
            return Side::Absent;
        };
        let targets = match parse_targets(annotation) {
            Ok(t) => t,
            Err(why) => {
                return Side::Known(Observed {
                    ok: false,
                    reason: "InvalidAnnotation",
                    message: format!("{}: {why}", super::rollout::ANNOTATION),
                })
            }
        };
        let Some(per) = self.0.get(uid) else {
            return Side::Unknown;
        };
        let known: Vec<(String, &Restart)> = targets
            .iter()
            .map(|(kind, name)| format!("{}/{name}", kind.as_str()))
            .filter_map(|t| per.get(&t).map(|r| (t, r)))
            .collect();
        if known.is_empty() {
            return Side::Unknown;
        }
        let failed: Vec<_> = known
            .iter()
            .filter_map(|(t, r)| r.as_ref().err().map(|(f, why)| (t, *f, why)))
            .collect();
        Side::Known(match failed.first() {
            None => Observed {
                ok: true,
                reason: "Restarted",
                message: format!(
                    "Restarted {} when the Secret's data last changed",
                    known
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            Some((_, first, _)) => Observed {
                ok: false,
                reason: first.reason(),
                message: failed
                    .iter()
                    .map(|(t, _, why)| format!("could not restart {t}: {why}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_follows_the_last_restart_of_each_named_target() {
        let mut o = Outcomes::default();
        let ann = Some("deployment/api, statefulset/db");
        assert_eq!(o.condition("u", None), Side::Absent);
        assert_eq!(
            o.condition("u", ann),
            Side::Unknown,
            "nothing restarted yet"
        );
        let Side::Known(bad) = o.condition("u", Some("job/x")) else {
            panic!("an invalid annotation is known at once")
        };
        assert_eq!(bad.reason, "InvalidAnnotation");

        assert!(o.record("u", "deployment/api", Ok(())));
        assert!(
            !o.record("u", "deployment/api", Ok(())),
            "same result: no change"
        );
        let Side::Known(ok) = o.condition("u", ann) else {
            panic!()
        };
        assert!(ok.ok && ok.message.contains("deployment/api"));

        assert!(o.record(
            "u",
            "statefulset/db",
            Err((Failure::NotFound, "not found".into()))
        ));
        let Side::Known(failed) = o.condition("u", ann) else {
            panic!()
        };
        assert_eq!((failed.ok, failed.reason), (false, "TargetNotFound"));
        assert!(failed.message.contains("statefulset/db: not found"));

        // The failing target was removed from the annotation: only what is named counts.
        let Side::Known(ok) = o.condition("u", Some("deployment/api")) else {
            panic!()
        };
        assert!(ok.ok);

        o.retain(&HashSet::new());
        assert_eq!(o.condition("u", ann), Side::Unknown);
    }
}
