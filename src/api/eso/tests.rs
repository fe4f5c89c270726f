//! The ESO translation, pure: stores and auth methods into Vault identities, the namespaces a
//! reference may reach, policies and unsupported fields; ESO's documentation fixtures.

use serde_json::{json, Value};

use super::crd::ExternalSecret;
use super::store::{SecretStore, StoreSpec};
use super::translate::{translate, Settings, StoreKind, StoreView};
use crate::engine::{Creation, Source, SyncSpec};
use crate::error::Error;
use crate::vault::{Credential, KvPart, Login};

const ADDR: &str = "http://vault:8200";

fn es(spec: Value) -> ExternalSecret {
    serde_json::from_value(json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "team", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn store(auth: Value) -> StoreSpec {
    serde_json::from_value(
        json!({"provider": {"vault": {"server": ADDR, "path": "kv", "auth": auth}}}),
    )
    .unwrap()
}

fn run(kind: StoreKind, store: &StoreSpec, es: &ExternalSecret) -> Result<SyncSpec, Error> {
    let view = StoreView {
        kind,
        name: "s",
        namespace: (kind == StoreKind::SecretStore).then_some("team"),
        spec: store,
    };
    translate(es, &view, &Settings { vault_addr: ADDR })
}

fn simple() -> ExternalSecret {
    es(json!({"data": [{"secretKey": "k", "remoteRef": {"key": "app", "property": "p"}}]}))
}

#[test]
fn auth_methods_become_identities() {
    let secret = |ns: &str, name: &str, key: &str| Credential::SecretKey {
        namespace: ns.into(),
        name: name.into(),
        key: key.into(),
    };
    let cases: Vec<(Value, &str, &str, Login)> = vec![
        (
            json!({"kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa", "audiences": ["vault"]}}}),
            "kubernetes",
            "r",
            Login::Jwt(Credential::ServiceAccountToken {
                namespace: "team".into(),
                name: "sa".into(),
                audiences: vec!["vault".into()],
            }),
        ),
        (
            json!({"kubernetes": {"mountPath": "k8s", "role": "r", "secretRef": {"name": "s", "key": "jwt"}}}),
            "k8s",
            "r",
            Login::Jwt(secret("team", "s", "jwt")),
        ),
        (
            json!({"jwt": {"role": "r", "secretRef": {"name": "s"}}}),
            "jwt",
            "r",
            Login::Jwt(secret("team", "s", "jwt")),
        ),
        (
            json!({"appRole": {"roleId": "rid", "secretRef": {"name": "s", "key": "sid"}}}),
            "approle",
            "rid",
            Login::AppRole {
                role_id: None,
                secret_id: secret("team", "s", "sid"),
            },
        ),
        (
            json!({"appRole": {"path": "ar", "roleRef": {"name": "s", "key": "role"}, "secretRef": {"name": "s", "key": "sid"}}}),
            "ar",
            "",
            Login::AppRole {
                role_id: Some(secret("team", "s", "role")),
                secret_id: secret("team", "s", "sid"),
            },
        ),
        (
            json!({"userPass": {"username": "u", "secretRef": {"name": "s", "key": "pw"}}}),
            "userpass",
            "u",
            Login::Password(secret("team", "s", "pw")),
        ),
        (
            json!({"ldap": {"username": "u", "secretRef": {"name": "s", "key": "pw"}}}),
            "ldap",
            "u",
            Login::Password(secret("team", "s", "pw")),
        ),
        (
            json!({"tokenSecretRef": {"name": "s", "key": "t"}}),
            "",
            "",
            Login::Token(secret("team", "s", "t")),
        ),
    ];
    for (auth, mount, role, login) in cases {
        let spec = run(StoreKind::SecretStore, &store(auth.clone()), &simple()).unwrap();
        assert_eq!(
            (
                spec.identity.mount.as_str(),
                spec.identity.role.as_str(),
                &spec.identity.login
            ),
            (mount, role, &login),
            "{auth}"
        );
        assert!(
            spec.identity.server.is_none(),
            "the configured Vault: shared with KES"
        );
    }
}

