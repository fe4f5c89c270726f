//! KES's namespace guard (KES `lib/poller.js` `_isPermitted`): a Namespace may restrict which
//! Vault keys (`externalsecrets.kubernetes-client.io/permitted-key-name`, a regex) and which
//! Vault role (`iam.amazonaws.com/permitted`, a regex) its ExternalSecrets use; with
//! `ENFORCE_NAMESPACE_ANNOTATIONS` every namespace must carry them. Multi-tenant KES clusters
//! rely on it, so a successor that skipped it would silently lower their security.
//!
//! `NamespaceIndex` holds, per namespace, only the two annotation values (compiled), fed by a
//! metadata watch of Namespaces; `check` is pure. A namespace whose annotations cannot be read
//! is denied (fail closed): the guard may exist and we cannot tell.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use k8s_openapi::api::core::v1::Namespace;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use regex::Regex;

/// The environment's side of the guard (`NAMING_PERMITTED_ANNOTATION`,
/// `ROLE_PERMITTED_ANNOTATION`, `ENFORCE_NAMESPACE_ANNOTATIONS`).
#[derive(Clone, Debug, PartialEq)]
pub struct GuardConfig {
    pub naming_annotation: String,
    pub role_annotation: String,
    pub enforce: bool,
}

/// What the guard reads of one Namespace.
#[derive(Clone, Debug, Default)]
pub struct NsGuard {
    /// The Namespace has any annotation at all (KES: none = allowed unless enforced).
    annotated: bool,
    /// Raw annotation and its compiled form (an invalid regex denies, naming the annotation).
    naming: Option<(String, Result<Regex, String>)>,
    role: Option<(String, Result<Regex, String>)>,
}

/// Size bound for a compiled annotation regex.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn compile(pattern: &str) -> Result<Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|_| format!("{pattern:?} is not a valid regular expression"))
}

impl NsGuard {
    pub fn from_annotations<'a>(
        cfg: &GuardConfig,
        annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        let mut g = NsGuard::default();
        for (k, v) in annotations {
            g.annotated = true;
            if *k == cfg.naming_annotation {
                g.naming = Some((v.clone(), compile(v)));
            }
            if *k == cfg.role_annotation {
                g.role = Some((v.clone(), compile(v)));
            }
        }
        g
    }

    fn same(&self, other: &NsGuard) -> bool {
        let raw = |r: &Option<(String, Result<Regex, String>)>| r.as_ref().map(|(s, _)| s.clone());
        self.annotated == other.annotated
            && raw(&self.naming) == raw(&other.naming)
            && raw(&self.role) == raw(&other.role)
    }
}

/// What an ExternalSecret asks for, as the guard sees it: every Vault key it reads, and the
/// role it names in its spec (KES checks `vaultRole` only when set).
pub struct Request<'a> {
    pub keys: Vec<&'a str>,
    pub role: Option<&'a str>,
}

/// KES's decision, with KES's messages. `guard` is `None` when the Namespace does not exist.
pub fn check(
    cfg: &GuardConfig,
    namespace: &str,
    guard: Option<&NsGuard>,
    req: &Request<'_>,
) -> Result<(), String> {
    let empty = NsGuard::default();
    let guard = guard.unwrap_or(&empty);
    if !guard.annotated {
        return if cfg.enforce {
            Err("Namespace annotation is required".into())
        } else {
            Ok(())
        };
    }
    let missing =
        |name: &str| format!("Missing required annotation {name} on namespace {namespace}");
    match &guard.naming {
        Some((raw, re)) => {
            let re = re
                .as_ref()
                .map_err(|e| format!("annotation {}: {e}", cfg.naming_annotation))?;
            if let Some(key) = req.keys.iter().find(|k| !re.is_match(k)) {
                return Err(format!(
                    "key name {key} does not match naming convention {raw}"
                ));
            }
        }
        None if cfg.enforce => return Err(missing(&cfg.naming_annotation)),
        None => {}
    }
    let Some(role) = req.role else {
        return Ok(());
    };
    match &guard.role {
        // An empty annotation allows every role (KES).
        Some((raw, _)) if raw.is_empty() => Ok(()),
        Some((_, re)) => {
            let re = re
                .as_ref()
                .map_err(|e| format!("annotation {}: {e}", cfg.role_annotation))?;
            if re.is_match(role) {
                Ok(())
            } else {
                Err(format!("namespace does not allow to assume role {role}"))
            }
        }
        None if cfg.enforce => Err(missing(&cfg.role_annotation)),
        None => Ok(()),
    }
}

