//! One scope's ExternalSecrets as the watch last saw them, each kept packed (`Stored`), by
//! `namespace/name`. Fed by the watch (`apply`), read by the runner, the triggers and the
//! pruning.
//!
//! kube-runtime's reflector would keep each object decoded, keyed by a second copy of its name,
//! namespace, uid and resourceVersion, and a copy of every object of a re-list next to the old
//! ones until the list ends. Here a re-listed object replaces its old version at once, and those
//! not seen again are dropped when the list ends.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kube::runtime::watcher;

use super::front_end::FrontEnd;
use super::queue::key;
use super::stored::Stored;

pub struct ScopeStore<K: FrontEnd> {
    objects: RwLock<HashMap<Arc<str>, Arc<Stored<K>>>>,
    /// The keys seen since the current (re)list began.
    listing: Mutex<Option<HashSet<Arc<str>>>>,
    /// A list has completed once.
    listed: AtomicBool,
}

impl<K: FrontEnd> Default for ScopeStore<K> {
    fn default() -> Self {
        ScopeStore {
            objects: RwLock::default(),
            listing: Mutex::default(),
            listed: AtomicBool::new(false),
        }
    }
}

impl<K: FrontEnd> ScopeStore<K> {
    /// Applies one watch event; returns the object it added or changed, if any.
    pub fn apply(&self, event: watcher::Event<K>) -> Option<Arc<Stored<K>>> {
        match event {
            watcher::Event::Init => {
                *self.listing() = Some(HashSet::new());
                None
            }
            watcher::Event::InitApply(obj) => {
                let stored = self.insert(obj);
                if let Some(seen) = self.listing().as_mut() {
                    seen.insert(stored.key().clone());
                }
                Some(stored)
            }
            watcher::Event::InitDone => {
                if let Some(seen) = self.listing().take() {
                    self.write().retain(|key, _| seen.contains(key));
                }
                self.listed.store(true, Ordering::Release);
                None
            }
            watcher::Event::Apply(obj) => Some(self.insert(obj)),
            watcher::Event::Delete(obj) => {
                let meta = obj.meta();
                let key = key(
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                );
                self.write().remove(key.as_str());
                None
            }
        }
    }

    fn insert(&self, obj: K) -> Arc<Stored<K>> {
        let mut stored = Stored::new(obj);
        let mut objects = self.write();
        if let Some((key, previous)) = objects.get_key_value(stored.key()) {
            stored.share_with(key, previous);
        }
        let stored = Arc::new(stored);
        objects.insert(stored.key().clone(), stored.clone());
        stored
    }

    /// The object under `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Arc<Stored<K>>> {
        self.read().get(key).cloned()
    }

    /// Every object, at this moment.
    pub fn state(&self) -> Vec<Arc<Stored<K>>> {
        self.read().values().cloned().collect()
    }

    /// The initial list is in.
    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    // Entries are inserted and removed whole: the map is consistent whatever panicked while
    // holding a lock.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Stored<K>>>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Stored<K>>>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }

    fn listing(&self) -> std::sync::MutexGuard<'_, Option<HashSet<Arc<str>>>> {
        self.listing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kes::crd::ExternalSecret;

    pub fn es(name: &str, generation: i64) -> ExternalSecret {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": name, "namespace": "a", "uid": format!("uid-{name}"),
                "generation": generation},
            "spec": {"backendType": "vault", "data": []}
        }))
        .unwrap()
    }

    fn names(store: &ScopeStore<ExternalSecret>) -> Vec<(String, Option<i64>)> {
        let mut v: Vec<_> = store
            .state()
            .iter()
            .map(|o| (o.name().to_string(), o.generation()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_relist_replaces_in_place_and_drops_what_is_gone_at_its_end() {
        let store = ScopeStore::default();
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitApply(es("x", 1)));
        store.apply(watcher::Event::InitApply(es("y", 1)));
        assert!(!store.listed());
        store.apply(watcher::Event::InitDone);
        assert!(store.listed());
        let changed = store.apply(watcher::Event::Apply(es("x", 2))).unwrap();
        assert_eq!(changed.uid(), "uid-x");
        assert_eq!(
            names(&store),
            [("x".into(), Some(2)), ("y".into(), Some(1))]
        );
        let x = store.get("a/x").unwrap();

        // The watch restarts: y was deleted meanwhile, x changed again.
        store.apply(watcher::Event::Init);
        store.apply(watcher::Event::InitApply(es("x", 3)));
        assert_eq!(
            names(&store),
            [("x".into(), Some(3)), ("y".into(), Some(1))]
        );
        store.apply(watcher::Event::InitDone);
        assert_eq!(names(&store), [("x".into(), Some(3))]);
        // The new version shares the old one's key and uid (and so does `Objects`' record).
        let x3 = store.get("a/x").unwrap();
        assert!(Arc::ptr_eq(x.key(), x3.key()));
        assert!(Arc::ptr_eq(x.shared_uid(), x3.shared_uid()));

        store.apply(watcher::Event::Delete(es("x", 3)));
        assert!(store.state().is_empty());
        assert!(store.get("a/x").is_none());
    }
}
