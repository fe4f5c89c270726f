//! KES's two per-object series:
//! `kubernetes_external_secrets_sync_calls_count{backend,name,namespace,status}` (counter) and
//! `kubernetes_external_secrets_last_sync_call_state{backend,name,namespace}` (1 or -1).
//!
//! Kept as a few numbers per object in one sorted map and written out in the text exposition
//! format at scrape time. As prometheus-crate children (a label-pair vector, a descriptor and a
//! hash entry per series, all copied again into protobuf families on every gather) they cost
//! several times more per series, resident and again per scrape (measured in docs/benchmarks.md).
//! The output is byte-for-byte what the crate writes (test below).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::metrics::escape;

pub const SYNC_CALLS: &str = "kubernetes_external_secrets_sync_calls_count";
pub const LAST_STATE: &str = "kubernetes_external_secrets_last_sync_call_state";
const SYNC_CALLS_HELP: &str = "Number of sync operations";
const LAST_STATE_HELP: &str =
    "State of last sync call of external secret. Value -1 if the last sync was a failure, 1 otherwise";

#[derive(Clone, Copy)]
struct Counts {
    backend: &'static str,
    success: u64,
    error: u64,
    last_ok: bool,
}

/// namespace → name → counts. `Box<str>` keys: no spare capacity, looked up by `&str`.
type ByNamespace = BTreeMap<Box<str>, BTreeMap<Box<str>, Counts>>;

#[derive(Default)]
pub struct PerObject {
    objects: Mutex<ByNamespace>,
}

impl PerObject {
    fn objects(&self) -> std::sync::MutexGuard<'_, ByNamespace> {
        // A panic elsewhere leaves plain numbers behind; still consistent.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one sync of `namespace/name` and sets its last state.
    pub fn record(&self, namespace: &str, name: &str, backend: &'static str, ok: bool) {
        let mut objects = self.objects();
        let names = match objects.get_mut(namespace) {
            Some(names) => names,
            None => objects.entry(namespace.into()).or_default(),
        };
        let counts = match names.get_mut(name) {
            Some(c) => c,
            None => names.entry(name.into()).or_insert(Counts {
                backend,
                success: 0,
                error: 0,
                last_ok: ok,
            }),
        };
        counts.backend = backend;
        counts.last_ok = ok;
        if ok {
            counts.success += 1;
        } else {
            counts.error += 1;
        }
    }

    /// Objects with series.
    pub fn series(&self) -> usize {
        self.objects().values().map(|names| names.len()).sum()
    }

    /// Keeps the series of objects for which `live(namespace, name)` holds; drops the rest.
    pub fn retain(&self, mut live: impl FnMut(&str, &str) -> bool) {
        let mut objects = self.objects();
        objects.retain(|ns, names| {
            names.retain(|name, _| live(ns, name));
            !names.is_empty()
        });
    }

    /// Appends both families in the text exposition format, in the crate's order: families by
    /// name, series by label values (backend, name, namespace).
    pub fn encode(&self, out: &mut String) {
        let objects = self.objects();
        let mut series: Vec<(&str, &str, &Counts)> = objects
            .iter()
            .flat_map(|(ns, names)| names.iter().map(move |(name, c)| (&**name, &**ns, c)))
            .collect();
        if series.is_empty() {
            return;
        }
        series.sort_unstable_by(|a, b| (a.2.backend, a.0, a.1).cmp(&(b.2.backend, b.0, b.1)));
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {LAST_STATE} {LAST_STATE_HELP}");
        let _ = writeln!(out, "# TYPE {LAST_STATE} gauge");
        for (name, ns, c) in &series {
            labels(out, LAST_STATE, c.backend, name, ns);
            let _ = writeln!(out, "}} {}", if c.last_ok { 1 } else { -1 });
        }
        let _ = writeln!(out, "# HELP {SYNC_CALLS} {SYNC_CALLS_HELP}");
        let _ = writeln!(out, "# TYPE {SYNC_CALLS} counter");
        for (name, ns, c) in &series {
            for (status, n) in [("error", c.error), ("success", c.success)] {
                if n > 0 {
                    labels(out, SYNC_CALLS, c.backend, name, ns);
                    let _ = writeln!(out, ",status=\"{status}\"}} {n}");
                }
            }
        }
    }
}

/// `family{backend="…",name="…",namespace="…"`, without the closing brace.
fn labels(out: &mut String, family: &str, backend: &str, name: &str, namespace: &str) {
    out.push_str(family);
    out.push_str("{backend=\"");
    escape(out, backend);
    out.push_str("\",name=\"");
    escape(out, name);
    out.push_str("\",namespace=\"");
    escape(out, namespace);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

    /// Same samples through the prometheus crate and through `PerObject`: same text.
    #[test]
    fn output_matches_the_prometheus_crate() {
        let registry = Registry::new();
        let calls = IntCounterVec::new(
            Opts::new(SYNC_CALLS, SYNC_CALLS_HELP),
            &["name", "namespace", "backend", "status"],
        )
        .unwrap();
        let state = GaugeVec::new(
            Opts::new(LAST_STATE, LAST_STATE_HELP),
            &["name", "namespace", "backend"],
        )
        .unwrap();
        registry.register(Box::new(calls.clone())).unwrap();
        registry.register(Box::new(state.clone())).unwrap();
        let ours = PerObject::default();
        let syncs = [
            ("default", "rabbitmq", true),
            ("default", "rabbitmq", true),
            ("team-b", "db", false),
            ("default", "a\"b\\c\nd", true), // not a valid name, but escaped all the same
            ("team-b", "db", true),
            ("default", "api", false),
        ];
        for (ns, name, ok) in syncs {
            ours.record(ns, name, "vault", ok);
            let status = if ok { "success" } else { "error" };
            calls.with_label_values(&[name, ns, "vault", status]).inc();
            state
                .with_label_values(&[name, ns, "vault"])
                .set(if ok { 1.0 } else { -1.0 });
        }
        let mut want = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut want)
            .unwrap();
        let mut got = String::new();
        ours.encode(&mut got);
        assert_eq!(got, String::from_utf8(want).unwrap());
        assert!(got.contains(r#"{backend="vault",name="db",namespace="team-b",status="error"} 1"#));
        assert!(got.contains(r#"{backend="vault",name="api",namespace="default"} -1"#));
    }

    #[test]
    fn retain_drops_gone_objects() {
        let ours = PerObject::default();
        ours.record("a", "keep", "vault", true);
        ours.record("a", "gone", "vault", true);
        ours.record("b", "gone", "vault", false);
        ours.retain(|ns, name| (ns, name) == ("a", "keep"));
        let mut text = String::new();
        ours.encode(&mut text);
        assert!(text.contains(r#"name="keep""#), "{text}");
        assert!(!text.contains("gone"), "{text}");
        ours.retain(|_, _| false);
        text.clear();
        ours.encode(&mut text);
        assert!(text.is_empty(), "{text}");
    }
}