#[test]
fn references_stay_in_their_namespace() {
    // A SecretStore reaches its own namespace only.
    let other = store(json!({"tokenSecretRef": {"name": "s", "namespace": "other"}}));
    let e = run(StoreKind::SecretStore, &other, &simple()).unwrap_err();
    assert!(
        e.to_string().contains("should either be empty or match"),
        "{e}"
    );
    // A tenant's store may not log in as the controller; a ClusterSecretStore may.
    let own = store(json!({"kubernetes": {"role": "r"}}));
    let e = run(StoreKind::SecretStore, &own, &simple()).unwrap_err();
    assert!(e.to_string().contains("only a ClusterSecretStore"), "{e}");
    let spec = run(StoreKind::ClusterSecretStore, &own, &simple()).unwrap();
    assert_eq!(
        spec.identity.login,
        Login::Jwt(Credential::OwnServiceAccount)
    );
    // Referent auth: no namespace on a ClusterSecretStore = the ExternalSecret's.
    let referent = store(json!({"kubernetes": {"role": "r", "serviceAccountRef": {"name": "sa"}}}));
    let spec = run(StoreKind::ClusterSecretStore, &referent, &simple()).unwrap();
    assert!(matches!(&spec.identity.login,
        Login::Jwt(Credential::ServiceAccountToken { namespace, .. }) if namespace == "team"));
    // Names that would move the login URL elsewhere are refused.
    let sneaky = store(
        json!({"userPass": {"path": "../token", "username": "u", "secretRef": {"name": "s"}}}),
    );
    assert!(run(StoreKind::SecretStore, &sneaky, &simple()).is_err());
}

#[test]
fn servers_of_their_own() {
    let mut s = store(json!({"tokenSecretRef": {"name": "s"}}));
    let vault = s.provider.as_mut().unwrap().vault.as_mut().unwrap();
    vault.namespace = Some("team-a".into());
    vault.headers = Some([("X-Tenant".to_string(), "a".to_string())].into());
    let spec = run(StoreKind::SecretStore, &s, &simple()).unwrap();
    let server = spec.identity.server.unwrap();
    assert_eq!(
        (server.addr.as_str(), server.namespace.as_deref()),
        (ADDR, Some("team-a"))
    );
    assert_eq!(
        server.headers,
        vec![("X-Tenant".to_string(), "a".to_string())]
    );
}

#[test]
fn reads_follow_esos_paths_and_policies() {
    let s = store(json!({"tokenSecretRef": {"name": "s"}}));
    let e = es(json!({
        "target": {"creationPolicy": "Merge", "deletionPolicy": "Merge"},
        "data": [
            {"secretKey": "a", "remoteRef": {"key": "kv/app", "property": "p", "decodingStrategy": "Base64"}},
            {"secretKey": "m", "remoteRef": {"key": "app", "metadataPolicy": "Fetch"}}
        ],
        "dataFrom": [{"extract": {"key": "app", "version": "2"}}]
    }));
    let spec = run(StoreKind::SecretStore, &s, &e).unwrap();
    let paths: Vec<(&str, KvPart, bool)> = spec
        .sources
        .iter()
        .map(|s| (s.read().api_path.as_str(), s.read().part, s.optional()))
        .collect();
    // ESO's order: dataFrom first, then data (a data key wins over the same key from dataFrom).
    assert_eq!(
        paths,
        vec![
            ("kv/data/app?version=2", KvPart::Data, true),
            ("kv/data/app", KvPart::Data, true),
            ("kv/metadata/app", KvPart::CustomMetadata, true),
        ]
    );
    assert!(matches!(
        &spec.sources[0],
        Source::All { property: None, .. }
    ));
    assert_eq!(spec.target.policy.creation, Creation::Merge);
    assert!(spec.target.policy.data_hash);
    assert_eq!(
        spec.target.managed_label.0,
        "reconcile.external-secrets.io/managed"
    );
    // ESO refuses to delete what it does not own.
    let e = es(
        json!({"target": {"creationPolicy": "Orphan", "deletionPolicy": "Delete"},
        "data": [{"secretKey": "a", "remoteRef": {"key": "app"}}]}),
    );
    let err = run(StoreKind::SecretStore, &s, &e).unwrap_err();
    assert!(
        err.to_string()
            .contains("Can not delete secret i do not own"),
        "{err}"
    );
}

