//! The benchmark's world: OpenBao setup, the ExternalSecrets it creates, and what it reads
//! back from the apiserver and the controller's metrics.

use super::*;

/// Which Vault path ExternalSecret `i` reads, under which role, and how many items.
pub fn layout(i: usize, paths: usize) -> (usize, &'static str, usize) {
    // A multiplicative spread so consecutive objects do not share a path.
    let path = (i * 7919 + i / paths) % paths;
    (path, ROLES[path % ROLES.len()], 1 + (i % 3))
}

pub fn vault_key(path: usize) -> String {
    // Even paths on the KV v1 mount, odd ones on KV v2 (natural key form).
    if path.is_multiple_of(2) {
        format!("secret/bench/p{path}")
    } else {
        format!("kv/bench/p{path}")
    }
}

pub struct Bao {
    pub addr: String,
    pub http: reqwest::Client,
}

impl Bao {
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<()> {
        let r = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", "root")
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "{path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    pub async fn put(&self, path: usize, value: &str, api: ApiKind) -> Result<()> {
        let fields = json!({"a": value, "b": format!("b-{path}"), "c": format!("c-{path}")});
        if api == ApiKind::Eso {
            let key = crate::eso::vault_key(path).replacen("kv/", "kv/data/", 1);
            return self
                .call(reqwest::Method::PUT, &key, json!({ "data": fields }))
                .await;
        }
        if path.is_multiple_of(2) {
            self.call(
                reqwest::Method::PUT,
                &format!("secret/bench/p{path}"),
                fields,
            )
            .await
        } else {
            self.call(
                reqwest::Method::PUT,
                &format!("kv/data/bench/p{path}"),
                json!({ "data": fields }),
            )
            .await
        }
    }
}

pub struct Metrics(pub String);

impl Metrics {
    pub async fn scrape(port: u16) -> Result<Metrics> {
        Ok(Metrics(
            reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await?
                .text()
                .await?,
        ))
    }
    pub fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    }
    pub fn secret_writes(&self) -> f64 {
        self.get(r#"vault_external_secrets_secret_writes_total{kind="create"}"#)
            + self.get(r#"vault_external_secrets_secret_writes_total{kind="update"}"#)
    }
}

/// Creates the N ExternalSecrets of the run's API, 32 in flight, in namespaces `{prefix}-0` …
/// `{prefix}-9`.
pub async fn create_external_secrets(client: &Client, a: &Args, prefix: &str) -> Result<()> {
    if a.api == ApiKind::Eso {
        return crate::eso::create_external_secrets(client, a, prefix).await;
    }
    futures::stream::iter(0..a.n)
        .map(|i| {
            let api: Api<vault_external_secrets::api::kes::crd::ExternalSecret> =
                Api::namespaced(client.clone(), &format!("{prefix}-{}", i % NAMESPACES));
            async move {
                let (path, role, items) = layout(i, a.paths);
                api.create(
                    &PostParams::default(),
                    &external_secret(i, path, role, items)?,
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The benchmark's ExternalSecret number `i`: `items` properties of Vault path `path`.
pub fn external_secret(
    i: usize,
    path: usize,
    role: &str,
    items: usize,
) -> Result<vault_external_secrets::api::kes::crd::ExternalSecret> {
    let data: Vec<Value> = ["a", "b", "c"][..items]
        .iter()
        .map(|p| json!({"name": p, "key": vault_key(path), "property": p}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": format!("es-{i}")},
        "spec": {"backendType": "vault", "vaultRole": role,
                 "kvVersion": if path.is_multiple_of(2) { 1 } else { 2 }, "data": data}
    }))?)
}

/// The floor: per object, exactly the apiserver writes a sync costs — the user's ExternalSecret
/// create, the Secret create (owned by it), the status merge patch and an Event — by plain
/// clients, 32 objects in flight, no Vault and no controller logic. `user` makes the
/// ExternalSecret create and `controller` the other three, so that the apiserver authenticates,
/// authorizes and queues (priority and fairness) each write as it does in a sync: a
/// ServiceAccount's writes cost it more than those of a `system:masters` certificate, which
/// skips RBAC and is exempt from queuing.
pub async fn floor_writes(
    user: &Client,
    controller: &Client,
    a: &Args,
    prefix: &str,
) -> Result<()> {
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Patch, PatchParams};
    use vault_external_secrets::api::kes::crd::ExternalSecret;
    futures::stream::iter(0..a.n)
        .map(|i| {
            let ns = format!("{prefix}-{}", i % NAMESPACES);
            let es_api: Api<ExternalSecret> = Api::namespaced(user.clone(), &ns);
            let status_api: Api<ExternalSecret> = Api::namespaced(controller.clone(), &ns);
            let secrets: Api<Secret> = Api::namespaced(controller.clone(), &ns);
            let events: Api<Event> = Api::namespaced(controller.clone(), &ns);
            async move {
                let (path, role, items) = layout(i, a.paths);
                let es = es_api
                    .create(&PostParams::default(), &external_secret(i, path, role, items)?)
                    .await?;
                let uid = es.metadata.uid.clone().unwrap_or_default();
                let now = Utc::now();
                let secret: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("es-{i}"), "labels": {"bench": "floor"},
                        "ownerReferences": [{"apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
                            "name": format!("es-{i}"), "uid": uid, "controller": true}]},
                    "data": {"a": "YQ==", "b": "Yg==", "c": "Yw=="}
                }))?;
                secrets.create(&PostParams::default(), &secret).await?;
                let ts = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                let status = json!({"status": {"lastSync": ts, "status": "SUCCESS", "observedGeneration": 1,
                    "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                        "message": "Secret is in sync with Vault", "lastTransitionTime": ts}]}});
                status_api
                    .patch_status(&format!("es-{i}"), &PatchParams::default(), &Patch::Merge(status))
                    .await?;
                let event: Event = serde_json::from_value(json!({
                    "metadata": {"name": format!("es-{i}.floor")},
                    "eventTime": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    "reportingController": "bench-floor", "reportingInstance": "bench",
                    "action": "Sync", "reason": "Created", "type": "Normal",
                    "note": "Created Secret from Vault",
                    "regarding": {"apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
                        "name": format!("es-{i}"), "namespace": ns, "uid": uid}
                }))?;
                events.create(&PostParams::default(), &event).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

pub async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    }
    Ok(())
}

/// The run's Secrets (in its own namespaces `{prefix}-N`: earlier runs' stay in the world).
pub async fn count_synced(client: &Client, api: ApiKind, prefix: &str) -> Result<usize> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let lp = ListParams::default().labels(api.secret_label());
    Ok(secrets
        .list_metadata(&lp)
        .await?
        .items
        .iter()
        .filter(|s| {
            s.metadata
                .namespace
                .as_deref()
                .is_some_and(|ns| in_run(ns, prefix))
        })
        .count())
}

/// Whether `ns` is one of the run's namespaces, `{prefix}-0` … `{prefix}-9`.
pub fn in_run(ns: &str, prefix: &str) -> bool {
    ns.strip_prefix(prefix)
        .and_then(|n| n.strip_prefix('-'))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}
