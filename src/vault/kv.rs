//! KV v1 / v2 reads, coalesced: every sync that asks for the same (auth, path, version) while a
//! read is in flight, or within the cache TTL after it, shares one Vault request. Only paths in
//! a KV mount of the expected version are read (`mounts`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::auth::Verdict;
use super::mounts::{check_kv, check_read_path, KnownMounts, MountKind};
use super::{AuthKey, Op, TokenCache, VaultError};
use crate::single_flight::Cache;

/// The fields of one Vault secret. `Debug` is redacted: values must never reach a log line.
#[derive(Clone, PartialEq)]
pub struct SecretData(pub Map<String, Value>);

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("fields", &self.0.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// One coalescable read. The auth key is part of it: two roles may not see the same secrets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadKey {
    pub auth: AuthKey,
    /// API path below `/v1/`, query included (`kv/data/app?version=3`).
    pub api_path: String,
    pub kv_version: u8,
    pub part: KvPart,
}

/// What of a KV secret a read returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KvPart {
    /// The secret's fields (`data`, or `data.data` on v2).
    #[default]
    Data,
    /// A v2 secret's `custom_metadata` (ESO `metadataPolicy: Fetch`), read at `<mount>/metadata/…`.
    CustomMetadata,
    /// A folder's listing (`<mount>/metadata/<folder>/` on v2, `<mount>/<folder>/` on v1), as
    /// `{"keys": [...]}`; subfolders end with `/`.
    List,
}

/// Builds the API path for a KES `key`.
///
/// KV v1: the key as is. KV v2: a key that already has a `data` segment after its mount
/// (KES style, `secret/data/foo`) is used as is; a natural key (`secret/foo`) gets `data`
/// inserted after its first segment, the mount. Segments are URL-encoded.
pub fn kv_api_path(key: &str, kv_version: u8, version: Option<&str>) -> Result<String, VaultError> {
    let invalid = |reason: &str| VaultError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let segments: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
    if segments.is_empty() {
        return Err(invalid("empty"));
    }
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(invalid("relative segments are not allowed"));
    }
    let mut out: Vec<String> = segments
        .iter()
        .map(|s| urlencoding::encode(s).into_owned())
        .collect();
    match kv_version {
        1 => {
            if version.is_some() {
                return Err(invalid("`version` needs kvVersion 2"));
            }
        }
        2 => {
            if segments.len() < 2 {
                return Err(invalid(
                    "a KV v2 key needs a mount and a path, e.g. secret/app",
                ));
            }
            if !segments[1..].contains(&"data") {
                out.insert(1, "data".to_string());
            }
            if out.len() < 3 {
                return Err(invalid("no secret path after <mount>/data"));
            }
        }
        other => return Err(invalid(&format!("kvVersion must be 1 or 2, not {other}"))),
    }
    let mut path = out.join("/");
    if let Some(v) = version {
        path.push_str("?version=");
        path.push_str(&urlencoding::encode(v));
    }
    Ok(path)
}

/// Reads Vault's KV through the read cache. Cloning is cheap: a clone shares the cache, the
/// tokens and the known mounts.
#[derive(Clone)]
pub struct KvReader {
    inner: Arc<Inner>,
    /// When the sync this reader serves fell due (`for_sync_due`).
    fresh_since: Option<Instant>,
}

struct Inner {
    tokens: Arc<TokenCache>,
    /// Each read's fields as JSON text, decoded again for each sync that takes it: a decoded
    /// map of a few fields is several times its text (a B-tree node of eleven slots), and the
    /// cache holds every path read in the last poll interval (docs/benchmarks.md).
    cache: Cache<ReadKey, Result<Arc<str>, Arc<VaultError>>>,
    mounts: KnownMounts,
}

impl KvReader {
    /// `ttl` bounds how long a read answers later syncs; keep it well under the poll interval.
    /// `keep` bounds how long it answers syncs that fell due before it began (`for_sync_due`).
    pub fn new(tokens: Arc<TokenCache>, ttl: Duration, keep: Duration) -> Self {
        KvReader {
            inner: Arc::new(Inner {
                tokens,
                cache: Cache::new(200_000, ttl, keep),
                mounts: KnownMounts::default(),
            }),
            fresh_since: None,
        }
    }

