//! Pure: how ESO turns Vault values into Secret bytes, so its manifests produce the same
//! Secrets here — property lookup (exact field, else a gjson path), value encoding (Go's
//! `encoding/json`), `decodingStrategy`, and the `data-hash` annotation.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use k8s_openapi::ByteString;
use md5::Md5;
use serde_json::{Map, Value};
use sha3::{Digest, Sha3_224};
use std::collections::BTreeMap;

use super::Decoding;

/// Go's `base64.StdEncoding` / `URLEncoding`: padded, and lenient on trailing bits.
const GO_CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_allow_trailing_bits(true)
    .with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
const GO_STD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, GO_CONFIG);
const GO_URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, GO_CONFIG);

/// Go's `json.Marshal`: sorted keys (serde_json's map is sorted too), compact, and `<`, `>`,
/// `&`, U+2028, U+2029 escaped. Those characters can only occur inside strings, so escaping
/// the serialized text is the same as escaping each string.
pub fn go_json(v: &Value) -> String {
    let text = v.to_string();
    if !text.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// ESO's `GetByteValue`: strings as they are, `null` empty, numbers and booleans as text,
/// objects and arrays as Go's JSON.
pub fn value_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Null => Vec::new(),
        Value::Bool(b) => b.to_string().into_bytes(),
        Value::Number(n) => n.to_string().into_bytes(),
        other => go_json(other).into_bytes(),
    }
}

/// A property of a secret: an exact top-level field wins (ESO keeps that for compatibility),
/// else a gjson path over the secret's JSON (`a.b`, `a.0`, `a\.b`, `#`, queries).
pub fn select(data: &Map<String, Value>, property: &str) -> Option<Vec<u8>> {
    if let Some(v) = data.get(property) {
        return Some(value_bytes(v));
    }
    let json = go_json(&Value::Object(data.clone()));
    let found = gjson::get(&json, property);
    if !found.exists() {
        return None;
    }
    Some(match found.kind() {
        gjson::Kind::String => found.str().as_bytes().to_vec(),
        gjson::Kind::Null => Vec::new(),
        _ => found.json().as_bytes().to_vec(),
    })
}

/// ESO's `decodingStrategy`. Errors never quote the value.
pub fn decode(raw: Vec<u8>, strategy: Decoding) -> Result<Vec<u8>, String> {
    // Go's decoders skip CR and LF.
    let strip = |b: &[u8]| -> Vec<u8> {
        b.iter()
            .copied()
            .filter(|c| *c != b'\r' && *c != b'\n')
            .collect()
    };
    match strategy {
        Decoding::None => Ok(raw),
        Decoding::Base64 => GO_STD
            .decode(strip(&raw))
            .map_err(|_| "decodingStrategy is Base64 but the value is not valid base64".into()),
        Decoding::Base64Url => GO_URL.decode(strip(&raw)).map_err(|_| {
            "decodingStrategy is Base64URL but the value is not valid base64url".into()
        }),
        Decoding::Auto => Ok(GO_STD
            .decode(strip(&raw))
            .or_else(|_| GO_URL.decode(strip(&raw)))
            .unwrap_or(raw)),
    }
}

/// Go's `fmt.Sprintf("%+v", map[string][]byte)`: `map[a:[104 105] b:[]]`, keys sorted.
fn go_format(data: &BTreeMap<String, ByteString>) -> String {
    let mut s = String::from("map[");
    for (i, (k, v)) in data.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(k);
        s.push_str(":[");
        let bytes: Vec<String> = v.0.iter().map(u8::to_string).collect();
        s.push_str(&bytes.join(" "));
        s.push(']');
    }
    s.push(']');
    s
}

/// The `reconcile.external-secrets.io/data-hash` value ESO (since it moved to SHA3-224) writes.
pub fn data_hash(data: &BTreeMap<String, ByteString>) -> String {
    object_hash(&go_format(data))
}

/// Whether `annotation` is the data hash of `data` as any ESO version wrote it (MD5 before
/// SHA3-224), so a Secret ESO wrote is adopted without a write.
pub fn is_data_hash(annotation: &str, data: &BTreeMap<String, ByteString>) -> bool {
    let text = go_format(data);
    annotation == hex(&Sha3_224::digest(text.as_bytes()))
        || annotation == hex(&Md5::digest(text.as_bytes()))
}

/// ESO's `ObjectHash` of an already formatted text: SHA3-224, hex.
pub fn object_hash(text: &str) -> String {
    hex(&Sha3_224::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn property_lookup_as_eso() {
        let d = obj(json!({
            "a.b": "exact", "a": {"b": "nested", "n": 1.5, "t": true, "z": null,
            "o": {"y": "<&>", "x": 1}}, "list": ["p", "q"]
        }));
        let cases: &[(&str, Option<&str>)] = &[
            ("a.b", Some("exact")),
            ("a\\.b", Some("exact")),
            ("a.n", Some("1.5")),
            ("a.t", Some("true")),
            ("a.z", Some("")),
            ("a.o", Some(r#"{"x":1,"y":"\u003c\u0026\u003e"}"#)),
            ("list.1", Some("q")),
            ("list.#", Some("2")),
            ("missing", None),
            ("a.missing", None),
        ];
        for (p, want) in cases {
            let got = select(&d, p).map(|b| String::from_utf8(b).unwrap());
            assert_eq!(got.as_deref(), *want, "{p}");
        }
    }

    #[test]
    fn values_as_go_encodes_them() {
        assert_eq!(value_bytes(&json!("s")), b"s");
        assert_eq!(value_bytes(&json!(null)), b"");
        assert_eq!(value_bytes(&json!(3)), b"3");
        assert_eq!(
            value_bytes(&json!({"b": 1, "a": "<"})),
            br#"{"a":"\u003c","b":1}"#
        );
        assert_eq!(value_bytes(&json!([1, "x"])), br#"[1,"x"]"#);
    }

    #[test]
    fn decoding_strategies() {
        let d = |s: &str, st| decode(s.as_bytes().to_vec(), st);
        assert_eq!(d("aGk=", Decoding::Base64).unwrap(), b"hi");
        assert_eq!(d("aGk=\n", Decoding::Base64).unwrap(), b"hi");
        assert!(d("aGk", Decoding::Base64).is_err(), "Go requires padding");
        assert_eq!(d("-_8=", Decoding::Base64Url).unwrap(), vec![0xfb, 0xff]);
        assert_eq!(d("-_8=", Decoding::Auto).unwrap(), vec![0xfb, 0xff]);
        assert_eq!(d("not base64!", Decoding::Auto).unwrap(), b"not base64!");
        assert_eq!(d("x", Decoding::None).unwrap(), b"x");
        let e = d("sec%ret", Decoding::Base64).unwrap_err();
        assert!(!e.contains("sec"), "no value in the message");
    }

    #[test]
    fn data_hash_matches_go_formatting() {
        let data: BTreeMap<String, ByteString> = [
            ("b".to_string(), ByteString(b"hi".to_vec())),
            ("a".to_string(), ByteString(vec![])),
        ]
        .into();
        assert_eq!(go_format(&data), "map[a:[] b:[104 105]]");
        let h = data_hash(&data);
        assert_eq!(h.len(), 56);
        assert!(is_data_hash(&h, &data));
        let md5 = hex(&Md5::digest(b"map[a:[] b:[104 105]]"));
        assert!(
            is_data_hash(&md5, &data),
            "an older ESO's MD5 hash is accepted"
        );
        assert!(!is_data_hash("0000", &data));
    }
}
