//! Wiring: watches (one set per watched namespace, or one cluster-wide), the controller loops,
//! readiness, pruning of forgotten objects, and graceful shutdown.

use std::collections::{HashMap, HashSet};
use std::future::ready;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{controller, watcher, Controller, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};

use super::{error_policy, reconcile, Context, SecretIndex, Shared, MANAGER};
use crate::config::Config;
use crate::crd::{ExternalSecret, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::vault::{KvReader, TokenCache, VaultHttp};

use super::leader;

/// Reconciles kube-runtime may start at once. They wait at `Shared::gate`, which holds the
/// SYNC_CONCURRENCY slots and lets new and changed objects overtake periodic refreshes; kube-
/// runtime itself hands out due objects in deadline order. So a new object overtakes up to this
/// many queued refreshes; beyond that it waits in kube-runtime's queue. Not unbounded: kube-
/// runtime keeps each started reconcile in a table that never shrinks (7.6 MiB after starting
/// 10,000 at once, heaptrack).
const STARTED_SYNCS: u16 = 1024;

/// How long in-flight syncs may take to finish after SIGTERM before we stop waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// When Vault (or a login) works again, the objects that failed are rescheduled at once, spread
/// over this much time in `RECOVERY_STEPS` batches rather than each waiting out its backoff.
const RECOVERY_SPREAD: Duration = Duration::from_secs(2);
const RECOVERY_STEPS: u32 = 20;

/// How long one Vault read answers other syncs of the same path. Short, so a change in Vault
/// reaches the Secret within one poll interval plus this; phase-aligned polling makes objects
/// sharing a path read it within this window anyway.
pub fn read_cache_ttl(poll_interval: Duration) -> Duration {
    (poll_interval / 2).min(Duration::from_secs(2))
}

/// The Kubernetes client: in-cluster service account, else KUBECONFIG. kube's default stack
/// retries 429, 503 and 504 with exponential backoff and waits at least the server's
/// Retry-After (its API Priority and Fairness answer to overload); tests/apiserver_retry.rs
/// holds that in place.
pub async fn kube_client() -> anyhow::Result<Client> {
    Client::try_default()
        .await
        .context("connecting to Kubernetes (in-cluster service account, else KUBECONFIG)")
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let client = kube_client().await?;
    let http = VaultHttp::new(&config, metrics.clone())?;
    let tokens = Arc::new(TokenCache::new(
        http,
        config.vault_jwt_path.clone(),
        config.token_renew_threshold,
    ));
    let kv = KvReader::new(tokens.clone(), read_cache_ttl(config.poll_interval));
    let recoveries = tokens.http().breaker().recoveries();
    let outages = tokens.http().breaker().outages();
    let reporter = Reporter {
        controller: MANAGER.into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let shared = Arc::new(Shared::new(
        client.clone(),
        config.clone(),
        kv,
        metrics.clone(),
        reporter,
    ));

    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.metrics_port))
        .await
        .with_context(|| format!("binding METRICS_PORT {}", config.metrics_port))?;
    tokio::spawn(http::serve(listener, metrics.clone(), health.clone()));

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight syncs");
        let _ = shutdown_tx.send(true);
    });

    // Leader election: `elected` turns true while this replica holds the Lease (always, when
    // election is off).
    let leader_gauge = metrics.register_gauge(
        "vault_external_secrets_leader",
        "1 while this replica is the leader (or leader election is off), else 0",
    )?;
    let (elected_tx, elected_rx) = watch::channel(false);
    let lease = match &config.leader_election {
        None => {
            shared.set_leading(true);
            leader_gauge.set(1);
            let _ = elected_tx.send(true);
            None
        }
        Some(le) => Some(
            leader::start(
                le,
                client,
                shared.clone(),
                leader_gauge,
                elected_tx,
                shutdown_rx.clone(),
            )
            .await?,
        ),
    };

    let scopes: Vec<Option<String>> = if config.watched_namespaces.is_empty() {
        vec![None]
    } else {
        config
            .watched_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    };
    tracing::info!(namespaces = ?config.watched_namespaces, poll_ms = config.poll_interval.as_millis() as u64,
        vault = %config.vault_addr, instance_id = ?config.instance_id, "starting");

    let mut loops = Vec::new();
    let mut es_stores = Vec::new();
    let mut secret_indexes = Vec::new();
    let mut retrigger = Retrigger::default();
    for scope in &scopes {
        let (tx, rx) = mpsc::unbounded_channel();
        let (fut, es_store, secret_index) = scope_controller(
            shared.clone(),
            scope.clone(),
            shutdown_rx.clone(),
            config.leader_election.is_some().then(|| elected_rx.clone()),
            rx,
        );
        loops.push(fut);
        retrigger.scopes.push((es_store.clone(), tx));
        es_stores.push(es_store);
        secret_indexes.push(secret_index);
    }
    let retrigger = Arc::new(retrigger);
    for scope in scopes {
        tokio::spawn(namespace_watch(shared.clone(), scope, retrigger.clone()));
    }
    tokio::spawn(reschedule_on_vault_events(
        shared.clone(),
        recoveries,
        outages,
        retrigger.clone(),
    ));

    // Ready once every initial list has been seen (Kubernetes readiness semantics: we can do
    // useful work). Vault reachability is reported per object in status, not here: a Vault
    // outage must not take every replica out of its Service.
    {
        let health = health.clone();
        let shared_ready = shared.clone();
        let (es_stores, secret_indexes) = (es_stores.clone(), secret_indexes.clone());
        tokio::spawn(async move {
            // Polled rather than awaited once: a `wait_until_ready` future started before the
            // initial list completed was observed never to wake (kube-runtime 5.0.0).
            loop {
                let mut ready = true;
                for s in &es_stores {
                    ready &= store_ready(s).await;
                }
                for s in &secret_indexes {
                    ready &= s.listed();
                }
                ready &= shared_ready.namespaces.settled();
                if ready {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            health.ready.store(true, Ordering::Relaxed);
            tracing::info!("initial watch lists complete: ready");
        });
    }
    tokio::spawn(prune_loop(shared.clone(), es_stores, config.poll_interval));
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                shared.report_queue_depth();
            }
        });
    }

    health.alive.store(true, Ordering::Relaxed);
    let mut shutdown = shutdown_rx.clone();
    let all = futures::future::join_all(loops);
    tokio::select! {
        _ = all => {}
        _ = async {
            let _ = shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("grace period over; abandoning in-flight syncs"),
    }
    health.alive.store(false, Ordering::Relaxed);
    health.ready.store(false, Ordering::Relaxed);
    if !*shutdown_rx.borrow() {
        anyhow::bail!("controller loop ended without a shutdown request");
    }
    shared.set_leading(false);
    let revoked = tokens.revoke_all().await;
    // Release the Lease last, once nothing of ours writes any more: the next leader starts now
    // instead of waiting for the Lease to expire.
    if let Some(lease) = lease {
        lease.release().await;
    }
    tracing::info!(revoked_tokens = revoked, "stopped");
    Ok(())
}

