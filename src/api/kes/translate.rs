//! Pure: a KES ExternalSecret → the engine's `SyncSpec`. KES's rules live here: `backendType`,
//! the `vaultRole` / `vaultMountPoint` defaults, `kvVersion` and KES's key forms, the merge
//! order (dataFrom, dataFromWithOptions, data, then template data and stringData), and its
//! free-form `template`.

use std::collections::BTreeMap;

use base64::Engine;
use kube::ResourceExt;
use serde_json::Value;

use super::crd::{BackendType, ExternalSecret};
use crate::engine::render::{check_secret_key, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::engine::{Dialect, KeyRules, Source, SyncSpec, Target, WritePolicy};
use crate::error::Error;
use crate::vault::{check_auth_name, check_read_path, kv_api_path, AuthKey, KvPart, ReadKey};

/// Auth defaults from the environment (`DEFAULT_VAULT_MOUNT_POINT`, `DEFAULT_VAULT_ROLE`).
#[derive(Clone, Debug)]
pub struct Defaults {
    pub mount_point: String,
    pub role: Option<String>,
}

impl Defaults {
    /// The controller's (`DEFAULT_VAULT_MOUNT_POINT`, `DEFAULT_VAULT_ROLE`).
    pub fn from_config(config: &crate::config::Config) -> Self {
        Defaults {
            mount_point: config.default_mount_point.clone(),
            role: config.default_role.clone(),
        }
    }
}

pub fn translate(es: &ExternalSecret, defaults: &Defaults) -> Result<SyncSpec, Error> {
    let spec = &es.spec;
    let backend = es.backend();
    if backend != BackendType::Vault {
        return Err(Error::UnsupportedBackend(backend.as_str().to_string()));
    }
    let role = spec
        .vault_role
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| defaults.role.clone())
        .ok_or_else(|| {
            Error::InvalidSpec("no vaultRole in the spec and no DEFAULT_VAULT_ROLE set".into())
        })?;
    let mount = spec
        .vault_mount_point
        .clone()
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| defaults.mount_point.clone());
    check_auth_name(&mount)
        .map_err(|why| Error::InvalidSpec(format!("vaultMountPoint {mount:?} {why}")))?;
    check_auth_name(&role)
        .map_err(|why| Error::InvalidSpec(format!("vaultRole {role:?} {why}")))?;
    let identity = AuthKey::own_service_account(mount, role);
    // 1 or 2: `kv_api_path` checks it (and names a wrong one) at the first key.
    let kv_version = spec.kv_version.unwrap_or(2);
    let kv_version = u8::try_from(kv_version)
        .map_err(|_| Error::InvalidSpec(format!("kvVersion must be 1 or 2, not {kv_version}")))?;
    let read_key = |key: &str, version: Option<String>| -> Result<ReadKey, Error> {
        let api_path = kv_api_path(key, kv_version, version.as_deref())
            .map_err(|e| Error::InvalidSpec(e.to_string()))?;
        check_read_path(&api_path)
            .map_err(|why| Error::InvalidSpec(format!("key {key}: {why}")))?;
        Ok(ReadKey {
            auth: identity.clone(),
            api_path,
            kv_version,
            part: KvPart::Data,
        })
    };

    let mut sources = Vec::new();
    for key in spec.data_from.iter().flatten() {
        sources.push(Source::All {
            keys: KeyRules::default(),
            read: read_key(key, None)?,
            key: key.clone(),
            property: None,
            dialect: Dialect::Kes { is_binary: false },
            optional: false,
        });
    }
    for item in spec.data_from_with_options.iter().flatten() {
        sources.push(Source::All {
            keys: KeyRules::default(),
            read: read_key(&item.key, None)?,
            key: item.key.clone(),
            property: None,
            dialect: Dialect::Kes {
                is_binary: item.is_binary.unwrap_or(false),
            },
            optional: false,
        });
    }
    for (i, item) in spec.data.iter().flatten().enumerate() {
        let (Some(key), Some(name)) = (&item.key, &item.name) else {
            return Err(Error::InvalidSpec(format!(
                "data[{i}] needs both key and name (path/recursive are not supported for vault)"
            )));
        };
        check_secret_key(name)
            .map_err(|why| Error::InvalidSpec(format!("data[{i}].name {why}")))?;
        let version = match &item.version {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => {
                return Err(Error::InvalidSpec(format!(
                    "data[{i}].version must be a number"
                )))
            }
        };
        sources.push(Source::One {
            read: read_key(key, version)?,
            key: key.clone(),
            name: name.clone(),
            property: item.property.clone().filter(|p| !p.is_empty()),
            dialect: Dialect::Kes {
                is_binary: item.is_binary.unwrap_or(false),
            },
            optional: false,
        });
    }
    if sources.is_empty() {
        return Err(Error::InvalidSpec(
            "nothing to sync: set data, dataFrom or dataFromWithOptions".into(),
        ));
    }

    let template = Template::parse(spec.template.as_ref())?;
    let mut literal_data = template.data;
    literal_data.extend(
        template
            .string_data
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes())),
    );
    let type_ = template
        .type_
        .or_else(|| spec.type_.clone().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "Opaque".into());
    let owner = crate::api::owner_of(es)?;
    Ok(SyncSpec {
        identity,
        sources,
        target: Target {
            name: es.name_any(),
            namespace: es.namespace().unwrap_or_default(),
            type_,
            labels: template.labels,
            annotations: template.annotations,
            literal_data,
            owner,
            managed_label: (MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into()),
            policy: WritePolicy::owner(),
            template: None,
        },
    })
}

