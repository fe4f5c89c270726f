//! The scale benchmark (`make bench N=10000`), run against the e2e world (`e2e/up.sh`): N
//! ExternalSecrets across 10 namespaces, 3 Vault roles, KV v1 and v2, 2,000 distinct Vault
//! paths, 1–3 data items each, the controller as a separate process. `--api eso`: the same as
//! ESO `external-secrets.io/v1` objects through 3 ClusterSecretStores (`eso.rs`).
//!
//! Prints, and appends to docs/benchmarks.md: apply → all synced (the controller's Secret
//! creates, followed in the apiserver's audit log) vs. the apiserver's raw Secret create rate
//! and vs. the floor (the apiserver writes a sync needs, by plain clients, timed before and
//! after the sync); Vault requests and apiserver writes per steady-state cycle (from OpenBao's
//! and the apiserver's audit logs, cross-checked with the controller's metrics); change →
//! Secret latency p50/p99 over 100 paths; peak RSS and CPU seconds per cycle.
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
use vault_external_secrets::controller::{status_heartbeat, STATUS_HEARTBEAT};

mod audit;
mod eso;
mod plot;
mod procs;
mod record;
mod world;

use record::percentile;

use audit::{api_writes, vault_counts};
use procs::{cpu_by_process, proc_stats, RssPhases};
use world::{
    count_synced, create_external_secrets, ensure_namespace, floor_writes, layout, Bao, Metrics,
};

const NAMESPACES: usize = 10;
const ROLES: [&str; 3] = ["k8s-role", "bench-role-2", "bench-role-3"];
const CONTROLLER_USER: &str = "system:serviceaccount:vault-external-secrets:vault-external-secrets";

/// Which API's ExternalSecrets the run creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKind {
    Kes,
    Eso,
}

impl ApiKind {
    /// The label our Secrets of this API carry.
    pub fn secret_label(self) -> &'static str {
        match self {
            ApiKind::Kes => "app.kubernetes.io/managed-by=vault-external-secrets",
            ApiKind::Eso => "reconcile.external-secrets.io/managed=true",
        }
    }

    /// Namespace prefix of the run's objects.
    fn prefix(self) -> &'static str {
        match self {
            ApiKind::Kes => "bench",
            ApiKind::Eso => "bench-eso",
        }
    }

    /// `SERVE_APIS` of the controller.
    fn serve(self) -> &'static str {
        match self {
            ApiKind::Kes => "kes",
            ApiKind::Eso => "eso",
        }
    }
}

struct Args {
    api: ApiKind,
    /// Change events from OpenBao's audit stream (`AUDIT_EVENTS_ADDR`): the controller listens,
    /// the steady-state cycles are skipped, and the changes come 100 ms apart.
    audit: bool,
    n: usize,
    paths: usize,
    poll_ms: u64,
    cycles: u32,
    changes: usize,
    check: bool,
    /// `--template`: every ESO object renders a template (connection string, JSON file).
    template: bool,
    controller: String,
    record: Option<String>,
}

impl Args {
    /// Namespace prefix of the run's objects (the audit-events run has its own, next to the
    /// other runs' objects in the same world).
    fn prefix(&self) -> String {
        match (self.audit, self.template) {
            (true, _) => "bench-audit".into(),
            (false, true) => format!("{}-tpl", self.api.prefix()),
            (false, false) => self.api.prefix().into(),
        }
    }
}

fn args() -> Result<Args> {
    let mut a = Args {
        api: ApiKind::Kes,
        audit: false,
        n: 1000,
        paths: 2000,
        poll_ms: 30_000,
        cycles: 3,
        changes: 100,
        check: false,
        template: false,
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
            "--audit" => a.audit = true,
            "--template" => a.template = true,
            "--api" => {
                a.api = match v()?.as_str() {
                    "kes" => ApiKind::Kes,
                    "eso" => ApiKind::Eso,
                    other => bail!("--api {other}: kes or eso"),
                }
            }
            other => bail!("unknown argument {other}"),
        }
    }
    if a.controller.is_empty() {
        bail!("--controller <path to the vault-external-secrets binary> is required");
    }
    Ok(a)
}

fn env(k: &str) -> Result<String> {
    // Empty counts as unset: a world made with AUDIT_EVENTS=0 has no AUDIT_EVENTS_ADDR.
    std::env::var(k)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{k} not set: source target/e2e/env (e2e/up.sh)"))
}

