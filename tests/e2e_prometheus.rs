//! The shipped dashboard and alerts against a real Prometheus (started by e2e/up.sh, scraping
//! the controller this test starts every second, with the chart's alerts loaded): after a
//! workload every panel's query returns data, and the failing-sync alert fires for an object
//! while OpenBao is sealed and resolves after the unseal. Runs with the disruptive tests (it
//! seals the shared OpenBao).

mod common;

use std::time::{Duration, Instant};

use common::e2e::{env, value, Controller, World};
use serde_json::{json, Value};

const JOB: &str = "vault-external-secrets";

struct Prometheus {
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    fn new() -> Self {
        Prometheus {
            url: env("PROMETHEUS_URL"),
            http: reqwest::Client::new(),
        }
    }

    /// `GET /api/v1/{path}` with `query`: its `data`, once Prometheus says success.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let body: Value = self
            .http
            .get(format!("{}/api/v1/{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// The result vector of an instant query.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", promql)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Firing alerts named `alert`, by their `name` label.
    async fn firing(&self, alert: &str) -> Vec<String> {
        self.api("alerts", &[]).await["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["labels"]["alertname"] == alert && a["state"] == "firing")
            .map(|a| a["labels"]["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    async fn wait_firing(&self, alert: &str, pred: impl Fn(&[String]) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let firing = self.firing(alert).await;
            if pred(&firing) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{alert}: {what} (firing for {firing:?})"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Every query of every panel of the shipped dashboard, with Grafana's variables as a user
/// would have them: the job selected, a rate window of a minute.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/vault-external-secrets/dashboards/vault-external-secrets.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$job", JOB)
                .replace("$__rate_interval", "1m");
            let title = format!("{} / {}", panel["title"], target["legendFormat"]);
            queries.push((title, expr));
        }
    }
    queries
}

#[tokio::test]
#[ignore = "e2e: needs e2e/up.sh"]
async fn dashboard_panels_have_data_and_the_failing_sync_alert_fires_and_resolves() {
    let w = World::get().await;
    let prom = Prometheus::new();
    let ns = w.namespace("e2e-prometheus").await;
    w.put_kv2("e2e-prometheus/app", json!({"v": "one"})).await;
    let port: u16 = env("PROMETHEUS_TARGET_PORT").parse().unwrap();
    let events = env("AUDIT_EVENTS_ADDR");
    let _ctl = Controller::start_on(
        &w,
        "prometheus",
        port,
        &[("WATCHED_NAMESPACES", &ns), ("AUDIT_LISTEN_ADDR", &events)],
    );
    let es = |name: &str, key: &str| {
        format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}}}\nspec: {{vaultRole: k8s-role, data: [{{name: v, key: {key}, property: v}}]}}\n")
    };
    w.apply_es(&ns, &es("app", "kv/e2e-prometheus/app")).await;
    // Fails from the start (no such secret): the errors panels have a reason to show.
    w.apply_es(&ns, &es("missing", "kv/e2e-prometheus/missing"))
        .await;
    w.wait_secret(&ns, "app", Duration::from_secs(30), |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;
    // A change event through the audit stream, for the event-latency panel; once Prometheus
    // has scraped the controller, so that the observation falls between two of its samples.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .query(&format!("up{{job=\"{JOB}\"}} == 1"))
        .await
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the controller"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    w.put_kv2("e2e-prometheus/app", json!({"v": "two"})).await;
    w.wait_secret(&ns, "app", Duration::from_secs(30), |s| {
        value(s, "v").as_deref() == Some("two")
    })
    .await;

    // Every panel returns data: at least one series with a number (not NaN) in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let queries = dashboard_queries();
    assert!(queries.len() >= 12, "{} queries", queries.len());
    for (title, expr) in &queries {
        loop {
            let result = prom.query(expr).await;
            let numbers = result
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .filter(|v| !v.is_nan())
                .count();
            if numbers > 0 {
                println!("panel {title}: {} series", result.len());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panel {title} shows no data: {expr} -> {result:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    // The failing object's alert fires (for: 5s in the e2e rules); the healthy one's does not.
    prom.wait_firing(
        "ExternalSecretSyncFailing",
        |f| f.iter().any(|n| n == "missing") && !f.iter().any(|n| n == "app"),
        "only `missing` should fire before the seal",
    )
    .await;
    w.bao("PUT", "sys/seal", json!(null)).await;
    let sealed = Instant::now();
    prom.wait_firing(
        "ExternalSecretSyncFailing",
        |f| f.iter().any(|n| n == "app"),
        "`app` should fire while OpenBao is sealed",
    )
    .await;
    println!(
        "sealed -> ExternalSecretSyncFailing firing for app in {:?}",
        sealed.elapsed()
    );
    w.unseal().await;
    let unsealed = Instant::now();
    prom.wait_firing(
        "ExternalSecretSyncFailing",
        |f| !f.iter().any(|n| n == "app") && f.iter().any(|n| n == "missing"),
        "`app` should resolve after the unseal, `missing` keep firing",
    )
    .await;
    println!("unsealed -> resolved in {:?}", unsealed.elapsed());
}
