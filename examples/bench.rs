//! The scale benchmark (`make bench N=10000`), run against the e2e world (`e2e/up.sh`): N
//! ExternalSecrets across 10 namespaces, 3 Vault roles, KV v1 and v2, 2,000 distinct Vault
//! paths, 1–3 data items each, the controller as a separate process.
//!
//! Prints, and appends to docs/benchmarks.md: apply → all synced vs. the apiserver's raw Secret
//! create rate; Vault requests and apiserver writes per steady-state cycle (from OpenBao's and
//! the apiserver's audit logs, cross-checked with the controller's metrics); change → Secret
//! latency p50/p99 over 100 paths; peak RSS and CPU seconds per cycle.
//!
//! `--check` (the CI run, small N) fails unless the deterministic counts hold: logins = roles,
//! Vault reads per cycle = distinct paths, no lookup-self, zero Secret and status writes in
//! steady state. Times are reported, never asserted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use serde_json::{json, Value};

const NAMESPACES: usize = 10;
const ROLES: [&str; 3] = ["k8s-role", "bench-role-2", "bench-role-3"];
const CONTROLLER_USER: &str = "system:serviceaccount:vault-external-secrets:vault-external-secrets";

struct Args {
    n: usize,
    paths: usize,
    poll_ms: u64,
    cycles: u32,
    changes: usize,
    check: bool,
    controller: String,
    record: Option<String>,
}

fn args() -> Result<Args> {
    let mut a = Args {
        n: 1000,
        paths: 2000,
        poll_ms: 30_000,
        cycles: 3,
        changes: 100,
        check: false,
        controller: String::new(),
        record: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().context("missing value");
        match k.as_str() {
            "--n" => a.n = v()?.parse()?,
            "--paths" => a.paths = v()?.parse()?,
            "--poll-ms" => a.poll_ms = v()?.parse()?,
            "--cycles" => a.cycles = v()?.parse()?,
            "--changes" => a.changes = v()?.parse()?,
            "--controller" => a.controller = v()?,
            "--record" => a.record = Some(v()?),
            "--check" => a.check = true,
            other => bail!("unknown argument {other}"),
        }
    }
    if a.controller.is_empty() {
        bail!("--controller <path to the vault-external-secrets binary> is required");
    }
    Ok(a)
}

fn env(k: &str) -> Result<String> {
    std::env::var(k).with_context(|| format!("{k} not set: source target/e2e/env (e2e/up.sh)"))
}

/// Which Vault path ExternalSecret `i` reads, under which role, and how many items.
fn layout(i: usize, paths: usize) -> (usize, &'static str, usize) {
    // A multiplicative spread so consecutive objects do not share a path.
    let path = (i * 7919 + i / paths) % paths;
    (path, ROLES[path % ROLES.len()], 1 + (i % 3))
}

fn vault_key(path: usize) -> String {
    // Even paths on the KV v1 mount, odd ones on KV v2 (natural key form).
    if path.is_multiple_of(2) {
        format!("secret/bench/p{path}")
    } else {
        format!("kv/bench/p{path}")
    }
}

struct Bao {
    addr: String,
    http: reqwest::Client,
}

impl Bao {
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<()> {
        let r = self
            .http
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", "root")
            .json(&body)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "{path}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    async fn put(&self, path: usize, value: &str) -> Result<()> {
        let fields = json!({"a": value, "b": format!("b-{path}"), "c": format!("c-{path}")});
        if path.is_multiple_of(2) {
            self.call(
                reqwest::Method::PUT,
                &format!("secret/bench/p{path}"),
                fields,
            )
            .await
        } else {
            self.call(
                reqwest::Method::PUT,
                &format!("kv/data/bench/p{path}"),
                json!({ "data": fields }),
            )
            .await
        }
    }
}

#[derive(Default, Debug, Clone, Copy)]
struct VaultCounts {
    login: u64,
    renew: u64,
    lookup: u64,
    read: u64,
}

fn parse_time(v: &Value, key: &str) -> Option<DateTime<Utc>> {
    v.get(key)?.as_str()?.parse().ok()
}

