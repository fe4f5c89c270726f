//! KES manifests through `translate` and the engine's `render`: KES's semantics end to end,
//! without IO.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::crd::{ExternalSecret, ExternalSecretSpec};
use super::{translate, Defaults};
use crate::engine::render::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::engine::{plan, render, DesiredSecret, SyncSpec};
use crate::error::Error;
use crate::vault::{AuthKey, ReadKey, SecretData};

fn es(spec: Value) -> ExternalSecret {
    let spec: ExternalSecretSpec = serde_json::from_value(spec).unwrap();
    let mut es = ExternalSecret::new("app", spec);
    es.metadata.namespace = Some("team".into());
    es.metadata.uid = Some("uid-1".into());
    es
}

fn defaults() -> Defaults {
    Defaults {
        mount_point: "kubernetes".into(),
        role: Some("default-role".into()),
    }
}

/// Fetches from a fixture: Vault path → object.
fn fetched(spec: &SyncSpec, vault: &Value) -> BTreeMap<ReadKey, Arc<SecretData>> {
    plan::reads(spec)
        .map(|r| {
            let obj = vault[r.api_path.as_str()].as_object().unwrap().clone();
            (r, Arc::new(SecretData(obj)))
        })
        .collect()
}

fn run(spec: Value, vault: Value) -> Result<DesiredSecret, Error> {
    let es = es(spec);
    let spec = translate(&es, &defaults())?;
    render(&spec, &fetched(&spec, &vault))
}

fn s(d: &DesiredSecret, k: &str) -> String {
    String::from_utf8(d.data[k].0.clone()).unwrap()
}

