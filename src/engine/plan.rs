//! Pure: the Vault reads a `SyncSpec` needs, and the poll phase they give the object.

use crate::controller::schedule::phase_key;
use crate::vault::ReadKey;

use super::SyncSpec;

/// The reads, in merge order; the reader coalesces duplicates.
pub fn reads(spec: &SyncSpec) -> impl Iterator<Item = ReadKey> + '_ {
    spec.sources.iter().map(|s| s.read().clone())
}

/// The object's poll phase: from its first read, so objects sharing a path poll together and
/// one coalesced read serves them all.
pub fn phase(spec: &SyncSpec) -> u64 {
    spec.sources
        .first()
        .map_or(0, |s| phase_key(&s.read().api_path))
}
