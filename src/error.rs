//! Why a sync failed. Each variant maps to a fixed `Ready` condition reason (the bounded label
//! of the error metrics); the message names the key and the cause, never a value or token.

use std::sync::Arc;

use crate::vault::VaultError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidSpec(String),

    #[error("backendType {0} is not served by this controller; it syncs backendType vault only")]
    UnsupportedBackend(String),

    #[error("{0}")]
    VaultAuth(Arc<VaultError>),

    #[error("reading {key}: {source}")]
    VaultRead {
        key: String,
        source: Arc<VaultError>,
    },

    /// KES's wording, which users grep for.
    #[error("Could not find property {property} in {key}")]
    PropertyNotFound { property: String, key: String },

    #[error("{0}")]
    InvalidValue(String),

    #[error("Secret {0} exists and is not owned by this ExternalSecret; it was left untouched")]
    SecretNotOwned(String),

    #[error("Secret {name} has type {existing}; the type of a Secret cannot change, delete the Secret to recreate it as {desired}")]
    SecretTypeImmutable {
        name: String,
        existing: String,
        desired: String,
    },

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    /// The replica lost the Lease during the sync; the new leader takes over.
    #[error("this replica is no longer the leader")]
    NotLeader,
}

impl Error {
    /// The `Ready` condition reason; a fixed set.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::UnsupportedBackend(_) => "UnsupportedBackend",
            Error::VaultAuth(_) => "VaultAuthFailed",
            Error::VaultRead { .. } => "VaultReadFailed",
            Error::PropertyNotFound { .. } => "PropertyNotFound",
            Error::InvalidValue(_) => "InvalidValue",
            Error::SecretNotOwned(_) => "SecretNotOwned",
            Error::SecretTypeImmutable { .. } => "SecretTypeImmutable",
            Error::Kube(_) => "KubernetesApiFailed",
            Error::NotLeader => "NotLeader",
        }
    }

    /// Errors that a later try can fix without anyone changing anything (Vault down, apiserver
    /// conflicts) retry with backoff; the others wait for the next poll or a spec change.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::VaultAuth(e) | Error::VaultRead { source: e, .. } => {
                e.is_retryable() || e.status() == Some(403)
            }
            Error::Kube(_) | Error::NotLeader => true,
            _ => false,
        }
    }

    /// Sorts a failed Vault read into an auth failure (login, JWT) or a read failure of `key`.
    pub fn from_vault(key: &str, e: Arc<VaultError>) -> Self {
        let is_auth = match e.as_ref() {
            VaultError::Jwt { .. } => true,
            VaultError::Status { path, .. } => path.starts_with("auth/"),
            _ => false,
        };
        if is_auth {
            Error::VaultAuth(e)
        } else {
            Error::VaultRead {
                key: key.to_string(),
                source: e,
            }
        }
    }
}
