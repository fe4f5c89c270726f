//! End to end on the real components (`make e2e` starts them): kube-apiserver + etcd +
//! kube-controller-manager, OpenBao whose Kubernetes auth validates our ServiceAccount JWT with
//! TokenReview, and the controller as a separate process with that ServiceAccount's RBAC.
//!
//! Each test has its own namespace(s) and its own controller watching only those, so tests run
//! in parallel. Ignored by plain `cargo test`: they need the world `e2e/up.sh` starts.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{ready_reason, status_text, value, Controller, World};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::Api;
use serde_json::json;

const POLL: Duration = Duration::from_secs(3);
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

fn kubectl(args: &[&str]) -> String {
    let bin = format!("{}/kubectl", std::env::var("E2E_BIN").expect("E2E_BIN"));
    let out = std::process::Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn seed_walkthrough_verbatim() {
    let w = World::get().await;
    // The seed's namespace is `default`; this is the only test that uses it.
    w.put_kv1(
        "Rabbitmq",
        json!({"username": "rabbitmq", "password": "seed-password"}),
    )
    .await;
    let ctl = Controller::start(&w, "seed", &[("WATCHED_NAMESPACES", "default")]);
    ctl.wait_ready().await;
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seed-externalsecret.yaml"
    );
    kubectl(&["apply", "-f", fixture]);

    let s = w
        .wait_secret("default", "rabbitmq", SYNC_TIMEOUT, |s| {
            value(s, "RABBITMQ_USERNAME").as_deref() == Some("rabbitmq")
        })
        .await;
    assert_eq!(s.type_.as_deref(), Some("Opaque"));
    assert_eq!(s.data.as_ref().unwrap().len(), 1);
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ExternalSecret", Some(true))
    );

    let es = w
        .wait_es("default", "rabbitmq", SYNC_TIMEOUT, |es| {
            status_text(es) == "SUCCESS"
        })
        .await;
    assert_eq!(ready_reason(&es), "SecretSynced");
    assert!(es.status.as_ref().unwrap().last_sync.is_some());
    // `kubectl get es` shows KES's columns.
    let table = kubectl(&[
        "get",
        "externalsecrets.kubernetes-client.io",
        "-n",
        "default",
    ]);
    assert!(
        table.contains("LAST SYNC") && table.contains("STATUS"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("rabbitmq") && l.contains("SUCCESS")),
        "{table}"
    );

    // KES metric names and labels.
    let m = ctl.metrics().await;
    assert!(m.contains(r#"kubernetes_external_secrets_sync_calls_count{backend="vault",name="rabbitmq",namespace="default",status="success"}"#), "{m}");
    assert!(m.contains(r#"kubernetes_external_secrets_last_sync_call_state{backend="vault",name="rabbitmq",namespace="default"} 1"#), "{m}");
    assert_eq!(
        ctl.metric(
            r#"vault_external_secrets_vault_requests_total{operation="login",outcome="success"}"#
        )
        .await,
        1.0
    );
    assert_eq!(ctl.metric("vault_external_secrets_leader").await, 1.0);
    for gauge in [
        "vault_external_secrets_queue_depth",
        "vault_external_secrets_syncs_in_flight",
    ] {
        assert!(m.contains(gauge), "{gauge} missing");
    }

    // Deleting the ExternalSecret garbage-collects the Secret (kube-controller-manager).
    kubectl(&["delete", "-f", fixture]);
    let api = w.secret_api("default");
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get_opt("rabbitmq").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "Secret not garbage-collected");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn kv2_key_forms_nested_datafrom_binary_template() {
    let w = World::get().await;
    let ns = w.namespace("e2e-kv2").await;
    w.put_kv2("e2e-kv2/app", json!({"user": "app-user", "db": {"pass": "nested-pass"}, "cert": "aGVsbG8gYmluYXJ5", "port": 5432}))
        .await;
    w.put_kv2(
        "e2e-kv2/common",
        json!({"region": "eu", "shared": "from-common"}),
    )
    .await;
    let _ctl = Controller::start(&w, "kv2", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(
        &ns,
        r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: app}
spec:
  backendType: vault
  vaultMountPoint: kubernetes
  vaultRole: k8s-role
  kvVersion: 2
  template:
    type: kubernetes.io/basic-auth
    metadata:
      labels: {team: payments}
      annotations: {owner: e2e}
  dataFrom: [kv/e2e-kv2/common]
  data:
    - {name: username, key: kv/data/e2e-kv2/app, property: user}
    - {name: password, key: kv/e2e-kv2/app, property: db.pass}
    - {name: tls.crt, key: kv/e2e-kv2/app, property: cert, isBinary: true}
    - {name: port, key: kv/e2e-kv2/app, property: port}
    - {name: shared, key: kv/e2e-kv2/app, property: user}
"#,
    )
    .await;
    let s = w
        .wait_secret(&ns, "app", SYNC_TIMEOUT, |s| value(s, "username").is_some())
        .await;
    assert_eq!(value(&s, "username").unwrap(), "app-user");
    assert_eq!(value(&s, "password").unwrap(), "nested-pass");
    assert_eq!(value(&s, "tls.crt").unwrap(), "hello binary");
    assert_eq!(value(&s, "port").unwrap(), "5432");
    assert_eq!(value(&s, "region").unwrap(), "eu");
    assert_eq!(
        value(&s, "shared").unwrap(),
        "app-user",
        "data wins over dataFrom"
    );
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["team"], "payments");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "vault-external-secrets"
    );
    assert_eq!(s.metadata.annotations.clone().unwrap()["owner"], "e2e");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn vault_change_reaches_the_secret_within_one_poll() {
    let w = World::get().await;
    let ns = w.namespace("e2e-change").await;
    w.put_kv2("e2e-change/v", json!({"v": "one"})).await;
    let ctl = Controller::start(&w, "change", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: c}\nspec: {vaultRole: k8s-role, data: [{name: v, key: kv/e2e-change/v, property: v}]}\n")
        .await;
    w.wait_secret(&ns, "c", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;
    for round in ["two", "three"] {
        let start = Instant::now();
        w.put_kv2("e2e-change/v", json!({"v": round})).await;
        w.wait_secret(&ns, "c", POLL * 4, |s| {
            value(s, "v").as_deref() == Some(round)
        })
        .await;
        let took = start.elapsed();
        // One poll interval, plus the read-cache window and scheduling slack.
        assert!(
            took <= POLL + Duration::from_secs(4),
            "change took {took:?}"
        );
        eprintln!("change {round} reached the Secret in {took:?}");
    }
    assert!(
        ctl.metric(r#"vault_external_secrets_secret_writes_total{kind="update"}"#)
            .await
            >= 2.0
    );
}

/// Our Secrets are known only by their resourceVersion (from the metadata watch): a hand edit
/// changes it and the next poll restores the content; a deletion drops it from the index and
/// the next poll creates the Secret again.
#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn an_edited_or_deleted_secret_is_restored_at_the_next_poll() {
    let w = World::get().await;
    let ns = w.namespace("e2e-restore").await;
    w.put_kv2("e2e-restore/v", json!({"v": "from-vault"})).await;
    let ctl = Controller::start(&w, "restore", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: r}\nspec: {vaultRole: k8s-role, data: [{name: v, key: kv/e2e-restore/v, property: v}]}\n")
        .await;
    let api = w.secret_api(&ns);
    w.wait_secret(&ns, "r", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("from-vault")
    })
    .await;

    let mut edited = api.get("r").await.unwrap();
    edited.string_data = Some([("v".to_string(), "by-hand".to_string())].into());
    api.replace("r", &PostParams::default(), &edited)
        .await
        .unwrap();
    w.wait_secret(&ns, "r", POLL * 3, |s| {
        value(s, "v").as_deref() == Some("from-vault")
    })
    .await;

    api.delete("r", &DeleteParams::default()).await.unwrap();
    w.wait_secret(&ns, "r", POLL * 3, |s| {
        value(s, "v").as_deref() == Some("from-vault")
    })
    .await;
    assert!(
        ctl.metric(r#"vault_external_secrets_secret_writes_total{kind="update"}"#)
            .await
            >= 1.0
    );
    assert!(
        ctl.metric(r#"vault_external_secrets_secret_writes_total{kind="create"}"#)
            .await
            >= 2.0
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn failures_keep_the_secret_and_say_why() {
    let w = World::get().await;
    let ns = w.namespace("e2e-fail").await;
    w.put_kv2("e2e-fail/a", json!({"p": "good"})).await;
    let _ctl = Controller::start(&w, "fail", &[("WATCHED_NAMESPACES", &ns)]);
    let es = "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: f}\nspec: {vaultRole: ROLE, data: [{name: p, key: KEY, property: p}]}\n";
    w.apply_es(
        &ns,
        &es.replace("ROLE", "k8s-role")
            .replace("KEY", "kv/e2e-fail/a"),
    )
    .await;
    let good = w
        .wait_secret(&ns, "f", SYNC_TIMEOUT, |s| {
            value(s, "p").as_deref() == Some("good")
        })
        .await;
    let rv = good.metadata.resource_version.clone();

    // Wrong role: login refused; status names the role; the Secret stays as it was.
    w.apply_es(
        &ns,
        &es.replace("ROLE", "no-such-role")
            .replace("KEY", "kv/e2e-fail/a"),
    )
    .await;
    let e = w
        .wait_es(&ns, "f", SYNC_TIMEOUT, |es| {
            status_text(es).starts_with("ERROR")
        })
        .await;
    assert_eq!(ready_reason(&e), "VaultAuthFailed");
    assert!(
        status_text(&e).contains("no-such-role"),
        "{}",
        status_text(&e)
    );

    // Missing key: status names the key.
    w.apply_es(
        &ns,
        &es.replace("ROLE", "k8s-role")
            .replace("KEY", "kv/e2e-fail/missing"),
    )
    .await;
    let e = w
        .wait_es(&ns, "f", SYNC_TIMEOUT, |es| {
            ready_reason(es) == "VaultReadFailed"
        })
        .await;
    assert!(
        status_text(&e).contains("kv/e2e-fail/missing"),
        "{}",
        status_text(&e)
    );
    assert!(status_text(&e).contains("404"), "{}", status_text(&e));

    // Missing property: KES's wording.
    w.apply_es(
        &ns,
        &es.replace("ROLE", "k8s-role")
            .replace("KEY", "kv/e2e-fail/a")
            .replace("property: p", "property: nope"),
    )
    .await;
    let e = w
        .wait_es(&ns, "f", SYNC_TIMEOUT, |es| {
            ready_reason(es) == "PropertyNotFound"
        })
        .await;
    assert_eq!(
        status_text(&e),
        "ERROR, Could not find property nope in kv/e2e-fail/a"
    );

    tokio::time::sleep(POLL).await;
    let after = w.secret_api(&ns).get("f").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, rv,
        "the Secret was not touched"
    );
    assert_eq!(value(&after, "p").as_deref(), Some("good"));

    // A Warning Event says why, without values.
    let events: Api<Event> = Api::namespaced(w.client.clone(), &ns);
    let list = events.list(&ListParams::default()).await.unwrap();
    let warnings: Vec<_> = list
        .items
        .iter()
        .filter(|e| {
            e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("SyncFailed")
        })
        .collect();
    assert!(!warnings.is_empty(), "no SyncFailed Event");
    assert!(warnings
        .iter()
        .any(|e| e.note.as_deref().unwrap_or("").contains("no-such-role")));
    assert!(list
        .items
        .iter()
        .all(|e| !e.note.as_deref().unwrap_or("").contains("good")));
    let created = list
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Created"))
        .count();
    assert_eq!(created, 1, "one Created Event, none for unchanged polls");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_secret_that_is_not_ours_is_left_untouched() {
    let w = World::get().await;
    let ns = w.namespace("e2e-foreign").await;
    w.put_kv2("e2e-foreign/a", json!({"p": "from-vault"})).await;
    let existing: Secret = serde_json::from_value(json!({
        "metadata": {"name": "mine", "labels": {"owner": "someone-else"}},
        "stringData": {"p": "hand-made"}
    }))
    .unwrap();
    let before = w
        .secret_api(&ns)
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    let _ctl = Controller::start(&w, "foreign", &[("WATCHED_NAMESPACES", &ns)]);
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: mine}\nspec: {vaultRole: k8s-role, data: [{name: p, key: kv/e2e-foreign/a, property: p}]}\n")
        .await;
    let e = w
        .wait_es(&ns, "mine", SYNC_TIMEOUT, |es| {
            ready_reason(es) == "SecretNotOwned"
        })
        .await;
    assert!(status_text(&e).contains("not owned"), "{}", status_text(&e));
    tokio::time::sleep(POLL * 2).await;
    let after = w.secret_api(&ns).get("mine").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(value(&after, "p").as_deref(), Some("hand-made"));
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn watched_namespaces_and_instance_id_filter() {
    let w = World::get().await;
    let a = w.namespace("e2e-scope-a").await;
    let b = w.namespace("e2e-scope-b").await;
    w.put_kv2("e2e-scope/x", json!({"v": "1"})).await;
    let ctl = Controller::start(
        &w,
        "scope",
        &[("WATCHED_NAMESPACES", &a), ("INSTANCE_ID", "blue")],
    );
    let es = |name: &str, id: Option<&str>| {
        format!(
            "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}}}\nspec: {{vaultRole: k8s-role, {}data: [{{name: v, key: kv/e2e-scope/x, property: v}}]}}\n",
            id.map(|i| format!("controllerId: {i}, ")).unwrap_or_default()
        )
    };
    w.apply_es(&a, &es("mine", Some("blue"))).await;
    w.apply_es(&a, &es("other-instance", Some("green"))).await;
    w.apply_es(&a, &es("no-instance", None)).await;
    w.apply_es(&b, &es("elsewhere", Some("blue"))).await;
    w.wait_secret(&a, "mine", SYNC_TIMEOUT, |s| value(s, "v").is_some())
        .await;
    tokio::time::sleep(POLL * 2).await;
    for (ns, name) in [
        (&a, "other-instance"),
        (&a, "no-instance"),
        (&b, "elsewhere"),
    ] {
        assert!(
            w.secret_api(ns).get_opt(name).await.unwrap().is_none(),
            "{ns}/{name} was synced"
        );
        let es = w.es_api(ns).get(name).await.unwrap();
        assert!(es.status.is_none(), "{ns}/{name} got a status");
    }
    assert!(!ctl.metrics().await.contains("elsewhere"));
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn steady_state_writes_nothing_and_coalesces_reads() {
    let w = World::get().await;
    let ns = w.namespace("e2e-steady").await;
    w.put_kv2("e2e-steady/one", json!({"v": "1"})).await;
    w.put_kv2("e2e-steady/two", json!({"v": "2"})).await;
    let ctl = Controller::start(&w, "steady", &[("WATCHED_NAMESPACES", &ns)]);
    // Six ExternalSecrets over two Vault paths.
    for i in 0..6 {
        let path = if i % 2 == 0 { "one" } else { "two" };
        w.apply_es(&ns, &format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: s{i}}}\nspec: {{vaultRole: k8s-role, data: [{{name: v, key: kv/e2e-steady/{path}, property: v}}]}}\n"))
            .await;
    }
    for i in 0..6 {
        w.wait_es(&ns, &format!("s{i}"), SYNC_TIMEOUT, |es| {
            status_text(es) == "SUCCESS"
        })
        .await;
    }
    tokio::time::sleep(POLL * 2).await; // past the first, unaligned round of polls
    let series = [
        r#"vault_external_secrets_secret_writes_total{kind="create"}"#,
        r#"vault_external_secrets_secret_writes_total{kind="update"}"#,
        "vault_external_secrets_status_writes_total",
        r#"vault_external_secrets_vault_requests_total{operation="login",outcome="success"}"#,
    ];
    let mut before = Vec::new();
    for s in series {
        before.push(ctl.metric(s).await);
    }
    let reads_before = ctl
        .metric(
            r#"vault_external_secrets_vault_requests_total{operation="read",outcome="success"}"#,
        )
        .await;
    let skipped_before = ctl
        .metric(r#"vault_external_secrets_secret_writes_total{kind="skipped"}"#)
        .await;
    tokio::time::sleep(POLL * 3).await;
    for (s, b) in series.iter().zip(&before) {
        assert_eq!(ctl.metric(s).await, *b, "{s} changed in steady state");
    }
    assert_eq!(before[3], 1.0, "one login for one role");
    let reads = ctl
        .metric(
            r#"vault_external_secrets_vault_requests_total{operation="read",outcome="success"}"#,
        )
        .await
        - reads_before;
    let polls = ctl
        .metric(r#"vault_external_secrets_secret_writes_total{kind="skipped"}"#)
        .await
        - skipped_before;
    eprintln!("3 steady cycles: {polls} polls, {reads} Vault reads");
    assert!(polls >= 12.0, "objects kept polling ({polls})");
    // 2 distinct paths × 3 cycles (+1 for a cycle boundary) — not 6 objects × 3.
    assert!(reads <= 8.0, "{reads} reads for 2 paths over 3 cycles");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn no_secret_value_in_controller_logs() {
    let w = World::get().await;
    let ns = w.namespace("e2e-leak").await;
    let planted = ["planted-e2e-Pa55-8d1f0b", "planted-e2e-user-77aa01"];
    w.put_kv2(
        "e2e-leak/db",
        json!({"password": planted[0], "user": planted[1]}),
    )
    .await;
    let mut ctl = Controller::start(
        &w,
        "leak",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("LOG_LEVEL", "trace"),
            ("RUST_LOG", "trace"),
        ],
    );
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: ok}\nspec: {vaultRole: k8s-role, dataFrom: [kv/e2e-leak/db], data: [{name: whole, key: kv/e2e-leak/db}]}\n")
        .await;
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: bad}\nspec: {vaultRole: k8s-role, data: [{name: p, key: kv/e2e-leak/db, property: password, isBinary: true}]}\n")
        .await;
    w.wait_secret(&ns, "ok", SYNC_TIMEOUT, |s| {
        value(s, "password").as_deref() == Some(planted[0])
    })
    .await;
    w.wait_es(&ns, "bad", SYNC_TIMEOUT, |es| {
        status_text(es).starts_with("ERROR")
    })
    .await;
    let metrics = ctl.metrics().await;
    assert_eq!(ctl.terminate().code(), Some(0));
    let logs = ctl.logs();
    assert!(logs.lines().count() > 10);
    let jwt = std::fs::read_to_string(std::env::var("VAULT_JWT_PATH").unwrap()).unwrap();
    let bad = w.es_api(&ns).get("bad").await.unwrap();
    let status = serde_json::to_string(&bad.status).unwrap();
    for secret in planted.iter().copied().chain([jwt.trim()]) {
        assert!(!logs.contains(secret), "{secret} in the controller log");
        assert!(!metrics.contains(secret), "{secret} in metrics");
        assert!(!status.contains(secret), "{secret} in status");
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn graceful_shutdown_revokes_tokens_and_jwt_is_reread() {
    let w = World::get().await;
    let ns = w.namespace("e2e-shutdown").await;
    w.put_kv2("e2e-shutdown/a", json!({"v": "1"})).await;
    // A JWT file of this test's own, to rotate.
    let jwt_file = w.dir.join("shutdown.jwt");
    std::fs::copy(std::env::var("VAULT_JWT_PATH").unwrap(), &jwt_file).unwrap();
    let mut ctl = Controller::start(
        &w,
        "shutdown",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("VAULT_JWT_PATH", jwt_file.to_str().unwrap()),
        ],
    );
    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: a}\nspec: {vaultRole: k8s-role, data: [{name: v, key: kv/e2e-shutdown/a, property: v}]}\n")
        .await;
    w.wait_secret(&ns, "a", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("1")
    })
    .await;
    let accessor = |logs: &str| -> Vec<String> {
        logs.lines()
            .filter(|l| l.contains("logged in to Vault"))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["accessor"].as_str().map(String::from))
            .collect()
    };
    let first = accessor(&ctl.logs());
    assert_eq!(first.len(), 1);

    // Break the JWT file and revoke the token: the next read gets 403, the re-login reads the
    // broken file and fails — proof that the file is read at each login.
    std::fs::write(&jwt_file, "not-a-jwt").unwrap();
    w.bao(
        "POST",
        "auth/token/revoke-accessor",
        json!({"accessor": first[0]}),
    )
    .await;
    w.put_kv2("e2e-shutdown/a", json!({"v": "2"})).await;
    w.wait_es(&ns, "a", SYNC_TIMEOUT, |es| {
        ready_reason(es) == "VaultAuthFailed"
    })
    .await;
    // A fresh token from the TokenRequest API (a rotated projected token): syncing resumes.
    let fresh = kubectl(&[
        "-n",
        "vault-external-secrets",
        "create",
        "token",
        "vault-external-secrets",
    ]);
    std::fs::write(&jwt_file, fresh.trim()).unwrap();
    w.wait_secret(&ns, "a", Duration::from_secs(60), |s| {
        value(s, "v").as_deref() == Some("2")
    })
    .await;
    let logins = accessor(&ctl.logs());
    assert_eq!(logins.len(), 2, "exactly one new login");

    assert_eq!(ctl.terminate().code(), Some(0), "graceful exit");
    let logs = ctl.logs();
    assert!(logs.contains("revoked Vault token"), "{logs}");
    let alive = reqwest::Client::new()
        .post(format!("{}/v1/auth/token/lookup-accessor", w.bao_addr))
        .header("X-Vault-Token", "root")
        .json(&json!({"accessor": logins[1]}))
        .send()
        .await
        .unwrap()
        .status()
        .is_success();
    assert!(!alive, "the controller's token outlived a graceful stop");
    w.es_api(&ns)
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn two_replicas_one_writer_then_failover() {
    let w = World::get().await;
    let ns = w.namespace("e2e-ha").await;
    w.put_kv2("e2e-ha/v", json!({"v": "0"})).await;
    let env = [
        ("WATCHED_NAMESPACES", ns.as_str()),
        ("LEADER_ELECT", "true"),
        ("LEADER_ELECTION_NAMESPACE", "vault-external-secrets"),
        ("LEADER_ELECTION_LEASE_NAME", "e2e-ha"),
    ];
    let leader = r"vault_external_secrets_leader";
    let writes = |c: &Controller| {
        let c = c.port;
        async move {
            let m = reqwest::get(format!("http://127.0.0.1:{c}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let get = |s: &str| {
                m.lines()
                    .find_map(|l| l.strip_prefix(s).and_then(|r| r.trim().parse::<f64>().ok()))
                    .unwrap_or(0.0)
            };
            get(r#"vault_external_secrets_secret_writes_total{kind="create"}"#)
                + get(r#"vault_external_secrets_secret_writes_total{kind="update"}"#)
                + get("vault_external_secrets_status_writes_total")
        }
    };
    let mut a = Controller::start(&w, "ha-a", &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a.metric(leader).await != 1.0 {
        assert!(Instant::now() < deadline, "replica A never became leader");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut b = Controller::start(&w, "ha-b", &env);
    b.wait_ready().await;
    assert_eq!(b.metric(leader).await, 0.0, "two leaders");

    w.apply_es(&ns, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: ha}\nspec: {vaultRole: k8s-role, data: [{name: v, key: kv/e2e-ha/v, property: v}]}\n")
        .await;
    w.wait_secret(&ns, "ha", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("0")
    })
    .await;
    for i in 1..=3 {
        let v = i.to_string();
        w.put_kv2("e2e-ha/v", json!({ "v": v })).await;
        w.wait_secret(&ns, "ha", SYNC_TIMEOUT, |s| {
            value(s, "v").as_deref() == Some(v.as_str())
        })
        .await;
    }
    assert!(writes(&a).await >= 4.0, "the leader wrote");
    assert_eq!(writes(&b).await, 0.0, "the follower wrote nothing");

    // kill -9 the leader: the follower takes over once the Lease expires.
    a.kill();
    let killed = Instant::now();
    w.put_kv2("e2e-ha/v", json!({"v": "after-failover"})).await;
    w.wait_secret(&ns, "ha", Duration::from_secs(60), |s| {
        value(s, "v").as_deref() == Some("after-failover")
    })
    .await;
    let failover = killed.elapsed();
    eprintln!("failover (kill -9 of the leader → first sync by the new one): {failover:?}");
    assert!(
        failover <= Duration::from_secs(25),
        "failover took {failover:?}"
    );
    assert_eq!(b.metric(leader).await, 1.0);

    // A graceful stop finishes in-flight work, revokes tokens and releases the Lease; a waiting
    // replica takes over no later than the lease duration (kube-lease-manager followers wake at
    // the expiry they last saw, so the release mostly matters when no replica is waiting).
    let c = Controller::start(&w, "ha-c", &env);
    c.wait_ready().await;
    assert_eq!(b.terminate().code(), Some(0));
    assert!(b.logs().contains("released the leader Lease"));
    let stopped = Instant::now();
    w.put_kv2("e2e-ha/v", json!({"v": "after-release"})).await;
    w.wait_secret(&ns, "ha", Duration::from_secs(30), |s| {
        value(s, "v").as_deref() == Some("after-release")
    })
    .await;
    let handover = stopped.elapsed();
    eprintln!("handover after a graceful stop: {handover:?}");
    assert!(
        handover <= Duration::from_secs(20),
        "handover took {handover:?}"
    );
}
