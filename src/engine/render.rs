//! Pure: a `SyncSpec` and the Vault data read for it → the Secret we want. No IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::vault::{ReadKey, SecretData};

use super::eso_values as eso;
use super::{Creation, Dialect, Source, SyncSpec, Target, WritePolicy};

/// The label on every Secret we write for a KES object; that API's metadata-only Secret watch
/// selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "vault-external-secrets";

/// Secret types whose creation makes another controller mint a credential into the Secret
/// (kube-controller-manager fills a service-account token for the named ServiceAccount): a
/// tenant must not obtain one through us.
const REFUSED_TYPES: [&str; 1] = ["kubernetes.io/service-account-token"];

/// The Secret we want, before it meets the one in the cluster.
#[derive(Clone, PartialEq)]
pub struct DesiredSecret {
    pub name: String,
    pub namespace: String,
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub data: BTreeMap<String, ByteString>,
    pub owner: OwnerReference,
    pub policy: WritePolicy,
}

impl std::fmt::Debug for DesiredSecret {
    // Redacted: keys only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredSecret")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("type", &self.type_)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DesiredSecret {
    /// A digest of everything we write, to skip unchanged polls without asking the apiserver.
    /// Kept in memory only.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut field = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        field(self.type_.as_bytes());
        for m in [&self.labels, &self.annotations] {
            field(&(m.len() as u64).to_le_bytes());
            for (k, v) in m {
                field(k.as_bytes());
                field(v.as_bytes());
            }
        }
        for (k, v) in &self.data {
            field(k.as_bytes());
            field(&v.0);
        }
        field(self.owner.uid.as_bytes());
        field(&[self.policy.creation as u8, u8::from(self.policy.immutable)]);
        h.finalize().into()
    }

    pub fn to_secret(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                owner_references: (self.policy.creation == Creation::Owner)
                    .then(|| vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some(self.type_.clone()),
            data: Some(self.data.clone()),
            immutable: self.policy.immutable.then_some(true),
            ..Default::default()
        }
    }
}

/// What no front-end may ask for, checked before anything is read.
pub fn check_target(target: &Target) -> Result<(), Error> {
    if REFUSED_TYPES.contains(&target.type_.as_str()) {
        return Err(Error::InvalidSpec(format!(
            "Secret type {} is refused: it makes kube-controller-manager put a ServiceAccount's token into the Secret",
            target.type_
        )));
    }
    Ok(())
}

pub fn render(
    spec: &SyncSpec,
    fetched: &BTreeMap<ReadKey, Arc<SecretData>>,
) -> Result<DesiredSecret, Error> {
    let target = &spec.target;
    check_target(target)?;
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    for source in &spec.sources {
        let Some(secret) = fetched.get(source.read()) else {
            if source.optional() {
                // Missing in Vault, and the front-end said that adds nothing.
                continue;
            }
            // `fetch_and_render` reads every planned key first; this is a bug if hit.
            return Err(Error::InvalidValue(format!(
                "no data read for {}",
                source.key()
            )));
        };
        match source {
            Source::All {
                key,
                property,
                dialect,
                keys,
                ..
            } => {
                let object = match property {
                    None => std::borrow::Cow::Borrowed(&secret.0),
                    Some(p) => std::borrow::Cow::Owned(nested_object(&secret.0, p, key)?),
                };
                let renamed = keys
                    .apply(object.iter().map(|(f, v)| (f.clone(), v)).collect())
                    .map_err(|why| Error::InvalidValue(format!("fields of {key}: {why}")))?;
                for (field, value) in renamed {
                    let bytes = to_bytes(value, *dialect).map_err(|why| {
                        Error::InvalidValue(format!("{key} field {field}: {why}"))
                    })?;
                    data.insert(field, ByteString(bytes));
                }
            }
            Source::Find(f) => {
                // `fetch_and_render` expands finds first; this is a bug if hit.
                return Err(Error::InvalidValue(format!("{} was not expanded", f.at)));
            }
            Source::One {
                key,
                name,
                property,
                dialect,
                ..
            } => {
                let bytes = match (property, dialect) {
                    (None, _) => to_bytes(&Value::Object(secret.0.clone()), *dialect),
                    (Some(p), Dialect::Kes { .. }) => {
                        let value = select_property(&secret.0, p).ok_or_else(|| {
                            Error::PropertyNotFound {
                                property: p.clone(),
                                key: key.clone(),
                            }
                        })?;
                        to_bytes(value, *dialect)
                    }
                    (Some(p), Dialect::Eso { decoding }) => {
                        let raw =
                            eso::select(&secret.0, p).ok_or_else(|| Error::PropertyNotFound {
                                property: p.clone(),
                                key: key.clone(),
                            })?;
                        eso::decode(raw, *decoding)
                    }
                }
                .map_err(|why| Error::InvalidValue(format!("{key} for {name}: {why}")))?;
                data.insert(name.clone(), ByteString(bytes));
            }
        }
    }
    for (k, v) in &target.literal_data {
        data.insert(k.clone(), ByteString(v.clone()));
    }
    let mut labels = target.labels.clone();
    let mut annotations = target.annotations.clone();
    if let Some(template) = &target.template {
        let fetched = data.into_iter().map(|(k, v)| (k, v.0)).collect();
        let templated = super::templating::apply(template, &fetched)?;
        for k in templated.data.keys() {
            check_secret_key(k)
                .map_err(|why| Error::Template(format!("template key {k:?} {why}")))?;
        }
        data = templated
            .data
            .into_iter()
            .map(|(k, v)| (k, ByteString(v)))
            .collect();
        labels.extend(templated.labels);
        annotations.extend(templated.annotations);
    }
    labels.insert(
        target.managed_label.0.clone(),
        target.managed_label.1.clone(),
    );
    Ok(DesiredSecret {
        name: target.name.clone(),
        namespace: target.namespace.clone(),
        type_: target.type_.clone(),
        labels,
        annotations,
        data,
        owner: target.owner.clone(),
        policy: target.policy.clone(),
    })
}

