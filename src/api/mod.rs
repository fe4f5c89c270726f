//! API front-ends: each owns its CRD types, translates one object into the engine's `SyncSpec`,
//! and owns its status shape and compatibility metrics. The engine knows neither API.

pub mod condition;
pub mod crds;
pub mod eso;
pub mod kes;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The controller ownerReference to `obj` that our Secrets carry (and are recognised by).
pub fn owner_of<K: kube::Resource<DynamicType = ()>>(
    obj: &K,
) -> Result<OwnerReference, crate::error::Error> {
    obj.controller_owner_ref(&())
        .ok_or_else(|| crate::error::Error::InvalidSpec("the ExternalSecret has no uid yet".into()))
}
