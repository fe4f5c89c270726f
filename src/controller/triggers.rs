//! Sends ExternalSecrets back to their scope's controller loop out of schedule: when Vault (or
//! a login) works again after failing, when an outage is confirmed, or when a Namespace's guard
//! changed (`watches`).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::{ObjectRef, Store};
use kube::ResourceExt;
use tokio::sync::{mpsc, watch};

use super::Shared;
use crate::api::kes::crd::ExternalSecret;

/// Rescheduled objects are spread over this much time, in `SPREAD_STEPS` batches.
const SPREAD: Duration = Duration::from_secs(2);
const SPREAD_STEPS: u32 = 20;

/// Sends ExternalSecrets back to their scope's controller loop out of schedule: when their
/// Namespace's guard changed, or when Vault (or a login) works again after failing.
#[derive(Default)]
pub struct Retrigger {
    pub scopes: Vec<(
        Store<ExternalSecret>,
        mpsc::UnboundedSender<ObjectRef<ExternalSecret>>,
    )>,
}

impl Retrigger {
    /// The objects `pick` selects, per scope.
    pub fn select(
        &self,
        pick: impl Fn(&ExternalSecret) -> bool,
    ) -> Vec<(
        ObjectRef<ExternalSecret>,
        &mpsc::UnboundedSender<ObjectRef<ExternalSecret>>,
    )> {
        self.scopes
            .iter()
            .flat_map(|(store, tx)| {
                store
                    .state()
                    .into_iter()
                    .filter(|es| pick(es))
                    .map(move |es| (ObjectRef::from_obj(es.as_ref()), tx))
            })
            .collect()
    }
}

/// Vault's state changes for many objects at once:
/// - when the breaker closes or a failing login works again, the objects whose last sync failed
///   are rescheduled at once (recovery follows Vault, not each object's backoff);
/// - when an outage is confirmed, the objects that have not failed yet are synced (they fail at
///   once, without a request), so every status shows it within seconds, not at its next poll.
///
/// Either way spread over `SPREAD`.
pub async fn reschedule_on_vault_events(
    shared: Arc<Shared>,
    mut recoveries: watch::Receiver<u64>,
    mut outages: watch::Receiver<u64>,
    retrigger: Arc<Retrigger>,
) {
    loop {
        let recovered = tokio::select! {
            r = recoveries.changed() => { if r.is_err() { return; } true }
            r = outages.changed() => { if r.is_err() { return; } false }
        };
        let failing = shared.objects.failing();
        let picked =
            retrigger.select(|es| es.uid().is_some_and(|u| failing.contains(&u) == recovered));
        if picked.is_empty() {
            continue;
        }
        if recovered {
            tracing::info!(
                objects = picked.len(),
                "Vault works again: rescheduling the objects that failed"
            );
        } else {
            tracing::warn!(
                objects = picked.len(),
                "Vault is down: reporting the outage on every object"
            );
        }
        let batch = picked.len().div_ceil(SPREAD_STEPS as usize).max(1);
        for chunk in picked.chunks(batch) {
            for (r, tx) in chunk {
                let _ = tx.send(r.clone());
            }
            tokio::time::sleep(SPREAD / SPREAD_STEPS).await;
        }
    }
}
