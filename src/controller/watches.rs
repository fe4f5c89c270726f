//! The watches of one scope (a namespace, or the whole cluster): ExternalSecrets into a
//! controller loop, our Secrets' metadata into the Secrets index, and the Namespaces' guard
//! annotations into `Shared::namespaces`.

use std::future::ready;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{controller, watcher, Controller, WatchStreamExt};
use kube::{Api, Resource};
use tokio::sync::{mpsc, watch};

use super::front_end::FrontEnd;
use super::stored::Stored;
use super::triggers::Retrigger;
use super::{error_policy, leader, reconcile, Context, SecretIndex, Shared};

/// Reconciles kube-runtime may start at once. They wait at `Shared::gate`, which holds the
/// SYNC_CONCURRENCY slots and lets new and changed objects overtake periodic refreshes; kube-
/// runtime itself hands out due objects in deadline order. So a new object overtakes up to this
/// many queued refreshes; beyond that it waits in kube-runtime's queue. Not unbounded: kube-
/// runtime keeps each started reconcile in a table that never shrinks (docs/benchmarks.md).
const STARTED_SYNCS: u16 = 1024;

pub type ScopeParts<K> = (BoxFuture<'static, ()>, Store<Stored<K>>, Arc<SecretIndex>);

/// The watches and controller loop of one API in one namespace (`Some`) or in the whole
/// cluster (`None`).
pub fn scope_controller<K: FrontEnd>(
    shared: Arc<Shared>,
    scope: Option<String>,
    shutdown: watch::Receiver<bool>,
    elected: Option<watch::Receiver<bool>>,
    retriggered: mpsc::UnboundedReceiver<ObjectRef<Stored<K>>>,
) -> ScopeParts<K> {
    let client = shared.client.clone();
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only.
    // The ExternalSecrets are kept packed (`Stored`): metadata, and the rest as JSON.
    let (es_api, secret_api): (Api<Stored<K>>, Api<PartialObjectMeta<Secret>>) = match &scope {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let wc = watcher::Config::default().timeout(shared.config.watch_timeout_secs());
    let scope_name = scope.clone().unwrap_or_else(|| "<all>".into());

    // Our Secrets, metadata only (no data in memory), to notice edits and deletions cheaply.
    let secrets = Arc::new(SecretIndex::default());
    let selector = K::secret_selector();
    let secret_watch = {
        let scope_name = scope_name.clone();
        let secrets = secrets.clone();
        watcher(secret_api, wc.clone().labels(&selector))
            .default_backoff()
            .for_each(move |ev| {
                match ev {
                    Ok(ev) => secrets.apply(ev),
                    Err(e) => {
                        tracing::warn!(namespace = %scope_name, api = K::API, error = %e, "Secret watch error; retrying")
                    }
                }
                ready(())
            })
    };

    let (es_store, es_writer) = reflector::store();
    let es_stream = {
        let scope_name = scope_name.clone();
        let filter_shared = shared.clone();
        // Decoding packs each object: only name, namespace, uid, resourceVersion, generation,
        // spec and status are kept (`FrontEnd::trim`). The rest (kubectl's last-applied copy of
        // the spec above all) would double an object's size in the store.
        watcher(es_api, wc)
            .default_backoff()
            .reflect(es_writer)
            .applied_objects()
            // Status-only changes (our own patches) do not trigger a sync; spec changes do.
            .try_filter(move |es| ready(filter_shared.needs_sync(es.meta())))
            .inspect(move |r| {
                if let Err(e) = r {
                    tracing::warn!(namespace = %scope_name, api = K::API, error = %e, "ExternalSecret watch error; retrying");
                }
            })
    };

    let ctx = Arc::new(Context {
        shared: shared.clone(),
        secrets: secrets.clone(),
    });
    let mut shutdown = shutdown;
    let retriggered = futures::stream::unfold(retriggered, |mut rx| async move {
        rx.recv().await.map(|r| (r, rx))
    });
    let mut controller = Controller::for_stream(es_stream, es_store.clone())
        .with_config(controller::Config::default().concurrency(STARTED_SYNCS))
        .reconcile_on(retriggered);
    if let Some(elected) = elected {
        // Followers ignore their triggers; on election, reconcile everything once.
        controller = controller.reconcile_all_on(leader::on_election(elected));
    }
    let controller = controller
        .graceful_shutdown_on(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        // Boxed: every due object's reconcile is started at once and waits at the gate; kube-
        // runtime keeps those futures inline in its own tables.
        .run(|es, ctx| reconcile(es, ctx).boxed(), error_policy::<K>, ctx)
        .for_each(|r| {
            if let Err(e) = r {
                // Reconcile errors were logged with their object already.
                tracing::trace!(error = %e, "controller");
            }
            ready(())
        });

    let fut = async move {
        tokio::select! {
            _ = controller => {}
            _ = secret_watch => {}
        }
    }
    .boxed();
    (fut, es_store, secrets)
}

/// The Namespaces of one scope (all, or the one watched namespace: a namespaced install may
/// `get`/`list`/`watch` only those, by name), metadata only, into `Shared::namespaces`. A
/// Namespace whose guard changes has its ExternalSecrets looked at again.
pub async fn namespace_watch(
    shared: Arc<Shared>,
    scope: Option<String>,
    retrigger: Arc<Retrigger>,
) {
    let api: Api<PartialObjectMeta<Namespace>> = Api::all(shared.client.clone());
    let mut wc = watcher::Config::default();
    if let Some(ns) = &scope {
        wc = wc.fields(&format!("metadata.name={ns}"));
    }
    let guard_cfg = shared.config.namespace_guard.clone();
    let mut events = std::pin::pin!(watcher(api, wc).default_backoff());
    while let Some(ev) = events.next().await {
        match ev {
            Ok(ev) => {
                let changed = shared.namespaces.apply(&guard_cfg, ev);
                if !changed.is_empty() && shared.namespaces.listed() {
                    for resend in
                        retrigger.select(|o| o.namespace().is_some_and(|ns| changed.contains(&ns)))
                    {
                        resend();
                    }
                }
            }
            Err(e) => {
                // Only a refusal denies (fail closed); a transient error keeps the last list.
                if let watcher::Error::InitialListFailed(kube::Error::Api(s))
                | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                | watcher::Error::WatchFailed(kube::Error::Api(s)) = &e
                {
                    if s.code == 401 || s.code == 403 {
                        shared
                            .namespaces
                            .watch_failed(format!("{} {}", s.code, s.reason));
                    }
                }
                tracing::warn!(namespace = ?scope, error = %e,
                    "Namespace watch error; retrying");
            }
        }
    }
}
