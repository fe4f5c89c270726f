//! ESO's stores: SecretStores and ClusterSecretStores watched into reflector stores (the ESO
//! front-end looks them up there, no request per sync), their ExternalSecrets resynced when a
//! store changes, and each store's `Ready` status validated through the shared token cache —
//! one check per store per refresh, and no login at all while objects already hold its token.

use std::future::ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use tokio::sync::watch;

use super::triggers::Retrigger;
use super::Shared;
use crate::api::condition::{self, Observed};
use crate::api::eso::identity::identity;
use crate::api::eso::store::{ClusterSecretStore, SecretStore, StoreSpec, StoreStatus};
use crate::api::eso::stores::serves;
use crate::api::eso::translate::{Settings, StoreKind, StoreView};
use crate::error::Error;
use crate::vault::Credential;

/// ESO's default store re-validation interval.
const STORE_REFRESH: Duration = Duration::from_secs(300);

type Writers = (
    Vec<(Option<String>, reflector::store::Writer<SecretStore>)>,
    reflector::store::Writer<ClusterSecretStore>,
);

/// The stores, as the ESO front-end reads them.
pub struct EsoStores {
    /// One reflector per watched scope (a namespaced install watches each namespace).
    secret_stores: Vec<(Option<String>, Store<SecretStore>)>,
    pub cluster_stores: Store<ClusterSecretStore>,
    writers: Mutex<Option<Writers>>,
}

impl EsoStores {
    pub fn new(scopes: &[Option<String>]) -> Self {
        let mut secret_stores = Vec::new();
        let mut writers = Vec::new();
        for scope in scopes {
            let (r, w) = reflector::store();
            secret_stores.push((scope.clone(), r));
            writers.push((scope.clone(), w));
        }
        let (cluster_stores, cw) = reflector::store();
        EsoStores {
            secret_stores,
            cluster_stores,
            writers: Mutex::new(Some((writers, cw))),
        }
    }

    pub fn secret_store(&self, r: &ObjectRef<SecretStore>) -> Option<Arc<SecretStore>> {
        let ns = r.namespace.as_deref();
        self.secret_stores
            .iter()
            .find(|(scope, _)| scope.is_none() || scope.as_deref() == ns)
            .and_then(|(_, s)| s.get(r))
    }

    pub fn ready(&self) -> bool {
        let ready = |r: Result<(), _>| r.is_ok();
        self.secret_stores
            .iter()
            .all(|(_, s)| s.wait_until_ready().now_or_never().is_some_and(ready))
            && self
                .cluster_stores
                .wait_until_ready()
                .now_or_never()
                .is_some_and(ready)
    }
}

/// Starts the store watches and their validation loops.
pub fn start(shared: &Arc<Shared>, retrigger: Arc<Retrigger>, shutdown: watch::Receiver<bool>) {
    let Some((writers, cluster_writer)) = shared
        .eso
        .writers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
    else {
        return;
    };
    for ((scope, writer), (_, reader)) in writers.into_iter().zip(shared.eso.secret_stores.iter()) {
        let api: Api<SecretStore> = match &scope {
            Some(ns) => Api::namespaced(shared.client.clone(), ns),
            None => Api::all(shared.client.clone()),
        };
        tokio::spawn(run_store_loop(
            shared.clone(),
            api,
            writer,
            reader.clone(),
            retrigger.clone(),
            shutdown.clone(),
        ));
    }
    let api: Api<ClusterSecretStore> = Api::all(shared.client.clone());
    tokio::spawn(run_store_loop(
        shared.clone(),
        api,
        cluster_writer,
        shared.eso.cluster_stores.clone(),
        retrigger,
        shutdown,
    ));
}

/// What the loop needs of either store kind.
trait StoreObject:
    Resource<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + serde::Serialize
    + Send
    + Sync
    + 'static
{
    const KIND: StoreKind;
    fn common(&self) -> &StoreSpec;
    fn store_status(&self) -> Option<&StoreStatus>;
    fn api(&self, client: kube::Client) -> Api<Self>;
}

impl StoreObject for SecretStore {
    const KIND: StoreKind = StoreKind::SecretStore;
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn common(&self) -> &StoreSpec {
        &self.spec.common
    }
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
}

impl StoreObject for ClusterSecretStore {
    const KIND: StoreKind = StoreKind::ClusterSecretStore;
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
    fn common(&self) -> &StoreSpec {
        &self.spec.common
    }
    fn store_status(&self) -> Option<&StoreStatus> {
        self.status.as_ref()
    }
}

