//! One ExternalSecret's turn, for either API: gate → front-end checks and translation → engine
//! (fetch, render, write unless nothing changed) → report → next poll or backoff.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tracing::Instrument;

use super::front_end::{Due, FrontEnd, Poll};
use super::gate::Lane;
use super::runner::Next;
use super::stored::Stored;
use super::{report, schedule, write_loop, Context, Shared};
use crate::config::Config;
use crate::engine::write::{self, Write, MANAGER};
use crate::engine::{fetch, find, inputs_digest, plan, render, DesiredSecret};
use crate::error::Error;

/// What a due object needs, decided at once: nothing (`Done`), or a sync slot in a lane.
#[derive(Debug)]
pub enum Admission {
    Done(Next),
    Wait {
        lane: Lane,
        /// When a change event from Vault's audit stream made it urgent.
        changed_at: Option<Instant>,
    },
}

/// Whether a due object is synced now, and in which lane. It looks only at what the store
/// keeps outside the packed object and waits for nothing, so the runner decides it before it
/// starts a sync: up to `runner::STARTED_SYNCS` syncs wait at the gate at once, and each holds
/// only what its slot needs.
pub fn admit<K: FrontEnd>(stored: &Stored<K>, shared: &Shared) -> Admission {
    if !K::serves(stored.route(), stored.namespace(), shared) {
        return Admission::Done(Next::Await);
    }
    if !shared.leading() {
        // A follower keeps its watches warm; on election every object is reconciled.
        return Admission::Done(Next::Await);
    }
    let uid = stored.uid();
    if !shared.namespaces.settled() {
        // KES's guard and ESO's store conditions cannot be decided before the Namespaces are
        // listed (readiness waits for it too); nothing is read or written meanwhile.
        return Admission::Done(Next::After(Duration::from_secs(1)));
    }
    // New to this process or spec changed: someone waits for it. Else a poll or a retry.
    // A change event from Vault's audit stream makes it urgent too.
    let changed_at = shared.objects.take_changed(uid);
    let lane = if shared.objects.needs_sync(uid, stored.generation()) || changed_at.is_some() {
        Lane::Urgent
    } else {
        Lane::Periodic
    };
    if lane == Lane::Periodic && shared.gate.periodic_full() {
        // Overloaded: more refreshes due than the slots serve. This one tries again later
        // rather than hold one of the started syncs that a new object needs.
        shared.metrics.refreshes_deferred.inc();
        let interval = shared
            .objects
            .poll_interval(uid)
            .unwrap_or(shared.config.poll_interval);
        return Admission::Done(Next::After(schedule::deferred(
            shared.objects.phase(uid),
            interval,
            now_ms(),
        )));
    }
    Admission::Wait { lane, changed_at }
}

/// An admitted object's sync: waits for a slot in its lane, then decodes the object and syncs.
/// `due`: since when it is due (the queue's `Due::since`).
pub async fn in_slot<K: FrontEnd>(
    stored: Arc<Stored<K>>,
    ctx: Arc<Context>,
    lane: Lane,
    changed_at: Option<Instant>,
    due: tokio::time::Instant,
) -> Result<Next, Error> {
    let shared = &ctx.shared;
    let _slot = shared.gate.acquire(lane).await;
    let es = match stored.decode() {
        Ok(es) => Arc::new(es),
        Err(e) => {
            tracing::error!(namespace = stored.namespace(), name = stored.name(), error = %e, "not syncing");
            return Ok(Next::Await);
        }
    };
    if es.meta().deletion_timestamp.is_some() {
        return Ok(Next::Await);
    }
    if let Due::Skip(why) = es.due(shared) {
        tracing::debug!(
            namespace = stored.namespace(),
            name = stored.name(),
            why,
            "not syncing"
        );
        return Ok(Next::Await);
    }
    let uid = stored.shared_uid().clone();
    shared.objects.begin(
        &uid,
        es.meta().generation,
        poll_interval(es.poll(shared), &shared.config),
        Instant::now(),
    );
    let span = tracing::info_span!(
        "sync",
        api = K::API,
        namespace = stored.namespace(),
        name = stored.name()
    );
    // Boxed: while waiting above, a sync stays small.
    Box::pin(sync_and_report(es, uid, changed_at, due, &ctx).instrument(span)).await
}

