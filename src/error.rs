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

    /// ESO `creationPolicy: Merge` writes into an existing Secret only (ESO's wording).
    #[error("the desired secret {0} was not found. With creationPolicy=Merge the secret won't be created")]
    MergeTargetMissing(String),

    #[error(
        "Secret {0} is immutable and its data differs from Vault's; delete it to have it recreated"
    )]
    SecretImmutable(String),

    /// A store the object names is missing, not ready for it, or not ours to serve.
    #[error("{0}")]
    Store(String),

    /// An ESO template failed: which one and why (never a value).
    #[error("{0}")]
    Template(String),

    /// A field this controller does not serve yet (ESO templates, `find`, `rewrite`).
    #[error("{0}")]
    Unsupported(String),

    /// Shown through `kube_brief`: the apiserver's own message may quote what was sent.
    #[error("Kubernetes API: {}", kube_brief(.0))]
    Kube(#[from] kube::Error),

    /// KES's namespace guard (`permitted-key-name` / `permitted` annotations) refused it.
    #[error("{0}")]
    Forbidden(String),

    /// Someone else rewrites the Secret after each of our writes; we stopped writing it.
    #[error("Secret {name} was changed by {by} after each of our last {count} writes; stopped writing it to end the loop (the other writer must stop managing it)")]
    WriteLoop {
        name: String,
        by: String,
        count: usize,
    },

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
            Error::MergeTargetMissing(_) => "SecretMissing",
            Error::SecretImmutable(_) => "SecretImmutable",
            Error::Store(_) => "StoreNotReady",
            Error::Unsupported(_) => "Unsupported",
            Error::Template(_) => "TemplateFailed",
            Error::Kube(_) => "KubernetesApiFailed",
            Error::Forbidden(_) => "Forbidden",
            Error::WriteLoop { .. } => "SecretWriteLoop",
            Error::NotLeader => "NotLeader",
        }
    }

    /// Errors that a later try can fix without anyone changing anything retry with backoff;
    /// the others wait for the next poll or a spec change.
    ///
    /// Auth failures are transient here: the token cache backs off the login itself and shares
    /// the failure, so an object retrying early costs no request. A read answered 403 is not:
    /// the token was checked (or freshly issued) before the 403 was reported, so the path is
    /// not permitted, and only a policy change fixes that.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::VaultAuth(_) => true,
            Error::VaultRead { source, .. } => {
                source.is_retryable() || matches!(source.as_ref(), VaultError::Unavailable { .. })
            }
            Error::Kube(kube::Error::Api(s)) => s.code == 409 || s.code == 429 || s.code >= 500,
            Error::Kube(e) => !matches!(e, kube::Error::SerdeError(_)),
            Error::NotLeader => true,
            _ => false,
        }
    }

    /// Sorts a failed Vault request into an auth failure (login, renewal, token check, JWT), a
    /// key the tenant may not use (not KV), or a read failure of `key`.
    pub fn from_vault(key: &str, e: Arc<VaultError>) -> Self {
        if e.is_auth() {
            return Error::VaultAuth(e);
        }
        if matches!(e.as_ref(), VaultError::NotKv { .. }) {
            return Error::InvalidSpec(format!("key {key}: {e}"));
        }
        Error::VaultRead {
            key: key.to_string(),
            source: e,
        }
    }
}

/// What of a Kubernetes client error is safe to show: the status code and reason, and the
/// names of the fields the apiserver objected to — never its message, which can quote the
/// value it refused ("invalid character 'P' looking for …").
pub fn kube_brief(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => {
            let fields: Vec<&str> = s
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .filter_map(|c| (!c.field.is_empty()).then_some(c.field.as_str()))
                .collect();
            if fields.is_empty() {
                format!("{} {}", s.code, s.reason)
            } else {
                format!("{} {} (fields: {})", s.code, s.reason, fields.join(", "))
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            "the apiserver could not be reached".into()
        }
        kube::Error::SerdeError(_) => "the apiserver's answer could not be decoded".into(),
        kube::Error::Auth(_) => "authentication to the apiserver failed".into(),
        _ => "the request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::response::{StatusCause, StatusDetails};

    #[test]
    fn apiserver_messages_are_not_repeated() {
        let mut st = kube::core::Status::failure(
            "Secret \"app\" is invalid: data[x]: invalid character 'P' looking for beginning of value",
            "Invalid",
        )
        .with_code(422);
        st.details = Some(StatusDetails {
            causes: vec![StatusCause {
                reason: "FieldValueInvalid".into(),
                message: "invalid character 'P'".into(),
                field: "data[x]".into(),
            }],
            name: "app".into(),
            group: String::new(),
            kind: "secrets".into(),
            uid: String::new(),
            retry_after_seconds: 0,
        });
        let e = Error::Kube(kube::Error::Api(st.boxed()));
        let text = e.to_string();
        assert_eq!(text, "Kubernetes API: 422 Invalid (fields: data[x])");
        assert!(!e.is_transient());
        let conflict = Error::Kube(kube::Error::Api(
            kube::core::Status::failure("conflict", "Conflict")
                .with_code(409)
                .boxed(),
        ));
        assert!(conflict.is_transient());
    }

    #[test]
    fn vault_errors_are_sorted_by_operation() {
        let status = |op, status| {
            Arc::new(VaultError::Status {
                op,
                status,
                path: "p".into(),
                message: "permission denied".into(),
                retry_after: None,
            })
        };
        use crate::vault::Op;
        assert_eq!(
            Error::from_vault("k", status(Op::Login, 400)).reason(),
            "VaultAuthFailed"
        );
        assert_eq!(
            Error::from_vault("k", status(Op::Lookup, 500)).reason(),
            "VaultAuthFailed"
        );
        let read403 = Error::from_vault("k", status(Op::Read, 403));
        assert_eq!(read403.reason(), "VaultReadFailed");
        assert!(
            !read403.is_transient(),
            "a checked 403 is the path's answer"
        );
        assert!(Error::from_vault("k", status(Op::Read, 503)).is_transient());
        let not_kv = Arc::new(VaultError::NotKv {
            path: "auth/token/lookup-self".into(),
            kv_version: 1,
            reason: "token engine".into(),
        });
        assert_eq!(Error::from_vault("k", not_kv).reason(), "InvalidSpec");
    }
}
