//! The ESO-API run of the benchmark (`--api eso`): the same N objects and Vault paths as
//! `external-secrets.io/v1` ExternalSecrets through 3 ClusterSecretStores (one per Vault role,
//! the controller's own identity, KV v2), each object polling at its own `refreshInterval`.

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use vault_external_secrets::api::eso::crd::ExternalSecret;
use vault_external_secrets::api::eso::store::ClusterSecretStore;

use crate::world::layout;
use crate::{Args, NAMESPACES, ROLES};

/// Where the ESO run's paths live: all on the KV v2 mount, apart from the KES run's.
pub fn vault_key(path: usize) -> String {
    format!("kv/bench-eso/p{path}")
}

pub fn store_name(role: &str) -> String {
    format!("bench-{role}")
}

/// One ClusterSecretStore per role (kept from an earlier run in the same world: the templated
/// run follows the plain one).
pub async fn create_stores(client: &Client, vault_addr: &str) -> Result<()> {
    let api: Api<ClusterSecretStore> = Api::all(client.clone());
    for role in ROLES {
        let store: ClusterSecretStore = serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": {"name": store_name(role)},
            "spec": {"provider": {"vault": {"server": vault_addr, "version": "v2",
                "auth": {"kubernetes": {"mountPath": "kubernetes", "role": role}}}}}
        }))?;
        match api.create(&PostParams::default(), &store).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => {
                other?;
            }
        }
    }
    Ok(())
}

/// The N ExternalSecrets, 32 in flight, in `{prefix}-0` … `{prefix}-9`.
pub async fn create_external_secrets(client: &Client, a: &Args, prefix: &str) -> Result<()> {
    let refresh = format!("{}ms", a.poll_ms);
    futures::stream::iter(0..a.n)
        .map(|i| {
            let api: Api<ExternalSecret> =
                Api::namespaced(client.clone(), &format!("{prefix}-{}", i % NAMESPACES));
            let refresh = refresh.clone();
            async move {
                let (path, role, items) = layout(i, a.paths);
                let data: Vec<_> = ["a", "b", "c"][..items]
                    .iter()
                    .map(|p| json!({"secretKey": p, "remoteRef": {"key": vault_key(path), "property": p}}))
                    .collect();
                let mut spec = json!({"refreshInterval": refresh,
                    "secretStoreRef": {"name": store_name(role), "kind": "ClusterSecretStore"},
                    "data": data});
                if a.template {
                    // What templated manifests typically do: a connection string and a JSON file
                    // (and `a` as it is, which the change-latency watch reads).
                    spec["target"] = json!({"template": {"data": {
                        "a": "{{ .a }}",
                        "dsn": "postgres://app:{{ .a }}@db:5432/{{ .a | upper | trunc 8 }}",
                        "config.json": "{{ dict \"user\" .a \"port\" 5432 | toJson }}"}}});
                }
                let es: ExternalSecret = serde_json::from_value(json!({
                    "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "metadata": {"name": format!("es-{i}")},
                    "spec": spec
                }))?;
                api.create(&PostParams::default(), &es).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
