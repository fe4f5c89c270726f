//! The Vault client against a real OpenBao 2.7.2 dev server (see tests/common). Logins use
//! OpenBao's `jwt` auth method at `kubernetes/`: same request shape as Kubernetes auth, no
//! apiserver needed. Kubernetes-auth cases with TokenReview are in the e2e suite.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{Bao, JwtSigner};
use serde_json::json;
use vault_external_secrets::api::kes::crd::ExternalSecret;
use vault_external_secrets::api::kes::{translate, Defaults};
use vault_external_secrets::config::Config;
use vault_external_secrets::engine::{fetch_and_render, DesiredSecret};
use vault_external_secrets::metrics::Metrics;
use vault_external_secrets::vault::{
    kv_api_path, AuthKey, KvReader, OwnTokenFile, ReadKey, TokenCache, VaultError, VaultHttp,
};

struct Client {
    kv: KvReader,
    tokens: Arc<TokenCache>,
    metrics: Arc<Metrics>,
    jwt_path: PathBuf,
}

impl Client {
    fn new(bao: &Bao, extra: &[(&str, &str)]) -> Client {
        let jwt_path = bao.dir.path().join("sa.jwt");
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("VAULT_ADDR".into(), bao.addr.clone());
        env.insert("VAULT_JWT_PATH".into(), jwt_path.display().to_string());
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        let metrics = Arc::new(Metrics::new().unwrap());
        let http = VaultHttp::new(&config, metrics.clone())
            .unwrap()
            .with_min_backoff(Duration::from_millis(50));
        let tokens = Arc::new(TokenCache::new(
            http,
            Arc::new(OwnTokenFile(jwt_path.clone())),
            config.token_renew_threshold,
        ));
        Client {
            kv: KvReader::new(
                tokens.clone(),
                Duration::from_millis(500),
                Duration::from_millis(500),
            ),
            tokens,
            metrics,
            jwt_path,
        }
    }

    /// Reads `key` (KV version `kv`) as `role` through the coalescing reader.
    async fn read(
        &self,
        role: &str,
        key: &str,
        kv: u8,
    ) -> Result<Arc<vault_external_secrets::vault::SecretData>, Arc<VaultError>> {
        self.kv.read(&read_key(role, key, kv)).await
    }

    fn count(&self, op: &str, outcome: &str) -> u64 {
        self.metrics
            .vault_requests
            .with_label_values(&[op, outcome])
            .get()
    }
}

fn auth(role: &str) -> AuthKey {
    AuthKey::own_service_account("kubernetes", role)
}

fn read_key(role: &str, key: &str, kv: u8) -> ReadKey {
    ReadKey {
        auth: auth(role),
        api_path: kv_api_path(key, kv, None).unwrap(),
        kv_version: kv,
        part: Default::default(),
    }
}

async fn setup() -> (Bao, JwtSigner, Client) {
    let bao = Bao::start().await;
    let signer = bao.enable_jwt_auth("app", "1h", "2h").await;
    let client = Client::new(&bao, &[]);
    signer.write(&client.jwt_path, "system:serviceaccount:ves:controller");
    (bao, signer, client)
}

fn es(yaml: &str) -> ExternalSecret {
    let mut es: ExternalSecret = serde_yaml::from_str(yaml).unwrap();
    es.metadata.uid = Some("uid-1".into());
    es
}

async fn sync_es(
    client: &Client,
    es: &ExternalSecret,
) -> Result<DesiredSecret, vault_external_secrets::Error> {
    let defaults = Defaults {
        mount_point: "kubernetes".into(),
        role: None,
    };
    // The controller's own path: translate, then the engine's fetch and render.
    fetch_and_render(&client.kv, &translate(es, &defaults)?).await
}