    /// This reader for a sync that fell due at `due` (a change seen, a poll's time): a cached
    /// read that began at or after `due` answers it too, as that read is one the sync could
    /// have made itself. So syncs that waited in a backlog share the reads made meanwhile
    /// instead of each reading its path again, and nobody gets a value read before they fell due
    /// (beyond the `ttl` every read is shared for).
    pub fn for_sync_due(&self, due: Instant) -> KvReader {
        KvReader {
            inner: self.inner.clone(),
            fresh_since: Some(due),
        }
    }

    /// Drops a cached read, so the next sync reads Vault (a change event said it changed).
    pub fn invalidate(&self, key: &ReadKey) {
        self.inner.cache.invalidate(key);
    }

    /// The token cache the reader logs in with (store validation checks a login through it).
    pub fn tokens(&self) -> &Arc<TokenCache> {
        &self.inner.tokens
    }

    /// Reads many keys, each once, concurrently; the result maps each key to its data or error.
    pub async fn read_all(
        &self,
        keys: impl IntoIterator<Item = ReadKey>,
    ) -> BTreeMap<ReadKey, Result<Arc<SecretData>, Arc<VaultError>>> {
        let keys: std::collections::BTreeSet<ReadKey> = keys.into_iter().collect();
        let reads = keys.into_iter().map(|k| async move {
            let r = self.read(&k).await;
            (k, r)
        });
        futures::future::join_all(reads).await.into_iter().collect()
    }

    pub async fn read(&self, key: &ReadKey) -> Result<Arc<SecretData>, Arc<VaultError>> {
        let fetch = async {
            let fields = self.fetch(key).await.map_err(Arc::new)?;
            Ok(Arc::from(Value::Object(fields).to_string()))
        };
        let text = self
            .inner
            .cache
            .get_with(key, self.fresh_since, fetch, Result::is_ok)
            .await?;
        // The text is ours (written just above): it decodes. Should it not, the error names
        // the path only.
        serde_json::from_str(&text)
            .map(|fields| Arc::new(SecretData(fields)))
            .map_err(|_| {
                Arc::new(VaultError::Decode {
                    path: key.api_path.clone(),
                    reason: "cached read does not decode".into(),
                })
            })
    }

    /// The secret's fields (or a listing's keys, or custom metadata) from Vault.
    async fn fetch(&self, key: &ReadKey) -> Result<Map<String, Value>, VaultError> {
        let not_kv = |reason: String| VaultError::NotKv {
            path: key.api_path.clone(),
            kv_version: key.kv_version,
            reason,
        };
        check_read_path(&key.api_path).map_err(not_kv)?;
        let path_only = key.api_path.split('?').next().unwrap_or_default();
        let mount = self
            .inner
            .mounts
            .resolve(&key.auth, path_only, || async {
                let resp = self
                    .authed(
                        &key.auth,
                        Op::Mount,
                        &format!("sys/internal/ui/mounts/{path_only}"),
                    )
                    .await?;
                MountKind::parse(&resp).ok_or_else(|| VaultError::Decode {
                    path: format!("sys/internal/ui/mounts/{path_only}"),
                    reason: "no mount type in the answer".into(),
                })
            })
            .await?;
        check_kv(&mount, path_only, key.kv_version).map_err(not_kv)?;

        if key.part == KvPart::List {
            let resp = self
                .authed(&key.auth, Op::List, &format!("{}?list=true", key.api_path))
                .await?;
            let keys = resp
                .get("data")
                .and_then(|d| d.get("keys"))
                .cloned()
                .unwrap_or(Value::Array(Vec::new()));
            if !keys.is_array() {
                return Err(VaultError::Decode {
                    path: key.api_path.clone(),
                    reason: "data.keys is not a list".into(),
                });
            }
            return Ok(Map::from_iter([("keys".to_string(), keys)]));
        }
        let resp = self
            .authed(&key.auth, Op::Read, &key.api_path)
            .await
            .map_err(|e| hint_kv_version(e, key.kv_version))?;
        if key.part == KvPart::CustomMetadata {
            // No custom metadata is an empty map, not an error.
            return match resp.get("data").and_then(|d| d.get("custom_metadata")) {
                Some(Value::Object(m)) => Ok(m.clone()),
                None | Some(Value::Null) => Ok(Map::new()),
                Some(_) => Err(VaultError::Decode {
                    path: key.api_path.clone(),
                    reason: "custom_metadata is not an object".into(),
                }),
            };
        }
        let data = match key.kv_version {
            1 => resp.get("data"),
            _ => resp.get("data").and_then(|d| d.get("data")),
        };
        match data {
            Some(Value::Object(m)) => Ok(m.clone()),
            _ => Err(VaultError::Decode {
                path: key.api_path.clone(),
                reason: if key.kv_version == 2 {
                    "no data.data object (deleted or destroyed version?)".into()
                } else {
                    "no data object".into()
                },
            }),
        }
    }