/// One sync in its slot: the Vault reads and writes, then status, metrics, Event, next poll.
async fn sync_and_report<K: FrontEnd>(
    es: Arc<K>,
    uid: Arc<str>,
    changed_at: Option<Instant>,
    due: tokio::time::Instant,
    ctx: &Context,
) -> Result<Next, Error> {
    let shared = &ctx.shared;
    let _in_flight = shared.metrics.in_flight();
    let mut timer = shared.metrics.sync_timer();
    let result = sync(es.as_ref(), &uid, due, ctx).await;
    if matches!(result, Err(Error::NotLeader)) {
        return Ok(Next::Await);
    }
    match &result {
        Ok((written, _, data_changed)) => {
            timer.success();
            if *data_changed {
                shared.restarter.secret_changed(es.as_ref()).await;
            }
            if let (Some(at), Write::Create(()) | Write::Update(())) = (changed_at, written) {
                shared
                    .metrics
                    .change_latency
                    .observe(at.elapsed().as_secs_f64());
            }
            match written {
                Write::Create(()) => tracing::info!("created Secret"),
                Write::Update(()) => tracing::info!("updated Secret"),
                Write::Delete(()) => tracing::info!("deleted Secret: Vault has none of its data"),
                Write::Unchanged => tracing::debug!("Secret unchanged"),
            }
        }
        Err(e) => {
            tracing::warn!(reason = e.reason(), error = %e, "sync failed");
            shared
                .metrics
                .sync_failures
                .with_label_values(&[e.reason()])
                .inc();
        }
    }
    report::report(
        es.as_ref(),
        &uid,
        shared,
        result.as_ref().map(|(w, _, _)| w),
    )
    .await;
    let (_, phase, _) = result?;
    shared.objects.succeeded(&uid, phase, Instant::now());
    let Some(interval) = poll_interval(es.poll(shared), &shared.config) else {
        return Ok(Next::Await);
    };
    Ok(Next::After(schedule::next_poll(phase, interval, now_ms())))
}

/// Wall-clock milliseconds since the Unix epoch (poll slots are wall-clock aligned).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The object's poll interval, `None` when it is not polled.
fn poll_interval(poll: Poll, config: &Config) -> Option<Duration> {
    match poll {
        _ if config.disable_polling => None,
        Poll::Never => None,
        Poll::Controller => Some(config.poll_interval),
        Poll::Every(d) => Some(d),
    }
}

/// When to retry after a failed sync.
pub fn error_policy<K: FrontEnd>(
    stored: Arc<Stored<K>>,
    err: &Error,
    ctx: Arc<Context>,
) -> Duration {
    let failures = ctx.shared.objects.failed(stored.uid());
    // The interval recorded when the sync began: no second decode on the failure path.
    let interval = ctx
        .shared
        .objects
        .poll_interval(stored.uid())
        .unwrap_or(ctx.shared.config.poll_interval);
    schedule::failure_backoff(
        failures,
        err.is_transient(),
        interval,
        rand::random::<f64>(),
    )
}

