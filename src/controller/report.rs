//! After a sync, for either API: the `Ready` reason, the status patch (each front-end decides
//! when its status changed) and Events (on writes, and on a new failure at most every 5
//! minutes).

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::front_end::FrontEnd;
use super::Shared;
use crate::api::condition::Heartbeat;
use crate::engine::Write;
use crate::error::Error;

/// How often `lastSync` (KES) and `refreshTime` (ESO) are refreshed while nothing changes.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(300);

/// The most heartbeat-only status writes a second, all objects together. Each is an apiserver
/// write, an etcd write and a watch event; at 50,000 objects the 5-minute heartbeat was most of
/// the apiserver work the controller caused in steady state (docs/benchmarks.md, part 3).
pub const HEARTBEATS_PER_SECOND: u32 = 50;

/// The heartbeat for `objects` objects: 5 minutes, stretched beyond 15,000 objects so that on
/// average they fit `HEARTBEATS_PER_SECOND`; the budget then smooths the bursts (objects first
/// synced together fall due together). A heartbeat the budget refuses is tried at the next poll.
/// Status changes are written at once whatever the heartbeat.
pub fn status_heartbeat(objects: usize) -> Duration {
    let stretched = objects as u64 / u64::from(HEARTBEATS_PER_SECOND);
    STATUS_HEARTBEAT.max(Duration::from_secs(stretched))
}

/// Runs `f` (a front-end's status decision) with the heartbeat as it stands now.
pub fn with_heartbeat<R>(shared: &Shared, f: impl FnOnce(Heartbeat<'_>) -> R) -> R {
    let budget = || shared.heartbeats.take();
    f(Heartbeat {
        every: status_heartbeat(shared.objects.count()),
        budget: &budget,
    })
}

/// Everything after a sync: the `Ready` reason, the front-end's status and metrics, the Event.
pub async fn report<K: FrontEnd>(
    es: &K,
    uid: &str,
    shared: &Shared,
    result: Result<&Write, &Error>,
) {
    shared.objects.set_reason(uid, reason(result));
    es.report(shared, result).await;
    publish_event(es, uid, shared, result).await;
}

/// The `Ready` reason of a sync result (the gauge of objects per reason).
pub fn reason(result: Result<&Write, &Error>) -> &'static str {
    match result {
        Ok(Write::Delete(())) => "SecretDeleted",
        Ok(_) => "SecretSynced",
        Err(e) => e.reason(),
    }
}

/// Patches an object's status subresource (merge patch) with the status its front-end decided
/// to write, if it decided on one; only while leading; counted.
pub async fn patch_status<K, S>(obj: &K, shared: &Shared, status: Option<S>)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: serde::Serialize,
{
    let Some(status) = status.and_then(|s| serde_json::to_value(s).ok()) else {
        return;
    };
    if !shared.leading() {
        return;
    }
    let api: Api<K> = Api::namespaced(shared.client.clone(), &obj.namespace().unwrap_or_default());
    let patch = Patch::Merge(json!({ "status": status }));
    match api
        .patch_status(&obj.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => shared.metrics.status_writes.inc(),
        Err(e) => {
            tracing::warn!(error = %crate::error::kube_brief(&e), "could not write status")
        }
    }
}

/// The Event a sync result deserves, if any: Created/Updated on writes, SyncFailed on a new
/// failure message (a repeat only after `objects::WARNING_REPEAT`).
fn event_for(shared: &Shared, uid: &str, result: Result<&Write, &Error>) -> Option<Event> {
    let (type_, reason, note) = match result {
        Ok(Write::Create(())) => (
            EventType::Normal,
            "Created",
            "Created Secret from Vault".to_string(),
        ),
        Ok(Write::Update(())) => (
            EventType::Normal,
            "Updated",
            "Updated Secret from Vault".to_string(),
        ),
        Ok(Write::Delete(())) => (
            EventType::Normal,
            "Deleted",
            "Deleted Secret: Vault has none of its data (deletionPolicy Delete)".to_string(),
        ),
        Ok(Write::Unchanged) => return None,
        Err(e) => {
            let message = e.to_string();
            if !shared.objects.warning_due(uid, &message, Instant::now()) {
                return None;
            }
            (EventType::Warning, "SyncFailed", message)
        }
    };
    Some(Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    })
}

pub async fn publish_event<K: Resource<DynamicType = ()>>(
    es: &K,
    uid: &str,
    shared: &Shared,
    result: Result<&Write, &Error>,
) {
    let Some(ev) = event_for(shared, uid, result) else {
        return;
    };
    // Created/Updated are one-offs: a throwaway Recorder keeps them out of the shared cache,
    // which would otherwise hold one Event per object for minutes after a first sync.
    let published = if ev.type_ == EventType::Warning {
        shared.warnings.publish(&ev, &es.object_ref(&())).await
    } else {
        Recorder::new(shared.client.clone(), shared.reporter.clone())
            .publish(&ev, &es.object_ref(&()))
            .await
    };
    if let Err(e) = published {
        tracing::warn!(error = %crate::error::kube_brief(&e), "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_is_five_minutes_until_the_write_budget_needs_more() {
        assert_eq!(status_heartbeat(0), STATUS_HEARTBEAT);
        assert_eq!(status_heartbeat(10_000), STATUS_HEARTBEAT);
        assert_eq!(status_heartbeat(15_000), STATUS_HEARTBEAT);
        assert_eq!(status_heartbeat(50_000), Duration::from_secs(1_000));
        // At any size, the heartbeats of all objects fit the budget.
        for n in [1_000, 16_000, 50_000, 200_000] {
            let per_second = n as f64 / status_heartbeat(n).as_secs_f64();
            assert!(
                per_second <= HEARTBEATS_PER_SECOND as f64,
                "{n}: {per_second}/s"
            );
        }
    }
}
