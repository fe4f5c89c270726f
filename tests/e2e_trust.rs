//! A hostile or restricted tenant on the real components (`make e2e`): KES's namespace guard,
//! keys outside KV, path tricks and credential-minting Secret types. Each case asserts from
//! OpenBao's audit log that nothing was read on the tenant's behalf.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{ready_reason, status_text, value, Controller, World};
use serde_json::json;

const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
const NAMING: &str = "externalsecrets.kubernetes-client.io/permitted-key-name";
const ROLE: &str = "iam.amazonaws.com/permitted";

fn es(name: &str, role: &str, key: &str) -> String {
    format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}}}\nspec: {{vaultRole: {role}, data: [{{name: v, key: {key}, property: v}}]}}\n")
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn kes_namespace_guard_as_kes() {
    let w = World::get().await;
    let ns = w.namespace("e2e-guard").await;
    w.annotate_namespace(
        &ns,
        &[(NAMING, Some("^kv/e2e-guard/")), (ROLE, Some("^k8s-role$"))],
    )
    .await;
    w.put_kv2("e2e-guard/ok", json!({"v": "allowed"})).await;
    w.put_kv2("e2e-guard-other/x", json!({"v": "forbidden"}))
        .await;
    // A long poll: only the Namespace watch can explain a quick re-sync below.
    let _ctl = Controller::start(
        &w,
        "guard",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "120000"),
        ],
    );
    w.apply_es(&ns, &es("allowed", "k8s-role", "kv/e2e-guard/ok"))
        .await;
    w.apply_es(&ns, &es("badkey", "k8s-role", "kv/e2e-guard-other/x"))
        .await;
    w.apply_es(&ns, &es("badrole", "other-role", "kv/e2e-guard/ok"))
        .await;

    w.wait_secret(&ns, "allowed", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("allowed")
    })
    .await;
    let bad = w
        .wait_es(&ns, "badkey", SYNC_TIMEOUT, |e| {
            status_text(e).starts_with("ERROR")
        })
        .await;
    assert_eq!(
        status_text(&bad),
        "ERROR, key name kv/e2e-guard-other/x does not match naming convention ^kv/e2e-guard/"
    );
    assert_eq!(ready_reason(&bad), "Forbidden");
    let bad = w
        .wait_es(&ns, "badrole", SYNC_TIMEOUT, |e| {
            status_text(e).starts_with("ERROR")
        })
        .await;
    assert_eq!(
        status_text(&bad),
        "ERROR, namespace does not allow to assume role other-role"
    );
    assert!(w.secret_api(&ns).get_opt("badkey").await.unwrap().is_none());
    assert_eq!(
        w.vault_requests("kv/data/e2e-guard-other/x"),
        0,
        "a denied key is never read"
    );

    // The guard is re-evaluated when the Namespace changes, not at the next poll (2 min).
    let t = Instant::now();
    w.annotate_namespace(&ns, &[(NAMING, Some("^kv/"))]).await;
    w.wait_secret(&ns, "badkey", Duration::from_secs(15), |s| {
        value(s, "v").as_deref() == Some("forbidden")
    })
    .await;
    println!("annotation change -> Secret: {:?}", t.elapsed());
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn enforced_namespace_annotations() {
    let w = World::get().await;
    let ns = w.namespace("e2e-guard-enforce").await;
    w.put_kv2("e2e-guard-enforce/a", json!({"v": "1"})).await;
    let _ctl = Controller::start(
        &w,
        "guard-enforce",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("ENFORCE_NAMESPACE_ANNOTATIONS", "true"),
            ("POLLER_INTERVAL_MILLISECONDS", "120000"),
        ],
    );
    w.apply_es(&ns, &es("a", "k8s-role", "kv/e2e-guard-enforce/a"))
        .await;
    let e = w
        .wait_es(&ns, "a", SYNC_TIMEOUT, |e| {
            status_text(e).starts_with("ERROR")
        })
        .await;
    assert_eq!(status_text(&e), "ERROR, Namespace annotation is required");
    // One of the two present: the other is named as missing.
    w.annotate_namespace(&ns, &[(NAMING, Some("^kv/e2e-guard-enforce/"))])
        .await;
    let e = w
        .wait_es(&ns, "a", SYNC_TIMEOUT, |e| {
            status_text(e).contains("Missing")
        })
        .await;
    assert_eq!(
        status_text(&e),
        format!("ERROR, Missing required annotation {ROLE} on namespace {ns}")
    );
    assert_eq!(w.vault_requests("kv/data/e2e-guard-enforce/a"), 0);
    w.annotate_namespace(&ns, &[(ROLE, Some("^k8s-role$"))])
        .await;
    w.wait_secret(&ns, "a", Duration::from_secs(15), |s| {
        value(s, "v").as_deref() == Some("1")
    })
    .await;
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn hostile_specs_read_nothing_and_mint_nothing() {
    let w = World::get().await;
    let ns = w.namespace("e2e-hostile").await;
    w.put_kv2("e2e-hostile/a", json!({"v": "1"})).await;
    // A role of its own: the audit log tells its requests from the parallel tests'.
    w.bao(
        "POST",
        "auth/kubernetes/role/hostile-role",
        json!({"bound_service_account_names": ["vault-external-secrets"],
               "bound_service_account_namespaces": ["vault-external-secrets"],
               "policies": ["readonly"], "ttl": "1h"}),
    )
    .await;
    let _ctl = Controller::start(&w, "hostile", &[("WATCHED_NAMESPACES", &ns)]);
    let cases = [
        ("token", "spec: {vaultRole: hostile-role, kvVersion: 1, dataFrom: [auth/token/lookup-self]}", "auth/"),
        ("acl", "spec: {vaultRole: hostile-role, kvVersion: 1, dataFrom: [sys/internal/ui/resultant-acl]}", "sys/"),
        ("cubby", "spec: {vaultRole: hostile-role, kvVersion: 1, data: [{name: v, key: cubbyhole/x}]}", "cubbyhole/"),
        ("mount", "spec: {vaultRole: hostile-role, vaultMountPoint: ../token, data: [{name: v, key: kv/e2e-hostile/a}]}", "vaultMountPoint"),
        ("satoken", "spec: {vaultRole: hostile-role, template: {type: kubernetes.io/service-account-token, metadata: {annotations: {kubernetes.io/service-account.name: default}}}, data: [{name: v, key: kv/e2e-hostile/a, property: v}]}", "service-account-token"),
        // A KV mount read with the wrong version: refused by the mount check, not read.
        ("version", "spec: {vaultRole: hostile-role, kvVersion: 1, data: [{name: v, key: kv/e2e-hostile/a}]}", "kvVersion to 2"),
    ];
    for (name, spec, _) in &cases {
        w.apply_es(
            &ns,
            &format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}}}\n{spec}\n"),
        )
        .await;
    }
    for (name, _, why) in &cases {
        let e = w
            .wait_es(&ns, name, SYNC_TIMEOUT, |e| {
                status_text(e).starts_with("ERROR")
            })
            .await;
        assert_eq!(
            ready_reason(&e),
            "InvalidSpec",
            "{name}: {}",
            status_text(&e)
        );
        assert!(status_text(&e).contains(why), "{name}: {}", status_text(&e));
        assert!(
            w.secret_api(&ns).get_opt(name).await.unwrap().is_none(),
            "{name}: a Secret was written"
        );
    }
    for path in [
        "auth/token/lookup-self",
        "sys/internal/ui/resultant-acl",
        "cubbyhole/x",
        "auth/token/login",
        "token/login",
        "kv/e2e-hostile/a",
    ] {
        assert_eq!(
            w.vault_requests_as(path, Some("hostile-role")),
            0,
            "{path} was requested"
        );
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_write_loop_with_another_controller_is_stopped() {
    let w = World::get().await;
    let ns = w.namespace("e2e-write-loop").await;
    w.put_kv2("e2e-write-loop/a", json!({"v": "ours"})).await;
    let ctl = Controller::start(
        &w,
        "write-loop",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("POLLER_INTERVAL_MILLISECONDS", "2000"),
        ],
    );
    w.apply_es(&ns, &es("a", "k8s-role", "kv/e2e-write-loop/a"))
        .await;
    w.wait_secret(&ns, "a", SYNC_TIMEOUT, |s| {
        value(s, "v").as_deref() == Some("ours")
    })
    .await;
    // A rival controller puts its own value back each time we restore ours.
    let api = w.secret_api(&ns);
    let pp = kube::api::PostParams {
        field_manager: Some("e2e-rival".into()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let stopped = loop {
        assert!(Instant::now() < deadline, "no loop detected");
        let mut s = api.get("a").await.unwrap();
        if value(&s, "v").as_deref() == Some("ours") {
            s.data
                .as_mut()
                .unwrap()
                .insert("v".into(), k8s_openapi::ByteString(b"rival".to_vec()));
            s.metadata.managed_fields = None;
            let _ = api.replace("a", &pp, &s).await;
        }
        let e = w.es_api(&ns).get("a").await.unwrap();
        if ready_reason(&e) == "SecretWriteLoop" {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status_text(&stopped).contains("e2e-rival"),
        "{}",
        status_text(&stopped)
    );
    let restores = ctl
        .metric("vault_external_secrets_secret_writes_total{kind=\"update\"}")
        .await;
    assert_eq!(restores, 2.0, "two restores, then stopped");
    // And it stays stopped: the rival's value is left alone.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let s = api.get("a").await.unwrap();
    assert_eq!(value(&s, "v").as_deref(), Some("rival"));
}
