//! Kubernetes-auth tokens, one per (auth mount, role), shared by every ExternalSecret that uses
//! that pair.
//!
//! Each pair has one slot behind an async mutex: the first sync that needs a token logs in
//! while the others wait on the same lock and then take what it stored — the token, or the
//! failure. A failed login is remembered with a capped exponential backoff, so N waiting syncs
//! cost one attempt per backoff step whatever Vault answered (400 unknown role, 403 bad JWT,
//! 500 misconfigured method); KES and a naive cache log in once per object and poll instead.
//! Renewal happens under the same lock, on access, when the remaining TTL drops below the
//! threshold — per token, never per read.
//!
//! A token is dropped only when known bad, and every token dropped while it may still live is
//! revoked first, so the tokens alive in Vault stay at one per pair (plus one while replacing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Duration;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::identity::{AuthKey, Login, Server};
use super::login::{login_request, CredentialSource};
use super::token::{login_backoff, parse_auth, parse_lookup, Freshness, Token};
use super::{Op, VaultError, VaultHttp};

/// How long shutdown waits for all revocations together.
const REVOKE_ALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The last failed login or renewal of a pair, shared by every sync until `retry_at`.
struct Failure {
    error: VaultError,
    attempts: u32,
    retry_at: Instant,
}

#[derive(Default)]
struct SlotState {
    token: Option<Token>,
    failure: Option<Failure>,
}

type Slot = Arc<Mutex<SlotState>>;

/// What a 403 on a read means, once the token has been checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The token is good: the path is not permitted to it.
    Permission,
    /// The token was bad (dropped and revoked) or already replaced: get a token and try again.
    Replaced,
}

pub struct TokenCache {
    /// The configured Vault (`VAULT_ADDR`).
    http: VaultHttp,
    /// Other servers (ESO stores), one client and breaker each, made on first use.
    servers: SyncMutex<HashMap<Arc<Server>, VaultHttp>>,
    credentials: Arc<dyn CredentialSource>,
    renew_threshold: Duration,
    slots: SyncMutex<HashMap<AuthKey, Slot>>,
}

impl TokenCache {
    pub fn new(
        http: VaultHttp,
        credentials: Arc<dyn CredentialSource>,
        renew_threshold: Duration,
    ) -> Self {
        TokenCache {
            http,
            servers: SyncMutex::new(HashMap::new()),
            credentials,
            renew_threshold,
            slots: SyncMutex::new(HashMap::new()),
        }
    }

    /// The configured Vault's client.
    pub fn http(&self) -> &VaultHttp {
        &self.http
    }

    /// The client of the server `key` reads from, made on first use (a CA from a Secret or
    /// ConfigMap is fetched then, once per server).
    pub async fn http_for(&self, key: &AuthKey) -> Result<VaultHttp, VaultError> {
        if let Some(h) = self.cached_http(key) {
            return Ok(h);
        }
        let Some(server) = &key.server else {
            return Ok(self.http.clone());
        };
        let fetched_ca = match &server.ca_from {
            Some(cred) => Some(self.credentials.fetch(cred).await?),
            None => None,
        };
        let h = self
            .http
            .for_server(server, fetched_ca.as_ref().map(|c| c.expose_secret()))?;
        let mut servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        Ok(servers.entry(server.clone()).or_insert(h).clone())
    }

    /// The client of `key`'s server if it was made already.
    fn cached_http(&self, key: &AuthKey) -> Option<VaultHttp> {
        let Some(server) = &key.server else {
            return Some(self.http.clone());
        };
        let servers = self.servers.lock().unwrap_or_else(|p| p.into_inner());
        servers.get(server).cloned()
    }

    fn slot(&self, key: &AuthKey) -> Slot {
        // A poisoned lock only means a task panicked while inserting (on this thread or
        // another); the map is intact.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.clone()).or_default().clone()
    }

