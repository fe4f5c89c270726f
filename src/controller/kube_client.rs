//! The Kubernetes client: kube's own layers over one HTTP/2 connection to the apiserver.
//!
//! kube's default stack speaks HTTP/1.1 only, so every request in flight holds a connection of
//! its own, and each pooled connection keeps its TLS and read buffers for as long as it lives:
//! at 10,000 ExternalSecrets the controller held 35–37 connections and their buffers were the
//! largest part of its heap after the object store (docs/benchmarks.md). client-go multiplexes
//! over HTTP/2, and so do we: ALPN offers `h2` first and `http/1.1` second, so a server or proxy
//! that does not speak HTTP/2 still works. The layers are kube's own (`ConfigExt`), in the order
//! of `ClientBuilder::try_from`: base URI, retry of 429/503/504 honouring Retry-After, auth,
//! extra headers; the connector keeps kube's connect and write timeouts. kube's debug-level
//! request spans are left out. A configured proxy goes through kube's own stack unchanged.

use std::time::Duration;

use anyhow::Context;
use hyper_rustls::{FixedServerNameResolver, HttpsConnectorBuilder};
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ConfigExt};
use kube::{Client, Config};
use tower::retry::RetryLayer;
use tower::{BoxError, ServiceBuilder};

/// How often an idle HTTP/2 connection is pinged, and how long a ping may go unanswered before
/// the connection is dropped (client-go: 30 s and 15 s). Watches then notice a dead apiserver
/// connection without waiting for their own timeouts.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// The client the controller and the CLI use: in-cluster service account, else KUBECONFIG.
/// kube's retry layer retries 429, 503 and 504 with exponential backoff and waits at least the
/// server's Retry-After (its API Priority and Fairness answer to overload); tests/apiserver_retry.rs
/// holds that in place.
pub async fn kube_client() -> anyhow::Result<Client> {
    let config = Config::infer()
        .await
        .context("connecting to Kubernetes (in-cluster service account, else KUBECONFIG)")?;
    if config.proxy_url.is_some() {
        return Client::try_from(config).context("building the Kubernetes client");
    }
    multiplexed(config).context("building the Kubernetes client")
}

fn multiplexed(config: Config) -> anyhow::Result<Client> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let tls = HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http();
    let tls = match &config.tls_server_name {
        Some(name) => tls.with_server_name_resolver(FixedServerNameResolver::new(
            name.clone().try_into().context("tls-server-name")?,
        )),
        None => tls,
    };
    let mut connector = TimeoutConnector::new(tls.enable_all_versions().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);

    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_keep_alive_interval(PING_EVERY)
        .http2_keep_alive_timeout(PING_TIMEOUT)
        .build::<_, Body>(connector);

    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}