async fn run_store_loop<S: StoreObject>(
    shared: Arc<Shared>,
    api: Api<S>,
    writer: reflector::store::Writer<S>,
    reader: Store<S>,
    retrigger: Arc<Retrigger>,
    mut shutdown: watch::Receiver<bool>,
) {
    let kind = S::KIND.as_str();
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        // A changed store (spec or class): its ExternalSecrets are looked at again.
        .inspect(move |r| match r {
            Ok(store) => {
                let name = store.name_any();
                let ns = store.namespace();
                for resend in retrigger.select(|o| {
                    o.store().is_some_and(|(k, n)| k == kind && n == name)
                        && ns.as_deref().is_none_or(|ns| o.namespace() == ns)
                }) {
                    resend();
                }
            }
            Err(e) => tracing::warn!(kind, error = %e, "store watch error; retrying"),
        });
    Controller::for_stream(stream, reader)
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .run(
            |store, shared| validate::<S>(store, shared).boxed(),
            |_, _, _| Action::requeue(STORE_REFRESH),
            shared,
        )
        .for_each(|_| ready(()))
        .await;
}

/// The store's `Ready` condition: its provider and auth settings, then a login through the
/// token cache (a cached token answers without a request). Referent auth (a ClusterSecretStore
/// whose credentials live in each ExternalSecret's namespace) cannot be checked here and is
/// `Valid`, as in ESO.
async fn validate<S: StoreObject>(store: Arc<S>, shared: Arc<Shared>) -> Result<Action, Error> {
    let spec = store.common();
    let requeue = Action::requeue(
        spec.refresh_interval
            .filter(|s| *s > 0)
            .map_or(STORE_REFRESH, |s| Duration::from_secs(s as u64)),
    );
    if !shared.leading()
        || !serves(
            spec.controller.as_deref(),
            shared.config.controller_class.as_deref(),
        )
    {
        return Ok(Action::await_change());
    }
    let ns = store.meta().namespace.clone();
    let view = StoreView {
        kind: S::KIND,
        name: store.meta().name.as_deref().unwrap_or_default(),
        namespace: ns.as_deref(),
        spec,
    };
    let settings = Settings {
        vault_addr: &shared.config.vault_addr,
    };
    let (ok, reason, message) = match spec.vault() {
        None => (
            false,
            "InvalidProviderConfig",
            "no vault provider: this controller serves Vault only".to_string(),
        ),
        Some(vault) => match identity(vault, &view, "", &settings) {
            Err(e) => (false, "InvalidProviderConfig", e.to_string()),
            Ok(key) if referent(&key.login) => (true, "Valid", "store validated".to_string()),
            Ok(key) => match shared.kv.tokens().token(&key).await {
                Ok(_) => (true, "Valid", "store validated".to_string()),
                Err(e) => (
                    false,
                    "ValidationFailed",
                    format!("unable to validate store: {e}"),
                ),
            },
        },
    };
    let previous = store
        .store_status()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let observed = Observed {
        ok,
        reason,
        message,
    };
    let cond = condition::next(previous, "Ready", &observed, chrono::Utc::now());
    if !condition::same(previous, std::slice::from_ref(&cond)) {
        tracing::info!(kind = S::KIND.as_str(), name = %store.name_any(), ready = ok, reason, "store status");
        if let Ok(v) = serde_json::to_value(StoreStatus {
            conditions: vec![cond],
            capabilities: Some("ReadOnly".into()),
        }) {
            patch_status_any(store.as_ref(), &shared, v).await;
        }
    }
    Ok(requeue)
}

/// A credential that lives in the ExternalSecret's namespace (asked with none here).
fn referent(login: &crate::vault::Login) -> bool {
    use crate::vault::Login;
    let empty = |c: &Credential| match c {
        Credential::SecretKey { namespace, .. }
        | Credential::ConfigMapKey { namespace, .. }
        | Credential::ServiceAccountToken { namespace, .. } => namespace.is_empty(),
        Credential::OwnServiceAccount => false,
    };
    match login {
        Login::Jwt(c) | Login::Password(c) | Login::Token(c) => empty(c),
        Login::AppRole { role_id, secret_id } => {
            empty(secret_id) || role_id.as_ref().is_some_and(empty)
        }
    }
}

/// The status patch for either scope of store.
async fn patch_status_any<S: StoreObject>(store: &S, shared: &Shared, status: serde_json::Value) {
    if !shared.leading() {
        return;
    }
    let api = store.api(shared.client.clone());
    let patch = kube::api::Patch::Merge(serde_json::json!({ "status": status }));
    match api
        .patch_status(
            &store.name_any(),
            &kube::api::PatchParams::default(),
            &patch,
        )
        .await
    {
        Ok(_) => shared.metrics.status_writes.inc(),
        Err(e) => {
            tracing::warn!(error = %crate::error::kube_brief(&e), "could not write store status")
        }
    }
}