/// Check and translate, fetch and render, write. Returns what was written, the poll phase, and
/// whether the Secret's data changed (an update, not a creation or a metadata-only write).
async fn sync<K: FrontEnd>(
    es: &K,
    uid: &str,
    due: tokio::time::Instant,
    ctx: &Context,
) -> Result<(Write, u64, bool), Error> {
    let shared = &ctx.shared;
    // Reads begun since the object fell due answer it as well as its own would.
    let kv = shared.kv.for_sync_due(due);
    // Denied objects read nothing from Vault and leave their Secret as it is.
    let mut spec = es.spec(shared)?;
    shared.template_sources.resolve(&mut spec).await?;
    // Finds listed first, so change events know every secret the object reads.
    let spec = find::expand(&kv, &spec).await?;
    if shared.config.audit.is_some() {
        shared.readers.record(uid, plan::reads(&spec).collect());
    }
    let phase = plan::phase(&spec);
    let fetched = fetch(&kv, &spec).await?;

    // Steady state: same desired content as last time, and the Secret has not changed since
    // (its resourceVersion in our metadata-only watch is the one we wrote or read): no request.
    let current_rv = ctx
        .secrets
        .resource_version(&spec.target.namespace, &spec.target.name);
    let known = shared.objects.written(uid);
    let unchanged = |fingerprint: &[u8; 32]| matches!((&known, &current_rv), (Some((fp, rv)), Some(cur)) if fp == fingerprint && rv == cur);
    // A template is rendered only when what it renders from changed (the spec, the data read).
    let inputs = spec
        .target
        .template
        .is_some()
        .then(|| inputs_digest(&spec, &fetched));
    if let Some(fingerprint) = inputs.and_then(|i| shared.objects.rendered_from(uid, &i)) {
        if unchanged(&fingerprint) {
            return Ok(skipped(shared, uid, phase));
        }
    }
    let desired = render(&spec, &fetched)?;
    let fingerprint = desired.fingerprint();
    if let Some(inputs) = inputs {
        shared.metrics.template_renders.inc();
        shared.objects.record_rendered(uid, inputs, fingerprint);
    }
    if unchanged(&fingerprint) {
        return Ok(skipped(shared, uid, phase));
    }
    // Someone else changed the Secret since our last write, and we want the same content as
    // then: writing now restores it. Counted, to stop a loop with another controller.
    let restoring = matches!((&known, &current_rv), (Some((fp, rv)), Some(cur)) if *fp == fingerprint && rv != cur);

    let api: Api<Secret> = Api::namespaced(shared.client.clone(), &desired.namespace);
    let known_absent = current_rv.is_none() && ctx.secrets.listed();
    let data_changed = AtomicBool::new(false);
    let allow = |decision: &Write<Secret>, existing: Option<&Secret>| {
        allow_write(shared, uid, &desired, decision, existing, restoring)?;
        if let (Write::Update(next), Some(existing)) = (decision, existing) {
            data_changed.store(next.data != existing.data, Ordering::Relaxed);
        }
        Ok(())
    };
    let (written, rv) = write::apply(&api, &desired, known_absent, allow).await?;
    shared
        .metrics
        .secret_writes
        .with_label_values(&[written.as_str()])
        .inc();
    if let Some(rv) = rv {
        shared.objects.record_written(uid, fingerprint, rv);
    }
    Ok((written, phase, data_changed.load(Ordering::Relaxed)))
}

/// Nothing to write: the Secret holds what we want.
fn skipped(shared: &Shared, uid: &str, phase: u64) -> (Write, u64, bool) {
    shared.objects.undisturbed(uid);
    shared
        .metrics
        .secret_writes
        .with_label_values(&["skipped"])
        .inc();
    (Write::Unchanged, phase, false)
}

/// Vets a write before it is sent: only the leader writes, and the third restore of a Secret
/// another writer keeps changing is refused (a write loop), naming that writer.
pub(super) fn allow_write(
    shared: &Shared,
    uid: &str,
    desired: &DesiredSecret,
    decision: &Write<Secret>,
    existing: Option<&Secret>,
    restoring: bool,
) -> Result<(), Error> {
    if matches!(decision, Write::Unchanged) {
        return Ok(());
    }
    if !shared.leading() {
        return Err(Error::NotLeader);
    }
    if let (true, Write::Update(_), Some(existing)) = (restoring, decision, existing) {
        if let Some(count) = shared.objects.restore(uid, Instant::now()) {
            return Err(Error::WriteLoop {
                name: desired.name.clone(),
                by: write_loop::other_writer(existing, MANAGER),
                count,
            });
        }
    }
    Ok(())
}
