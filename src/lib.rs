//! vault-external-secrets: syncs Vault / OpenBao secrets into Kubernetes Secrets from
//! kubernetes-external-secrets (KES) `ExternalSecret` manifests.
#![forbid(unsafe_code)]

pub mod config;
pub mod controller;
pub mod crd;
pub mod error;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod render;
pub mod vault;

pub use error::Error;
