//! Mock-apiserver scenarios (kube's `tower-test`, as kube-rs/controller-rs `fixtures.rs`) for
//! what a real apiserver cannot be made to produce on demand: a create that conflicts with a
//! Secret our watch did not show, a replica that lost the Lease mid-sync, and the exact
//! requests a report sends (status only on change, a repeated warning published once).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use serde_json::{json, Value};
use tower_test::mock::{self, Handle};

use super::{reconcile, report, Shared};
use crate::api::kes::crd::ExternalSecret;
use crate::config::Config;
use crate::engine::write::{self, Write};
use crate::engine::DesiredSecret;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::vault::{KvReader, TokenCache, VaultHttp};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn shared() -> (Arc<Shared>, ApiHandle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let config = Config::from_lookup(|_| None).unwrap();
    let metrics = Arc::new(Metrics::new().unwrap());
    let http = VaultHttp::new(&config, metrics.clone()).unwrap();
    let tokens = Arc::new(TokenCache::new(
        http,
        Arc::new(crate::vault::OwnTokenFile("/nonexistent".into())),
        Duration::from_secs(30),
    ));
    let kv = KvReader::new(tokens, Duration::from_secs(1), Duration::from_secs(1));
    let reporter = Reporter {
        controller: "test".into(),
        instance: None,
    };
    let shared = Shared::new(client, config, kv, metrics, reporter);
    shared.set_leading(true);
    (Arc::new(shared), handle)
}

fn es(status: Value) -> ExternalSecret {
    let mut es: ExternalSecret = serde_json::from_value(json!({
        "apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "app", "namespace": "team", "uid": "uid-1", "generation": 1},
        "spec": {"vaultRole": "r", "data": [{"name": "v", "key": "kv/app"}]},
        "status": status,
    }))
    .unwrap();
    es.metadata.resource_version = Some("1".into());
    es
}

fn desired() -> DesiredSecret {
    let mut d = DesiredSecret {
        name: "app".into(),
        namespace: "team".into(),
        type_: "Opaque".into(),
        labels: Default::default(),
        annotations: Default::default(),
        data: [("v".to_string(), k8s_openapi::ByteString(b"x".to_vec()))].into(),
        owner: Default::default(),
        policy: crate::engine::WritePolicy::owner(),
    };
    d.owner.uid = "uid-1".into();
    d.owner.controller = Some(true);
    d
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

/// Answers the next request after checking its method and path; returns its body.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    answer: Response<Body>,
) -> Value {
    let (req, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .unwrap_or_else(|_| panic!("no {method} {path}"))
        .expect("the client went away");
    assert_eq!((req.method(), req.uri().path()), (&method, path));
    let body = req.into_body().collect_bytes().await.unwrap();
    send.send_response(answer);
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// Asserts that nothing more is asked of the apiserver.
async fn expect_nothing(handle: &mut ApiHandle) {
    if let Ok(Some((req, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected {} {}", req.method(), req.uri().path());
    }
}

/// The task's result; a task still waiting for an answer means the code sent a request the
/// scenario did not expect.
async fn finished<T>(task: tokio::task::JoinHandle<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("still waiting: a request the scenario did not expect")
        .unwrap()
}

fn status_409() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "secrets \"app\" already exists"})
}

#[tokio::test]
async fn create_conflict_reads_the_secret_and_leaves_a_foreign_one() {
    let (shared, mut handle) = shared();
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(shared.client.clone(), "team");
    let d = desired();
    let writing = tokio::spawn(async move {
        // Our watch showed no Secret: create straight away.
        write::apply(&api, &d, true, |_, _| Ok(())).await
    });
    expect(
        &mut handle,
        Method::POST,
        "/api/v1/namespaces/team/secrets",
        respond(StatusCode::CONFLICT, status_409()),
    )
    .await;
    let foreign = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": "team", "resourceVersion": "5"}, "data": {"v": "eQ=="}});
    expect(
        &mut handle,
        Method::GET,
        "/api/v1/namespaces/team/secrets/app",
        respond(StatusCode::OK, foreign),
    )
    .await;
    let r = finished(writing).await;
    assert!(matches!(r, Err(Error::SecretNotOwned(_))), "{r:?}");
    expect_nothing(&mut handle).await;
}

#[tokio::test]
async fn a_replica_that_lost_the_lease_does_not_write() {
    let (shared, mut handle) = shared();
    shared.set_leading(false);
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(shared.client.clone(), "team");
    let d = desired();
    let s = shared.clone();
    let writing = tokio::spawn(async move {
        write::apply(&api, &d, false, |decision, existing| {
            reconcile::allow_write(&s, "uid-1", &desired(), decision, existing, false)
        })
        .await
    });
    expect(&mut handle, Method::GET, "/api/v1/namespaces/team/secrets/app",
        respond(StatusCode::NOT_FOUND, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))).await;
    let r = finished(writing).await;
    assert!(matches!(r, Err(Error::NotLeader)), "{r:?}");
    expect_nothing(&mut handle).await;
}

#[tokio::test]
async fn status_is_written_only_on_change_and_a_warning_once() {
    let (shared, mut handle) = shared();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let in_sync = json!({"lastSync": now, "status": "SUCCESS", "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                        "message": "Secret is in sync with Vault", "lastTransitionTime": now}]});
    // Nothing changed: no request at all.
    report::report(
        &es(in_sync.clone()),
        "uid-1",
        &shared,
        Ok(&Write::Unchanged),
    )
    .await;
    expect_nothing(&mut handle).await;

    // A failure: one status patch and one Warning Event.
    let failure = Error::InvalidSpec("boom".into());
    let s = shared.clone();
    let before = in_sync.clone();
    let first =
        tokio::spawn(async move { report::report(&es(before), "uid-1", &s, Err(&failure)).await });
    let patch = expect(&mut handle, Method::PATCH, "/apis/kubernetes-client.io/v1/namespaces/team/externalsecrets/app/status",
        respond(StatusCode::OK, json!({"apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret", "metadata": {"name": "app", "namespace": "team"}, "spec": {}}))).await;
    assert_eq!(patch["status"]["status"], "ERROR, boom");
    let event = expect(&mut handle, Method::POST, "/apis/events.k8s.io/v1/namespaces/team/events",
        respond(StatusCode::CREATED, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "team"}, "eventTime": null}))).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("SyncFailed"))
    );
    finished(first).await;

    // The same failure again, status already saying so: nothing.
    let failed_status = json!({"lastSync": now, "status": "ERROR, boom", "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec", "message": "boom", "lastTransitionTime": now}]});
    report::report(
        &es(failed_status),
        "uid-1",
        &shared,
        Err(&Error::InvalidSpec("boom".into())),
    )
    .await;
    expect_nothing(&mut handle).await;
}

/// Up to `runner::STARTED_SYNCS` admitted syncs wait at the gate at once, each a task holding
/// its future: that future stays small (an `async fn` around the sync held it twice over).
#[tokio::test]
async fn a_sync_waiting_at_the_gate_stays_small() {
    let (shared, _handle) = shared();
    let ctx = Arc::new(super::Context {
        shared,
        secrets: Default::default(),
    });
    let obj = Arc::new(super::stored::Stored::new(es(json!(null))));
    let sync = super::runner::sync_once(
        obj,
        ctx,
        super::gate::Lane::Urgent,
        None,
        tokio::time::Instant::now(),
    );
    let size = std::mem::size_of_val(&sync);
    assert!(size <= 320, "a started sync's future is {size} bytes");
}
