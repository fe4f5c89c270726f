//! One HTTP request to Vault, with the headers every request carries, error decoding, metrics,
//! retries (capped exponential backoff with jitter, honouring `Retry-After`), and the server's
//! breaker: no request is sent while the server is known to be down, one prober finds out when
//! it is back.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{Breaker, VaultError};
use crate::config::Config;
use crate::metrics::Metrics;

/// What a request is for; the `operation` label of the Vault request metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Login,
    Renew,
    /// `lookup-self`, only to tell a bad token from a path the token may not read (a 403).
    Lookup,
    /// `sys/internal/ui/mounts/<path>`: the type and version of the mount a key is in.
    Mount,
    Read,
    /// A KV folder's listing (ESO `find`).
    List,
    Revoke,
    /// `sys/health`, unauthenticated, only while the breaker is open.
    Health,
}

impl Op {
    /// The `call` label of ESO's provider metric.
    pub fn eso_call(self) -> &'static str {
        match self {
            Op::Login => "Login",
            Op::Renew => "RenewSelf",
            Op::Lookup => "LookupSelf",
            Op::Mount => "ReadMount",
            Op::Read => "ReadSecretData",
            Op::List => "ListSecrets",
            Op::Revoke => "RevokeSelf",
            Op::Health => "Health",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::Renew => "renew",
            Op::Lookup => "lookup",
            Op::Mount => "mount",
            Op::Read => "read",
            Op::List => "list",
            Op::Revoke => "revoke",
            Op::Health => "health",
        }
    }
}

