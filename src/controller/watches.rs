//! The watches of one scope (a namespace, or the whole cluster): ExternalSecrets into the
//! scope's queue and runner, our Secrets' metadata into the Secrets index, and the Namespaces' guard
//! annotations into `Shared::namespaces`.

use std::future::ready;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::watch;

use super::front_end::FrontEnd;
use super::queue::Queue;
use super::scope_store::ScopeStore;
use super::triggers::Retrigger;
use super::{leader, runner, Context, SecretIndex, Shared};

/// Objects per page of a (re)list of ExternalSecrets or Secrets (kube-runtime's default: 500).
/// While a page is read, its body, the connection's read buffer and the decoded objects (with
/// their managed fields) are all held at once: at a restart against many objects this was the
/// controller's memory peak. Smaller pages bound it, for more (and smaller) list requests.
const LIST_PAGE: u32 = 100;

pub type ScopeParts<K> = (BoxFuture<'static, ()>, Arc<ScopeStore<K>>, Arc<SecretIndex>);

/// The watches and controller loop of one API in one namespace (`Some`) or in the whole
/// cluster (`None`).
pub fn scope_controller<K: FrontEnd>(
    shared: Arc<Shared>,
    scope: Option<String>,
    shutdown: watch::Receiver<bool>,
    elected: Option<watch::Receiver<bool>>,
    queue: Arc<Queue>,
) -> ScopeParts<K> {
    let client = shared.client.clone();
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only.
    let (es_api, secret_api): (Api<K>, Api<PartialObjectMeta<Secret>>) = match &scope {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let wc = watcher::Config::default()
        .timeout(shared.config.watch_timeout_secs())
        .page_size(LIST_PAGE);
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

    let es_store = Arc::new(ScopeStore::<K>::default());
    let es_watch = {
        let scope_name = scope_name.clone();
        let shared = shared.clone();
        let store = es_store.clone();
        let queue = queue.clone();
        // The store keeps each object packed (`Stored`): of its metadata only name, namespace,
        // uid, resourceVersion, generation (`FrontEnd::trim`). The rest (kubectl's last-applied
        // copy of the spec above all) would double an object's size.
        watcher(es_api, wc)
            .default_backoff()
            .for_each(move |ev| {
                match ev {
                    Ok(ev) => {
                        // Status-only changes (our own patches) do not trigger a sync; spec
                        // changes do.
                        if let Some(es) = store.apply(ev) {
                            if shared.objects.needs_sync(es.uid(), es.generation()) {
                                queue.now(es.key());
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(namespace = %scope_name, api = K::API, error = %e, "ExternalSecret watch error; retrying");
                    }
                }
                ready(())
            })
    };

    // Followers sync nothing; on election, every object is synced once.
    let elections = {
        let store = es_store.clone();
        let queue = queue.clone();
        async move {
            if let Some(elected) = elected {
                leader::on_election(elected)
                    .for_each(|()| {
                        for o in store.state() {
                            queue.now(o.key());
                        }
                        ready(())
                    })
                    .await;
            }
            std::future::pending::<()>().await;
        }
    };

    let ctx = Arc::new(Context {
        shared: shared.clone(),
        secrets: secrets.clone(),
    });
    let mut shutdown = shutdown;
    let runner = runner::run(es_store.clone(), queue, ctx, async move {
        let _ = shutdown.wait_for(|s| *s).await;
    });

    let fut = async move {
        tokio::select! {
            _ = runner => {}
            _ = es_watch => {}
            _ = secret_watch => {}
            _ = elections => {}
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
                    for resend in retrigger.select(|o| changed.iter().any(|ns| ns == o.namespace()))
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
