//! Pure: what a Vault/OpenBao audit-device entry says about a KV write, for change events. Only
//! `type`, `error`, `request.operation`, `request.path`, `request.mount_type` are looked at; an
//! entry whose request data is not HMAC'd (`log_raw = true`) is refused without reading further,
//! so no value is ever held. The entry is a hint: values still come from an authenticated read.
//!
//! Only the *response* entry of a write counts. Vault writes the request entry before it performs
//! the request, so a read set off by it can reach Vault before the write is done, see the old
//! value, and leave the Secret stale until the next poll (a failure of `tests/e2e_audit.rs` in
//! CI). The response entry is written after the write, and says whether it failed.

use serde::Deserialize;
use serde_json::Value;

/// Entries larger than this are dropped unread (a KV write's entry is a few hundred bytes).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// Why an entry was not a change event (the bounded `reason` label of the drop metric).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    TooLarge,
    NotJson,
    /// Request data in clear: the device has `log_raw` on.
    RawValues,
    /// A read, a request entry (the write is not done yet), a failed write, a non-KV mount:
    /// not a change.
    NotAWrite,
}

impl Dropped {
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::TooLarge => "too_large",
            Dropped::NotJson => "not_json",
            Dropped::RawValues => "raw_values",
            Dropped::NotAWrite => "not_a_write",
        }
    }
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "type")]
    type_: Option<String>,
    /// Set (non-empty) on the response entry of a request that failed.
    error: Option<String>,
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Request {
    operation: Option<String>,
    path: Option<String>,
    mount_type: Option<String>,
    data: Option<serde_json::Map<String, Value>>,
}

/// Every string in the value is HMAC'd, as an audit device without `log_raw` writes them
/// (numbers and booleans are not hashed by Vault, and say nothing of a secret's strings).
fn hashed(v: &Value) -> bool {
    match v {
        Value::String(s) => s.starts_with("hmac-sha256:"),
        Value::Object(m) => m.values().all(hashed),
        Value::Array(a) => a.iter().all(hashed),
        _ => true,
    }
}

/// The secret a KV write entry changed, as `secret_key` names it.
pub fn changed_secret(bytes: &[u8]) -> Result<String, Dropped> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(Dropped::TooLarge);
    }
    let entry: Entry = serde_json::from_slice(bytes).map_err(|_| Dropped::NotJson)?;
    let req = entry.request.ok_or(Dropped::NotAWrite)?;
    if req.data.as_ref().is_some_and(|d| !d.values().all(hashed)) {
        return Err(Dropped::RawValues);
    }
    let write = matches!(
        req.operation.as_deref(),
        Some("create" | "update" | "patch" | "delete")
    );
    let failed = entry.error.as_deref().is_some_and(|e| !e.is_empty());
    if entry.type_.as_deref() != Some("response")
        || failed
        || !write
        || req.mount_type.as_deref().is_some_and(|t| t != "kv")
    {
        return Err(Dropped::NotAWrite);
    }
    let path = req.path.ok_or(Dropped::NotAWrite)?;
    Ok(secret_key(&path))
}

/// One name for a secret whatever API path touched it: the query dropped, and the first
/// `data`, `metadata`, `delete`, `destroy` or `undelete` segment after the first one removed
/// (KV v2's sub-paths). A KV v1 secret whose path has such a segment maps onto its neighbour:
/// at worst an early read, never a missed one.
pub fn secret_key(api_path: &str) -> String {
    let path = api_path.split('?').next().unwrap_or_default();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(i) = segments
        .iter()
        .skip(1)
        .position(|s| matches!(*s, "data" | "metadata" | "delete" | "destroy" | "undelete"))
    {
        segments.remove(i + 1);
    }
    segments.join("/")
}

/// Splits a TCP audit stream (one JSON entry per line) into entries, holding at most
/// `MAX_ENTRY_BYTES` of a line: a longer line is skipped to its end and reported as too large,
/// and the connection stays up (closing it would fail Vault's audit write).
#[derive(Default)]
pub struct EntryLines {
    line: Vec<u8>,
    skipping: bool,
}