#[tokio::test]
async fn kv_v1_and_v2_end_to_end_render() {
    let (bao, _s, client) = setup().await;
    bao.put_kv1(
        "Rabbitmq",
        json!({"username": "rabbit-user", "password": "rabbit-pass"}),
    )
    .await;
    bao.put_kv2(
        "app",
        json!({"user": "u", "nested": {"db": {"pass": "deep"}}, "bin": "aGVsbG8=", "n": 7}),
    )
    .await;

    // The seed example, KV v1.
    let seed = es(include_str!("fixtures/seed-externalsecret.yaml")
        .replace("k8s-role", "app")
        .as_str());
    let d = sync_es(&client, &seed).await.unwrap();
    assert_eq!(d.data["RABBITMQ_USERNAME"].0, b"rabbit-user");

    // KV v2, both key forms, nested property, binary, dataFrom, template type and labels.
    let v2 = es(r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: app, namespace: default}
spec:
  backendType: vault
  vaultRole: app
  kvVersion: 2
  template:
    type: kubernetes.io/basic-auth
    metadata: {labels: {team: a}}
  dataFrom: [kv/app]
  data:
    - {name: natural, key: kv/app, property: user}
    - {name: kes-style, key: kv/data/app, property: nested.db.pass}
    - {name: blob, key: kv/app, property: bin, isBinary: true}
    - {name: number, key: kv/app, property: n}
"#);
    let d = sync_es(&client, &v2).await.unwrap();
    let s = |k: &str| String::from_utf8(d.data[k].0.clone()).unwrap();
    assert_eq!(s("natural"), "u");
    assert_eq!(s("kes-style"), "deep");
    assert_eq!(s("blob"), "hello");
    assert_eq!(s("number"), "7");
    assert_eq!(s("user"), "u"); // from dataFrom
    assert_eq!(s("nested"), r#"{"db":{"pass":"deep"}}"#);
    assert_eq!(d.type_, "kubernetes.io/basic-auth");
    assert_eq!(d.labels["team"], "a");

    // Both forms of the v2 key are the same read, coalesced into one request.
    assert_eq!(bao.audit_requests("kv/data/app"), 1);
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
}

#[tokio::test]
async fn kv_v2_versions() {
    let (bao, _s, client) = setup().await;
    bao.put_kv2("ver", json!({"v": "one"})).await;
    bao.put_kv2("ver", json!({"v": "two"})).await;
    let key = |version: Option<&str>| ReadKey {
        auth: auth("app"),
        api_path: kv_api_path("kv/ver", 2, version).unwrap(),
        kv_version: 2,
        part: Default::default(),
    };
    assert_eq!(client.kv.read(&key(Some("1"))).await.unwrap().0["v"], "one");
    assert_eq!(client.kv.read(&key(None)).await.unwrap().0["v"], "two");
}

#[tokio::test]
async fn missing_key_and_property_are_clear_errors() {
    let (bao, _s, client) = setup().await;
    bao.put_kv1("present", json!({"a": "1"})).await;
    let missing = es(r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: m, namespace: default}
spec: {vaultRole: app, kvVersion: 1, data: [{name: x, key: secret/absent, property: a}]}
"#);
    let e = sync_es(&client, &missing).await.unwrap_err();
    assert_eq!(e.reason(), "VaultReadFailed");
    let msg = e.to_string();
    assert!(
        msg.contains("secret/absent") && msg.contains("404"),
        "{msg}"
    );

    let no_prop = es(r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: m, namespace: default}
spec: {vaultRole: app, kvVersion: 1, data: [{name: x, key: secret/present, property: b}]}
"#);
    let e = sync_es(&client, &no_prop).await.unwrap_err();
    assert_eq!(e.to_string(), "Could not find property b in secret/present");

    // A natural key read as v2 from the v1 mount: 404 with a hint about kvVersion.
    let wrong_version = es(r#"
apiVersion: kubernetes-client.io/v1
kind: ExternalSecret
metadata: {name: m, namespace: default}
spec: {vaultRole: app, data: [{name: x, key: secret/present}]}
"#);
    let msg = sync_es(&client, &wrong_version)
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("KV v2"), "{msg}");
    // 404s are not retried.
    assert_eq!(bao.audit_requests("secret/absent"), 1);
}

#[tokio::test]
async fn bad_role_is_an_auth_error_naming_the_role() {
    let (bao, _s, client) = setup().await;
    bao.put_kv1("x", json!({"a": "1"})).await;
    let e = client
        .read("no-such-role", "secret/x", 1)
        .await
        .unwrap_err();
    let err = vault_external_secrets::Error::from_vault("secret/x", e);
    assert_eq!(err.reason(), "VaultAuthFailed");
    let msg = err.to_string();
    assert!(msg.contains("no-such-role") && msg.contains("400"), "{msg}");
    // 400 is not retried.
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
}

#[tokio::test]
async fn concurrent_reads_share_one_login_and_coalesce() {
    let (bao, _s, client) = setup().await;
    for i in 0..20 {
        bao.put_kv1(&format!("p{i}"), json!({"v": i.to_string()}))
            .await;
    }
    // 100 concurrent syncs: 20 distinct paths, 5 readers each.
    let reads = (0..100).map(|i| {
        let key = read_key("app", &format!("secret/p{}", i % 20), 1);
        let kv = &client.kv;
        async move { kv.read(&key).await.map(|d| d.0["v"].clone()) }
    });
    let results = futures::future::join_all(reads).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), json!((i % 20).to_string()));
    }
    assert_eq!(
        bao.audit_requests("auth/kubernetes/login"),
        1,
        "single-flight login"
    );
    assert_eq!(client.count("login", "success"), 1);
    assert_eq!(
        bao.audit_requests_prefix("secret/p"),
        20,
        "one read per distinct path"
    );
    assert_eq!(
        bao.audit_requests("auth/token/lookup-self"),
        0,
        "no lookup-self per read"
    );
}

