//! Who reads from Vault: the server, the auth method and the credential that logs in. Pure data;
//! a token is cached per `AuthKey`, and reads are coalesced per (key, path), so two objects share
//! a token and a read exactly when they would log in the same way.

use std::sync::Arc;

/// A Vault server other than the configured one (`VAULT_ADDR`): ESO stores name their own.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Server {
    pub addr: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    pub namespace: Option<String>,
    /// PEM roots to trust besides the system's.
    pub ca_pem: Option<String>,
    /// More PEM roots, read from a Secret or ConfigMap key when the client is made.
    pub ca_from: Option<Credential>,
    /// Extra request headers, sorted.
    pub headers: Vec<(String, String)>,
}

/// Where a login credential comes from. Fetched at login time only, under the identity's
/// single-flight lock: N objects cost one fetch per login, not one per sync.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Credential {
    /// The controller's own service-account token (`VAULT_JWT_PATH`), re-read at every login.
    OwnServiceAccount,
    /// A key of a Secret.
    SecretKey {
        namespace: String,
        name: String,
        key: String,
    },
    /// A key of a ConfigMap (a CA bundle: not secret, but fetched the same way).
    ConfigMapKey {
        namespace: String,
        name: String,
        key: String,
    },
    /// A token of a ServiceAccount, asked of the apiserver (TokenRequest).
    ServiceAccountToken {
        namespace: String,
        name: String,
        audiences: Vec<String>,
    },
}

impl Credential {
    /// For messages: which credential, never its value.
    pub fn describe(&self) -> String {
        match self {
            Credential::OwnServiceAccount => "the controller's service-account token".into(),
            Credential::SecretKey {
                namespace,
                name,
                key,
            } => format!("key {key:?} of Secret {namespace}/{name}"),
            Credential::ConfigMapKey {
                namespace,
                name,
                key,
            } => format!("key {key:?} of ConfigMap {namespace}/{name}"),
            Credential::ServiceAccountToken {
                namespace, name, ..
            } => format!("a token of ServiceAccount {namespace}/{name}"),
        }
    }
}

/// How a token is obtained.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Login {
    /// `kubernetes` and `jwt` methods: `{role, jwt}` to `auth/<mount>/login`.
    Jwt(Credential),
    /// `approle`: `{role_id, secret_id}`; the role id is `AuthKey::role` unless read from a Secret.
    AppRole {
        role_id: Option<Credential>,
        secret_id: Credential,
    },
    /// `userpass` and `ldap`: `{password}` to `auth/<mount>/login/<AuthKey::role>`.
    Password(Credential),
    /// A token given as is (a Secret key). Not ours: never renewed, never revoked.
    Token(Credential),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthKey {
    /// `None`: the configured Vault (`VAULT_ADDR`).
    pub server: Option<Arc<Server>>,
    /// The auth method's mount path (empty for `Login::Token`).
    pub mount: String,
    /// The role, AppRole role id, or user name.
    pub role: String,
    pub login: Login,
}

impl AuthKey {
    /// Kubernetes auth with the controller's own service-account token on the configured Vault
    /// (KES).
    pub fn own_service_account(mount: impl Into<String>, role: impl Into<String>) -> Self {
        AuthKey {
            server: None,
            mount: mount.into(),
            role: role.into(),
            login: Login::Jwt(Credential::OwnServiceAccount),
        }
    }
}

/// Auth mount paths and role names end up in a URL path (`auth/<mount>/login`): segments of
/// `[A-Za-z0-9._@-]`, no empty, `.` or `..` segment (`../token` would reach `token/login`).
pub fn check_auth_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 256 {
        return Err("must be 1 to 256 characters");
    }
    for seg in name.trim_matches('/').split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err("may not have empty, '.' or '..' segments");
        }
        if !seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        {
            return Err("may contain only letters, digits, '-', '_', '.', '@' and '/'");
        }
    }
    Ok(())
}
