//! The Helm chart on the real apiserver: lint, render (default values, the seed's KES
//! values.yaml, namespaced mode), server-side dry-run then a real apply; and in namespaced mode
//! the chart's own ServiceAccount syncs in its namespaces and is refused Secrets elsewhere.

mod common;

use std::process::Command;
use std::time::Duration;

use common::e2e::{value, Controller, World};
use serde_json::json;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/vault-external-secrets");

fn run(bin: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn helm(args: &[&str]) -> String {
    let (ok, out, err) = run(&std::env::var("HELM").expect("HELM"), args, None);
    assert!(ok, "helm {args:?}: {err}");
    out
}

fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let bin = format!("{}/kubectl", std::env::var("E2E_BIN").expect("E2E_BIN"));
    run(&bin, args, stdin)
}

fn must_kubectl(args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = kubectl(args, stdin);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// Renders the chart and applies it: server-side dry-run first, then for real.
fn render_and_apply(release: &str, namespace: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "template",
        release,
        CHART,
        "--namespace",
        namespace,
        "--kube-version",
        "1.35.4",
    ];
    args.extend_from_slice(extra);
    let manifests = helm(&args);
    let (ok, _, err) = kubectl(&["create", "namespace", namespace], None);
    assert!(ok || err.contains("AlreadyExists"), "{err}");
    must_kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&manifests));
    must_kubectl(&["apply", "-f", "-"], Some(&manifests));
    manifests
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn chart_lints_renders_and_applies() {
    let _w = World::get().await;
    helm(&["lint", CHART, "--kube-version", "1.35.4"]);

    let default = render_and_apply("chart-default", "chart-default", &[]);
    assert!(
        default.contains("\nkind: ClusterRole\n"),
        "cluster-wide by default"
    );
    assert!(
        default.contains("runAsNonRoot: true") && default.contains("readOnlyRootFilesystem: true")
    );
    assert!(default.contains("path: /readyz") && default.contains("path: /healthz"));
    assert!(
        !default.contains("kind: CustomResourceDefinition"),
        "ESO's CRDs only when asked"
    );
    // ESO's CRDs when asked (ESO's own may be there already), kept on uninstall. Rendered and
    // dry-run only: the e2e world has them installed from crds/ already.
    let eso = helm(&[
        "template",
        "chart-eso",
        CHART,
        "--kube-version",
        "1.35.4",
        "--set",
        "installCRDs.eso=true",
    ]);
    assert_eq!(eso.matches("kind: CustomResourceDefinition").count(), 3);
    assert_eq!(eso.matches("helm.sh/resource-policy: keep").count(), 3);
    let audit = helm(&[
        "template",
        "chart-audit",
        CHART,
        "--kube-version",
        "1.35.4",
        "--set",
        "auditListener.enabled=true",
    ]);
    assert!(
        audit.contains("value: \"0.0.0.0:9514\"")
            && audit.contains("protocol: UDP")
            && audit.contains("name: audit-tcp"),
        "{audit}"
    );
    assert!(!default.contains("AUDIT_LISTEN_ADDR"), "off by default");
    must_kubectl(&["apply", "--dry-run=server", "-f", "-"], Some(&eso));

    // The seed's KES values.yaml, unchanged but for the image.
    let seed_values = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/kes-values.yaml"
    );
    let seed = render_and_apply(
        "chart-seed",
        "chart-seed",
        &[
            "-f",
            seed_values,
            "--set",
            "image.repository=ghcr.io/vault-external-secrets/vault-external-secrets",
            "--set",
            "image.tag=0.1.0",
        ],
    );
    assert!(
        seed.contains("name: kubernetes-external-secrets"),
        "serviceAccount.name kept"
    );
    assert!(seed.contains("value: \"http://vault:8200\""));
    assert!(
        !seed.contains("name: WATCHED_NAMESPACES"),
        "empty env values are skipped"
    );
    let sa = must_kubectl(
        &[
            "-n",
            "chart-seed",
            "get",
            "serviceaccount",
            "kubernetes-external-secrets",
            "-o",
            "name",
        ],
        None,
    );
    assert!(sa.contains("kubernetes-external-secrets"));

    let ha = helm(&[
        "template",
        "chart-ha",
        CHART,
        "--kube-version",
        "1.35.4",
        "--set",
        "replicaCount=2",
        "--set",
        "podDisruptionBudget.minAvailable=1",
    ]);
    assert!(
        ha.contains("name: LEADER_ELECT\n              value: \"true\""),
        "{ha}"
    );
    assert!(ha.contains("kind: PodDisruptionBudget") && ha.contains("resources: [leases]"));

    // Monitoring, when asked: the dashboard ConfigMap is applied to the real apiserver and holds
    // the dashboard's JSON unchanged; the PrometheusRule is rendered (its CRD is
    // prometheus-operator's, not installed here; `make alerts` checks its rules with promtool).
    assert!(!default.contains("kind: PrometheusRule") && !default.contains("grafana_dashboard"));
    let monitoring = render_and_apply(
        "chart-monitoring",
        "chart-monitoring",
        &["--set", "grafanaDashboard.enabled=true"],
    );
    assert!(monitoring.contains("grafana_dashboard: \"1\""));
    let stored = must_kubectl(
        &[
            "-n",
            "chart-monitoring",
            "get",
            "configmap",
            "chart-monitoring-vault-external-secrets-dashboard",
            "-o",
            "jsonpath={.data.vault-external-secrets\\.json}",
        ],
        None,
    );
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/vault-external-secrets/dashboards/vault-external-secrets.json"
    ))
    .unwrap();
    let parse = |t: &str| serde_json::from_str::<serde_json::Value>(t).unwrap();
    assert_eq!(parse(&stored), parse(&shipped));
    let rule = helm(&[
        "template",
        "chart-rule",
        CHART,
        "--kube-version",
        "1.35.4",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=prom",
    ]);
    assert!(
        rule.contains("kind: PrometheusRule")
            && rule.contains("release: prom")
            && rule.contains("job=\"chart-rule-vault-external-secrets\""),
        "{rule}"
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn namespaced_chart_syncs_inside_and_is_refused_outside() {
    let w = World::get().await;
    let team_a = w.namespace("chart-team-a").await;
    let team_b = w.namespace("chart-team-b").await;
    let rendered = render_and_apply(
        "chart-ns",
        "chart-ns",
        &["--set", "scope.namespaces={chart-team-a}"],
    );
    // The one ClusterRole reads the watched Namespace by name (KES's guard), nothing else.
    let cluster_roles: Vec<&str> = rendered
        .split("\n---")
        .filter(|d| d.contains("\nkind: ClusterRole\n"))
        .collect();
    assert_eq!(cluster_roles.len(), 1, "{cluster_roles:?}");
    assert!(
        cluster_roles[0].contains("resources: [namespaces]")
            && cluster_roles[0].contains("resourceNames: [chart-team-a]")
            && !cluster_roles[0].contains("resources: [secrets]"),
        "{}",
        cluster_roles[0]
    );
    assert!(
        !rendered.contains("system:auth-delegator"),
        "no cluster-wide auth-delegator binding unless asked"
    );

    // The chart's own ServiceAccount: its TokenRequest token is the Kubernetes and Vault credential.
    let sa = "chart-ns-vault-external-secrets";
    let token = must_kubectl(
        &["-n", "chart-ns", "create", "token", sa, "--duration=1h"],
        None,
    );
    let jwt = w.dir.join("chart-ns.jwt");
    std::fs::write(&jwt, token.trim()).unwrap();
    let admin = std::fs::read_to_string(std::env::var("CONTROLLER_KUBECONFIG").unwrap()).unwrap();
    let kubeconfig = w.dir.join("chart-ns.kubeconfig");
    let original_jwt = std::env::var("VAULT_JWT_PATH").unwrap();
    std::fs::write(
        &kubeconfig,
        admin.replace(&original_jwt, jwt.to_str().unwrap()),
    )
    .unwrap();
    w.bao(
        "POST",
        "auth/kubernetes/role/chart-ns-role",
        json!({"bound_service_account_names": [sa], "bound_service_account_namespaces": ["chart-ns"],
               "policies": ["readonly"], "ttl": "1h"}),
    )
    .await;
    w.put_kv2("chart/app", json!({"v": "scoped"})).await;

    let _ctl = Controller::start(
        &w,
        "chart-ns",
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("VAULT_JWT_PATH", jwt.to_str().unwrap()),
            ("WATCHED_NAMESPACES", &team_a),
        ],
    );
    w.apply_es(&team_a, "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: app}\nspec: {vaultRole: chart-ns-role, data: [{name: v, key: kv/chart/app, property: v}]}\n")
        .await;
    let s = w
        .wait_secret(&team_a, "app", Duration::from_secs(30), |s| {
            value(s, "v").is_some()
        })
        .await;
    assert_eq!(value(&s, "v").as_deref(), Some("scoped"));

    // Outside its namespaces the apiserver refuses it Secrets (and ExternalSecrets).
    let as_sa = ["--kubeconfig", kubeconfig.to_str().unwrap()];
    for (verb, what) in [
        ("get", "secrets"),
        ("get", "externalsecrets.kubernetes-client.io"),
    ] {
        let mut args = as_sa.to_vec();
        args.extend_from_slice(&[verb, what, "-n", &team_b]);
        let (ok, _, err) = kubectl(&args, None);
        assert!(
            !ok && err.contains("Forbidden"),
            "{what} in {team_b}: {err}"
        );
        let mut args = as_sa.to_vec();
        args.extend_from_slice(&[verb, what, "--all-namespaces"]);
        let (ok, _, err) = kubectl(&args, None);
        assert!(
            !ok && err.contains("Forbidden"),
            "{what} cluster-wide: {err}"
        );
    }
    let mut args = as_sa.to_vec();
    args.extend_from_slice(&[
        "create",
        "secret",
        "generic",
        "probe",
        "-n",
        &team_b,
        "--from-literal=a=b",
    ]);
    let (ok, _, err) = kubectl(&args, None);
    assert!(
        !ok && err.to_lowercase().contains("forbidden"),
        "create in {team_b}: {err}"
    );
}
