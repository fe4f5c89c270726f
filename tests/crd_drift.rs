//! `crds/` and the chart's CRDs must be exactly what the Rust types generate (run `cargo run
//! --bin crdgen`).

#[test]
fn crds_match_the_types() {
    let crds = vault_external_secrets::api::crds::all().unwrap();
    assert_eq!(crds.len(), 6);
    for (file, generated) in crds {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{file} differs from the Rust types: run `cargo run --bin crdgen` and commit the result"
        );
    }
}
