//! Configuration from the environment, with KES's variable names, meanings and defaults.
//!
//! Parsing is pure (`from_lookup` takes any key → value function) so it is unit-tested without
//! touching the process environment. An invalid value is an error naming the variable.

use std::path::PathBuf;
use std::time::Duration;

use crate::controller::namespaces::GuardConfig;

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value for {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// `VAULT_ADDR`, without a trailing slash.
    pub vault_addr: String,
    /// `DEFAULT_VAULT_MOUNT_POINT`: auth mount when the ExternalSecret names none.
    pub default_mount_point: String,
    /// `DEFAULT_VAULT_ROLE`: role when the ExternalSecret names none.
    pub default_role: Option<String>,
    /// `VAULT_NAMESPACE`: sent as `X-Vault-Namespace`.
    pub vault_namespace: Option<String>,
    /// `VAULT_TOKEN_RENEW_THRESHOLD` (seconds): renew a token whose remaining TTL falls below this.
    pub token_renew_threshold: Duration,
    /// `POLLER_INTERVAL_MILLISECONDS`.
    pub poll_interval: Duration,
    /// `DISABLE_POLLING`: sync only when an ExternalSecret changes.
    pub disable_polling: bool,
    /// `WATCH_TIMEOUT` (milliseconds): the watch is re-opened at least this often.
    pub watch_timeout: Duration,
    /// `WATCHED_NAMESPACES`: empty means all namespaces.
    pub watched_namespaces: Vec<String>,
    /// `INSTANCE_ID`: when set, only ExternalSecrets whose `spec.controllerId` equals it.
    pub instance_id: Option<String>,
    /// `LOG_LEVEL`: trace, debug, info, warn, error (fatal is taken as error).
    pub log_level: String,
    /// `LOG_MESSAGE_KEY`: JSON key of the log message.
    pub log_message_key: String,
    /// `METRICS_PORT`: serves /metrics, /healthz and /readyz.
    pub metrics_port: u16,
    /// `VAULT_CACERT`: PEM bundle trusted for Vault's TLS certificate.
    pub vault_cacert: Option<PathBuf>,
    /// `VAULT_SKIP_VERIFY`: do not verify Vault's TLS certificate (tests only, please).
    pub vault_skip_verify: bool,
    /// `VAULT_JWT_PATH`: the service-account token, re-read at each login.
    pub vault_jwt_path: PathBuf,
    /// `SYNC_CONCURRENCY`: ExternalSecrets synced at once.
    pub sync_concurrency: u16,
    /// `VAULT_MAX_RETRIES`: retries of one Vault request on 412/429/5xx/connection errors.
    pub vault_max_retries: usize,
    /// `LEADER_ELECT` and friends; `None` when off (one replica).
    pub leader_election: Option<LeaderElection>,
    /// KES's namespace guard: `NAMING_PERMITTED_ANNOTATION`, `ROLE_PERMITTED_ANNOTATION`,
    /// `ENFORCE_NAMESPACE_ANNOTATIONS` (set to anything = on, as KES tested its presence).
    pub namespace_guard: GuardConfig,
    /// `SERVE_APIS`: `kes`, `eso`, or both (comma-separated); `auto` (default) serves each
    /// whose CRD the apiserver has at startup.
    pub apis: Apis,
    /// `CONTROLLER_CLASS`: ESO stores whose `spec.controller` equals it (unset: stores without
    /// one), so this controller and ESO can each take their own stores during a migration.
    pub controller_class: Option<String>,
    /// Change events from Vault's audit stream; `None` when `AUDIT_LISTEN_ADDR` is unset.
    pub audit: Option<AuditListener>,
    /// `ROLLOUT_RESTART_MIN_INTERVAL` (seconds, default 60): at most one rollout restart per
    /// workload in this time; changes inside it are folded into one restart at its end.
    pub rollout_min_interval: Duration,
}

/// `AUDIT_LISTEN_ADDR` and its bounds: a Vault `socket` audit device (UDP) sends every request
/// here; a KV write makes the objects reading that secret sync at once.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditListener {
    pub addr: std::net::SocketAddr,
    /// `AUDIT_MIN_REFRESH` (milliseconds, default 1000): at most one event-driven read per
    /// secret in this time.
    pub min_refresh: Duration,
    /// `AUDIT_MAX_READS_PER_SECOND` (default 50): event-driven reads in all, per second.
    pub max_per_second: u32,
    /// `AUDIT_ALLOWED_SOURCES`: comma-separated CIDRs datagrams may come from (default: any).
    pub allowed_sources: Vec<ipnet::IpNet>,
}