/// Syncs that fell due before a read began take it after the cache's TTL (a backlog shares its
/// reads); a sync due after it began, or a change written to Vault since, reads again.
#[tokio::test]
async fn a_backlog_shares_reads_begun_after_it_fell_due() {
    let (bao, _s, client) = setup().await;
    // TTL 500 ms; kept 30 s for syncs due before the read began.
    let kv = KvReader::new(
        client.tokens.clone(),
        Duration::from_millis(500),
        Duration::from_secs(30),
    );
    bao.put_kv1("backlog", json!({"v": "1"})).await;
    let key = read_key("app", "secret/backlog", 1);
    let value = |kv: KvReader| {
        let key = key.clone();
        async move { kv.read(&key).await.unwrap().0["v"].clone() }
    };
    let fell_due = tokio::time::Instant::now();
    assert_eq!(value(kv.for_sync_due(fell_due)).await, json!("1"));
    bao.put_kv1("backlog", json!({"v": "2"})).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Due before the read began: the read answers, past the TTL.
    assert_eq!(value(kv.for_sync_due(fell_due)).await, json!("1"));
    assert_eq!(bao.audit_requests("secret/backlog"), 1);
    // Due now (after the Vault write): reads again and sees it; so does a caller with no due time.
    assert_eq!(
        value(kv.for_sync_due(tokio::time::Instant::now())).await,
        json!("2")
    );
    assert_eq!(bao.audit_requests("secret/backlog"), 2);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(value(kv.clone()).await, json!("2"));
    assert_eq!(bao.audit_requests("secret/backlog"), 3);
}

#[tokio::test]
async fn revoked_token_is_checked_then_replaced_once() {
    let (bao, _s, client) = setup().await;
    bao.put_kv1("x", json!({"a": "1"})).await;
    client.read("app", "secret/x", 1).await.unwrap();
    let accessors = client.tokens.accessors().await;
    assert_eq!(accessors.len(), 1);
    bao.revoke_accessor(&accessors[0]).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // past the read cache TTL

    client.read("app", "secret/x", 1).await.unwrap();
    // The 403 made the token be checked once (lookup-self: 403 too), then one new login.
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 2);
    assert_eq!(client.count("lookup", "forbidden"), 1);
    assert_eq!(client.count("read", "forbidden"), 1);
    assert_eq!(client.count("read", "success"), 2);
    let new = client.tokens.accessors().await;
    assert_ne!(new, accessors);
}