#[test]
fn unsupported_fields_fail_the_whole_object() {
    let s = store(json!({"tokenSecretRef": {"name": "s"}}));
    let e = es(json!({
        "data": [{"secretKey": "a", "remoteRef": {"key": "app", "conversionStrategy": "Unicode"}}],
        "dataFrom": [{"find": {"name": {"regexp": ".*"}, "conversionStrategy": "Unicode"}}, {"extract": {"key": "app"}, "rewrite": [{"regexp": {"source": "a", "target": "b"}}, {"merge": {"into": "x"}}]}]
    }));
    let err = run(StoreKind::SecretStore, &s, &e).unwrap_err();
    assert_eq!(err.reason(), "Unsupported");
    let text = err.to_string();
    for field in [
        "spec.data[0].remoteRef.conversionStrategy=Unicode",
        "spec.dataFrom[0].find.conversionStrategy=Unicode",
        "spec.dataFrom[1].rewrite[1].merge",
    ] {
        assert!(text.contains(field), "{field} in {text}");
    }
    let other: StoreSpec =
        serde_json::from_value(json!({"provider": {"aws": {"service": "SecretsManager"}}}))
            .unwrap();
    let err = run(StoreKind::SecretStore, &other, &simple()).unwrap_err();
    assert!(err.to_string().contains("serves Vault only"), "{err}");
}

/// ESO's documentation examples (tests/fixtures/eso-docs) decode and translate.
#[test]
fn documentation_fixtures_translate() {
    let stores = [
        include_str!("../../../tests/fixtures/eso-docs/vault-kubernetes-store.yaml"),
        include_str!("../../../tests/fixtures/eso-docs/vault-token-store.yaml"),
        include_str!("../../../tests/fixtures/eso-docs/vault-approle-store.yaml"),
        include_str!("../../../tests/fixtures/eso-docs/vault-userpass-store.yaml"),
        include_str!("../../../tests/fixtures/eso-docs/vault-jwt-store.yaml"),
        include_str!("../../../tests/fixtures/eso-docs/vault-ldap-store.yaml"),
    ];
    let example = include_str!("../../../tests/fixtures/eso-docs/hashicorp-vault-example.yaml");
    let docs: Vec<Value> = example
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let mut es: ExternalSecret = serde_json::from_value(docs[2].clone()).unwrap();
    es.metadata.namespace = Some("example".into());
    es.metadata.uid = Some("uid".into());
    for text in stores.iter().chain([&example]) {
        let store: SecretStore =
            serde_yaml::from_str(text.split("\n---\n").next().unwrap()).unwrap();
        let spec = run(StoreKind::SecretStore, &store.spec.common, &es).unwrap();
        assert_eq!(spec.sources[0].read().api_path, "secret/data/foo");
        assert_eq!(spec.sources[1].read().api_path, "secret/metadata/foo");
        assert_eq!(spec.target.name, "example-sync");
    }
}

