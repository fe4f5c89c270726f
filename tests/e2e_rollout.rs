//! Rollout restarts on real changes, with kube-controller-manager's deployment and replicaset
//! controllers: a Deployment named in the annotation gets a new ReplicaSet once per changed
//! value — none at creation, none on a label-only change, none when the controller restarts —
//! and changes inside `ROLLOUT_RESTART_MIN_INTERVAL` are folded into one restart. A workload
//! that does not exist is the object's `RolloutRestart` condition (and a Warning), never a
//! failed sync, never retried; once it exists, the next restart clears the condition.

mod common;

use std::time::Duration;

use common::e2e::{ready_reason, value, Controller, World};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::Api;
use serde_json::json;
use vault_external_secrets::api::kes::crd::ExternalSecret;

const WINDOW_S: u64 = 15;

fn deployment(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: c, image: registry.k8s.io/pause:3.10}}]\n"
    )
}

async fn replica_sets(w: &World, ns: &str) -> usize {
    let api: Api<ReplicaSet> = Api::namespaced(w.client.clone(), ns);
    api.list_metadata(&ListParams::default().labels("app=api"))
        .await
        .unwrap()
        .items
        .len()
}

async fn wait_replica_sets(w: &World, ns: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while replica_sets(w, ns).await != n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} ReplicaSets, want {n}",
            replica_sets(w, ns).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_changed_secret_restarts_its_deployment_once() {
    let w = World::get().await;
    let ns = w.namespace("rollout").await;
    w.put_kv1("rollout/app", json!({"v": "one"})).await;
    w.kubectl_apply(&deployment(&ns, "api"));
    wait_replica_sets(&w, &ns, 1).await;
    let es = |labels: &str| {
        format!(
            "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata:\n  name: app\n  namespace: {ns}\n  annotations: {{vault-external-secrets.io/rollout-restart: \"deployment/api\"}}\nspec:\n  backendType: vault\n  kvVersion: 1\n  vaultRole: k8s-role\n  template: {{metadata: {{labels: {{{labels}}}}}}}\n  data:\n  - {{name: v, key: secret/rollout/app, property: v}}\n"
        )
    };
    let window = WINDOW_S.to_string();
    let env = [
        ("WATCHED_NAMESPACES", ns.as_str()),
        ("ROLLOUT_RESTART_MIN_INTERVAL", window.as_str()),
    ];
    let mut ctl = Controller::start(&w, "rollout", &env);
    ctl.wait_ready().await;
    w.kubectl_apply(&es("tier: a"));
    let has = |v: &'static str| {
        move |s: &k8s_openapi::api::core::v1::Secret| value(s, "v").as_deref() == Some(v)
    };
    w.wait_secret(&ns, "app", Duration::from_secs(30), has("one"))
        .await;
    // A label-only change updates the Secret, restarts nothing.
    w.kubectl_apply(&es("tier: b"));
    w.wait_secret(&ns, "app", Duration::from_secs(30), |s| {
        s.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.get("tier").map(String::as_str) == Some("b"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica_sets(&w, &ns).await,
        1,
        "creation and a label change restart nothing"
    );

    // The data changes: one restart at once.
    w.put_kv1("rollout/app", json!({"v": "two"})).await;
    w.wait_secret(&ns, "app", Duration::from_secs(30), has("two"))
        .await;
    wait_replica_sets(&w, &ns, 2).await;
    // The Event on the Deployment names it as the patch's answer did (kind, API, uid).
    let events: Api<Event> = Api::namespaced(w.client.clone(), &ns);
    let deployment = Api::<Deployment>::namespaced(w.client.clone(), &ns)
        .get("api")
        .await
        .unwrap();
    let mut on_deployment = None;
    for _ in 0..50 {
        on_deployment = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("RolloutRestarted"))
            .filter_map(|e| e.regarding)
            .find(|r| r.kind.as_deref() == Some("Deployment"));
        if on_deployment.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on_deployment = on_deployment.expect("a RolloutRestarted Event regarding the Deployment");
    assert_eq!(on_deployment.api_version.as_deref(), Some("apps/v1"));
    assert_eq!(on_deployment.name.as_deref(), Some("api"));
    assert_eq!(on_deployment.uid, deployment.metadata.uid);
    // Three more changes inside the window: one restart, at its end.
    for v in ["three", "four", "five"] {
        w.put_kv1("rollout/app", json!({ "v": v })).await;
        w.wait_secret(&ns, "app", Duration::from_secs(30), has(v))
            .await;
    }
    assert_eq!(
        replica_sets(&w, &ns).await,
        2,
        "folded until the window ends"
    );
    wait_replica_sets(&w, &ns, 3).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        replica_sets(&w, &ns).await,
        3,
        "exactly one restart for the three changes"
    );

    // A controller restart changes nothing, so restarts nothing.
    ctl.terminate();
    let ctl = Controller::start(&w, "rollout-2", &env);
    ctl.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(
        replica_sets(&w, &ns).await,
        3,
        "no restart after the controller restarted"
    );
    assert!(ctl
        .metrics()
        .await
        .contains("vault_external_secrets_secret_writes_total{kind=\"skipped\"}"));
}

fn rollout_condition(es: &ExternalSecret) -> Option<(String, String)> {
    es.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "RolloutRestart")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_missing_workload_is_a_condition_not_a_failed_sync() {
    let w = World::get().await;
    let ns = w.namespace("rollout-missing").await;
    w.put_kv1("rollout/missing", json!({"v": "one"})).await;
    let window = WINDOW_S.to_string();
    let ctl = Controller::start(
        &w,
        "rollout-missing",
        &[
            ("WATCHED_NAMESPACES", ns.as_str()),
            ("ROLLOUT_RESTART_MIN_INTERVAL", window.as_str()),
        ],
    );
    ctl.wait_ready().await;
    w.kubectl_apply(&format!(
        "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata:\n  name: app\n  namespace: {ns}\n  annotations: {{vault-external-secrets.io/rollout-restart: \"deployment/late\"}}\nspec:\n  backendType: vault\n  kvVersion: 1\n  vaultRole: k8s-role\n  data:\n  - {{name: v, key: secret/rollout/missing, property: v}}\n"
    ));
    w.wait_secret(&ns, "app", Duration::from_secs(30), |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;
    w.put_kv1("rollout/missing", json!({"v": "two"})).await;
    let es = w
        .wait_es(&ns, "app", Duration::from_secs(30), |es| {
            rollout_condition(es).is_some()
        })
        .await;
    assert_eq!(
        rollout_condition(&es),
        Some(("False".into(), "TargetNotFound".into()))
    );
    assert_eq!(
        ready_reason(&es),
        "SecretSynced",
        "the sync itself succeeded"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let series =
        "vault_external_secrets_rollout_restarts_total{kind=\"deployment\",outcome=\"not_found\"}";
    assert_eq!(ctl.metric(series).await, 1.0, "tried once, not retried");

    // The workload appears; the next change (inside the window, so at its end) restarts it and
    // the condition follows without waiting for a poll.
    w.kubectl_apply(&deployment(&ns, "late"));
    w.put_kv1("rollout/missing", json!({"v": "three"})).await;
    let es = w
        .wait_es(&ns, "app", Duration::from_secs(WINDOW_S + 20), |es| {
            rollout_condition(es).is_some_and(|(s, _)| s == "True")
        })
        .await;
    assert_eq!(
        rollout_condition(&es),
        Some(("True".into(), "Restarted".into()))
    );
    assert_eq!(ctl.metric(series).await, 1.0);
}