#[tokio::test]
async fn short_ttl_token_is_renewed_not_replaced() {
    let bao = Bao::start().await;
    let signer = bao.enable_jwt_auth("short", "4s", "1h").await;
    let client = Client::new(&bao, &[("VAULT_TOKEN_RENEW_THRESHOLD", "30")]);
    signer.write(&client.jwt_path, "sa");
    bao.put_kv1("x", json!({"a": "1"})).await;
    client.read("short", "secret/x", 1).await.unwrap();
    // The threshold (30 s) is capped at half the lease (2 s): renew after 2 s, not at once.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.read("short", "secret/x", 1).await.unwrap();
    assert_eq!(bao.audit_requests("auth/token/renew-self"), 1);
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
    // The renewed token still reads after the original 4 s lease would have expired.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    client.read("short", "secret/x", 1).await.unwrap();
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
    assert_eq!(client.count("read", "forbidden"), 0);
}

#[tokio::test]
async fn capped_token_logs_in_again_near_max_ttl() {
    let bao = Bao::start().await;
    // ttl 8 s, max 10 s: the renewal is capped, after which we log in instead (and revoke).
    let signer = bao.enable_jwt_auth("capped", "8s", "10s").await;
    let client = Client::new(&bao, &[]);
    signer.write(&client.jwt_path, "sa");
    bao.put_kv1("x", json!({"a": "1"})).await;
    let key = read_key("capped", "secret/x", 1);
    client.kv.read(&key).await.unwrap();
    let first = client.tokens.accessors().await;
    // 5 s in, 3 s left (< half the lease): renewed, but only up to the max TTL (~5 s).
    tokio::time::sleep(Duration::from_millis(5000)).await;
    client.kv.read(&key).await.unwrap();
    assert_eq!(bao.audit_requests("auth/token/renew-self"), 1);
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
    // 3.5 s later, ~1.5 s left of the capped renewal (below half of it): a new login.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.kv.read(&key).await.unwrap();
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 2);
    // The replaced token was revoked, not left to expire.
    assert_eq!(bao.audit_requests("auth/token/revoke-self"), 1);
    assert!(!bao.accessor_alive(&first[0]).await);
    assert_ne!(client.tokens.accessors().await, first);
    assert_eq!(client.count("read", "forbidden"), 0);
}

#[tokio::test]
async fn jwt_is_reread_at_each_login() {
    let (bao, signer, client) = setup().await;
    bao.put_kv1("x", json!({"a": "1"})).await;
    std::fs::write(&client.jwt_path, "not-a-jwt").unwrap();
    let e = client.read("app", "secret/x", 1).await.unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    // Rotated file: the next login (after the failed login's 5 s backoff) reads the new token.
    signer.write(&client.jwt_path, "rotated");
    tokio::time::sleep(Duration::from_millis(6100)).await;
    client.read("app", "secret/x", 1).await.unwrap();
    std::fs::remove_file(&client.jwt_path).unwrap();
    client.tokens.revoke_all().await;
    let e = client.read("app", "secret/y", 1).await.unwrap_err();
    assert!(matches!(e.as_ref(), VaultError::Jwt { .. }), "{e}");
}

#[tokio::test]
async fn revoke_all_kills_every_token() {
    let bao = Bao::start().await;
    let signer = bao.enable_jwt_auth("a", "1h", "2h").await;
    bao.add_jwt_role("b", "1h", "2h").await;
    let client = Client::new(&bao, &[]);
    signer.write(&client.jwt_path, "sa");
    bao.put_kv1("x", json!({"a": "1"})).await;
    client.read("a", "secret/x", 1).await.unwrap();
    client.read("b", "secret/x", 1).await.unwrap();
    let accessors = client.tokens.accessors().await;
    assert_eq!(accessors.len(), 2);
    for a in &accessors {
        assert!(bao.accessor_alive(a).await);
    }
    assert_eq!(client.tokens.revoke_all().await, 2);
    for a in &accessors {
        assert!(!bao.accessor_alive(a).await, "token {a} still alive");
    }
    assert_eq!(client.count("revoke", "success"), 2);
}

