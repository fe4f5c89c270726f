//! The ESO front-end in the controller: which ExternalSecrets this instance serves (through
//! their store's class), the store lookup and its namespace conditions, translation, polls at
//! the object's `refreshInterval` and `refreshPolicy`, and ESO's status and metrics.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use super::front_end::{Due, FrontEnd, Poll};
use super::report::{patch_status, with_heartbeat};
use super::Shared;
use crate::api::eso::crd::ExternalSecret;
use crate::api::eso::path::go_duration;
use crate::api::eso::status::{self, Outcome};
use crate::api::eso::store::{ClusterSecretStore, SecretStore, StoreSpec};
use crate::api::eso::stores::{namespace_allowed, serves as class_serves};
use crate::api::eso::translate::{
    store_kind, store_name, translate, Settings, StoreKind, StoreView, LAST_APPLIED,
};
use crate::api::eso::{MANAGED_LABEL, MANAGED_VALUE};
use crate::engine::eso_values::object_hash;
use crate::engine::{SyncSpec, Write};
use crate::error::Error;

/// ESO's default `refreshInterval`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);

/// A store as found, either kind.
enum Found {
    Namespaced(std::sync::Arc<SecretStore>),
    Cluster(std::sync::Arc<ClusterSecretStore>),
}

impl Found {
    fn spec(&self) -> &StoreSpec {
        match self {
            Found::Namespaced(s) => &s.spec.common,
            Found::Cluster(s) => &s.spec.common,
        }
    }
}

fn find_store(es: &ExternalSecret, shared: &Shared) -> Result<Option<Found>, Error> {
    let Some(name) = store_name(es) else {
        return Err(Error::InvalidSpec(
            "spec.secretStoreRef.name is required".into(),
        ));
    };
    let namespace = es.namespace().unwrap_or_default();
    Ok(lookup(store_kind(es)?, name, &namespace, shared))
}

/// The store of this kind and name, as seen from `namespace`.
fn lookup(kind: StoreKind, name: &str, namespace: &str, shared: &Shared) -> Option<Found> {
    match kind {
        StoreKind::SecretStore => shared
            .eso
            .secret_store(&ObjectRef::new(name).within(namespace))
            .map(Found::Namespaced),
        StoreKind::ClusterSecretStore => shared
            .eso
            .cluster_stores
            .get(&ObjectRef::new(name))
            .map(Found::Cluster),
    }
}

impl FrontEnd for ExternalSecret {
    const API: &'static str = "eso";

    fn secret_selector() -> String {
        format!("{MANAGED_LABEL}={MANAGED_VALUE}")
    }

    /// `spec.secretStoreRef`'s kind and name; `None` when the reference is invalid.
    type Route = Option<(StoreKind, Box<str>)>;

    fn route(&self) -> Self::Route {
        Some((store_kind(self).ok()?, store_name(self)?.into()))
    }

    /// Served when its store's `spec.controller` is our class. An object whose store is
    /// missing (or whose reference is invalid) is served, to report it, only without a class:
    /// next to ESO, it is ESO's.
    fn serves(route: &Self::Route, namespace: &str, shared: &Shared) -> bool {
        let ours = shared.config.controller_class.as_deref();
        match route
            .as_ref()
            .and_then(|(kind, name)| lookup(*kind, name, namespace, shared))
        {
            Some(store) => class_serves(store.spec().controller.as_deref(), ours),
            None => ours.is_none(),
        }
    }

