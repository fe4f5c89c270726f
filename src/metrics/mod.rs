//! Prometheus metrics. KES's two metrics keep their names and labels exactly, so dashboards keep
//! working; ours are prefixed `vault_external_secrets_` and have bounded labels only.

pub mod per_object;

use std::ops::Deref;
use std::time::Instant;

use crate::api::eso::metrics::EsoPerObject;
use crate::api::kes::metrics::KesPerObject;
use per_object::{Pieces, ScrapeCursor, PIECE_OBJECTS};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// KES's per-object `sync_calls_count` and `last_sync_call_state`.
    pub per_object: KesPerObject,
    /// ESO's per-object `externalsecret_sync_calls_*` and `externalsecret_status_condition`.
    pub eso_per_object: EsoPerObject,
    /// ESO's `externalsecret_provider_api_calls_count{provider,call,status}`.
    pub provider_calls: IntCounterVec,
    /// Audit-stream entries by result (matched, or why dropped).
    pub audit_events: IntCounterVec,
    /// Vault change event → Secret written.
    pub change_latency: prometheus::Histogram,
    /// Rollout restarts by workload kind and outcome.
    pub rollout_restarts: IntCounterVec,
    pub sync_duration: HistogramVec,
    pub vault_requests: IntCounterVec,
    pub secret_writes: IntCounterVec,
    pub status_writes: IntCounter,
    pub ready: IntGaugeVec,
    pub sync_failures: IntCounterVec,
    pub syncs_in_flight: IntGauge,
    pub queue_depth: IntGaugeVec,
    pub refreshes_deferred: IntCounter,
    pub leader: IntGauge,
    /// 1 once every initial watch list has been seen (what `/readyz` answers), else 0.
    pub controller_ready: IntGauge,
    /// ExternalSecrets not confirmed in sync for more than three of their poll intervals.
    pub overdue: IntGauge,
    /// Template renders (a templated object is rendered only when its inputs changed).
    pub template_renders: IntCounter,
}

impl Metrics {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let sync_duration = HistogramVec::new(
            HistogramOpts::new(
                "vault_external_secrets_sync_duration_seconds",
                "Time to sync one ExternalSecret (Vault reads, render, Secret write), by result",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["result"],
        )?;
        let vault_requests = IntCounterVec::new(
            Opts::new(
                "vault_external_secrets_vault_requests_total",
                "Vault requests (after retries) by operation (login, renew, lookup, mount, read, revoke, health) and outcome",
            ),
            &["operation", "outcome"],
        )?;
        let secret_writes = IntCounterVec::new(
            Opts::new(
                "vault_external_secrets_secret_writes_total",
                "Secret writes by kind: create, update, or skipped (already up to date)",
            ),
            &["kind"],
        )?;
        let status_writes = IntCounter::new(
            "vault_external_secrets_status_writes_total",
            "ExternalSecret status patches sent to the apiserver",
        )?;
        let ready = IntGaugeVec::new(
            Opts::new(
                "vault_external_secrets_externalsecrets",
                "ExternalSecrets handled by this controller, by Ready condition reason",
            ),
            &["reason"],
        )?;
        let sync_failures = IntCounterVec::new(
            Opts::new(
                "vault_external_secrets_sync_failures_total",
                "Failed syncs by reason",
            ),
            &["reason"],
        )?;
        let syncs_in_flight = IntGauge::new(
            "vault_external_secrets_syncs_in_flight",
            "Syncs running now (bounded by SYNC_CONCURRENCY)",
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "vault_external_secrets_queue_depth",
                "Syncs waiting for a slot, by lane (urgent: new or changed objects; periodic: polls and retries)",
            ),
            &["lane"],
        )?;
        let refreshes_deferred = IntCounter::new(
            "vault_external_secrets_refreshes_deferred_total",
            "Periodic refreshes put off because the periodic lane was full (the controller is overloaded: more polls due than its slots serve)",
        )?;
        let leader = IntGauge::new(
            "vault_external_secrets_leader",
            "1 while this replica is the leader (or leader election is off), else 0",
        )?;
        let controller_ready = IntGauge::new(
            "vault_external_secrets_ready",
            "1 once every initial watch list has been seen (what /readyz answers), else 0",
        )?;
        let overdue = IntGauge::new(
            "vault_external_secrets_externalsecrets_overdue",
            "ExternalSecrets not confirmed in sync for more than three of their poll intervals (failing, queued, or never synced)",
        )?;
        let template_renders = IntCounter::new(
            "vault_external_secrets_template_renders_total",
            "Templates rendered (only when the spec or the data read changed since the last render)",
        )?;
        registry.register(Box::new(template_renders.clone()))?;
        let provider_calls = IntCounterVec::new(
            Opts::new(
                "externalsecret_provider_api_calls_count",
                "Number of API calls towards the secret provider (ESO's name and labels)",
            ),
            &["provider", "call", "status"],
        )?;
        registry.register(Box::new(provider_calls.clone()))?;
        let audit_events = IntCounterVec::new(
            Opts::new(
                "vault_external_secrets_audit_events_total",
                "Vault audit-stream entries received, by result: matched (read now), deferred (read at the end of the secret's AUDIT_MIN_REFRESH), or why dropped (source, too_large, not_json, raw_values, not_a_write, unknown_secret, too_soon: a read is already deferred, rate_limited: also counted when a deferred read is refused)",
            ),
            &["result"],
        )?;
        registry.register(Box::new(audit_events.clone()))?;
        let change_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "vault_external_secrets_change_event_seconds",
                "From a Vault change event to the Secret written",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        registry.register(Box::new(change_latency.clone()))?;
        let rollout_restarts = IntCounterVec::new(
            Opts::new(
                "vault_external_secrets_rollout_restarts_total",
                "Rollout restarts of workloads named by an ExternalSecret, by kind and outcome (restarted, not_found, forbidden, error)",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(rollout_restarts.clone()))?;
        // process_resident_memory_bytes, process_cpu_seconds_total, open fds (Linux).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(controller_ready.clone()))?;
        registry.register(Box::new(overdue.clone()))?;
        registry.register(Box::new(syncs_in_flight.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(refreshes_deferred.clone()))?;
        registry.register(Box::new(sync_duration.clone()))?;
        registry.register(Box::new(vault_requests.clone()))?;
        registry.register(Box::new(secret_writes.clone()))?;
        registry.register(Box::new(status_writes.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(sync_failures.clone()))?;
        Ok(Metrics {
            registry,
            per_object: KesPerObject::default(),
            eso_per_object: EsoPerObject::default(),
            provider_calls,
            audit_events,
            change_latency,
            rollout_restarts,
            sync_duration,
            vault_requests,
            secret_writes,
            status_writes,
            ready,
            sync_failures,
            syncs_in_flight,
            queue_depth,
            refreshes_deferred,
            leader,
            controller_ready,
            overdue,
            template_renders,
        })
    }

    /// Counts a sync in flight for as long as the guard lives.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.syncs_in_flight.inc();
        InFlight(&self.syncs_in_flight)
    }

    /// The whole exposition at once.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        Ok(Metrics::scrape(self)?.collect())
    }

