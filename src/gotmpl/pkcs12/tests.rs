//! ESO's PKCS #12 cases (tests/fixtures/eso-pkcs12), through the template as a user writes it.

use serde_json::json;

use crate::gotmpl::{binary, render, Limits};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/eso-pkcs12/");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}{name}")).expect("fixture")
}

/// The archive a writer template renders, decoded from its base64.
fn written(template: &str, data: &serde_json::Value) -> Vec<u8> {
    use base64::Engine;
    let b64 = render(template, data, &Limits::default()).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn run(template: &str, secret: &str) -> Result<String, crate::gotmpl::Error> {
    render(template, &json!({ "secret": secret }), &Limits::default())
}

#[test]
fn extracts_key_and_cert_from_esos_archives() {
    for (archive, key_tpl, cert_tpl) in [
        (
            "nopass.p12.b64",
            "{{ .secret | b64dec | pkcs12key }}",
            "{{ .secret | b64dec | pkcs12cert }}",
        ),
        (
            "pass-123456.p12.b64",
            r#"{{ .secret | b64dec | pkcs12keyPass "123456" }}"#,
            r#"{{ .secret | b64dec | pkcs12certPass "123456" }}"#,
        ),
    ] {
        let secret = fixture(archive);
        let secret = secret.trim();
        assert_eq!(
            run(key_tpl, secret).unwrap(),
            fixture("key.pem"),
            "{archive}"
        );
        assert_eq!(
            run(cert_tpl, secret).unwrap(),
            fixture("cert.pem"),
            "{archive}"
        );
    }
}

#[test]
fn reads_gos_modern_archive_with_its_ca() {
    let secret = fixture("go-modern-ca.p12.b64");
    let secret = secret.trim();
    let key = run(
        r#"{{ .secret | b64dec | pkcs12keyPass "password" }}"#,
        secret,
    )
    .unwrap();
    assert_eq!(key, fixture("key.pem"));
    // Two certificates that do not chain: ESO keeps the archive's order.
    let certs = run(
        r#"{{ .secret | b64dec | pkcs12certPass "password" }}"#,
        secret,
    )
    .unwrap();
    assert_eq!(certs, fixture("cert.pem") + &fixture("other-cert.pem"));
}

#[test]
fn a_wrong_password_is_an_error_without_the_archive() {
    let secret = fixture("pass-123456.p12.b64");
    for f in ["pkcs12keyPass", "pkcs12certPass"] {
        let e = run(
            &format!(r#"{{{{ .secret | b64dec | {f} "wrong" }}}}"#),
            secret.trim(),
        )
        .unwrap_err();
        assert!(e.message.contains("unable to decode pkcs12"), "{e}");
        assert!(!e.message.contains("MII"), "{e}");
    }
    let e = run("{{ .secret | pkcs12key }}", "garbage-value-123").unwrap_err();
    assert!(e.message.contains("unable to decode pkcs12"), "{e}");
    assert!(!e.message.contains("garbage-value"), "{e}");
}

#[test]
fn full_pem_to_pkcs12_round_trips_through_the_readers() {
    let data = json!({
        "cert": fixture("cert.pem") + "\n" + &fixture("other-cert.pem"),
        "key": fixture("key.pem"),
    });
    let limits = Limits::default();
    for (tpl, pass, certs) in [
        ("{{ fullPemToPkcs12 .cert .key }}", "", 2),
        (r#"{{ fullPemToPkcs12Pass .cert .key "s3" }}"#, "s3", 2),
        ("{{ pemToPkcs12 .cert .key }}", "", 1),
        (r#"{{ pemToPkcs12Pass .cert .key "s3" }}"#, "s3", 1),
    ] {
        let b64 = render(tpl, &data, &limits).unwrap();
        let back = json!({ "p": b64, "pass": pass });
        let key = render("{{ .p | b64dec | pkcs12keyPass .pass }}", &back, &limits).unwrap();
        assert_eq!(key, fixture("key.pem"), "{tpl}");
        let got = render("{{ .p | b64dec | pkcs12certPass .pass }}", &back, &limits).unwrap();
        let want = if certs == 2 {
            fixture("cert.pem") + &fixture("other-cert.pem")
        } else {
            fixture("cert.pem")
        };
        assert_eq!(got, want, "{tpl}");
    }
}

#[test]
fn our_archive_opens_with_openssl_when_it_is_installed() {
    let Ok(out) = std::process::Command::new("openssl")
        .arg("version")
        .output()
    else {
        return;
    };
    if !out.status.success() {
        return;
    }
    let data = json!({ "cert": fixture("cert.pem"), "key": fixture("key.pem") });
    let der = written(r#"{{ pemToPkcs12Pass .cert .key "s3" }}"#, &data);
    let path = std::env::temp_dir().join(format!("ves-pkcs12-{}.p12", std::process::id()));
    std::fs::write(&path, der).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-nodes", "-passin", "pass:s3", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("BEGIN CERTIFICATE") && text.contains("BEGIN PRIVATE KEY"));
}

#[test]
fn truststore_holds_every_certificate() {
    let data = json!({ "c": fixture("cert.pem") + &fixture("other-cert.pem") });
    let der = written(r#"{{ pemTruststoreToPKCS12Pass .c "s3" }}"#, &data);
    let a = p12_keystore::Pkcs12Archive::from_pkcs12(&der, "s3").unwrap();
    assert_eq!(a.certs.len(), 2);
    assert!(a.certs.iter().all(|c| c.trusted));
    assert!(a.keys.is_empty());
}

#[test]
fn binary_values_survive_b64dec_and_b64enc() {
    let raw = [0x30u8, 0x82, 0xff, 0x00, b'a'];
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let out = run("{{ .secret | b64dec | b64enc }}", &b64).unwrap();
    assert_eq!(out, b64);
    let out = run("{{ .secret | b64dec }}", &b64).unwrap();
    assert_eq!(&*binary::bytes(&out), &raw);
    assert_eq!(run("{{ .secret | b64dec | len }}", &b64).unwrap(), "5");
}
