//! Outages of the real components, one at a time (run with --test-threads=1 after the other e2e
//! tests: they disturb the shared apiserver and OpenBao). KES users lost syncing for days when its
//! watch died, and saw crashes on Vault 5xx; here the controller survives both and resumes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::e2e::{ready_reason, status_text, value, Controller, World};
use kube::api::ListParams;
use serde_json::json;

const SYNC: Duration = Duration::from_secs(30);

fn es(name: &str, key: &str) -> String {
    format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}}}\nspec: {{vaultRole: k8s-role, data: [{{name: v, key: {key}, property: v}}]}}\n")
}

/// Applies `n` ExternalSecrets `o0..o{n}` reading `paths` distinct keys under `prefix`.
async fn many(w: &World, ns: &str, n: usize, paths: usize, role: &str, prefix: &str) {
    for p in 0..paths {
        w.put_kv2(&format!("{prefix}/p{p}"), json!({"v": "1"}))
            .await;
    }
    for i in 0..n {
        w.apply_es(
            ns,
            &format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: o{i}}}\nspec: {{vaultRole: {role}, data: [{{name: v, key: kv/{prefix}/p{}, property: v}}]}}\n", i % paths),
        )
        .await;
    }
}

/// Waits until every ExternalSecret of `ns` satisfies `pred` (by its Ready reason); returns
/// how long it took.
async fn wait_all(w: &World, ns: &str, n: usize, timeout: Duration, reason: &str) -> Duration {
    let t = Instant::now();
    loop {
        let list = w.es_api(ns).list(&ListParams::default()).await.unwrap();
        let matching = list
            .items
            .iter()
            .filter(|e| ready_reason(e) == reason)
            .count();
        if list.items.len() == n && matching == n {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < timeout,
            "{matching}/{n} ExternalSecrets in {ns} reached {reason} in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The resourceVersion of every Secret in `ns`.
async fn secret_versions(w: &World, ns: &str) -> BTreeMap<String, String> {
    w.secret_api(ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| {
            (
                s.metadata.name.unwrap_or_default(),
                s.metadata.resource_version.unwrap_or_default(),
            )
        })
        .collect()
}

/// A login fault under 300 objects (5 s poll): `break_login` makes every login fail and kills
/// the controller's token; for a minute the login attempts stay a handful, every object says
/// VaultAuthFailed and no Secret changes; `restore` ends it and every object syncs again.
async fn login_fault_is_bounded(
    w: &World,
    name: &str,
    extra_env: &[(&str, &str)],
    break_login: impl AsyncFnOnce(),
    restore: impl AsyncFnOnce(),
) {
    let ns = w.namespace(&format!("e2e-{name}")).await;
    let role = json!({"bound_service_account_names": ["vault-external-secrets"],
        "bound_service_account_namespaces": ["vault-external-secrets"],
        "policies": ["readonly"], "ttl": "1h"});
    w.bao("POST", "auth/kubernetes/role/fault-role", role).await;
    const N: usize = 300;
    let mut env = vec![
        ("WATCHED_NAMESPACES", ns.as_str()),
        ("POLLER_INTERVAL_MILLISECONDS", "5000"),
    ];
    env.extend_from_slice(extra_env);
    let _ctl = Controller::start(w, name, &env);
    many(w, &ns, N, 30, "fault-role", &ns).await;
    wait_all(w, &ns, N, Duration::from_secs(60), "SecretSynced").await;
    let before = secret_versions(w, &ns).await;
    assert_eq!(before.len(), N);

    break_login().await;
    // And the controller's token goes (all tokens of the auth mount), so it must log in.
    w.bao(
        "PUT",
        "sys/leases/revoke-prefix/auth/kubernetes/login",
        json!(null),
    )
    .await;
    let logins_before = w.vault_requests("auth/kubernetes/login");
    let lag = wait_all(w, &ns, N, Duration::from_secs(30), "VaultAuthFailed").await;
    println!("{name}: all {N} objects VaultAuthFailed in {lag:?}");
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(lag)).await;
    let logins = w.vault_requests("auth/kubernetes/login") - logins_before;
    println!("{name}: {logins} login attempts in the minute ({N} objects, 5 s poll)");
    assert!(logins <= 6, "{logins} logins in a minute");
    assert_eq!(secret_versions(w, &ns).await, before, "no Secret changed");

    restore().await;
    // The next login attempt (backoff capped at 2 min) brings every object back.
    let back = wait_all(w, &ns, N, Duration::from_secs(150), "SecretSynced").await;
    println!("{name}: restored -> all {N} objects synced again in {back:?}");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_deleted_role_costs_a_handful_of_logins_not_one_per_object() {
    let w = World::get().await;
    let role = json!({"bound_service_account_names": ["vault-external-secrets"],
        "bound_service_account_namespaces": ["vault-external-secrets"],
        "policies": ["readonly"], "ttl": "1h"});
    login_fault_is_bounded(
        &w,
        "role-fault",
        &[],
        async || {
            w.bao("DELETE", "auth/kubernetes/role/fault-role", json!(null))
                .await;
        },
        async || {
            w.bao("POST", "auth/kubernetes/role/fault-role", role).await;
        },
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_replaced_jwt_costs_a_handful_of_logins_not_one_per_object() {
    let w = World::get().await;
    // The controller's Vault JWT in a file of its own (its Kubernetes credential stays good).
    let jwt = w.dir.join("jwt-fault.jwt");
    let good = std::fs::read_to_string(std::env::var("VAULT_JWT_PATH").unwrap()).unwrap();
    std::fs::write(&jwt, &good).unwrap();
    let jwt_path = jwt.to_str().unwrap().to_string();
    login_fault_is_bounded(
        &w,
        "jwt-fault",
        &[("VAULT_JWT_PATH", &jwt_path)],
        async || std::fs::write(&jwt, "eyJhbGciOiJub25lIn0.e30.").unwrap(),
        async || std::fs::write(&jwt, &good).unwrap(),
    )
    .await;
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn openbao_killed_and_restarted() {
    let w = World::get().await;
    let ns = w.namespace("e2e-bao-restart").await;
    const N: usize = 100;
    let _ctl = Controller::start(
        &w,
        "bao-restart",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "10000"),
        ],
    );
    many(&w, &ns, N, 20, "k8s-role", "e2e-bao-restart").await;
    wait_all(&w, &ns, N, Duration::from_secs(60), "SecretSynced").await;
    let before = secret_versions(&w, &ns).await;

    w.fault(&["kill", "openbao"]);
    let lag = wait_all(&w, &ns, N, Duration::from_secs(30), "VaultReadFailed").await;
    println!("OpenBao killed -> all {N} objects in error in {lag:?} (poll 10 s)");
    assert_eq!(secret_versions(&w, &ns).await, before, "no Secret changed");

    // A dev server comes back empty: configured anew, data written again (one value changed).
    w.fault(&["restart-openbao"]);
    let t = Instant::now();
    for p in 0..20 {
        let v = if p == 0 { "2" } else { "1" };
        w.put_kv2(&format!("e2e-bao-restart/p{p}"), json!({"v": v}))
            .await;
    }
    // The old token is unknown to the new server: checked once, replaced by one login.
    let back = wait_all(&w, &ns, N, Duration::from_secs(30), "SecretSynced").await;
    println!("OpenBao restarted -> all {N} objects synced again in {back:?}");
    w.wait_secret(&ns, "o0", Duration::from_secs(15), |s| {
        value(s, "v").as_deref() == Some("2")
    })
    .await;
    println!(
        "OpenBao restarted -> changed value in its Secret in {:?}",
        t.elapsed()
    );
    assert!(w.vault_requests("auth/kubernetes/login") >= 1);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn rate_limited_vault_is_bounded_and_recovers() {
    let w = World::get().await;
    let ns = w.namespace("e2e-rate").await;
    const N: usize = 100;
    let ctl = Controller::start(
        &w,
        "rate",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "5000"),
        ],
    );
    many(&w, &ns, N, 20, "k8s-role", "e2e-rate").await;
    wait_all(&w, &ns, N, Duration::from_secs(60), "SecretSynced").await;
    let before = secret_versions(&w, &ns).await;
    let reads = async || {
        let m = ctl.metrics().await;
        m.lines()
            .filter(|l| {
                l.starts_with("vault_external_secrets_vault_requests_total{operation=\"read\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    w.bao(
        "POST",
        "sys/quotas/rate-limit/e2e-rate",
        json!({"rate": 1, "interval": "1s", "path": "kv/"}),
    )
    .await;
    let r0 = reads().await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let attempts = reads().await - r0;
    // 20 paths per 5 s poll, each read tried at most 1 + 4 times: at most 400 in 20 s.
    println!("rate-limited for 20 s: {attempts} read requests (20 paths, 5 s poll)");
    assert!(attempts <= 400.0, "{attempts}");
    assert_eq!(secret_versions(&w, &ns).await, before, "no Secret changed");

    w.bao("DELETE", "sys/quotas/rate-limit/e2e-rate", json!(null))
        .await;
    w.put_kv2("e2e-rate/p0", json!({"v": "2"})).await;
    let t = Instant::now();
    w.wait_secret(&ns, "o0", Duration::from_secs(20), |s| {
        value(s, "v").as_deref() == Some("2")
    })
    .await;
    println!(
        "quota removed -> changed value in its Secret in {:?}",
        t.elapsed()
    );
    wait_all(&w, &ns, N, Duration::from_secs(30), "SecretSynced").await;
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn etcd_paused_then_resumed() {
    let w = World::get().await;
    let ns = w.namespace("e2e-etcd-pause").await;
    w.put_kv2("e2e-etcd-pause/a", json!({"v": "1"})).await;
    let mut ctl = Controller::start(
        &w,
        "etcd-pause",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "3000"),
        ],
    );
    w.apply_es(&ns, &es("a", "kv/e2e-etcd-pause/a")).await;
    w.wait_secret(&ns, "a", SYNC, |s| value(s, "v").as_deref() == Some("1"))
        .await;

    w.fault(&["pause", "etcd"]);
    w.put_kv2("e2e-etcd-pause/a", json!({"v": "2"})).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    w.fault(&["resume", "etcd"]);
    assert!(ctl.is_running(), "the controller died: {}", ctl.logs());
    let t = Instant::now();
    w.wait_secret(&ns, "a", Duration::from_secs(60), |s| {
        value(s, "v").as_deref() == Some("2")
    })
    .await;
    println!(
        "etcd resumed -> changed value in its Secret in {:?}",
        t.elapsed()
    );
    w.wait_es(&ns, "a", SYNC, |es| status_text(es) == "SUCCESS")
        .await;
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn sealed_vault_shows_everywhere_within_a_poll_and_recovery_follows_the_unseal() {
    let w = World::get().await;
    let ns = w.namespace("e2e-seal-many").await;
    const N: usize = 200;
    let ctl = Controller::start(
        &w,
        "seal-many",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "20000"),
        ],
    );
    many(&w, &ns, N, 40, "k8s-role", "e2e-seal-many").await;
    wait_all(&w, &ns, N, Duration::from_secs(60), "SecretSynced").await;
    let before = secret_versions(&w, &ns).await;
    let reads_before = ctl
        .metric("vault_external_secrets_vault_requests_total{operation=\"read\",outcome=\"server_error\"}")
        .await;

    // Steady state first: right after the first sync every next poll is at least half an
    // interval away.
    tokio::time::sleep(Duration::from_secs(10)).await;
    w.bao("PUT", "sys/seal", json!(null)).await;
    // A confirmed outage (5 s) is reported on every object at once, well within a poll (20 s).
    let lag = wait_all(&w, &ns, N, Duration::from_secs(20), "VaultReadFailed").await;
    println!("sealed -> all {N} objects show the error in {lag:?} (poll 20 s)");
    let sent = ctl
        .metric("vault_external_secrets_vault_requests_total{operation=\"read\",outcome=\"server_error\"}")
        .await
        - reads_before;
    println!("reads sent into the sealed Vault: {sent}");
    assert!(sent <= 40.0, "{sent} reads sent while sealed");
    assert_eq!(secret_versions(&w, &ns).await, before, "no Secret changed");

    w.unseal().await;
    // Objects in backoff (5, 10, 20 s ...) are rescheduled when the prober sees Vault again.
    let back = wait_all(&w, &ns, N, Duration::from_secs(30), "SecretSynced").await;
    println!("unsealed -> all {N} objects synced again in {back:?}");
    assert!(back <= Duration::from_secs(10), "{back:?}");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn apiserver_restart_reestablishes_the_watches() {
    let w = World::get().await;
    let ns = w.namespace("e2e-outage").await;
    w.put_kv2("e2e-outage/a", json!({"v": "1"})).await;
    let mut ctl = Controller::start(&w, "outage", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(&ns, &es("a", "kv/e2e-outage/a")).await;
    w.wait_secret(&ns, "a", SYNC, |s| value(s, "v").as_deref() == Some("1"))
        .await;

    // kill -9 the apiserver, 5 s down, then the same apiserver again.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/restart-apiserver.sh");
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .args([script, "5"])
            .status()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "apiserver restart failed");
    assert!(
        ctl.is_running(),
        "the controller died with the apiserver: {}",
        ctl.logs()
    );

    // New objects are seen (the ExternalSecret watch is back) and polling goes on.
    w.apply_es(&ns, &es("b", "kv/e2e-outage/a")).await;
    w.wait_secret(&ns, "b", Duration::from_secs(90), |s| {
        value(s, "v").as_deref() == Some("1")
    })
    .await;
    w.put_kv2("e2e-outage/a", json!({"v": "2"})).await;
    w.wait_secret(&ns, "a", SYNC, |s| value(s, "v").as_deref() == Some("2"))
        .await;
    assert!(ctl.is_running());
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn sealed_vault_is_an_error_status_not_a_crash() {
    let w = World::get().await;
    let ns = w.namespace("e2e-sealed").await;
    w.put_kv2("e2e-sealed/a", json!({"v": "1"})).await;
    let mut ctl = Controller::start(&w, "sealed", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(&ns, &es("a", "kv/e2e-sealed/a")).await;
    let before = w
        .wait_secret(&ns, "a", SYNC, |s| value(s, "v").as_deref() == Some("1"))
        .await;

    w.bao("PUT", "sys/seal", json!(null)).await;
    let e = w
        .wait_es(&ns, "a", SYNC, |es| ready_reason(es) == "VaultReadFailed")
        .await;
    assert!(
        status_text(&e).contains("503") && status_text(&e).contains("sealed"),
        "{}",
        status_text(&e)
    );
    let during = w.secret_api(&ns).get("a").await.unwrap();
    assert_eq!(
        during.metadata.resource_version, before.metadata.resource_version,
        "Secret untouched"
    );
    assert!(
        ctl.is_running(),
        "the controller died on Vault 503: {}",
        ctl.logs()
    );

    w.unseal().await;
    w.put_kv2("e2e-sealed/a", json!({"v": "2"})).await;
    // Retries back off (5 s, 10 s, 20 s ...): recovery within a minute.
    w.wait_secret(&ns, "a", Duration::from_secs(60), |s| {
        value(s, "v").as_deref() == Some("2")
    })
    .await;
    w.wait_es(&ns, "a", SYNC, |es| status_text(es) == "SUCCESS")
        .await;
}