/// Which APIs' ExternalSecrets are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apis {
    pub kes: bool,
    pub eso: bool,
    /// Decided at startup from the CRDs present (`SERVE_APIS=auto`).
    pub auto: bool,
}

/// Lease-based leader election between replicas: only the holder syncs and writes.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaderElection {
    /// `LEADER_ELECTION_NAMESPACE` (default: `POD_NAMESPACE`, else the in-cluster namespace file,
    /// else `default`).
    pub namespace: String,
    /// `LEADER_ELECTION_LEASE_NAME` (default `vault-external-secrets`).
    pub lease_name: String,
    /// `LEADER_ELECTION_LEASE_DURATION` seconds (default 15): a dead leader's lease expires
    /// after this, so failover takes about this long.
    pub lease_duration_s: u64,
    /// This replica's identity: `POD_NAME`, else the hostname, plus a random suffix.
    pub identity: String,
}

pub const DEFAULT_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

impl Config {
    /// Reads the process environment. Empty variables count as unset, as in KES's chart, which
    /// renders empty `env` values.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };

        let poll_ms: u64 = parse_num(&get, "POLLER_INTERVAL_MILLISECONDS", 10_000)?;
        if poll_ms == 0 {
            return Err(err(
                "POLLER_INTERVAL_MILLISECONDS",
                "must be greater than 0",
            ));
        }
        let poll_interval = Duration::from_millis(poll_ms);
        let renew_s: u64 = parse_num(
            &get,
            "VAULT_TOKEN_RENEW_THRESHOLD",
            (3 * poll_ms).div_ceil(1000),
        )?;
        let watch_ms: u64 = parse_num(&get, "WATCH_TIMEOUT", 60_000)?;
        if watch_ms < 1000 {
            return Err(err("WATCH_TIMEOUT", "must be at least 1000 (milliseconds)"));
        }

        let vault_addr = get("VAULT_ADDR").unwrap_or_else(|| "http://127.0.0.1:8200".into());
        let parsed = reqwest::Url::parse(&vault_addr)
            .map_err(|e| err("VAULT_ADDR", &format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err("VAULT_ADDR", "scheme must be http or https"));
        }

        let log_level = get("LOG_LEVEL")
            .unwrap_or_else(|| "info".into())
            .to_lowercase();
        let log_level = match log_level.as_str() {
            "trace" | "debug" | "info" | "warn" | "error" => log_level,
            "fatal" => "error".into(),
            "warning" => "warn".into(),
            other => return Err(err("LOG_LEVEL", &format!("unknown level {other:?}"))),
        };

        let sync_concurrency: u16 = parse_num(&get, "SYNC_CONCURRENCY", 32)?;
        if sync_concurrency == 0 {
            return Err(err("SYNC_CONCURRENCY", "must be greater than 0"));
        }

