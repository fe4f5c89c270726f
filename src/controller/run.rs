//! Wiring: the Vault stack, the HTTP endpoints, leader election, the watches of each scope,
//! the background tasks (readiness, pruning, Vault events), and graceful shutdown.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use kube::api::ListParams;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use tokio::sync::watch;

use super::audit_listener;
use super::credentials::KubeCredentials;
use super::eso_stores;
use super::front_end::FrontEnd;
use super::queue::Queue;
use super::triggers::{reschedule_on_vault_events, Retrigger, Scope};
use super::watches::{namespace_watch, scope_controller};
use super::{leader, SecretIndex, Shared};
use crate::api::{eso, kes};
use crate::config::Config;
use crate::engine::write::MANAGER;
use crate::http::{self, Health};
use crate::metrics::Metrics;
use crate::vault::{KvReader, TokenCache, VaultHttp};

/// How long in-flight syncs may take to finish after SIGTERM before we stop waiting.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// How often the overdue gauge is recounted.
const OVERDUE_EVERY: Duration = Duration::from_secs(10);

/// How long one Vault read answers other syncs of the same path. Short, so a change in Vault
/// reaches the Secret within one poll interval plus this; phase-aligned polling makes objects
/// sharing a path read it within this window anyway.
pub fn read_cache_ttl(poll_interval: Duration) -> Duration {
    (poll_interval / 2).min(Duration::from_secs(2))
}

/// How long one Vault read answers the syncs that fell due before it began (`KvReader::
/// for_sync_due`): a backlog's syncs share the reads made while they waited. Within the poll
/// interval (the next poll reads again anyway) and a minute (a longer backlog is an overload,
/// and the reads kept are memory).
pub fn read_cache_keep(poll_interval: Duration) -> Duration {
    poll_interval.min(Duration::from_secs(60))
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

/// The Vault stack: HTTP (retries, breaker), the token cache, the coalescing KV reader.
pub fn vault_stack(
    config: &Config,
    client: &Client,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<TokenCache>, KvReader)> {
    let http = VaultHttp::new(config, metrics)?;
    let credentials = KubeCredentials {
        client: client.clone(),
        jwt_path: config.vault_jwt_path.clone(),
    };
    let tokens = Arc::new(TokenCache::new(
        http,
        Arc::new(credentials),
        config.token_renew_threshold,
    ));
    let kv = KvReader::new(
        tokens.clone(),
        read_cache_ttl(config.poll_interval),
        read_cache_keep(config.poll_interval),
    );
    Ok((tokens, kv))
}

/// `true` once SIGTERM or SIGINT arrives.
fn shutdown_requested() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight syncs");
        let _ = tx.send(true);
    });
    rx
}

/// The controller loops of every scope and API, with what the background tasks need of them.
struct Scopes {
    loops: Vec<BoxFuture<'static, ()>>,
    secret_indexes: Vec<Arc<SecretIndex>>,
    retrigger: Arc<Retrigger>,
}

/// The namespaces to watch: each of `WATCHED_NAMESPACES`, or the whole cluster.
pub(super) fn scope_list(config: &Config) -> Vec<Option<String>> {
    if config.watched_namespaces.is_empty() {
        vec![None]
    } else {
        config
            .watched_namespaces
            .iter()
            .cloned()
            .map(Some)
            .collect()
    }
}

/// One API's controller loop in every scope.
fn start_api<K: FrontEnd>(
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    elected: &Option<watch::Receiver<bool>>,
    loops: &mut Vec<BoxFuture<'static, ()>>,
    secret_indexes: &mut Vec<Arc<SecretIndex>>,
    retrigger: &mut Retrigger,
) {
    for scope in scope_list(&shared.config) {
        let queue = Arc::new(Queue::default());
        let (fut, store, secret_index) = scope_controller::<K>(
            shared.clone(),
            scope,
            shutdown.clone(),
            elected.clone(),
            queue.clone(),
        );
        loops.push(fut);
        retrigger.scopes.push(Box::new(Scope { store, queue }));
        secret_indexes.push(secret_index);
    }
}

fn start_scopes(
    shared: &Arc<Shared>,
    shutdown: &watch::Receiver<bool>,
    elected: Option<watch::Receiver<bool>>,
) -> Scopes {
    let mut loops = Vec::new();
    let mut secret_indexes = Vec::new();
    let mut retrigger = Retrigger::default();
    let apis = &shared.config.apis;
    if apis.kes {
        start_api::<kes::crd::ExternalSecret>(
            shared,
            shutdown,
            &elected,
            &mut loops,
            &mut secret_indexes,
            &mut retrigger,
        );
    }
    if apis.eso {
        start_api::<eso::crd::ExternalSecret>(
            shared,
            shutdown,
            &elected,
            &mut loops,
            &mut secret_indexes,
            &mut retrigger,
        );
    }
    let retrigger = Arc::new(retrigger);
    shared.restarter.set_resend(retrigger.clone());
    if apis.eso {
        eso_stores::start(shared, retrigger.clone(), shutdown.clone());
    }
    for scope in scope_list(&shared.config) {
        tokio::spawn(namespace_watch(shared.clone(), scope, retrigger.clone()));
    }
    Scopes {
        loops,
        secret_indexes,
        retrigger,
    }
}

/// `SERVE_APIS=auto`: each API whose ExternalSecret CRD the apiserver serves at startup.
async fn detect_apis(client: &Client, config: &mut Config) -> anyhow::Result<()> {
    if !config.apis.auto {
        return Ok(());
    }
    let scope = scope_list(config).into_iter().next().flatten();
    config.apis.kes = crd_served::<kes::crd::ExternalSecret>(client, scope.as_deref()).await?;
    config.apis.eso = crd_served::<eso::crd::ExternalSecret>(client, scope.as_deref()).await?;
    tracing::info!(
        kes = config.apis.kes,
        eso = config.apis.eso,
        "APIs served (SERVE_APIS=auto: the CRDs installed)"
    );
    if !config.apis.kes && !config.apis.eso {
        anyhow::bail!("neither kubernetes-client.io/v1 nor external-secrets.io/v1 ExternalSecrets are served by the apiserver: install a CRD from crds/, or set SERVE_APIS");
    }
    Ok(())
}

