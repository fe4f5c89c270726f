//! The resourceVersion of each Secret we manage, by namespace and name, fed by a metadata-only
//! watch (label-selected to ours). It is all the controller needs to know about Secrets: whether
//! one exists, and whether it changed since we wrote it. A reflector store of the metadata would
//! keep a full `ObjectMeta` (about 400 bytes before any string) per Secret; this keeps two short
//! strings.
//!
//! Pure apart from the lock: `apply` takes watcher events, so it is tested without a server.

use std::collections::HashMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::Event;

/// namespace → name → resourceVersion.
type Versions = HashMap<Box<str>, HashMap<Box<str>, Box<str>>>;

#[derive(Default)]
pub struct SecretIndex {
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    versions: Versions,
    /// A (re)list in progress: built aside and swapped in whole at its end, so readers never
    /// see a half-listed index (as kube-runtime's reflector store does).
    relisting: Option<Versions>,
    /// The first list has completed: a Secret missing from `versions` is really absent.
    listed: bool,
}

impl SecretIndex {
    pub fn apply(&self, event: Event<PartialObjectMeta<Secret>>) {
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        match event {
            Event::Init => st.relisting = Some(Versions::new()),
            Event::InitApply(s) => {
                if let Some(buf) = st.relisting.as_mut() {
                    insert(buf, &s);
                }
            }
            Event::InitDone => {
                if let Some(buf) = st.relisting.take() {
                    st.versions = buf;
                }
                st.listed = true;
            }
            Event::Apply(s) => insert(&mut st.versions, &s),
            Event::Delete(s) => {
                let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) else {
                    return;
                };
                if let Some(names) = st.versions.get_mut(ns.as_str()) {
                    names.remove(name.as_str());
                    if names.is_empty() {
                        st.versions.remove(ns.as_str());
                    }
                }
            }
        }
    }

    /// The Secret's resourceVersion as last seen, if it exists (and is ours).
    pub fn resource_version(&self, namespace: &str, name: &str) -> Option<String> {
        let st = self.state.read().unwrap_or_else(|p| p.into_inner());
        st.versions
            .get(namespace)
            .and_then(|names| names.get(name))
            .map(|rv| rv.to_string())
    }

    /// Whether the first list has completed.
    pub fn listed(&self) -> bool {
        self.state.read().unwrap_or_else(|p| p.into_inner()).listed
    }
}

fn insert(versions: &mut Versions, s: &PartialObjectMeta<Secret>) {
    let m = &s.metadata;
    let (Some(ns), Some(name), Some(rv)) = (&m.namespace, &m.name, &m.resource_version) else {
        return;
    };
    let names = match versions.get_mut(ns.as_str()) {
        Some(names) => names,
        None => versions.entry(ns.as_str().into()).or_default(),
    };
    names.insert(name.as_str().into(), rv.as_str().into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(ns: &str, name: &str, rv: &str) -> PartialObjectMeta<Secret> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    #[test]
    fn list_then_changes() {
        let idx = SecretIndex::default();
        assert!(!idx.listed());
        idx.apply(Event::Init);
        idx.apply(Event::InitApply(secret("a", "s1", "10")));
        idx.apply(Event::InitApply(secret("b", "s1", "11")));
        // Not visible before the list completes.
        assert_eq!(idx.resource_version("a", "s1"), None);
        idx.apply(Event::InitDone);
        assert!(idx.listed());
        assert_eq!(idx.resource_version("a", "s1").as_deref(), Some("10"));
        assert_eq!(idx.resource_version("b", "s1").as_deref(), Some("11"));
        assert_eq!(idx.resource_version("a", "s2"), None);

        idx.apply(Event::Apply(secret("a", "s1", "12")));
        idx.apply(Event::Apply(secret("a", "s2", "13")));
        assert_eq!(idx.resource_version("a", "s1").as_deref(), Some("12"));
        assert_eq!(idx.resource_version("a", "s2").as_deref(), Some("13"));
        idx.apply(Event::Delete(secret("a", "s1", "12")));
        assert_eq!(idx.resource_version("a", "s1"), None);
        assert_eq!(idx.resource_version("a", "s2").as_deref(), Some("13"));
    }

    /// A relist (after the watch expired) replaces the index: Secrets deleted while the watch
    /// was down disappear, and the old view serves reads until the new list is complete.
    #[test]
    fn relist_replaces_the_index() {
        let idx = SecretIndex::default();
        idx.apply(Event::Init);
        idx.apply(Event::InitApply(secret("a", "gone", "1")));
        idx.apply(Event::InitApply(secret("a", "kept", "2")));
        idx.apply(Event::InitDone);

        idx.apply(Event::Init);
        idx.apply(Event::InitApply(secret("a", "kept", "5")));
        assert_eq!(idx.resource_version("a", "gone").as_deref(), Some("1"));
        idx.apply(Event::InitDone);
        assert_eq!(idx.resource_version("a", "gone"), None);
        assert_eq!(idx.resource_version("a", "kept").as_deref(), Some("5"));
        assert!(idx.listed());
    }
}