#[tokio::test]
async fn sealed_vault_is_retried_then_reported_and_recovers() {
    let (bao, _s, client) = setup().await;
    bao.put_kv1("x", json!({"a": "1"})).await;
    client.read("app", "secret/x", 1).await.unwrap();
    let out = bao.cli(&["operator", "seal"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let e = client.read("app", "secret/x", 1).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert!(e.to_string().contains("sealed"), "{e}");
    assert!(e.is_retryable());
    // 1 try + VAULT_MAX_RETRIES (4) retries, then reported.
    assert_eq!(client.count("read", "server_error"), 1);
    // The breaker is open: no request is sent until the prober sees Vault answer again.
    let e = client.read("app", "secret/y", 1).await.unwrap_err();
    assert_eq!(e.outcome(), "unavailable", "{e}");
    assert_eq!(client.count("read", "server_error"), 1, "not sent");
    let mut recoveries = client.tokens.http().breaker().recoveries();
    let out = bao.cli(&["operator", "unseal", &bao.unseal_key()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tokio::time::timeout(Duration::from_secs(5), recoveries.changed())
        .await
        .expect("the prober notices the unseal within its 2 s cap")
        .unwrap();
    client.read("app", "secret/x", 1).await.unwrap();
}

#[tokio::test]
async fn rate_limited_reads_back_off() {
    let (bao, signer, _) = setup().await;
    // Enough retries (50 ms doubling, capped at 10 s) to outlast the quota's 1 s window even
    // with unlucky jitter; the default budget is the production one.
    let client = Client::new(&bao, &[("VAULT_MAX_RETRIES", "8")]);
    signer.write(&client.jwt_path, "sa");
    bao.put_kv1("x", json!({"a": "1"})).await;
    bao.put_kv1("y", json!({"a": "2"})).await;
    bao.api(
        "POST",
        "sys/quotas/rate-limit/test",
        json!({"rate": 1, "interval": "1s", "path": "secret/"}),
    )
    .await;
    // Two reads in a row: the second hits the quota (429) and succeeds after backing off.
    client.read("app", "secret/x", 1).await.unwrap();
    client.read("app", "secret/y", 1).await.unwrap();
    assert_eq!(client.count("read", "success"), 2);
    assert!(bao.audit_requests("secret/y") >= 1);
}

#[tokio::test]
async fn vault_namespace_is_sent_on_every_request() {
    let bao = Bao::start().await;
    bao.api("POST", "sys/namespaces/team1", json!({})).await;
    bao.set_namespace(Some("team1"));
    bao.mount_kv2_and_policy().await;
    let signer = bao.enable_jwt_auth("app", "1h", "2h").await;
    bao.put_kv2("app", json!({"where": "team1"})).await;
    bao.set_namespace(None);

    // Without VAULT_NAMESPACE the login goes to the root namespace, where no such auth exists.
    let plain = Client::new(&bao, &[]);
    signer.write(&plain.jwt_path, "sa");
    assert!(plain.read("app", "kv/app", 2).await.is_err());

    let scoped = Client::new(&bao, &[("VAULT_NAMESPACE", "team1")]);
    let data = scoped.read("app", "kv/app", 2).await.unwrap();
    assert_eq!(data.0["where"], "team1");
}

/// A role of the `jwt` method at `kubernetes/` with the given policies.
async fn role_with_policies(bao: &Bao, role: &str, policies: &[&str]) {
    bao.api(
        "POST",
        &format!("auth/kubernetes/role/{role}"),
        json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
               "token_ttl": "1h", "token_max_ttl": "2h", "token_policies": policies}),
    )
    .await;
}

#[tokio::test]
async fn failed_logins_are_shared_and_backed_off() {
    let (bao, _s, client) = setup().await;
    for i in 0..50 {
        bao.put_kv1(&format!("p{i}"), json!({"v": "x"})).await;
    }
    let round = |role: &'static str| {
        let reads = (0..50)
            .map(|i| client.read(role, Box::leak(format!("secret/p{i}").into_boxed_str()), 1));
        futures::future::join_all(reads)
    };
    // Unknown role (400): 50 syncs waiting on the same pair cost one login.
    for r in round("gone").await {
        let e = vault_external_secrets::Error::from_vault("secret/p", r.unwrap_err());
        assert_eq!(e.reason(), "VaultAuthFailed");
        assert!(e.to_string().contains("gone"), "{e}");
    }
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
    // Within the backoff (5 s) nobody tries again, whatever the number of syncs.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(round("gone").await.iter().all(|r| r.is_err()));
    }
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 1);
    // After it, one attempt again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(round("gone").await.iter().all(|r| r.is_err()));
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 2);

    // A garbage JWT (403 from the auth method) on a good role: the same.
    std::fs::write(&client.jwt_path, "not-a-jwt").unwrap();
    for _ in 0..3 {
        assert!(round("app").await.iter().all(|r| r.is_err()));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(bao.audit_requests("auth/kubernetes/login"), 3);
    assert!(client.tokens.accessors().await.is_empty());
}

