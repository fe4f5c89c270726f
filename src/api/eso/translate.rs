//! Pure: an ESO ExternalSecret and the store it names → the engine's `SyncSpec`. Everything a
//! manifest can get wrong is reported here, per object, before anything is read.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::crd::{ExternalSecret, RemoteRef};
use super::data_from;
use super::identity::identity;
use super::path::{api_path, metadata_path};
use super::store::StoreSpec;
use super::{MANAGED_LABEL, MANAGED_VALUE};
use crate::engine::render::check_secret_key;
use crate::engine::{Creation, Decoding, Dialect, KeyRules, Source, SyncSpec, Target, WritePolicy};
use crate::error::Error;
use crate::vault::{KvPart, ReadKey};

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

/// The kind of store an ExternalSecret names (`SecretStore` by default).
pub fn store_kind(es: &ExternalSecret) -> Result<StoreKind, Error> {
    match es
        .spec
        .secret_store_ref
        .as_ref()
        .and_then(|r| r.kind.as_deref())
        .unwrap_or("SecretStore")
    {
        "SecretStore" | "" => Ok(StoreKind::SecretStore),
        "ClusterSecretStore" => Ok(StoreKind::ClusterSecretStore),
        other => Err(Error::InvalidSpec(format!(
            "spec.secretStoreRef.kind {other:?} is not SecretStore or ClusterSecretStore"
        ))),
    }
}

/// The name of the store an ExternalSecret names, if any.
pub fn store_name(es: &ExternalSecret) -> Option<&str> {
    es.spec
        .secret_store_ref
        .as_ref()
        .and_then(|r| r.name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Controller settings translation depends on.
pub struct Settings<'a> {
    /// `VAULT_ADDR`: a store on this server, with no namespace, CA or headers of its own,
    /// shares the KES objects' client, tokens and reads.
    pub vault_addr: &'a str,
}

/// kubectl's copy of the applied manifest: not copied onto the Secret.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The fields this controller does not serve yet, named, so the object fails as a whole
/// instead of producing part of its Secret.
pub fn unsupported(es: &ExternalSecret) -> Option<String> {
    let spec = &es.spec;
    let mut found = Vec::new();
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
        for (j, r) in d
            .rewrite
            .iter()
            .flat_map(|r| r.as_array())
            .flatten()
            .enumerate()
        {
            if r.get("merge").is_some() {
                found.push(format!("spec.dataFrom[{i}].rewrite[{j}].merge"));
            }
        }
        if d.find
            .as_ref()
            .and_then(|f| f.get("conversionStrategy"))
            .is_some_and(|c| c == "Unicode")
        {
            found.push(format!(
                "spec.dataFrom[{i}].find.conversionStrategy=Unicode"
            ));
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
    decoding_of(r.decoding_strategy.as_deref(), at)
}

fn decoding_of(strategy: Option<&str>, at: &str) -> Result<Decoding, Error> {
    Ok(match strategy.unwrap_or("None") {
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
    // ESO's order: every dataFrom item, then data — a data key wins over the same key found
    // by dataFrom.
    let mut sources = Vec::new();
    for (i, item) in es.spec.data_from.iter().flatten().enumerate() {
        let at = format!("spec.dataFrom[{i}]");
        let rewrite = data_from::rewrites(item.rewrite.as_ref(), &at)?;
        match (&item.extract, &item.find) {
            (Some(r), None) => sources.push(Source::All {
                read: read(r)?,
                key: r.key.clone(),
                property: r.property.clone().filter(|p| !p.is_empty()),
                dialect: Dialect::Eso {
                    decoding: decoding(r, &format!("{at}.extract"))?,
                },
                optional,
                keys: KeyRules {
                    rewrite,
                    convert: data_from::convert(
                        r.conversion_strategy.as_deref(),
                        &format!("{at}.extract"),
                    )?,
                },
            }),
            (None, Some(find)) => sources.push(Source::Find(Box::new(data_from::find(
                data_from::FindRequest {
                    at: &at,
                    find,
                    rewrite,
                    identity: &identity,
                    store_path: vault.path.as_deref(),
                    kv_version,
                    optional,
                },
                decoding_of,
            )?))),
            _ => {
                return Err(Error::InvalidSpec(format!(
                    "{at} needs exactly one of extract or find"
                )))
            }
        }
    }
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
    if sources.is_empty() {
        return Err(Error::InvalidSpec(
            "nothing to sync: set spec.data or spec.dataFrom".into(),
        ));
    }
    // With a template, its type and (rendered) metadata; without one, the ExternalSecret's own
    // labels and annotations, as ESO copies them.
    let (template, type_, labels, annotations) = match &target.template {
        Some(t) => {
            let (t, type_) = super::template::template(t)?;
            (Some(t), type_, BTreeMap::new(), BTreeMap::new())
        }
        None => {
            let mut annotations = es.annotations().clone();
            annotations.remove(LAST_APPLIED);
            (None, None, es.labels().clone(), annotations)
        }
    };
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
            type_: type_.unwrap_or_else(|| "Opaque".into()),
            labels,
            annotations,
            literal_data: BTreeMap::new(),
            owner,
            managed_label: (MANAGED_LABEL.into(), MANAGED_VALUE.into()),
            policy: WritePolicy {
                creation,
                immutable: target.immutable.unwrap_or(false),
                delete_when_empty,
                data_hash: true,
            },
            template,
        },
    })
}