impl EntryLines {
    /// Feeds one chunk; `entry` gets each complete line (or why it was dropped).
    pub fn feed(&mut self, mut chunk: &[u8], mut entry: impl FnMut(Result<&[u8], Dropped>)) {
        while !chunk.is_empty() {
            let (part, rest, ends) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            if !self.skipping {
                if self.line.len() + part.len() > MAX_ENTRY_BYTES {
                    self.skipping = true;
                    self.line = Vec::new();
                } else {
                    self.line.extend_from_slice(part);
                }
            }
            if ends {
                if self.skipping {
                    entry(Err(Dropped::TooLarge));
                } else if !self.line.is_empty() {
                    entry(Ok(&self.line));
                }
                self.line.clear();
                self.skipping = false;
            }
            chunk = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn kv_writes_name_their_secret() {
        for (op, path) in [
            ("update", "kv/data/app/db"),
            ("create", "kv/data/app/db"),
            ("patch", "kv/data/app/db"),
            ("delete", "kv/metadata/app/db"),
            ("update", "kv/destroy/app/db"),
            ("update", "kv/undelete/app/db"),
        ] {
            let e = entry(
                json!({"type": "response", "request": {"operation": op, "path": path,
                "mount_type": "kv", "data": {"data": {"v": "hmac-sha256:ab"}}},
                "response": {"data": {"version": 2}}}),
            );
            assert_eq!(changed_secret(&e).unwrap(), "kv/app/db", "{op} {path}");
        }
        assert_eq!(secret_key("kv/data/app/db?version=3"), "kv/app/db");
        assert_eq!(secret_key("secret/app/db"), "secret/app/db");
    }

    #[test]
    fn everything_else_is_dropped() {
        let read = entry(
            json!({"type": "response", "request": {"operation": "read", "path": "kv/data/a", "mount_type": "kv"}}),
        );
        assert_eq!(changed_secret(&read), Err(Dropped::NotAWrite));
        // Written before the write is performed: a read it set off could see the old value.
        let request = entry(
            json!({"type": "request", "request": {"operation": "update", "path": "kv/data/a", "mount_type": "kv"}}),
        );
        assert_eq!(changed_secret(&request), Err(Dropped::NotAWrite));
        let failed = entry(json!({"type": "response", "error": "permission denied",
            "request": {"operation": "update", "path": "kv/data/a", "mount_type": "kv"}}));
        assert_eq!(changed_secret(&failed), Err(Dropped::NotAWrite));
        let no_error = entry(json!({"type": "response", "error": "",
            "request": {"operation": "update", "path": "kv/data/a", "mount_type": "kv"}}));
        assert_eq!(changed_secret(&no_error).unwrap(), "kv/a");
        let other_mount = entry(
            json!({"type": "response", "request": {"operation": "update", "path": "sys/policy/x", "mount_type": "system"}}),
        );
        assert_eq!(changed_secret(&other_mount), Err(Dropped::NotAWrite));
        let raw = entry(
            json!({"type": "response", "request": {"operation": "update", "path": "kv/data/a",
            "mount_type": "kv", "data": {"data": {"n": 1, "password": "in-clear"}}}}),
        );
        assert_eq!(changed_secret(&raw), Err(Dropped::RawValues));
        assert_eq!(changed_secret(b"{not json"), Err(Dropped::NotJson));
        assert_eq!(
            changed_secret(&vec![b' '; MAX_ENTRY_BYTES + 1]),
            Err(Dropped::TooLarge)
        );
    }

    #[test]
    fn tcp_lines_are_split_and_long_ones_skipped_whole() {
        let mut lines = EntryLines::default();
        let mut got: Vec<Result<Vec<u8>, Dropped>> = Vec::new();
        let long = vec![b'x'; MAX_ENTRY_BYTES + 10];
        for chunk in [
            &b"{\"a\":"[..],
            b"1}\n{\"b\"",
            b":2}\n",
            &long[..100],
            &long[100..],
            b"\n\n{}\n",
        ] {
            lines.feed(chunk, |e| got.push(e.map(<[u8]>::to_vec)));
        }
        assert_eq!(
            got,
            vec![
                Ok(b"{\"a\":1}".to_vec()),
                Ok(b"{\"b\":2}".to_vec()),
                Err(Dropped::TooLarge),
                Ok(b"{}".to_vec())
            ]
        );
        assert!(
            lines.line.capacity() <= 2 * MAX_ENTRY_BYTES,
            "bounded buffer"
        );
    }
}
