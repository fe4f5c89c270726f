//! Pure: ESO's `target.template` (engine v2) over the fetched data — `templateFrom` (literals,
//! and ConfigMap / Secret keys the controller has read into the spec), then `data`, then the
//! `metadata` labels and annotations, each a Go template over the fetched keys (`gotmpl`), in
//! ESO's order and with its `mergePolicy`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::gotmpl::{self, binary, Limits};

/// Where a `templateFrom` item's rendered keys go (ESO's `target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Into {
    Data,
    Labels,
    Annotations,
}

/// How a `templateFrom` text is used (ESO's `templateAs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The text renders the value of `key`.
    Values { key: String },
    /// The text renders to a YAML map of keys to values (a `literal` always is).
    KeysAndValues,
}

/// Where a `templateFrom` text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    Inline(String),
    /// A key of a ConfigMap or Secret in the object's namespace, not read yet.
    ConfigMapKey {
        name: String,
        key: String,
    },
    SecretKey {
        name: String,
        key: String,
    },
}

/// One `templateFrom` text, in order.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateFrom {
    pub into: Into,
    pub scope: Scope,
    pub text: Text,
}

/// What a template asks for, every text a Go template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TemplateSpec {
    pub from: Vec<TemplateFrom>,
    pub data: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `mergePolicy: Merge`: the fetched keys stay next to the rendered ones.
    pub merge: bool,
}

/// The Secret's content after the template.
#[derive(Debug, Default, PartialEq)]
pub struct Templated {
    pub data: BTreeMap<String, Vec<u8>>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

pub fn apply(spec: &TemplateSpec, fetched: &BTreeMap<String, Vec<u8>>) -> Result<Templated, Error> {
    let limits = Limits::default();
    // The data a template sees: the fetched keys as strings, as ESO passes them (bytes that
    // are not UTF-8 included: `binary`).
    let dot = Value::Object(
        fetched
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(binary::text(v))))
            .collect::<Map<String, Value>>(),
    );
    let render = |what: &str, text: &str| {
        gotmpl::render(text, &dot, &limits)
            .map_err(|e| Error::Template(format!("template {what}: {e}")))
    };
    let data = |rendered: &str| binary::bytes(rendered).into_owned();
    // Labels and annotations are text: a rendered binary value is the template's error.
    let as_text = |what: &str, rendered: String| {
        binary::utf8(rendered).map_err(|e| Error::Template(format!("template {what}: {e}")))
    };
    let mut out = Templated::default();
    if spec.merge {
        out.data = fetched.clone();
    }
    for (i, from) in spec.from.iter().enumerate() {
        let what = format!("templateFrom[{i}]");
        let Text::Inline(text) = &from.text else {
            // The controller reads ConfigMap and Secret texts before the engine runs.
            return Err(Error::Template(format!(
                "template {what}: its text was not read"
            )));
        };
        let pairs = match &from.scope {
            Scope::Values { key } => {
                BTreeMap::from([(key.clone(), render(&format!("{what} key {key}"), text)?)])
            }
            Scope::KeysAndValues => {
                let rendered = render(&what, text)?;
                yaml_pairs(&rendered).ok_or_else(|| {
                    Error::Template(format!(
                        "template {what}: the rendered text is not a YAML map of scalars"
                    ))
                })?
            }
        };
        for (k, v) in pairs {
            match from.into {
                Into::Data => {
                    out.data.insert(k, data(&v));
                }
                Into::Labels => {
                    let v = as_text(&what, v)?;
                    out.labels.insert(k, v);
                }
                Into::Annotations => {
                    let v = as_text(&what, v)?;
                    out.annotations.insert(k, v);
                }
            }
        }
    }
    for (k, t) in &spec.data {
        out.data
            .insert(k.clone(), data(&render(&format!("data.{k}"), t)?));
    }
    for (k, t) in &spec.labels {
        let what = format!("metadata.labels.{k}");
        out.labels
            .insert(k.clone(), as_text(&what, render(&what, t)?)?);
    }
    for (k, t) in &spec.annotations {
        let what = format!("metadata.annotations.{k}");
        out.annotations
            .insert(k.clone(), as_text(&what, render(&what, t)?)?);
    }
    // No data template at all: the fetched data as it is (ESO's fallback).
    if spec.data.is_empty() && spec.from.is_empty() {
        out.data = fetched.clone();
    }
    Ok(out)
}

