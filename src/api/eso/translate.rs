//! Pure: an ESO ExternalSecret and the store it names → the engine's `SyncSpec`. Everything a
//! manifest can get wrong is reported here, per object, before anything is read.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::ResourceExt;

use super::crd::{ExternalSecret, RemoteRef};
use super::path::{api_path, metadata_path};
use super::store::{
    CaProvider, SecretKeySelector, ServiceAccountSelector, StoreSpec, VaultAuth, VaultProvider,
};
use super::{MANAGED_LABEL, MANAGED_VALUE};
use crate::engine::render::check_secret_key;
use crate::engine::{Creation, Decoding, Dialect, Source, SyncSpec, Target, WritePolicy};
use crate::error::Error;
use crate::vault::{check_auth_name, AuthKey, Credential, KvPart, Login, ReadKey, Server};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreKind {
    SecretStore,
    ClusterSecretStore,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::SecretStore => "SecretStore",
            StoreKind::ClusterSecretStore => "ClusterSecretStore",
        }
    }
}

/// The store an ExternalSecret reads through, as found in the cluster.
pub struct StoreView<'a> {
    pub kind: StoreKind,
    pub name: &'a str,
    /// A SecretStore's namespace (`None` for a ClusterSecretStore).
    pub namespace: Option<&'a str>,
    pub spec: &'a StoreSpec,
}

/// Controller settings translation depends on.
pub struct Settings<'a> {
    /// `VAULT_ADDR`: a store on this server, with no namespace, CA or headers of its own,
    /// shares the KES objects' client, tokens and reads.
    pub vault_addr: &'a str,
}

/// The fields this controller does not serve yet, named, so the object fails as a whole
/// instead of producing part of its Secret.
pub fn unsupported(es: &ExternalSecret) -> Option<String> {
    let spec = &es.spec;
    let mut found = Vec::new();
    if spec.target.as_ref().is_some_and(|t| t.template.is_some()) {
        found.push("spec.target.template".to_string());
    }
    for (i, d) in spec.data.iter().flatten().enumerate() {
        if d.source_ref.is_some() {
            found.push(format!("spec.data[{i}].sourceRef"));
        }
        remote_ref_unsupported(
            &d.remote_ref,
            &format!("spec.data[{i}].remoteRef"),
            &mut found,
        );
    }
    for (i, d) in spec.data_from.iter().flatten().enumerate() {
        if d.find.is_some() {
            found.push(format!("spec.dataFrom[{i}].find"));
        }
        if d.rewrite
            .as_ref()
            .is_some_and(|r| r.as_array().is_none_or(|a| !a.is_empty()))
        {
            found.push(format!("spec.dataFrom[{i}].rewrite"));
        }
        if d.source_ref.is_some() {
            found.push(format!("spec.dataFrom[{i}].sourceRef"));
        }
        if let Some(r) = &d.extract {
            remote_ref_unsupported(r, &format!("spec.dataFrom[{i}].extract"), &mut found);
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "not supported by this controller yet: {} (the Secret is left as it is)",
            found.join(", ")
        )
    })
}

fn remote_ref_unsupported(r: &RemoteRef, at: &str, found: &mut Vec<String>) {
    if r.conversion_strategy
        .as_deref()
        .is_some_and(|p| p == "Unicode")
    {
        found.push(format!("{at}.conversionStrategy=Unicode"));
    }
}

fn decoding(r: &RemoteRef, at: &str) -> Result<Decoding, Error> {
    Ok(match r.decoding_strategy.as_deref().unwrap_or("None") {
        "None" | "" => Decoding::None,
        "Base64" => Decoding::Base64,
        "Base64URL" => Decoding::Base64Url,
        "Auto" => Decoding::Auto,
        other => {
            return Err(Error::InvalidSpec(format!(
                "{at}.decodingStrategy {other:?} is not None, Base64, Base64URL or Auto"
            )))
        }
    })
}