/// Longest pause between two tries, and longest `Retry-After` we honour.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// First and longest pause between two health probes while the breaker is open: a recovered
/// Vault is noticed within this, at one unauthenticated request per pause.
const PROBE_MIN: Duration = Duration::from_millis(500);
const PROBE_MAX: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct VaultHttp {
    http: reqwest::Client,
    addr: String,
    namespace: Option<String>,
    /// Extra headers (ESO store `headers`).
    headers: Arc<Vec<(String, String)>>,
    skip_verify: bool,
    max_retries: usize,
    min_backoff: Duration,
    metrics: Arc<Metrics>,
    breaker: Arc<Breaker>,
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
            headers: Arc::default(),
            skip_verify: config.vault_skip_verify,
            max_retries: config.vault_max_retries,
            min_backoff: Duration::from_millis(250),
            metrics,
            breaker: Arc::new(Breaker::default()),
        })
    }

    /// A client for another server (an ESO store's), with the same retry settings and metrics,
    /// its own TLS roots, headers and breaker.
    /// `fetched_ca`: PEM read from the server's `ca_from`, trusted besides `ca_pem`.
    pub fn for_server(
        &self,
        server: &super::Server,
        fetched_ca: Option<&str>,
    ) -> Result<VaultHttp, VaultError> {
        let bad = |reason: String| VaultError::Server {
            addr: server.addr.clone(),
            reason,
        };
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .danger_accept_invalid_certs(self.skip_verify);
        for pem in server.ca_pem.as_deref().into_iter().chain(fetched_ca) {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|_| bad("the CA bundle is not PEM".into()))?;
            if certs.is_empty() {
                return Err(bad("the CA bundle holds no certificate".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        for (name, value) in &server.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("invalid header name {name:?}")))?;
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| bad(format!("invalid value for header {name:?}")))?;
        }
        let url = reqwest::Url::parse(&server.addr).map_err(|e| bad(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("the address must be http:// or https://".into()));
        }
        Ok(VaultHttp {
            http: builder.build().map_err(|e| bad(error_chain(&e)))?,
            addr: server.addr.trim_end_matches('/').to_string(),
            namespace: server.namespace.clone(),
            headers: Arc::new(server.headers.clone()),
            skip_verify: self.skip_verify,
            max_retries: self.max_retries,
            min_backoff: self.min_backoff,
            metrics: self.metrics.clone(),
            breaker: Arc::new(Breaker::default()),
        })
    }

    /// Shorter pauses between retries (tests that provoke 5xx want to finish quickly).
    pub fn with_min_backoff(mut self, min: Duration) -> Self {
        self.min_backoff = min;
        self
    }

    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
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
        self.request_with(op, method, path, token, body, self.max_retries)
            .await
    }

    /// One try, never retried (revocations: a token that cannot be revoked now expires anyway).
    pub async fn request_once(
        &self,
        op: Op,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        self.request_with(op, method, path, token, body, 0).await
    }

    async fn request_with(
        &self,
        op: Op,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
        max_retries: usize,
    ) -> Result<Value, VaultError> {
        // Not sent, not counted: the server is known to be down.
        self.breaker.check(op)?;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_backoff)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(max_retries)
            .with_jitter();
        let result = (|| async {
            self.breaker.check(op)?;
            let r = self.send_once(op, method.clone(), path, token, body).await;
            // The first try that finds the server down opens the breaker for everyone (this
            // request included): one prober asks from now on, not every request's retries.
            if let Err(e) = &r {
                if e.is_server_down() && self.breaker.trip(e) {
                    tracing::warn!(operation = op.as_str(), error = %e,
                        "Vault is down: requests fail at once until it answers its health check");
                    self.spawn_prober();
                }
            }
            r
        })
        .retry(backoff)
        // Once another request has found the server down, stop retrying this one too.
        .when(|e| e.is_retryable() && !self.breaker.is_open())
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
            Ok(_) => {
                self.breaker.close();
                "success"
            }
            Err(e) => e.outcome(),
        };
        self.metrics
            .vault_requests
            .with_label_values(&[op.as_str(), outcome])
            .inc();
        self.metrics
            .provider_calls
            .with_label_values(&[
                "HashiCorp/Vault",
                op.eso_call(),
                if result.is_ok() { "success" } else { "error" },
            ])
            .inc();
        result
    }

    /// Asks `sys/health` (unauthenticated) with backoff until the server answers, then closes
    /// the breaker. One prober per outage: only the request that opened the breaker starts it.
    fn spawn_prober(&self) {
        let http = self.clone();
        tokio::spawn(async move {
            let mut pause = PROBE_MIN;
            let since = tokio::time::Instant::now();
            let mut announced = false;
            while http.breaker.is_open() {
                tokio::time::sleep(pause.mul_f64(1.0 + 0.2 * rand::random::<f64>())).await;
                let probe = http
                    .send_once(
                        Op::Health,
                        Method::GET,
                        "sys/health?standbyok=true&perfstandbyok=true",
                        None,
                        None,
                    )
                    .await;
                let outcome = match &probe {
                    Ok(_) => "success",
                    Err(e) => e.outcome(),
                };
                http.metrics
                    .vault_requests
                    .with_label_values(&[Op::Health.as_str(), outcome])
                    .inc();
                if probe.is_ok() {
                    tracing::info!("Vault answers its health check again");
                    http.breaker.close();
                    return;
                }
                if !announced && since.elapsed() >= super::breaker::OUTAGE_CONFIRM {
                    announced = true;
                    http.breaker.outage_confirmed();
                }
                pause = (pause * 2).min(PROBE_MAX);
            }
        });
    }

    async fn send_once(
        &self,
        op: Op,
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
        for (name, value) in self.headers.iter() {
            req = req.header(name.as_str(), value.as_str());
        }
        if let Some(t) = token {
            req = req.header("X-Vault-Token", t.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| {
            // Without the URL: reqwest would repeat it, and the source chain is what explains.
            let reason = error_chain(&e.without_url());
            let path = path.to_string();
            if is_tls_failure(&reason) {
                VaultError::Tls { op, path, reason }
            } else {
                VaultError::Transport { op, path, reason }
            }
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| VaultError::Transport {
            op,
            path: path.to_string(),
            reason: error_chain(&e.without_url()),
        })?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || bytes.is_empty() {
                return Ok(Value::Null);
            }
            // Without serde's position: a column in a secret's body says something of its values.
            return serde_json::from_slice(&bytes).map_err(|_| VaultError::Decode {
                path: path.to_string(),
                reason: "body is not JSON".into(),
            });
        }
        Err(VaultError::Status {
            op,
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

/// rustls' certificate and handshake failures, as the error chain words them.
fn is_tls_failure(chain: &str) -> bool {
    [
        "invalid peer certificate",
        "certificate",
        "HandshakeFailure",
        "tls handshake",
    ]
    .iter()
    .any(|w| chain.contains(w))
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
            op: Op::Read,
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