/// ESO `dataFrom.extract` with a property: the fields of the object found there.
fn nested_object(
    obj: &serde_json::Map<String, Value>,
    property: &str,
    key: &str,
) -> Result<serde_json::Map<String, Value>, Error> {
    let raw = eso::select(obj, property).ok_or_else(|| Error::PropertyNotFound {
        property: property.to_string(),
        key: key.to_string(),
    })?;
    match serde_json::from_slice::<Value>(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        // Not the parser's message: it would quote the value.
        _ => Err(Error::InvalidValue(format!(
            "property {property:?} of {key} is not a JSON object, so it cannot be extracted"
        ))),
    }
}

/// `property`: an exact top-level field wins; otherwise a dotted path into nested objects
/// (numeric segments index arrays, as lodash's `get` does).
pub fn select_property<'a>(
    obj: &'a serde_json::Map<String, Value>,
    property: &str,
) -> Option<&'a Value> {
    if let Some(v) = obj.get(property) {
        return Some(v);
    }
    let mut parts = property.split('.');
    let mut cur = obj.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Value::Object(m) => m.get(part)?,
            Value::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// One value as Secret bytes, in the front-end's dialect.
fn to_bytes(value: &Value, dialect: Dialect) -> Result<Vec<u8>, String> {
    match dialect {
        Dialect::Kes { is_binary } => {
            // Strings as they are; anything else JSON-encoded.
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if is_binary {
                base64::engine::general_purpose::STANDARD
                    .decode(text.trim())
                    // Not the decoder's message: it names the offending character and its offset.
                    .map_err(|_| "isBinary is set but the value is not valid base64".to_string())
            } else {
                Ok(text.into_bytes())
            }
        }
        Dialect::Eso { decoding } => eso::decode(eso::value_bytes(value), decoding),
    }
}

/// Secret data keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
pub fn check_secret_key(k: &str) -> Result<(), &'static str> {
    if k.is_empty() || k.len() > 253 {
        return Err("must be 1 to 253 characters");
    }
    if !k
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::AuthKey;
    use serde_json::json;

    fn read(path: &str) -> ReadKey {
        ReadKey {
            auth: AuthKey::own_service_account("kubernetes", "r"),
            api_path: path.into(),
            kv_version: 2,
            part: Default::default(),
        }
    }

    fn spec(sources: Vec<Source>, type_: &str) -> SyncSpec {
        SyncSpec {
            identity: read("x").auth,
            sources,
            target: Target {
                name: "app".into(),
                namespace: "team".into(),
                type_: type_.into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                literal_data: [("lit".to_string(), b"literal".to_vec())].into(),
                owner: OwnerReference {
                    uid: "uid-1".into(),
                    controller: Some(true),
                    ..Default::default()
                },
                managed_label: (MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into()),
                policy: WritePolicy::owner(),
                template: None,
            },
        }
    }

    fn fetched(path: &str, v: Value) -> BTreeMap<ReadKey, Arc<SecretData>> {
        [(
            read(path),
            Arc::new(SecretData(v.as_object().unwrap().clone())),
        )]
        .into()
    }

    #[test]
    fn sources_then_literals_and_our_label() {
        let s = spec(
            vec![Source::One {
                read: read("kv/data/a"),
                key: "kv/a".into(),
                name: "lit".into(),
                property: Some("p".into()),
                dialect: Dialect::Kes { is_binary: false },
                optional: false,
            }],
            "Opaque",
        );
        let d = render(&s, &fetched("kv/data/a", json!({"p": "vault"}))).unwrap();
        assert_eq!(d.data["lit"].0, b"literal", "literal data wins");
        assert_eq!(d.labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(d.owner.uid, "uid-1");
    }

    #[test]
    fn service_account_token_type_is_refused() {
        let s = spec(vec![], "kubernetes.io/service-account-token");
        assert_eq!(
            render(&s, &BTreeMap::new()).unwrap_err().reason(),
            "InvalidSpec"
        );
    }

    #[test]
    fn property_selection_table() {
        let obj = json!({"a.b": "exact", "a": {"b": "nested", "deep": {"x": [1, {"y": "arr"}]}}});
        let obj = obj.as_object().unwrap();
        let cases: &[(&str, Option<Value>)] = &[
            ("a.b", Some(json!("exact"))),
            ("a.deep.x.1.y", Some(json!("arr"))),
            ("a.deep.x.9", None),
            ("a.b.c", None),
            ("", None),
        ];
        for (prop, want) in cases {
            assert_eq!(select_property(obj, prop).cloned(), *want, "{prop}");
        }
    }

    #[test]
    fn fingerprint_tracks_content() {
        let s = spec(vec![], "Opaque");
        let d = render(&s, &BTreeMap::new()).unwrap();
        let mut e = d.clone();
        assert_eq!(d.fingerprint(), e.fingerprint());
        e.data.insert("v".into(), ByteString(b"other".to_vec()));
        assert_ne!(d.fingerprint(), e.fingerprint());
        let mut l = d.clone();
        l.labels.insert("x".into(), "y".into());
        assert_ne!(d.fingerprint(), l.fingerprint());
        assert!(!format!("{d:?}").contains("literal"), "Debug is redacted");
    }
}
