//! Reconciling one ExternalSecret: plan → coalesced Vault reads → render → write if changed →
//! status (only on change) → metrics and Events. Wiring (watches, namespaces, shutdown) is in
//! `run`.

mod gate;
mod leader;
pub mod namespaces;
mod run;
pub mod schedule;
mod secret_index;
pub mod status;
mod write_loop;

pub use run::{kube_client, run};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::config::Config;
use crate::crd::ExternalSecret;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::render::{self, Defaults, WriteDecision};
use crate::vault::KvReader;
use gate::{Gate, Lane};
use namespaces::{Known, NamespaceIndex};
use secret_index::SecretIndex;
use status::Outcome;

/// Field manager and Event reporter name.
pub const MANAGER: &str = "vault-external-secrets";
/// How often `lastSync` is refreshed while nothing changes.
pub const STATUS_HEARTBEAT: Duration = Duration::from_secs(300);

/// What one controller process shares across namespaces.
pub struct Shared {
    pub client: Client,
    pub config: Config,
    pub defaults: Defaults,
    pub kv: KvReader,
    pub metrics: Arc<Metrics>,
    /// Warnings go through one Recorder, whose cache turns a repeated warning into a series.
    warnings: Recorder,
    reporter: Reporter,
    objects: Mutex<HashMap<String, ObjectState>>,
    /// Sync slots (`SYNC_CONCURRENCY`), new and changed objects first.
    gate: Gate,
    /// This replica may write (it holds the Lease, or leader election is off). Checked before
    /// every write, so a replica that loses the Lease stops writing at once.
    leading: AtomicBool,
    /// KES's namespace guard: the annotations of the watched Namespaces.
    pub namespaces: NamespaceIndex,
}

/// What we remember of each ExternalSecret (by uid) between syncs. No secret values: the
/// fingerprint is a digest of the desired Secret.
#[derive(Default)]
struct ObjectState {
    /// Fingerprint of what we last wrote or confirmed, and the Secret's resourceVersion then.
    synced: Option<([u8; 32], String)>,
    failures: u32,
    /// `metadata.generation` at the last sync attempt: a different one means the spec changed.
    generation: Option<i64>,
    reason: &'static str,
    /// Last warning Event (message, when), to publish a repeat at most every heartbeat.
    last_warning: Option<(String, Instant)>,
    /// Our recent restores of a Secret someone else changed (write-loop detection).
    restores: write_loop::Restores,
}