    fn all_slots(&self) -> Vec<(AuthKey, Slot)> {
        let map = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// A valid token for `key`: the cached one, a renewed one, or a fresh login — or the
    /// failure of the last attempt while its backoff runs.
    pub async fn token(&self, key: &AuthKey) -> Result<SecretString, VaultError> {
        let slot = self.slot(key);
        let mut st = slot.lock().await;
        let now = Instant::now();
        if st.token.as_ref().is_some_and(|t| t.expired(now)) {
            // Past its TTL it no longer exists in Vault: nothing to revoke.
            st.token = None;
        }
        let freshness = st
            .token
            .as_ref()
            .map(|t| t.freshness(now, self.renew_threshold));
        if let (Some(t), Some(Freshness::Fresh)) = (&st.token, &freshness) {
            return Ok(t.secret.clone());
        }
        if let Some(f) = st.failure.as_ref().filter(|f| f.retry_at > now) {
            // Backing off: a still-valid token serves until it expires.
            return match &st.token {
                Some(t) => Ok(t.secret.clone()),
                None => Err(f.error.clone()),
            };
        }
        if let (Some(token), Some(Freshness::RenewDue)) = (st.token.as_mut(), &freshness) {
            match self.renew(key, token).await {
                Ok(()) => {
                    let secret = token.secret.clone();
                    self.succeeded(key, &mut st);
                    return Ok(secret);
                }
                Err(e) if e.status() == Some(403) => {
                    tracing::warn!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
                        error = %e, "Vault refused to renew the token; logging in again");
                    self.drop_token(key, &mut st).await;
                }
                Err(e) => {
                    let secret = token.secret.clone();
                    self.failed(key, &mut st, e);
                    return Ok(secret);
                }
            }
        }
        match self.login(key).await {
            Ok(token) => {
                // The old one (capped, or not renewable) is still alive for a little while.
                self.drop_token(key, &mut st).await;
                let secret = token.secret.clone();
                st.token = Some(token);
                self.succeeded(key, &mut st);
                Ok(secret)
            }
            Err(e) => {
                self.failed(key, &mut st, e.clone());
                match &st.token {
                    Some(t) => Ok(t.secret.clone()),
                    None => Err(e),
                }
            }
        }
    }