/// Requests by the controller (not the root token) in OpenBao's audit log within the window.
fn vault_counts(log: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<VaultCounts> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    let mut c = VaultCounts::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["type"] != "request" {
            continue;
        }
        let Some(t) = parse_time(&v, "time") else {
            continue;
        };
        if t < from || t >= to {
            continue;
        }
        if v["auth"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "root"))
        {
            continue;
        }
        let path = v["request"]["path"].as_str().unwrap_or_default();
        if path.ends_with("/login") {
            c.login += 1;
        } else if path == "auth/token/renew-self" {
            c.renew += 1;
        } else if path == "auth/token/lookup-self" {
            c.lookup += 1;
        } else if v["request"]["operation"] == "read" {
            c.read += 1;
        }
    }
    Ok(c)
}

#[derive(Default, Debug, Clone, Copy)]
struct ApiWrites {
    secret: u64,
    status: u64,
    event: u64,
}

/// The controller's writes in the apiserver's audit log (Metadata level) within the window.
fn api_writes(log: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<ApiWrites> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {log}"))?;
    let mut w = ApiWrites::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["stage"] != "ResponseComplete" || v["user"]["username"] != CONTROLLER_USER {
            continue;
        }
        if !matches!(v["verb"].as_str(), Some("create" | "update" | "patch")) {
            continue;
        }
        let Some(t) = parse_time(&v, "requestReceivedTimestamp") else {
            continue;
        };
        if t < from || t >= to {
            continue;
        }
        match (
            v["objectRef"]["resource"].as_str(),
            v["objectRef"]["subresource"].as_str(),
        ) {
            (Some("secrets"), _) => w.secret += 1,
            (Some("externalsecrets"), Some("status")) => w.status += 1,
            (Some("events"), _) => w.event += 1,
            _ => {}
        }
    }
    Ok(w)
}

struct Metrics(String);

impl Metrics {
    async fn scrape(port: u16) -> Result<Metrics> {
        Ok(Metrics(
            reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
                .await?
                .text()
                .await?,
        ))
    }
    fn get(&self, series: &str) -> f64 {
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    }
    fn secret_writes(&self) -> f64 {
        self.get(r#"vault_external_secrets_secret_writes_total{kind="create"}"#)
            + self.get(r#"vault_external_secrets_secret_writes_total{kind="update"}"#)
    }
}

/// Peak RSS (KiB) and CPU seconds of a process, from /proc.
fn proc_stats(pid: u32) -> Result<(u64, f64)> {
    let hwm = status_kib(pid, "VmHWM").ok_or_else(|| anyhow::anyhow!("no /proc/{pid}/status"))?;
    Ok((hwm, cpu_seconds(&format!("/proc/{pid}/stat"))))
}

/// A `kB` field of `/proc/<pid>/status`; `None` once the process is gone.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// User + system CPU seconds from a `/proc/<pid>/stat` file (0 if it is gone).
fn cpu_seconds(stat_path: &str) -> f64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used so far by the processes of the control plane, OpenBao, the controller
/// (`pid`) and this benchmark: where the 2 cores go during the initial sync.
fn cpu_by_process(pid: u32) -> Vec<(&'static str, f64)> {
    let by_comm = |comm: &str| -> f64 {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .chars()
                    .all(|c| c.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
            })
            .map(|e| cpu_seconds(&e.path().join("stat").to_string_lossy()))
            .sum()
    };
    vec![
        ("controller", cpu_seconds(&format!("/proc/{pid}/stat"))),
        ("kube-apiserver", by_comm("kube-apiserver")),
        ("etcd", by_comm("etcd")),
        ("OpenBao", by_comm("bao")),
        ("benchmark client", cpu_seconds("/proc/self/stat")),
    ]
}

/// Highest VmRSS (KiB) seen in each phase of the run, sampled every 200 ms: where the peak
/// comes from (the initial burst or the steady state).
#[derive(Clone, Default)]
struct RssPhases {
    phase: Arc<AtomicUsize>,
    max_kib: Arc<[AtomicU64; 3]>,
}

impl RssPhases {
    const INITIAL: usize = 0;
    const STEADY: usize = 1;
    const CHANGES: usize = 2;

