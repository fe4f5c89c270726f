//! Pure mapping, no IO: ExternalSecret → which Vault reads (`plan`), ExternalSecret + Vault data
//! → desired Secret (`render`), desired + existing Secret → what to write (`decide_write`).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::{BackendType, ExternalSecret, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::error::Error;
use crate::vault::{check_read_path, kv_api_path, AuthKey, ReadKey, SecretData, VaultError};

/// Secret types whose creation makes another controller mint a credential into the Secret
/// (kube-controller-manager fills a service-account token for the named ServiceAccount): a
/// tenant must not obtain one through us.
const REFUSED_TYPES: [&str; 1] = ["kubernetes.io/service-account-token"];

/// Auth defaults from the environment (`DEFAULT_VAULT_MOUNT_POINT`, `DEFAULT_VAULT_ROLE`).
#[derive(Clone, Debug)]
pub struct Defaults {
    pub mount_point: String,
    pub role: Option<String>,
}

/// Where one piece of the Secret comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// All top-level fields of a Vault secret (`dataFrom`, `dataFromWithOptions`).
    All {
        read: ReadKey,
        key: String,
        is_binary: bool,
    },
    /// One Secret key (`data[]`).
    One {
        read: ReadKey,
        key: String,
        name: String,
        property: Option<String>,
        is_binary: bool,
    },
}

impl Source {
    pub fn read(&self) -> &ReadKey {
        match self {
            Source::All { read, .. } | Source::One { read, .. } => read,
        }
    }
    pub fn key(&self) -> &str {
        match self {
            Source::All { key, .. } | Source::One { key, .. } => key,
        }
    }
}

/// The Vault reads one sync needs, in merge order (dataFrom, dataFromWithOptions, data).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub auth: AuthKey,
    pub sources: Vec<Source>,
}

impl Plan {
    pub fn reads(&self) -> impl Iterator<Item = ReadKey> + '_ {
        self.sources.iter().map(|s| s.read().clone())
    }
}

pub fn plan(es: &ExternalSecret, defaults: &Defaults) -> Result<Plan, Error> {
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
    let auth = AuthKey { mount, role };
    let kv_version = match spec.kv_version.unwrap_or(2) {
        1 => 1u8,
        2 => 2u8,
        other => {
            return Err(Error::InvalidSpec(format!(
                "kvVersion must be 1 or 2, not {other}"
            )))
        }
    };
    let read_key = |key: &str, version: Option<String>| -> Result<ReadKey, Error> {
        let api_path = kv_api_path(key, kv_version, version.as_deref())
            .map_err(|e: VaultError| Error::InvalidSpec(e.to_string()))?;
        check_read_path(&api_path)
            .map_err(|why| Error::InvalidSpec(format!("key {key}: {why}")))?;
        Ok(ReadKey {
            auth: auth.clone(),
            api_path,
            kv_version,
        })
    };

    let mut sources = Vec::new();
    for key in spec.data_from.iter().flatten() {
        sources.push(Source::All {
            read: read_key(key, None)?,
            key: key.clone(),
            is_binary: false,
        });
    }
    for item in spec.data_from_with_options.iter().flatten() {
        sources.push(Source::All {
            read: read_key(&item.key, None)?,
            key: item.key.clone(),
            is_binary: item.is_binary.unwrap_or(false),
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
            is_binary: item.is_binary.unwrap_or(false),
        });
    }
    if sources.is_empty() {
        return Err(Error::InvalidSpec(
            "nothing to sync: set data, dataFrom or dataFromWithOptions".into(),
        ));
    }
    Ok(Plan { auth, sources })
}

