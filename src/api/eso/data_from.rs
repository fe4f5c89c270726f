//! Pure: ESO's `dataFrom[].find` and `dataFrom[].rewrite`, parsed from the manifest (kept as
//! free-form JSON in the CRD, so a malformed one is this object's error, not a watch stall)
//! into the engine's `Find` and key rules.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::path::find_paths;
use crate::engine::{Decoding, Find, KeyRules, Rewrite};
use crate::error::Error;
use crate::vault::{AuthKey, KvPart, ReadKey};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindSpec {
    path: Option<String>,
    name: Option<FindName>,
    tags: Option<BTreeMap<String, String>>,
    conversion_strategy: Option<String>,
    decoding_strategy: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FindName {
    regexp: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteItem {
    regexp: Option<RegexpRewrite>,
    transform: Option<TransformRewrite>,
    merge: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformRewrite {
    template: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegexpRewrite {
    source: String,
    target: String,
}

fn parse<T: for<'de> Deserialize<'de>>(v: &Value, at: &str) -> Result<T, Error> {
    // serde's message names the field and the expected type, never a value.
    T::deserialize(v).map_err(|e| Error::InvalidSpec(format!("{at}: {e}")))
}

/// `conversionStrategy`: `Default` converts, `None` keeps keys as they are (`Unicode` is
/// refused earlier, as unsupported).
pub fn convert(strategy: Option<&str>, at: &str) -> Result<bool, Error> {
    match strategy.unwrap_or("Default") {
        "Default" | "" => Ok(true),
        "None" => Ok(false),
        other => Err(Error::InvalidSpec(format!(
            "{at}.conversionStrategy {other:?} is not Default or None"
        ))),
    }
}

/// A `dataFrom` item's rewrites, in order; `merge` is named as unsupported.
pub fn rewrites(rewrite: Option<&Value>, at: &str) -> Result<Vec<Rewrite>, Error> {
    let Some(rewrite) = rewrite else {
        return Ok(Vec::new());
    };
    let items: Vec<RewriteItem> = parse(rewrite, &format!("{at}.rewrite"))?;
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| {
            let here = format!("{at}.rewrite[{i}]");
            // ESO's precedence: merge, then regexp, then transform.
            match item {
                RewriteItem { merge: Some(_), .. } => Some(Err(Error::Unsupported(format!(
                    "not supported by this controller yet: {here}.merge (the Secret is left as it is)"
                )))),
                RewriteItem { regexp: Some(r), .. } => Some(Ok(Rewrite::Regexp {
                    source: r.source,
                    target: r.target,
                })),
                RewriteItem {
                    transform: Some(t), ..
                } => Some(Ok(Rewrite::Transform {
                    template: t.template,
                })),
                // An empty item rewrites nothing (as in ESO).
                _ => None,
            }
        })
        .collect()
}

/// Everything of a `find` but what the object's deletion policy and the store decide.
pub struct FindRequest<'a> {
    pub at: &'a str,
    pub find: &'a Value,
    pub rewrite: Vec<Rewrite>,
    pub identity: &'a AuthKey,
    pub store_path: Option<&'a str>,
    pub kv_version: u8,
    pub optional: bool,
}

pub fn find(
    req: FindRequest<'_>,
    decoding: impl Fn(Option<&str>, &str) -> Result<Decoding, Error>,
) -> Result<Find, Error> {
    let at = format!("{}.find", req.at);
    let spec: FindSpec = parse(req.find, &at)?;
    let tags = spec.tags.unwrap_or_default();
    let name_regexp = spec.name.and_then(|n| n.regexp).filter(|r| !r.is_empty());
    if name_regexp.is_none() && tags.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "{at} needs name.regexp or tags"
        )));
    }
    if req.kv_version == 1 && !tags.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "{at}: cannot perform find by tag operations with kv version v1"
        )));
    }
    let paths = find_paths(req.store_path, req.kv_version, spec.path.as_deref())
        .map_err(|why| Error::InvalidSpec(format!("{at}: {why}")))?;
    let convert = convert(spec.conversion_strategy.as_deref(), &at)?;
    Ok(Find {
        list: ReadKey {
            auth: req.identity.clone(),
            api_path: paths.list,
            kv_version: req.kv_version,
            part: KvPart::List,
        },
        names_from: paths.names_from,
        data_prefix: paths.data_prefix,
        metadata_prefix: paths.metadata_prefix,
        name_regexp,
        tags,
        keys: KeyRules {
            rewrite: req.rewrite,
            convert,
        },
        decoding: decoding(spec.decoding_strategy.as_deref(), &at)?,
        optional: req.optional,
        at,
    })
}
