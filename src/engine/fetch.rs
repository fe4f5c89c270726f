//! The one IO path from a spec to a desired Secret: expand finds into reads, read every planned
//! key (coalesced), then render.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::vault::{KvReader, ReadKey, SecretData};

use super::{find, plan, render, DesiredSecret, SyncSpec};

/// What one sync read from Vault, by read.
pub type Fetched = BTreeMap<ReadKey, Arc<SecretData>>;

pub async fn fetch_and_render(kv: &KvReader, spec: &SyncSpec) -> Result<DesiredSecret, Error> {
    let spec = find::expand(kv, spec).await?;
    let fetched = fetch(kv, &spec).await?;
    render::render(&spec, &fetched)
}

/// Reads every key the spec plans. Pass the spec `find::expand` returned, and render with it
/// (finds in a spec not expanded are expanded here too, but their reads cannot be rendered).
pub async fn fetch(kv: &KvReader, spec: &SyncSpec) -> Result<Fetched, Error> {
    render::check_target(&spec.target)?;
    let spec = &*find::expand(kv, spec).await?;
    let mut results = kv.read_all(plan::reads(spec)).await;
    let mut fetched = BTreeMap::new();
    // The first failing key in spec order is reported, so the message is stable between polls.
    for source in &spec.sources {
        match results.remove(source.read()) {
            Some(Ok(data)) => {
                fetched.insert(source.read().clone(), data);
            }
            // Missing in Vault: an optional source adds nothing (ESO deletion policies).
            Some(Err(e)) if source.optional() && e.status() == Some(404) => {}
            Some(Err(e)) => return Err(Error::from_vault(source.key(), e)),
            // Already moved into `fetched` by an earlier source with the same read.
            None => {}
        }
    }
    Ok(fetched)
}

/// A digest of everything a render depends on: the spec (template texts included, as resolved
/// from ConfigMaps and Secrets) and the data read. Equal digests render equal Secrets, so a
/// templated object whose digest has not changed since its last confirmed write is not
/// rendered again.
pub fn inputs_digest(spec: &SyncSpec, fetched: &Fetched) -> [u8; 32] {
    let mut h = Sha256::new();
    // Debug covers every field; it prints no Vault value (the spec holds none).
    h.update(format!("{spec:?}").as_bytes());
    for (read, data) in fetched {
        h.update(format!("{read:?}").as_bytes());
        // Serializing a JSON map cannot fail; an empty digest part would only cost a render.
        h.update(serde_json::to_vec(&data.0).unwrap_or_default());
    }
    h.finalize().into()
}
