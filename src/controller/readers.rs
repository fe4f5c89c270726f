//! Which objects read which Vault secret, for change events from the audit stream: each sync
//! records its object's reads; an event for a secret finds its readers and the cached reads to
//! drop. Keyed by `vault::audit_entry::secret_key`, so a v2 write (`data/`, `metadata/`, …)
//! finds the objects that read it under any form.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use crate::vault::audit_entry::secret_key;
use crate::vault::ReadKey;

#[derive(Default)]
struct Index {
    /// secret key → uids reading it.
    by_secret: HashMap<String, HashSet<String>>,
    /// uid → its reads at the last sync.
    by_object: HashMap<String, Vec<ReadKey>>,
}

#[derive(Default)]
pub struct Readers {
    index: Mutex<Index>,
}

impl Readers {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object's reads as of this sync (replacing the last ones).
    pub fn record(&self, uid: &str, reads: Vec<ReadKey>) {
        let mut index = self.index();
        if index.by_object.get(uid).is_some_and(|old| *old == reads) {
            return;
        }
        Self::unlink(&mut index, uid);
        for r in &reads {
            index
                .by_secret
                .entry(secret_key(&r.api_path))
                .or_default()
                .insert(uid.to_string());
        }
        index.by_object.insert(uid.to_string(), reads);
    }

    fn unlink(index: &mut Index, uid: &str) {
        if let Some(old) = index.by_object.remove(uid) {
            for r in old {
                let key = secret_key(&r.api_path);
                if let Some(set) = index.by_secret.get_mut(&key) {
                    set.remove(uid);
                    if set.is_empty() {
                        index.by_secret.remove(&key);
                    }
                }
            }
        }
    }

    /// Whether any object reads `secret`: an event's first check, which copies nothing (a flood
    /// of events for one secret must not copy its readers once per event).
    pub fn any(&self, secret: &str) -> bool {
        self.index().by_secret.contains_key(secret)
    }

    /// The objects reading `secret` and their reads of it (to drop from the read cache).
    pub fn of(&self, secret: &str) -> (HashSet<String>, HashSet<ReadKey>) {
        let index = self.index();
        let uids = index.by_secret.get(secret).cloned().unwrap_or_default();
        let reads = uids
            .iter()
            .filter_map(|u| index.by_object.get(u))
            .flatten()
            .filter(|r| secret_key(&r.api_path) == secret)
            .cloned()
            .collect();
        (uids, reads)
    }

    /// Forgets objects that are gone.
    pub fn retain(&self, live: &HashSet<&str>) {
        let mut index = self.index();
        let gone: Vec<String> = index
            .by_object
            .keys()
            .filter(|u| !live.contains(u.as_str()))
            .cloned()
            .collect();
        for uid in gone {
            Self::unlink(&mut index, &uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{AuthKey, KvPart};

    fn read(path: &str) -> ReadKey {
        ReadKey {
            auth: AuthKey::own_service_account("kubernetes", "r"),
            api_path: path.into(),
            kv_version: 2,
            part: KvPart::Data,
        }
    }

    #[test]
    fn readers_follow_syncs_and_pruning() {
        let r = Readers::default();
        r.record(
            "a",
            vec![read("kv/data/app?version=2"), read("kv/data/other")],
        );
        r.record("b", vec![read("kv/data/app")]);
        let (uids, reads) = r.of("kv/app");
        assert_eq!(uids, ["a".to_string(), "b".to_string()].into());
        assert!(r.any("kv/app") && !r.any("kv/nobody"));
        assert_eq!(
            reads.len(),
            2,
            "both forms of the read are dropped from the cache"
        );
        r.record("a", vec![read("kv/data/other")]);
        assert_eq!(r.of("kv/app").0, ["b".to_string()].into());
        r.retain(&["a"].into());
        assert!(r.of("kv/app").0.is_empty());
        assert!(
            !r.any("kv/app"),
            "a secret nobody reads any more is unknown"
        );
        assert_eq!(r.of("kv/other").0.len(), 1);
    }
}
