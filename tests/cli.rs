//! The command line, run as a user runs it: `check` on manifests with one problem each (every
//! one reported on its own line naming the object, the good ones silent, exit code 1), and
//! `--help` for every subcommand. `render` and `status` need Vault and a cluster:
//! tests/e2e_cli.rs.

use std::process::Command;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/check");

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vault-external-secrets"))
        .args(args)
        .env_clear()
        .output()
        .expect("run the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_reports_each_problem_once_naming_the_object() {
    let (code, out) = cli(&["check", "-f", FIXTURES]);
    assert_eq!(code, 1, "{out}");
    let expected = [
        ("bad.yaml: ExternalSecret team/kes-kv3:", "kvVersion"),
        ("bad.yaml: ExternalSecret team/kes-bad-key:", "data[0].name"),
        ("bad.yaml: ExternalSecret team/kes-lodash:", "InvalidSpec"),
        (
            "bad.yaml: ExternalSecret team/eso-template-syntax:",
            "TemplateFailed: template data.conn: line 1",
        ),
        (
            "bad.yaml: ExternalSecret team/eso-unknown-function:",
            "function \"nope\" not defined",
        ),
        (
            "bad.yaml: ExternalSecret team/eso-bad-rewrite:",
            "rewrite[0].regexp.source",
        ),
        (
            "bad.yaml: ExternalSecret team/eso-find-nothing:",
            "needs name.regexp or tags",
        ),
        (
            "bad.yaml: ExternalSecret team/eso-refresh:",
            "spec.refreshInterval",
        ),
        (
            "bad.yaml: ExternalSecret team/eso-bad-secret-key:",
            "secretKey",
        ),
        ("bad.yaml: SecretStore team/aws:", "Vault only"),
        (
            "bad.yaml: SecretStore team/own-identity:",
            "serviceAccountRef",
        ),
        ("broken.yaml: -:", "not YAML"),
    ];
    for (object, reason) in expected {
        let lines: Vec<&str> = out.lines().filter(|l| l.contains(object)).collect();
        assert_eq!(lines.len(), 1, "{object}: {out}");
        assert!(
            lines[0].contains(reason),
            "{object}: {reason} not in {}",
            lines[0]
        );
    }
    assert_eq!(out.lines().count(), expected.len(), "{out}");
    assert!(!out.contains("good"), "good manifests pass: {out}");

    let (code, out) = cli(&["check", "-f", &format!("{FIXTURES}/good.yaml")]);
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out) = cli(&["check", "-f", FIXTURES, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1);
    assert_eq!(v["problems"].as_array().unwrap().len(), expected.len());
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["check", "render", "status", "controller"] {
        let (code, out) = cli(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub}");
        assert!(
            out.contains("Usage: vault-external-secrets"),
            "{sub}: {out}"
        );
    }
}