impl Shared {
    pub fn new(
        client: Client,
        config: Config,
        kv: KvReader,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        let defaults = Defaults {
            mount_point: config.default_mount_point.clone(),
            role: config.default_role.clone(),
        };
        Shared {
            gate: Gate::new(usize::from(config.sync_concurrency)),
            warnings: Recorder::new(client.clone(), reporter.clone()),
            client,
            config,
            defaults,
            kv,
            metrics,
            reporter,
            objects: Mutex::new(HashMap::new()),
            leading: AtomicBool::new(false),
            namespaces: NamespaceIndex::default(),
        }
    }

    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, HashMap<String, ObjectState>> {
        // Poisoning only means a panic elsewhere; the map itself stays consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `INSTANCE_ID` against `spec.controllerId`, as KES: equal, where unset equals unset.
    pub fn handles(&self, es: &ExternalSecret) -> bool {
        let id = es.spec.controller_id.as_deref().filter(|s| !s.is_empty());
        id == self.config.instance_id.as_deref()
    }

    /// Forgets ExternalSecrets that are gone (deleted, or no longer ours), with their metric
    /// series. `live` holds the uids still present, `live_names` their names by namespace.
    pub fn prune(&self, live: &HashSet<String>, live_names: &HashMap<String, HashSet<String>>) {
        self.metrics
            .per_object
            .retain(|ns, name| live_names.get(ns).is_some_and(|names| names.contains(name)));
        let mut objects = self.objects();
        objects.retain(|uid, st| {
            if live.contains(uid) {
                return true;
            }
            if !st.reason.is_empty() {
                self.metrics.ready.with_label_values(&[st.reason]).dec();
            }
            false
        });
    }

    /// Uids of the ExternalSecrets whose last sync failed (to reschedule when Vault recovers).
    pub fn failing(&self) -> HashSet<String> {
        self.objects()
            .iter()
            .filter(|(_, st)| st.failures > 0)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// KES's namespace guard for this object (`reconcile` waits for the Namespaces' list).
    fn namespace_permits(&self, es: &ExternalSecret) -> Result<(), Error> {
        let ns = es.namespace().unwrap_or_default();
        let guard = match self.namespaces.lookup(&ns) {
            Known::Pending => {
                return Err(Error::Forbidden(format!(
                    "the annotations of Namespace {ns} are not known yet"
                )))
            }
            Known::Unreadable(why) => {
                return Err(Error::Forbidden(format!(
                    "cannot read Namespace {ns} to check its annotations ({why}); denied until it can be read"
                )))
            }
            Known::Guard(g) => g,
        };
        let req = namespaces::Request {
            keys: es.spec.vault_keys().collect(),
            role: es.spec.vault_role.as_deref().filter(|r| !r.is_empty()),
        };
        namespaces::check(&self.config.namespace_guard, &ns, guard.as_ref(), &req)
            .map_err(Error::Forbidden)
    }

    /// Publishes how many syncs wait for a slot, per lane.
    pub fn report_queue_depth(&self) {
        for lane in Lane::ALL {
            let depth = i64::try_from(self.gate.waiting(lane)).unwrap_or(i64::MAX);
            self.metrics
                .queue_depth
                .with_label_values(&[lane.as_str()])
                .set(depth);
        }
    }

    /// Whether a watch event can need a sync: the object was not attempted yet, or its spec
    /// changed (generation) since. Our own status patches and label edits cannot. Replaces
    /// kube-runtime's generation predicate, which keeps its own map of every object's reference
    /// (four strings each) next to ours.
    pub fn needs_sync(&self, es: &ExternalSecret) -> bool {
        let Some(uid) = es.meta().uid.as_deref() else {
            return true;
        };
        let attempted = self.objects().get(uid).and_then(|st| st.generation);
        spec_changed(attempted, es.meta().generation)
    }

    /// Urgent when the watch filter would let the object through (never attempted by this
    /// process — new, or a new leader — or its spec changed since); else a poll or a retry.
    fn lane(&self, es: &ExternalSecret) -> Lane {
        if self.needs_sync(es) {
            Lane::Urgent
        } else {
            Lane::Periodic
        }
    }

    fn set_reason(&self, uid: &str, reason: &'static str) {
        let mut objects = self.objects();
        let st = objects.entry(uid.to_string()).or_default();
        if st.reason != reason {
            if !st.reason.is_empty() {
                self.metrics.ready.with_label_values(&[st.reason]).dec();
            }
            self.metrics.ready.with_label_values(&[reason]).inc();
            st.reason = reason;
        }
    }
}

/// One namespace's (or the cluster's) view: the shared parts and our Secrets' versions.
pub struct Context {
    pub shared: Arc<Shared>,
    pub secrets: Arc<SecretIndex>,
}

/// Counts a sync in flight for as long as it lives.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(g: &'a prometheus::IntGauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum Written {
    Created,
    Updated,
    Unchanged,
}

pub async fn reconcile(es: Arc<ExternalSecret>, ctx: Arc<Context>) -> Result<Action, Error> {
    let shared = &ctx.shared;
    if !shared.handles(&es) || es.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !shared.leading() {
        // A follower keeps its watches warm; on election every object is reconciled.
        return Ok(Action::await_change());
    }
    let Some(uid) = es.uid() else {
        return Ok(Action::await_change());
    };
    if !shared.namespaces.settled() {
        // KES's guard cannot be decided before the Namespaces are listed (readiness waits for
        // it too); nothing is read or written meanwhile.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let lane = shared.lane(&es);
    let _slot = shared.gate.acquire(lane).await;
    shared.objects().entry(uid.clone()).or_default().generation = es.meta().generation;
    // Boxed: while waiting above, a reconcile future stays small (after a burst, up to
    // `run::STARTED_SYNCS` of them wait at the gate at once).
    Box::pin(sync_and_report(es, uid, &ctx)).await
}

/// One sync in its slot: the Vault reads and writes, then status, metrics, Event, next poll.
async fn sync_and_report(
    es: Arc<ExternalSecret>,
    uid: String,
    ctx: &Context,
) -> Result<Action, Error> {
    let shared = &ctx.shared;
    let (name, ns) = (es.name_any(), es.namespace().unwrap_or_default());
    let _in_flight = InFlight::new(&shared.metrics.syncs_in_flight);
    let mut timer = shared.metrics.sync_timer();
    let result = sync(&es, &uid, ctx).await;
    if matches!(result, Err(Error::NotLeader)) {
        return Ok(Action::await_change());
    }
    let backend = es.backend().as_str();
    let outcome = match &result {
        Ok((written, _)) => {
            timer.success();
            match written {
                Written::Created => tracing::info!(%name, namespace = %ns, "created Secret"),
                Written::Updated => tracing::info!(%name, namespace = %ns, "updated Secret"),
                Written::Unchanged => tracing::debug!(%name, namespace = %ns, "Secret unchanged"),
            }
            Outcome::synced()
        }
        Err(e) => {
            tracing::warn!(%name, namespace = %ns, reason = e.reason(), error = %e, "sync failed");
            shared
                .metrics
                .sync_failures
                .with_label_values(&[e.reason()])
                .inc();
            Outcome {
                ok: false,
                reason: e.reason(),
                message: e.to_string(),
            }
        }
    };
    shared
        .metrics
        .per_object
        .record(&ns, &name, backend, outcome.ok);
    shared.set_reason(&uid, outcome.reason);

    write_status(&es, shared, &outcome).await;
    publish_event(&es, &uid, shared, &result).await;

    match result {
        Ok((_, phase)) => {
            let mut objects = shared.objects();
            let st = objects.entry(uid).or_default();
            st.failures = 0;
            if shared.config.disable_polling {
                return Ok(Action::await_change());
            }
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            let next = schedule::next_poll(phase, shared.config.poll_interval, now_ms);
            Ok(Action::requeue(next))
        }
        Err(e) => Err(e),
    }
}

/// Pure part of `Shared::needs_sync`: `attempted` is the generation of the last sync attempt.
fn spec_changed(attempted: Option<i64>, current: Option<i64>) -> bool {
    attempted.is_none() || attempted != current
}

pub fn error_policy(es: Arc<ExternalSecret>, err: &Error, ctx: Arc<Context>) -> Action {
    let mut objects = ctx.shared.objects();
    let failures = es.uid().map_or(1, |uid| {
        let st = objects.entry(uid).or_default();
        st.failures = st.failures.saturating_add(1);
        st.failures
    });
    let backoff = schedule::failure_backoff(
        failures,
        err.is_transient(),
        ctx.shared.config.poll_interval,
        rand::random::<f64>(),
    );
    Action::requeue(backoff)
}

/// Reads, renders and writes. Returns what was written and the object's poll phase.
async fn sync(es: &ExternalSecret, uid: &str, ctx: &Context) -> Result<(Written, u64), Error> {
    let shared = &ctx.shared;
    // Denied objects read nothing from Vault and leave their Secret as it is.
    shared.namespace_permits(es)?;
    let plan = render::plan(es, &shared.defaults)?;
    let phase = schedule::phase_key(&plan.sources[0].read().api_path);

    let results = shared.kv.read_all(plan.reads()).await;
    let mut fetched = std::collections::BTreeMap::new();
    // Report the first failing key in spec order, so the message is stable between polls.
    for source in &plan.sources {
        match results.get(source.read()) {
            Some(Ok(data)) => {
                fetched.insert(source.read().clone(), data.clone());
            }
            Some(Err(e)) => return Err(Error::from_vault(source.key(), e.clone())),
            None => {}
        }
    }
    let desired = render::render(es, &plan, &fetched)?;
    drop(fetched);
    let fingerprint = desired.fingerprint();

    // Steady state: same desired content as last time, and the Secret has not changed since
    // (its resourceVersion in our metadata-only watch is the one we wrote or read): no request.
    let current_rv = ctx
        .secrets
        .resource_version(&desired.namespace, &desired.name);
    let known = shared.objects().get(uid).and_then(|s| s.synced.clone());
    if let (Some((fp, rv)), Some(cur)) = (&known, &current_rv) {
        if *fp == fingerprint && rv == cur {
            if let Some(st) = shared.objects().get_mut(uid) {
                st.restores.clear();
            }
            shared
                .metrics
                .secret_writes
                .with_label_values(&["skipped"])
                .inc();
            return Ok((Written::Unchanged, phase));
        }
    }
    // Someone else changed the Secret since our last write, and we want the same content as
    // then: writing now restores it. Counted, to stop a loop with another controller.
    let restoring = matches!((&known, &current_rv), (Some((fp, rv)), Some(cur)) if *fp == fingerprint && rv != cur);

    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &desired.namespace);
    // Our watch has no Secret of that name: create straight away (one request instead of a GET
    // and a POST for every new object). A 409 means one exists that our label-selected watch
    // does not show (someone else's, or not seen yet): read it and decide as usual.
    let known_absent = current_rv.is_none() && ctx.secrets.listed();
    let (written, rv) = if known_absent {
        match write(&api, &desired, None, shared).await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {
                let existing = api.get_opt(&desired.name).await?;
                write(&api, &desired, existing.as_ref(), shared).await?
            }
            other => other?,
        }
    } else {
        let existing = api.get_opt(&desired.name).await?;
        if restoring {
            check_write_loop(shared, uid, &desired, existing.as_ref())?;
        }
        write(&api, &desired, existing.as_ref(), shared).await?
    };
    if let Some(rv) = rv {
        shared.objects().entry(uid.to_string()).or_default().synced = Some((fingerprint, rv));
    }
    Ok((written, phase))
}

