//! ESO's PKCS #12 functions: read a key or a certificate chain out of an archive (`pkcs12key`,
//! `pkcs12cert` and their `Pass` forms) and build an archive from PEM (`pemToPkcs12`,
//! `fullPemToPkcs12`, `pemTruststoreToPKCS12` and their `Pass` forms), with go-pkcs12's
//! rules as ESO uses them: one key bag; the first certificate is the leaf; a key comes out as
//! PKCS #8 the way Go re-encodes it; a chain comes out leaf first when it can be ordered; an
//! archive is written with the modern algorithms (PBES2, AES-256-CBC, HMAC-SHA-256) and
//! returned as base64. Errors are fixed texts: no key or certificate part reaches a message.

use base64::Engine;
use p12_keystore::{
    Certificate, KeyStore, KeyStoreEntry, MacAlgorithm, Pkcs12Archive, PrivateKey, PrivateKeyChain,
};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// go-pkcs12's `Modern2023` iteration count, for the encryption key and the MAC.
const ITERATIONS: u32 = 2048;

fn archive(data: &[u8], pass: &str) -> Result<Pkcs12Archive, String> {
    // The crate's error would say which check failed; "wrong password" is what users need and
    // what ESO's message starts with, and nothing of the archive can leak through it.
    Pkcs12Archive::from_pkcs12(data, pass)
        .map_err(|_| "unable to decode pkcs12 (not an archive, or the wrong password)".to_string())
}

/// The archive's one private key as a PKCS #8 `PRIVATE KEY` PEM.
pub fn key_pem(pass: &str, data: &[u8]) -> Result<String, String> {
    let a = archive(data, pass)?;
    let key = match a.keys.as_slice() {
        [] => return Err("the pkcs12 archive holds no private key".into()),
        [one] => &one.key,
        _ => return Err("the pkcs12 archive holds more than one private key".into()),
    };
    if a.certs.is_empty() {
        return Err("the pkcs12 archive holds no certificate".into());
    }
    let der = go_pkcs8(key.as_der())?;
    Ok(pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// The archive's certificates as `CERTIFICATE` PEM blocks, leaf first and then its issuers
/// when the chain can be ordered, else in the archive's order.
pub fn cert_pem(pass: &str, data: &[u8]) -> Result<String, String> {
    let a = archive(data, pass)?;
    match a.keys.len() {
        0 => return Err("the pkcs12 archive holds no private key".into()),
        1 => {}
        _ => return Err("the pkcs12 archive holds more than one private key".into()),
    }
    if a.certs.is_empty() {
        return Err("the pkcs12 archive holds no certificate".into());
    }
    let ders: Vec<&[u8]> = a.certs.iter().map(|c| c.cert.as_der()).collect();
    let ordered = order_chain(&ders).unwrap_or(ders);
    Ok(ordered.iter().map(|d| cert_block(d)).collect())
}

fn cert_block(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// ESO's chain order: a certificate's parent is the first other one whose subject key ID is its
/// authority key ID (absent IDs compare equal, as Go's nil slices do); the one certificate that
/// is nobody's parent is the leaf. None when there are several such or a cycle.
fn order_chain<'a>(ders: &[&'a [u8]]) -> Option<Vec<&'a [u8]>> {
    let ids: Vec<(Vec<u8>, Vec<u8>)> = ders.iter().map(|d| key_ids(d)).collect::<Option<_>>()?;
    let mut parent = vec![None; ders.len()];
    let mut is_parent = vec![false; ders.len()];
    for i in 0..ders.len() {
        if let Some(j) = (0..ders.len()).find(|&j| j != i && ids[i].0 == ids[j].1) {
            parent[i] = Some(j);
            is_parent[j] = true;
        }
    }
    let mut leaves = (0..ders.len()).filter(|&i| !is_parent[i]);
    let mut at = leaves.next();
    if leaves.next().is_some() {
        return None;
    }
    let mut out = Vec::new();
    while let Some(i) = at {
        if out.len() == ders.len() {
            return None;
        }
        out.push(ders[i]);
        at = parent[i];
    }
    if out.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// A certificate's (authority key ID, subject key ID), empty when absent.
fn key_ids(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    use x509_cert::der::Decode;
    use x509_cert::ext::pkix::{AuthorityKeyIdentifier, SubjectKeyIdentifier};
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let tbs = cert.tbs_certificate();
    let aki = tbs
        .get_extension::<AuthorityKeyIdentifier>()
        .ok()?
        .and_then(|(_, a)| a.key_identifier)
        .map(|k| k.as_bytes().to_vec())
        .unwrap_or_default();
    let ski = tbs
        .get_extension::<SubjectKeyIdentifier>()
        .ok()?
        .map(|(_, s)| s.0.as_bytes().to_vec())
        .unwrap_or_default();
    Some((aki, ski))
}

/// A PKCS #8 key as Go's `MarshalPKCS8PrivateKey(ParsePKCS8PrivateKey(der))` writes it.
fn go_pkcs8(der: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |_| "the pkcs12 archive's private key could not be read".to_string();
    let out = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        k.to_pkcs8_der().map_err(bad)?
    } else if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        k.to_pkcs8_der().map_err(bad)?
    } else if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        k.to_pkcs8_der().map_err(bad)?
    } else if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        k.to_pkcs8_der().map_err(bad)?
    } else {
        // Another algorithm (Ed25519, X25519): Go writes back what it read.
        return Ok(der.to_vec());
    };
    Ok(out.as_bytes().to_vec())
}

