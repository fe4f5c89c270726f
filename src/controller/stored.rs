//! What the watch keeps of each ExternalSecret between syncs: its (trimmed) metadata, which the
//! watch, the scheduler and the triggers read, and the rest — spec and status — as compact JSON,
//! decoded into the front-end's type when the object is synced. A decoded object is a tree of
//! small allocations (every optional field, every string); the bytes are one (docs/benchmarks.md
//! has the figures).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::{Deserialize, Deserializer};

use super::front_end::FrontEnd;
use crate::error::Error;

pub struct Stored<K> {
    meta: ObjectMeta,
    /// The object with its metadata emptied, as JSON.
    body: Box<[u8]>,
    kind: PhantomData<fn() -> K>,
}

impl<K: FrontEnd> Stored<K> {
    pub fn new(mut obj: K) -> Self {
        obj.trim();
        let meta = std::mem::take(obj.meta_mut());
        // Serializing a value that was just deserialized cannot fail; if it did, the empty
        // body fails to decode and the sync reports it.
        let body = pack(&obj).unwrap_or_default();
        Stored {
            meta,
            body: body.into_boxed_slice(),
            kind: PhantomData,
        }
    }

    /// The object as the front-end reads it.
    pub fn decode(&self) -> Result<K, Error> {
        // serde's message may quote the input: it is not passed on.
        let mut obj: K = serde_json::from_slice(&self.body).map_err(|_| {
            Error::InvalidSpec("the stored copy of the object cannot be decoded".into())
        })?;
        *obj.meta_mut() = self.meta.clone();
        Ok(obj)
    }
}

/// The object as JSON without its `null` members: the CRD types write every absent optional
/// field as `null`, which is most of a typical spec's bytes. Kept only when it decodes to the
/// same object (a `null` inside free-form JSON can mean something); else the plain JSON.
fn pack<K: FrontEnd>(obj: &K) -> serde_json::Result<Vec<u8>> {
    let plain = serde_json::to_value(obj)?;
    let mut compact = plain.clone();
    drop_nulls(&mut compact);
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

impl<K: FrontEnd> Resource for Stored<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.meta
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.meta
    }
}

/// The watch decodes the apiserver's JSON as the front-end's type, then packs it.
impl<'de, K: FrontEnd> Deserialize<'de> for Stored<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        K::deserialize(d).map(Stored::new)
    }
}

// Derives would require `K: Clone` / `K: Debug` of the marker too.
impl<K> Clone for Stored<K> {
    fn clone(&self) -> Self {
        Stored {
            meta: self.meta.clone(),
            body: self.body.clone(),
            kind: PhantomData,
        }
    }
}

/// Metadata only: the body is not logged.
impl<K> fmt::Debug for Stored<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stored")
            .field("namespace", &self.meta.namespace)
            .field("name", &self.meta.name)
            .field("bytes", &self.body.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kes::crd::ExternalSecret;
    use serde_json::json;

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
        let stored: Stored<ExternalSecret> = serde_json::from_value(kes()).unwrap();
        let mut want: ExternalSecret = serde_json::from_value(kes()).unwrap();
        want.trim();
        let got = stored.decode().unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::to_value(&want).unwrap()
        );
        // What the scheduler and triggers read needs no decoding.
        assert_eq!(stored.meta().uid.as_deref(), Some("u-1"));
        assert_eq!(stored.meta().generation, Some(2));
        assert!(stored.meta().managed_fields.is_none());
        assert!(!String::from_utf8_lossy(&stored.body).contains("last-applied"));
    }

    #[test]
    fn absent_fields_are_not_kept_as_nulls_unless_they_mean_something() {
        let stored: Stored<ExternalSecret> = serde_json::from_value(kes()).unwrap();
        let body = String::from_utf8_lossy(&stored.body).to_string();
        assert!(!body.contains("null"), "{body}");
        // KES's free-form `template`: a null there is the user's, and it is kept.
        let mut o = kes();
        o["spec"]["template"] = json!({"metadata": {"labels": {"x": null}}});
        let stored: Stored<ExternalSecret> = serde_json::from_value(o.clone()).unwrap();
        let want: ExternalSecret = serde_json::from_value(o).unwrap();
        assert_eq!(
            serde_json::to_value(stored.decode().unwrap().spec).unwrap(),
            serde_json::to_value(want.spec).unwrap()
        );
    }

    #[test]
    fn a_broken_body_gives_an_error_without_its_bytes() {
        let mut stored: Stored<ExternalSecret> = serde_json::from_value(kes()).unwrap();
        stored.body = br#"{"spec": "hunter2"}"#.to_vec().into_boxed_slice();
        let e = stored.decode().unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(!format!("{stored:?}").contains("hunter2"));
    }
}