/// Auth mount paths and role names end up in a URL path (`auth/<mount>/login`): segments of
/// `[A-Za-z0-9._@-]`, no empty, `.` or `..` segment (`../token` would reach `token/login`).
fn check_auth_name(name: &str) -> Result<(), &'static str> {
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
        h.finalize().into()
    }

    pub fn to_secret(&self) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels.clone()),
                annotations: (!self.annotations.is_empty()).then(|| self.annotations.clone()),
                owner_references: Some(vec![self.owner.clone()]),
                ..Default::default()
            },
            type_: Some(self.type_.clone()),
            data: Some(self.data.clone()),
            ..Default::default()
        }
    }
}

pub fn render(
    es: &ExternalSecret,
    plan: &Plan,
    fetched: &BTreeMap<ReadKey, Arc<SecretData>>,
) -> Result<DesiredSecret, Error> {
    let name = es.name_any();
    let namespace = es.namespace().unwrap_or_default();
    let template = Template::parse(es.spec.template.as_ref())?;

    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    for source in &plan.sources {
        let secret = fetched.get(source.read()).ok_or_else(|| {
            // The controller reads every planned key before rendering; this is a bug if hit.
            Error::InvalidValue(format!("no data read for {}", source.key()))
        })?;
        match source {
            Source::All { key, is_binary, .. } => {
                for (field, value) in &secret.0 {
                    check_secret_key(field).map_err(|why| {
                        Error::InvalidValue(format!("field {field:?} of {key} {why}"))
                    })?;
                    let bytes = to_bytes(value, *is_binary).map_err(|why| {
                        Error::InvalidValue(format!("{key} field {field}: {why}"))
                    })?;
                    data.insert(field.clone(), ByteString(bytes));
                }
            }
            Source::One {
                key,
                name,
                property,
                is_binary,
                ..
            } => {
                let value = match property {
                    None => Value::Object(secret.0.clone()),
                    Some(p) => select_property(&secret.0, p).cloned().ok_or_else(|| {
                        Error::PropertyNotFound {
                            property: p.clone(),
                            key: key.clone(),
                        }
                    })?,
                };
                let bytes = to_bytes(&value, *is_binary)
                    .map_err(|why| Error::InvalidValue(format!("{key} for {name}: {why}")))?;
                data.insert(name.clone(), ByteString(bytes));
            }
        }
    }
    for (k, v) in template.data {
        data.insert(k, ByteString(v));
    }
    for (k, v) in template.string_data {
        data.insert(k, ByteString(v.into_bytes()));
    }

    let mut labels = template.labels;
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY_VALUE.into());
    let type_ = template
        .type_
        .or_else(|| es.spec.type_.clone().filter(|t| !t.is_empty()))
        .unwrap_or_else(|| "Opaque".into());
    if REFUSED_TYPES.contains(&type_.as_str()) {
        return Err(Error::InvalidSpec(format!(
            "Secret type {type_} is refused: it makes kube-controller-manager put a ServiceAccount's token into the Secret"
        )));
    }
    let owner = es
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("the ExternalSecret has no uid yet".into()))?;
    Ok(DesiredSecret {
        name,
        namespace,
        type_,
        labels,
        annotations: template.annotations,
        data,
        owner,
    })
}

/// KES's `property`: an exact top-level field wins; otherwise a dotted path into nested objects
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

