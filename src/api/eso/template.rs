//! Pure: ESO's `target.template` from the manifest (kept as free-form JSON in the CRD) into the
//! engine's `TemplateSpec` and the Secret type. `engineVersion: v1` and `templateFrom` items
//! that read a ConfigMap or Secret are named as unsupported.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::engine::templating::{Into, TemplateSpec};
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
    config_map: Option<Value>,
    secret: Option<Value>,
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
    let mut literals = Vec::new();
    for (i, from) in t.template_from.into_iter().enumerate() {
        let here = format!("{at}.templateFrom[{i}]");
        if from.config_map.is_some() {
            return Err(unsupported(&format!("{here}.configMap")));
        }
        if from.secret.is_some() {
            return Err(unsupported(&format!("{here}.secret")));
        }
        let Some(literal) = from.literal else {
            continue;
        };
        let into = match from
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
        literals.push((into, literal));
    }
    let type_ = t.type_.filter(|s| !s.is_empty());
    Ok((
        TemplateSpec {
            literals,
            data: t.data,
            labels: t.metadata.labels,
            annotations: t.metadata.annotations,
            merge,
        },
        type_,
    ))
}