        let leader_election = if parse_bool(&get, "LEADER_ELECT")? {
            let lease_duration_s: u64 = parse_num(&get, "LEADER_ELECTION_LEASE_DURATION", 15)?;
            if lease_duration_s < 5 {
                return Err(err(
                    "LEADER_ELECTION_LEASE_DURATION",
                    "must be at least 5 (seconds)",
                ));
            }
            let namespace = get("LEADER_ELECTION_NAMESPACE")
                .or_else(|| get("POD_NAMESPACE"))
                .or_else(|| {
                    std::fs::read_to_string(
                        "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
                    )
                    .ok()
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| "default".into());
            let base = get("POD_NAME")
                .or_else(|| get("HOSTNAME"))
                .unwrap_or_else(|| "vault-external-secrets".into());
            Some(LeaderElection {
                namespace,
                lease_name: get("LEADER_ELECTION_LEASE_NAME")
                    .unwrap_or_else(|| "vault-external-secrets".into()),
                lease_duration_s,
                identity: format!("{base}-{:08x}", rand::random::<u32>()),
            })
        } else {
            None
        };

        Ok(Config {
            leader_election,
            vault_addr: vault_addr.trim_end_matches('/').to_string(),
            default_mount_point: get("DEFAULT_VAULT_MOUNT_POINT")
                .unwrap_or_else(|| "kubernetes".into()),
            default_role: get("DEFAULT_VAULT_ROLE"),
            vault_namespace: get("VAULT_NAMESPACE"),
            token_renew_threshold: Duration::from_secs(renew_s),
            poll_interval,
            disable_polling: parse_bool(&get, "DISABLE_POLLING")?,
            watch_timeout: Duration::from_millis(watch_ms),
            watched_namespaces: get("WATCHED_NAMESPACES")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            instance_id: get("INSTANCE_ID"),
            log_level,
            log_message_key: get("LOG_MESSAGE_KEY").unwrap_or_else(|| "msg".into()),
            metrics_port: parse_num(&get, "METRICS_PORT", 3001)?,
            vault_cacert: get("VAULT_CACERT").map(PathBuf::from),
            vault_skip_verify: parse_bool(&get, "VAULT_SKIP_VERIFY")?,
            vault_jwt_path: get("VAULT_JWT_PATH")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_JWT_PATH)),
            sync_concurrency,
            vault_max_retries: parse_num(&get, "VAULT_MAX_RETRIES", 4)?,
            namespace_guard: GuardConfig {
                naming_annotation: get("NAMING_PERMITTED_ANNOTATION").unwrap_or_else(|| {
                    "externalsecrets.kubernetes-client.io/permitted-key-name".into()
                }),
                role_annotation: get("ROLE_PERMITTED_ANNOTATION")
                    .unwrap_or_else(|| "iam.amazonaws.com/permitted".into()),
                enforce: get("ENFORCE_NAMESPACE_ANNOTATIONS").is_some(),
            },
            apis: parse_apis(get("SERVE_APIS").as_deref())?,
            controller_class: get("CONTROLLER_CLASS"),
            rollout_min_interval: Duration::from_secs(parse_num(
                &get,
                "ROLLOUT_RESTART_MIN_INTERVAL",
                60,
            )?),
            audit: match get("AUDIT_LISTEN_ADDR") {
                None => None,
                Some(addr) => Some(AuditListener {
                    addr: addr.parse().map_err(|_| {
                        err("AUDIT_LISTEN_ADDR", &format!("{addr:?} is not HOST:PORT"))
                    })?,
                    min_refresh: Duration::from_millis(parse_num(&get, "AUDIT_MIN_REFRESH", 1000)?),
                    max_per_second: parse_num(&get, "AUDIT_MAX_READS_PER_SECOND", 50)?,
                    allowed_sources: get("AUDIT_ALLOWED_SOURCES")
                        .map(|v| {
                            v.split(',')
                                .map(str::trim)
                                .filter(|s| !s.is_empty())
                                .map(|c| {
                                    c.parse().map_err(|_| {
                                        err(
                                            "AUDIT_ALLOWED_SOURCES",
                                            &format!("{c:?} is not a CIDR"),
                                        )
                                    })
                                })
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .transpose()?
                        .unwrap_or_default(),
                }),
            },
        })
    }

    /// The server-side watch timeout in seconds (the apiserver caps watches itself too).
    pub fn watch_timeout_secs(&self) -> u32 {
        u32::try_from(self.watch_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

fn parse_apis(v: Option<&str>) -> Result<Apis, ConfigError> {
    let mut apis = Apis {
        kes: false,
        eso: false,
        auto: false,
    };
    match v.map(str::to_lowercase).as_deref() {
        None | Some("auto") => {
            apis.auto = true;
            apis.kes = true;
            apis.eso = true;
        }
        Some(list) => {
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match name {
                    "kes" => apis.kes = true,
                    "eso" => apis.eso = true,
                    other => {
                        return Err(err(
                            "SERVE_APIS",
                            &format!("{other:?} is not an API; use kes, eso, both, or auto"),
                        ))
                    }
                }
            }
            if !apis.kes && !apis.eso {
                return Err(err("SERVE_APIS", "names no API"));
            }
        }
    }
    Ok(apis)
}

fn err(var: &'static str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        reason: reason.to_string(),
    }
}

fn parse_num<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|e| err(var, &format!("{v:?} is not a valid number: {e}"))),
    }
}

