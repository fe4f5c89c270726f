//! Pure: ESO's `target.template` from the manifest (kept as free-form JSON in the CRD) into the
//! engine's `TemplateSpec` and the Secret type. `templateFrom` ConfigMap and Secret keys are
//! left for the controller to read (in the object's namespace); `engineVersion: v1` and targets
//! other than the Secret's data, labels and annotations are named as unsupported.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::engine::templating::{Into, Scope, TemplateFrom as From, TemplateSpec, Text};
use crate::error::Error;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Template {
    #[serde(rename = "type")]
    type_: Option<String>,
    engine_version: Option<String>,
    merge_policy: Option<String>,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default)]
    template_from: Vec<TemplateFrom>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TemplateFrom {
    literal: Option<String>,
    target: Option<String>,
    config_map: Option<Source>,
    secret: Option<Source>,
}

#[derive(Deserialize)]
struct Source {
    name: String,
    #[serde(default)]
    items: Vec<Item>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    key: String,
    template_as: Option<String>,
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!(
        "not supported by this controller yet: {what} (the Secret is left as it is)"
    ))
}

/// The template, and the Secret type it sets (`None`: Opaque).
pub fn template(v: &Value) -> Result<(TemplateSpec, Option<String>), Error> {
    let at = "spec.target.template";
    let t: Template =
        Template::deserialize(v).map_err(|e| Error::InvalidSpec(format!("{at}: {e}")))?;
    match t.engine_version.as_deref().unwrap_or("v2") {
        "v2" | "" => {}
        "v1" => return Err(unsupported(&format!("{at}.engineVersion=v1"))),
        other => {
            return Err(Error::InvalidSpec(format!(
                "{at}.engineVersion {other:?} is not v1 or v2"
            )))
        }
    }
    let merge = match t.merge_policy.as_deref().unwrap_or("Replace") {
        "Replace" | "" => false,
        "Merge" => true,
        other => {
            return Err(Error::InvalidSpec(format!(
                "{at}.mergePolicy {other:?} is not Replace or Merge"
            )))
        }
    };
    let mut from = Vec::new();
    for (i, item) in t.template_from.into_iter().enumerate() {
        let here = format!("{at}.templateFrom[{i}]");
        let into = match item
            .target
            .as_deref()
            .unwrap_or("Data")
            .to_ascii_lowercase()
            .as_str()
        {
            "data" => Into::Data,
            "labels" => Into::Labels,
            "annotations" => Into::Annotations,
            _ => {
                return Err(unsupported(&format!(
                    "{here}.target other than Data, Labels or Annotations"
                )))
            }
        };
        for (source, is_secret) in [(item.config_map, false), (item.secret, true)] {
            let Some(source) = source else { continue };
            for it in source.items {
                let scope = match it.template_as.as_deref().unwrap_or("Values") {
                    "Values" | "" => Scope::Values {
                        key: it.key.clone(),
                    },
                    "KeysAndValues" => Scope::KeysAndValues,
                    other => {
                        return Err(Error::InvalidSpec(format!(
                            "{here}: templateAs {other:?} is not Values or KeysAndValues"
                        )))
                    }
                };
                let (name, key) = (source.name.clone(), it.key);
                let text = if is_secret {
                    Text::SecretKey { name, key }
                } else {
                    Text::ConfigMapKey { name, key }
                };
                from.push(From { into, scope, text });
            }
        }
        // ESO's order within an item: ConfigMap, Secret, then the literal.
        if let Some(literal) = item.literal {
            from.push(From {
                into,
                scope: Scope::KeysAndValues,
                text: Text::Inline(literal),
            });
        }
    }
    let type_ = t.type_.filter(|s| !s.is_empty());
    Ok((
        TemplateSpec {
            from,
            data: t.data,
            labels: t.metadata.labels,
            annotations: t.metadata.annotations,
            merge,
        },
        type_,
    ))
}