/// Whether the apiserver serves `K` (a 404 on a one-item list means no such resource).
async fn crd_served<K: FrontEnd>(client: &Client, scope: Option<&str>) -> anyhow::Result<bool> {
    let api: Api<K> = match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        // Installed but not granted to us (RBAC from before this API was served): not ours.
        Err(kube::Error::Api(s)) if s.code == 403 => {
            tracing::warn!(
                api = K::API,
                "the CRD is installed but our RBAC does not allow listing it: not served"
            );
            Ok(false)
        }
        Err(e) => Err(anyhow::anyhow!(
            "checking whether {} is served: {}",
            K::API,
            crate::error::kube_brief(&e)
        )),
    }
}

pub async fn run(mut config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new()?);
    let client = kube_client().await?;
    detect_apis(&client, &mut config).await?;
    let (tokens, kv) = vault_stack(&config, &client, metrics.clone())?;
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
    let shutdown = shutdown_requested();

    // Leader election: `elected` turns true while this replica holds the Lease (always, when
    // election is off).
    let (elected_tx, elected_rx) = watch::channel(false);
    let lease = match &config.leader_election {
        None => {
            shared.set_leading(true);
            let _ = elected_tx.send(true);
            None
        }
        Some(le) => {
            Some(leader::start(le, client, shared.clone(), elected_tx, shutdown.clone()).await?)
        }
    };

    tracing::info!(namespaces = ?config.watched_namespaces, poll_ms = config.poll_interval.as_millis() as u64,
        vault = %config.vault_addr, instance_id = ?config.instance_id, "starting");
    let scopes = start_scopes(
        &shared,
        &shutdown,
        config.leader_election.is_some().then_some(elected_rx),
    );
    let breaker = tokens.http().breaker();
    tokio::spawn(reschedule_on_vault_events(
        shared.clone(),
        breaker.recoveries(),
        breaker.outages(),
        scopes.retrigger.clone(),
    ));
    tokio::spawn(mark_ready(
        health.clone(),
        shared.clone(),
        scopes.retrigger.clone(),
        scopes.secret_indexes.clone(),
    ));
    if let Some(audit) = config.audit.clone() {
        tokio::spawn(audit_listener::listen(
            shared.clone(),
            scopes.retrigger.clone(),
            audit,
        ));
    }
    tokio::spawn(overdue_loop(shared.clone()));
    tokio::spawn(prune_loop(
        shared.clone(),
        scopes.retrigger.clone(),
        config.poll_interval,
    ));

    health.alive.store(true, Ordering::Relaxed);
    let mut shutdown_wait = shutdown.clone();
    tokio::select! {
        _ = futures::future::join_all(scopes.loops) => {}
        _ = async {
            let _ = shutdown_wait.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("grace period over; abandoning in-flight syncs"),
    }
    health.alive.store(false, Ordering::Relaxed);
    health.ready.store(false, Ordering::Relaxed);
    shared.metrics.controller_ready.set(0);
    if !*shutdown.borrow() {
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

/// Ready once every initial list has been seen (Kubernetes readiness semantics: we can do
/// useful work). Vault reachability is reported per object in status, not here: a Vault outage
/// must not take every replica out of its Service.
async fn mark_ready(
    health: Arc<Health>,
    shared: Arc<Shared>,
    objects: Arc<Retrigger>,
    secret_indexes: Vec<Arc<SecretIndex>>,
) {
    // Polled rather than awaited once: a `wait_until_ready` future started before the initial
    // list completed was observed never to wake (kube-runtime 5.0.0).
    loop {
        let ready = shared.namespaces.settled()
            && objects.scopes.iter().all(|s| s.ready())
            && secret_indexes.iter().all(|s| s.listed())
            && shared.stores_ready();
        if ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    health.ready.store(true, Ordering::Relaxed);
    shared.metrics.controller_ready.set(1);
    tracing::info!("initial watch lists complete: ready");
}

/// Drops state and metric series of ExternalSecrets that are gone.
async fn prune_loop(shared: Arc<Shared>, objects: Arc<Retrigger>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(10)));
    loop {
        tick.tick().await;
        prune(&shared, &objects);
    }
}

/// One pass of `prune_loop`. The live objects are looked at where they are stored, and each of
/// the two sets built from them is dropped before the next: at 10,000 objects, copies of their
/// names were the largest part of the heap's peak (docs/benchmarks.md).
fn prune(shared: &Shared, objects: &Retrigger) {
    let live: Vec<_> = objects.scopes.iter().flat_map(|s| s.live(shared)).collect();
    let uids: HashSet<&str> = live.iter().map(|o| o.uid()).collect();
    shared.readers.retain(&uids);
    shared.restarter.retain(&uids);
    shared.objects.prune(&uids);
    drop(uids);
    let names: HashSet<(&str, &str)> = live.iter().map(|o| (o.namespace(), o.name())).collect();
    shared.objects.prune_series(&names);
}

/// Keeps the overdue gauge current (objects not confirmed in sync for three poll intervals).
async fn overdue_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(OVERDUE_EVERY);
    loop {
        tick.tick().await;
        let overdue = shared.objects.overdue(std::time::Instant::now());
        shared
            .metrics
            .overdue
            .set(i64::try_from(overdue).unwrap_or(i64::MAX));
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
