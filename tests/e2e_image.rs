//! The image `make image` writes (e2e/image.sh: the Dockerfile's build, assembled by crane with
//! no Docker engine): its tarball agrees with the Dockerfile (user, entrypoint, port, one layer
//! holding only the static binary, under 25 MB), and the controller runs from it under runc, as
//! uid 65532 on a read-only root, and syncs an ExternalSecret against the e2e world.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::e2e::{env, value, World};
use serde_json::{json, Value};

fn tarball() -> PathBuf {
    std::env::var("IMAGE_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image/vault-external-secrets.tar")
        })
}

/// The image: its docker-save manifest, config, and each layer's (path, mode, size, bytes).
struct Image {
    manifest: Value,
    config: Value,
    layers: Vec<Vec<(String, u32, Vec<u8>)>>,
}

fn read_image(path: &Path) -> Image {
    let mut files = BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(path).expect("make image first"));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.insert(name, bytes);
    }
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let config: Value =
        serde_json::from_slice(&files[manifest[0]["Config"].as_str().unwrap()]).unwrap();
    let layers = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let gz = flate2::read::GzDecoder::new(&files[l.as_str().unwrap()][..]);
            let mut layer = tar::Archive::new(gz);
            layer
                .entries()
                .unwrap()
                .map(|e| {
                    let mut e = e.unwrap();
                    let name = e.path().unwrap().to_string_lossy().to_string();
                    let mode = e.header().mode().unwrap();
                    let mut bytes = Vec::new();
                    e.read_to_end(&mut bytes).unwrap();
                    (name, mode, bytes)
                })
                .collect()
        })
        .collect();
    Image {
        manifest,
        config,
        layers,
    }
}

/// The Dockerfile's final-stage instruction `word` (its last occurrence).
fn dockerfile(word: &str) -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    text.lines()
        .rev()
        .find_map(|l| l.strip_prefix(word).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {word} in the Dockerfile"))
        .to_string()
}

#[test]
#[ignore = "e2e: needs make image"]
fn image_tarball_agrees_with_the_dockerfile() {
    let path = tarball();
    let size = std::fs::metadata(&path).unwrap().len();
    println!("image tarball: {size} bytes");
    assert!(size < 25_000_000, "{size} bytes");
    let image = read_image(&path);
    let c = &image.config["config"];
    assert_eq!(c["User"], dockerfile("USER"));
    let entrypoint: Value = serde_json::from_str(&dockerfile("ENTRYPOINT")).unwrap();
    assert_eq!(c["Entrypoint"], entrypoint);
    assert!(c["Cmd"].is_null(), "no CMD: {c}");
    let port = format!("{}/tcp", dockerfile("EXPOSE"));
    assert!(c["ExposedPorts"].get(&port).is_some(), "{c}");
    assert_eq!(
        c["Labels"]["org.opencontainers.image.title"],
        "vault-external-secrets"
    );
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config["architecture"], "amd64");
    assert_eq!(
        image.manifest[0]["RepoTags"][0],
        format!(
            "vault-external-secrets:{}",
            dockerfile("ARG").trim_start_matches("VERSION=")
        )
    );
    // One layer, one file: the binary at the ENTRYPOINT's path, executable, statically linked
    // (no shell, no libc, nothing else).
    assert_eq!(image.layers.len(), 1);
    let files = &image.layers[0];
    assert_eq!(
        files.len(),
        1,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let (name, mode, bytes) = &files[0];
    assert_eq!(format!("/{name}"), entrypoint[0].as_str().unwrap());
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert!(
        !bytes.windows(12).any(|w| w == b"/lib64/ld-li"),
        "dynamically linked"
    );
}

/// Runs the image's entrypoint under runc with the host's network (the e2e world listens on
/// loopback) and the world's directory mounted read-only at the same path (kubeconfig, CA and
/// JWT are absolute paths in it). Returns the container id.
fn run_container(w: &World, bundle: &Path, image: &Image, env_vars: &[(&str, String)]) -> String {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for (name, mode, bytes) in &image.layers[0] {
        let p = rootfs.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode)).unwrap();
    }
    let c = &image.config["config"];
    let (uid, gid) = c["User"].as_str().unwrap().split_once(':').unwrap();
    let dir = w.dir.to_string_lossy().to_string();
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": uid.parse::<u32>().unwrap(), "gid": gid.parse::<u32>().unwrap()},
            "args": c["Entrypoint"],
            "env": env_vars.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "cwd": "/",
            "noNewPrivileges": true,
            "capabilities": {"bounding": [], "effective": [], "permitted": []},
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=65536k"]},
            {"destination": dir, "type": "bind", "source": dir, "options": ["rbind", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/kcore", "/proc/keys", "/sys/firmware"],
        },
    });
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    let id = format!("ves-e2e-{}", std::process::id());
    let log = std::fs::File::create(w.dir.join("logs/controller-image.log")).unwrap();
    Command::new("runc")
        .args(["run", "--detach", "--bundle"])
        .arg(bundle)
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .map(|s| assert!(s.success(), "runc run: see logs/controller-image.log"))
        .expect("runc (apt-get install runc; .ci/run installs it)");
    id
}

struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "--force", &self.0])
            .status();
    }
}

#[tokio::test]
#[ignore = "e2e: needs make image and e2e/up.sh"]
async fn the_controller_runs_from_the_image_under_runc() {
    let w = World::get().await;
    let image = read_image(&tarball());
    let ns = w.namespace("e2e-image").await;
    w.put_kv2("e2e-image/app", json!({"v": "from-the-image"}))
        .await;
    let bundle = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let id = run_container(
        &w,
        bundle.path(),
        &image,
        &[
            ("KUBECONFIG", env("CONTROLLER_KUBECONFIG")),
            ("VAULT_ADDR", env("VAULT_ADDR")),
            ("VAULT_JWT_PATH", env("VAULT_JWT_PATH")),
            ("METRICS_PORT", port.to_string()),
            ("WATCHED_NAMESPACES", ns.clone()),
            ("POD_NAME", "e2e-image".to_string()),
        ],
    );
    let container = Container(id);
    w.apply_es(
        &ns,
        "apiVersion: kubernetes-client.io/v1\nkind: ExternalSecret\nmetadata: {name: app}\nspec: {vaultRole: k8s-role, data: [{name: v, key: kv/e2e-image/app, property: v}]}\n",
    )
    .await;
    w.wait_secret(&ns, "app", Duration::from_secs(60), |s| {
        value(s, "v").as_deref() == Some("from-the-image")
    })
    .await;
    // The container's process: the image's user, in its own PID namespace.
    let state = Command::new("runc")
        .args(["state", &container.0])
        .output()
        .unwrap();
    let state: Value = serde_json::from_slice(&state.stdout).unwrap();
    assert_eq!(state["status"], "running", "{state}");
    let pid = state["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65532"),
        "{uid_line}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("vault_external_secrets_secret_writes_total{kind=\"create\"} 1"));
    // SIGTERM: the controller stops within its grace period (and revokes its token).
    let killed = Command::new("runc")
        .args(["kill", &container.0, "TERM"])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("runc")
            .args(["state", &container.0])
            .output()
            .unwrap();
        let s: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if s["status"] == "stopped" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(w.dir.join("logs/controller-image.log")).unwrap();
    assert!(log.contains("\"msg\":\"stopped\""), "{log}");
}
