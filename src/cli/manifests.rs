//! Manifests from files and directories: every YAML document, with where it came from.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

pub struct Doc {
    pub file: String,
    pub value: Value,
}

impl Doc {
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.value["apiVersion"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// The namespace the object would be applied to (`default` when it names none).
    pub fn namespace(&self) -> &str {
        self.value["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
    }

    /// `Kind namespace/name` (cluster-scoped kinds without a namespace).
    pub fn object(&self) -> String {
        match self.kind() {
            "ClusterSecretStore" => format!("{} {}", self.kind(), self.name()),
            kind => format!("{kind} {}/{}", self.namespace(), self.name()),
        }
    }
}

/// Every document under `paths` (directories: their `.yaml`/`.yml`/`.json` files, sorted), or
/// per file why it could not be read.
pub fn load(paths: &[PathBuf]) -> (Vec<Doc>, Vec<(String, String)>) {
    let mut docs = Vec::new();
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files, &mut errors);
    }
    for file in files {
        let name = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push((name, format!("cannot read: {e}")));
                continue;
            }
        };
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            match serde_yaml::Value::deserialize(doc) {
                Ok(serde_yaml::Value::Null) => {}
                Ok(v) => match serde_json::to_value(v) {
                    Ok(value) => docs.push(Doc {
                        file: name.clone(),
                        value,
                    }),
                    Err(e) => errors.push((name.clone(), format!("document {}: {e}", i + 1))),
                },
                Err(e) => {
                    // The parser cannot resume after a syntax error: the rest of the file is
                    // unread (and its iterator would repeat the error forever).
                    errors.push((name.clone(), format!("document {}: not YAML: {e}", i + 1)));
                    break;
                }
            }
        }
    }
    (docs, errors)
}

fn collect(p: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<(String, String)>) {
    if !p.is_dir() {
        files.push(p.to_path_buf());
        return;
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(p) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            errors.push((p.display().to_string(), format!("cannot read: {e}")));
            return;
        }
    };
    entries.sort();
    for e in entries {
        let manifest = e
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| matches!(x, "yaml" | "yml" | "json"));
        if e.is_dir() || manifest {
            collect(&e, files, errors);
        }
    }
}
