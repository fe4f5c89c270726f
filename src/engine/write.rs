//! The desired Secret meets the cluster: decide (pure) whether to create, replace or leave it,
//! then do it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, ResourceExt};

use crate::error::Error;

use super::{eso_values, Creation, DesiredSecret};

/// ESO's annotation: a hash of the Secret's data.
pub const DATA_HASH_ANNOTATION: &str = "reconcile.external-secrets.io/data-hash";

/// Field manager of our writes (and Event reporter name).
pub const MANAGER: &str = "vault-external-secrets";

/// A write: decided (`Write<Secret>`, the Secret to send) or done (`Write`, what happened).
#[derive(Clone, Debug, PartialEq)]
pub enum Write<S = ()> {
    Create(S),
    /// Replace (PUT) of the existing Secret; its `metadata.resourceVersion` is the one read, so
    /// a concurrent edit makes the write fail rather than be lost.
    Update(S),
    /// Delete the existing Secret (ESO `deletionPolicy: Delete` once Vault has nothing), with
    /// its uid and resourceVersion as preconditions.
    Delete(S),
    Unchanged,
}

impl<S> Write<S> {
    /// What was done, without the payload.
    pub fn kind(&self) -> Write {
        match self {
            Write::Create(_) => Write::Create(()),
            Write::Update(_) => Write::Update(()),
            Write::Delete(_) => Write::Delete(()),
            Write::Unchanged => Write::Unchanged,
        }
    }
}

impl Write {
    /// The `kind` label of the Secret write metric.
    pub fn as_str(&self) -> &'static str {
        match self {
            Write::Create(()) => "create",
            Write::Update(()) => "update",
            Write::Delete(()) => "delete",
            Write::Unchanged => "skipped",
        }
    }
}

/// Whether the existing Secret is ours to change under the creation policy: `Owner` needs our
/// controller ownerReference, `Orphan` our managed label and no other controller, `Merge`
/// writes into a Secret that is by definition someone else's.
fn ours(desired: &DesiredSecret, existing: &Secret) -> bool {
    let owner = existing
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    match desired.policy.creation {
        Creation::Owner => owner.is_some_and(|o| o.uid == desired.owner.uid),
        Creation::Orphan => {
            owner.is_none_or(|o| o.uid == desired.owner.uid)
                && desired
                    .labels
                    .iter()
                    .any(|(k, v)| existing.labels().get(k) == Some(v))
        }
        Creation::Merge | Creation::None => true,
    }
}

/// Compares `desired` with the Secret in the cluster. Labels and annotations others added are
/// kept; under `Owner` and `Orphan` the data is ours alone (a key removed in Vault disappears
/// from the Secret), under `Merge` our keys are written over the existing ones. A Secret that
/// is not ours is never touched, and a type is never changed (it cannot be, in place).
pub fn decide_write(
    desired: &DesiredSecret,
    existing: Option<&Secret>,
) -> Result<Write<Secret>, Error> {
    let policy = &desired.policy;
    if policy.creation == Creation::None {
        return Ok(Write::Unchanged);
    }
    if let Some(existing) = existing {
        if !ours(desired, existing) {
            return Err(Error::SecretNotOwned(desired.name.clone()));
        }
    }
    if policy.delete_when_empty && desired.data.is_empty() {
        return Ok(match existing {
            Some(s) => Write::Delete(s.clone()),
            None => Write::Unchanged,
        });
    }
    let Some(existing) = existing else {
        if policy.creation == Creation::Merge {
            return Err(Error::MergeTargetMissing(desired.name.clone()));
        }
        let mut secret = desired.to_secret();
        if policy.data_hash {
            let hash = eso_values::data_hash(&desired.data);
            secret
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DATA_HASH_ANNOTATION.into(), hash);
        }
        return Ok(Write::Create(secret));
    };
    let existing_type = existing.type_.clone().unwrap_or_else(|| "Opaque".into());
    if existing_type != desired.type_ && policy.creation != Creation::Merge {
        return Err(Error::SecretTypeImmutable {
            name: desired.name.clone(),
            existing: existing_type,
            desired: desired.type_.clone(),
        });
    }
    let mut next = existing.clone();
    let labels = next.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(desired.labels.clone());
    if !desired.annotations.is_empty() {
        let annotations = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.extend(desired.annotations.clone());
    }
    let data = match policy.creation {
        Creation::Merge => {
            let mut merged = existing.data.clone().unwrap_or_default();
            merged.extend(desired.data.clone());
            merged
        }
        _ => desired.data.clone(),
    };
    if policy.data_hash {
        let current = existing.annotations().get(DATA_HASH_ANNOTATION);
        // A hash any ESO version wrote for this very data is kept: adoption without a write.
        if !current.is_some_and(|h| eso_values::is_data_hash(h, &data)) {
            next.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(DATA_HASH_ANNOTATION.into(), eso_values::data_hash(&data));
        }
    }
    next.data = Some(data);
    // Kubernetes folds stringData into data on write; a Secret read back has none.
    next.string_data = None;
    let same_data =
        existing.data.clone().unwrap_or_default() == next.data.clone().unwrap_or_default();
    if same_data
        && next.metadata.labels == existing.metadata.labels
        && next.metadata.annotations == existing.metadata.annotations
    {
        return Ok(Write::Unchanged);
    }
    if existing.immutable == Some(true) {
        return Err(Error::SecretImmutable(desired.name.clone()));
    }
    next.metadata.managed_fields = None;
    Ok(Write::Update(next))
}

