//! One HTTP request to Vault, with the headers every request carries, error decoding, metrics,
//! and retries (capped exponential backoff with jitter, honouring `Retry-After`).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::VaultError;
use crate::config::Config;
use crate::metrics::Metrics;

/// What a request is for; the `operation` label of the Vault request metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Login,
    Renew,
    Lookup,
    Read,
    Revoke,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Renew => "renew",
            Op::Lookup => "lookup",
            Op::Read => "read",
            Op::Revoke => "revoke",
        }
    }
}

/// Longest pause between two tries, and longest `Retry-After` we honour.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct VaultHttp {
    http: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    max_retries: usize,
    min_backoff: Duration,
    metrics: Arc<Metrics>,
}

impl VaultHttp {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .danger_accept_invalid_certs(config.vault_skip_verify);
        if let Some(path) = &config.vault_cacert {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("invalid value for VAULT_CACERT: cannot read {path:?}: {e}")
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                anyhow::anyhow!("invalid value for VAULT_CACERT: {path:?} is not PEM: {e}")
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(VaultHttp {
            http: builder.build()?,
            addr: config.vault_addr.clone(),
            namespace: config.vault_namespace.clone(),
            max_retries: config.vault_max_retries,
            min_backoff: Duration::from_millis(250),
            metrics,
        })
    }

    /// Shorter pauses between retries (tests that provoke 5xx want to finish quickly).
    pub fn with_min_backoff(mut self, min: Duration) -> Self {
        self.min_backoff = min;
        self
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sends one request (retried when the failure is transient) and returns the JSON body, or
    /// `Value::Null` for 204.
    pub async fn request(
        &self,
        op: Op,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.max_retries)
            .with_jitter();
        let result = (|| self.send_once(method.clone(), path, token, body))
            .retry(backoff)
            .when(VaultError::is_retryable)
            .adjust(|e, next| {
                // Retry-After replaces the computed pause, but never extends the number of tries.
                let after = match e {
                    VaultError::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                next.map(|d| after.map_or(d, |a| a.min(MAX_BACKOFF)))
            })
            .notify(|e, pause| {
                tracing::warn!(operation = op.as_str(), error = %e, ?pause, "retrying Vault request");
            })
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(e) => e.outcome(),
        };
        self.metrics
            .vault_requests
            .with_label_values(&[op.as_str(), outcome])
            .inc();
        result
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method, &url)
            .header("X-Vault-Request", "true");
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| VaultError::Transport {
            path: path.to_string(),
            // Without the URL: reqwest would repeat it, and the source chain is what explains.
            reason: error_chain(&e.without_url()),
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| VaultError::Transport {
            path: path.to_string(),
            reason: error_chain(&e.without_url()),
        })?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| VaultError::Decode {
                path: path.to_string(),
                reason: format!("body is not JSON: {e}"),
            });
        }
        Err(VaultError::Status {
            status: status.as_u16(),
            path: path.to_string(),
            message: vault_error_message(&bytes, status),
            retry_after,
        })
    }
}

/// Vault's `{"errors": [...]}`, joined; for a 404 with no errors (a KV path that does not
/// exist), a message that says so instead of an empty string.
fn vault_error_message(body: &[u8], status: StatusCode) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let errors: Vec<String> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    // A KV v1-style path on a v2 mount answers 404 with only a warning that says so.
    let warnings: Vec<&str> = parsed
        .as_ref()
        .and_then(|v| v.get("warnings"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !warnings.is_empty() {
        return warnings.join("; ");
    }
    match status {
        StatusCode::NOT_FOUND => "secret not found (no such path, or no data at it)".into(),
        s => s
            .canonical_reason()
            .unwrap_or("no error message")
            .to_string(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_from_vault_body() {
        let m = vault_error_message(
            br#"{"errors":["permission denied"]}"#,
            StatusCode::FORBIDDEN,
        );
        assert_eq!(m, "permission denied");
        let m = vault_error_message(br#"{"errors":[]}"#, StatusCode::NOT_FOUND);
        assert!(m.contains("not found"));
        let m = vault_error_message(b"<html>", StatusCode::BAD_GATEWAY);
        assert_eq!(m, "Bad Gateway");
    }

    #[test]
    fn retryable_statuses() {
        let e = |status| VaultError::Status {
            status,
            path: "p".into(),
            message: String::new(),
            retry_after: None,
        };
        for s in [412, 429, 500, 502, 503] {
            assert!(e(s).is_retryable(), "{s}");
        }
        for s in [400, 403, 404] {
            assert!(!e(s).is_retryable(), "{s}");
        }
    }
}
