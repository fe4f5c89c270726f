//! Change events from OpenBao's audit stream, end to end: an OpenBao with a UDP `socket` audit
//! device pointed at the controller (`AUDIT_LISTEN_ADDR`); a KV write reaches the Secret within
//! about a second although the object polls every 10 minutes; forged datagrams (garbage, huge
//! entries, a burst of 10,000 matching events) cause a bounded number of reads, counted in
//! OpenBao's file audit log, and no crash.

mod common;

use std::time::{Duration, Instant};

use common::e2e::{value, Controller, World};
use common::{udp_port_below_ephemeral, Bao};
use serde_json::json;

#[tokio::test]
#[ignore = "needs the e2e control plane: make e2e"]
async fn a_vault_write_reaches_the_secret_within_a_second_and_floods_are_bounded() {
    let w = World::get().await;
    let ns = w.namespace("audit-events").await;
    let events = format!("127.0.0.1:{}", udp_port_below_ephemeral());
    let bao = Bao::start_with(&format!(
        "audit \"socket\" \"events\" {{\n  options {{\n    address = \"{events}\"\n    socket_type = \"udp\"\n  }}\n}}\n"
    ))
    .await;
    bao.put_kv2("audit/app", json!({"v": "one"})).await;
    // A token of its own (not root: the audit counts below leave root's requests out).
    let token = bao
        .api(
            "POST",
            "auth/token/create",
            json!({"policies": ["readonly"], "ttl": "1h"}),
        )
        .await["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    w.kubectl_apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: token, namespace: {ns}}}\nstringData: {{token: {token}}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\nmetadata: {{name: vault, namespace: {ns}}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: kv\n      version: v2\n      auth:\n        tokenSecretRef: {{name: token, key: token}}\n---\napiVersion: external-secrets.io/v1\nkind: ExternalSecret\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  refreshInterval: 10m\n  secretStoreRef: {{name: vault, kind: SecretStore}}\n  data:\n  - {{secretKey: v, remoteRef: {{key: audit/app, property: v}}}}\n",
        bao.addr
    ));
    let ctl = Controller::start(
        &w,
        "audit-events",
        &[
            ("WATCHED_NAMESPACES", &ns),
            ("AUDIT_LISTEN_ADDR", &events),
            ("POLLER_INTERVAL_MILLISECONDS", "600000"),
        ],
    );
    ctl.wait_ready().await;
    w.wait_secret(&ns, "app", Duration::from_secs(30), |s| {
        value(s, "v").as_deref() == Some("one")
    })
    .await;

    // Three writes, each followed within about a second (the poll is 10 minutes away).
    let mut latencies = Vec::new();
    for v in ["two", "three", "four"] {
        tokio::time::sleep(Duration::from_millis(1200)).await; // past AUDIT_MIN_REFRESH
        let t = Instant::now();
        bao.put_kv2("audit/app", json!({ "v": v })).await;
        w.wait_secret(&ns, "app", Duration::from_secs(5), |s| {
            value(s, "v").as_deref() == Some(v)
        })
        .await;
        latencies.push(t.elapsed());
    }
    println!("Vault write -> Secret: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_secs(3)),
        "{latencies:?}"
    );

    // Forged datagrams: garbage, oversized entries, and a burst of matching events.
    let reads_before = bao.audit_requests("kv/data/audit/app");
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..100 {
        sock.send_to(b"\x00\xffnot json", &events).unwrap();
        sock.send_to(&vec![b'{'; 20_000], &events).unwrap();
    }
    let forged = serde_json::to_vec(
        &json!({"type": "request", "request": {"operation": "update",
        "path": "kv/data/audit/app", "mount_type": "kv", "data": {"data": "hmac-sha256:00"}}}),
    )
    .unwrap();
    let flood = Instant::now();
    for _ in 0..10_000 {
        let _ = sock.send_to(&forged, &events);
    }
    let flood_s = flood.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let reads = bao.audit_requests("kv/data/audit/app") - reads_before;
    // One event-driven read per second of flood (AUDIT_MIN_REFRESH), plus the edges.
    let bound = (flood_s + 3.0).ceil() as usize + 2;
    println!("10,000 forged events in {flood_s:.2} s -> {reads} reads (bound {bound})");
    assert!(
        reads <= bound,
        "{reads} reads for a forged flood (bound {bound})"
    );
    let metrics = ctl.metrics().await;
    for result in ["not_json", "too_large", "too_soon", "matched"] {
        assert!(
            metrics.contains(&format!(
                "vault_external_secrets_audit_events_total{{result=\"{result}\"}}"
            )),
            "{result}: {metrics}"
        );
    }
    assert!(metrics.contains("vault_external_secrets_change_event_seconds_count"));
    // Still serving: the Secret follows the next real write.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    bao.put_kv2("audit/app", json!({"v": "after-flood"})).await;
    w.wait_secret(&ns, "app", Duration::from_secs(5), |s| {
        value(s, "v").as_deref() == Some("after-flood")
    })
    .await;
    assert!(
        !ctl.logs().contains("hmac-sha256"),
        "nothing of an entry is logged"
    );
}