/// Makes the cluster match `desired`. `known_absent`: our Secret watch shows none, so create
/// straight away (one request instead of a GET and a POST for every new object); a 409 means
/// one exists that the label-selected watch does not show (someone else's, or not seen yet),
/// so read it and decide as usual. `allow` vets each decision before it is carried out
/// (leadership, write loops). Returns what was done and the Secret's resourceVersion after.
pub async fn apply(
    api: &Api<Secret>,
    desired: &DesiredSecret,
    known_absent: bool,
    allow: impl Fn(&Write<Secret>, Option<&Secret>) -> Result<(), Error>,
) -> Result<(Write, Option<String>), Error> {
    if desired.policy.creation == Creation::None {
        return Ok((Write::Unchanged, None));
    }
    // Only a Secret we would create may be skipped to: a `Merge` target carries no label of
    // ours, and a delete needs the existing object's preconditions.
    let creates = matches!(desired.policy.creation, Creation::Owner | Creation::Orphan)
        && !(desired.policy.delete_when_empty && desired.data.is_empty());
    if known_absent && creates {
        match carry_out(api, desired, None, &allow).await {
            Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {}
            other => return other,
        }
    }
    let existing = api.get_opt(&desired.name).await?;
    carry_out(api, desired, existing.as_ref(), &allow).await
}

