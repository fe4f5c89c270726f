//! Pure: ESO's `target.template` (engine v2) over the fetched data — `templateFrom` (literals,
//! and ConfigMap / Secret keys the controller has read into the spec), then `data`, then the
//! `metadata` labels and annotations, each a Go template over the fetched keys (`gotmpl`), in
//! ESO's order and with its `mergePolicy`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::Error;
use crate::gotmpl::{self, Limits};

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
    // The data a template sees: the fetched keys as strings, as ESO passes them.
    let dot = Value::Object(
        fetched
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(String::from_utf8_lossy(v).into_owned()),
                )
            })
            .collect::<Map<String, Value>>(),
    );
    let render = |what: &str, text: &str| {
        gotmpl::render(text, &dot, &limits)
            .map_err(|e| Error::Template(format!("template {what}: {e}")))
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
                    out.data.insert(k, v.into_bytes());
                }
                Into::Labels => {
                    out.labels.insert(k, v);
                }
                Into::Annotations => {
                    out.annotations.insert(k, v);
                }
            }
        }
    }
    for (k, text) in &spec.data {
        out.data
            .insert(k.clone(), render(&format!("data.{k}"), text)?.into_bytes());
    }
    for (k, text) in &spec.labels {
        out.labels
            .insert(k.clone(), render(&format!("metadata.labels.{k}"), text)?);
    }
    for (k, text) in &spec.annotations {
        out.annotations.insert(
            k.clone(),
            render(&format!("metadata.annotations.{k}"), text)?,
        );
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
}
