//! `check`: offline validation of manifests, through the same translation the controller runs
//! (so a manifest `check` passes is one the controller accepts, Vault and the cluster aside),
//! plus what only data would otherwise reveal: template syntax, rewrite and find patterns.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Value};

use super::manifests::{load, Doc};
use super::Output;
use crate::api::eso::crd::ExternalSecret as EsoSecret;
use crate::api::eso::store::StoreSpec;
use crate::api::eso::translate::{
    store_kind, store_name, translate as eso_translate, Settings, StoreKind, StoreView,
};
use crate::api::kes::crd::ExternalSecret as KesSecret;
use crate::api::kes::{translate as kes_translate, Defaults};
use crate::config::Config;
use crate::engine::templating::Text;
use crate::engine::{Source, SyncSpec};
use crate::gotmpl;

#[derive(Serialize, Debug, PartialEq)]
pub struct Problem {
    pub file: String,
    pub object: String,
    pub reason: String,
}

pub fn run(files: &[PathBuf], output: Output) -> i32 {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("check: the controller's environment is invalid: {e}");
            return 2;
        }
    };
    let problems = check_files(files, &config);
    match output {
        Output::Text => {
            for p in &problems {
                println!("{}: {}: {}", p.file, p.object, p.reason);
            }
        }
        Output::Json => println!("{}", json!({ "problems": problems })),
    }
    i32::from(!problems.is_empty())
}

pub fn check_files(files: &[PathBuf], config: &Config) -> Vec<Problem> {
    let (docs, unreadable) = load(files);
    let mut problems: Vec<Problem> = unreadable
        .into_iter()
        .map(|(file, reason)| Problem {
            file,
            object: "-".into(),
            reason,
        })
        .collect();
    let stores = stores(&docs);
    for doc in &docs {
        if let Err(reason) = check_doc(doc, &stores, config) {
            problems.push(Problem {
                file: doc.file.clone(),
                object: doc.object(),
                // One line per problem (a pattern's error draws a caret under it).
                reason: reason.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    }
    problems
}

/// The stores among the documents: (kind, namespace or "", name) → spec.
fn stores(docs: &[Doc]) -> BTreeMap<(String, String, String), StoreSpec> {
    docs.iter()
        .filter(|d| d.api_version().starts_with("external-secrets.io/"))
        .filter_map(|d| {
            let ns = match d.kind() {
                "SecretStore" => d.namespace().to_string(),
                "ClusterSecretStore" => String::new(),
                _ => return None,
            };
            let spec = serde_json::from_value(d.value["spec"].clone()).ok()?;
            Some(((d.kind().to_string(), ns, d.name().to_string()), spec))
        })
        .collect()
}

fn check_doc(
    doc: &Doc,
    stores: &BTreeMap<(String, String, String), StoreSpec>,
    config: &Config,
) -> Result<(), String> {
    let with_uid = |v: &Value| {
        let mut v = v.clone();
        v["metadata"]["uid"] = json!("check");
        v["metadata"]["namespace"] = json!(doc.namespace());
        v
    };
    let spec = match (doc.api_version(), doc.kind()) {
        ("kubernetes-client.io/v1", "ExternalSecret") => {
            let es: KesSecret = serde_json::from_value(with_uid(&doc.value))
                .map_err(|e| format!("does not decode: {e}"))?;
            let defaults = Defaults::from_config(config);
            kes_translate(&es, &defaults).map_err(|e| format!("{}: {e}", e.reason()))?
        }
        (v, "ExternalSecret") if v.starts_with("external-secrets.io/") => {
            let es: EsoSecret = serde_json::from_value(with_uid(&doc.value))
                .map_err(|e| format!("does not decode: {e}"))?;
            crate::controller::eso::refresh(&es).map_err(|e| format!("{}: {e}", e.reason()))?;
            eso_spec(&es, doc.namespace(), stores, config)?
        }
        (v, "SecretStore" | "ClusterSecretStore") if v.starts_with("external-secrets.io/") => {
            return check_store(doc, config)
        }
        _ => return Ok(()),
    };
    check_spec(&spec)
}

/// Translated with its store from the documents, or with a stand-in when the store is not
/// among them (it may be in the cluster): everything but the store's own settings is checked.
fn eso_spec(
    es: &EsoSecret,
    ns: &str,
    stores: &BTreeMap<(String, String, String), StoreSpec>,
    config: &Config,
) -> Result<SyncSpec, String> {
    let kind = store_kind(es).map_err(|e| format!("{}: {e}", e.reason()))?;
    let name = store_name(es).unwrap_or_default().to_string();
    let key_ns = match kind {
        StoreKind::SecretStore => ns.to_string(),
        StoreKind::ClusterSecretStore => String::new(),
    };
    let stand_in: StoreSpec = serde_json::from_value(json!({"provider": {"vault": {
        "server": config.vault_addr, "path": "secret", "version": "v2",
        "auth": {"tokenSecretRef": {"name": "stand-in", "key": "token"}}}}}))
    .map_err(|e| e.to_string())?;
    let spec = stores
        .get(&(kind.as_str().to_string(), key_ns, name.clone()))
        .unwrap_or(&stand_in);
    let view = StoreView {
        kind,
        name: &name,
        namespace: (kind == StoreKind::SecretStore).then_some(ns),
        spec,
    };
    let settings = Settings {
        vault_addr: &config.vault_addr,
    };
    eso_translate(es, &view, &settings).map_err(|e| format!("{}: {e}", e.reason()))
}

fn check_store(doc: &Doc, config: &Config) -> Result<(), String> {
    let spec: StoreSpec = serde_json::from_value(doc.value["spec"].clone())
        .map_err(|e| format!("does not decode: {e}"))?;
    let kind = match doc.kind() {
        "ClusterSecretStore" => StoreKind::ClusterSecretStore,
        _ => StoreKind::SecretStore,
    };
    let vault = spec
        .vault()
        .ok_or("no vault provider: this controller serves Vault only")?;
    let view = StoreView {
        kind,
        name: doc.name(),
        namespace: (kind == StoreKind::SecretStore).then_some(doc.namespace()),
        spec: &spec,
    };
    let settings = Settings {
        vault_addr: &config.vault_addr,
    };
    crate::api::eso::identity::identity(vault, &view, doc.namespace(), &settings)
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", e.reason()))
}

/// What the data would otherwise reveal: patterns and templates that do not compile.
fn check_spec(spec: &SyncSpec) -> Result<(), String> {
    for source in &spec.sources {
        match source {
            Source::All { keys, .. } => keys.check()?,
            Source::Find(f) => {
                f.keys.check().map_err(|e| format!("{}: {e}", f.at))?;
                if let Some(re) = &f.name_regexp {
                    crate::engine::keys::regex(re)
                        .map_err(|e| format!("{}: name.regexp: {e}", f.at))?;
                }
            }
            Source::One { .. } => {}
        }
    }
    let Some(t) = &spec.target.template else {
        return Ok(());
    };
    let limits = gotmpl::Limits::default();
    let check = |what: String, text: &str| {
        gotmpl::check(text, &limits).map_err(|e| format!("TemplateFailed: template {what}: {e}"))
    };
    for (i, from) in t.from.iter().enumerate() {
        if let Text::Inline(text) = &from.text {
            check(format!("templateFrom[{i}]"), text)?;
        }
    }
    for (k, text) in &t.data {
        check(format!("data.{k}"), text)?;
    }
    for (k, text) in &t.labels {
        check(format!("metadata.labels.{k}"), text)?;
    }
    for (k, text) in &t.annotations {
        check(format!("metadata.annotations.{k}"), text)?;
    }
    Ok(())
}
