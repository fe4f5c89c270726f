//! Reads go only to KV secrets engines. The token the controller holds can often read more than
//! KV data (`auth/token/lookup-self` returns the token itself, `sys/internal/ui/resultant-acl`
//! its policies, `cubbyhole/` its private storage), and the key of an ExternalSecret is tenant
//! input; so before the first read under a mount, the mount's type and KV version are asked of
//! `sys/internal/ui/mounts/<path>` (with the same token: it answers only for paths the token can
//! reach) and remembered per identity. A path outside a KV mount of the expected version is
//! never read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::AuthKey;

/// How long a learned KV mount is trusted before it is asked again (a mount can be disabled and
/// another engine mounted at its path).
const MOUNT_TTL: Duration = Duration::from_secs(3600);

/// First path segments that are never KV data: refused without asking Vault.
const NEVER_KV: [&str; 4] = ["sys", "auth", "identity", "cubbyhole"];

/// What `sys/internal/ui/mounts/<path>` says of the engine a path is in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountKind {
    /// A `kv` (or legacy `generic`) engine mounted at `path` (with its trailing slash).
    Kv {
        path: String,
        version: u8,
    },
    Other {
        type_: String,
    },
}

impl MountKind {
    pub fn parse(resp: &Value) -> Option<MountKind> {
        let data = resp.get("data")?;
        let type_ = data.get("type")?.as_str()?.to_string();
        if type_ != "kv" && type_ != "generic" {
            return Some(MountKind::Other { type_ });
        }
        let path = data.get("path")?.as_str()?.to_string();
        // No options, or no version in them: KV v1.
        let version = match data
            .get("options")
            .and_then(|o| o.get("version"))
            .and_then(Value::as_str)
        {
            Some("2") => 2,
            _ => 1,
        };
        Some(MountKind::Kv { path, version })
    }
}

/// The pure part of the check: a key whose first segment is a system, auth, identity or
/// cubbyhole path is refused before any request.
pub fn check_read_path(api_path: &str) -> Result<(), String> {
    let first = api_path.split('/').next().unwrap_or_default();
    if NEVER_KV.contains(&first) {
        return Err(format!(
            "{first}/ is not a KV secrets engine; only KV data is read"
        ));
    }
    Ok(())
}

/// Checks a learned mount against the path and version a read needs.
pub fn check_kv(kind: &MountKind, api_path: &str, kv_version: u8) -> Result<(), String> {
    match kind {
        MountKind::Other { type_ } => Err(format!(
            "it is in a {type_:?} engine, not KV; only KV data is read"
        )),
        MountKind::Kv { path, .. } if !api_path.starts_with(path.as_str()) => Err(format!(
            "Vault places it under mount {path:?}, which it does not start with"
        )),
        MountKind::Kv { path, version } if *version != kv_version => Err(format!(
            "mount {path} is KV v{version}; set kvVersion to {version}"
        )),
        MountKind::Kv { .. } => Ok(()),
    }
}

#[derive(Default)]
struct Known {
    /// KV mounts this identity has read under, with when they were learned.
    kv: Vec<(String, u8, Instant)>,
}

/// KV mounts learned per identity. Lookups for one identity are single-flight: at start every
/// object of a role reads at once, and one lookup per mount must serve them all.
#[derive(Default)]
pub(super) struct KnownMounts {
    by_auth: SyncMutex<HashMap<AuthKey, Arc<Mutex<Known>>>>,
}

impl KnownMounts {
    fn entry(&self, auth: &AuthKey) -> Arc<Mutex<Known>> {
        let mut map = self.by_auth.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(auth.clone()).or_default().clone()
    }

    /// The KV mount a path is in, learning it with `lookup` when unknown. `lookup` runs under
    /// the identity's lock, so concurrent callers wait for one answer.
    pub async fn resolve<F, Fut, E>(
        &self,
        auth: &AuthKey,
        api_path: &str,
        lookup: F,
    ) -> Result<MountKind, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<MountKind, E>>,
    {
        let entry = self.entry(auth);
        let mut known = entry.lock().await;
        let now = Instant::now();
        known
            .kv
            .retain(|(_, _, at)| now.duration_since(*at) < MOUNT_TTL);
        if let Some((path, version, _)) = known
            .kv
            .iter()
            .find(|(p, _, _)| api_path.starts_with(p.as_str()))
        {
            return Ok(MountKind::Kv {
                path: path.clone(),
                version: *version,
            });
        }
        let kind = lookup().await?;
        if let MountKind::Kv { path, version } = &kind {
            // Only a mount the path is really under answers later paths (auth mounts are
            // reported without their `auth/` prefix).
            if api_path.starts_with(path.as_str()) {
                known.kv.push((path.clone(), *version, now));
            }
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mount(type_: &str, path: &str, options: Value) -> Value {
        json!({"data": {"type": type_, "path": path, "options": options}})
    }

    #[test]
    fn parses_what_openbao_answers() {
        assert_eq!(
            MountKind::parse(&mount("kv", "secret/", json!({"version": "2"}))),
            Some(MountKind::Kv {
                path: "secret/".into(),
                version: 2
            })
        );
        assert_eq!(
            MountKind::parse(&mount("kv", "old/", Value::Null)),
            Some(MountKind::Kv {
                path: "old/".into(),
                version: 1
            })
        );
        assert_eq!(
            MountKind::parse(&mount("token", "token/", Value::Null)),
            Some(MountKind::Other {
                type_: "token".into()
            })
        );
        assert_eq!(MountKind::parse(&json!({})), None);
    }

    #[test]
    fn only_kv_of_the_right_version_under_its_mount() {
        let kv2 = MountKind::Kv {
            path: "secret/".into(),
            version: 2,
        };
        assert!(check_kv(&kv2, "secret/data/app", 2).is_ok());
        assert!(check_kv(&kv2, "secret/app", 1)
            .unwrap_err()
            .contains("kvVersion to 2"));
        assert!(check_kv(&kv2, "other/data/app", 2).is_err());
        let tok = MountKind::Other {
            type_: "token".into(),
        };
        assert!(check_kv(&tok, "auth/token/lookup-self", 1).is_err());
    }

    #[test]
    fn system_paths_are_refused_without_a_request() {
        for p in [
            "auth/token/lookup-self",
            "sys/internal/ui/resultant-acl",
            "identity/entity/id",
            "cubbyhole/x",
        ] {
            assert!(check_read_path(p).is_err(), "{p}");
        }
        assert!(check_read_path("secret/data/sys").is_ok());
        assert!(check_read_path("system/x").is_ok());
    }

    #[tokio::test]
    async fn one_lookup_per_mount_and_identity() {
        let known = KnownMounts::default();
        let auth = AuthKey::own_service_account("kubernetes", "r");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let lookup = || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, ()>(MountKind::Kv {
                path: "kv/".into(),
                version: 2,
            })
        };
        for p in ["kv/data/a", "kv/data/b", "kv/data/c/d"] {
            known.resolve(&auth, p, lookup).await.unwrap();
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let other = AuthKey::own_service_account("kubernetes", "other");
        known.resolve(&other, "kv/data/a", lookup).await.unwrap();
        assert_eq!(
            calls.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "another identity may see other mounts"
        );
    }
}