fn parse_bool(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
) -> Result<bool, ConfigError> {
    match get(var).map(|v| v.to_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(err(var, &format!("{v:?} is not true or false"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn defaults_match_kes() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.vault_addr, "http://127.0.0.1:8200");
        assert_eq!(c.default_mount_point, "kubernetes");
        assert_eq!(c.default_role, None);
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.token_renew_threshold, Duration::from_secs(30));
        assert_eq!(c.watch_timeout, Duration::from_secs(60));
        assert!(!c.namespace_guard.enforce);
        assert_eq!(
            c.namespace_guard.naming_annotation,
            "externalsecrets.kubernetes-client.io/permitted-key-name"
        );
        assert_eq!(
            c.namespace_guard.role_annotation,
            "iam.amazonaws.com/permitted"
        );
        assert!(c.watched_namespaces.is_empty());
        assert_eq!(c.metrics_port, 3001);
        assert_eq!(c.log_message_key, "msg");
        assert_eq!(c.vault_jwt_path, PathBuf::from(DEFAULT_JWT_PATH));
        assert!(!c.vault_skip_verify);
    }

    #[test]
    fn seed_values_yaml_env_parses() {
        // The env block of the seed's KES values.yaml, as the chart renders it.
        let c = cfg(&[
            ("VAULT_ADDR", "http://vault:8200/"),
            ("METRICS_PORT", "3001"),
            ("POLLER_INTERVAL_MILLISECONDS", "10000"),
            ("WATCH_TIMEOUT", "60000"),
            ("WATCHED_NAMESPACES", ""),
            ("LOG_LEVEL", "info"),
            ("LOG_MESSAGE_KEY", "msg"),
        ])
        .unwrap();
        assert_eq!(c.vault_addr, "http://vault:8200");
        assert!(c.watched_namespaces.is_empty());
    }

    #[test]
    fn namespaces_and_flags() {
        let c = cfg(&[
            ("WATCHED_NAMESPACES", " a, b ,,c"),
            ("VAULT_SKIP_VERIFY", "true"),
            ("POLLER_INTERVAL_MILLISECONDS", "30000"),
            ("LOG_LEVEL", "FATAL"),
        ])
        .unwrap();
        assert_eq!(c.watched_namespaces, vec!["a", "b", "c"]);
        assert!(c.vault_skip_verify);
        assert_eq!(c.token_renew_threshold, Duration::from_secs(90));
        assert_eq!(c.log_level, "error");
    }

    #[test]
    fn namespace_guard_settings_as_kes() {
        // KES tested the variable's presence: any value turns enforcement on.
        for v in ["true", "false", "1"] {
            assert!(
                cfg(&[("ENFORCE_NAMESPACE_ANNOTATIONS", v)])
                    .unwrap()
                    .namespace_guard
                    .enforce,
                "{v}"
            );
        }
        let c = cfg(&[
            ("NAMING_PERMITTED_ANNOTATION", "example.com/keys"),
            ("ROLE_PERMITTED_ANNOTATION", "example.com/roles"),
        ])
        .unwrap();
        assert_eq!(c.namespace_guard.naming_annotation, "example.com/keys");
        assert_eq!(c.namespace_guard.role_annotation, "example.com/roles");
    }

    #[test]
    fn leader_election_settings() {
        assert_eq!(cfg(&[]).unwrap().leader_election, None);
        let c = cfg(&[
            ("LEADER_ELECT", "true"),
            ("POD_NAMESPACE", "ops"),
            ("POD_NAME", "ves-0"),
        ])
        .unwrap();
        let le = c.leader_election.unwrap();
        assert_eq!(le.namespace, "ops");
        assert_eq!(le.lease_name, "vault-external-secrets");
        assert_eq!(le.lease_duration_s, 15);
        assert!(le.identity.starts_with("ves-0-"));
        let e = cfg(&[
            ("LEADER_ELECT", "true"),
            ("LEADER_ELECTION_LEASE_DURATION", "2"),
        ])
        .unwrap_err();
        assert_eq!(e.var, "LEADER_ELECTION_LEASE_DURATION");
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, val) in [
            ("POLLER_INTERVAL_MILLISECONDS", "ten"),
            ("POLLER_INTERVAL_MILLISECONDS", "0"),
            ("METRICS_PORT", "70000"),
            ("VAULT_ADDR", "not a url"),
            ("VAULT_ADDR", "ftp://vault"),
            ("VAULT_SKIP_VERIFY", "maybe"),
            ("LOG_LEVEL", "loud"),
            ("WATCH_TIMEOUT", "5"),
            ("SYNC_CONCURRENCY", "0"),
            ("LEADER_ELECT", "sometimes"),
        ] {
            let e = cfg(&[(var, val)]).unwrap_err();
            assert_eq!(e.var, var, "{var}={val}");
            assert!(e.to_string().contains(var));
        }
    }
}
