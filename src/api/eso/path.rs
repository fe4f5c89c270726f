//! Pure: ESO's Vault path rules (`buildPath` of its Vault provider) and Go durations.

use crate::error::Error;

/// The API path ESO reads for `key` under a store with mount `store_path` (optional) and KV
/// `version` (1 or 2):
/// - with a store path, the key is relative to it (a key that already starts with it has it
///   stripped, then a leading `data/` on v2), and v2 puts `data/` after the mount;
/// - without one, v2 puts `data/` after the first segment unless the key has `/data/`.
///
/// Empty segments are dropped (`/dev/app` is `dev/app`, as Vault reads it), `.` and `..`
/// refused, the rest URL-encoded. `version` becomes `?version=`.
pub fn api_path(
    store_path: Option<&str>,
    kv_version: u8,
    key: &str,
    version: Option<&str>,
) -> Result<String, Error> {
    let invalid = |why: &str| Error::InvalidSpec(format!("remoteRef.key {key:?}: {why}"));
    let built = match store_path.filter(|p| !p.is_empty()) {
        Some(mount) => {
            let mut rest = key;
            if let Some(r) = rest.strip_prefix(&format!("{mount}/")) {
                rest = r;
                if kv_version == 2 {
                    rest = rest.strip_prefix("data/").unwrap_or(rest);
                }
            }
            let mut parts = vec![mount];
            if kv_version == 2 {
                parts.push("data");
            }
            parts.push(rest);
            parts.join("/")
        }
        None if kv_version == 2 && !key.contains("/data/") => match key.split_once('/') {
            Some((first, rest)) => format!("{first}/data/{rest}"),
            None => format!("{key}/data"),
        },
        None => key.to_string(),
    };
    let segments: Vec<&str> = built.split('/').filter(|s| !s.is_empty()).collect();
    if segments.iter().any(|s| *s == "." || *s == "..") {
        return Err(invalid("'.' and '..' path segments are not allowed"));
    }
    let min = if kv_version == 2 { 3 } else { 2 };
    if segments.len() < min {
        return Err(invalid("needs a mount and a secret path"));
    }
    let mut path = segments
        .iter()
        .map(|s| urlencoding::encode(s).into_owned())
        .collect::<Vec<_>>()
        .join("/");
    if let Some(v) = version.filter(|v| !v.is_empty()) {
        if kv_version == 1 {
            return Err(invalid("version needs a KV v2 store"));
        }
        path.push_str("?version=");
        path.push_str(&urlencoding::encode(v));
    }
    Ok(path)
}

/// The path of a v2 secret's metadata (ESO `metadataPolicy: Fetch`, its `buildMetadataPath`):
/// `<store path>/metadata/<key>`, or without a store path the key with its first `data`
/// replaced by `metadata` (a key without one is not a v2 path).
pub fn metadata_path(store_path: Option<&str>, kv_version: u8, key: &str) -> Result<String, Error> {
    let invalid = |why: &str| Error::InvalidSpec(format!("remoteRef.key {key:?}: {why}"));
    if kv_version != 2 {
        return Err(invalid(
            "cannot perform metadata fetch operations with kv version v1",
        ));
    }
    let built = match store_path.filter(|p| !p.is_empty()) {
        Some(mount) => format!("{mount}/metadata/{key}"),
        None if key.contains("data") => key.replacen("data", "metadata", 1),
        None => return Err(invalid("provided Path isn't a valid kv v2 path")),
    };
    // Already in its final form: encoded and checked as a v1 path would be.
    api_path(None, 1, &built, None)
}

