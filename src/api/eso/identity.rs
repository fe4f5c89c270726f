//! Pure: the Vault identity an ESO store logs in as — its server (address, namespace, CA,
//! headers), auth method, and the credentials' Secrets or ServiceAccounts — and the namespaces a
//! store's references may reach (a SecretStore its own; a ClusterSecretStore the ones it names,
//! else the ExternalSecret's: referent auth).

use std::sync::Arc;

use super::store::{
    CaProvider, SecretKeySelector, ServiceAccountSelector, VaultAuth, VaultProvider,
};
use super::translate::{Settings, StoreKind, StoreView};
use crate::error::Error;
use crate::vault::{check_auth_name, AuthKey, Credential, Login, Server};

/// The store's server, as the engine keys it: `None` when it is the configured Vault.
fn server(
    vault: &VaultProvider,
    store: &StoreView<'_>,
    settings: &Settings<'_>,
) -> Result<Option<Arc<Server>>, Error> {
    let addr = vault.server.trim().trim_end_matches('/');
    if addr.is_empty() {
        return Err(Error::Store(format!(
            "{} {}: server is empty",
            store.kind.as_str(),
            store.name
        )));
    }
    let ca_pem = match vault.ca_bundle.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(b64) => Some(decode_ca_bundle(b64).ok_or_else(|| {
            Error::Store(format!(
                "{} {}: caBundle is not base64-encoded PEM",
                store.kind.as_str(),
                store.name
            ))
        })?),
    };
    let ca_from = match &vault.ca_provider {
        None => None,
        Some(p) => Some(ca_provider(p, store)?),
    };
    let namespace = vault.namespace.clone().filter(|n| !n.is_empty());
    let headers: Vec<(String, String)> = vault
        .headers
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if addr == settings.vault_addr
        && namespace.is_none()
        && ca_pem.is_none()
        && ca_from.is_none()
        && headers.is_empty()
    {
        return Ok(None);
    }
    Ok(Some(Arc::new(Server {
        addr: addr.to_string(),
        namespace,
        ca_pem,
        ca_from,
        headers,
    })))
}

/// `caBundle`: base64 of PEM as every `[]byte` field (and, as ESO also accepts, base64 of
/// that).
fn decode_ca_bundle(b64: &str) -> Option<String> {
    use base64::Engine;
    let decode = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let once = decode(b64)?;
    if once.contains("-----BEGIN") {
        return Some(once);
    }
    decode(&once).filter(|pem| pem.contains("-----BEGIN"))
}

/// `caProvider`: a Secret or ConfigMap key, in the store's namespace (a SecretStore) or the one
/// it names (a ClusterSecretStore must name one, as in ESO).
fn ca_provider(p: &CaProvider, store: &StoreView<'_>) -> Result<Credential, Error> {
    let bad = |why: &str| {
        Error::Store(format!(
            "{} {}: caProvider {why}",
            store.kind.as_str(),
            store.name
        ))
    };
    let namespace = match (store.kind, p.namespace.as_deref().filter(|n| !n.is_empty())) {
        (StoreKind::SecretStore, Some(n)) if Some(n) != store.namespace => {
            return Err(bad(
                "namespace should either be empty or match the namespace of the SecretStore",
            ))
        }
        (StoreKind::SecretStore, _) => store.namespace.unwrap_or_default().to_string(),
        (StoreKind::ClusterSecretStore, Some(n)) => n.to_string(),
        (StoreKind::ClusterSecretStore, None) => {
            return Err(bad("needs a namespace on a ClusterSecretStore"))
        }
    };
    let key = p
        .key
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad("needs a key"))?;
    let name = p.name.clone();
    match p.type_.as_str() {
        "Secret" => Ok(Credential::SecretKey {
            namespace,
            name,
            key,
        }),
        "ConfigMap" => Ok(Credential::ConfigMapKey {
            namespace,
            name,
            key,
        }),
        other => Err(bad(&format!("type {other:?} is not Secret or ConfigMap"))),
    }
}

