//! Rollout restarts of the workloads an ExternalSecret names
//! (`vault-external-secrets.io/rollout-restart: "deployment/api, statefulset/db"`, same
//! namespace) when a sync *changed its Secret's data* — not at creation, not when only labels or
//! annotations changed, and so never because the controller restarted or a new leader took over
//! (nothing changed then). What `kubectl rollout restart` does: the pod template's
//! `vault-external-secrets.io/restartedAt` annotation is patched.
//!
//! Batched: at most one restart per workload per `ROLLOUT_RESTART_MIN_INTERVAL`; changes inside
//! the window are folded into one restart at its end. A workload that is missing or refused is a
//! Warning Event and the object's `RolloutRestart` condition, never a failed sync and never
//! retried in a loop.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client, Resource};
use serde_json::json;
use tokio::time::Instant;

use super::rollout_outcomes::{Failure, Outcomes};
use super::triggers::Retrigger;
use crate::api::condition::Side;
use crate::engine::write::MANAGER;

pub const ANNOTATION: &str = "vault-external-secrets.io/rollout-restart";
pub const RESTARTED_AT: &str = "vault-external-secrets.io/restartedAt";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl Kind {
    /// The workload's API. Its patch is answered as a `DynamicObject`: only its reference is
    /// read, and decoding the typed object would link the whole pod template's decoder into
    /// the binary (docs/benchmarks.md, part 2 step 6).
    fn api_resource(self) -> ApiResource {
        match self {
            Kind::Deployment => ApiResource::erase::<Deployment>(&()),
            Kind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            Kind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deployment => "deployment",
            Kind::StatefulSet => "statefulset",
            Kind::DaemonSet => "daemonset",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Workload {
    pub namespace: String,
    pub kind: Kind,
    pub name: String,
}

/// Pure: the annotation's `kind/name` list. Unknown kinds and malformed items are errors.
pub fn parse_targets(value: &str) -> Result<Vec<(Kind, String)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            let (kind, name) = item
                .split_once('/')
                .ok_or_else(|| format!("{item:?} is not kind/name"))?;
            let kind = match kind.to_ascii_lowercase().as_str() {
                "deployment" | "deployments" | "deploy" => Kind::Deployment,
                "statefulset" | "statefulsets" | "sts" => Kind::StatefulSet,
                "daemonset" | "daemonsets" | "ds" => Kind::DaemonSet,
                other => {
                    return Err(format!(
                        "{other:?} is not deployment, statefulset or daemonset"
                    ))
                }
            };
            let name = name.trim();
            if name.is_empty() || name.contains('/') {
                return Err(format!("{item:?} has no valid name"));
            }
            Ok((kind, name.to_string()))
        })
        .collect()
}

/// Pure: one workload's restart window.
#[derive(Default)]
struct Window {
    last: Option<Instant>,
    pending: bool,
}

/// What to do with a restart asked at `now`.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Now,
    At(Instant),
    /// Folded into the restart already scheduled.
    Folded,
}

impl Window {
    fn ask(&mut self, now: Instant, min: Duration) -> Decision {
        match self.last {
            _ if self.pending => Decision::Folded,
            Some(last) if now.duration_since(last) < min => {
                self.pending = true;
                Decision::At(last + min)
            }
            _ => {
                self.last = Some(now);
                Decision::Now
            }
        }
    }

    fn fired(&mut self, now: Instant) {
        self.pending = false;
        self.last = Some(now);
    }
}

pub struct Restarter {
    client: Client,
    recorder: Recorder,
    min_interval: Duration,
    windows: Mutex<HashMap<Workload, Window>>,
    /// The last result per object and workload: the objects' `RolloutRestart` condition.
    outcomes: Mutex<Outcomes>,
    /// Set once the watches run: a restart at a window's end resends its object, whose report
    /// then writes the new condition.
    resend: OnceLock<Arc<Retrigger>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Restarter {
    pub fn new(
        client: Client,
        recorder: Recorder,
        min_interval: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Restarter {
            client,
            recorder,
            min_interval,
            windows: Mutex::new(HashMap::new()),
            outcomes: Mutex::new(Outcomes::default()),
            resend: OnceLock::new(),
            metrics,
        })
    }

    pub fn set_resend(&self, retrigger: Arc<Retrigger>) {
        let _ = self.resend.set(retrigger);
    }