/// A Go `time.Duration` string (`1h`, `15m30s`, `1.5h`, `500ms`, `0`).
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 1h, 15m30s, 10s)");
    let s = s.trim();
    if s == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    std::time::Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Where a `find` works (ESO's `listSecrets` / `buildMetadataPath` / `buildPath`), all under the
/// store's path, which a find needs: the listing of the folder searched, what the names found
/// there start with, and the prefixes a found name's data and (v2) metadata are read under.
pub struct FindPaths {
    pub list: String,
    pub names_from: String,
    pub data_prefix: String,
    pub metadata_prefix: Option<String>,
}

pub fn find_paths(
    store_path: Option<&str>,
    kv_version: u8,
    find_path: Option<&str>,
) -> Result<FindPaths, String> {
    let invalid = |why: &str| why.to_string();
    let encode = |p: &str| -> Result<String, String> {
        let segments: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err(invalid("'.' and '..' path segments are not allowed"));
        }
        Ok(segments
            .iter()
            .map(|s| format!("{}/", urlencoding::encode(s)))
            .collect())
    };
    let mount = encode(store_path.unwrap_or_default())?;
    if mount.is_empty() {
        return Err(invalid(
            "needs the store's spec.provider.vault.path (the KV mount) to list under",
        ));
    }
    let folder = encode(find_path.unwrap_or_default())?;
    let names_from = find_path
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| format!("{s}/"))
        .collect();
    Ok(match kv_version {
        1 => FindPaths {
            list: format!("{mount}{folder}"),
            names_from,
            data_prefix: mount,
            metadata_prefix: None,
        },
        _ => FindPaths {
            list: format!("{mount}metadata/{folder}"),
            names_from,
            data_prefix: format!("{mount}data/"),
            metadata_prefix: Some(format!("{mount}metadata/")),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn build_path_as_eso_documents_it() {
        // The examples of ESO's `buildPath` comment, plus encoding and versions.
        let cases: &[(Option<&str>, u8, &str, &str)] = &[
            (Some("secret/path"), 2, "foo", "secret/path/data/foo"),
            (Some("secret/path"), 1, "foo", "secret/path/foo"),
            (
                Some("secret/path"),
                2,
                "secret/path/foo",
                "secret/path/data/foo",
            ),
            (
                Some("secret/path"),
                2,
                "secret/path/data/foo",
                "secret/path/data/foo",
            ),
            (Some("secret/path"), 1, "secret/path/foo", "secret/path/foo"),
            (None, 2, "secret/path/foo", "secret/data/path/foo"),
            (
                Some("secret"),
                2,
                "/dev/package.json",
                "secret/data/dev/package.json",
            ),
            (None, 2, "secret/path/data/foo", "secret/path/data/foo"),
            (None, 1, "secret/path/foo", "secret/path/foo"),
            (Some("secret"), 2, "my app/ü", "secret/data/my%20app/%C3%BC"),
        ];
        for (store, v, key, want) in cases {
            assert_eq!(
                &api_path(*store, *v, key, None).unwrap(),
                want,
                "{store:?} v{v} {key}"
            );
        }
        assert_eq!(
            api_path(Some("secret"), 2, "app", Some("3")).unwrap(),
            "secret/data/app?version=3"
        );
    }

    #[test]
    fn bad_keys() {
        for (store, v, key) in [
            (Some("secret"), 2, "../sys/x"),
            (None, 2, "secret"),
            (None, 1, "secret"),
            (None, 2, "secret/./x"),
        ] {
            assert!(api_path(store, v, key, None).is_err(), "{store:?} {key}");
        }
        assert!(api_path(Some("kv"), 1, "a", Some("2")).is_err());
    }

    #[test]
    fn metadata_paths() {
        assert_eq!(
            metadata_path(Some("kv"), 2, "app/x").unwrap(),
            "kv/metadata/app/x"
        );
        assert_eq!(
            metadata_path(None, 2, "kv/data/app").unwrap(),
            "kv/metadata/app"
        );
        assert!(metadata_path(None, 2, "kv/app").is_err());
        assert!(metadata_path(Some("kv"), 1, "app").is_err());
    }

    #[test]
    fn go_durations() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("1h", Duration::from_secs(3600)),
            ("15m30s", Duration::from_secs(930)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("10s", Duration::from_secs(10)),
        ];
        for (s, want) in cases {
            assert_eq!(go_duration(s).unwrap(), *want, "{s}");
        }
        for s in ["", "1", "h", "-1s", "1d", "1x"] {
            assert!(go_duration(s).is_err(), "{s}");
        }
    }
}