#[tokio::test]
async fn denied_path_costs_no_login_and_no_token() {
    let (bao, _s, client) = setup().await;
    bao.api(
        "PUT",
        "sys/policies/acl/deny-one",
        json!({"policy": "path \"secret/denied\" { capabilities = [\"deny\"] }\n"}),
    )
    .await;
    role_with_policies(&bao, "app", &["readonly", "deny-one"]).await;
    bao.put_kv1("ok", json!({"a": "1"})).await;
    bao.put_kv1("denied", json!({"a": "2"})).await;
    client.read("app", "secret/ok", 1).await.unwrap();
    for _ in 0..5 {
        // 30 syncs at once, as objects sharing a path do at their common poll slot.
        let reads = (0..30).map(|_| client.read("app", "secret/denied", 1));
        for r in futures::future::join_all(reads).await {
            let e = vault_external_secrets::Error::from_vault("secret/denied", r.unwrap_err());
            assert_eq!(e.reason(), "VaultReadFailed", "{e}");
            assert!(e.to_string().contains("403"), "{e}");
            assert!(!e.is_transient(), "a checked 403 waits for the next poll");
        }
        tokio::time::sleep(Duration::from_millis(600)).await; // past the read cache TTL
    }
    client.read("app", "secret/ok", 1).await.unwrap();
    assert_eq!(
        bao.audit_requests("auth/kubernetes/login"),
        1,
        "no re-login"
    );
    let accessors = client.tokens.accessors().await;
    assert_eq!(accessors.len(), 1);
    assert!(bao.accessor_alive(&accessors[0]).await);
    assert_eq!(
        bao.audit_requests("secret/denied"),
        5,
        "coalesced: one read per round"
    );
    assert_eq!(
        bao.audit_requests("auth/token/lookup-self"),
        5,
        "one token check per denied read"
    );
}

