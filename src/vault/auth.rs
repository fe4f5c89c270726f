//! Kubernetes-auth tokens, one per (auth mount, role), shared by every ExternalSecret that uses
//! that pair.
//!
//! Each pair has its own async mutex: the first sync that needs a token logs in while the others
//! wait on the same lock and then take the token it stored, so N concurrent syncs cost one login
//! (KES logged in concurrently; ESO logs in and revokes per reconcile). Renewal happens under the
//! same lock, on access, when the remaining TTL drops below the threshold — per token, never per
//! read, and with no lookup-self.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Op, VaultError, VaultHttp};

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AuthKey {
    pub mount: String,
    pub role: String,
}

struct Token {
    secret: SecretString,
    accessor: String,
    /// `None`: the token does not expire (lease 0).
    expires_at: Option<Instant>,
    /// Lease granted by the last login or renewal.
    lease: Duration,
    renewable: bool,
    /// A renewal granted less than the login did: the max TTL is near, so log in next time.
    renewal_capped: bool,
}

enum Freshness {
    Fresh,
    RenewDue,
    LoginDue,
}

impl Token {
    fn freshness(&self, now: Instant, threshold: Duration) -> Freshness {
        let Some(expires_at) = self.expires_at else {
            return Freshness::Fresh;
        };
        // A threshold longer than half the lease would renew on nearly every access.
        let threshold = threshold.min(self.lease / 2);
        let remaining = expires_at.saturating_duration_since(now);
        if remaining > threshold {
            Freshness::Fresh
        } else if self.renewable && !self.renewal_capped && remaining > Duration::ZERO {
            Freshness::RenewDue
        } else {
            Freshness::LoginDue
        }
    }
}

type Slot = Arc<Mutex<Option<Token>>>;

pub struct TokenCache {
    http: VaultHttp,
    jwt_path: PathBuf,
    renew_threshold: Duration,
    slots: SyncMutex<HashMap<AuthKey, Slot>>,
}

impl TokenCache {
    pub fn new(http: VaultHttp, jwt_path: PathBuf, renew_threshold: Duration) -> Self {
        TokenCache {
            http,
            jwt_path,
            renew_threshold,
            slots: SyncMutex::new(HashMap::new()),
        }
    }

    pub fn http(&self) -> &VaultHttp {
        &self.http
    }

    fn slot(&self, key: &AuthKey) -> Slot {
        // A poisoned lock only means another thread panicked while inserting; the map is intact.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    /// A valid token for `key`: the cached one, a renewed one, or a fresh login.
    pub async fn token(&self, key: &AuthKey) -> Result<SecretString, VaultError> {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if let Some(token) = guard.as_mut() {
            match token.freshness(Instant::now(), self.renew_threshold) {
                Freshness::Fresh => return Ok(token.secret.clone()),
                Freshness::RenewDue => match self.renew(token).await {
                    Ok(()) => return Ok(token.secret.clone()),
                    Err(e) => {
                        tracing::warn!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
                            error = %e, "Vault token renewal failed; logging in again");
                    }
                },
                Freshness::LoginDue => {}
            }
        }
        let token = self.login(key).await?;
        let secret = token.secret.clone();
        *guard = Some(token);
        Ok(secret)
    }

    /// Drops the cached token for `key` if it is still `used` (a read answered 403 with it), so
    /// the next `token` call logs in. A token another task already replaced is left alone.
    pub async fn invalidate(&self, key: &AuthKey, used: &SecretString) {
        let slot = self.slot(key);
        let mut guard = slot.lock().await;
        if guard
            .as_ref()
            .is_some_and(|t| t.secret.expose_secret() == used.expose_secret())
        {
            *guard = None;
        }
    }

    /// Accessors of the tokens held now (not secret: they cannot be used to authenticate).
    pub async fn accessors(&self) -> Vec<String> {
        let slots: Vec<Slot> = {
            let map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            map.values().cloned().collect()
        };
        let mut out = Vec::new();
        for slot in slots {
            if let Some(t) = slot.lock().await.as_ref() {
                out.push(t.accessor.clone());
            }
        }
        out
    }