/// Strings as they are; anything else JSON-encoded (KES). `is_binary` base64-decodes the string.
fn to_bytes(value: &Value, is_binary: bool) -> Result<Vec<u8>, String> {
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

/// Secret data keys: `[-._a-zA-Z0-9]+`, at most 253 characters.
fn check_secret_key(k: &str) -> Result<(), &'static str> {
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

/// What the controller must do to make the cluster match `desired`.
#[derive(Debug, PartialEq)]
pub enum WriteDecision {
    Create(Secret),
    /// Replace (PUT) of the existing Secret; `metadata.resourceVersion` is the one read, so a
    /// concurrent edit makes the write fail rather than be lost.
    Update(Secret),
    Unchanged,
}

/// Compares `desired` with the Secret in the cluster. Labels and annotations others added are
/// kept; the data is ours alone (a key removed in Vault disappears from the Secret).
pub fn decide_write(
    desired: &DesiredSecret,
    existing: Option<&Secret>,
) -> Result<WriteDecision, Error> {
    let Some(existing) = existing else {
        return Ok(WriteDecision::Create(desired.to_secret()));
    };
    let owned = existing
        .owner_references()
        .iter()
        .any(|o| o.uid == desired.owner.uid && o.controller == Some(true));
    if !owned {
        return Err(Error::SecretNotOwned(desired.name.clone()));
    }
    let existing_type = existing.type_.clone().unwrap_or_else(|| "Opaque".into());
    if existing_type != desired.type_ {
        return Err(Error::SecretTypeImmutable {
            name: desired.name.clone(),
            existing: existing_type,
            desired: desired.type_.clone(),
        });
    }
    let mut next = existing.clone();
    let labels = next.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(desired.labels.clone());
    if !desired.annotations.is_empty() {
        let annotations = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.extend(desired.annotations.clone());
    }
    next.data = Some(desired.data.clone());
    // Kubernetes folds stringData into data on write; a Secret read back has none.
    next.string_data = None;
    let same_data = existing.data.clone().unwrap_or_default() == desired.data;
    if same_data
        && next.metadata.labels == existing.metadata.labels
        && next.metadata.annotations == existing.metadata.annotations
    {
        return Ok(WriteDecision::Unchanged);
    }
    next.metadata.managed_fields = None;
    Ok(WriteDecision::Update(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ExternalSecretSpec;
    use serde_json::json;

    fn es(spec: Value) -> ExternalSecret {
        let spec: ExternalSecretSpec = serde_json::from_value(spec).unwrap();
        let mut es = ExternalSecret::new("app", spec);
        es.metadata.namespace = Some("team".into());
        es.metadata.uid = Some("uid-1".into());
        es
    }

    fn defaults() -> Defaults {
        Defaults {
            mount_point: "kubernetes".into(),
            role: Some("default-role".into()),
        }
    }

    /// Fetches from a fixture: Vault path → object.
    fn fetched(plan: &Plan, vault: &Value) -> BTreeMap<ReadKey, Arc<SecretData>> {
        plan.reads()
            .map(|r| {
                let obj = vault[r.api_path.as_str()].as_object().unwrap().clone();
                (r, Arc::new(SecretData(obj)))
            })
            .collect()
    }

    fn run(spec: Value, vault: Value) -> Result<DesiredSecret, Error> {
        let es = es(spec);
        let plan = plan(&es, &defaults())?;
        render(&es, &plan, &fetched(&plan, &vault))
    }

    fn s(d: &DesiredSecret, k: &str) -> String {
        String::from_utf8(d.data[k].0.clone()).unwrap()
    }

    #[test]
    fn seed_example_kv1_property() {
        let d = run(
            json!({"kvVersion": 1, "backendType": "vault", "vaultMountPoint": "kubernetes",
                   "vaultRole": "k8s-role",
                   "data": [{"name": "RABBITMQ_USERNAME", "key": "secret/Rabbitmq", "property": "username"}]}),
            json!({"secret/Rabbitmq": {"username": "rabbit", "password": "p"}}),
        )
        .unwrap();
        assert_eq!(d.name, "app");
        assert_eq!(d.namespace, "team");
        assert_eq!(d.type_, "Opaque");
        assert_eq!(d.data.len(), 1);
        assert_eq!(s(&d, "RABBITMQ_USERNAME"), "rabbit");
        assert_eq!(d.owner.uid, "uid-1");
        assert_eq!(d.owner.controller, Some(true));
        assert_eq!(d.owner.kind, "ExternalSecret");
        assert_eq!(d.labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    }

    #[test]
    fn property_selection_table() {
        let vault = json!({"kv/data/app": {
            "a.b": "exact", "a": {"b": "nested", "n": 5, "deep": {"x": [1, {"y": "arr"}]}},
            "num": 42, "flag": true, "obj": {"k": "v"}}});
        let cases: &[(&str, &str)] = &[
            ("a.b", "exact"),
            ("a.n", "5"),
            ("a.deep.x.1.y", "arr"),
            ("num", "42"),
            ("flag", "true"),
            ("obj", r#"{"k":"v"}"#),
        ];
        for (prop, want) in cases {
            let d = run(
                json!({"data": [{"name": "v", "key": "kv/app", "property": prop}]}),
                vault.clone(),
            )
            .unwrap();
            assert_eq!(s(&d, "v"), *want, "property {prop}");
        }
        // No property: the whole object as JSON.
        let d = run(
            json!({"data": [{"name": "v", "key": "kv/app"}]}),
            json!({"kv/data/app": {"u": "x", "p": 1}}),
        )
        .unwrap();
        let whole: Value = serde_json::from_slice(&d.data["v"].0).unwrap();
        assert_eq!(whole, json!({"u": "x", "p": 1}));
    }

    #[test]
    fn missing_property_uses_kes_wording() {
        let e = run(
            json!({"data": [{"name": "v", "key": "kv/app", "property": "nope.x"}]}),
            json!({"kv/data/app": {"u": "x"}}),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "Could not find property nope.x in kv/app");
        assert_eq!(e.reason(), "PropertyNotFound");
    }

    #[test]
    fn merge_order_and_binary() {
        let d = run(
            json!({"dataFrom": ["kv/base"],
                   "dataFromWithOptions": [{"key": "kv/bin", "isBinary": true}],
                   "data": [{"name": "shared", "key": "kv/app", "property": "p"},
                            {"name": "blob", "key": "kv/app", "property": "b64", "isBinary": true}]}),
            json!({"kv/data/base": {"shared": "from-base", "only-base": "1", "o": {"x": 1}},
                   "kv/data/bin": {"only-bin": "aGVsbG8=", "shared": "Ymlu"},
                   "kv/data/app": {"p": "from-data", "b64": "AAEC"}}),
        )
        .unwrap();
        assert_eq!(s(&d, "shared"), "from-data");
        assert_eq!(s(&d, "only-base"), "1");
        assert_eq!(s(&d, "o"), r#"{"x":1}"#);
        assert_eq!(s(&d, "only-bin"), "hello");
        assert_eq!(d.data["blob"].0, vec![0u8, 1, 2]);
    }

    #[test]
    fn template_applies_type_metadata_and_data() {
        let d = run(
            json!({"type": "ignored-when-template-has-type",
                   "template": {"type": "kubernetes.io/dockerconfigjson",
                                "metadata": {"labels": {"team": "a", MANAGED_BY_LABEL: "someone"},
                                             "annotations": {"note": "x"}},
                                "data": {"extra": "ZXh0cmE="},
                                "stringData": {"plain": "text", "v": "override"}},
                   "data": [{"name": "v", "key": "kv/app", "property": "p"}]}),
            json!({"kv/data/app": {"p": "vault"}}),
        )
        .unwrap();
        assert_eq!(d.type_, "kubernetes.io/dockerconfigjson");
        assert_eq!(d.labels["team"], "a");
        assert_eq!(d.labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
        assert_eq!(d.annotations["note"], "x");
        assert_eq!(s(&d, "extra"), "extra");
        assert_eq!(s(&d, "plain"), "text");
        assert_eq!(s(&d, "v"), "override");

        let d = run(
            json!({"type": "kubernetes.io/tls", "data": [{"name": "v", "key": "kv/app", "property": "p"}]}),
            json!({"kv/data/app": {"p": "vault"}}),
        )
        .unwrap();
        assert_eq!(d.type_, "kubernetes.io/tls");
    }

    #[test]
    fn invalid_specs() {
        let cases: &[(Value, &str)] = &[
            (
                json!({"backendType": "secretsManager", "data": [{"name": "a", "key": "x/y"}]}),
                "UnsupportedBackend",
            ),
            (json!({}), "InvalidSpec"),
            (json!({"data": [{"name": "a"}]}), "InvalidSpec"),
            (
                json!({"data": [{"name": "bad name", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"kvVersion": 3, "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (json!({"data": [{"name": "a", "key": "kv"}]}), "InvalidSpec"),
            (
                json!({"template": {"stringData": {"a": "<%= data.x %>"}}, "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"template": {"data": {"a": "!!!"}}, "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"template": {"metadata": {"labels": {"a": 1}}}, "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            // Hostile tenants: the controller's own token, system paths, path tricks, minted
            // credentials.
            (
                json!({"kvVersion": 1, "dataFrom": ["auth/token/lookup-self"]}),
                "InvalidSpec",
            ),
            (
                json!({"kvVersion": 1, "dataFrom": ["sys/internal/ui/resultant-acl"]}),
                "InvalidSpec",
            ),
            (
                json!({"kvVersion": 1, "data": [{"name": "a", "key": "cubbyhole/x"}]}),
                "InvalidSpec",
            ),
            (
                json!({"kvVersion": 1, "data": [{"name": "a", "key": "/identity/entity/id"}]}),
                "InvalidSpec",
            ),
            (
                json!({"vaultMountPoint": "../token", "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"vaultMountPoint": "kubernetes/./x", "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"vaultRole": "r/../../x", "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"vaultRole": "r?x=1", "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"template": {"type": "kubernetes.io/service-account-token",
                       "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}},
                       "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
            (
                json!({"type": "kubernetes.io/service-account-token", "data": [{"name": "a", "key": "kv/a"}]}),
                "InvalidSpec",
            ),
        ];
        for (spec, reason) in cases {
            let r = run(spec.clone(), json!({"kv/data/a": {"x": "1"}}));
            assert_eq!(r.unwrap_err().reason(), *reason, "{spec}");
        }
        let no_role = es(json!({"data": [{"name": "a", "key": "kv/a"}]}));
        let d = Defaults {
            mount_point: "k".into(),
            role: None,
        };
        assert!(plan(&no_role, &d)
            .unwrap_err()
            .to_string()
            .contains("DEFAULT_VAULT_ROLE"));
    }

    #[test]
    fn nested_mounts_and_roles_with_dots_are_fine() {
        let p = plan(
            &es(
                json!({"vaultMountPoint": "team-a/k8s", "vaultRole": "app.reader@x",
                       "data": [{"name": "a", "key": "kv/a"}]}),
            ),
            &defaults(),
        )
        .unwrap();
        assert_eq!(p.auth.mount, "team-a/k8s");
    }

    #[test]
    fn plan_uses_defaults_and_versions() {
        let p = plan(
            &es(json!({"data": [{"name": "a", "key": "kv/a", "version": 3},
                                {"name": "b", "key": "kv/data/a", "version": "4"}]})),
            &defaults(),
        )
        .unwrap();
        assert_eq!(
            p.auth,
            AuthKey {
                mount: "kubernetes".into(),
                role: "default-role".into()
            }
        );
        let paths: Vec<String> = p.reads().map(|r| r.api_path).collect();
        assert_eq!(paths, vec!["kv/data/a?version=3", "kv/data/a?version=4"]);
    }

    #[test]
    fn bad_values_are_errors_without_the_value() {
        let e = run(
            json!({"data": [{"name": "a", "key": "kv/a", "property": "p", "isBinary": true}]}),
            json!({"kv/data/a": {"p": "not base64 planted-SECRET"}}),
        )
        .unwrap_err();
        assert_eq!(e.reason(), "InvalidValue");
        assert!(!e.to_string().contains("planted-SECRET"));
        // No character or offset of the value either (the decoder's own message has both).
        for v in ["abc-def", "QUJD\u{e9}", "QQ=x"] {
            let e = run(
                json!({"data": [{"name": "a", "key": "kv/a", "property": "p", "isBinary": true}]}),
                json!({"kv/data/a": {"p": v}}),
            )
            .unwrap_err()
            .to_string();
            assert!(!e.contains("symbol") && !e.contains("offset"), "{e}");
            let without_name = e.replace("base64", "");
            assert!(!without_name.chars().any(|c| c.is_ascii_digit()), "{e}");
        }
        let e = run(
            json!({"dataFrom": ["kv/a"]}),
            json!({"kv/data/a": {"bad key!": "planted-SECRET"}}),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("planted-SECRET"));
    }

    fn desired() -> DesiredSecret {
        run(
            json!({"template": {"metadata": {"annotations": {"a": "1"}}},
                   "data": [{"name": "v", "key": "kv/app", "property": "p"}]}),
            json!({"kv/data/app": {"p": "value"}}),
        )
        .unwrap()
    }

    #[test]
    fn write_decisions() {
        let d = desired();
        assert!(matches!(
            decide_write(&d, None).unwrap(),
            WriteDecision::Create(_)
        ));

        // Ours, identical, with someone else's label: nothing to do.
        let mut same = d.to_secret();
        same.metadata.resource_version = Some("7".into());
        same.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("argocd".into(), "x".into());
        assert_eq!(
            decide_write(&d, Some(&same)).unwrap(),
            WriteDecision::Unchanged
        );

        // Value changed in Vault: update, keep the foreign label, keep resourceVersion.
        let mut changed = d.clone();
        changed.data.insert("v".into(), ByteString(b"new".to_vec()));
        match decide_write(&changed, Some(&same)).unwrap() {
            WriteDecision::Update(s) => {
                assert_eq!(s.data.unwrap()["v"].0, b"new");
                assert_eq!(s.metadata.labels.unwrap()["argocd"], "x");
                assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
            }
            other => panic!("{other:?}"),
        }

        // A stray data key someone added: removed (the data is ours).
        let mut stray = same.clone();
        stray
            .data
            .as_mut()
            .unwrap()
            .insert("stray".into(), ByteString(b"x".to_vec()));
        assert!(matches!(
            decide_write(&d, Some(&stray)).unwrap(),
            WriteDecision::Update(_)
        ));

        // Our label removed by someone: put back.
        let mut unlabeled = same.clone();
        unlabeled.metadata.labels = None;
        assert!(matches!(
            decide_write(&d, Some(&unlabeled)).unwrap(),
            WriteDecision::Update(_)
        ));
    }

    #[test]
    fn foreign_secrets_are_not_touched() {
        let d = desired();
        let mut foreign = d.to_secret();
        foreign.metadata.owner_references = None;
        assert_eq!(
            decide_write(&d, Some(&foreign)).unwrap_err().reason(),
            "SecretNotOwned"
        );
        let mut other_owner = d.to_secret();
        other_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        assert_eq!(
            decide_write(&d, Some(&other_owner)).unwrap_err().reason(),
            "SecretNotOwned"
        );
        let mut typed = d.to_secret();
        typed.type_ = Some("kubernetes.io/tls".into());
        assert_eq!(
            decide_write(&d, Some(&typed)).unwrap_err().reason(),
            "SecretTypeImmutable"
        );
    }

    #[test]
    fn fingerprint_tracks_content() {
        let d = desired();
        let mut e = d.clone();
        assert_eq!(d.fingerprint(), e.fingerprint());
        e.data.insert("v".into(), ByteString(b"other".to_vec()));
        assert_ne!(d.fingerprint(), e.fingerprint());
        let mut l = d.clone();
        l.labels.insert("x".into(), "y".into());
        assert_ne!(d.fingerprint(), l.fingerprint());
    }

    #[test]
    fn desired_debug_is_redacted() {
        let d = desired();
        let s = format!("{d:?}");
        assert!(s.contains("\"v\""));
        assert!(!s.contains("value"));
    }
}
