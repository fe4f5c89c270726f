//! Vault / OpenBao client: HTTP with retries and a per-server breaker (`client`, `breaker`),
//! tokens shared per (mount, role) with single-flight logins for successes and failures
//! (`auth`), the KV-only mount check (`mounts`), and coalesced KV v1/v2 reads (`kv`).
//!
//! Secret values and tokens never reach an error or a log line: errors carry the path, the HTTP
//! status and Vault's own `errors` messages, which do not echo request bodies or tokens.

pub mod audit_entry;
mod auth;
mod breaker;
mod client;
mod identity;
mod kv;
mod login;
mod mounts;
mod token;

pub use auth::TokenCache;
pub use breaker::Breaker;
pub use client::{Op, VaultHttp};
pub use identity::{check_auth_name, AuthKey, Credential, Login, Server};
pub use kv::{kv_api_path, KvPart, KvReader, ReadKey, SecretData};
pub use login::{read_own_jwt, CredentialSource, OwnTokenFile};
pub use mounts::{check_read_path, MountKind};

use std::time::Duration;

#[derive(Clone, Debug, thiserror::Error)]
pub enum VaultError {
    /// Vault answered with an error status.
    #[error("Vault answered {status} for {path}: {message}")]
    Status {
        op: Op,
        status: u16,
        path: String,
        message: String,
        /// `Retry-After`, when Vault sent one (429 with quotas configured).
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused, reset, TLS failure, timeout.
    #[error("Vault request to {path} failed: {reason}")]
    Transport {
        op: Op,
        path: String,
        reason: String,
    },
    /// The server's TLS certificate is not trusted (or TLS failed otherwise): a configuration
    /// matter (CA bundle), not an outage — not retried, does not open the breaker.
    #[error("Vault request to {path} failed TLS: {reason}")]
    Tls {
        op: Op,
        path: String,
        reason: String,
    },
    /// Not sent: the server failed a moment ago and has not answered its health check since.
    #[error("Vault is unavailable ({last}); waiting for it to answer its health check")]
    Unavailable { op: Op, last: String },
    /// The service-account JWT could not be read.
    #[error("cannot read the service-account token {path}: {reason}")]
    Jwt { path: String, reason: String },
    /// A login credential (a Secret key, a ServiceAccount token) could not be had.
    #[error("cannot get {what}: {reason}")]
    Credential { what: String, reason: String },
    /// A store's server settings are unusable (CA bundle, header).
    #[error("cannot use Vault server {addr}: {reason}")]
    Server { addr: String, reason: String },
    /// Vault's answer was not what its API documents.
    #[error("unexpected answer from Vault for {path}: {reason}")]
    Decode { path: String, reason: String },
    /// The secret path is not usable (empty, or no mount segment).
    #[error("invalid Vault key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// The path is not in a KV secrets engine of the expected version; never read.
    #[error("{path} is not readable as KV v{kv_version}: {reason}")]
    NotKv {
        path: String,
        kv_version: u8,
        reason: String,
    },
}

impl VaultError {
    /// 412 (not yet replicated), 429 (rate limited), 5xx (sealed, standby, overloaded) and
    /// transport errors are worth another try of the same request; 400/403/404 are not.
    pub fn is_retryable(&self) -> bool {
        match self {
            VaultError::Status { status, .. } => *status == 412 || *status == 429 || *status >= 500,
            VaultError::Transport { .. } => true,
            _ => false,
        }
    }

    /// The server itself is down or unreachable (not one path's problem): sealed, standby
    /// without an active node, a proxy that cannot reach it, no connection. Trips the breaker.
    pub fn is_server_down(&self) -> bool {
        match self {
            VaultError::Status { status, .. } => matches!(status, 502..=504),
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

    /// The request the error came from; `Login` for a JWT that could not be read.
    pub fn op(&self) -> Option<Op> {
        match self {
            VaultError::Status { op, .. }
            | VaultError::Transport { op, .. }
            | VaultError::Tls { op, .. }
            | VaultError::Unavailable { op, .. } => Some(*op),
            VaultError::Jwt { .. } | VaultError::Credential { .. } => Some(Op::Login),
            _ => None,
        }
    }

    /// A failure to obtain or keep a token (login, renewal, token check), as opposed to a read.
    pub fn is_auth(&self) -> bool {
        matches!(self.op(), Some(Op::Login | Op::Renew | Op::Lookup))
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
            VaultError::Tls { .. } => "tls_error",
            VaultError::Unavailable { .. } => "unavailable",
            VaultError::Jwt { .. } => "jwt_error",
            VaultError::Credential { .. } => "credential_error",
            VaultError::Server { .. } => "server_config",
            VaultError::Decode { .. } => "decode_error",
            VaultError::InvalidKey { .. } => "invalid_key",
            VaultError::NotKv { .. } => "not_kv",
        }
    }
}
