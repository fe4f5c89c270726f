//! This controller on ESO's own CRDs (v0.16.2, from its Go module), not ours: a cluster that
//! already runs ESO keeps its CRDs and this controller works on them unchanged. Swaps the
//! cluster's `external-secrets.io` CRDs, so it runs alone, after the parallel suites, and puts
//! ours back at the end (also when it fails).

mod common;

use std::process::Command;
use std::time::Duration;

use common::e2e::{value, Controller, World};
use kube::Api;
use serde_json::json;
use vault_external_secrets::api::eso::crd::ExternalSecret;
use vault_external_secrets::api::eso::store::SecretStore;

const TIMEOUT: Duration = Duration::from_secs(30);

fn script(name: &str) -> String {
    let out = Command::new("bash")
        .arg(format!("{}/e2e/{name}", env!("CARGO_MANIFEST_DIR")))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Puts our CRDs back when the test ends, however it ends.
struct RestoreOurCrds<'a>(&'a World);

impl Drop for RestoreOurCrds<'_> {
    fn drop(&mut self) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
        self.0.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", dir],
            "",
        );
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn runs_on_esos_own_crds() {
    let w = World::get().await;
    let eso = script("eso-crds.sh");
    let _restore = RestoreOurCrds(&w);
    w.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", &eso],
        "",
    );
    w.kubectl_stdin(
        &[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/externalsecrets.external-secrets.io",
            "crd/secretstores.external-secrets.io",
            "crd/clustersecretstores.external-secrets.io",
        ],
        "",
    );
    let crd = w.kubectl_stdin(
        &[
            "get",
            "crd",
            "secretstores.external-secrets.io",
            "-o",
            "jsonpath={.metadata.annotations}",
        ],
        "",
    );
    assert!(
        crd.contains("controller-gen"),
        "ESO's CRD is installed: {crd}"
    );

    let ns = w.namespace("eso-crds").await;
    w.kubectl_apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: reader, namespace: {ns}}}\n"
    ));
    w.bao(
        "PUT",
        "auth/kubernetes/role/eso-crds",
        json!({"bound_service_account_names": "reader",
        "bound_service_account_namespaces": ns, "policies": "readonly", "ttl": "1h"}),
    )
    .await;
    w.put_kv2(
        "eso-crds/app",
        json!({"user": "u", "nested": {"p": "on-eso-schema"}}),
    )
    .await;
    let ctl = Controller::start(&w, "eso-crds", &[("WATCHED_NAMESPACES", &ns)]);
    ctl.wait_ready().await;
    w.kubectl_apply(&format!(
        "apiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: vault, namespace: {ns}}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: kv\n      version: v2\n      auth:\n        kubernetes:\n          mountPath: kubernetes\n          role: eso-crds\n          serviceAccountRef: {{name: reader}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: vault, kind: SecretStore}}\n  target: {{name: app}}\n  data:\n  - {{secretKey: p, remoteRef: {{key: eso-crds/app, property: nested.p}}}}\n  dataFrom:\n  - extract: {{key: eso-crds/app}}\n",
        std::env::var("VAULT_ADDR").unwrap()
    ));
    let s = w
        .wait_secret(&ns, "app", TIMEOUT, |s| value(s, "p").is_some())
        .await;
    assert_eq!(value(&s, "p").as_deref(), Some("on-eso-schema"));
    assert_eq!(value(&s, "user").as_deref(), Some("u"));
    // Our status survives ESO's schema (a field it did not know would be pruned silently).
    let api: Api<ExternalSecret> = Api::namespaced(w.client.clone(), &ns);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        let es = api.get("app").await.unwrap();
        if let Some(st) = es.status.filter(|s| !s.conditions.is_empty()) {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "no status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.conditions[0].reason.as_deref(), Some("SecretSynced"));
    assert!(status.refresh_time.is_some() && status.synced_resource_version.is_some());
    assert_eq!(status.binding.and_then(|b| b.name).as_deref(), Some("app"));
    let stores: Api<SecretStore> = Api::namespaced(w.client.clone(), &ns);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let st = stores
            .get("vault")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if let Some(c) = st.conditions.first() {
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref()),
                ("True", Some("Valid"))
            );
            assert_eq!(st.capabilities.as_deref(), Some("ReadOnly"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no store status");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The same object read as v1beta1, which ESO's CRD also serves.
    let beta = w.kubectl_stdin(
        &[
            "get",
            "externalsecrets.v1beta1.external-secrets.io",
            "app",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ],
        "",
    );
    assert_eq!(beta, "SecretSynced");
}
