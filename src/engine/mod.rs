//! The API-independent sync pipeline. A front-end (`api::kes`) translates its object into a
//! `SyncSpec`; then, for any API:
//!
//! ```text
//! SyncSpec ─► find: listings expanded into reads (ESO `find`)
//!          ─► plan: the Vault reads ─► fetch: coalesced reads (vault::KvReader)
//!          ─► render: desired Secret (pure) ─► write: decide create/replace/unchanged, do it
//! ```
//!
//! `fetch_and_render` is the one path from a spec to a desired Secret, used by the controller
//! and by every test that needs it.

pub mod eso_values;
mod fetch;
pub mod find;
pub mod keys;
pub mod plan;
pub mod render;
mod spec;
pub mod templating;
pub mod write;

pub use fetch::{fetch, fetch_and_render, inputs_digest, Fetched};
pub use render::{render, DesiredSecret};
pub use spec::{
    Creation, Decoding, Dialect, Find, KeyRules, Rewrite, Source, SyncSpec, Target, WritePolicy,
};
pub use write::{decide_write, Write};
