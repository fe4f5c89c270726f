//! Vault / OpenBao client: HTTP with retries (`client`), Kubernetes-auth tokens shared per
//! (mount, role) (`auth`), and KV v1/v2 reads with coalescing (`kv`).
//!
//! Secret values and tokens never reach an error or a log line: errors carry the path, the HTTP
//! status and Vault's own `errors` messages, which do not echo request bodies or tokens.

mod auth;
mod client;
mod kv;

pub use auth::{AuthKey, TokenCache};
pub use client::{Op, VaultHttp};
pub use kv::{kv_api_path, KvReader, ReadKey, SecretData};

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault answered with an error status.
    #[error("Vault answered {status} for {path}: {message}")]
    Status {
        status: u16,
        path: String,
        message: String,
        /// `Retry-After`, when Vault sent one (429 with quotas configured).
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, TLS failure, timeout.
    #[error("Vault request to {path} failed: {reason}")]
    Transport { path: String, reason: String },
    /// The service-account JWT could not be read.
    #[error("cannot read the service-account token {path}: {reason}")]
    Jwt { path: String, reason: String },
    /// Vault's answer was not what its API documents.
    #[error("unexpected answer from Vault for {path}: {reason}")]
    Decode { path: String, reason: String },
    /// The secret path is not usable (empty, or no mount segment).
    #[error("invalid Vault key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
}

impl VaultError {
    /// 412 (not yet replicated), 429 (rate limited), 5xx (sealed, standby, overloaded) and
    /// transport errors are worth another try; 400/403/404 are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            VaultError::Status { status, .. } => *status == 412 || *status == 429 || *status >= 500,
            VaultError::Transport { .. } => true,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            VaultError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A bounded label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            VaultError::Status { status: 403, .. } => "forbidden",
            VaultError::Status { status: 404, .. } => "not_found",
            VaultError::Status { status: 429, .. } => "rate_limited",
            VaultError::Status { status, .. } if *status >= 500 => "server_error",
            VaultError::Status { .. } => "client_error",
            VaultError::Transport { .. } => "transport_error",
            VaultError::Jwt { .. } => "jwt_error",
            VaultError::Decode { .. } => "decode_error",
            VaultError::InvalidKey { .. } => "invalid_key",
        }
    }
}