/// A PEM private key as ESO accepts it (PKCS #1, PKCS #8 or SEC 1), as PKCS #8 DER.
fn pkcs8_from_pem(key: &str) -> Result<Vec<u8>, String> {
    let bad = || "the private key is not a PEM RSA, EC or PKCS #8 key".to_string();
    let block = pem::parse_many(key)
        .map_err(|_| bad())?
        .into_iter()
        .next()
        .ok_or_else(bad)?;
    let der = block.contents();
    let pkcs8 = if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_der(der) {
        k.to_pkcs8_der().map_err(|_| bad())?.as_bytes().to_vec()
    } else if PrivateKey::from_der(der).is_ok() {
        der.to_vec()
    } else if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der().map_err(|_| bad())?.as_bytes().to_vec()
    } else if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der().map_err(|_| bad())?.as_bytes().to_vec()
    } else if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        k.to_pkcs8_der().map_err(|_| bad())?.as_bytes().to_vec()
    } else {
        return Err(bad());
    };
    Ok(pkcs8)
}

/// Every certificate of a PEM text, in order (ESO reads them all, and fails on any other block).
fn certificates(text: &str) -> Result<Vec<Certificate>, String> {
    let bad = || "the certificate is not a PEM X.509 certificate".to_string();
    let blocks = pem::parse_many(text).map_err(|_| bad())?;
    if blocks.is_empty() {
        return Err(bad());
    }
    blocks
        .iter()
        .map(|b| Certificate::from_der(b.contents()).map_err(|_| bad()))
        .collect()
}

fn write(store: &KeyStore, pass: &str) -> Result<String, String> {
    let pfx = store
        .writer(pass)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|_| "unable to write the pkcs12 archive".to_string())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(pfx))
}

/// `pemToPkcs12` (the first certificate only) and `fullPemToPkcs12` (it and the CA certificates
/// after it): an archive of the key and certificates, base64-encoded.
pub fn from_pem(cert: &str, key: &str, pass: &str, full: bool) -> Result<String, String> {
    let mut certs = certificates(cert)?;
    if !full {
        certs.truncate(1);
    }
    let key = PrivateKey::from_der(&pkcs8_from_pem(key)?)
        .map_err(|_| "the private key could not be read".to_string())?;
    // The key and its leaf are linked by this ID (go-pkcs12 uses a thumbprint too).
    let id = {
        use sha2::Digest;
        sha2::Sha256::digest(certs[0].as_der()).to_vec()
    };
    let mut store = KeyStore::new();
    store.add_entry(
        "1",
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(id, key, certs)),
    );
    write(&store, pass)
}

/// `pemTruststoreToPKCS12`: an archive of trusted certificates, base64-encoded.
pub fn truststore(certs: &str, pass: &str) -> Result<String, String> {
    let mut store = KeyStore::new();
    for (i, c) in certificates(certs)?.into_iter().enumerate() {
        store.add_entry(&i.to_string(), KeyStoreEntry::Certificate(c));
    }
    write(&store, pass)
}

#[cfg(test)]
mod tests;