#[tokio::main]
async fn main() -> Result<()> {
    // `--growth DIR`: only redraw DIR/growth.{md,svg} from DIR/runs.jsonl.
    let argv: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = argv.as_slice() {
        if flag == "--growth" {
            return plot::growth(std::path::Path::new(dir));
        }
    }
    let a = args()?;
    let client = Client::try_default().await?;
    let bao = Bao {
        addr: env("BAO_ADDR")?,
        http: reqwest::Client::new(),
    };
    let vault_audit = env("BAO_AUDIT_LOG")?;
    let api_audit = env("APISERVER_AUDIT_LOG")?;
    let e2e_dir = env("E2E_DIR")?;
    eprintln!(
        "bench: api={:?}{} N={} paths={} poll={}ms",
        a.api,
        if a.template { " (templated)" } else { "" },
        a.n,
        a.paths,
        a.poll_ms
    );

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
            async move { bao.put(p, &format!("a-{p}"), a.api).await }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    for ns in 0..NAMESPACES {
        ensure_namespace(&client, &format!("{}-{ns}", a.prefix())).await?;
        ensure_namespace(&client, &format!("bench-raw-{ns}")).await?;
    }
    if a.api == ApiKind::Eso {
        eso::create_stores(&client, &env("VAULT_ADDR")?).await?;
    }

    // A clean slate for the baselines (the other API's run may have left its raw Secrets and
    // the floor's Events).
    clear_raw(&client, &ListParams::default()).await?;
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
    delete_external_secrets(&client, "bench-raw").await?;
    // Also the ESO run's (kept apart: the floor below creates KES objects in the same place).
    for ns in 0..NAMESPACES {
        let api: Api<vault_external_secrets::api::eso::crd::ExternalSecret> =
            Api::namespaced(client.clone(), &format!("bench-raw-{ns}"));
        api.delete_collection(&Default::default(), &ListParams::default())
            .await?;
    }

    // Third baseline, the floor: every apiserver write a sync needs, done by plain clients under
    // the identities of a sync (the user's create as the admin, the rest as the controller's
    // ServiceAccount).
    let controller_client = Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(env("CONTROLLER_KUBECONFIG")?)?,
            &Default::default(),
        )
        .await?,
    )?;
    let floor = timed_floor(&client, &controller_client, &a).await?;
    let baselines = Baselines { raw, raw_es, floor };

    // The controller, release build, its own ServiceAccount's credentials; started once the
    // watch cache's hold on the floor's writes and deletes has passed, as for either floor.
    settle(&a).await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let log = std::fs::File::create(format!("{e2e_dir}/logs/controller-bench.log"))?;
    let mut cmd = Command::new(&a.controller);
    cmd.env_clear();
    if a.audit || a.template {
        // Only its own namespaces: the earlier runs' objects stay in the world (watching them
        // too, the templated run polled twice the objects and wrote their status heartbeats).
        let watched: Vec<String> = (0..NAMESPACES)
            .map(|i| format!("{}-{i}", a.prefix()))
            .collect();
        cmd.env("WATCHED_NAMESPACES", watched.join(","));
    }
    if a.audit {
        cmd.env("AUDIT_LISTEN_ADDR", env("AUDIT_EVENTS_ADDR")?);
    }
    let mut child: Child = cmd
        .env("KUBECONFIG", env("CONTROLLER_KUBECONFIG")?)
        .env("VAULT_ADDR", env("VAULT_ADDR")?)
        .env("VAULT_JWT_PATH", env("VAULT_JWT_PATH")?)
        .env("METRICS_PORT", port.to_string())
        .env("POLLER_INTERVAL_MILLISECONDS", a.poll_ms.to_string())
        .env("LOG_LEVEL", "info")
        .env("SERVE_APIS", a.api.serve())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()?;
    let result = run(
        &a,
        [&client, &controller_client],
        &bao,
        &vault_audit,
        &api_audit,
        port,
        &mut child,
        &baselines,
        &used_paths,
    )
    .await;
    stop(&mut child);
    result
}

/// Stops the controller (SIGTERM, as Kubernetes does) and waits for it to exit; a no-op once it
/// has.
fn stop(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
}

/// What the apiserver costs anyway, timed with the same client at the same concurrency, before
/// the controller starts.
struct Baselines {
    /// N plain Secret creates.
    raw: Duration,
    /// N ExternalSecret creates (no controller running).
    raw_es: Duration,
    /// The floor: the four writes a sync needs, per object, under the identities of a sync.
    floor: Floor,
}

