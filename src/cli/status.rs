//! `status`: every ExternalSecret of both APIs in the cluster, one line each, worst first.

use chrono::{DateTime, Utc};
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;
use serde_json::{json, Value};

use super::Output;
use crate::api::eso::crd::ExternalSecret as EsoSecret;
use crate::api::kes::crd::ExternalSecret as KesSecret;

#[derive(Serialize, Debug, PartialEq)]
pub struct Row {
    pub api: &'static str,
    pub namespace: String,
    pub name: String,
    /// `True`, `False`, or `Unknown` (no status yet).
    pub ready: String,
    pub reason: String,
    /// Last confirmed in sync (KES `lastSync`, ESO `refreshTime`).
    pub synced: Option<String>,
    pub refresh: String,
    pub paths: Vec<String>,
    /// The `Ready` message when not ready.
    pub error: Option<String>,
}

pub async fn run(namespace: Option<&str>, output: Output) -> anyhow::Result<i32> {
    let client = crate::controller::kube_client().await?;
    let mut values = Vec::new();
    values.extend(list::<KesSecret>(&client, namespace, "kes").await?);
    values.extend(list::<EsoSecret>(&client, namespace, "eso").await?);
    let rows = rows(&values);
    match output {
        Output::Json => println!("{}", json!({ "externalSecrets": rows })),
        Output::Text => print!("{}", table(&rows, Utc::now())),
    }
    Ok(i32::from(rows.iter().any(|r| r.ready == "False")))
}

async fn list<K>(
    client: &Client,
    ns: Option<&str>,
    api: &'static str,
) -> anyhow::Result<Vec<(&'static str, Value)>>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let api_handle: Api<K> = match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api_handle.list(&ListParams::default()).await {
        Ok(list) => Ok(list
            .items
            .iter()
            .filter_map(|o| serde_json::to_value(o).ok())
            .map(|v| (api, v))
            .collect()),
        // The API's CRD is not installed: nothing of it to show.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!(crate::error::kube_brief(&e))),
    }
}

/// Pure: the rows, worst first (not ready, then unknown, then the longest since a sync).
pub fn rows(objects: &[(&'static str, Value)]) -> Vec<Row> {
    let mut rows: Vec<Row> = objects.iter().map(|(api, v)| row(api, v)).collect();
    let rank = |r: &Row| match r.ready.as_str() {
        "False" => 0,
        "Unknown" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then_with(|| a.synced.cmp(&b.synced))
            .then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
    rows
}

fn row(api: &'static str, v: &Value) -> Row {
    let s = |v: &Value| v.as_str().map(String::from);
    let ready = v["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null);
    let status = s(&ready["status"]).unwrap_or_else(|| "Unknown".into());
    let spec = &v["spec"];
    let (synced, refresh, paths) = if api == "kes" {
        let mut paths: Vec<String> = spec["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| s(&d["key"]))
            .collect();
        paths.extend(
            spec["dataFrom"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(s),
        );
        (s(&v["status"]["lastSync"]), "controller".to_string(), paths)
    } else {
        let mut paths: Vec<String> = spec["dataFrom"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                s(&d["extract"]["key"]).or_else(|| {
                    d.get("find")
                        .map(|f| format!("find {}", f["path"].as_str().unwrap_or("/")))
                })
            })
            .collect();
        paths.extend(
            spec["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| s(&d["remoteRef"]["key"])),
        );
        paths.dedup();
        (
            s(&v["status"]["refreshTime"]),
            s(&spec["refreshInterval"]).unwrap_or_else(|| "1h".into()),
            paths,
        )
    };
    Row {
        api,
        namespace: s(&v["metadata"]["namespace"]).unwrap_or_default(),
        name: s(&v["metadata"]["name"]).unwrap_or_default(),
        error: (status == "False").then(|| s(&ready["message"]).unwrap_or_default()),
        ready: status,
        reason: s(&ready["reason"]).unwrap_or_default(),
        synced,
        refresh,
        paths,
    }
}

fn age(t: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(t) = t.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "never".into();
    };
    let secs = now.signed_duration_since(t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn table(rows: &[Row], now: DateTime<Utc>) -> String {
    let mut lines = vec![[
        "API".to_string(),
        "NAMESPACE/NAME".into(),
        "READY".into(),
        "REASON".into(),
        "SYNCED".into(),
        "REFRESH".into(),
        "PATHS".into(),
        "ERROR".into(),
    ]];
    for r in rows {
        lines.push([
            r.api.to_string(),
            format!("{}/{}", r.namespace, r.name),
            r.ready.clone(),
            r.reason.clone(),
            age(r.synced.as_deref(), now),
            r.refresh.clone(),
            r.paths.join(","),
            r.error.clone().unwrap_or_default(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == 7 {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_first_with_paths_and_errors() {
        let kes_ok = json!({"metadata": {"namespace": "a", "name": "ok"},
            "spec": {"data": [{"key": "secret/data/app", "name": "x"}]},
            "status": {"lastSync": "2026-01-01T00:00:00Z",
                "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced"}]}});
        let eso_bad = json!({"metadata": {"namespace": "b", "name": "bad"},
            "spec": {"refreshInterval": "15m", "dataFrom": [{"find": {"path": "team"}}],
                "data": [{"secretKey": "k", "remoteRef": {"key": "app"}}]},
            "status": {"conditions": [{"type": "Ready", "status": "False",
                "reason": "SecretSyncedError", "message": "VaultReadFailed: reading app: 403"}]}});
        let new = json!({"metadata": {"namespace": "c", "name": "new"}, "spec": {}});
        let rows = rows(&[("kes", kes_ok), ("eso", eso_bad), ("eso", new)]);
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["bad", "new", "ok"]
        );
        assert_eq!(rows[0].paths, ["find team", "app"]);
        assert_eq!(
            rows[0].error.as_deref(),
            Some("VaultReadFailed: reading app: 403")
        );
        assert_eq!(rows[2].paths, ["secret/data/app"]);
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:05:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let text = table(&rows, now);
        assert!(text.lines().next().unwrap().starts_with("API"));
        assert!(text.contains("kes  a/ok") && text.contains("5m"), "{text}");
    }
}