pub fn translate(
    es: &ExternalSecret,
    store: &StoreView<'_>,
    settings: &Settings<'_>,
) -> Result<SyncSpec, Error> {
    if let Some(why) = unsupported(es) {
        return Err(Error::Unsupported(why));
    }
    let es_ns = es.namespace().unwrap_or_default();
    let vault = store.spec.vault().ok_or_else(|| {
        Error::Store(format!(
            "{} {} has no vault provider; this controller serves Vault only",
            store.kind.as_str(),
            store.name
        ))
    })?;
    let identity = identity(vault, store, &es_ns, settings)?;
    let kv_version = match vault.version.as_deref().unwrap_or("v2") {
        "v1" => 1,
        "v2" => 2,
        other => {
            return Err(Error::Store(format!(
                "{} {}: version {other:?} is not v1 or v2",
                store.kind.as_str(),
                store.name
            )))
        }
    };
    let target = &es.spec.target();
    let creation = match target.creation_policy.as_deref().unwrap_or("Owner") {
        "Owner" => Creation::Owner,
        "Orphan" => Creation::Orphan,
        "Merge" => Creation::Merge,
        "None" => Creation::None,
        other => {
            return Err(Error::InvalidSpec(format!(
                "spec.target.creationPolicy {other:?} is not Owner, Orphan, Merge or None"
            )))
        }
    };
    let deletion = target.deletion_policy.as_deref().unwrap_or("Retain");
    let (optional, delete_when_empty) = match deletion {
        "Retain" => (false, false),
        "Delete" if creation != Creation::Owner => {
            // ESO's wording.
            return Err(Error::InvalidSpec(format!(
                "invalid creationPolicy={}. Can not delete secret i do not own",
                target.creation_policy.as_deref().unwrap_or("Owner")
            )));
        }
        "Delete" => (true, true),
        "Merge" => (true, false),
        other => {
            return Err(Error::InvalidSpec(format!(
                "spec.target.deletionPolicy {other:?} is not Retain, Delete or Merge"
            )))
        }
    };

    let read = |r: &RemoteRef| -> Result<ReadKey, Error> {
        let store_path = vault.path.as_deref();
        Ok(match r.metadata_policy.as_deref().unwrap_or("None") {
            "None" | "" => ReadKey {
                auth: identity.clone(),
                api_path: api_path(store_path, kv_version, &r.key, r.version.as_deref())?,
                kv_version,
                part: KvPart::Data,
            },
            "Fetch" => ReadKey {
                auth: identity.clone(),
                api_path: metadata_path(store_path, kv_version, &r.key)?,
                kv_version,
                part: KvPart::CustomMetadata,
            },
            other => {
                return Err(Error::InvalidSpec(format!(
                    "remoteRef.metadataPolicy {other:?} is not None or Fetch"
                )))
            }
        })
    };
    let mut sources = Vec::new();
    for (i, item) in es.spec.data.iter().flatten().enumerate() {
        let at = format!("spec.data[{i}]");
        check_secret_key(&item.secret_key)
            .map_err(|why| Error::InvalidSpec(format!("{at}.secretKey {why}")))?;
        sources.push(Source::One {
            read: read(&item.remote_ref)?,
            key: item.remote_ref.key.clone(),
            name: item.secret_key.clone(),
            property: item.remote_ref.property.clone().filter(|p| !p.is_empty()),
            dialect: Dialect::Eso {
                decoding: decoding(&item.remote_ref, &format!("{at}.remoteRef"))?,
            },
            optional,
        });
    }
    for (i, item) in es.spec.data_from.iter().flatten().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        let r = item
            .extract
            .as_ref()
            .ok_or_else(|| Error::InvalidSpec(format!("{at} needs extract")))?;
        sources.push(Source::All {
            read: read(r)?,
            key: r.key.clone(),
            property: r.property.clone().filter(|p| !p.is_empty()),
            dialect: Dialect::Eso {
                decoding: decoding(r, &format!("{at}.extract"))?,
            },
            optional,
        });
    }
    if sources.is_empty() {
        return Err(Error::InvalidSpec(
            "nothing to sync: set spec.data or spec.dataFrom".into(),
        ));
    }
    let owner = crate::api::owner_of(es)?;
    Ok(SyncSpec {
        identity,
        sources,
        target: Target {
            name: target
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| es.name_any()),
            namespace: es_ns,
            type_: "Opaque".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            literal_data: BTreeMap::new(),
            owner,
            managed_label: (MANAGED_LABEL.into(), MANAGED_VALUE.into()),
            policy: WritePolicy {
                creation,
                immutable: target.immutable.unwrap_or(false),
                delete_when_empty,
                data_hash: true,
            },
        },
    })
}

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