/// KES's free-form `template`: type, metadata labels/annotations, base64 `data`, `stringData`.
#[derive(Default)]
struct Template {
    type_: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    data: BTreeMap<String, Vec<u8>>,
    string_data: BTreeMap<String, String>,
}

impl Template {
    fn parse(v: Option<&Value>) -> Result<Self, Error> {
        let Some(v) = v else {
            return Ok(Template::default());
        };
        let bad = |what: &str| Error::InvalidSpec(format!("template.{what}"));
        let strings = |v: Option<&Value>, what: &str| -> Result<BTreeMap<String, String>, Error> {
            match v {
                None | Some(Value::Null) => Ok(BTreeMap::new()),
                Some(Value::Object(m)) => m
                    .iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => Ok((k.clone(), s.clone())),
                        _ => Err(bad(&format!("{what}.{k} must be a string"))),
                    })
                    .collect(),
                Some(_) => Err(bad(&format!("{what} must be a map of strings"))),
            }
        };
        let meta = v.get("metadata");
        let labels = strings(meta.and_then(|m| m.get("labels")), "metadata.labels")?;
        let annotations = strings(
            meta.and_then(|m| m.get("annotations")),
            "metadata.annotations",
        )?;
        let string_data = strings(v.get("stringData"), "stringData")?;
        let mut data = BTreeMap::new();
        for (k, b64) in strings(v.get("data"), "data")? {
            check_secret_key(&k).map_err(|why| bad(&format!("data key {k:?} {why}")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|_| bad(&format!("data.{k} is not valid base64")))?;
            data.insert(k, bytes);
        }
        for k in string_data.keys() {
            check_secret_key(k).map_err(|why| bad(&format!("stringData key {k:?} {why}")))?;
        }
        // KES evaluated lodash templates (`<%= ... %>`) here; copying one literally would put a
        // broken value in the Secret, so refuse it instead.
        if data.values().any(|v| v.windows(2).any(|w| w == b"<%"))
            || string_data.values().any(|v| v.contains("<%"))
        {
            return Err(bad(
                "data/stringData use lodash template syntax (<% %>), which this controller does not evaluate",
            ));
        }
        let type_ = match v.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return Err(bad("type must be a non-empty string")),
        };
        Ok(Template {
            type_,
            labels,
            annotations,
            data,
            string_data,
        })
    }
}
