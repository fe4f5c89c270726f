//! API front-ends: each owns its CRD types, translates one object into the engine's `SyncSpec`,
//! and owns its status shape and compatibility metrics. The engine knows neither API.

pub mod crds;
pub mod eso;
pub mod kes;
