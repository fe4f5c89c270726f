//! ESO's `dataFrom[].find`: list a KV folder recursively (each listing a coalesced, cached read
//! like any other), keep the secrets whose name matches the regexp and whose custom metadata
//! holds the tags, and turn each into a `One` source — the whole secret as JSON under its name,
//! renamed by the source's key rules. Bounded: a find lists at most `MAX_FOLDERS` folders and
//! keeps at most `MAX_SECRETS` secrets, so a manifest cannot make one sync a crawl of Vault.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::keys::KeyRules;
use super::{Decoding, Dialect, Source, SyncSpec};
use crate::error::Error;
use crate::vault::{KvPart, KvReader, ReadKey};

pub const MAX_FOLDERS: usize = 100;
pub const MAX_SECRETS: usize = 500;

/// One `find`, with the paths it works under already built by the front-end.
#[derive(Clone, Debug, PartialEq)]
pub struct Find {
    /// Where the request is, for messages (`spec.dataFrom[0].find`).
    pub at: String,
    /// The listing of the folder searched (`KvPart::List`).
    pub list: ReadKey,
    /// What names found there start with, relative to the mount (`app/` or nothing).
    pub names_from: String,
    /// Where a found name's data is read: `<mount>/data/` (v2) or `<mount>/` (v1).
    pub data_prefix: String,
    /// Where its custom metadata is read (`<mount>/metadata/`, v2 only; tags need it).
    pub metadata_prefix: Option<String>,
    pub name_regexp: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub keys: KeyRules,
    pub decoding: Decoding,
    /// A missing folder finds nothing instead of failing (ESO deletion policies).
    pub optional: bool,
}

/// The spec with every `Find` replaced by the `One` sources it finds (borrowed as it is when it
/// has none).
pub async fn expand<'a>(kv: &KvReader, spec: &'a SyncSpec) -> Result<Cow<'a, SyncSpec>, Error> {
    if !spec.sources.iter().any(|s| matches!(s, Source::Find(_))) {
        return Ok(Cow::Borrowed(spec));
    }
    let mut sources = Vec::with_capacity(spec.sources.len());
    for source in &spec.sources {
        match source {
            Source::Find(f) => sources.extend(found(kv, f).await?),
            other => sources.push(other.clone()),
        }
    }
    Ok(Cow::Owned(SyncSpec {
        sources,
        ..spec.clone()
    }))
}

async fn found(kv: &KvReader, f: &Find) -> Result<Vec<Source>, Error> {
    let invalid = |why: String| Error::InvalidSpec(format!("{}: {why}", f.at));
    let names = list_all(kv, f).await?;
    let mut names = match &f.name_regexp {
        Some(re) => {
            let re = super::keys::regex(re).map_err(|e| invalid(format!("name.regexp: {e}")))?;
            names.into_iter().filter(|n| re.is_match(n)).collect()
        }
        None => names,
    };
    if !f.tags.is_empty() {
        let prefix = f.metadata_prefix.as_deref().ok_or_else(|| {
            invalid("cannot perform find by tag operations with kv version v1".into())
        })?;
        let key = |n: &str| ReadKey {
            part: KvPart::CustomMetadata,
            api_path: format!("{prefix}{}", encode(n)),
            ..f.list.clone()
        };
        let metadata = kv.read_all(names.iter().map(|n| key(n))).await;
        names.retain(|n| match metadata.get(&key(n)) {
            Some(Ok(m)) => f
                .tags
                .iter()
                .all(|(k, v)| m.0.get(k).and_then(Value::as_str) == Some(v.as_str())),
            _ => false,
        });
    }
    if names.len() > MAX_SECRETS {
        return Err(invalid(format!(
            "finds {} secrets, more than {MAX_SECRETS}; narrow path, name or tags",
            names.len()
        )));
    }
    let renamed = f
        .keys
        .apply(names.into_iter().map(|n| (n.clone(), n)).collect())
        .map_err(invalid)?;
    Ok(renamed
        .into_iter()
        .map(|(secret_key, name)| Source::One {
            read: ReadKey {
                part: KvPart::Data,
                api_path: format!("{}{}", f.data_prefix, encode(&name)),
                ..f.list.clone()
            },
            key: name,
            name: secret_key,
            property: None,
            dialect: Dialect::Eso {
                decoding: f.decoding,
            },
            // Listed, then deleted before it was read: skipped, as ESO does.
            optional: true,
        })
        .collect())
}

/// Every secret name under the folder, recursively, in listing order.
async fn list_all(kv: &KvReader, f: &Find) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    // (listing, the mount-relative prefix of what it lists)
    let mut folders = vec![(f.list.clone(), f.names_from.clone())];
    let mut listed = 0;
    while let Some((list, prefix)) = folders.pop() {
        listed += 1;
        if listed > MAX_FOLDERS {
            return Err(Error::InvalidSpec(format!(
                "{}: more than {MAX_FOLDERS} folders to list; narrow path",
                f.at
            )));
        }
        let keys = match kv.read(&list).await {
            Ok(k) => k,
            // Nothing at the folder searched: an optional find finds nothing.
            Err(e) if listed == 1 && f.optional && e.status() == Some(404) => return Ok(Vec::new()),
            Err(e) => return Err(Error::from_vault(&f.at, e)),
        };
        let entries = keys.0.get("keys").and_then(Value::as_array);
        let mut subfolders = Vec::new();
        for entry in entries.into_iter().flatten().filter_map(Value::as_str) {
            if let Some(folder) = entry.strip_suffix('/') {
                subfolders.push((
                    ReadKey {
                        api_path: format!("{}{}/", list.api_path, encode(folder)),
                        ..list.clone()
                    },
                    format!("{prefix}{folder}/"),
                ));
            } else if !entry.is_empty() {
                names.push(format!("{prefix}{entry}"));
            }
        }
        // Depth first, in listing order.
        folders.extend(subfolders.into_iter().rev());
    }
    Ok(names)
}

/// A mount-relative name as an API path: each segment URL-encoded.
fn encode(name: &str) -> String {
    name.split('/')
        .map(|s| urlencoding::encode(s).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}