/// One timing of the floor's writes.
struct Floor {
    time: Duration,
    /// CPU seconds by process while it ran.
    cpu: String,
}

/// Times the floor's writes (`floor_writes`) and the CPU seconds by process they cost, then
/// deletes what they made.
async fn timed_floor(user: &Client, controller: &Client, a: &Args) -> Result<Floor> {
    settle(a).await;
    let cpu_before = cpu_by_process(0);
    let start = Instant::now();
    floor_writes(user, controller, a, "bench-raw").await?;
    let time = start.elapsed();
    // Where the CPU goes when the apiserver does only the floor's writes (no controller, no
    // Vault): what the apply → synced split is compared with.
    let cpu: Vec<String> = cpu_by_process(0)
        .into_iter()
        .zip(cpu_before)
        .filter(|((who, _), _)| !matches!(*who, "controller" | "OpenBao"))
        .map(|((who, after), (_, before))| format!("{who} {:.1}", after - before))
        .collect();
    eprintln!("floor (ES create + Secret create + status patch + Event): {time:?}");
    delete_external_secrets(user, "bench-raw").await?;
    // The floor's Secrets go too, by the apiserver at once: left to the garbage collector (20
    // requests per second by default) they would be deleted during the measured run. Its Events
    // as well (the next floor creates them again).
    clear_raw(user, &ListParams::default().labels("bench=floor")).await?;
    Ok(Floor {
        time,
        cpu: cpu.join(" / "),
    })
}

/// How long kube-apiserver's watch cache holds on to a resource's events at least (its
/// `eventFreshDuration`): it keeps every event of the last 75 s, each with its object, and lets
/// older ones go only as new events arrive.
const WATCH_CACHE_FRESH: Duration = Duration::from_secs(75);

/// Waits out the watch cache's hold on the bench's last bulk writes before a timed phase (either
/// floor, the sync), so that each begins alike. Started sooner, a phase carries the previous
/// one's events in the apiserver's heap for its garbage collector to mark: the sync used to
/// begin seconds after the floor's deletes, the floor after it after minutes of quiet
/// (docs/benchmarks.md, part 1). Counts do not depend on it: `--check` skips the wait.
async fn settle(a: &Args) {
    if !a.check {
        tokio::time::sleep(WATCH_CACHE_FRESH + Duration::from_secs(5)).await;
    }
}

/// Deletes the baselines' Secrets that `secrets` selects and all their Events, in
/// `bench-raw-0` … `bench-raw-9`.
async fn clear_raw(client: &Client, secrets: &ListParams) -> Result<()> {
    for ns in 0..NAMESPACES {
        let ns = format!("bench-raw-{ns}");
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        api.delete_collection(&Default::default(), secrets).await?;
        let api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &ns);
        api.delete_collection(&Default::default(), &ListParams::default())
            .await?;
    }
    Ok(())
}

