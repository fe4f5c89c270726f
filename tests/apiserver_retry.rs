//! The apiserver answers overload with 429 and Retry-After (API Priority and Fairness). A real
//! apiserver cannot be made to do that on cue, so a tiny HTTP server plays it: the first create
//! of a Secret gets 429 `Retry-After: 1`, the retry succeeds. Checks that the controller's
//! client retries by itself and waits the server's time, not just its own short backoff.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;

async fn create(
    axum::extract::State(calls): axum::extract::State<Arc<AtomicUsize>>,
    body: String,
) -> Response {
    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
        let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too many requests", "reason": "TooManyRequests", "code": 429});
        let mut r = (StatusCode::TOO_MANY_REQUESTS, status.to_string()).into_response();
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_static("1"));
        return r;
    }
    let mut secret: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    secret["metadata"]["resourceVersion"] = json!("7");
    (StatusCode::CREATED, secret.to_string()).into_response()
}

#[tokio::test]
async fn secret_create_is_retried_after_the_servers_retry_after() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new()
        .route("/api/v1/namespaces/app/secrets", post(create))
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: fake, user: {{token: not-a-secret}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: app}}}}]\n"
        ),
    )
    .unwrap();
    // This test binary holds this one test, so no other thread reads the environment.
    point_kubeconfig_at(&kubeconfig);

    let client = vault_external_secrets::controller::kube_client()
        .await
        .unwrap();
    let api: Api<Secret> = Api::namespaced(client, "app");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap();
    let started = Instant::now();
    let created = api.create(&PostParams::default(), &secret).await.unwrap();
    let took = started.elapsed();

    assert_eq!(calls.load(Ordering::SeqCst), 2, "one 429, one retry");
    assert_eq!(created.metadata.resource_version.as_deref(), Some("7"));
    // kube's own first backoff is milliseconds; waiting ~1 s means Retry-After was honoured.
    assert!(took >= Duration::from_millis(900), "retried after {took:?}");
    assert!(took < Duration::from_secs(10), "retried after {took:?}");
}

fn point_kubeconfig_at(kubeconfig: &std::path::Path) {
    std::env::remove_var("KUBERNETES_SERVICE_HOST");
    std::env::set_var("KUBECONFIG", kubeconfig);
}