    fn due(&self, _shared: &Shared) -> Due {
        let synced = self.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.reason.as_deref() == Some(status::SYNCED))
        });
        if synced && self.spec.target().immutable.unwrap_or(false) {
            return Due::Skip("the target is immutable and was synced");
        }
        if synced && self.spec.refresh_policy.as_deref() == Some("CreatedOnce") {
            return Due::Skip("refreshPolicy CreatedOnce, already synced");
        }
        Due::Sync
    }

    fn spec(&self, shared: &Shared) -> Result<SyncSpec, Error> {
        refresh(self)?;
        let kind = store_kind(self)?;
        let name = store_name(self).unwrap_or_default();
        let ns = self.namespace().unwrap_or_default();
        let found = find_store(self, shared)?
            .ok_or_else(|| Error::Store(format!("{} {name} not found", kind.as_str())))?;
        if let Found::Cluster(store) = &found {
            let labels = shared.namespaces.labels(&ns).map_err(Error::Store)?;
            if !namespace_allowed(store.spec.conditions.as_deref(), &ns, &labels) {
                return Err(Error::Store(format!(
                    "ClusterSecretStore {name} does not allow namespace {ns} (spec.conditions)"
                )));
            }
        }
        let namespace = match &found {
            Found::Namespaced(s) => s.namespace(),
            Found::Cluster(_) => None,
        };
        let view = StoreView {
            kind,
            name,
            namespace: namespace.as_deref(),
            spec: found.spec(),
        };
        let settings = Settings {
            vault_addr: &shared.config.vault_addr,
        };
        translate(self, &view, &settings)
    }

    fn poll(&self, _shared: &Shared) -> Poll {
        match refresh(self) {
            Ok(Poll::Every(d)) if d.is_zero() => Poll::Never,
            Ok(p) => p,
            Err(_) => Poll::Every(DEFAULT_REFRESH),
        }
    }

    fn report<'a>(
        &'a self,
        shared: &'a Shared,
        result: Result<&'a Write, &'a Error>,
    ) -> BoxFuture<'a, ()> {
        async move {
            let ns = self.namespace().unwrap_or_default();
            shared
                .metrics
                .eso_per_object
                .record(&ns, &self.name_any(), result.is_ok());
            let target_spec = self.spec.target();
            let target = target_spec
                .name
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.name_any());
            let outcome = match result {
                Ok(Write::Delete(())) => Outcome {
                    ok: true,
                    reason: status::DELETED,
                    message: "secret deleted due to DeletionPolicy".into(),
                    binding: None,
                },
                Ok(_) => Outcome {
                    ok: true,
                    reason: status::SYNCED,
                    message: "Secret was synced".into(),
                    binding: (target_spec.creation_policy.as_deref() != Some("None"))
                        .then_some(target),
                },
                // ESO's reason; ours leads the message, which names the key and the cause.
                Err(e) => Outcome {
                    ok: false,
                    reason: status::SYNC_ERROR,
                    message: format!("{}: {e}", e.reason()),
                    binding: None,
                },
            };
            let rv = status::synced_resource_version(self.meta().generation, &meta_hash(self));
            let rollout = shared.restarter.condition(self);
            let next = with_heartbeat(shared, |heartbeat| {
                status::next_status(
                    self.status.as_ref(),
                    &outcome,
                    &rollout,
                    &rv,
                    chrono::Utc::now(),
                    heartbeat,
                )
            });
            patch_status(self, shared, next).await;
        }
        .boxed()
    }

    fn store_of(route: &Self::Route) -> Option<(&str, &str)> {
        route.as_ref().map(|(kind, name)| (kind.as_str(), &**name))
    }

    fn trim(&mut self) {
        let meta = self.meta_mut();
        meta.managed_fields = None;
        meta.creation_timestamp = None;
        // Labels and annotations stay: ESO's `syncedResourceVersion` hashes them.
        if let Some(a) = meta.annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
    }
}

/// The poll the spec asks for: `refreshPolicy` and `refreshInterval` (Go duration, default 1h).
pub(crate) fn refresh(es: &ExternalSecret) -> Result<Poll, Error> {
    match es.spec.refresh_policy.as_deref().unwrap_or("Periodic") {
        "Periodic" | "" => {}
        "OnChange" | "CreatedOnce" => return Ok(Poll::Never),
        other => {
            return Err(Error::InvalidSpec(format!(
                "spec.refreshPolicy {other:?} is not Periodic, OnChange or CreatedOnce"
            )))
        }
    }
    match es.spec.refresh_interval.as_deref() {
        None => Ok(Poll::Every(DEFAULT_REFRESH)),
        Some(s) => go_duration(s)
            .map(Poll::Every)
            .map_err(|why| Error::InvalidSpec(format!("spec.refreshInterval: {why}"))),
    }
}

/// Labels and annotations (without kubectl's copy of the object), hashed as ESO's
/// `syncedResourceVersion` does.
fn meta_hash(es: &ExternalSecret) -> String {
    let mut annotations: BTreeMap<String, String> = es.annotations().clone();
    annotations.remove(LAST_APPLIED);
    object_hash(&format!(
        "{{annotations:{} labels:{}}}",
        go_map(&annotations),
        go_map(es.labels())
    ))
}

/// Go's `%+v` of a `map[string]string`.
fn go_map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", items.join(" "))
}
