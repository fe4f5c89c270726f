//! ESO's `external-secrets.io/v1` ExternalSecret, the fields the Vault provider uses typed and
//! the rest (templates, `find`, `rewrite`, generators) kept as they are, so every ESO manifest
//! applies and one we cannot serve gets a clear status instead of a decode error that would
//! stall the watch. `crds/` is generated from these types by `crdgen` (v1 stored, v1beta1 served
//! with the same schema, as ESO does).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const GROUP: &str = "external-secrets.io";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ExternalSecret",
    namespaced,
    shortname = "es",
    category = "external-secrets",
    status = "ExternalSecretStatus",
    printcolumn = r#"{"name":"StoreType","type":"string","jsonPath":".spec.secretStoreRef.kind"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshInterval"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    pub secret_store_ref: Option<StoreRef>,
    pub target: Option<Target>,
    /// Go duration (`1h`, `15m30s`); `0` syncs once. Default `1h`.
    pub refresh_interval: Option<String>,
    /// `Periodic` (default), `OnChange`, `CreatedOnce`.
    pub refresh_policy: Option<String>,
    pub data: Option<Vec<DataItem>>,
    pub data_from: Option<Vec<DataFromItem>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRef {
    pub name: Option<String>,
    /// `SecretStore` (default) or `ClusterSecretStore`.
    pub kind: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Default: the ExternalSecret's name.
    pub name: Option<String>,
    /// `Owner` (default), `Orphan`, `Merge`, `None`.
    pub creation_policy: Option<String>,
    /// `Retain` (default), `Delete`, `Merge`.
    pub deletion_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub template: Option<Value>,
    pub immutable: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataItem {
    pub secret_key: String,
    pub remote_ref: RemoteRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub source_ref: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    pub key: String,
    pub property: Option<String>,
    pub version: Option<String>,
    /// `None` (default), `Fetch`.
    pub metadata_policy: Option<String>,
    /// `Default` (default), `Unicode`.
    pub conversion_strategy: Option<String>,
    /// `None` (default), `Base64`, `Base64URL`, `Auto`.
    pub decoding_strategy: Option<String>,
    /// Not used by the Vault provider.
    pub null_bytes_policy: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFromItem {
    pub extract: Option<RemoteRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub find: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_array")]
    pub rewrite: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub source_ref: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    pub refresh_time: Option<String>,
    /// `<generation>-<hash of labels and annotations>`, as ESO writes it.
    pub synced_resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub binding: Option<Binding>,
}

pub use crate::api::condition::Condition;

impl ExternalSecretSpec {
    /// `target`, defaulted.
    pub fn target(&self) -> Target {
        self.target.clone().unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct Binding {
    pub name: Option<String>,
}

pub(super) fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

fn free_form_array(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}