/// The Vault identity the store logs in as, for an ExternalSecret in `es_ns`.
pub fn identity(
    vault: &VaultProvider,
    store: &StoreView<'_>,
    es_ns: &str,
    settings: &Settings<'_>,
) -> Result<AuthKey, Error> {
    let what = format!("{} {}", store.kind.as_str(), store.name);
    let bad = |why: String| Error::Store(format!("{what}: {why}"));
    let server = server(vault, store, settings)?;
    let auth: &VaultAuth = vault
        .auth
        .as_ref()
        .ok_or_else(|| bad("auth is missing".into()))?;
    if auth.namespace.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(Error::Unsupported(format!(
            "{what}: auth.namespace is not supported yet"
        )));
    }
    // Where a reference's namespace may point: a SecretStore only to its own; a
    // ClusterSecretStore anywhere it names, or, when it names none, the ExternalSecret's
    // namespace (referent auth).
    let ref_ns = |ns: Option<&String>, field: &str| -> Result<String, Error> {
        match (store.kind, ns.filter(|n| !n.is_empty())) {
            (StoreKind::SecretStore, Some(n)) if Some(n.as_str()) != store.namespace => {
                Err(bad(format!(
                "{field}.namespace should either be empty or match the namespace of the SecretStore"
            )))
            }
            (StoreKind::SecretStore, _) => Ok(store.namespace.unwrap_or_default().to_string()),
            (StoreKind::ClusterSecretStore, Some(n)) => Ok(n.clone()),
            (StoreKind::ClusterSecretStore, None) => Ok(es_ns.to_string()),
        }
    };
    let secret =
        |sel: &SecretKeySelector, field: &str, default_key: &str| -> Result<Credential, Error> {
            Ok(Credential::SecretKey {
                namespace: ref_ns(sel.namespace.as_ref(), field)?,
                name: sel.name.clone(),
                key: sel
                    .key
                    .clone()
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| default_key.to_string()),
            })
        };
    let service_account = |sel: &ServiceAccountSelector,
                           field: &str,
                           audiences: Option<&Vec<String>>|
     -> Result<Credential, Error> {
        Ok(Credential::ServiceAccountToken {
            namespace: ref_ns(sel.namespace.as_ref(), field)?,
            name: sel.name.clone(),
            audiences: audiences
                .or(sel.audiences.as_ref())
                .cloned()
                .unwrap_or_default(),
        })
    };
    let mount = |path: &Option<String>, default: &str| -> Result<String, Error> {
        let m = path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| default.to_string());
        check_auth_name(&m).map_err(|why| bad(format!("auth path {m:?} {why}")))?;
        Ok(m)
    };
    let named = |v: &Option<String>, field: &str| -> Result<String, Error> {
        let v = v
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| bad(format!("{field} is required")))?;
        check_auth_name(&v).map_err(|why| bad(format!("{field} {v:?} {why}")))?;
        Ok(v)
    };
    let methods = [
        auth.token_secret_ref.is_some(),
        auth.app_role.is_some(),
        auth.kubernetes.is_some(),
        auth.jwt.is_some(),
        auth.user_pass.is_some(),
        auth.ldap.is_some(),
    ]
    .iter()
    .filter(|m| **m)
    .count();
    if methods == 0 {
        let other: Vec<&String> = auth.others.keys().collect();
        return Err(if other.is_empty() {
            bad("auth names no method".into())
        } else {
            Error::Unsupported(format!("{what}: auth method {other:?} is not supported (kubernetes, jwt, appRole, tokenSecretRef, userPass and ldap are)"))
        });
    }
    if methods > 1 {
        return Err(bad("auth names more than one method".into()));
    }
    let (mount, role, login) = if let Some(t) = &auth.token_secret_ref {
        (
            String::new(),
            String::new(),
            Login::Token(secret(t, "auth.tokenSecretRef", "token")?),
        )
    } else if let Some(a) = &auth.app_role {
        let secret_ref = a
            .secret_ref
            .as_ref()
            .ok_or_else(|| bad("auth.appRole.secretRef is required".into()))?;
        let (role, role_id) = match (&a.role_id, &a.role_ref) {
            (_, Some(r)) => (
                String::new(),
                Some(secret(r, "auth.appRole.roleRef", "roleId")?),
            ),
            (Some(id), None) if !id.is_empty() => (id.clone(), None),
            _ => return Err(bad("auth.appRole needs roleId or roleRef".into())),
        };
        (
            mount(&a.path, "approle")?,
            role,
            Login::AppRole {
                role_id,
                secret_id: secret(secret_ref, "auth.appRole.secretRef", "secretId")?,
            },
        )
    } else if let Some(k) = &auth.kubernetes {
        let jwt = match (&k.service_account_ref, &k.secret_ref) {
            (Some(sa), _) => service_account(sa, "auth.kubernetes.serviceAccountRef", None)?,
            (None, Some(s)) => secret(s, "auth.kubernetes.secretRef", "token")?,
            (None, None) if store.kind == StoreKind::ClusterSecretStore => {
                Credential::OwnServiceAccount
            }
            (None, None) => {
                // A tenant's store must not log in as the controller: that identity may hold
                // roles for every namespace.
                return Err(bad("auth.kubernetes needs serviceAccountRef or secretRef: only a ClusterSecretStore may use the controller's own service account".into()));
            }
        };
        (
            mount(&k.mount_path, "kubernetes")?,
            named(&k.role, "auth.kubernetes.role")?,
            Login::Jwt(jwt),
        )
    } else if let Some(j) = &auth.jwt {
        let jwt = match (&j.kubernetes_service_account_token, &j.secret_ref) {
            (Some(t), _) => service_account(
                &t.service_account_ref,
                "auth.jwt.kubernetesServiceAccountToken.serviceAccountRef",
                t.audiences.as_ref(),
            )?,
            (None, Some(s)) => secret(s, "auth.jwt.secretRef", "jwt")?,
            (None, None) => {
                return Err(bad(
                    "auth.jwt needs secretRef or kubernetesServiceAccountToken".into(),
                ))
            }
        };
        (
            mount(&j.path, "jwt")?,
            named(&j.role, "auth.jwt.role")?,
            Login::Jwt(jwt),
        )
    } else {
        let (u, field, default) = match (&auth.user_pass, &auth.ldap) {
            (Some(u), _) => (u, "auth.userPass", "userpass"),
            (None, Some(l)) => (l, "auth.ldap", "ldap"),
            (None, None) => return Err(bad("auth names no method".into())),
        };
        let secret_ref = u
            .secret_ref
            .as_ref()
            .ok_or_else(|| bad(format!("{field}.secretRef is required")))?;
        (
            mount(&u.path, default)?,
            named(&u.username, &format!("{field}.username"))?,
            Login::Password(secret(
                secret_ref,
                &format!("{field}.secretRef"),
                "password",
            )?),
        )
    };
    Ok(AuthKey {
        server,
        mount,
        role,
        login,
    })
}