    /// The exposition in pieces, as `/metrics` streams it: the registry's families (a fixed
    /// few, bounded labels), then the per-object series (KES's, then ESO's), `PIECE_OBJECTS`
    /// objects a piece.
    pub fn scrape<M: Deref<Target = Metrics>>(
        metrics: M,
    ) -> Result<impl Iterator<Item = String>, prometheus::Error> {
        let mut head = Vec::with_capacity(16 * 1024);
        TextEncoder::new().encode(&metrics.registry.gather(), &mut head)?;
        let head = String::from_utf8(head).map_err(|e| prometheus::Error::Msg(e.to_string()))?;
        let mut cursor = ScrapeCursor::default();
        let pieces = std::iter::from_fn(move || {
            let sets: [&dyn Pieces; 2] = [&metrics.per_object, &metrics.eso_per_object];
            cursor.next_piece(&sets, PIECE_OBJECTS)
        });
        Ok(std::iter::once(head).chain(pieces))
    }

    /// Times one sync; records on drop, so early returns are measured too.
    pub fn sync_timer(&self) -> SyncTimer<'_> {
        SyncTimer {
            metrics: self,
            start: Instant::now(),
            result: "error",
        }
    }
}

pub struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub struct SyncTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
    result: &'static str,
}

impl SyncTimer<'_> {
    pub fn success(&mut self) {
        self.result = "success";
    }
}

impl Drop for SyncTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .sync_duration
            .with_label_values(&[self.result])
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kes_names_are_exposed() {
        let m = Metrics::new().unwrap();
        m.per_object.record("default", "rabbitmq", "vault", true);
        {
            let mut t = m.sync_timer();
            t.success();
        }
        let text = m.encode().unwrap();
        assert!(text.contains(
            r#"kubernetes_external_secrets_sync_calls_count{backend="vault",name="rabbitmq",namespace="default",status="success"} 1"#
        ), "{text}");
        assert!(text.contains(
            r#"kubernetes_external_secrets_last_sync_call_state{backend="vault",name="rabbitmq",namespace="default"} 1"#
        ));
        assert!(text
            .contains(r#"vault_external_secrets_sync_duration_seconds_count{result="success"} 1"#));
        m.per_object.retain(|_, _| false);
        assert!(!m.encode().unwrap().contains("rabbitmq"));
    }
}
