//! The command line against the real apiserver and OpenBao, as the controller's identity:
//! `render` prints the Secret a manifest would produce (redacted, or with --show-values) or the
//! controller's error with exit code 1; `status` lists the objects, the failing one first.

mod common;

use std::process::Command;
use std::time::Duration;

use common::e2e::{value, Controller, World};
use serde_json::json;

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vault-external-secrets"))
        .args(args)
        .env_clear()
        .env(
            "KUBECONFIG",
            std::env::var("CONTROLLER_KUBECONFIG").unwrap(),
        )
        .env("VAULT_ADDR", std::env::var("VAULT_ADDR").unwrap())
        .env("VAULT_JWT_PATH", std::env::var("VAULT_JWT_PATH").unwrap())
        .output()
        .expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn render_and_status_explain_a_sync() {
    let w = World::get().await;
    let ns = w.namespace("cli").await;
    w.put_kv1("cli/app", json!({"password": "cli-value-123"}))
        .await;
    let es = |name: &str, property: &str| {
        format!("apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  backendType: vault\n  vaultRole: k8s-role\n  kvVersion: 1\n  data:\n  - {{name: password, key: secret/cli/app, property: {property}}}\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&good, es("good", "password")).unwrap();
    std::fs::write(&bad, es("bad", "nope")).unwrap();

    let (code, out) = cli(&["render", "-f", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("password: <13 bytes, sha256:"), "{out}");
    assert!(!out.contains("cli-value-123"), "redacted: {out}");
    let (code, out) = cli(&[
        "render",
        "-f",
        good.to_str().unwrap(),
        "--show-values",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["password"], "cli-value-123");
    let (code, out) = cli(&["render", "-f", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(
        out.trim(),
        "PropertyNotFound: Could not find property nope in secret/cli/app"
    );

    // Applied and synced by a controller: status shows the failing object first.
    let ctl = Controller::start(&w, "cli", &[("WATCHED_NAMESPACES", &ns)]);
    ctl.wait_ready().await;
    w.kubectl_apply(&format!(
        "{}---\n{}",
        es("good", "password"),
        es("bad", "nope")
    ));
    w.wait_secret(&ns, "good", Duration::from_secs(30), |s| {
        value(s, "password").is_some()
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let (code, out) = cli(&["status", "-n", &ns, "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let rows = v["externalSecrets"].as_array().cloned().unwrap_or_default();
        if code == 1 && rows.len() == 2 && rows[1]["ready"] == "True" {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(rows[0]["name"], "bad");
    assert_eq!(rows[0]["reason"], "PropertyNotFound");
    assert_eq!(rows[0]["paths"], json!(["secret/cli/app"]));
    let (_, text) = cli(&["status", "-n", &ns]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("API") && lines[1].contains("/bad") && lines[2].contains("/good"),
        "{text}"
    );
}