/// Before restoring a Secret another writer changed: a third restore within the window is a
/// loop, so refuse it (and name the other writer); otherwise count this one.
fn check_write_loop(
    shared: &Shared,
    uid: &str,
    desired: &render::DesiredSecret,
    existing: Option<&Secret>,
) -> Result<(), Error> {
    let Some(existing) = existing else {
        return Ok(());
    };
    if !matches!(
        render::decide_write(desired, Some(existing)),
        Ok(WriteDecision::Update(_))
    ) {
        return Ok(());
    }
    let now = Instant::now();
    let mut objects = shared.objects();
    let st = objects.entry(uid.to_string()).or_default();
    if st.restores.would_loop(now) {
        return Err(Error::WriteLoop {
            name: desired.name.clone(),
            by: write_loop::other_writer(existing, MANAGER),
            count: write_loop::LOOP_LIMIT - 1,
        });
    }
    st.restores.count(now, true);
    Ok(())
}

/// Creates, replaces or leaves the Secret, as `decide_write` says. Returns what happened and the
/// Secret's resourceVersion afterwards.
async fn write(
    api: &Api<Secret>,
    desired: &render::DesiredSecret,
    existing: Option<&Secret>,
    shared: &Shared,
) -> Result<(Written, Option<String>), Error> {
    let decision = render::decide_write(desired, existing)?;
    if !matches!(decision, WriteDecision::Unchanged) && !shared.leading() {
        return Err(Error::NotLeader);
    }
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let (written, kind, rv) = match decision {
        WriteDecision::Create(secret) => {
            let s = api.create(&pp, &secret).await?;
            (Written::Created, "create", s.resource_version())
        }
        WriteDecision::Update(secret) => {
            let s = api.replace(&desired.name, &pp, &secret).await?;
            (Written::Updated, "update", s.resource_version())
        }
        WriteDecision::Unchanged => (
            Written::Unchanged,
            "skipped",
            existing.and_then(|s| s.resource_version()),
        ),
    };
    shared
        .metrics
        .secret_writes
        .with_label_values(&[kind])
        .inc();
    Ok((written, rv))
}

