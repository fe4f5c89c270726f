//! Property tests of the pure parts that take tenant input: key forms, property paths, template
//! metadata, Secret key names and the messages built from them. Nothing panics, no path escapes
//! KV, and no character of a secret value reaches an error message.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use vault_external_secrets::api::kes::crd::{ExternalSecret, ExternalSecretSpec};
use vault_external_secrets::api::kes::{translate, Defaults};
use vault_external_secrets::engine::{plan, render};
use vault_external_secrets::vault::{check_read_path, kv_api_path, SecretData};

/// Characters no message template of ours contains: a value made of them can be searched for.
const VALUE_CHARS: &str = "[#$%&*+<>~^\u{e9}\u{4e2d}]{1,40}";

fn es(spec: Value) -> Option<ExternalSecret> {
    let spec: ExternalSecretSpec = serde_json::from_value(spec).ok()?;
    let mut es = ExternalSecret::new("app", spec);
    es.metadata.namespace = Some("team".into());
    es.metadata.uid = Some("uid-1".into());
    Some(es)
}

fn defaults() -> Defaults {
    Defaults {
        mount_point: "kubernetes".into(),
        role: Some("r".into()),
    }
}

/// Plans `spec`, answers every read with `fields`, and renders.
fn run(spec: Value, fields: &Map<String, Value>) -> Option<Result<String, String>> {
    let es = es(spec)?;
    let spec = match translate(&es, &defaults()) {
        Ok(p) => p,
        Err(e) => return Some(Err(e.to_string())),
    };
    let fetched = plan::reads(&spec)
        .map(|r| (r, Arc::new(SecretData(fields.clone()))))
        .collect::<BTreeMap<_, _>>();
    Some(
        render::render(&spec, &fetched)
            .map(|d| format!("{d:?}"))
            .map_err(|e| e.to_string()),
    )
}

proptest! {
    #[test]
    fn key_forms_never_escape_or_panic(key in "[a-z./ %-]{0,30}", v in 1u8..=2, version in proptest::option::of("[0-9a-z]{0,3}")) {
        if let Ok(path) = kv_api_path(&key, v, version.as_deref()) {
            let only_path = path.split('?').next().unwrap();
            prop_assert!(!only_path.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{path}");
            prop_assert!(!only_path.starts_with('/'));
        }
    }

    #[test]
    fn system_mounts_are_refused_whatever_follows(first in "(sys|auth|identity|cubbyhole)", rest in "[a-z/]{0,20}") {
        let key = format!("{first}/{rest}");
        if let Ok(path) = kv_api_path(&key, 1, None) {
            prop_assert!(check_read_path(&path).is_err(), "{path}");
        }
        let spec = json!({"kvVersion": 1, "dataFrom": [key]});
        if let Some(r) = run(spec, &Map::new()) {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn property_paths_never_panic(prop in "[a-z0-9.]{0,12}", doc in proptest::collection::btree_map("[a-z0-9]{1,3}", prop_oneof![Just(json!(1)), Just(json!({"a": {"b": [1, 2]}})), Just(json!([{"a": 1}])), Just(json!("s"))], 0..4)) {
        let obj: Map<String, Value> = doc.into_iter().collect();
        let _ = render::select_property(&obj, &prop);
    }

    #[test]
    fn values_never_reach_a_message(value in VALUE_CHARS, name in "[a-zA-Z0-9._ -]{0,10}", field in "[a-zA-Z0-9._!-]{1,8}", binary in any::<bool>(), property in proptest::option::of("[a-z.]{1,6}")) {
        let mut fields = Map::new();
        fields.insert(field.clone(), Value::String(value.clone()));
        fields.insert("nested".into(), json!({"deep": value.clone()}));
        let specs = [
            json!({"data": [{"name": name, "key": "kv/a", "property": property, "isBinary": binary}]}),
            json!({"dataFromWithOptions": [{"key": "kv/a", "isBinary": binary}]}),
            json!({"dataFrom": ["kv/a"], "data": [{"name": "x", "key": "kv/a", "property": "nested.deep", "isBinary": binary}]}),
        ];
        for spec in specs {
            if let Some(Err(msg)) = run(spec, &fields) {
                for c in value.chars() {
                    prop_assert!(!msg.contains(c), "{c:?} of the value in {msg:?}");
                }
            }
        }
    }

    #[test]
    fn template_metadata_and_secret_keys_never_panic(labels in proptest::collection::btree_map("[a-z/.~ -]{0,8}", "[a-z%<> ]{0,8}", 0..3), key in "[a-zA-Z0-9._~ /-]{0,10}", type_ in "[a-z./-]{0,20}") {
        let spec = json!({"template": {"type": type_, "metadata": {"labels": labels, "annotations": labels}, "stringData": {key.clone(): "x"}},
                          "data": [{"name": key, "key": "kv/a"}]});
        let _ = run(spec, &Map::new());
    }
}

/// Template pieces: enough of Go's syntax to reach every parser and executor path, glued in any
/// order (mostly invalid, some valid).
const TEMPLATE_PIECES: &[&str] = &[
    "{{",
    "}}",
    "{{- ",
    " -}}",
    ".",
    ".secret",
    ".other",
    "$",
    "$x",
    ":=",
    "=",
    "range",
    "if",
    "else",
    "end",
    "with",
    "break",
    "continue",
    " ",
    "|",
    "(",
    ")",
    "\"",
    "`",
    "x",
    "1",
    "-2",
    "0.5",
    "b64dec",
    "b64enc",
    "printf",
    "\"%s %d %q %x\"",
    "index",
    "len",
    "toJson",
    "fromJson",
    "toYaml",
    "fromYaml",
    "indent",
    "nindent",
    "repeat",
    "split",
    "join",
    "dict",
    "list",
    "get",
    "eq",
    "lt",
    "and",
    "or",
    "not",
    "default",
    "quote",
    "upper",
    "trimPrefix",
    "replace",
    "filterPEM",
    "pkcs12key",
    "pkcs12certPass",
    "fullPemToPkcs12",
    "pemTruststoreToPKCS12",
    "jwkPrivateKeyPem",
    "/*",
    "*/",
    "nil",
    "true",
    ",",
    "define",
    "template",
    "fail",
];

proptest! {
    /// Random templates over a secret value: never a panic, output within the cap, and no
    /// character of the value in an error.
    #[test]
    fn templates_never_panic_exceed_bounds_or_leak(
        pieces in proptest::collection::vec(proptest::sample::select(TEMPLATE_PIECES), 0..40),
        // No character a piece has, so one in a message came from the value.
        value in "[#&+<>~^\u{e9}\u{4e2d}]{1,40}",
    ) {
        use vault_external_secrets::gotmpl::{render, Limits};
        let text: String = pieces.concat();
        let limits = Limits { fuel: 5_000, output: 4096, template: 4096 };
        let data = json!({"secret": value, "other": format!("{{\"k\": \"{value}\"}}")});
        match render(&text, &data, &limits) {
            Ok(out) => prop_assert!(out.len() <= limits.output),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    !value.chars().any(|c| message.contains(c)),
                    "{text:?} -> {message}"
                );
            }
        }
    }
}
