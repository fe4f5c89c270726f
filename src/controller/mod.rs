//! The controller: watches feed an ExternalSecret at a time to `reconcile`, which waits for a
//! sync slot (`gate`), asks the KES front-end for a `SyncSpec`, runs the engine (fetch, render,
//! write), then reports (`report`: status only on change, Events, metrics) and schedules the
//! next poll (`schedule`). Per-object memory is `objects`; wiring (watches, leader election,
//! Vault events, shutdown) is `run`.

mod credentials;
mod gate;
mod leader;
pub mod namespaces;
mod objects;
mod reconcile;
mod report;
mod run;
pub mod schedule;
mod secret_index;
mod triggers;
mod watches;
mod write_loop;

#[cfg(test)]
mod fixtures;

pub use reconcile::{error_policy, reconcile};
pub use run::{kube_client, run};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::api::kes::{self, crd::ExternalSecret, Defaults};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::vault::KvReader;
use gate::Gate;
use namespaces::NamespaceIndex;
use objects::Objects;
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
    /// KES's namespace guard: the annotations of the watched Namespaces.
    pub namespaces: NamespaceIndex,
    /// Warnings go through one Recorder, whose cache turns a repeated warning into a series.
    warnings: Recorder,
    reporter: Reporter,
    /// Sync slots (`SYNC_CONCURRENCY`), new and changed objects first.
    gate: Gate,
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
        let defaults = Defaults {
            mount_point: config.default_mount_point.clone(),
            role: config.default_role.clone(),
        };
        Shared {
            gate: Gate::new(usize::from(config.sync_concurrency), metrics.clone()),
            warnings: Recorder::new(client.clone(), reporter.clone()),
            objects: Objects::new(metrics.clone()),
            namespaces: NamespaceIndex::default(),
            client,
            config,
            defaults,
            kv,
            metrics,
            reporter,
            leading: AtomicBool::new(false),
        }
    }

    pub fn leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Release);
        self.metrics.leader.set(i64::from(leading));
    }

    /// `INSTANCE_ID` against `spec.controllerId`.
    pub fn handles(&self, es: &ExternalSecret) -> bool {
        kes::handles(es, self.config.instance_id.as_deref())
    }

    /// Whether a watch event can need a sync (new to this process, or its spec changed). Our
    /// own status patches and label edits cannot.
    pub fn needs_sync(&self, es: &ExternalSecret) -> bool {
        match es.metadata.uid.as_deref() {
            Some(uid) => self.objects.needs_sync(uid, es.metadata.generation),
            None => true,
        }
    }
}

/// One namespace's (or the cluster's) view: the shared parts and our Secrets' versions.
pub struct Context {
    pub shared: Arc<Shared>,
    pub secrets: Arc<SecretIndex>,
}
