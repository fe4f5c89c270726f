//! `/metrics`, `/healthz` and `/readyz` on `METRICS_PORT`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

#[derive(Default)]
pub struct Health {
    /// The controller loops run.
    pub alive: AtomicBool,
    /// Every initial watch list has been seen.
    pub ready: AtomicBool,
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(AppState { metrics, health })
}

pub async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, health: Arc<Health>) {
    if let Err(e) = axum::serve(listener, router(metrics, health)).await {
        tracing::error!(error = %e, "metrics server stopped");
    }
}

/// The registry's families, then the per-object series streamed in pieces: a scrape never holds
/// the whole text (~3 MiB at 10,000 KES objects).
async fn metrics_handler(State(s): State<AppState>) -> Response {
    match Metrics::scrape(s.metrics) {
        Ok(pieces) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            Body::from_stream(futures::stream::iter(pieces.map(Ok::<_, Infallible>))),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            format!("encoding metrics: {e}"),
        )
            .into_response(),
    }
}

async fn healthz(State(s): State<AppState>) -> impl IntoResponse {
    flag(s.health.alive.load(Ordering::Relaxed))
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    flag(s.health.ready.load(Ordering::Relaxed))
}

fn flag(ok: bool) -> (StatusCode, &'static str) {
    if ok {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Over a real connection: the streamed body is the whole exposition, every object once.
    #[tokio::test]
    async fn metrics_are_streamed_whole() {
        let metrics = Arc::new(Metrics::new().unwrap());
        // Several pieces of both APIs' series.
        for i in 0..700 {
            let ns = format!("ns-{}", i % 7);
            metrics
                .per_object
                .record(&ns, &format!("es-{i}"), "vault", i % 3 > 0);
            metrics
                .eso_per_object
                .record(&ns, &format!("eso-{i}"), true);
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, metrics.clone(), Arc::default()));
        let resp = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(resp.status(), reqwest::StatusCode::OK);
        let body = resp.text().await.unwrap();
        // The process's own figures (CPU, RSS) move between two gathers.
        let steady = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with("process_"))
                .map(str::to_string)
                .collect()
        };
        assert!(
            steady(&body) == steady(&metrics.encode().unwrap()),
            "streamed text differs from the whole"
        );
        assert_eq!(
            body.lines()
                .filter(|l| l.starts_with("kubernetes_external_secrets_last_sync_call_state{"))
                .count(),
            700
        );
        assert_eq!(
            body.lines()
                .filter(|l| l.starts_with("externalsecret_sync_calls_total{"))
                .count(),
            700
        );
        assert!(body.contains("# TYPE vault_external_secrets_status_writes_total counter"));
    }
}
