//! vault-external-secrets: syncs Vault / OpenBao secrets into Kubernetes Secrets.
//!
//! The flow, one module each: `api` (front-ends: KES's ExternalSecret → `engine::SyncSpec`),
//! `engine` (plan the Vault reads, fetch them through `vault`, render the desired Secret, write
//! it), `controller` (watches, scheduling, per-object state, status and Events); `config`,
//! `metrics`, `http` and `logging` at the edges.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod config;
pub mod controller;
pub mod engine;
pub mod error;
pub mod gotmpl;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod single_flight;
pub mod vault;

pub use error::Error;
