//! `render`: the Secret a manifest's ExternalSecret would produce, through the controller's own
//! path (translation, template sources, find, coalesced reads, render), or the error the
//! controller would report. Values are redacted unless asked for; the tokens it logged in for
//! are revoked before it exits.

use std::path::Path;
use std::sync::Arc;

use kube::Api;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::manifests::{load, Doc};
use super::Output;
use crate::api::eso::crd::ExternalSecret as EsoSecret;
use crate::api::eso::store::{ClusterSecretStore, SecretStore, StoreSpec};
use crate::api::eso::translate::{
    store_kind, store_name, translate as eso_translate, Settings, StoreKind, StoreView,
};
use crate::api::kes::crd::ExternalSecret as KesSecret;
use crate::api::kes::{translate as kes_translate, Defaults};
use crate::config::Config;
use crate::engine::{fetch_and_render, DesiredSecret, SyncSpec};
use crate::error::Error;
use crate::metrics::Metrics;

pub async fn run(file: &Path, show_values: bool, output: Output) -> anyhow::Result<i32> {
    let config = Config::from_env()?;
    let (docs, unreadable) = load(&[file.to_path_buf()]);
    if let Some((f, why)) = unreadable.first() {
        anyhow::bail!("{f}: {why}");
    }
    let es = docs
        .iter()
        .find(|d| d.kind() == "ExternalSecret")
        .ok_or_else(|| anyhow::anyhow!("{}: no ExternalSecret in it", file.display()))?;
    let client = crate::controller::kube_client().await?;
    let (tokens, kv) = crate::controller::vault_stack(&config, &client, Arc::new(Metrics::new()?))?;
    let sources = crate::controller::TemplateSources::new(client.clone(), config.poll_interval);
    let result = async {
        let mut spec = spec(es, &docs, &config, &client).await?;
        sources.resolve(&mut spec).await?;
        fetch_and_render(&kv, &spec).await
    }
    .await;
    tokens.revoke_all().await;
    match result {
        Ok(desired) => {
            let shown = shown(&desired, show_values);
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
                Output::Text => print!("{}", serde_yaml::to_string(&shown)?),
            }
            Ok(0)
        }
        Err(e) => {
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"error": {"reason": e.reason(), "message": e.to_string()}})
                ),
                Output::Text => println!("{}: {e}", e.reason()),
            }
            Ok(1)
        }
    }
}

async fn spec(
    doc: &Doc,
    docs: &[Doc],
    config: &Config,
    client: &kube::Client,
) -> Result<SyncSpec, Error> {
    let mut v = doc.value.clone();
    v["metadata"]["namespace"] = json!(doc.namespace());
    v["metadata"]["uid"] = json!("render");
    let invalid = |e: serde_json::Error| Error::InvalidSpec(format!("does not decode: {e}"));
    if doc.api_version() == "kubernetes-client.io/v1" {
        let es: KesSecret = serde_json::from_value(v).map_err(invalid)?;
        let defaults = Defaults::from_config(config);
        return kes_translate(&es, &defaults);
    }
    let es: EsoSecret = serde_json::from_value(v).map_err(invalid)?;
    let kind = store_kind(&es)?;
    let name = store_name(&es).unwrap_or_default().to_string();
    let ns = doc.namespace();
    // The store from the file, else from the cluster.
    let from_file = docs.iter().find(|d| {
        d.kind() == kind.as_str()
            && d.name() == name
            && (kind == StoreKind::ClusterSecretStore || d.namespace() == ns)
    });
    let store: StoreSpec = match from_file {
        Some(d) => serde_json::from_value(d.value["spec"].clone()).map_err(invalid)?,
        None => {
            let missing = || Error::Store(format!("{} {name} not found", kind.as_str()));
            match kind {
                StoreKind::SecretStore => {
                    Api::<SecretStore>::namespaced(client.clone(), ns)
                        .get_opt(&name)
                        .await?
                        .ok_or_else(missing)?
                        .spec
                        .common
                }
                StoreKind::ClusterSecretStore => {
                    Api::<ClusterSecretStore>::all(client.clone())
                        .get_opt(&name)
                        .await?
                        .ok_or_else(missing)?
                        .spec
                        .common
                }
            }
        }
    };
    let view = StoreView {
        kind,
        name: &name,
        namespace: (kind == StoreKind::SecretStore).then_some(ns),
        spec: &store,
    };
    eso_translate(
        &es,
        &view,
        &Settings {
            vault_addr: &config.vault_addr,
        },
    )
}

/// The Secret as printed: values as they are, or their length and a hash prefix.
pub fn shown(d: &DesiredSecret, show_values: bool) -> Value {
    let data: serde_json::Map<String, Value> = d
        .data
        .iter()
        .map(|(k, v)| {
            let shown = if show_values {
                String::from_utf8_lossy(&v.0).into_owned()
            } else {
                let hash: String = Sha256::digest(&v.0)
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("<{} bytes, sha256:{hash}…>", v.0.len())
            };
            (k.clone(), Value::String(shown))
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": d.name, "namespace": d.namespace,
            "labels": d.labels, "annotations": d.annotations},
        "type": d.type_,
        "data": data,
    })
}
