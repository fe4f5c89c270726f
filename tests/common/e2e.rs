//! The e2e world started by `e2e/up.sh` (real kube-apiserver, etcd, kube-controller-manager,
//! OpenBao with Kubernetes auth), and the controller run as a separate process.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};
use vault_external_secrets::api::kes::crd::ExternalSecret;

use super::free_port;

pub struct World {
    pub client: Client,
    pub dir: PathBuf,
    pub bao_addr: String,
    http: reqwest::Client,
}

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the e2e suite with `make e2e` (it starts the control plane and sources target/e2e/env)")
    })
}

impl World {
    pub async fn get() -> World {
        let dir = PathBuf::from(env("E2E_DIR"));
        // The admin credential, for the test's own setup and assertions only.
        let client = Client::try_default().await.expect("admin kubeconfig");
        World {
            client,
            dir,
            bao_addr: env("BAO_ADDR"),
            http: reqwest::Client::new(),
        }
    }

    /// A fresh namespace for one test.
    pub async fn namespace(&self, name: &str) -> String {
        let api: Api<Namespace> = Api::all(self.client.clone());
        if api.get_opt(name).await.unwrap().is_some() {
            let _ = api.delete(name, &DeleteParams::default()).await;
            let deadline = Instant::now() + Duration::from_secs(60);
            while api.get_opt(name).await.unwrap().is_some() {
                assert!(Instant::now() < deadline, "namespace {name} not deleted");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
        name.to_string()
    }

    pub async fn bao(&self, method: &str, path: &str, body: Value) -> Value {
        self.bao_try(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn put_kv1(&self, path: &str, data: Value) {
        self.bao("PUT", &format!("secret/{path}"), data).await;
    }

    pub async fn put_kv2(&self, path: &str, data: Value) {
        self.bao("PUT", &format!("kv/data/{path}"), json!({ "data": data }))
            .await;
    }

    /// Unseals OpenBao with the key of its latest start (the fault test restarts it).
    pub async fn unseal(&self) {
        let log = std::fs::read_to_string(self.dir.join("logs/openbao.log")).unwrap();
        let key = log
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
            .expect("unseal key in the OpenBao log")
            .trim()
            .to_string();
        self.bao("PUT", "sys/unseal", json!({ "key": key })).await;
    }

    /// `e2e/fault.sh ARGS` (pause/resume/kill a component, restart OpenBao).
    pub fn fault(&self, args: &[&str]) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/fault.sh");
        let out = Command::new("bash")
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fault.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The controllers' requests to `path` in OpenBao's audit log so far.
    pub fn vault_requests(&self, path: &str) -> usize {
        self.vault_requests_as(path, None)
    }

    /// Requests to `path` made with a token of Vault role `role` (the audit log keeps the
    /// token's metadata in clear), when given: tests run in parallel against one OpenBao.
    pub fn vault_requests_as(&self, path: &str, role: Option<&str>) -> usize {
        let log = PathBuf::from(env("BAO_AUDIT_LOG"));
        super::client_requests(&log)
            .iter()
            .filter(|v| v["request"]["path"] == path)
            .filter(|v| role.is_none_or(|r| v["auth"]["metadata"]["role"] == r))
            .count()
    }

    /// Successful logins at `auth/<mount>/login` that issued a token for Vault role `role`
    /// (the login request itself carries no token; its response does).
    pub fn vault_logins(&self, mount: &str, role: &str) -> usize {
        let log = std::fs::read_to_string(env("BAO_AUDIT_LOG")).unwrap_or_default();
        let path = format!("auth/{mount}/login");
        log.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "response" && v["request"]["path"] == path.as_str())
            .filter(|v| v["auth"]["metadata"]["role"] == role)
            .count()
    }

    /// Sets (Some) or removes (None) annotations of a Namespace.
    pub async fn annotate_namespace(&self, ns: &str, annotations: &[(&str, Option<&str>)]) {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.map_or(Value::Null, |v| json!(v))))
            .collect();
        let api: Api<Namespace> = Api::all(self.client.clone());
        api.patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": map}})),
        )
        .await
        .unwrap();
    }

