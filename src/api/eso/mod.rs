//! External Secrets Operator's `external-secrets.io/v1` API for the Vault provider: the CRDs
//! (`crd`: ExternalSecret, `store`: SecretStore / ClusterSecretStore), ESO's path rules and
//! durations (`path`), which stores and namespaces are served (`stores`), the store's Vault
//! identity (`identity`), `dataFrom`'s find and rewrite (`data_from`), the translation into a
//! `SyncSpec` (`translate`), `target.template` (`template`), ESO's status shape (`status`) and per-object metrics (`metrics`).

pub mod crd;
pub mod data_from;
pub mod identity;
pub mod metrics;
pub mod path;
pub mod status;
pub mod store;
pub mod stores;
pub mod template;
pub mod translate;

#[cfg(test)]
mod tests;

/// The label ESO puts on the Secrets it manages; this API's Secret watch selects on it.
pub const MANAGED_LABEL: &str = "reconcile.external-secrets.io/managed";
pub const MANAGED_VALUE: &str = "true";
