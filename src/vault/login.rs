//! Logging in: the credential a login needs (`CredentialSource`: the controller's own
//! service-account file here, Secrets and TokenRequests in the controller), and the request
//! each method sends.

use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use super::identity::{AuthKey, Credential, Login};
use super::VaultError;

/// Fetches login credentials. Errors name the credential, never its value.
pub trait CredentialSource: Send + Sync {
    fn fetch<'a>(&'a self, cred: &'a Credential)
        -> BoxFuture<'a, Result<SecretString, VaultError>>;
}

/// Reads the controller's own projected service-account token; re-read at every login, since
/// the kubelet rotates it.
pub async fn read_own_jwt(path: &std::path::Path) -> Result<SecretString, VaultError> {
    let jwt = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| VaultError::Jwt {
            path: path.display().to_string(),
            reason: e.kind().to_string(),
        })?;
    Ok(SecretString::from(jwt.trim().to_string()))
}

/// Only the controller's own token (no Kubernetes client: tests, KES-only use).
pub struct OwnTokenFile(pub PathBuf);

impl CredentialSource for OwnTokenFile {
    fn fetch<'a>(
        &'a self,
        cred: &'a Credential,
    ) -> BoxFuture<'a, Result<SecretString, VaultError>> {
        async move {
            match cred {
                Credential::OwnServiceAccount => read_own_jwt(&self.0).await,
                other => Err(VaultError::Credential {
                    what: other.describe(),
                    reason: "no Kubernetes client to fetch it with".into(),
                }),
            }
        }
        .boxed()
    }
}

/// The login request for `key`: its path and body, credentials fetched. `None` for a given
/// token (`Login::Token`), which needs no login.
pub async fn login_request(
    key: &AuthKey,
    creds: &dyn CredentialSource,
) -> Result<Option<(String, Value)>, VaultError> {
    let mount = key.mount.trim_matches('/');
    let (path, body) = match &key.login {
        Login::Token(_) => return Ok(None),
        Login::Jwt(jwt) => {
            let jwt = creds.fetch(jwt).await?;
            (
                format!("auth/{mount}/login"),
                json!({ "role": key.role, "jwt": jwt.expose_secret() }),
            )
        }
        Login::AppRole { role_id, secret_id } => {
            let role_id = match role_id {
                Some(c) => creds.fetch(c).await?.expose_secret().trim().to_string(),
                None => key.role.clone(),
            };
            let secret_id = creds.fetch(secret_id).await?;
            (
                format!("auth/{mount}/login"),
                json!({ "role_id": role_id, "secret_id": secret_id.expose_secret() }),
            )
        }
        Login::Password(password) => {
            let password = creds.fetch(password).await?;
            (
                format!("auth/{mount}/login/{}", urlencoding::encode(&key.role)),
                json!({ "password": password.expose_secret() }),
            )
        }
    };
    Ok(Some((path, body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl CredentialSource for Fixed {
        fn fetch<'a>(
            &'a self,
            cred: &'a Credential,
        ) -> BoxFuture<'a, Result<SecretString, VaultError>> {
            let v = match cred {
                Credential::OwnServiceAccount => "own-jwt",
                Credential::SecretKey { key, .. } if key == "role" => "rid\n",
                Credential::SecretKey { .. } => "from-secret",
                Credential::ServiceAccountToken { .. } => "sa-jwt",
                Credential::ConfigMapKey { .. } => "pem",
            };
            async move { Ok(SecretString::from(v.to_string())) }.boxed()
        }
    }

    fn secret(key: &str) -> Credential {
        Credential::SecretKey {
            namespace: "ns".into(),
            name: "s".into(),
            key: key.into(),
        }
    }

    #[tokio::test]
    async fn each_method_sends_its_body() {
        let mut key = AuthKey::own_service_account("/kubernetes/", "app");
        let (p, b) = login_request(&key, &Fixed).await.unwrap().unwrap();
        assert_eq!(p, "auth/kubernetes/login");
        assert_eq!(b, json!({"role": "app", "jwt": "own-jwt"}));

        key.mount = "approle".into();
        key.role = String::new();
        key.login = Login::AppRole {
            role_id: Some(secret("role")),
            secret_id: secret("sid"),
        };
        let (p, b) = login_request(&key, &Fixed).await.unwrap().unwrap();
        assert_eq!(p, "auth/approle/login");
        assert_eq!(b, json!({"role_id": "rid", "secret_id": "from-secret"}));

        key.mount = "userpass".into();
        key.role = "a user".into();
        key.login = Login::Password(secret("password"));
        let (p, b) = login_request(&key, &Fixed).await.unwrap().unwrap();
        assert_eq!(p, "auth/userpass/login/a%20user");
        assert_eq!(b, json!({"password": "from-secret"}));

        key.login = Login::Token(secret("token"));
        assert!(login_request(&key, &Fixed).await.unwrap().is_none());
    }
}