type ScopeParts = (
    BoxFuture<'static, ()>,
    Store<ExternalSecret>,
    Arc<SecretIndex>,
);

/// The watches and controller loop of one namespace (`Some`) or of the whole cluster (`None`).
fn scope_controller(
    shared: Arc<Shared>,
    scope: Option<String>,
    shutdown: watch::Receiver<bool>,
    elected: Option<watch::Receiver<bool>>,
    retriggered: mpsc::UnboundedReceiver<ObjectRef<ExternalSecret>>,
) -> ScopeParts {
    let client = shared.client.clone();
    // `Api<PartialObjectMeta<_>>` lists and watches metadata only.
    let (es_api, secret_api): (Api<ExternalSecret>, Api<PartialObjectMeta<Secret>>) = match &scope {
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
    let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}");
    let secret_watch = {
        let scope_name = scope_name.clone();
        let secrets = secrets.clone();
        watcher(secret_api, wc.clone().labels(&selector))
            .default_backoff()
            .for_each(move |ev| {
                match ev {
                    Ok(ev) => secrets.apply(ev),
                    Err(e) => {
                        tracing::warn!(namespace = %scope_name, error = %e, "Secret watch error; retrying")
                    }
                }
                ready(())
            })
    };

    let (es_store, es_writer) = reflector::store();
    let es_stream = {
        let scope_name = scope_name.clone();
        let filter_shared = shared.clone();
        watcher(es_api, wc)
            .default_backoff()
            // Only name, namespace, uid, resourceVersion, generation, spec and status are read.
            // The rest (kubectl's last-applied copy of the spec above all) would double an
            // object's size in the store.
            .modify(|es| {
                let meta = es.meta_mut();
                meta.managed_fields = None;
                meta.annotations = None;
                meta.labels = None;
                meta.creation_timestamp = None;
            })
            .reflect(es_writer)
            .applied_objects()
            // Status-only changes (our own patches) do not trigger a sync; spec changes do.
            .try_filter(move |es| ready(filter_shared.needs_sync(es)))
            .inspect(move |r| {
                if let Err(e) = r {
                    tracing::warn!(namespace = %scope_name, error = %e, "ExternalSecret watch error; retrying");
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
        .run(|es, ctx| reconcile(es, ctx).boxed(), error_policy, ctx)
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

/// Sends ExternalSecrets back to their scope's controller loop out of schedule: when their
/// Namespace's guard changed, or when Vault (or a login) works again after failing.
#[derive(Default)]
struct Retrigger {
    scopes: Vec<(
        Store<ExternalSecret>,
        mpsc::UnboundedSender<ObjectRef<ExternalSecret>>,
    )>,
}

impl Retrigger {
    /// The objects `pick` selects, per scope.
    fn select(
        &self,
        pick: impl Fn(&ExternalSecret) -> bool,
    ) -> Vec<(
        ObjectRef<ExternalSecret>,
        &mpsc::UnboundedSender<ObjectRef<ExternalSecret>>,
    )> {
        self.scopes
            .iter()
            .flat_map(|(store, tx)| {
                store
                    .state()
                    .into_iter()
                    .filter(|es| pick(es))
                    .map(move |es| (ObjectRef::from_obj(es.as_ref()), tx))
            })
            .collect()
    }
}

/// The Namespaces of one scope (all, or the one watched namespace: a namespaced install may
/// `get`/`list`/`watch` only those, by name), metadata only, into `Shared::namespaces`. A
/// Namespace whose guard changes has its ExternalSecrets looked at again.
async fn namespace_watch(shared: Arc<Shared>, scope: Option<String>, retrigger: Arc<Retrigger>) {
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
                    for (r, tx) in retrigger
                        .select(|es| es.namespace().is_some_and(|ns| changed.contains(&ns)))
                    {
                        let _ = tx.send(r);
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

/// Vault's state changes for many objects at once:
/// - when the breaker closes or a failing login works again, the objects whose last sync failed
///   are rescheduled at once (recovery follows Vault, not each object's backoff);
/// - when an outage is confirmed, the objects that have not failed yet are synced (they fail at
///   once, without a request), so every status shows it within seconds, not at its next poll.
///
/// Either way spread over `RECOVERY_SPREAD`.
async fn reschedule_on_vault_events(
    shared: Arc<Shared>,
    mut recoveries: watch::Receiver<u64>,
    mut outages: watch::Receiver<u64>,
    retrigger: Arc<Retrigger>,
) {
    loop {
        let recovered = tokio::select! {
            r = recoveries.changed() => { if r.is_err() { return; } true }
            r = outages.changed() => { if r.is_err() { return; } false }
        };
        let failing = shared.failing();
        let picked =
            retrigger.select(|es| es.uid().is_some_and(|u| failing.contains(&u) == recovered));
        if picked.is_empty() {
            continue;
        }
        if recovered {
            tracing::info!(
                objects = picked.len(),
                "Vault works again: rescheduling the objects that failed"
            );
        } else {
            tracing::warn!(
                objects = picked.len(),
                "Vault is down: reporting the outage on every object"
            );
        }
        let batch = picked.len().div_ceil(RECOVERY_STEPS as usize).max(1);
        for chunk in picked.chunks(batch) {
            for (r, tx) in chunk {
                let _ = tx.send(r.clone());
            }
            tokio::time::sleep(RECOVERY_SPREAD / RECOVERY_STEPS).await;
        }
    }
}

async fn store_ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .wait_until_ready()
        .now_or_never()
        .is_some_and(|r| r.is_ok())
}

/// Drops state and metric series of ExternalSecrets that are gone.
async fn prune_loop(shared: Arc<Shared>, stores: Vec<Store<ExternalSecret>>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(10)));
    loop {
        tick.tick().await;
        let mut live = HashSet::new();
        let mut live_names: HashMap<String, HashSet<String>> = HashMap::new();
        for es in stores.iter().flat_map(|s| s.state()) {
            if !shared.handles(&es) {
                continue;
            }
            if let Some(uid) = es.uid() {
                live.insert(uid);
            }
            live_names
                .entry(es.namespace().unwrap_or_default())
                .or_default()
                .insert(es.name_any());
        }
        shared.prune(&live, &live_names);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_cache_never_outlives_half_an_interval() {
        assert_eq!(
            read_cache_ttl(Duration::from_secs(30)),
            Duration::from_secs(2)
        );
        assert_eq!(
            read_cache_ttl(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }
}
