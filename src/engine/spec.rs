//! What one object asks of the engine, whatever API it came from: which Vault secrets to read
//! and how each maps into the Secret, and what Secret to produce and how to write it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub use super::find::Find;
pub use super::keys::{KeyRules, Rewrite};
pub use super::templating::TemplateSpec;
use crate::vault::{AuthKey, ReadKey};

/// How a front-end's values are picked and turned into bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// KES: a property is an exact field or a dotted path; non-strings JSON-encoded (`null`
    /// too); `isBinary` base64-decodes.
    Kes { is_binary: bool },
    /// ESO: a property is an exact field or a gjson path; `null` is empty; then the
    /// `decodingStrategy`.
    Eso { decoding: Decoding },
}

/// ESO's `decodingStrategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoding {
    None,
    Base64,
    Base64Url,
    /// Base64, else base64url, else the value as it is.
    Auto,
}

/// Where one piece of the Secret comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Every top-level field of a Vault secret (KES `dataFrom`, ESO `dataFrom[].extract`) — or,
    /// with a property (ESO), of the object at that property.
    All {
        read: ReadKey,
        /// The key as the manifest wrote it, for messages.
        key: String,
        property: Option<String>,
        dialect: Dialect,
        /// A secret missing in Vault adds nothing instead of failing the sync (ESO
        /// `deletionPolicy: Delete/Merge`).
        optional: bool,
        /// How field names become Secret keys (ESO `rewrite`, `conversionStrategy`).
        keys: KeyRules,
    },
    /// The secrets a listing finds (ESO `dataFrom[].find`): expanded into `One` sources by
    /// `find::expand` before anything else is read.
    Find(Box<Find>),
    /// One Secret key (KES and ESO `data[]`).
    One {
        read: ReadKey,
        key: String,
        name: String,
        property: Option<String>,
        dialect: Dialect,
        optional: bool,
    },
}

impl Source {
    /// The read a source needs first (a `Find`'s: the listing of its folder).
    pub fn read(&self) -> &ReadKey {
        match self {
            Source::All { read, .. } | Source::One { read, .. } => read,
            Source::Find(f) => &f.list,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            Source::All { key, .. } | Source::One { key, .. } => key,
            Source::Find(f) => &f.at,
        }
    }

    pub fn optional(&self) -> bool {
        match self {
            Source::All { optional, .. } | Source::One { optional, .. } => *optional,
            Source::Find(f) => f.optional,
        }
    }
}

/// Whether and how the Secret is created and whose it is (ESO's `creationPolicy`; KES is
/// `Owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creation {
    /// Created with a controller ownerReference; ours only while it carries it.
    Owner,
    /// Created without an ownerReference; ours while it carries our managed label.
    Orphan,
    /// Never created: our keys are written into an existing Secret, others' are kept.
    Merge,
    /// Nothing is written.
    None,
}

/// How the Secret meets the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct WritePolicy {
    pub creation: Creation,
    /// Created immutable (ESO `target.immutable`).
    pub immutable: bool,
    /// No data at all (every optional source missing in Vault): delete the Secret (ESO
    /// `deletionPolicy: Delete`, `Owner` only).
    pub delete_when_empty: bool,
    /// Annotate the Secret with ESO's `reconcile.external-secrets.io/data-hash`.
    pub data_hash: bool,
}

impl WritePolicy {
    /// KES's: create and own, replace our data.
    pub fn owner() -> Self {
        WritePolicy {
            creation: Creation::Owner,
            immutable: false,
            delete_when_empty: false,
            data_hash: false,
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
    /// The label that marks the Secret as ours; the API's Secret watch selects on it.
    pub managed_label: (String, String),
    pub policy: WritePolicy,
    /// ESO `target.template`: applied to the fetched data before the Secret is built.
    pub template: Option<TemplateSpec>,
}

/// One object's sync, API-independent. `sources` are in merge order: a later one wins.
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSpec {
    /// Who reads: the Vault identity whose token is used.
    pub identity: AuthKey,
    pub sources: Vec<Source>,
    pub target: Target,
}