#[test]
fn find_and_rewrite_translate_to_a_listing_and_key_rules() {
    let s = store(json!({"tokenSecretRef": {"name": "s"}}));
    let e = es(json!({
        "target": {"deletionPolicy": "Delete"},
        "dataFrom": [{
            "find": {"path": "team/app", "name": {"regexp": "^db"}, "tags": {"env": "prod"},
                     "decodingStrategy": "Base64"},
            "rewrite": [{"regexp": {"source": "team/app/", "target": ""}}, {}]
        }]
    }));
    let spec = run(StoreKind::SecretStore, &s, &e).unwrap();
    let Source::Find(f) = &spec.sources[0] else {
        panic!("{:?}", spec.sources)
    };
    assert_eq!(
        (f.list.api_path.as_str(), f.list.part, f.names_from.as_str()),
        ("kv/metadata/team/app/", KvPart::List, "team/app/")
    );
    assert_eq!(
        (f.data_prefix.as_str(), f.metadata_prefix.as_deref()),
        ("kv/data/", Some("kv/metadata/"))
    );
    assert_eq!(
        f.keys.rewrite.len(),
        1,
        "an empty rewrite item rewrites nothing"
    );
    assert!(
        f.optional,
        "deletionPolicy Delete: a missing folder finds nothing"
    );
    assert_eq!(f.at, "spec.dataFrom[0].find");

    let bad = |data_from: Value, store_spec: &StoreSpec| {
        run(
            StoreKind::SecretStore,
            store_spec,
            &es(json!({"dataFrom": data_from})),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(bad(json!([{"find": {"path": "x"}}]), &s).contains("needs name.regexp or tags"));
    assert!(bad(json!([{"find": {"nmae": {}}}]), &s).contains("unknown field `nmae`"));
    assert!(bad(
        json!([{"find": {"name": {"regexp": "a"}}, "extract": {"key": "k"}}]),
        &s
    )
    .contains("exactly one of extract or find"));
    let v1: StoreSpec = serde_json::from_value(json!({"provider": {"vault": {
        "server": ADDR, "path": "secret", "version": "v1", "auth": {"tokenSecretRef": {"name": "s"}}}}}))
    .unwrap();
    assert!(bad(json!([{"find": {"tags": {"a": "b"}}}]), &v1).contains("kv version v1"));
    // KV v1: by name only, listing `<path>/<folder>/`, reading `<path>/<name>`.
    let spec = run(
        StoreKind::SecretStore,
        &v1,
        &es(json!({"dataFrom": [{"find": {"path": "app", "name": {"regexp": "."}}}]})),
    )
    .unwrap();
    let Source::Find(f) = &spec.sources[0] else {
        panic!()
    };
    assert_eq!(
        (
            f.list.api_path.as_str(),
            f.data_prefix.as_str(),
            f.metadata_prefix.as_deref()
        ),
        ("secret/app/", "secret/", None)
    );
    let no_path: StoreSpec = serde_json::from_value(json!({"provider": {"vault": {
        "server": ADDR, "auth": {"tokenSecretRef": {"name": "s"}}}}}))
    .unwrap();
    assert!(bad(json!([{"find": {"name": {"regexp": "a"}}}]), &no_path)
        .contains("spec.provider.vault.path"));
}

#[test]
fn templates_translate_and_their_unserved_parts_are_named() {
    let s = store(json!({"tokenSecretRef": {"name": "s"}}));
    let with = |template: Value| {
        let mut e = simple();
        e.spec.target = Some(serde_json::from_value(json!({"template": template})).unwrap());
        run(StoreKind::SecretStore, &s, &e)
    };
    let spec = with(
        json!({"type": "kubernetes.io/dockerconfigjson", "mergePolicy": "Merge",
        "metadata": {"labels": {"l": "{{ .k }}"}},
        "data": {".dockerconfigjson": "{{ .k }}"},
        "templateFrom": [{"literal": "a: b", "target": "Annotations"}]}),
    )
    .unwrap();
    assert_eq!(spec.target.type_, "kubernetes.io/dockerconfigjson");
    let t = spec.target.template.unwrap();
    assert!(t.merge && t.data.contains_key(".dockerconfigjson") && t.labels.contains_key("l"));
    assert_eq!(t.from.len(), 1);
    // ConfigMap and Secret items are left for the controller to read, in ESO's order.
    let spec = with(json!({"templateFrom": [{"literal": "a: b",
        "configMap": {"name": "c", "items": [{"key": "k", "templateAs": "KeysAndValues"}]},
        "secret": {"name": "s", "items": [{"key": "t"}]}}]}))
    .unwrap();
    let texts: Vec<_> = spec
        .target
        .template
        .unwrap()
        .from
        .into_iter()
        .map(|f| f.text)
        .collect();
    use crate::engine::templating::Text;
    assert_eq!(
        texts,
        [
            Text::ConfigMapKey {
                name: "c".into(),
                key: "k".into()
            },
            Text::SecretKey {
                name: "s".into(),
                key: "t".into()
            },
            Text::Inline("a: b".into()),
        ]
    );
    for (template, named) in [
        (json!({"engineVersion": "v1"}), "engineVersion=v1"),
        (
            json!({"templateFrom": [{"literal": "x", "target": "spec.x"}]}),
            "templateFrom[0].target",
        ),
    ] {
        let e = with(template).unwrap_err();
        assert_eq!(e.reason(), "Unsupported");
        assert!(e.to_string().contains(named), "{e}");
    }
    // A tenant may not ask for a ServiceAccount token through the template's type either: the
    // engine's target check refuses it before anything is read.
    let spec = with(json!({"type": "kubernetes.io/service-account-token"})).unwrap();
    let refused = crate::engine::render::check_target(&spec.target).unwrap_err();
    assert_eq!(refused.reason(), "InvalidSpec", "{refused}");
    assert!(with(json!({"mergePolicy": "Sometimes"}))
        .unwrap_err()
        .to_string()
        .contains("mergePolicy"));

    // Without a template, the ExternalSecret's labels and annotations are copied (as ESO does),
    // kubectl's last-applied copy aside.
    let mut e = simple();
    e.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
    e.metadata.annotations = Some(
        [
            ("note".to_string(), "x".to_string()),
            (
                "kubectl.kubernetes.io/last-applied-configuration".to_string(),
                "{}".to_string(),
            ),
        ]
        .into(),
    );
    let spec = run(StoreKind::SecretStore, &s, &e).unwrap();
    assert_eq!(spec.target.labels["team"], "a");
    assert_eq!(spec.target.annotations.keys().collect::<Vec<_>>(), ["note"]);
}