    /// The `RolloutRestart` condition of `es` as this process knows it.
    pub fn condition<K: Resource<DynamicType = ()>>(&self, es: &K) -> Side {
        let annotation = es
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION));
        let uid = es.meta().uid.as_deref().unwrap_or_default();
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .condition(uid, annotation.map(String::as_str))
    }

    /// Forgets objects that are gone.
    pub fn retain(&self, live: &HashSet<&str>) {
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(live);
    }

    /// The Secret of `es` changed: restart what its annotation names (now, or at the end of the
    /// workload's window).
    pub async fn secret_changed<K: Resource<DynamicType = ()>>(self: &Arc<Self>, es: &K) {
        let Some(value) = es
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION))
        else {
            return;
        };
        let namespace = es.meta().namespace.clone().unwrap_or_default();
        let targets = match parse_targets(value) {
            Ok(t) => t,
            Err(why) => {
                self.warn(es, format!("{ANNOTATION}: {why}")).await;
                return;
            }
        };
        for (kind, name) in targets {
            let w = Workload {
                namespace: namespace.clone(),
                kind,
                name,
            };
            let decision = {
                let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
                windows
                    .entry(w.clone())
                    .or_default()
                    .ask(Instant::now(), self.min_interval)
            };
            match decision {
                Decision::Now => self.restart(es, &w).await,
                Decision::At(at) => {
                    let this = self.clone();
                    let es_ref = es.object_ref(&());
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        this.windows
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(w.clone())
                            .or_default()
                            .fired(Instant::now());
                        if this.restart_ref(&es_ref, &w).await {
                            this.resend_object(es_ref.uid.as_deref());
                        }
                    });
                }
                Decision::Folded => {}
            }
        }
    }

    async fn restart<K: Resource<DynamicType = ()>>(&self, es: &K, w: &Workload) {
        self.restart_ref(&es.object_ref(&()), w).await;
    }

    fn resend_object(&self, uid: Option<&str>) {
        let (Some(retrigger), Some(uid)) = (self.resend.get(), uid) else {
            return;
        };
        for resend in retrigger.select(|o| o.uid() == uid) {
            resend();
        }
    }

    /// Restarts one workload; returns whether the object's condition changed.
    async fn restart_ref(
        &self,
        es: &k8s_openapi::api::core::v1::ObjectReference,
        w: &Workload,
    ) -> bool {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let patch = Patch::Merge(
            json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now}}}}}),
        );
        let pp = PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        };
        let ns = &w.namespace;
        let resource = w.kind.api_resource();
        let result = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &resource)
            .patch(&w.name, &pp, &patch)
            .await
            .map(|d| d.object_ref(&resource));
        let target = format!("{}/{}", w.kind.as_str(), w.name);
        let failure = match &result {
            Ok(_) => None,
            Err(kube::Error::Api(s)) if s.code == 404 => Some(Failure::NotFound),
            Err(kube::Error::Api(s)) if s.code == 403 => Some(Failure::Forbidden),
            Err(_) => Some(Failure::Error),
        };
        let outcome = failure.map_or("restarted", Failure::label);
        self.metrics
            .rollout_restarts
            .with_label_values(&[w.kind.as_str(), outcome])
            .inc();
        let recorded = match (&result, failure) {
            (Err(e), Some(f)) => Err((f, crate::error::kube_brief(e))),
            _ => Ok(()),
        };
        let changed = self
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(es.uid.as_deref().unwrap_or_default(), &target, recorded);
        match result {
            Ok(workload) => {
                tracing::info!(namespace = %ns, target = %target, "rollout restart: the Secret's data changed");
                let ev = Event {
                    type_: EventType::Normal,
                    reason: "RolloutRestarted".into(),
                    note: Some(format!("Restarted {target}: its Secret's data changed")),
                    action: "RolloutRestart".into(),
                    secondary: None,
                };
                for regarding in [es.clone(), workload] {
                    let _ = self.recorder.publish(&ev, &regarding).await;
                }
            }
            Err(e) => {
                let why = crate::error::kube_brief(&e);
                tracing::warn!(namespace = %ns, target = %target, error = %why, "rollout restart failed");
                let ev = Event {
                    type_: EventType::Warning,
                    reason: "RolloutRestartFailed".into(),
                    note: Some(format!("Could not restart {target}: {why}")),
                    action: "RolloutRestart".into(),
                    secondary: None,
                };
                let _ = self.recorder.publish(&ev, es).await;
            }
        }
        changed
    }

    async fn warn<K: Resource<DynamicType = ()>>(&self, es: &K, note: String) {
        let ev = Event {
            type_: EventType::Warning,
            reason: "RolloutRestartFailed".into(),
            note: Some(note),
            action: "RolloutRestart".into(),
            secondary: None,
        };
        let _ = self.recorder.publish(&ev, &es.object_ref(&())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_targets("deployment/api, statefulset/db , ds/agent").unwrap(),
            vec![
                (Kind::Deployment, "api".to_string()),
                (Kind::StatefulSet, "db".to_string()),
                (Kind::DaemonSet, "agent".to_string())
            ]
        );
        assert!(parse_targets("job/x").is_err());
        assert!(parse_targets("deployment").is_err());
        assert!(parse_targets("deployment/a/b").is_err());
        assert_eq!(parse_targets("").unwrap(), vec![]);
    }

    #[tokio::test(start_paused = true)]
    async fn one_restart_per_window_and_changes_folded() {
        let min = Duration::from_secs(60);
        let mut w = Window::default();
        let t = Instant::now();
        assert_eq!(w.ask(t, min), Decision::Now);
        assert_eq!(
            w.ask(t + Duration::from_secs(5), min),
            Decision::At(t + min)
        );
        assert_eq!(w.ask(t + Duration::from_secs(6), min), Decision::Folded);
        w.fired(t + min);
        assert_eq!(
            w.ask(t + min + Duration::from_secs(1), min),
            Decision::At(t + min + min)
        );
        let mut w = Window::default();
        w.ask(t, min);
        assert_eq!(
            w.ask(t + min, min),
            Decision::Now,
            "after the window: at once"
        );
    }
}