    fn start(pid: u32) -> Self {
        let me = RssPhases::default();
        let s = me.clone();
        tokio::spawn(async move {
            while let Some(rss) = status_kib(pid, "VmRSS") {
                s.max_kib[s.phase.load(Ordering::Relaxed)].fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        me
    }

    fn enter(&self, phase: usize) {
        self.phase.store(phase, Ordering::Relaxed);
    }

    fn mib(&self, phase: usize) -> f64 {
        self.max_kib[phase].load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// Creates the N ExternalSecrets, 32 in flight, in namespaces `{prefix}-0` … `{prefix}-9`.
async fn create_external_secrets(client: &Client, a: &Args, prefix: &str) -> Result<()> {
    futures::stream::iter(0..a.n)
        .map(|i| {
            let api: Api<vault_external_secrets::api::kes::crd::ExternalSecret> =
                Api::namespaced(client.clone(), &format!("{prefix}-{}", i % NAMESPACES));
            async move {
                let (path, role, items) = layout(i, a.paths);
                api.create(
                    &PostParams::default(),
                    &external_secret(i, path, role, items)?,
                )
                .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

/// The benchmark's ExternalSecret number `i`: `items` properties of Vault path `path`.
fn external_secret(
    i: usize,
    path: usize,
    role: &str,
    items: usize,
) -> Result<vault_external_secrets::api::kes::crd::ExternalSecret> {
    let data: Vec<Value> = ["a", "b", "c"][..items]
        .iter()
        .map(|p| json!({"name": p, "key": vault_key(path), "property": p}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "kubernetes-client.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": format!("es-{i}")},
        "spec": {"backendType": "vault", "vaultRole": role,
                 "kvVersion": if path.is_multiple_of(2) { 1 } else { 2 }, "data": data}
    }))?)
}

/// The controller binary's build, as `target-triple/profile` (or the path when not under a
/// cargo target dir): says whether the image's static musl binary was measured.
fn controller_build(path: &str) -> String {
    let parts: Vec<&str> = path.rsplit('/').skip(1).take(2).collect();
    match parts.as_slice() {
        [profile, triple] if triple.contains("-linux-") => format!("{triple}/{profile}"),
        [profile, _] => format!("host/{profile}"),
        _ => path.to_string(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn ensure_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    if api.get_opt(name).await?.is_none() {
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}}))?,
        )
        .await?;
    }
    Ok(())
}

async fn count_synced(client: &Client) -> Result<usize> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=vault-external-secrets");
    Ok(secrets.list_metadata(&lp).await?.items.len())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let client = Client::try_default().await?;
    let bao = Bao {
        addr: env("BAO_ADDR")?,
        http: reqwest::Client::new(),
    };
    let vault_audit = env("BAO_AUDIT_LOG")?;
    let api_audit = env("APISERVER_AUDIT_LOG")?;
    let e2e_dir = env("E2E_DIR")?;
    eprintln!("bench: N={} paths={} poll={}ms", a.n, a.paths, a.poll_ms);

    // Vault: roles 2 and 3 (k8s-role exists), and the paths.
    for role in &ROLES[1..] {
        bao.call(
            reqwest::Method::POST,
            &format!("auth/kubernetes/role/{role}"),
            json!({"bound_service_account_names": ["vault-external-secrets"],
                   "bound_service_account_namespaces": ["vault-external-secrets"],
                   "policies": ["readonly"], "ttl": "1h"}),
        )
        .await?;
    }
    let used_paths: HashSet<usize> = (0..a.n).map(|i| layout(i, a.paths).0).collect();
    futures::stream::iter(0..a.paths)
        .map(|p| {
            let bao = &bao;
            async move { bao.put(p, &format!("a-{p}")).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    for ns in 0..NAMESPACES {
        ensure_namespace(&client, &format!("bench-{ns}")).await?;
        ensure_namespace(&client, &format!("bench-raw-{ns}")).await?;
    }

    // Baseline: the apiserver's raw rate for N Secret creates by a plain client.
    let raw_start = Instant::now();
    futures::stream::iter(0..a.n)
        .map(|i| {
            let api: Api<Secret> =
                Api::namespaced(client.clone(), &format!("bench-raw-{}", i % NAMESPACES));
            async move {
                let s: Secret = serde_json::from_value(json!({
                    "metadata": {"name": format!("raw-{i}")},
                    "stringData": {"a": format!("a-{i}"), "b": "b", "c": "c"}
                }))?;
                api.create(&PostParams::default(), &s).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let raw = raw_start.elapsed();
    eprintln!("raw Secret creates: {raw:?}");

    // Second baseline, for what bounds the ratio: the same client creating N ExternalSecrets
    // (custom resources, schema-validated) with no controller running; deleted again before the
    // controller starts, so they cost it nothing.
    let raw_es_start = Instant::now();
    create_external_secrets(&client, &a, "bench-raw").await?;
    let raw_es = raw_es_start.elapsed();
    eprintln!("raw ExternalSecret creates: {raw_es:?}");
    for ns in 0..NAMESPACES {
        let api: Api<vault_external_secrets::api::kes::crd::ExternalSecret> =
            Api::namespaced(client.clone(), &format!("bench-raw-{ns}"));
        api.delete_collection(&Default::default(), &ListParams::default())
            .await?;
    }

    // The controller, release build, its own ServiceAccount's credentials.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let log = std::fs::File::create(format!("{e2e_dir}/logs/controller-bench.log"))?;
    let mut child: Child = Command::new(&a.controller)
        .env_clear()
        .env("KUBECONFIG", env("CONTROLLER_KUBECONFIG")?)
        .env("VAULT_ADDR", env("VAULT_ADDR")?)
        .env("VAULT_JWT_PATH", env("VAULT_JWT_PATH")?)
        .env("METRICS_PORT", port.to_string())
        .env("POLLER_INTERVAL_MILLISECONDS", a.poll_ms.to_string())
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    let pid = child.id();
    let result = run(
        &a,
        &client,
        &bao,
        &vault_audit,
        &api_audit,
        port,
        pid,
        raw,
        raw_es,
        &used_paths,
    )
    .await;
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    a: &Args,
    client: &Client,
    bao: &Bao,
    vault_audit: &str,
    api_audit: &str,
    port: u16,
    pid: u32,
    raw: Duration,
    raw_es: Duration,
    used_paths: &HashSet<usize>,
) -> Result<()> {
    // Ready?
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        if Instant::now() > deadline {
            bail!("controller not ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let rss = RssPhases::start(pid);
    let cpu_before = cpu_by_process(pid);
    // Apply N ExternalSecrets; time until all N Secrets exist.
    let apply_start = Instant::now();
    let mut targets: BTreeMap<usize, (String, String)> = BTreeMap::new(); // path -> an ES using it
    for i in 0..a.n {
        let (path, _, _) = layout(i, a.paths);
        targets
            .entry(path)
            .or_insert((format!("bench-{}", i % NAMESPACES), format!("es-{i}")));
    }
    create_external_secrets(client, a, "bench").await?;
    let applied = apply_start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let m = Metrics::scrape(port).await?;
        if m.get(r#"vault_external_secrets_secret_writes_total{kind="create"}"#) as usize >= a.n {
            break;
        }
        if Instant::now() > deadline {
            bail!("not all Secrets synced after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = apply_start.elapsed();
    let cpu_sync: Vec<String> = cpu_by_process(pid)
        .into_iter()
        .zip(cpu_before)
        .map(|((who, after), (_, before))| format!("{who} {:.1}", after - before))
        .collect();
    let listed = count_synced(client).await?;
    eprintln!("applied in {applied:?}, all synced in {synced:?} ({listed} Secrets listed)");
    if listed < a.n {
        bail!("{listed} Secrets listed, {} expected", a.n);
    }

    // Steady state: skip one cycle (first polls realign to their phase), then measure.
    let interval = Duration::from_millis(a.poll_ms);
    tokio::time::sleep(interval + Duration::from_secs(2)).await;
    rss.enter(RssPhases::STEADY);
    let m0 = Metrics::scrape(port).await?;
    let (_, cpu0) = proc_stats(pid)?;
    let from = Utc::now();
    tokio::time::sleep(interval * a.cycles).await;
    let to = Utc::now();
    let (_, cpu1) = proc_stats(pid)?;
    let m1 = Metrics::scrape(port).await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // audit logs are written asynchronously
    let vault = vault_counts(vault_audit, from, to)?;
    let writes = api_writes(api_audit, from, to)?;
    let cycles = f64::from(a.cycles);
    let metric_reads = m1
        .get(r#"vault_external_secrets_vault_requests_total{operation="read",outcome="success"}"#)
        - m0.get(
            r#"vault_external_secrets_vault_requests_total{operation="read",outcome="success"}"#,
        );
    let metric_secret_writes = m1.secret_writes() - m0.secret_writes();
    let metric_status = m1.get("vault_external_secrets_status_writes_total")
        - m0.get("vault_external_secrets_status_writes_total");
    let total_logins = m1
        .get(r#"vault_external_secrets_vault_requests_total{operation="login",outcome="success"}"#);
    let cpu_per_cycle = (cpu1 - cpu0) / cycles;
    rss.enter(RssPhases::CHANGES);

    // Change → Secret latency over `changes` paths.
    let secrets: Api<Secret> = Api::all(client.clone());
    let wc =
        watcher::Config::default().labels("app.kubernetes.io/managed-by=vault-external-secrets");
    let (seen_tx, mut seen_rx) =
        tokio::sync::mpsc::unbounded_channel::<(String, String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = watcher(secrets, wc)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(Ok(s)) = stream.next().await {
            let key = format!(
                "{}/{}",
                s.metadata.namespace.clone().unwrap_or_default(),
                s.metadata.name.clone().unwrap_or_default()
            );
            let val = s
                .data
                .as_ref()
                .and_then(|d| d.get("a"))
                .map(|b| String::from_utf8_lossy(&b.0).into_owned());
            if let Some(v) = val {
                let _ = seen_tx.send((key, v, Instant::now()));
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(3)).await; // the watch's initial list
    let chosen: Vec<(usize, (String, String))> = targets
        .into_iter()
        .step_by((used_paths.len() / a.changes.max(1)).max(1))
        .take(a.changes)
        .collect();
    let mut expected: HashMap<String, (String, Instant)> = HashMap::new();
    let spacing = interval / (chosen.len().max(1) as u32);
    for (k, (path, (ns, name))) in chosen.iter().enumerate() {
        let v = format!("changed-{k}-{}", Utc::now().timestamp_millis());
        bao.put(*path, &v).await?;
        expected.insert(format!("{ns}/{name}"), (v, Instant::now()));
        tokio::time::sleep(spacing).await;
    }
    let mut latencies = Vec::new();
    let deadline = Instant::now() + interval * 2 + Duration::from_secs(10);
    while !expected.is_empty() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), seen_rx.recv()).await {
            Ok(Some((key, val, at))) => {
                if expected.get(&key).is_some_and(|(v, _)| *v == val) {
                    if let Some((_, t)) = expected.remove(&key) {
                        latencies.push(at.saturating_duration_since(t));
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {}
        }
    }
    watch.abort();
    let missed = expected.len();
    latencies.sort();
    let (rss_kib, _) = proc_stats(pid)?;

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let distinct = used_paths.len() as f64;
    let ratio = synced.as_secs_f64() / raw.as_secs_f64();
    let rows = vec![
        (
            "ExternalSecrets / distinct Vault paths / roles",
            format!("{} / {} / {}", a.n, used_paths.len(), ROLES.len()),
        ),
        (
            "raw Secret creates (plain client, 32 in flight)",
            format!("{:.1} s", raw.as_secs_f64()),
        ),
        (
            "raw ExternalSecret creates (same client, no controller running)",
            format!("{:.1} s", raw_es.as_secs_f64()),
        ),
        (
            "apply → all Secrets synced",
            format!(
                "{:.1} s ({ratio:.2}× raw Secret creates, {:.2}× raw ExternalSecret creates)",
                synced.as_secs_f64(),
                synced.as_secs_f64() / raw_es.as_secs_f64()
            ),
        ),
        (
            "of which: the N ExternalSecret creates themselves",
            format!("{:.1} s", applied.as_secs_f64()),
        ),
        (
            "CPU seconds during apply → synced, by process",
            format!(
                "{} (of {:.0} available on {} cores)",
                cpu_sync.join(" / "),
                synced.as_secs_f64() * cores as f64,
                cores
            ),
        ),
        (
            "Vault logins (total since start)",
            format!("{total_logins}"),
        ),
        (
            "Vault per steady cycle: login / renew / lookup / read (audit log)",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1}",
                vault.login as f64 / cycles,
                vault.renew as f64 / cycles,
                vault.lookup as f64 / cycles,
                vault.read as f64 / cycles
            ),
        ),
        (
            "Vault reads per cycle (metrics, cross-check)",
            format!("{:.1}", metric_reads / cycles),
        ),
        (
            "apiserver writes per steady cycle: Secret / status / Event (audit log)",
            format!(
                "{:.1} / {:.1} / {:.1}",
                writes.secret as f64 / cycles,
                writes.status as f64 / cycles,
                writes.event as f64 / cycles
            ),
        ),
        (
            "Secret / status writes per cycle (metrics, cross-check)",
            format!(
                "{:.1} / {:.1}",
                metric_secret_writes / cycles,
                metric_status / cycles
            ),
        ),
        (
            "change → Secret latency p50 / p99",
            format!(
                "{:.2} s / {:.2} s over {} changes ({missed} missed)",
                percentile(&latencies, 0.5).as_secs_f64(),
                percentile(&latencies, 0.99).as_secs_f64(),
                latencies.len()
            ),
        ),
        (
            "controller peak RSS",
            format!("{:.1} MiB", rss_kib as f64 / 1024.0),
        ),
        (
            "controller RSS max: initial sync / steady cycles / changes",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                rss.mib(RssPhases::INITIAL),
                rss.mib(RssPhases::STEADY),
                rss.mib(RssPhases::CHANGES)
            ),
        ),
        (
            "controller CPU per steady cycle",
            format!("{cpu_per_cycle:.2} s"),
        ),
    ];
    let mut table = String::from("| figure | value |\n|---|---|\n");
    for (k, v) in &rows {
        table.push_str(&format!("| {k} | {v} |\n"));
    }
    println!("{table}");

    if let Some(path) = &a.record {
        let machine = format!(
            "{} cores ({}), {} GiB",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| c.lines().find_map(|l| l
                    .strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
                .unwrap_or_default(),
            std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|m| m
                    .lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|k| k.parse::<u64>().ok()))
                .map(|k| k / 1024 / 1024)
                .unwrap_or(0),
        );
        let entry = format!(
            "\n## {} — N = {}\n\nMachine: {machine}. Command: `make bench N={}` (poll interval {} ms, {} steady cycles). Controller: `{}`.\n\n{table}",
            Utc::now().format("%Y-%m-%d %H:%M UTC"), a.n, a.n, a.poll_ms, a.cycles,
            controller_build(&a.controller)
        );
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(entry.as_bytes())?;
        eprintln!("appended to {path}");
    }

    if a.check {
        let reads = vault.read as f64 / cycles;
        // (holds, what failed). One read per distinct path per cycle; a path whose slot falls
        // exactly on the window edge can count once more or less.
        let checks = [
            (
                total_logins == ROLES.len() as f64,
                format!("logins {total_logins} != roles {}", ROLES.len()),
            ),
            (
                vault.login + vault.lookup == 0,
                format!(
                    "steady state: {} logins, {} lookups",
                    vault.login, vault.lookup
                ),
            ),
            (
                (reads - distinct).abs() <= (distinct * 0.05).max(2.0),
                format!("reads per cycle {reads} != distinct paths {distinct}"),
            ),
            (
                writes.secret == 0 && metric_secret_writes == 0.0,
                format!(
                    "steady state Secret writes: audit {} metrics {metric_secret_writes}",
                    writes.secret
                ),
            ),
            (
                writes.status == 0 && metric_status == 0.0,
                format!(
                    "steady state status writes: audit {} metrics {metric_status}",
                    writes.status
                ),
            ),
            (
                missed == 0,
                format!("{missed} Vault changes never reached their Secret"),
            ),
        ];
        let failures: Vec<&String> = checks
            .iter()
            .filter(|(ok, _)| !ok)
            .map(|(_, why)| why)
            .collect();
        println!(
            "bench: {} passed, {} failed",
            checks.len() - failures.len(),
            failures.len()
        );
        if !failures.is_empty() {
            bail!(
                "benchmark counts: {}",
                failures
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
    }
    Ok(())
}
