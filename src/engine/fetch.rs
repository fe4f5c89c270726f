//! The one IO path from a spec to a desired Secret: expand finds into reads, read every planned
//! key (coalesced), then render.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::vault::KvReader;

use super::{find, plan, render, DesiredSecret, SyncSpec};

pub async fn fetch_and_render(kv: &KvReader, spec: &SyncSpec) -> Result<DesiredSecret, Error> {
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
    render::render(spec, &fetched)
}
