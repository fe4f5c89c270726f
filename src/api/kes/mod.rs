//! kubernetes-external-secrets' `kubernetes-client.io/v1` ExternalSecret: its CRD (`crd`), the
//! translation into a `SyncSpec` (`translate`), its status shape (`status`: `SUCCESS` /
//! `ERROR, …`) and its per-object metrics (`metrics`).

pub mod crd;
pub mod metrics;
pub mod status;
mod translate;

#[cfg(test)]
mod tests;

pub use translate::{translate, Defaults};

use crd::ExternalSecret;

/// `spec.controllerId`, which `INSTANCE_ID` must equal (unset equals unset, empty is unset).
pub fn controller_id(es: &ExternalSecret) -> Option<&str> {
    es.spec.controller_id.as_deref().filter(|s| !s.is_empty())
}
