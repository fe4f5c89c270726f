//! What the watch keeps of each ExternalSecret between syncs: its (trimmed) metadata, which the
//! watch, the scheduler and the triggers read, and the rest — spec and status — as compact JSON,
//! decoded into the front-end's type when the object is synced. A decoded object is a tree of
//! small allocations (every optional field, every string); the bytes are one (docs/benchmarks.md
//! has the figures).

//! What the scope's store keeps of each ExternalSecret between syncs: what the runner, the
//! triggers and the pruning read (`namespace/name`, uid, generation, `FrontEnd::Route`), and the
//! rest of the (trimmed) object as compact JSON, decoded into the front-end's type when the
//! object is synced. A decoded object is a tree of small allocations (every optional field,
//! every string, `ObjectMeta`'s fifteen fields); the bytes are one (docs/benchmarks.md has the
//! figures).

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use super::front_end::FrontEnd;
use crate::error::Error;

pub struct Stored<K: FrontEnd> {
    /// `namespace/name`: the scope store's and the queue's key (one allocation for both).
    key: Arc<str>,
    /// Shared with `Objects`' record of this object (one allocation for both).
    uid: Arc<str>,
    generation: Option<i64>,
    route: K::Route,
    /// The object without name, namespace, uid and generation, as JSON.
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: FrontEnd> Stored<K> {
    pub fn new(mut obj: K) -> Self {
        obj.trim();
        let route = obj.route();
        let meta = obj.meta_mut();
        let key = super::queue::key(
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        meta.namespace = None;
        meta.name = None;
        let uid = meta.uid.take().unwrap_or_default();
        let generation = meta.generation.take();
        // Nothing reads an ExternalSecret's resourceVersion (the watch keeps its own).
        meta.resource_version = None;
        // Serializing a value that was just deserialized cannot fail; if it did, the empty
        // body fails to decode and the sync reports it.
        let body = pack(&obj).unwrap_or_default();
        Stored {
            key: key.into(),
            uid: uid.into(),
            generation,
            route,
            body: body.into_boxed_slice(),
            kind: PhantomData,
        }
    }

    pub fn key(&self) -> &Arc<str> {
        &self.key
    }

    /// Shares the allocations of an equal key and uid: the object's previous version's, under
    /// `key` in the store.
    pub fn share_with(&mut self, key: &Arc<str>, previous: &Stored<K>) {
        if *self.key == **key {
            self.key = key.clone();
        }
        if self.uid == previous.uid {
            self.uid = previous.uid.clone();
        }
    }

    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }

    pub fn name(&self) -> &str {
        self.key
            .split_once('/')
            .map_or(&*self.key, |(_, name)| name)
    }

    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The uid's allocation, for the records kept by uid (`Objects`).
    pub fn shared_uid(&self) -> &Arc<str> {
        &self.uid
    }

    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Which instance serves it, which store it reads through (`FrontEnd::Route`).
    pub fn route(&self) -> &K::Route {
        &self.route
    }

    /// The object as the front-end reads it.
    pub fn decode(&self) -> Result<K, Error> {
        // serde's message may quote the input: it is not passed on.
        let mut obj: K = serde_json::from_slice(&self.body).map_err(|_| {
            Error::InvalidSpec("the stored copy of the object cannot be decoded".into())
        })?;
        let meta = obj.meta_mut();
        meta.namespace = Some(self.namespace().to_string());
        meta.name = Some(self.name().to_string());
        meta.uid = Some(self.uid.to_string()).filter(|u| !u.is_empty());
        meta.generation = self.generation;
        Ok(obj)
    }
}

/// The object as JSON without its `null` members, `apiVersion` and `kind`: the CRD types write
/// every absent optional field as `null`, which is most of a typical spec's bytes. Kept only
/// when it decodes to the same object (a `null` inside free-form JSON can mean something); else
/// the plain JSON.
fn pack<K: FrontEnd>(obj: &K) -> serde_json::Result<Vec<u8>> {
    let plain = serde_json::to_value(obj)?;
    let mut compact = plain.clone();
    drop_nulls(&mut compact);
    // The type writes its own `apiVersion` and `kind`, and needs neither to decode.
    if let serde_json::Value::Object(m) = &mut compact {
        m.remove("apiVersion");
        m.remove("kind");
    }
    let bytes = serde_json::to_vec(&compact)?;
    let same = serde_json::from_slice::<K>(&bytes)
        .and_then(serde_json::to_value)
        .is_ok_and(|v| v == plain);
    if same {
        Ok(bytes)
    } else {
        serde_json::to_vec(&plain)
    }
}

fn drop_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Metadata only: the body is not logged.
impl<K: FrontEnd> fmt::Debug for Stored<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("key", &self.key)
            .field("bytes", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kes::crd::ExternalSecret;
    use serde_json::json;

    fn packed(v: serde_json::Value) -> Stored<ExternalSecret> {
        Stored::new(serde_json::from_value(v).unwrap())
    }

    fn kes() -> serde_json::Value {
        json!({
            "apiVersion": "kubernetes-client.io/v1",
            "kind": "ExternalSecret",
            "metadata": {
                "name": "db", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7",
                "generation": 2,
                "labels": {"app": "x"},
                "annotations": {
                    "kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "reloader.stakater.com/match": "true"
                },
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {
                "backendType": "vault", "vaultRole": "r", "vaultMountPoint": "kubernetes",
                "data": [{"name": "password", "key": "secret/data/db", "property": "password"}]
            },
            "status": {"status": "SUCCESS", "observedGeneration": 2}
        })
    }

    #[test]
    fn decodes_to_the_trimmed_object() {
        let stored = packed(kes());
        let mut want: ExternalSecret = serde_json::from_value(kes()).unwrap();
        want.trim();
        want.metadata.resource_version = None;
        let got = stored.decode().unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        // What the scheduler and triggers read needs no decoding.
        assert_eq!(stored.uid(), "u-1");
        assert_eq!(stored.generation(), Some(2));
        assert_eq!((stored.namespace(), stored.name()), ("team-a", "db"));
        let body = String::from_utf8_lossy(&stored.body);
        assert!(!body.contains("last-applied"));
        assert!(!body.contains("managedFields"));
        // Kept once, outside the body.
        assert!(!body.contains("u-1") && !body.contains("team-a"), "{body}");
        // Nor what the type knows or nothing reads.
        assert!(
            !body.contains("apiVersion") && !body.contains("kind"),
            "{body}"
        );
        assert!(!body.contains("resourceVersion"), "{body}");
    }

    #[test]
    fn the_route_is_read_once_at_watch_time() {
        let stored = packed(kes());
        assert_eq!(stored.route(), &None);
        let mut o = kes();
        o["spec"]["controllerId"] = json!("blue");
        let stored = packed(o.clone());
        assert_eq!(stored.route().as_deref(), Some("blue"));
        // Empty is unset, as in KES.
        o["spec"]["controllerId"] = json!("");
        let stored = packed(o);
        assert_eq!(stored.route(), &None);
    }

    #[test]
    fn absent_fields_are_not_kept_as_nulls_unless_they_mean_something() {
        let stored = packed(kes());
        let body = String::from_utf8_lossy(&stored.body).to_string();
        assert!(!body.contains("null"), "{body}");
        // KES's free-form `template`: a null there is the user's, and it is kept.
        let mut o = kes();
        o["spec"]["template"] = json!({"metadata": {"labels": {"x": null}}});
        let stored = packed(o.clone());
        let want: ExternalSecret = serde_json::from_value(o).unwrap();
        assert_eq!(
            serde_json::to_value(stored.decode().unwrap().spec).unwrap(),
            serde_json::to_value(want.spec).unwrap()
        );
    }

    #[test]
    fn a_broken_body_gives_an_error_without_its_bytes() {
        let mut stored = packed(kes());
        stored.body = br#"{"spec": "hunter2"}"#.to_vec().into_boxed_slice();
        let e = stored.decode().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!format!("{stored:?}").contains("hunter2"));
    }
}