    /// `kubectl apply -f -` (server-side) of a YAML document stream, as the admin.
    pub fn kubectl_apply(&self, yaml: &str) {
        self.kubectl_stdin(
            &["apply", "--server-side", "--force-conflicts", "-f", "-"],
            yaml,
        );
    }

    /// `kubectl ARGS` with `input` on stdin, as the admin; panics on failure.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write as _;
        let bin = format!("{}/kubectl", env("E2E_BIN"));
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A root request to OpenBao that may fail (enabling what another test enabled already).
    pub async fn bao_try(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        super::root_request(&self.http, &self.bao_addr, "root", None, method, path, body).await
    }

    pub fn es_api(&self, ns: &str) -> Api<ExternalSecret> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secret_api(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Server-side applies an ExternalSecret manifest (YAML) into `ns`.
    pub async fn apply_es(&self, ns: &str, yaml: &str) -> ExternalSecret {
        let mut v: Value = serde_yaml::from_str(yaml).unwrap();
        v["metadata"]["namespace"] = json!(ns);
        let name = v["metadata"]["name"].as_str().unwrap().to_string();
        self.es_api(ns)
            .patch(&name, &PatchParams::apply("e2e").force(), &Patch::Apply(v))
            .await
            .unwrap()
    }

    pub async fn wait_secret(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&Secret) -> bool,
    ) -> Secret {
        let api = self.secret_api(ns);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = api.get_opt(name).await.unwrap() {
                if pred(&s) {
                    return s;
                }
            }
            assert!(
                Instant::now() < deadline,
                "Secret {ns}/{name} did not reach the expected state in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_es(
        &self,
        ns: &str,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&ExternalSecret) -> bool,
    ) -> ExternalSecret {
        let api = self.es_api(ns);
        let deadline = Instant::now() + timeout;
        loop {
            let es = api.get(name).await.unwrap();
            if pred(&es) {
                return es;
            }
            assert!(
                Instant::now() < deadline,
                "ExternalSecret {ns}/{name} did not reach the expected state in {timeout:?}; status: {:?}",
                es.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

pub fn value(s: &Secret, key: &str) -> Option<String> {
    s.data
        .as_ref()?
        .get(key)
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
}

pub fn status_text(es: &ExternalSecret) -> String {
    es.status
        .as_ref()
        .and_then(|s| s.status.clone())
        .unwrap_or_default()
}

pub fn ready_reason(es: &ExternalSecret) -> String {
    es.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .and_then(|c| c.reason.clone())
        .unwrap_or_default()
}

/// The controller binary as a separate process, with the e2e ServiceAccount's credentials.
pub struct Controller {
    child: Option<Child>,
    pub port: u16,
    pub log: PathBuf,
}

impl Controller {
    pub fn start(world: &World, name: &str, extra_env: &[(&str, &str)]) -> Controller {
        Controller::start_on(world, name, free_port(), extra_env)
    }

    /// `start` with its metrics on `port` (the one the e2e Prometheus scrapes).
    pub fn start_on(
        world: &World,
        name: &str,
        port: u16,
        extra_env: &[(&str, &str)],
    ) -> Controller {
        let log = world
            .dir
            .join("logs")
            .join(format!("controller-{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let bin = std::env::var("CONTROLLER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vault-external-secrets").to_string());
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("KUBECONFIG", env("CONTROLLER_KUBECONFIG"))
            .env("VAULT_ADDR", env("VAULT_ADDR"))
            .env("VAULT_JWT_PATH", env("VAULT_JWT_PATH"))
            .env("METRICS_PORT", port.to_string())
            .env("POLLER_INTERVAL_MILLISECONDS", "3000")
            .env("LOG_LEVEL", "debug")
            .env("POD_NAME", format!("e2e-{name}"));
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start the controller");
        Controller {
            child: Some(child),
            port,
            log,
        }
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        for _ in 0..50 {
            if let Ok(r) = reqwest::get(&url).await {
                return r.text().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no /metrics on {url}");
    }

    /// The value of one metric line (exact name with labels), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    pub async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "controller not ready: {}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the process is still running (it must survive outages).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}
