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
        if v["stage"] != "ResponseComplete" || v["user"]["username"] != CONTROLLER_USER {
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
