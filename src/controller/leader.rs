//! Lease-based leader election (kube-lease-manager): only the holder syncs and writes; the
//! other replicas keep their watches warm and take over when the Lease expires or is released.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use crate::config::LeaderElection;
use crate::engine::write::MANAGER;

pub struct Lease {
    /// Ends the forwarding task, which drops the manager's channel; the manager then releases.
    stop: watch::Sender<bool>,
    task: JoinHandle<Option<JoinHandle<kube_lease_manager::Result<LeaseManager>>>>,
}

impl Lease {
    /// Releases the Lease (if held) and waits, at most a few seconds, for it to be written.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        let done = async {
            if let Ok(Some(manager)) = self.task.await {
                match manager.await {
                    Ok(Ok(_)) => tracing::info!("released the leader Lease"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease"),
                    Err(e) => tracing::warn!(error = %e, "lease manager task failed"),
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), done)
            .await
            .is_err()
        {
            tracing::warn!("timed out releasing the leader Lease; it will expire");
        }
    }
}

pub async fn start(
    le: &LeaderElection,
    client: Client,
    shared: Arc<Shared>,
    elected: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Lease> {
    // Renew a third of the duration before expiry: tolerates that much clock skew and lag.
    let grace = (le.lease_duration_s / 3).max(2);
    let manager = LeaseManagerBuilder::new(client, &le.lease_name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.lease_duration_s)
        .with_grace(grace)
        .with_field_manager(format!("{MANAGER}-{}", le.identity))
        .build()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "leader election Lease {}/{}: {e}",
                le.namespace,
                le.lease_name
            )
        })?;
    tracing::info!(lease = %le.lease_name, namespace = %le.namespace, identity = %le.identity, "leader election: waiting for the Lease");
    let (mut channel, manager_task) = manager.watch().await;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = channel.changed() => {
                    if changed.is_err() {
                        tracing::error!("lease manager stopped; this replica stops writing");
                        shared.set_leading(false);
                        let _ = elected.send(false);
                        return None;
                    }
                    let leading = *channel.borrow_and_update();
                    // Stop writing before anyone is told, start only after the Lease is ours.
                    shared.set_leading(leading);
                    let _ = elected.send(leading);
                    if leading {
                        tracing::info!("leader election: this replica is the leader");
                    } else {
                        tracing::warn!("leader election: lost the Lease; stopped writing");
                    }
                }
                _ = stopped.changed() => break,
                _ = async { let _ = shutdown.wait_for(|s| *s).await; } => {
                    // Keep the Lease until the controller has finished in-flight work; `release`
                    // ends this loop.
                    let _ = stopped.changed().await;
                    break;
                }
            }
        }
        drop(channel);
        Some(manager_task)
    });
    Ok(Lease { stop, task })
}

/// Yields once each time this replica becomes the leader.
pub fn on_election(rx: watch::Receiver<bool>) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((rx, false), |(mut rx, mut was)| async move {
        loop {
            let now = *rx.borrow_and_update();
            if now && !was {
                return Some(((), (rx, true)));
            }
            was = now;
            if rx.changed().await.is_err() {
                return None;
            }
        }
    })
}
