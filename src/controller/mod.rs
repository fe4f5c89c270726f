//! The controller: watches feed an ExternalSecret at a time to `reconcile`, which admits it
//! (`admit`: served here, leading, which lane) and then, in the runner's task, waits for a
//! sync slot (`gate`), asks the KES front-end for a `SyncSpec`, runs the engine (fetch, render,
//! write), then reports (`report`: status only on change, Events, metrics) and schedules the
//! next poll (`schedule`). Each scope's `runner` takes due objects from its `queue`. The watch keeps each object packed (`stored`); per-object memory is
//! `objects`; wiring (watches, leader election, Vault events, shutdown) is `run`.

mod audit_listener;
mod budget;
mod credentials;
pub(crate) mod eso;
mod eso_stores;
mod event_pacing;
mod front_end;
mod gate;
mod kes;
mod leader;
pub mod namespaces;
mod objects;
mod queue;
mod readers;
mod reconcile;
mod report;
pub mod rollout;
pub mod rollout_outcomes;
mod run;
mod runner;
pub mod schedule;
mod scope_store;
mod secret_index;
mod stored;
pub mod template_sources;
mod triggers;
mod watches;
mod write_loop;

#[cfg(test)]
mod fixtures;

pub use front_end::{Due, FrontEnd, Poll};
pub use reconcile::error_policy;
pub use report::{status_heartbeat, STATUS_HEARTBEAT};
pub use run::{kube_client, run, vault_stack};
pub use template_sources::TemplateSources;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::api::kes::Defaults;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::vault::KvReader;
use eso_stores::EsoStores;
use gate::Gate;
use namespaces::NamespaceIndex;
use objects::Objects;
use readers::Readers;
use secret_index::SecretIndex;

/// What one controller process shares across namespaces.
pub struct Shared {
    pub client: Client,
    pub config: Config,
    pub defaults: Defaults,
    pub kv: KvReader,
    pub metrics: Arc<Metrics>,
    /// Everything remembered per object between syncs.
    pub objects: Objects,
    /// KES's namespace guard and ESO's store conditions: the watched Namespaces' metadata.
    pub namespaces: NamespaceIndex,
    /// ESO's SecretStores and ClusterSecretStores.
    pub eso: EsoStores,
    /// Which objects read which secret (change events; kept only with `AUDIT_LISTEN_ADDR`).
    pub readers: Readers,
    /// Rollout restarts of the workloads an ExternalSecret names, batched per workload.
    pub restarter: Arc<rollout::Restarter>,
    /// ESO `templateFrom` ConfigMaps and Secrets, read once per cache lifetime.
    pub template_sources: template_sources::TemplateSources,
    /// Warnings go through one Recorder, whose cache turns a repeated warning into a series.
    warnings: Recorder,
    reporter: Reporter,
    /// Sync slots (`SYNC_CONCURRENCY`), new and changed objects first.
    gate: Gate,
    /// Heartbeat-only status writes, all objects together (`report::heartbeat`).
    heartbeats: budget::Budget,
    /// This replica may write (it holds the Lease, or leader election is off). Checked before
    /// every write, so a replica that loses the Lease stops writing at once.
    leading: AtomicBool,
}

impl Shared {
    pub fn new(
        client: Client,
        config: Config,
        kv: KvReader,
        metrics: Arc<Metrics>,
        reporter: Reporter,
    ) -> Self {
        let defaults = Defaults::from_config(&config);
        Shared {
            gate: Gate::new(usize::from(config.sync_concurrency), metrics.clone()),
            heartbeats: budget::Budget::per_second(report::HEARTBEATS_PER_SECOND),
            warnings: Recorder::new(client.clone(), reporter.clone()),
            objects: Objects::new(metrics.clone()),
            namespaces: NamespaceIndex::default(),
            eso: EsoStores::new(&run::scope_list(&config)),
            readers: Readers::default(),
            template_sources: template_sources::TemplateSources::new(
                client.clone(),
                run::read_cache_ttl(config.poll_interval),
            ),
            restarter: rollout::Restarter::new(
                client.clone(),
                Recorder::new(client.clone(), reporter.clone()),
                config.rollout_min_interval,
                metrics.clone(),
            ),
            client,
            config,
            defaults,
            kv,
            metrics,
            reporter,
            leading: AtomicBool::new(false),
        }
    }

    /// ESO's stores are listed (or ESO's API is not served).
    pub fn stores_ready(&self) -> bool {
        !self.config.apis.eso || self.eso.ready()
    }

    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
        self.metrics.leader.set(i64::from(leading));
    }
}

/// One namespace's (or the cluster's) view: the shared parts and our Secrets' versions.
pub struct Context {
    pub shared: Arc<Shared>,
    pub secrets: Arc<SecretIndex>,
}
