//! ESO `templateFrom` ConfigMaps and Secrets: read from the ExternalSecret's namespace into its
//! spec before the engine renders it. Each (kind, namespace, name) is read once however many
//! objects use it within the read cache's lifetime (coalesced as Vault reads are), so a template
//! ConfigMap shared by thousands of objects costs one GET per poll cycle.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::engine::templating::Text;
use crate::engine::SyncSpec;
use crate::error::{kube_brief, Error};
use crate::single_flight::Cache;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    ConfigMap,
    Secret,
}

/// A ConfigMap's or Secret's keys (Secret values that are not UTF-8 are left out: a template
/// is text), or why it could not be read.
type Read = Result<Arc<BTreeMap<String, String>>, String>;

pub struct TemplateSources {
    client: Client,
    cache: Cache<(Kind, String, String), Read>,
}

impl TemplateSources {
    pub fn new(client: Client, ttl: Duration) -> Self {
        TemplateSources {
            client,
            cache: Cache::new(10_000, ttl, ttl),
        }
    }

    /// Replaces every ConfigMap and Secret text of the spec's template with the key it names,
    /// read from the object's namespace (its Secret's).
    pub async fn resolve(&self, spec: &mut SyncSpec) -> Result<(), Error> {
        let namespace = spec.target.namespace.clone();
        let namespace = namespace.as_str();
        let Some(template) = spec.target.template.as_mut() else {
            return Ok(());
        };
        for (i, from) in template.from.iter_mut().enumerate() {
            let (kind, name, key) = match &from.text {
                Text::Inline(_) => continue,
                Text::ConfigMapKey { name, key } => (Kind::ConfigMap, name, key),
                Text::SecretKey { name, key } => (Kind::Secret, name, key),
            };
            let what = match kind {
                Kind::ConfigMap => "configmap",
                Kind::Secret => "secret",
            };
            let fail = |why: String| {
                Error::Template(format!(
                    "template templateFrom[{i}]: error in {what} {name}: {why}"
                ))
            };
            let data = self.read(kind, namespace, name).await.map_err(fail)?;
            // ESO's wording.
            let text = data
                .get(key)
                .ok_or_else(|| fail(format!("missing key {key}")))?
                .clone();
            from.text = Text::Inline(text);
        }
        Ok(())
    }

    async fn read(&self, kind: Kind, namespace: &str, name: &str) -> Read {
        let key = (kind, namespace.to_string(), name.to_string());
        let client = self.client.clone();
        // A failure is kept for the TTL too: the next syncs of the same template do not ask
        // again for a ConfigMap that is not there.
        let load = async move {
            let got = match kind {
                Kind::ConfigMap => Api::<ConfigMap>::namespaced(client, namespace)
                    .get_opt(name)
                    .await
                    .map(|c| c.map(|c| c.data.unwrap_or_default())),
                Kind::Secret => Api::<Secret>::namespaced(client, namespace)
                    .get_opt(name)
                    .await
                    .map(|s| {
                        s.map(|s| {
                            s.data
                                .unwrap_or_default()
                                .into_iter()
                                .filter_map(|(k, v)| Some((k, String::from_utf8(v.0).ok()?)))
                                .collect()
                        })
                    }),
            };
            match got {
                Ok(Some(data)) => Ok(Arc::new(data)),
                Ok(None) => Err("not found".to_string()),
                Err(e) => Err(kube_brief(&e)),
            }
        };
        self.cache.get_with(&key, None, load, |_| true).await
    }
}
