//! Plants known secret values in a real OpenBao, syncs them (successes and failures) with every
//! log at TRACE through our JSON formatter, and searches the logs, error messages (Display and
//! Debug), status messages and metrics for the values and the Vault token.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Bao;
use secrecy::ExposeSecret;
use serde_json::json;
use vault_external_secrets::api::kes::crd::ExternalSecret;
use vault_external_secrets::api::kes::status::{next_status, Outcome};
use vault_external_secrets::api::kes::{translate, Defaults};
use vault_external_secrets::config::Config;
use vault_external_secrets::engine::fetch_and_render;
use vault_external_secrets::logging::JsonFormat;
use vault_external_secrets::metrics::Metrics;
use vault_external_secrets::vault::{AuthKey, KvReader, OwnTokenFile, TokenCache, VaultHttp};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const PLANTED: [&str; 4] = [
    "planted-Pa55word-7f3a9c",
    "planted-user-19be0d",
    "planted-nested-c0ffee",
    "planted-notbase64-%%%",
];

#[tokio::test]
async fn planted_values_and_tokens_never_leak() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .event_format(JsonFormat {
            message_key: "msg".into(),
            pino: None,
        })
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let bao = Bao::start().await;
    let signer = bao.enable_jwt_auth("app", "1h", "2h").await;
    let jwt_path = bao.dir.path().join("sa.jwt");
    signer.write(&jwt_path, "sa");
    bao.put_kv1(
        "db",
        json!({"password": PLANTED[0], "user": PLANTED[1], "nested": {"x": PLANTED[2]}, "bin": PLANTED[3]}),
    )
    .await;

    let env: BTreeMap<&str, String> = [
        ("VAULT_ADDR", bao.addr.clone()),
        ("VAULT_JWT_PATH", jwt_path.display().to_string()),
        ("LOG_LEVEL", "trace".into()),
    ]
    .into_iter()
    .collect();
    let config = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let http = VaultHttp::new(&config, metrics.clone())
        .unwrap()
        .with_min_backoff(Duration::from_millis(20));
    let tokens = Arc::new(TokenCache::new(
        http,
        Arc::new(OwnTokenFile(jwt_path.clone())),
        config.token_renew_threshold,
    ));
    let kv = KvReader::new(
        tokens.clone(),
        Duration::from_millis(1),
        Duration::from_millis(1),
    );
    let defaults = Defaults {
        mount_point: "kubernetes".into(),
        role: None,
    };

    let manifests = [
        // success: property, nested property, whole object, dataFrom
        r#"{"vaultRole": "app", "kvVersion": 1, "dataFrom": ["secret/db"],
            "data": [{"name": "p", "key": "secret/db", "property": "password"},
                     {"name": "n", "key": "secret/db", "property": "nested.x"},
                     {"name": "all", "key": "secret/db"}]}"#,
        // failures: missing property, bad base64, missing key, bad role
        r#"{"vaultRole": "app", "kvVersion": 1, "data": [{"name": "p", "key": "secret/db", "property": "nope"}]}"#,
        r#"{"vaultRole": "app", "kvVersion": 1, "data": [{"name": "p", "key": "secret/db", "property": "bin", "isBinary": true}]}"#,
        r#"{"vaultRole": "app", "kvVersion": 1, "data": [{"name": "p", "key": "secret/missing"}]}"#,
        r#"{"vaultRole": "wrong", "kvVersion": 1, "data": [{"name": "p", "key": "secret/db"}]}"#,
    ];
    let mut texts = Vec::new();
    let mut successes = 0;
    for m in manifests {
        let mut es = ExternalSecret::new("leak", serde_json::from_str(m).unwrap());
        es.metadata.namespace = Some("default".into());
        es.metadata.uid = Some("uid".into());
        let result = async { fetch_and_render(&kv, &translate(&es, &defaults)?).await }.await;
        match result {
            Ok(desired) => {
                successes += 1;
                tracing::info!(?desired, "rendered");
                texts.push(format!("{desired:?}"));
            }
            Err(e) => {
                tracing::warn!(error = %e, debug = ?e, "failed");
                texts.push(e.to_string());
                texts.push(format!("{e:?}"));
                let status = next_status(
                    None,
                    &Outcome {
                        ok: false,
                        reason: e.reason(),
                        message: e.to_string(),
                    },
                    &vault_external_secrets::api::condition::Side::Unknown,
                    Some(1),
                    chrono::Utc::now(),
                    vault_external_secrets::api::condition::Heartbeat {
                        every: vault_external_secrets::controller::STATUS_HEARTBEAT,
                        budget: &|| true,
                    },
                );
                texts.push(serde_json::to_string(&status).unwrap());
            }
        }
    }
    assert_eq!(successes, 1, "the first manifest syncs; the others fail");
    let token = tokens
        .token(&AuthKey::own_service_account("kubernetes", "app"))
        .await
        .unwrap();
    tokens.revoke_all().await;

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("logged in to Vault"),
        "TRACE logs were captured"
    );
    assert!(logs.lines().count() > 20, "TRACE logs were captured");
    let everything = format!(
        "{logs}\n{}\n{}",
        texts.join("\n"),
        metrics.encode().unwrap()
    );
    let jwt = std::fs::read_to_string(&jwt_path).unwrap();
    // Fragments too: the base64 decoder names the offending character and its offset, serde
    // a line and column; none of that may pass through.
    for fragment in ["Invalid symbol", "offset", "line 1", "column"] {
        assert!(
            !everything.contains(fragment),
            "{fragment:?} of a decoder's message leaked"
        );
    }
    for secret in PLANTED
        .iter()
        .copied()
        .chain([token.expose_secret(), jwt.trim()])
    {
        assert!(
            !everything.contains(secret),
            "{secret:?} leaked into logs, errors, status or metrics"
        );
    }
}