    /// Revokes every token held (graceful shutdown). Returns how many were revoked.
    pub async fn revoke_all(&self) -> usize {
        let slots: Vec<(AuthKey, Slot)> = {
            let map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut revoked = 0;
        for (key, slot) in slots {
            let Some(token) = slot.lock().await.take() else {
                continue;
            };
            match self
                .http
                .request(
                    Op::Revoke,
                    Method::POST,
                    "auth/token/revoke-self",
                    Some(&token.secret),
                    None,
                )
                .await
            {
                Ok(_) => {
                    revoked += 1;
                    tracing::info!(mount = %key.mount, role = %key.role, accessor = %token.accessor, "revoked Vault token");
                }
                Err(e) => {
                    tracing::warn!(mount = %key.mount, role = %key.role, accessor = %token.accessor, error = %e, "could not revoke Vault token")
                }
            }
        }
        revoked
    }

    async fn login(&self, key: &AuthKey) -> Result<Token, VaultError> {
        // Re-read at every login: projected service-account tokens rotate.
        let jwt = tokio::fs::read_to_string(&self.jwt_path)
            .await
            .map_err(|e| VaultError::Jwt {
                path: self.jwt_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let body = json!({ "role": key.role, "jwt": jwt.trim() });
        let path = format!("auth/{}/login", key.mount.trim_matches('/'));
        let resp = self
            .http
            .request(Op::Login, Method::POST, &path, None, Some(&body))
            .await
            .map_err(|e| match e {
                // Name the role: "permission denied" alone does not say which login failed.
                VaultError::Status {
                    status,
                    path,
                    message,
                    retry_after,
                } => VaultError::Status {
                    status,
                    path,
                    message: format!("login with role {:?} failed: {message}", key.role),
                    retry_after,
                },
                other => other,
            })?;
        let token = parse_auth(&path, &resp, None)?;
        tracing::info!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
            ttl_s = token.lease.as_secs(), renewable = token.renewable, "logged in to Vault");
        Ok(token)
    }

    async fn renew(&self, token: &mut Token) -> Result<(), VaultError> {
        let path = "auth/token/renew-self";
        let resp = self
            .http
            .request(
                Op::Renew,
                Method::POST,
                path,
                Some(&token.secret),
                Some(&json!({})),
            )
            .await?;
        let renewed = parse_auth(path, &resp, Some(&token.secret))?;
        token.renewal_capped = renewed.lease < token.lease;
        token.expires_at = renewed.expires_at;
        token.lease = renewed.lease;
        token.renewable = renewed.renewable;
        tracing::debug!(accessor = %token.accessor, ttl_s = token.lease.as_secs(), "renewed Vault token");
        Ok(())
    }
}

/// Reads the `auth` block of a login or renew-self answer.
fn parse_auth(
    path: &str,
    resp: &Value,
    current: Option<&SecretString>,
) -> Result<Token, VaultError> {
    let decode = |reason: &str| VaultError::Decode {
        path: path.to_string(),
        reason: reason.to_string(),
    };
    let auth = resp.get("auth").ok_or_else(|| decode("no auth block"))?;
    let secret = match auth.get("client_token").and_then(Value::as_str) {
        Some(t) => SecretString::from(t.to_string()),
        None => current.cloned().ok_or_else(|| decode("no client_token"))?,
    };
    let lease = Duration::from_secs(
        auth.get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    Ok(Token {
        secret,
        accessor: auth
            .get("accessor")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        expires_at: (!lease.is_zero()).then(|| Instant::now() + lease),
        lease,
        renewable: auth
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        renewal_capped: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lease_s: u64, renewable: bool) -> Token {
        Token {
            secret: SecretString::from("t".to_string()),
            accessor: "a".into(),
            expires_at: Some(Instant::now() + Duration::from_secs(lease_s)),
            lease: Duration::from_secs(lease_s),
            renewable,
            renewal_capped: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn freshness_follows_threshold() {
        let t = token(3600, true);
        let now = Instant::now();
        assert!(matches!(
            t.freshness(now, Duration::from_secs(30)),
            Freshness::Fresh
        ));
        let later = now + Duration::from_secs(3580);
        assert!(matches!(
            t.freshness(later, Duration::from_secs(30)),
            Freshness::RenewDue
        ));
        let nr = token(3600, false);
        assert!(matches!(
            nr.freshness(later, Duration::from_secs(30)),
            Freshness::LoginDue
        ));
        let expired = now + Duration::from_secs(4000);
        assert!(matches!(
            t.freshness(expired, Duration::from_secs(30)),
            Freshness::LoginDue
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_capped_at_half_the_lease() {
        // 10 s token with a 30 s threshold: renew at 5 s left, not on every access.
        let t = token(10, true);
        let now = Instant::now();
        assert!(matches!(
            t.freshness(now + Duration::from_secs(4), Duration::from_secs(30)),
            Freshness::Fresh
        ));
        assert!(matches!(
            t.freshness(now + Duration::from_secs(6), Duration::from_secs(30)),
            Freshness::RenewDue
        ));
    }

    #[test]
    fn parse_auth_reads_the_block() {
        let resp = json!({"auth": {"client_token": "s.x", "accessor": "acc", "lease_duration": 60, "renewable": true}});
        let t = parse_auth("p", &resp, None).unwrap();
        assert_eq!(t.accessor, "acc");
        assert_eq!(t.lease, Duration::from_secs(60));
        assert!(t.renewable);
        assert!(parse_auth("p", &json!({}), None).is_err());
    }
}
