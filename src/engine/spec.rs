//! What one object asks of the engine, whatever API it came from: which Vault secrets to read
//! and how each maps into the Secret, and what Secret to produce.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::vault::{AuthKey, ReadKey};

/// Where one piece of the Secret comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// All top-level fields of a Vault secret (KES `dataFrom`, `dataFromWithOptions`).
    All {
        read: ReadKey,
        /// The key as the manifest wrote it, for messages.
        key: String,
        is_binary: bool,
    },
    /// One Secret key (KES `data[]`).
    One {
        read: ReadKey,
        key: String,
        name: String,
        property: Option<String>,
        is_binary: bool,
    },
}

impl Source {
    pub fn read(&self) -> &ReadKey {
        match self {
            Source::All { read, .. } | Source::One { read, .. } => read,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Source::All { key, .. } | Source::One { key, .. } => key,
        }
    }
}

/// The Secret to produce, apart from the values read from Vault.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub name: String,
    pub namespace: String,
    pub type_: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Literal keys applied after the Vault data (they win).
    pub literal_data: BTreeMap<String, Vec<u8>>,
    /// The object the Secret belongs to (garbage collection, ownership check).
    pub owner: OwnerReference,
}

/// One object's sync, API-independent. `sources` are in merge order: a later one wins.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSpec {
    /// Who reads: the Vault identity whose token is used.
    pub identity: AuthKey,
    pub sources: Vec<Source>,
    pub target: Target,
}
