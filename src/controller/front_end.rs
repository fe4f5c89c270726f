//! What the controller needs of an API (KES, ESO): which objects this instance serves, the
//! object's `SyncSpec`, when to poll it, and how to report a sync in that API's status shape.
//! Everything else — gate, engine, write, schedule, Events — is the same for both.

use std::fmt::Debug;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::core::NamespaceResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Shared;
use crate::engine::{SyncSpec, Write};
use crate::error::Error;

/// When the object is synced again after a successful sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// At the controller's phase-aligned poll interval (`POLL_INTERVAL_MILLISECONDS`).
    Controller,
    /// At the object's own interval (ESO `refreshInterval`), phase-aligned too.
    Every(Duration),
    /// Only when the object changes (ESO `refreshInterval: 0`, `OnChange`, `CreatedOnce`).
    Never,
}

/// Whether a sync should run at all now (ESO's `CreatedOnce`, an immutable Secret synced).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    Sync,
    /// Nothing to do until the object changes; `why` for the debug log.
    Skip(&'static str),
}

pub trait FrontEnd:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + DeserializeOwned
    + Serialize
    + Send
    + Sync
    + 'static
{
    /// `kes` or `eso`: logs, spans, metric labels.
    const API: &'static str;

    /// The label selector of this API's Secrets (the metadata-only Secret watch).
    fn secret_selector() -> String;

    /// What decides whether this instance serves the object, and which store it reads
    /// through. Kept next to the packed object (`Stored`) so that the loops over every object
    /// (pruning, store-change triggers) need not decode it.
    type Route: Clone + Send + Sync + 'static;

    fn route(&self) -> Self::Route;

    /// Whether this instance serves an object of this route in `namespace` (`INSTANCE_ID`,
    /// `CONTROLLER_CLASS`).
    fn serves(route: &Self::Route, namespace: &str, shared: &Shared) -> bool;

    /// Whether to sync now (before the gate; no request).
    fn due(&self, _shared: &Shared) -> Due {
        Due::Sync
    }

    /// Checks (namespace guard, store conditions) and translation into the engine's spec.
    fn spec(&self, shared: &Shared) -> Result<SyncSpec, Error>;

    fn poll(&self, _shared: &Shared) -> Poll {
        Poll::Controller
    }

    /// Status, metrics of this API after a sync (Events are the controller's).
    fn report<'a>(
        &'a self,
        shared: &'a Shared,
        result: Result<&'a Write, &'a Error>,
    ) -> BoxFuture<'a, ()>;

    /// The store an object of this route reads through, `(kind, name)` (ESO), to resync it
    /// when the store changes.
    fn store_of(_route: &Self::Route) -> Option<(&str, &str)> {
        None
    }

    /// Drops what the controller never reads before the object enters the watch's store.
    fn trim(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        meta.labels = None;
        meta.creation_timestamp = None;
        // Only the rollout-restart annotation is read.
        if let Some(a) = meta.annotations.as_mut() {
            a.retain(|k, _| k == super::rollout::ANNOTATION);
        }
        if meta.annotations.as_ref().is_some_and(|a| a.is_empty()) {
            meta.annotations = None;
        }
    }
}