/// Deletes the ExternalSecrets of `{prefix}-0` … `{prefix}-9` (their owned Secrets follow).
async fn delete_external_secrets(client: &Client, prefix: &str) -> Result<()> {
    for ns in 0..NAMESPACES {
        let api: Api<vault_external_secrets::api::kes::crd::ExternalSecret> =
            Api::namespaced(client.clone(), &format!("{prefix}-{ns}"));
        api.delete_collection(&Default::default(), &ListParams::default())
            .await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    a: &Args,
    [client, controller_client]: [&Client; 2],
    bao: &Bao,
    vault_audit: &str,
    api_audit: &str,
    port: u16,
    child: &mut Child,
    baselines: &Baselines,
    used_paths: &HashSet<usize>,
) -> Result<()> {
    let pid = child.id();
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

    let cpu_before = cpu_by_process(pid);
    // Apply N ExternalSecrets; time until the apiserver has completed all N Secret creates.
    let mut creates = audit::CreateTail::from_end(api_audit, &a.prefix())?;
    let rss = RssPhases::start(pid);
    let mut timeline = plot::Timeline::default();
    let apply_start = Instant::now();
    let apply_start_utc = Utc::now();
    let mut targets: BTreeMap<usize, (String, String)> = BTreeMap::new(); // path -> an ES using it
    for i in 0..a.n {
        let (path, _, _) = layout(i, a.paths);
        targets.entry(path).or_insert((
            format!("{}-{}", a.prefix(), i % NAMESPACES),
            format!("es-{i}"),
        ));
    }
    create_external_secrets(client, a, &a.prefix()).await?;
    let applied = apply_start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600 + a.n as u64 / 100);
    loop {
        let created = creates.poll()?;
        timeline.synced.push((rss.now(), created as f64));
        if created >= a.n {
            break;
        }
        if Instant::now() > deadline {
            bail!("not all Secrets synced in time");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let synced = creates
        .last
        .and_then(|last| (last - apply_start_utc).to_std().ok())
        .context("no Secret create's completion time in the apiserver's audit log")?;
    timeline.marks.push((rss.now(), "all synced"));
    let cpu_sync: Vec<String> = cpu_by_process(pid)
        .into_iter()
        .zip(cpu_before)
        .map(|((who, after), (_, before))| format!("{who} {:.1}", after - before))
        .collect();
    let listed = count_synced(client, a.api, &a.prefix()).await?;
    eprintln!("applied in {applied:?}, all synced in {synced:?} ({listed} Secrets listed)");
    if listed < a.n {
        bail!("{listed} Secrets listed, {} expected", a.n);
    }

    // Steady state: skip one cycle (first polls realign to their phase), then measure. The
    // audit-events run measures change latency only (its poll is minutes long).
    let interval = Duration::from_millis(a.poll_ms);
    let steady = if a.audit { Duration::ZERO } else { interval };
    tokio::time::sleep(steady + Duration::from_secs(2)).await;
    // Beyond 15,000 objects the status heartbeat is stretched (`status_heartbeat`) and first
    // comes round that long after the first syncs: wait for it, so the measured cycles hold it.
    let heartbeat = status_heartbeat(a.n);
    if !a.audit && heartbeat > STATUS_HEARTBEAT {
        let settle = heartbeat.saturating_sub(apply_start.elapsed());
        eprintln!("waiting {settle:?} for the {heartbeat:?} status heartbeat to come round");
        tokio::time::sleep(settle).await;
    }
    rss.enter(RssPhases::STEADY);
    timeline.marks.push((rss.now(), "steady"));
    let m0 = Metrics::scrape(port).await?;
    let (_, cpu0) = proc_stats(pid)?;
    let from = Utc::now();
    tokio::time::sleep(steady * a.cycles).await;
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
    // Templates render only when their inputs changed: none in a steady cycle.
    let metric_renders = m1.get("vault_external_secrets_template_renders_total")
        - m0.get("vault_external_secrets_template_renders_total");
    // Refreshes put off because the periodic lane was full (overload).
    let metric_deferred = m1.get("vault_external_secrets_refreshes_deferred_total")
        - m0.get("vault_external_secrets_refreshes_deferred_total");
    let total_logins = m1
        .get(r#"vault_external_secrets_vault_requests_total{operation="login",outcome="success"}"#);
    let cpu_per_cycle = (cpu1 - cpu0) / cycles;
    rss.enter(RssPhases::CHANGES);
    timeline.marks.push((rss.now(), "changes"));

    // Change → Secret latency over `changes` paths.
    let secrets: Api<Secret> = Api::all(client.clone());
    let wc = watcher::Config::default().labels(a.api.secret_label());
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
    // The watch's initial list (N Secrets).
    tokio::time::sleep(Duration::from_secs(3 + a.n as u64 / 5000)).await;
    let chosen: Vec<(usize, (String, String))> = targets
        .into_iter()
        .step_by((used_paths.len() / a.changes.max(1)).max(1))
        .take(a.changes)
        .collect();
    let mut expected: HashMap<String, (String, Instant)> = HashMap::new();
    let spacing = if a.audit {
        Duration::from_millis(100)
    } else {
        interval / (chosen.len().max(1) as u32)
    };
    for (k, (path, (ns, name))) in chosen.iter().enumerate() {
        let v = format!("changed-{k}-{}", Utc::now().timestamp_millis());
        bao.put(*path, &v, a.api).await?;
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
    let rss_max = [RssPhases::INITIAL, RssPhases::STEADY, RssPhases::CHANGES].map(|p| rss.mib(p));
    timeline.rss = rss.samples.lock().map(|v| v.clone()).unwrap_or_default();

    // The floor again, the controller stopped and the run's objects left in place. The
    // apiserver's own speed moves between runs on this machine by more than the controller
    // costs it (docs/benchmarks.md, issue 15), and within a run too: timed on both sides of the
    // sync, a run shows that spread, and its ratio is to their mean.
    stop(child);
    let floor_after = timed_floor(client, controller_client, a).await?;
    let floor_mean = (baselines.floor.time + floor_after.time) / 2;

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let distinct = used_paths.len() as f64;
    let Baselines {
        raw,
        raw_es,
        ref floor,
    } = *baselines;
    let ratio = synced.as_secs_f64() / raw.as_secs_f64();
    let rows = vec![
        (
            "API / ExternalSecrets / distinct Vault paths / roles",
            format!(
                "{} / {} / {} / {}",
                match a.api {
                    ApiKind::Kes => "KES kubernetes-client.io/v1",
                    ApiKind::Eso => "ESO external-secrets.io/v1, 3 ClusterSecretStores",
                },
                a.n,
                used_paths.len(),
                ROLES.len()
            ),
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
            "floor: ES create (admin) + Secret create + status patch + Event (the controller's ServiceAccount) per object; before the sync / after it (controller stopped)",
            format!(
                "{:.1} s / {:.1} s",
                floor.time.as_secs_f64(),
                floor_after.time.as_secs_f64()
            ),
        ),
        (
            "CPU seconds during the floor, by process: before / after",
            format!(
                "{} (of {:.0} available) / {} (of {:.0})",
                floor.cpu,
                floor.time.as_secs_f64() * cores as f64,
                floor_after.cpu,
                floor_after.time.as_secs_f64() * cores as f64
            ),
        ),
        (
            "apply → all Secrets synced",
            format!(
                "{:.1} s ({ratio:.2}× raw Secret creates, {:.2}× raw ExternalSecret creates, {:.2}× the floor's mean: {:.2}× before, {:.2}× after)",
                synced.as_secs_f64(),
                synced.as_secs_f64() / raw_es.as_secs_f64(),
                synced.as_secs_f64() / floor_mean.as_secs_f64(),
                synced.as_secs_f64() / floor.time.as_secs_f64(),
                synced.as_secs_f64() / floor_after.time.as_secs_f64()
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
            "refreshes put off per steady cycle, periodic lane full (metrics)",
            format!("{:.1}", metric_deferred / cycles),
        ),
        (
            "template renders per steady cycle (metrics)",
            format!("{:.1}", metric_renders / cycles),
        ),
        (
            if a.audit {
                "change → Secret latency p50 / p99 (audit events; the steady-state rows above do not apply)"
            } else {
                "change → Secret latency p50 / p99"
            },
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
                rss_max[0], rss_max[1], rss_max[2]
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
        // The plots go next to the Markdown file, under bench/.
        let dir = std::path::Path::new(path)
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("bench");
        std::fs::create_dir_all(&dir)?;
        let variant = match (a.audit, a.template) {
            (true, _) => "audit",
            (false, true) => "templated",
            (false, false) => "",
        };
        let date = Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
        let file = format!(
            "{}-{:?}{}-n{}.svg",
            Utc::now().format("%Y%m%d-%H%M"),
            a.api,
            if variant.is_empty() {
                String::new()
            } else {
                format!("-{variant}")
            },
            a.n
        )
        .to_lowercase();
        plot::run_svg(
            &dir.join(&file),
            &format!(
                "N = {} ({:?} API{}), {date}",
                a.n,
                a.api,
                if variant.is_empty() {
                    String::new()
                } else {
                    format!(", {variant}")
                }
            ),
            a.n,
            &timeline,
        )?;
        let figures = plot::RunFigures {
            date,
            api: format!("{:?}", a.api),
            variant: variant.into(),
            n: a.n,
            distinct_paths: used_paths.len(),
            synced_s: synced.as_secs_f64(),
            floor_s: floor.time.as_secs_f64(),
            floor_after_s: Some(floor_after.time.as_secs_f64()),
            peak_rss_mib: rss_kib as f64 / 1024.0,
            cpu_per_cycle_s: cpu_per_cycle,
            reads_per_cycle: vault.read as f64 / cycles,
            controller: record::controller_build(&a.controller),
        };
        plot::append_run(&dir.join("runs.jsonl"), &figures)?;
        plot::growth(&dir)?;
        table.push_str(&format!(
            "\nSynced Secrets and controller RSS over the run:\n\n![N = {} over time](bench/{file})\n",
            a.n
        ));
        record::append(path, a, &table)?;
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
                metric_renders == 0.0,
                format!("steady state template renders: {metric_renders}"),
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