async fn write_status(es: &ExternalSecret, shared: &Shared, outcome: &Outcome) {
    let Some(status) = status::next_status(
        es.status.as_ref(),
        outcome,
        es.meta().generation,
        chrono::Utc::now(),
        STATUS_HEARTBEAT,
    ) else {
        return;
    };
    if !shared.leading() {
        return;
    }
    let ns = es.namespace().unwrap_or_default();
    let api: Api<ExternalSecret> = Api::namespaced(shared.client.clone(), &ns);
    let patch = Patch::Merge(json!({ "status": status }));
    match api
        .patch_status(&es.name_any(), &PatchParams::default(), &patch)
        .await
    {
        Ok(_) => shared.metrics.status_writes.inc(),
        Err(e) => {
            tracing::warn!(name = %es.name_any(), namespace = %ns, error = %e, "could not write status")
        }
    }
}

async fn publish_event(
    es: &ExternalSecret,
    uid: &str,
    shared: &Shared,
    result: &Result<(Written, u64), Error>,
) {
    let event = match result {
        Ok((Written::Created, _)) => Some((
            EventType::Normal,
            "Created",
            "Created Secret from Vault".to_string(),
        )),
        Ok((Written::Updated, _)) => Some((
            EventType::Normal,
            "Updated",
            "Updated Secret from Vault".to_string(),
        )),
        Ok((Written::Unchanged, _)) => None,
        Err(e) => {
            let message = e.to_string();
            let mut objects = shared.objects();
            let st = objects.entry(uid.to_string()).or_default();
            let repeat = st
                .last_warning
                .as_ref()
                .is_some_and(|(m, at)| *m == message && at.elapsed() < STATUS_HEARTBEAT);
            if repeat {
                None
            } else {
                st.last_warning = Some((message.clone(), Instant::now()));
                Some((EventType::Warning, "SyncFailed", message))
            }
        }
    };
    if result.is_ok() {
        if let Some(st) = shared.objects().get_mut(uid) {
            st.last_warning = None;
        }
    }
    let Some((type_, reason, note)) = event else {
        return;
    };
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Sync".into(),
        secondary: None,
    };
    // Created/Updated are one-offs: a throwaway Recorder keeps them out of the shared cache,
    // which would otherwise hold one Event per object for minutes (10,000 after a first sync).
    let published = if type_ == EventType::Warning {
        shared.warnings.publish(&ev, &es.object_ref(&())).await
    } else {
        Recorder::new(shared.client.clone(), shared.reporter.clone())
            .publish(&ev, &es.object_ref(&()))
            .await
    };
    if let Err(e) = published {
        tracing::warn!(name = %es.name_any(), error = %e, "could not publish Event");
    }
}

#[cfg(test)]
mod tests {
    use super::spec_changed;

    #[test]
    fn only_new_objects_and_spec_changes_pass_the_watch_filter() {
        assert!(spec_changed(None, Some(1)), "never attempted");
        assert!(spec_changed(None, None), "never attempted, no generation");
        assert!(
            !spec_changed(Some(3), Some(3)),
            "status patch or label edit"
        );
        assert!(spec_changed(Some(3), Some(4)), "spec edited");
    }
}