/// A rendered `KeysAndValues` template: a YAML map whose values are scalars, as strings.
fn yaml_pairs(text: &str) -> Option<BTreeMap<String, String>> {
    use serde_yaml::Value as Y;
    let Y::Mapping(m) = serde_yaml::from_str::<Y>(text).ok()? else {
        return None;
    };
    let scalar = |v: &Y| match v {
        Y::String(s) => Some(s.clone()),
        Y::Number(n) => Some(n.to_string()),
        Y::Bool(b) => Some(b.to_string()),
        Y::Null => Some(String::new()),
        _ => None,
    };
    m.iter()
        .map(|(k, v)| Some((scalar(k)?, scalar(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal(into: Into, text: &str) -> TemplateFrom {
        TemplateFrom {
            into,
            scope: Scope::KeysAndValues,
            text: Text::Inline(text.into()),
        }
    }

    fn fetched() -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            ("user".to_string(), b"alice".to_vec()),
            ("pass".to_string(), b"s3cret".to_vec()),
        ])
    }

    #[test]
    fn esos_order_and_merge_policy() {
        let spec = TemplateSpec {
            from: vec![
                literal(
                    Into::Data,
                    "dsn: \"{{ .user }}:{{ .pass }}@db\"\nother: x\nport: 5432",
                ),
                literal(Into::Labels, "team: \"{{ .user }}\""),
                TemplateFrom {
                    into: Into::Annotations,
                    scope: Scope::Values { key: "b".into() },
                    text: Text::Inline("{{ .user | b64enc }}".into()),
                },
            ],
            data: BTreeMap::from([("other".to_string(), "{{ .user | upper }}".to_string())]),
            annotations: BTreeMap::from([("a".to_string(), "{{ len .pass }}".to_string())]),
            ..Default::default()
        };
        let t = apply(&spec, &fetched()).unwrap();
        assert_eq!(
            t.data.keys().collect::<Vec<_>>(),
            ["dsn", "other", "port"],
            "Replace: only rendered keys"
        );
        assert_eq!(t.data["port"], b"5432");
        assert_eq!(t.data["dsn"], b"alice:s3cret@db");
        assert_eq!(t.data["other"], b"ALICE", "data wins over templateFrom");
        assert_eq!(t.labels["team"], "alice");
        assert_eq!(t.annotations["a"], "6");
        assert_eq!(t.annotations["b"], "YWxpY2U=");

        let merged = apply(
            &TemplateSpec {
                merge: true,
                ..spec
            },
            &fetched(),
        )
        .unwrap();
        assert_eq!(merged.data.len(), 5);
        // Metadata only: the fetched data as it is.
        let only_labels = TemplateSpec {
            labels: BTreeMap::from([("l".to_string(), "x".to_string())]),
            ..Default::default()
        };
        assert_eq!(apply(&only_labels, &fetched()).unwrap().data, fetched());
    }

    #[test]
    fn errors_name_the_template_never_a_value() {
        let spec = TemplateSpec {
            data: BTreeMap::from([("k".to_string(), "{{ .pass | b64dec }}".to_string())]),
            ..Default::default()
        };
        let e = apply(&spec, &fetched()).unwrap_err();
        assert_eq!(e.reason(), "TemplateFailed");
        assert!(e.to_string().starts_with("template data.k: line 1:"), "{e}");
        assert!(!e.to_string().contains("s3cret"));
        let spec = TemplateSpec {
            from: vec![literal(Into::Data, "{{ .pass }}")],
            ..Default::default()
        };
        let e = apply(&spec, &fetched()).unwrap_err().to_string();
        assert!(e.contains("not a YAML map") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn binary_fetched_values_reach_the_secret_byte_for_byte() {
        // A PKCS #12 archive stored base64 in Vault and fetched with `decodingStrategy: Base64`
        // reaches the template as raw bytes, as in ESO.
        use base64::Engine;
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eso-pkcs12/");
        let b64 = std::fs::read_to_string(format!("{dir}nopass.p12.b64")).unwrap();
        let archive = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        let fetched = BTreeMap::from([
            ("keystore".to_string(), archive.clone()),
            ("raw".to_string(), vec![0xff, 0x00, 0x80]),
        ]);
        let spec = TemplateSpec {
            data: BTreeMap::from([
                (
                    "tls.key".to_string(),
                    "{{ .keystore | pkcs12key }}".to_string(),
                ),
                ("copy".to_string(), "{{ .raw }}".to_string()),
            ]),
            ..Default::default()
        };
        let out = apply(&spec, &fetched).unwrap();
        let key = std::fs::read(format!("{dir}key.pem")).unwrap();
        assert_eq!(out.data["tls.key"], key);
        assert_eq!(out.data["copy"], vec![0xff, 0x00, 0x80]);
        // A label is text: a binary value there is the template's error, without the value.
        let spec = TemplateSpec {
            labels: BTreeMap::from([("l".to_string(), "{{ .raw }}".to_string())]),
            ..Default::default()
        };
        let e = apply(&spec, &fetched).unwrap_err().to_string();
        assert!(
            e.contains("metadata.labels.l") && e.contains("not UTF-8"),
            "{e}"
        );
    }
}