    /// A GET with the identity's token. A 403 is either a bad token or a path the token may not
    /// read: the token is checked once (`TokenCache::verify`); only a bad one is replaced, and
    /// the request is tried once more with the new token. A 403 then is the path's answer.
    async fn authed(&self, auth: &AuthKey, op: Op, path: &str) -> Result<Value, VaultError> {
        let http = self.inner.tokens.http_for(auth).await?;
        let token = self.inner.tokens.token(auth).await?;
        let sent = tokio::time::Instant::now();
        let resp = http
            .request(op, Method::GET, path, Some(&token), None)
            .await;
        if !matches!(resp, Err(VaultError::Status { status: 403, .. })) {
            return resp;
        }
        match self.inner.tokens.verify(auth, &token, sent).await? {
            Verdict::Permission => resp,
            Verdict::Replaced => {
                let token = self.inner.tokens.token(auth).await?;
                http.request(op, Method::GET, path, Some(&token), None)
                    .await
            }
        }
    }
}

/// A 404 from a KV read often means the wrong `kvVersion`; say so in the message.
fn hint_kv_version(e: VaultError, kv_version: u8) -> VaultError {
    match e {
        VaultError::Status {
            op,
            status: 404,
            path,
            message,
            retry_after,
        } => VaultError::Status {
            op,
            status: 404,
            message: format!(
                "{message} (read as KV v{kv_version}; check the key and that the mount is KV v{kv_version})"
            ),
            path,
            retry_after,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_paths() {
        let cases: &[(&str, u8, Option<&str>, &str)] = &[
            ("secret/Rabbitmq", 1, None, "secret/Rabbitmq"),
            ("/secret/Rabbitmq/", 1, None, "secret/Rabbitmq"),
            ("secret/data/app", 2, None, "secret/data/app"),
            ("secret/app", 2, None, "secret/data/app"),
            ("kv/team/app", 2, Some("3"), "kv/data/team/app?version=3"),
            ("team/kv/data/app", 2, None, "team/kv/data/app"),
            ("kv/my app/ü", 2, None, "kv/data/my%20app/%C3%BC"),
        ];
        for (key, v, ver, want) in cases {
            assert_eq!(&kv_api_path(key, *v, *ver).unwrap(), want, "{key} v{v}");
        }
    }

    #[test]
    fn bad_kv_keys() {
        for (key, v, ver) in [
            ("", 2, None),
            ("secret", 2, None),
            ("secret/data", 2, None),
            ("secret/../sys/x", 1, None),
            ("secret/a", 3, None),
            ("secret/a", 1, Some("2")),
        ] {
            assert!(kv_api_path(key, v, ver).is_err(), "{key:?} v{v}");
        }
    }

    #[test]
    fn secret_data_debug_is_redacted() {
        let mut m = Map::new();
        m.insert("password".into(), Value::String("hunter2-planted".into()));
        let s = format!("{:?}", SecretData(m));
        assert!(s.contains("password"));
        assert!(!s.contains("hunter2-planted"));
    }
}
