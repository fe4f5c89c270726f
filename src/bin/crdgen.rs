//! Writes every CRD (`crds/`, and the chart's copies) from the Rust types (or prints them with `--stdout`). A test
//! fails when a file drifts from the types.
#![forbid(unsafe_code)]

fn main() -> anyhow::Result<()> {
    let crds = vault_external_secrets::api::crds::all()?;
    if std::env::args().any(|a| a == "--stdout") {
        for (file, yaml) in crds.iter().filter(|(f, _)| f.starts_with("crds/")) {
            print!("---\n# {file}\n{yaml}");
        }
        return Ok(());
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, yaml) in crds {
        let path = root.join(file);
        std::fs::write(&path, yaml)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
