//! The `ExternalSecret` custom resource, `kubernetes-client.io/v1`, as kubernetes-external-secrets
//! (KES) defined it. `crds/` is generated from these types by the `crdgen` binary.
//!
//! Fields are deliberately lenient (options, int-or-string, free-form `template`): objects written
//! under KES's CRD are already in etcd, and one object our types could not decode would stall the
//! whole watch. Semantic checks happen in `translate`, per object, and end up in that object's status.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubernetes-client.io",
    version = "v1",
    kind = "ExternalSecret",
    namespaced,
    shortname = "es",
    status = "ExternalSecretStatus",
    printcolumn = r#"{"name":"Last Sync","type":"date","jsonPath":".status.lastSync"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    /// Which backend serves this object. This controller syncs `vault`; any other value gets an
    /// ERROR status (the other seven are accepted so KES manifests still apply).
    pub backend_type: Option<BackendType>,
    /// Only the controller whose `INSTANCE_ID` equals this value handles the object.
    pub controller_id: Option<String>,
    /// Deprecated alias of `template.type`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// Merged over the generated Secret: `type`, `metadata.labels`, `metadata.annotations`, `data`
    /// (base64 values) and `stringData` (plain values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub template: Option<Value>,
    /// Vault role for the Kubernetes auth login (default: `DEFAULT_VAULT_ROLE`).
    pub vault_role: Option<String>,
    /// Mount path of the Kubernetes auth method (default: `DEFAULT_VAULT_MOUNT_POINT`).
    pub vault_mount_point: Option<String>,
    /// KV secrets engine version, 1 or 2 (default 2).
    #[schemars(range(min = 1, max = 2))]
    pub kv_version: Option<i64>,
    /// Vault keys whose top-level fields are all copied into the Secret.
    pub data_from: Option<Vec<String>>,
    /// Like `dataFrom`, with options per key.
    pub data_from_with_options: Option<Vec<DataFromItem>>,
    /// One Secret key each, from a Vault key (and optionally a property of it).
    pub data: Option<Vec<DataItem>>,

    // Other backends' fields: accepted so KES manifests apply unchanged; unused here.
    pub role_arn: Option<String>,
    pub region: Option<String>,
    pub key_vault_name: Option<String>,
    pub project_id: Option<String>,
    pub key_by_name: Option<bool>,
}

/// KES's eight backends. Only `vault` is served by this controller.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum BackendType {
    SecretsManager,
    SystemManager,
    Vault,
    AzureKeyVault,
    GcpSecretsManager,
    AlicloudSecretsManager,
    IbmcloudSecretsManager,
    Akeyless,
}

impl BackendType {
    /// The manifest spelling, used in messages and in the KES `backend` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BackendType::SecretsManager => "secretsManager",
            BackendType::SystemManager => "systemManager",
            BackendType::Vault => "vault",
            BackendType::AzureKeyVault => "azureKeyVault",
            BackendType::GcpSecretsManager => "gcpSecretsManager",
            BackendType::AlicloudSecretsManager => "alicloudSecretsManager",
            BackendType::IbmcloudSecretsManager => "ibmcloudSecretsManager",
            BackendType::Akeyless => "akeyless",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataItem {
    /// Vault path, e.g. `secret/Rabbitmq` (KV v1) or `secret/data/app` / `secret/app` (KV v2).
    pub key: Option<String>,
    /// Key in the generated Secret.
    pub name: Option<String>,
    /// Field of the Vault secret; an exact top-level field wins, else a dotted path.
    pub property: Option<String>,
    /// Base64-decode the value before storing it.
    pub is_binary: Option<bool>,
    /// KV v2 version to read (latest when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "int_or_string")]
    pub version: Option<Value>,

    // Other backends' fields.
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub secret_type: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFromItem {
    pub key: String,
    pub is_binary: Option<bool>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// When the Secret was last confirmed in sync (RFC 3339).
    pub last_sync: Option<String>,
    /// `SUCCESS` or `ERROR, <message>`, as KES wrote it.
    pub status: Option<String>,
    pub observed_generation: Option<i64>,
    pub conditions: Option<Vec<Condition>>,
}

pub use crate::api::condition::Condition;

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true
    })
}

impl ExternalSecretSpec {
    /// Every Vault key the spec reads (`data[].key`, `dataFrom`, `dataFromWithOptions[].key`),
    /// as KES's namespace guard checks them.
    pub fn vault_keys(&self) -> impl Iterator<Item = &str> {
        let data = self.data.iter().flatten().filter_map(|d| d.key.as_deref());
        let from = self.data_from.iter().flatten().map(String::as_str);
        let with = self
            .data_from_with_options
            .iter()
            .flatten()
            .map(|d| d.key.as_str());
        from.chain(with).chain(data)
    }
}

impl ExternalSecret {
    /// The backend, `vault` when the manifest leaves it out.
    pub fn backend(&self) -> BackendType {
        self.spec.backend_type.unwrap_or(BackendType::Vault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    /// The seed walkthrough's manifest, verbatim.
    pub const SEED_MANIFEST: &str =
        include_str!("../../../tests/fixtures/seed-externalsecret.yaml");

    #[test]
    fn seed_manifest_deserializes() {
        let es: ExternalSecret = serde_yaml::from_str(SEED_MANIFEST).expect("seed manifest parses");
        assert_eq!(es.spec.backend_type, Some(BackendType::Vault));
        assert_eq!(es.spec.kv_version, Some(1));
        assert_eq!(es.spec.vault_mount_point.as_deref(), Some("kubernetes"));
        assert_eq!(es.spec.vault_role.as_deref(), Some("k8s-role"));
        let data = es.spec.data.expect("data");
        assert_eq!(data[0].name.as_deref(), Some("RABBITMQ_USERNAME"));
        assert_eq!(data[0].key.as_deref(), Some("secret/Rabbitmq"));
        assert_eq!(data[0].property.as_deref(), Some("username"));
    }

    #[test]
    fn crd_identity_matches_kes() {
        let crd = ExternalSecret::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("externalsecrets.kubernetes-client.io")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["es".to_string()]));
        let v = &crd.spec.versions[0];
        assert!(v
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some());
    }

    #[test]
    fn other_backends_fields_deserialize() {
        let es: ExternalSecret = serde_yaml::from_str(
            r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: aws, namespace: default}
spec:
  backendType: secretsManager
  roleArn: arn:aws:iam::123:role/x
  region: eu-west-1
  data:
    - key: a/b
      name: x
      version: "3"
      versionStage: AWSCURRENT
"#,
        )
        .expect("parses");
        assert_eq!(es.backend(), BackendType::SecretsManager);
    }
}