/// Namespaces' guards, fed by a metadata watch (one per scope).
#[derive(Default)]
pub struct NamespaceIndex {
    guards: Mutex<HashMap<String, NsGuard>>,
    /// Labels, for ESO ClusterSecretStore `namespaceSelector` conditions.
    labels: Mutex<HashMap<String, BTreeMap<String, String>>>,
    /// The initial list is in (per scope watch: set when any completes; a namespaced install
    /// lists one Namespace per scope).
    listed: AtomicBool,
    /// Why the watch fails, while it does (403: no RBAC to read Namespaces).
    failing: Mutex<Option<String>>,
}

/// What the index knows of one namespace.
pub enum Known {
    Guard(Option<NsGuard>),
    /// Not listed yet: wait rather than decide.
    Pending,
    /// The Namespace cannot be read: deny.
    Unreadable(String),
}

impl NamespaceIndex {
    fn guards(&self) -> MutexGuard<'_, HashMap<String, NsGuard>> {
        self.guards.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn lookup(&self, namespace: &str) -> Known {
        if let Some(why) = self
            .failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Known::Unreadable(why);
        }
        if !self.listed.load(Ordering::Acquire) {
            return Known::Pending;
        }
        Known::Guard(self.guards().get(namespace).cloned())
    }

    pub fn listed(&self) -> bool {
        self.listed.load(Ordering::Acquire)
    }

    /// A namespace's labels, as `lookup` (pending, unreadable, or known).
    pub fn labels(&self, namespace: &str) -> Result<BTreeMap<String, String>, String> {
        match self.lookup(namespace) {
            Known::Pending => Err(format!(
                "the labels of Namespace {namespace} are not known yet"
            )),
            Known::Unreadable(why) => Err(format!("cannot read Namespace {namespace} ({why})")),
            Known::Guard(_) => Ok(self
                .labels
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(namespace)
                .cloned()
                .unwrap_or_default()),
        }
    }

    /// Every namespace can be decided: listed, or known to be unreadable (denied).
    pub fn settled(&self) -> bool {
        self.listed()
            || self
                .failing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_some()
    }

    pub fn watch_failed(&self, why: String) {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// Applies a watch event; returns the namespaces whose guard changed (their
    /// ExternalSecrets must be looked at again).
    pub fn apply(
        &self,
        cfg: &GuardConfig,
        ev: watcher::Event<PartialObjectMeta<Namespace>>,
    ) -> Vec<String> {
        *self.failing.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let mut changed = Vec::new();
        let mut guards = self.guards();
        let mut labels = self.labels.lock().unwrap_or_else(|p| p.into_inner());
        let mut put = |ns: &PartialObjectMeta<Namespace>, changed: &mut Vec<String>| {
            let Some(name) = ns.metadata.name.clone() else {
                return;
            };
            let g = NsGuard::from_annotations(cfg, ns.metadata.annotations.iter().flatten());
            let l = ns.metadata.labels.clone().unwrap_or_default();
            if !guards.get(&name).is_some_and(|old| old.same(&g)) || labels.get(&name) != Some(&l) {
                changed.push(name.clone());
            }
            guards.insert(name.clone(), g);
            labels.insert(name, l);
        };
        match ev {
            watcher::Event::Apply(ns) | watcher::Event::InitApply(ns) => put(&ns, &mut changed),
            watcher::Event::Delete(ns) => {
                if let Some(name) = ns.metadata.name {
                    guards.remove(&name);
                    labels.remove(&name);
                    changed.push(name);
                }
            }
            watcher::Event::Init => {}
            watcher::Event::InitDone => self.listed.store(true, Ordering::Release),
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(enforce: bool) -> GuardConfig {
        GuardConfig {
            naming_annotation: "externalsecrets.kubernetes-client.io/permitted-key-name".into(),
            role_annotation: "iam.amazonaws.com/permitted".into(),
            enforce,
        }
    }

    fn guard(cfg: &GuardConfig, pairs: &[(&str, &str)]) -> NsGuard {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        NsGuard::from_annotations(cfg, &m)
    }

    fn req<'a>(keys: &[&'a str], role: Option<&'a str>) -> Request<'a> {
        Request {
            keys: keys.to_vec(),
            role,
        }
    }

    #[test]
    fn kes_cases() {
        let c = cfg(false);
        let naming = "externalsecrets.kubernetes-client.io/permitted-key-name";
        let role = "iam.amazonaws.com/permitted";
        let g = guard(&c, &[(naming, "^secret/team-a/"), (role, "^team-a-")]);
        assert!(check(
            &c,
            "a",
            Some(&g),
            &req(&["secret/team-a/db"], Some("team-a-ro"))
        )
        .is_ok());
        assert_eq!(
            check(
                &c,
                "a",
                Some(&g),
                &req(&["secret/team-a/db", "secret/team-b/db"], None)
            ),
            Err(
                "key name secret/team-b/db does not match naming convention ^secret/team-a/".into()
            )
        );
        assert_eq!(
            check(
                &c,
                "a",
                Some(&g),
                &req(&["secret/team-a/db"], Some("admin"))
            ),
            Err("namespace does not allow to assume role admin".into())
        );
        // Unanchored, as JavaScript's RegExp.test.
        let g = guard(&c, &[(naming, "team-a")]);
        assert!(check(&c, "a", Some(&g), &req(&["secret/team-a/x"], Some("any"))).is_ok());
        // No annotations: allowed unless enforced.
        assert!(check(&c, "a", Some(&NsGuard::default()), &req(&["k"], Some("r"))).is_ok());
        assert!(check(&c, "a", None, &req(&["k"], Some("r"))).is_ok());
        // An empty role annotation allows every role.
        let g = guard(&c, &[(role, "")]);
        assert!(check(&c, "a", Some(&g), &req(&["k"], Some("r"))).is_ok());
    }

    #[test]
    fn enforced() {
        let c = cfg(true);
        let naming = "externalsecrets.kubernetes-client.io/permitted-key-name";
        let role = "iam.amazonaws.com/permitted";
        assert_eq!(
            check(&c, "a", Some(&NsGuard::default()), &req(&["k"], None)),
            Err("Namespace annotation is required".into())
        );
        let g = guard(&c, &[("other", "x")]);
        assert_eq!(
            check(&c, "team", Some(&g), &req(&["k"], None)),
            Err(format!(
                "Missing required annotation {naming} on namespace team"
            ))
        );
        let g = guard(&c, &[(naming, ".*")]);
        assert_eq!(
            check(&c, "team", Some(&g), &req(&["k"], Some("r"))),
            Err(format!(
                "Missing required annotation {role} on namespace team"
            ))
        );
        assert!(check(&c, "team", Some(&g), &req(&["k"], None)).is_ok());
    }

    #[test]
    fn invalid_regex_denies_and_names_the_annotation() {
        let c = cfg(false);
        let g = guard(&c, &[("iam.amazonaws.com/permitted", "(?=x)")]);
        let e = check(&c, "a", Some(&g), &req(&["k"], Some("r"))).unwrap_err();
        assert!(e.contains("iam.amazonaws.com/permitted"), "{e}");
    }

    #[test]
    fn index_reports_changes_and_fails_closed() {
        let c = cfg(false);
        let idx = NamespaceIndex::default();
        assert!(matches!(idx.lookup("a"), Known::Pending));
        let ns = |ann: &[(&str, &str)]| {
            let mut m: PartialObjectMeta<Namespace> = PartialObjectMeta::default();
            m.metadata.name = Some("a".into());
            m.metadata.annotations = Some(
                ann.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            );
            m
        };
        assert_eq!(idx.apply(&c, watcher::Event::InitApply(ns(&[]))), vec!["a"]);
        idx.apply(&c, watcher::Event::InitDone);
        assert!(matches!(idx.lookup("a"), Known::Guard(Some(_))));
        assert!(
            idx.apply(&c, watcher::Event::Apply(ns(&[]))).is_empty(),
            "no change"
        );
        assert_eq!(
            idx.apply(
                &c,
                watcher::Event::Apply(ns(&[("iam.amazonaws.com/permitted", "x")]))
            ),
            vec!["a"]
        );
        idx.watch_failed("403 Forbidden".into());
        assert!(matches!(idx.lookup("a"), Known::Unreadable(_)));
    }
}
