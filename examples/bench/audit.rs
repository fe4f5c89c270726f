//! Counts from the audit logs: the controller's Vault requests (OpenBao's) and its writes
//! (the apiserver's), within a time window.

use super::*;

#[derive(Default, Debug, Clone, Copy)]
pub struct VaultCounts {
    pub login: u64,
    pub renew: u64,
    pub lookup: u64,
    pub read: u64,
}

pub fn parse_time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)?.as_str()?.parse().ok()
}

/// Requests by the controller (not the root token) in OpenBao's audit log within the window.
pub fn vault_counts(log: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<VaultCounts> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    let mut c = VaultCounts::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["type"] != "request" {
            continue;
        }
        let Some(t) = parse_time(&v, "time") else {
            continue;
        };
        if t < from || t >= to {
            continue;
        }
        if v["auth"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "root"))
        {
            continue;
        }
        let path = v["request"]["path"].as_str().unwrap_or_default();
        if path.ends_with("/login") {
            c.login += 1;
        } else if path == "auth/token/renew-self" {
            c.renew += 1;
        } else if path == "auth/token/lookup-self" {
            c.lookup += 1;
        } else if v["request"]["operation"] == "read" {
            c.read += 1;
        }
    }
    Ok(c)
}

/// Whether an apiserver audit event is a completed request of the controller's.
fn by_controller(v: &Value) -> bool {
    v["stage"] == "ResponseComplete" && v["user"]["username"] == CONTROLLER_USER
}

#[derive(Default, Debug, Clone, Copy)]
pub struct ApiWrites {
    pub secret: u64,
    pub status: u64,
    pub event: u64,
}

/// The controller's writes in the apiserver's audit log (Metadata level) within the window.
pub fn api_writes(log: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<ApiWrites> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    let mut w = ApiWrites::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if !by_controller(&v) {
            continue;
        }
        if !matches!(v["verb"].as_str(), Some("create" | "update" | "patch")) {
            continue;
        }
        let Some(t) = parse_time(&v, "requestReceivedTimestamp") else {
            continue;
        };
        if t < from || t >= to {
            continue;
        }
        match (
            v["objectRef"]["resource"].as_str(),
            v["objectRef"]["subresource"].as_str(),
        ) {
            (Some("secrets"), _) => w.secret += 1,
            (Some("externalsecrets"), Some("status")) => w.status += 1,
            (Some("events"), _) => w.event += 1,
            _ => {}
        }
    }
    Ok(w)
}

/// The controller's Secret creates in the run's namespaces, counted as the apiserver's audit log
/// grows: how the bench follows the initial sync without loading the controller it measures.
/// Scraping the controller's `/metrics` for its create counter instead, as it did, made the
/// controller encode and the bench parse every object's KES series once a second, on the cores
/// the apiserver needs (docs/benchmarks.md, issue 15 part 1).
pub struct CreateTail {
    file: std::fs::File,
    /// The end of the log after the last complete line read.
    rest: Vec<u8>,
    prefix: String,
    /// Creates counted so far.
    pub count: usize,
    /// When the apiserver completed the latest of them (`stageTimestamp`).
    pub last: Option<DateTime<Utc>>,
}

impl CreateTail {
    /// Follows `log` from its current end, counting creates in `{prefix}-0` … `{prefix}-9`.
    pub fn from_end(log: &str, prefix: &str) -> Result<Self> {
        use std::io::Seek;
        let mut file = std::fs::File::open(log).with_context(|| format!("opening {log}"))?;
        file.seek(std::io::SeekFrom::End(0))?;
        Ok(CreateTail {
            file,
            rest: Vec::new(),
            prefix: prefix.into(),
            count: 0,
            last: None,
        })
    }

    /// Reads what the log gained since the last call; returns the count so far.
    pub fn poll(&mut self) -> Result<usize> {
        use std::io::Read;
        self.file.read_to_end(&mut self.rest)?;
        let Some(end) = self.rest.iter().rposition(|b| *b == b'\n') else {
            return Ok(self.count);
        };
        let lines: Vec<u8> = self.rest.drain(..=end).collect();
        for line in lines.split(|b| *b == b'\n') {
            // Most lines are other writes: skip them before parsing.
            let text = String::from_utf8_lossy(line);
            if !text.contains(r#""verb":"create""#) || !text.contains(CONTROLLER_USER) {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let created = by_controller(&v)
                && v["objectRef"]["resource"] == "secrets"
                && v["responseStatus"]["code"] == 201
                && v["objectRef"]["namespace"]
                    .as_str()
                    .is_some_and(|ns| world::in_run(ns, &self.prefix));
            if created {
                self.count += 1;
                self.last = self.last.max(parse_time(&v, "stageTimestamp"));
            }
        }
        Ok(self.count)
    }
}