#[tokio::test]
async fn only_kv_mounts_of_the_right_version_are_read() {
    let (bao, _s, client) = setup().await;
    bao.api("POST", "sys/mounts/tr", json!({"type": "transit"}))
        .await;
    bao.api("POST", "tr/keys/k", json!({})).await;
    bao.api(
        "PUT",
        "sys/policies/acl/wide",
        json!({"policy": "path \"tr/*\" { capabilities = [\"read\"] }\npath \"sys/*\" { capabilities = [\"read\"] }\n"}),
    )
    .await;
    role_with_policies(&bao, "app", &["readonly", "wide"]).await;
    bao.put_kv2("app", json!({"a": "1"})).await;
    let cases: [(&str, u8, &str); 5] = [
        ("auth/token/lookup-self", 1, "auth/"),
        ("sys/internal/ui/resultant-acl", 1, "sys/"),
        ("cubbyhole/x", 1, "cubbyhole/"),
        ("tr/keys/k", 1, "transit"),
        ("kv/app", 1, "kvVersion to 2"),
    ];
    for (key, kv, why) in cases {
        let e = client.read("app", key, kv).await.unwrap_err();
        let err = vault_external_secrets::Error::from_vault(key, e);
        assert_eq!(err.reason(), "InvalidSpec", "{key}: {err}");
        assert!(err.to_string().contains(why), "{key}: {err}");
    }
    for path in [
        "auth/token/lookup-self",
        "sys/internal/ui/resultant-acl",
        "cubbyhole/x",
        "tr/keys/k",
        "kv/app",
    ] {
        assert_eq!(bao.audit_requests(path), 0, "{path} was read");
    }
    // The right version reads, and a second path under the same mount asks nothing more.
    client.read("app", "kv/app", 2).await.unwrap();
    bao.put_kv2("other", json!({"a": "1"})).await;
    client.read("app", "kv/other", 2).await.unwrap();
    assert_eq!(
        bao.audit_requests_prefix("sys/internal/ui/mounts/kv/"),
        1,
        "one mount lookup for kv/ (learned at the v1 try above)"
    );
}

#[tokio::test]
async fn a_sealed_vault_gets_one_prober_not_every_request() {
    let (bao, _s, client) = setup().await;
    for i in 0..100 {
        bao.put_kv1(&format!("p{i}"), json!({"v": "x"})).await;
    }
    client.read("app", "secret/p0", 1).await.unwrap();
    let out = bao.cli(&["operator", "seal"]);
    assert!(out.status.success());
    tokio::time::sleep(Duration::from_millis(600)).await;
    let started = std::time::Instant::now();
    let reads =
        (0..100).map(|i| client.read("app", Box::leak(format!("secret/p{i}").into_boxed_str()), 1));
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(|r| r.is_err()));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "every sync learns of the outage at once: {:?}",
        started.elapsed()
    );
    let sent = client.count("read", "server_error");
    assert!((1..=100).contains(&sent), "{sent}");
    // While it stays sealed, further syncs send nothing; one prober asks sys/health.
    for _ in 0..5 {
        let reads = (0..100)
            .map(|i| client.read("app", Box::leak(format!("secret/p{i}").into_boxed_str()), 1));
        assert!(futures::future::join_all(reads)
            .await
            .iter()
            .all(|r| r.is_err()));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    assert_eq!(client.count("read", "server_error"), sent);
    let probes = client.count("health", "server_error");
    assert!((1..=8).contains(&probes), "{probes} probes in ~3.5 s");
    // Shutdown with Vault down does not wait for it.
    let t = std::time::Instant::now();
    assert_eq!(client.tokens.revoke_all().await, 0);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());

    let mut recoveries = client.tokens.http().breaker().recoveries();
    let out = bao.cli(&["operator", "unseal", &bao.unseal_key()]);
    assert!(out.status.success());
    tokio::time::timeout(Duration::from_secs(5), recoveries.changed())
        .await
        .expect("recovery noticed")
        .unwrap();
    client.read("app", "secret/p1", 1).await.unwrap();
}

