//! Login credentials from the cluster: a key of a Secret, or a short-lived token of a
//! ServiceAccount (TokenRequest); and a store's CA bundle from a Secret or ConfigMap. Asked only when the token cache logs in, so a store shared by
//! thousands of objects costs one Secret read or TokenRequest per login.

use std::path::PathBuf;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client};
use secrecy::SecretString;

use crate::error::kube_brief;
use crate::vault::{read_own_jwt, Credential, CredentialSource, VaultError};

/// Lifetime asked for ServiceAccount tokens: they are used for one login, right away.
const TOKEN_REQUEST_SECONDS: i64 = 600;

pub struct KubeCredentials {
    pub client: Client,
    pub jwt_path: PathBuf,
}

impl CredentialSource for KubeCredentials {
    fn fetch<'a>(
        &'a self,
        cred: &'a Credential,
    ) -> BoxFuture<'a, Result<SecretString, VaultError>> {
        async move {
            let failed = |reason: String| VaultError::Credential {
                what: cred.describe(),
                reason,
            };
            match cred {
                Credential::OwnServiceAccount => read_own_jwt(&self.jwt_path).await,
                Credential::SecretKey {
                    namespace,
                    name,
                    key,
                } => {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
                    let secret = api
                        .get_opt(name)
                        .await
                        .map_err(|e| failed(kube_brief(&e)))?
                        .ok_or_else(|| failed("no such Secret".into()))?;
                    let bytes = secret
                        .data
                        .and_then(|mut d| d.remove(key))
                        .ok_or_else(|| failed("no such key".into()))?;
                    // Not echoed: a decoder's message would quote the bytes.
                    let text = String::from_utf8(bytes.0)
                        .map_err(|_| failed("the value is not UTF-8".into()))?;
                    Ok(SecretString::from(text))
                }
                Credential::ConfigMapKey {
                    namespace,
                    name,
                    key,
                } => {
                    let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
                    let cm = api
                        .get_opt(name)
                        .await
                        .map_err(|e| failed(kube_brief(&e)))?
                        .ok_or_else(|| failed("no such ConfigMap".into()))?;
                    cm.data
                        .and_then(|mut d| d.remove(key))
                        .map(SecretString::from)
                        .ok_or_else(|| failed("no such key".into()))
                }
                Credential::ServiceAccountToken {
                    namespace,
                    name,
                    audiences,
                } => {
                    let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
                    let req = TokenRequest {
                        spec: TokenRequestSpec {
                            audiences: audiences.clone(),
                            expiration_seconds: Some(TOKEN_REQUEST_SECONDS),
                            bound_object_ref: None,
                        },
                        ..Default::default()
                    };
                    let answer = api
                        .create_token_request(name, &PostParams::default(), &req)
                        .await
                        .map_err(|e| failed(kube_brief(&e)))?;
                    answer
                        .status
                        .map(|s| SecretString::from(s.token))
                        .ok_or_else(|| failed("the apiserver answered without a token".into()))
                }
            }
        }
        .boxed()
    }
}