    /// After a request sent at `sent` answered 403 with `used`: is the token bad, or is the path
    /// not permitted? Single-flight under the pair's lock: Vault accepting the token after
    /// `sent` (a login, a renewal, or the lookup-self another 403 caused) answers every 403 of
    /// requests sent before it, so a burst of denied reads costs one lookup, no login and no
    /// new token.
    pub async fn verify(
        &self,
        key: &AuthKey,
        used: &SecretString,
        sent: Instant,
    ) -> Result<Verdict, VaultError> {
        let slot = self.slot(key);
        let mut st = slot.lock().await;
        let Some(token) = st.token.as_mut() else {
            return Ok(Verdict::Replaced);
        };
        if token.secret.expose_secret() != used.expose_secret() {
            return Ok(Verdict::Replaced);
        }
        if token.verified_at >= sent {
            return Ok(Verdict::Permission);
        }
        match self
            .http_for(key)
            .await?
            .request(
                Op::Lookup,
                Method::GET,
                "auth/token/lookup-self",
                Some(&token.secret),
                None,
            )
            .await
        {
            Ok(_) => {
                token.verified_at = Instant::now();
                Ok(Verdict::Permission)
            }
            Err(e) if e.status() == Some(403) => {
                tracing::warn!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
                    "Vault no longer accepts the token; logging in again");
                self.drop_token(key, &mut st).await;
                Ok(Verdict::Replaced)
            }
            Err(e) => Err(e),
        }
    }

    /// Accessors of the tokens held now (not secret: they cannot be used to authenticate).
    pub async fn accessors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (_, slot) in self.all_slots() {
            if let Some(t) = slot.lock().await.token.as_ref() {
                out.push(t.accessor.clone());
            }
        }
        out
    }

    /// Revokes every token held (graceful shutdown), concurrently, one try each, within
    /// `REVOKE_ALL_TIMEOUT` in all: with Vault down, shutdown must not wait for it. Returns how
    /// many were revoked.
    pub async fn revoke_all(&self) -> usize {
        let revokes = self.all_slots().into_iter().map(|(key, slot)| async move {
            let token = slot.lock().await.token.take()?;
            self.revoke(&key, &token).await.then_some(())
        });
        match tokio::time::timeout(REVOKE_ALL_TIMEOUT, futures::future::join_all(revokes)).await {
            Ok(done) => done.into_iter().flatten().count(),
            Err(_) => {
                tracing::warn!("revoking Vault tokens timed out; the rest expire with their TTL");
                0
            }
        }
    }

    /// Drops the pair's token, revoking it first (one try: if Vault cannot be reached it
    /// expires with its TTL).
    async fn drop_token(&self, key: &AuthKey, st: &mut SlotState) {
        if let Some(old) = st.token.take() {
            // A given token is the user's: dropping it from the cache must not end it.
            if old.owned && !old.expired(Instant::now()) {
                self.revoke(key, &old).await;
            }
        }
    }

    async fn revoke(&self, key: &AuthKey, token: &Token) -> bool {
        if !token.owned {
            return false;
        }
        let Ok(http) = self.http_for(key).await else {
            return false;
        };
        let r = http
            .request_once(
                Op::Revoke,
                Method::POST,
                "auth/token/revoke-self",
                Some(&token.secret),
                None,
            )
            .await;
        match r {
            Ok(_) => {
                tracing::info!(mount = %key.mount, role = %key.role, accessor = %token.accessor, "revoked Vault token");
                true
            }
            Err(e) => {
                tracing::warn!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
                    error = %e, "could not revoke Vault token; it expires with its TTL");
                false
            }
        }
    }

    fn succeeded(&self, key: &AuthKey, st: &mut SlotState) {
        if st.failure.take().is_some() {
            tracing::info!(mount = %key.mount, role = %key.role, "Vault login works again");
            if let Some(http) = self.cached_http(key) {
                http.breaker().recovered();
            }
        }
    }

    fn failed(&self, key: &AuthKey, st: &mut SlotState, error: VaultError) {
        // A server that is down is the breaker's to track; backing off this pair as well would
        // only delay recovery once it answers.
        if matches!(error, VaultError::Unavailable { .. }) || error.is_server_down() {
            return;
        }
        let attempts = st.failure.as_ref().map_or(0, |f| f.attempts) + 1;
        let pause = login_backoff(attempts, rand::random::<f64>());
        tracing::warn!(mount = %key.mount, role = %key.role, attempts, retry_in_s = pause.as_secs(),
            error = %error, "Vault login failed; every sync of this role waits for the next attempt");
        st.failure = Some(Failure {
            error,
            attempts,
            retry_at: Instant::now() + pause,
        });
    }

    async fn login(&self, key: &AuthKey) -> Result<Token, VaultError> {
        let http = self.http_for(key).await?;
        let Some((path, body)) = login_request(key, self.credentials.as_ref()).await? else {
            return self.adopt_given_token(key, &http).await;
        };
        let resp = http
            .request(Op::Login, Method::POST, &path, None, Some(&body))
            .await
            .map_err(|e| name_the_login(e, key))?;
        let token = parse_auth(&path, &resp, None)?;
        tracing::info!(mount = %key.mount, role = %key.role, accessor = %token.accessor,
            ttl_s = token.lease.as_secs(), renewable = token.renewable, "logged in to Vault");
        Ok(token)
    }

    /// `Login::Token`: the token is read from its Secret and checked once (`lookup-self`), which
    /// also gives its TTL. It stays the user's: never renewed or revoked by us.
    async fn adopt_given_token(
        &self,
        key: &AuthKey,
        http: &VaultHttp,
    ) -> Result<Token, VaultError> {
        let Login::Token(cred) = &key.login else {
            return Err(VaultError::Credential {
                what: "login".into(),
                reason: "no login request for this method".into(),
            });
        };
        let secret = self.credentials.fetch(cred).await?;
        let path = "auth/token/lookup-self";
        let resp = http
            .request(Op::Login, Method::GET, path, Some(&secret), None)
            .await
            .map_err(|e| name_the_login(e, key))?;
        let token = parse_lookup(path, &resp, secret)?;
        tracing::info!(accessor = %token.accessor, ttl_s = token.lease.as_secs(),
            "using the Vault token given in {}", cred.describe());
        Ok(token)
    }

    async fn renew(&self, key: &AuthKey, token: &mut Token) -> Result<(), VaultError> {
        let path = "auth/token/renew-self";
        let resp = self
            .http_for(key)
            .await?
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
        token.verified_at = Instant::now();
        tracing::debug!(accessor = %token.accessor, ttl_s = token.lease.as_secs(), "renewed Vault token");
        Ok(())
    }
}

/// Names the role in a failed login: "permission denied" alone does not say which one failed.
fn name_the_login(e: VaultError, key: &AuthKey) -> VaultError {
    match e {
        VaultError::Status {
            op,
            status,
            path,
            message,
            retry_after,
        } => VaultError::Status {
            op,
            status,
            path,
            message: format!("login with role {:?} failed: {message}", key.role),
            retry_after,
        },
        other => other,
    }
}