/// ESO's `dataFrom.find` and `rewrite` through the controller's path (translate, expand,
/// fetch, render) against OpenBao: a recursive listing, name and tag filters, rewrites, and
/// every listing and read coalesced and cached like any read (counted in the audit log).
#[tokio::test]
async fn eso_find_by_name_and_tags_with_rewrites() {
    use vault_external_secrets::api::eso::crd::ExternalSecret as EsoSecret;
    use vault_external_secrets::api::eso::store::StoreSpec;
    use vault_external_secrets::api::eso::translate::{translate, Settings, StoreKind, StoreView};

    let (bao, _signer, client) = setup().await;
    bao.put_kv2("app/db", json!({"user": "u", "pass": "<p&>"}))
        .await;
    bao.put_kv2("app/api", json!({"token": "t"})).await;
    bao.put_kv2("app/sub/x", json!({"a": "1"})).await;
    bao.put_kv2("other/y", json!({"b": "2"})).await;
    bao.api(
        "POST",
        "kv/metadata/app/db",
        json!({"custom_metadata": {"team": "a"}}),
    )
    .await;
    let store: StoreSpec = serde_json::from_value(json!({"provider": {"vault": {
        "server": bao.addr, "path": "kv", "version": "v2",
        "auth": {"kubernetes": {"role": "app", "mountPath": "kubernetes"}}}}}))
    .unwrap();
    let view = StoreView {
        kind: StoreKind::ClusterSecretStore,
        name: "vault",
        namespace: None,
        spec: &store,
    };
    let kv = &client.kv;
    let render = |data_from: serde_json::Value| {
        let es: EsoSecret = serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": {"name": "app", "namespace": "team", "uid": "uid-1"},
            "spec": {"secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
                     "dataFrom": data_from}}))
        .unwrap();
        let spec = translate(
            &es,
            &view,
            &Settings {
                vault_addr: &bao.addr,
            },
        );
        async move { fetch_and_render(kv, &spec?).await }
    };
    let keys = |d: &DesiredSecret| d.data.keys().cloned().collect::<Vec<_>>();

    // By name, recursively; names converted (`/` → `_`); values are the whole secret as JSON.
    let d = render(json!([{"find": {"path": "app", "name": {"regexp": "^app/(db|sub)"}}}]))
        .await
        .unwrap();
    assert_eq!(keys(&d), ["app_db", "app_sub_x"]);
    assert_eq!(
        String::from_utf8_lossy(&d.data["app_db"].0),
        r#"{"pass":"\u003cp\u0026\u003e","user":"u"}"#,
        "Go's JSON, as ESO writes it"
    );
    let lists = bao.audit_requests_prefix("kv/metadata/app");
    assert_eq!(lists, 2, "app/ and app/sub/ listed once each");

    // By tags (custom metadata), with rewrites in order.
    let d = render(json!([{"find": {"path": "app", "tags": {"team": "a"}},
        "rewrite": [{"regexp": {"source": "^app/", "target": ""}},
                    {"regexp": {"source": "(.*)", "target": "DB_${1}"}}]}]))
    .await
    .unwrap();
    assert_eq!(keys(&d), ["DB_db"]);

    // Extract with rewrites (regexp, transform); merge is named as unsupported; a bad regexp
    // is the object's error, not the controller's.
    let d = render(json!([{"extract": {"key": "app/db"},
        "rewrite": [{"regexp": {"source": "^", "target": "db-"}}]}]))
    .await
    .unwrap();
    assert_eq!(keys(&d), ["db-pass", "db-user"]);
    let d = render(json!([{"extract": {"key": "app/db"},
        "rewrite": [{"transform": {"template": "{{ .value | upper }}"}}]}]))
    .await
    .unwrap();
    assert_eq!(keys(&d), ["PASS", "USER"]);
    let e = render(json!([{"extract": {"key": "app/db"},
        "rewrite": [{"merge": {"into": "all"}}]}]))
    .await
    .unwrap_err();
    assert!(e.to_string().contains("rewrite[0].merge"), "{e}");
    let e = render(json!([{"find": {"name": {"regexp": "(unclosed"}}}]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("name.regexp"), "{e}");

    // A folder with nothing: Retain fails, naming the find.
    let e = render(json!([{"find": {"path": "nothing-here", "name": {"regexp": "."}}}]))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("spec.dataFrom[0].find"), "{e}");
    assert_eq!(
        client.count("list", "error"),
        0,
        "a 404 listing is an answer, not an error"
    );
}