async fn carry_out(
    api: &Api<Secret>,
    desired: &DesiredSecret,
    existing: Option<&Secret>,
    allow: &impl Fn(&Write<Secret>, Option<&Secret>) -> Result<(), Error>,
) -> Result<(Write, Option<String>), Error> {
    let decision = decide_write(desired, existing)?;
    allow(&decision, existing)?;
    let pp = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    let rv = match &decision {
        Write::Create(secret) => api.create(&pp, secret).await?.resource_version(),
        Write::Update(secret) => api
            .replace(&desired.name, &pp, secret)
            .await?
            .resource_version(),
        Write::Delete(secret) => {
            let dp = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: secret.uid(),
                    resource_version: secret.resource_version(),
                }),
                ..Default::default()
            };
            match api.delete(&desired.name, &dp).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            None
        }
        Write::Unchanged => existing.and_then(|s| s.resource_version()),
    };
    Ok((decision.kind(), rv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use k8s_openapi::ByteString;

    pub(crate) fn desired() -> DesiredSecret {
        DesiredSecret {
            name: "app".into(),
            namespace: "team".into(),
            type_: "Opaque".into(),
            labels: [(
                "app.kubernetes.io/managed-by".to_string(),
                MANAGER.to_string(),
            )]
            .into(),
            annotations: [("a".to_string(), "1".to_string())].into(),
            data: [("v".to_string(), ByteString(b"value".to_vec()))].into(),
            owner: OwnerReference {
                api_version: "kubernetes-client.io/v1".into(),
                kind: "ExternalSecret".into(),
                name: "app".into(),
                uid: "uid-1".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            },
            policy: crate::engine::WritePolicy::owner(),
        }
    }

    #[test]
    fn write_decisions() {
        let d = desired();
        assert!(matches!(decide_write(&d, None).unwrap(), Write::Create(_)));

        // Ours, identical, with someone else's label: nothing to do.
        let mut same = d.to_secret();
        same.metadata.resource_version = Some("7".into());
        same.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("argocd".into(), "x".into());
        assert_eq!(decide_write(&d, Some(&same)).unwrap(), Write::Unchanged);

        // Value changed in Vault: update, keep the foreign label, keep resourceVersion.
        let mut changed = d.clone();
        changed.data.insert("v".into(), ByteString(b"new".to_vec()));
        match decide_write(&changed, Some(&same)).unwrap() {
            Write::Update(s) => {
                assert_eq!(s.data.unwrap()["v"].0, b"new");
                assert_eq!(s.metadata.labels.unwrap()["argocd"], "x");
                assert_eq!(s.metadata.resource_version.as_deref(), Some("7"));
            }
            other => panic!("{other:?}"),
        }

        // A stray data key someone added: removed (the data is ours).
        let mut stray = same.clone();
        stray
            .data
            .as_mut()
            .unwrap()
            .insert("stray".into(), ByteString(b"x".to_vec()));
        assert!(matches!(
            decide_write(&d, Some(&stray)).unwrap(),
            Write::Update(_)
        ));

        // Our label removed by someone: put back.
        let mut unlabeled = same.clone();
        unlabeled.metadata.labels = None;
        assert!(matches!(
            decide_write(&d, Some(&unlabeled)).unwrap(),
            Write::Update(_)
        ));
        assert_eq!(Write::Update(same).kind().as_str(), "update");
    }

    #[test]
    fn foreign_secrets_are_not_touched() {
        let d = desired();
        let mut foreign = d.to_secret();
        foreign.metadata.owner_references = None;
        assert_eq!(
            decide_write(&d, Some(&foreign)).unwrap_err().reason(),
            "SecretNotOwned"
        );
        let mut other_owner = d.to_secret();
        other_owner.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        assert_eq!(
            decide_write(&d, Some(&other_owner)).unwrap_err().reason(),
            "SecretNotOwned"
        );
        let mut typed = d.to_secret();
        typed.type_ = Some("kubernetes.io/tls".into());
        assert_eq!(
            decide_write(&d, Some(&typed)).unwrap_err().reason(),
            "SecretTypeImmutable"
        );
    }

    fn eso(creation: Creation) -> DesiredSecret {
        let mut d = desired();
        d.labels = [(
            "reconcile.external-secrets.io/managed".to_string(),
            "true".to_string(),
        )]
        .into();
        d.annotations.clear();
        d.policy = crate::engine::WritePolicy {
            creation,
            immutable: false,
            delete_when_empty: false,
            data_hash: true,
        };
        d
    }

    #[test]
    fn eso_creation_policies() {
        // Orphan: created without an ownerReference; ours while it carries our label.
        let d = eso(Creation::Orphan);
        let Write::Create(created) = decide_write(&d, None).unwrap() else {
            panic!()
        };
        assert!(created.metadata.owner_references.is_none());
        let hash = created.annotations()[DATA_HASH_ANNOTATION].clone();
        assert!(eso_values::is_data_hash(&hash, &d.data));
        assert_eq!(decide_write(&d, Some(&created)).unwrap(), Write::Unchanged);
        let mut unlabeled = created.clone();
        unlabeled.metadata.labels = None;
        assert_eq!(
            decide_write(&d, Some(&unlabeled)).unwrap_err().reason(),
            "SecretNotOwned"
        );

        // Merge: never created; our keys over the existing ones, others' kept, no owner.
        let d = eso(Creation::Merge);
        assert_eq!(
            decide_write(&d, None).unwrap_err().reason(),
            "SecretMissing"
        );
        let mut theirs = Secret::default();
        theirs.metadata.name = Some("app".into());
        theirs.data = Some([("keep".to_string(), ByteString(b"mine".to_vec()))].into());
        let Write::Update(merged) = decide_write(&d, Some(&theirs)).unwrap() else {
            panic!()
        };
        let data = merged.data.unwrap();
        assert_eq!(
            (data["keep"].0.as_slice(), data["v"].0.as_slice()),
            (&b"mine"[..], &b"value"[..])
        );
        assert!(merged.metadata.owner_references.is_none());

        // None: nothing, whatever is there.
        assert_eq!(
            decide_write(&eso(Creation::None), None).unwrap(),
            Write::Unchanged
        );
    }

    #[test]
    fn eso_delete_when_empty_and_immutable() {
        let mut d = eso(Creation::Owner);
        d.policy.delete_when_empty = true;
        d.data.clear();
        let existing = d.to_secret();
        assert!(matches!(
            decide_write(&d, Some(&existing)).unwrap(),
            Write::Delete(_)
        ));
        assert_eq!(decide_write(&d, None).unwrap(), Write::Unchanged);
        let mut foreign = existing.clone();
        foreign.metadata.owner_references = None;
        assert_eq!(
            decide_write(&d, Some(&foreign)).unwrap_err().reason(),
            "SecretNotOwned",
            "never deletes what is not ours"
        );

        let mut d = eso(Creation::Owner);
        d.policy.immutable = true;
        let Write::Create(created) = decide_write(&d, None).unwrap() else {
            panic!()
        };
        assert_eq!(created.immutable, Some(true));
        let mut changed = d.clone();
        changed.data.insert("v".into(), ByteString(b"new".to_vec()));
        assert_eq!(
            decide_write(&changed, Some(&created)).unwrap_err().reason(),
            "SecretImmutable"
        );
    }
}