#[test]
fn seed_example_kv1_property() {
    let d = run(
        json!({"kvVersion": 1, "backendType": "vault", "vaultMountPoint": "kubernetes",
               "vaultRole": "k8s-role",
               "data": [{"name": "RABBITMQ_USERNAME", "key": "secret/Rabbitmq", "property": "username"}]}),
        json!({"secret/Rabbitmq": {"username": "rabbit", "password": "p"}}),
    )
    .unwrap();
    assert_eq!(d.name, "app");
    assert_eq!(d.namespace, "team");
    assert_eq!(d.type_, "Opaque");
    assert_eq!(d.data.len(), 1);
    assert_eq!(s(&d, "RABBITMQ_USERNAME"), "rabbit");
    assert_eq!(d.owner.uid, "uid-1");
    assert_eq!(d.owner.controller, Some(true));
    assert_eq!(d.owner.kind, "ExternalSecret");
    assert_eq!(d.labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
}

#[test]
fn property_selection_table() {
    let vault = json!({"kv/data/app": {
        "a.b": "exact", "a": {"b": "nested", "n": 5, "deep": {"x": [1, {"y": "arr"}]}},
        "num": 42, "flag": true, "obj": {"k": "v"}}});
    let cases: &[(&str, &str)] = &[
        ("a.b", "exact"),
        ("a.n", "5"),
        ("a.deep.x.1.y", "arr"),
        ("num", "42"),
        ("flag", "true"),
        ("obj", r#"{"k":"v"}"#),
    ];
    for (prop, want) in cases {
        let d = run(
            json!({"data": [{"name": "v", "key": "kv/app", "property": prop}]}),
            vault.clone(),
        )
        .unwrap();
        assert_eq!(s(&d, "v"), *want, "property {prop}");
    }
    // No property: the whole object as JSON.
    let d = run(
        json!({"data": [{"name": "v", "key": "kv/app"}]}),
        json!({"kv/data/app": {"u": "x", "p": 1}}),
    )
    .unwrap();
    let whole: Value = serde_json::from_slice(&d.data["v"].0).unwrap();
    assert_eq!(whole, json!({"u": "x", "p": 1}));
}

#[test]
fn missing_property_uses_kes_wording() {
    let e = run(
        json!({"data": [{"name": "v", "key": "kv/app", "property": "nope.x"}]}),
        json!({"kv/data/app": {"u": "x"}}),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "Could not find property nope.x in kv/app");
    assert_eq!(e.reason(), "PropertyNotFound");
}

#[test]
fn merge_order_and_binary() {
    let d = run(
        json!({"dataFrom": ["kv/base"],
               "dataFromWithOptions": [{"key": "kv/bin", "isBinary": true}],
               "data": [{"name": "shared", "key": "kv/app", "property": "p"},
                        {"name": "blob", "key": "kv/app", "property": "b64", "isBinary": true}]}),
        json!({"kv/data/base": {"shared": "from-base", "only-base": "1", "o": {"x": 1}},
               "kv/data/bin": {"only-bin": "aGVsbG8=", "shared": "Ymlu"},
               "kv/data/app": {"p": "from-data", "b64": "AAEC"}}),
    )
    .unwrap();
    assert_eq!(s(&d, "shared"), "from-data");
    assert_eq!(s(&d, "only-base"), "1");
    assert_eq!(s(&d, "o"), r#"{"x":1}"#);
    assert_eq!(s(&d, "only-bin"), "hello");
    assert_eq!(d.data["blob"].0, vec![0u8, 1, 2]);
}

#[test]
fn template_applies_type_metadata_and_data() {
    let d = run(
        json!({"type": "ignored-when-template-has-type",
               "template": {"type": "kubernetes.io/dockerconfigjson",
                            "metadata": {"labels": {"team": "a", MANAGED_BY_LABEL: "someone"},
                                         "annotations": {"note": "x"}},
                            "data": {"extra": "ZXh0cmE="},
                            "stringData": {"plain": "text", "v": "override"}},
               "data": [{"name": "v", "key": "kv/app", "property": "p"}]}),
        json!({"kv/data/app": {"p": "vault"}}),
    )
    .unwrap();
    assert_eq!(d.type_, "kubernetes.io/dockerconfigjson");
    assert_eq!(d.labels["team"], "a");
    assert_eq!(d.labels[MANAGED_BY_LABEL], MANAGED_BY_VALUE);
    assert_eq!(d.annotations["note"], "x");
    assert_eq!(s(&d, "extra"), "extra");
    assert_eq!(s(&d, "plain"), "text");
    assert_eq!(s(&d, "v"), "override");

    let d = run(
        json!({"type": "kubernetes.io/tls", "data": [{"name": "v", "key": "kv/app", "property": "p"}]}),
        json!({"kv/data/app": {"p": "vault"}}),
    )
    .unwrap();
    assert_eq!(d.type_, "kubernetes.io/tls");
}

#[test]
fn invalid_specs() {
    let cases: &[(Value, &str)] = &[
        (
            json!({"backendType": "secretsManager", "data": [{"name": "a", "key": "x/y"}]}),
            "UnsupportedBackend",
        ),
        (json!({}), "InvalidSpec"),
        (json!({"data": [{"name": "a"}]}), "InvalidSpec"),
        (
            json!({"data": [{"name": "bad name", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"kvVersion": 3, "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (json!({"data": [{"name": "a", "key": "kv"}]}), "InvalidSpec"),
        (
            json!({"template": {"stringData": {"a": "<%= data.x %>"}}, "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"template": {"data": {"a": "!!!"}}, "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"template": {"metadata": {"labels": {"a": 1}}}, "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        // Hostile tenants: the controller's own token, system paths, path tricks, minted
        // credentials.
        (
            json!({"kvVersion": 1, "dataFrom": ["auth/token/lookup-self"]}),
            "InvalidSpec",
        ),
        (
            json!({"kvVersion": 1, "dataFrom": ["sys/internal/ui/resultant-acl"]}),
            "InvalidSpec",
        ),
        (
            json!({"kvVersion": 1, "data": [{"name": "a", "key": "cubbyhole/x"}]}),
            "InvalidSpec",
        ),
        (
            json!({"kvVersion": 1, "data": [{"name": "a", "key": "/identity/entity/id"}]}),
            "InvalidSpec",
        ),
        (
            json!({"vaultMountPoint": "../token", "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"vaultMountPoint": "kubernetes/./x", "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"vaultRole": "r/../../x", "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"vaultRole": "r?x=1", "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"template": {"type": "kubernetes.io/service-account-token",
                   "metadata": {"annotations": {"kubernetes.io/service-account.name": "default"}}},
                   "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
        (
            json!({"type": "kubernetes.io/service-account-token", "data": [{"name": "a", "key": "kv/a"}]}),
            "InvalidSpec",
        ),
    ];
    for (spec, reason) in cases {
        let r = run(spec.clone(), json!({"kv/data/a": {"x": "1"}}));
        assert_eq!(r.unwrap_err().reason(), *reason, "{spec}");
    }
    let no_role = es(json!({"data": [{"name": "a", "key": "kv/a"}]}));
    let d = Defaults {
        mount_point: "k".into(),
        role: None,
    };
    assert!(translate(&no_role, &d)
        .unwrap_err()
        .to_string()
        .contains("DEFAULT_VAULT_ROLE"));
}

#[test]
fn nested_mounts_and_roles_with_dots_are_fine() {
    let p = translate(
        &es(
            json!({"vaultMountPoint": "team-a/k8s", "vaultRole": "app.reader@x",
                   "data": [{"name": "a", "key": "kv/a"}]}),
        ),
        &defaults(),
    )
    .unwrap();
    assert_eq!(p.identity.mount, "team-a/k8s");
}

#[test]
fn plan_uses_defaults_and_versions() {
    let p = translate(
        &es(json!({"data": [{"name": "a", "key": "kv/a", "version": 3},
                            {"name": "b", "key": "kv/data/a", "version": "4"}]})),
        &defaults(),
    )
    .unwrap();
    assert_eq!(
        p.identity,
        AuthKey::own_service_account("kubernetes", "default-role")
    );
    let paths: Vec<String> = plan::reads(&p).map(|r| r.api_path).collect();
    assert_eq!(paths, vec!["kv/data/a?version=3", "kv/data/a?version=4"]);
}

#[test]
fn bad_values_are_errors_without_the_value() {
    let e = run(
        json!({"data": [{"name": "a", "key": "kv/a", "property": "p", "isBinary": true}]}),
        json!({"kv/data/a": {"p": "not base64 planted-SECRET"}}),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "InvalidValue");
    assert!(!e.to_string().contains("planted-SECRET"));
    // No character or offset of the value either (the decoder's own message has both).
    for v in ["abc-def", "QUJD\u{e9}", "QQ=x"] {
        let e = run(
            json!({"data": [{"name": "a", "key": "kv/a", "property": "p", "isBinary": true}]}),
            json!({"kv/data/a": {"p": v}}),
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("symbol") && !e.contains("offset"), "{e}");
        let without_name = e.replace("base64", "");
        assert!(!without_name.chars().any(|c| c.is_ascii_digit()), "{e}");
    }
    let e = run(
        json!({"dataFrom": ["kv/a"]}),
        json!({"kv/data/a": {"bad key!": "planted-SECRET"}}),
    )
    .unwrap_err();
    assert!(!e.to_string().contains("planted-SECRET"));
}
