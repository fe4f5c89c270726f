//! One Vault token as the cache holds it: its lease and when to renew or replace it, read from
//! a login or renewal answer; and the backoff between failed logins. Pure.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;
use tokio::time::Instant;

use super::VaultError;

/// Login backoff after consecutive failures: 5 s doubling to this cap, plus up to 20 % jitter.
const LOGIN_BACKOFF_MAX: Duration = Duration::from_secs(120);

pub(super) struct Token {
    pub(super) secret: SecretString,
    pub(super) accessor: String,
    /// `None`: the token does not expire (lease 0).
    pub(super) expires_at: Option<Instant>,
    /// Lease granted by the last login or renewal.
    pub(super) lease: Duration,
    pub(super) renewable: bool,
    /// A renewal granted less than the login did: the max TTL is near, so log in next time.
    pub(super) renewal_capped: bool,
    /// When Vault last accepted it.
    pub(super) verified_at: Instant,
    /// We logged in for it (revoke it when dropped); `false` for a token given in a Secret.
    pub(super) owned: bool,
}

pub(super) enum Freshness {
    Fresh,
    RenewDue,
    LoginDue,
}

impl Token {
    pub(super) fn freshness(&self, now: Instant, threshold: Duration) -> Freshness {
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

    pub(super) fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Pause before the next login after `attempts` consecutive failures; `jitter` in [0, 1).
pub(super) fn login_backoff(attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1u32 << exp)
        .min(LOGIN_BACKOFF_MAX)
        .mul_f64(1.0 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// Reads the `auth` block of a login or renew-self answer.
pub(super) fn parse_auth(
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
    let renewable = auth
        .get("renewable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Token::from_block(
        secret,
        auth,
        "lease_duration",
        renewable,
        true,
    ))
}

impl Token {
    /// A token just issued or checked: its accessor and its lease (`lease_key` of `block`).
    fn from_block(
        secret: SecretString,
        block: &Value,
        lease_key: &str,
        renewable: bool,
        owned: bool,
    ) -> Token {
        let lease = Duration::from_secs(block.get(lease_key).and_then(Value::as_u64).unwrap_or(0));
        Token {
            secret,
            accessor: block
                .get("accessor")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            expires_at: (!lease.is_zero()).then(|| Instant::now() + lease),
            lease,
            renewable,
            renewal_capped: false,
            verified_at: Instant::now(),
            owned,
        }
    }
}

/// Reads a `lookup-self` answer for a token given as is: its TTL and accessor. Never renewed by
/// us (it is not ours), so once near its end it is read again from where it came from.
pub(super) fn parse_lookup(
    path: &str,
    resp: &Value,
    secret: SecretString,
) -> Result<Token, VaultError> {
    let data = resp.get("data").ok_or_else(|| VaultError::Decode {
        path: path.to_string(),
        reason: "no data block".into(),
    })?;
    Ok(Token::from_block(secret, data, "ttl", false, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn token(lease_s: u64, renewable: bool) -> Token {
        Token {
            secret: SecretString::from("t".to_string()),
            accessor: "a".into(),
            expires_at: Some(Instant::now() + Duration::from_secs(lease_s)),
            lease: Duration::from_secs(lease_s),
            renewable,
            renewal_capped: false,
            verified_at: Instant::now(),
            owned: true,
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
    fn login_backoff_grows_to_a_cap() {
        assert_eq!(login_backoff(1, 0.0), Duration::from_secs(5));
        assert_eq!(login_backoff(2, 0.0), Duration::from_secs(10));
        assert_eq!(login_backoff(5, 0.0), Duration::from_secs(80));
        assert_eq!(login_backoff(6, 0.0), LOGIN_BACKOFF_MAX);
        assert_eq!(login_backoff(60, 0.0), LOGIN_BACKOFF_MAX);
        assert_eq!(login_backoff(1, 0.5), Duration::from_secs(5).mul_f64(1.1));
        // Attempts in the first minute of an outage: at 0, 5, 15 and 35 s.
        let mut t = Duration::ZERO;
        let mut n = 0;
        while t < Duration::from_secs(60) {
            n += 1;
            t += login_backoff(n, 0.0);
        }
        assert_eq!(n, 4);
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

    #[test]
    fn a_given_token_is_never_ours() {
        let resp = json!({"data": {"accessor": "acc", "ttl": 60, "renewable": true}});
        let t = parse_lookup("p", &resp, SecretString::from("s.x".to_string())).unwrap();
        assert_eq!(t.accessor, "acc");
        assert!(!t.owned && !t.renewable);
        assert!(matches!(
            t.freshness(
                Instant::now() + Duration::from_secs(59),
                Duration::from_secs(5)
            ),
            Freshness::LoginDue
        ));
    }
}
