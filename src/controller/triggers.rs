//! Makes ExternalSecrets due out of schedule: when Vault (or
//! a login) works again after failing, when an outage is confirmed, or when a Namespace's guard
//! changed (`watches`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::front_end::FrontEnd;
use super::queue::Queue;
use super::scope_store::ScopeStore;
use super::stored::Stored;
use super::Shared;

/// Rescheduled objects are spread over this much time, in `SPREAD_STEPS` batches.
const SPREAD: Duration = Duration::from_secs(2);
const SPREAD_STEPS: u32 = 20;

/// One scope's objects of one API, as the background tasks see them: to send some back to
/// the controller loop, to list the live ones, to know when the initial list is in.
pub trait ScopeObjects: Send + Sync {
    /// Senders for the objects `pick` selects.
    fn select(&self, pick: &dyn Fn(&dyn Picked) -> bool) -> Vec<Resend>;
    /// Every object this instance serves, shared rather than copied (`run::prune`).
    fn live(&self, shared: &Shared) -> Vec<Arc<dyn Picked + Send + Sync>>;
    fn ready(&self) -> bool;
}

/// What a trigger may look at to pick an object, and the pruning to keep its state.
pub trait Picked {
    fn uid(&self) -> &str;
    fn namespace(&self) -> &str;
    fn name(&self) -> &str;
    /// ESO: `(kind, name)` of the store the object reads through.
    fn store(&self) -> Option<(&str, &str)>;
}

impl<K: FrontEnd> Picked for Stored<K> {
    fn uid(&self) -> &str {
        Stored::uid(self)
    }
    fn namespace(&self) -> &str {
        Stored::namespace(self)
    }
    fn name(&self) -> &str {
        Stored::name(self)
    }
    fn store(&self) -> Option<(&str, &str)> {
        K::store_of(self.route())
    }
}

/// Makes one object due now.
pub type Resend = Box<dyn FnOnce() + Send>;

/// A scope's reflector store and its queue of due objects.
pub struct Scope<K: FrontEnd> {
    pub store: Arc<ScopeStore<K>>,
    pub queue: Arc<Queue>,
}

impl<K: FrontEnd> ScopeObjects for Scope<K> {
    fn select(&self, pick: &dyn Fn(&dyn Picked) -> bool) -> Vec<Resend> {
        self.store
            .state()
            .into_iter()
            .filter(|o| pick(o.as_ref()))
            .map(|o| {
                let key = o.key().clone();
                let queue = self.queue.clone();
                Box::new(move || queue.now(&key)) as Resend
            })
            .collect()
    }

    fn live(&self, shared: &Shared) -> Vec<Arc<dyn Picked + Send + Sync>> {
        self.store
            .state()
            .into_iter()
            .filter(|o| K::serves(o.route(), Stored::namespace(o), shared))
            .map(|o| o as Arc<dyn Picked + Send + Sync>)
            .collect()
    }

    fn ready(&self) -> bool {
        self.store.listed()
    }
}

/// Every scope of every API served.
#[derive(Default)]
pub struct Retrigger {
    pub scopes: Vec<Box<dyn ScopeObjects>>,
}

impl Retrigger {
    /// Senders for the objects `pick` selects, in every scope.
    pub fn select(&self, pick: impl Fn(&dyn Picked) -> bool) -> Vec<Resend> {
        self.scopes.iter().flat_map(|s| s.select(&pick)).collect()
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
        let picked = retrigger.select(|o| failing.contains(o.uid()) == recovered);
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
        let mut picked = picked.into_iter().peekable();
        while picked.peek().is_some() {
            for resend in picked.by_ref().take(batch) {
                resend();
            }
            tokio::time::sleep(SPREAD / SPREAD_STEPS).await;
        }
    }
}
