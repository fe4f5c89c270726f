//! After a sync: KES's per-object metrics, the `Ready` reason gauge, the status (written only
//! when it changes) and Events (on writes, and on a new failure at most every 5 minutes).

use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

use super::Shared;
use crate::api::kes::crd::ExternalSecret;
use crate::api::kes::status::{self, Outcome};
use crate::engine::Write;
use crate::error::Error;

/// How often `lastSync` is refreshed while nothing changes.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(300);

pub async fn report(
    es: &ExternalSecret,
    uid: &str,
    shared: &Shared,
    result: Result<&Write, &Error>,
) {
    let outcome = match result {
        Ok(_) => Outcome::synced(),
        Err(e) => Outcome {
            ok: false,
            reason: e.reason(),
            message: e.to_string(),
        },
    };
    shared.metrics.per_object.record(
        &es.namespace().unwrap_or_default(),
        &es.name_any(),
        es.backend().as_str(),
        outcome.ok,
    );
    shared.objects.set_reason(uid, outcome.reason);
    write_status(es, shared, &outcome).await;
    publish_event(es, uid, shared, result).await;
}

/// Patches the status when `next_status` says it changed, and only while leading.
async fn write_status(es: &ExternalSecret, shared: &Shared, outcome: &Outcome) {
    let Some(status) = status::next_status(
        es.status.as_ref(),
        outcome,
        es.meta().generation,
        chrono::Utc::now(),
        STATUS_HEARTBEAT,
    ) else {
        return;
    };
    if !shared.leading() {
        return;
    }
    let api: Api<ExternalSecret> =
        Api::namespaced(shared.client.clone(), &es.namespace().unwrap_or_default());
    let patch = Patch::Merge(json!({ "status": status }));
    match api
        .patch_status(&es.name_any(), &PatchParams::default(), &patch)
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

async fn publish_event(
    es: &ExternalSecret,
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
