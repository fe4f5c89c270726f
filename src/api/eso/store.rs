//! ESO's `SecretStore` (namespaced) and `ClusterSecretStore`: where Vault is and how to log in.
//! `spec.provider.vault` is typed; other providers are kept as they are (their stores get
//! `Ready=False`), as are the Vault auth methods OpenBao does not offer (cert, iam, gcp).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::crd::Condition;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "SecretStore",
    namespaced,
    shortname = "ss",
    category = "external-secrets",
    status = "StoreStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreSpec {
    #[serde(flatten)]
    pub common: StoreSpec,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ClusterSecretStore",
    shortname = "css",
    category = "external-secrets",
    status = "StoreStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSecretStoreSpec {
    #[serde(flatten)]
    pub common: StoreSpec,
    /// Which namespaces may use the store; none = all.
    pub conditions: Option<Vec<StoreCondition>>,
}

impl StoreSpec {
    pub fn vault(&self) -> Option<&VaultProvider> {
        self.provider.as_ref().and_then(|p| p.vault.as_ref())
    }
}

/// What both store kinds share.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// The controller class that handles this store (`CONTROLLER_CLASS`); empty = any.
    pub controller: Option<String>,
    pub provider: Option<Provider>,
    /// Seconds between re-validations of the store.
    pub refresh_interval: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::crd::free_form_object")]
    pub retry_settings: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::crd::free_form_object")]
    pub namespace_selector: Option<Value>,
    pub namespaces: Option<Vec<String>>,
    pub namespace_regexes: Option<Vec<String>>,
}

/// One provider per store; only `vault` is served here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct Provider {
    pub vault: Option<VaultProvider>,
    /// Any other provider, kept as written.
    #[serde(flatten)]
    #[schemars(skip)]
    pub others: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VaultProvider {
    pub server: String,
    /// The KV mount; without it the ExternalSecret's key starts with the mount.
    pub path: Option<String>,
    /// `v1` or `v2` (default).
    pub version: Option<String>,
    pub namespace: Option<String>,
    /// PEM, base64-encoded as every `[]byte` field of a Kubernetes object.
    pub ca_bundle: Option<String>,
    pub ca_provider: Option<CaProvider>,
    pub headers: Option<BTreeMap<String, String>>,
    pub read_your_writes: Option<bool>,
    pub forward_inconsistent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::crd::free_form_object")]
    pub tls: Option<Value>,
    pub auth: Option<VaultAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaProvider {
    /// `Secret` or `ConfigMap`.
    #[serde(rename = "type")]
    pub type_: String,
    pub name: String,
    pub key: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct VaultAuth {
    /// Vault namespace to log in to, when it differs from the provider's.
    pub namespace: Option<String>,
    pub token_secret_ref: Option<SecretKeySelector>,
    pub app_role: Option<AppRoleAuth>,
    pub kubernetes: Option<KubernetesAuth>,
    pub jwt: Option<JwtAuth>,
    pub user_pass: Option<UserPassAuth>,
    pub ldap: Option<UserPassAuth>,
    /// `cert`, `iam`, `gcp`: kept, reported as unsupported.
    #[serde(flatten)]
    #[schemars(skip)]
    pub others: BTreeMap<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    pub name: String,
    pub namespace: Option<String>,
    pub key: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountSelector {
    pub name: String,
    pub namespace: Option<String>,
    pub audiences: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppRoleAuth {
    /// Default `approle`.
    pub path: Option<String>,
    pub role_id: Option<String>,
    pub role_ref: Option<SecretKeySelector>,
    pub secret_ref: Option<SecretKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesAuth {
    /// Default `kubernetes`.
    pub mount_path: Option<String>,
    pub role: Option<String>,
    pub service_account_ref: Option<ServiceAccountSelector>,
    pub secret_ref: Option<SecretKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtAuth {
    /// Default `jwt`.
    pub path: Option<String>,
    pub role: Option<String>,
    pub secret_ref: Option<SecretKeySelector>,
    pub kubernetes_service_account_token: Option<ServiceAccountTokenAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountTokenAuth {
    pub service_account_ref: ServiceAccountSelector,
    pub audiences: Option<Vec<String>>,
    pub expiration_seconds: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPassAuth {
    /// Default `userpass` (`ldap` for LDAP).
    pub path: Option<String>,
    pub username: Option<String>,
    pub secret_ref: Option<SecretKeySelector>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub capabilities: Option<String>,
}
