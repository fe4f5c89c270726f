//! KES's two per-object series:
//! `kubernetes_external_secrets_sync_calls_count{backend,name,namespace,status}` (counter) and
//! `kubernetes_external_secrets_last_sync_call_state{backend,name,namespace}` (1 or -1).
//!
//! A few numbers per object, written out at scrape time in pieces (`metrics::per_object`, where
//! the reason and the cost are). Same series and values as the prometheus crate writes (test
//! below).

use std::fmt::Write as _;

use crate::metrics::per_object::{label, Family, PerObject};

pub const SYNC_CALLS: &str = "kubernetes_external_secrets_sync_calls_count";
pub const LAST_STATE: &str = "kubernetes_external_secrets_last_sync_call_state";
const SYNC_CALLS_HELP: &str = "Number of sync operations";
const LAST_STATE_HELP: &str =
    "State of last sync call of external secret. Value -1 if the last sync was a failure, 1 otherwise";

#[derive(Clone, Copy, Default)]
pub struct Counts {
    backend: &'static str,
    success: u64,
    error: u64,
    last_ok: bool,
}

/// In the crate's order: families by name.
static FAMILIES: [Family<Counts>; 2] = [
    Family {
        name: LAST_STATE,
        help: LAST_STATE_HELP,
        kind: "gauge",
        lines: |out, family, ns, name, c| {
            labels(out, family, c.backend, name, ns);
            let _ = writeln!(out, "}} {}", if c.last_ok { 1 } else { -1 });
        },
    },
    Family {
        name: SYNC_CALLS,
        help: SYNC_CALLS_HELP,
        kind: "counter",
        lines: |out, family, ns, name, c| {
            for (status, n) in [("error", c.error), ("success", c.success)] {
                if n > 0 {
                    labels(out, family, c.backend, name, ns);
                    label(out, false, "status", status);
                    let _ = writeln!(out, "}} {n}");
                }
            }
        },
    },
];

/// `family{backend="…",name="…",namespace="…"`, without the closing brace.
fn labels(out: &mut String, family: &str, backend: &str, name: &str, namespace: &str) {
    out.push_str(family);
    out.push('{');
    label(out, true, "backend", backend);
    label(out, false, "name", name);
    label(out, false, "namespace", namespace);
}

/// KES's series of every object.
pub type KesPerObject = PerObject<Counts>;

impl Default for KesPerObject {
    fn default() -> Self {
        PerObject::new(&FAMILIES)
    }
}

impl KesPerObject {
    /// Counts one sync of `namespace/name` and sets its last state.
    pub fn record(&self, namespace: &str, name: &str, backend: &'static str, ok: bool) {
        self.update(namespace, name, |c| {
            c.backend = backend;
            c.last_ok = ok;
            if ok {
                c.success += 1;
            } else {
                c.error += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::per_object::{normalized, text};
    use prometheus::{Encoder, GaugeVec, IntCounterVec, Opts, Registry, TextEncoder};

    /// Same samples through the prometheus crate and through `KesPerObject`: same families
    /// and series.
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
        let ours = KesPerObject::default();
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
        let got = text(&[&ours]);
        assert_eq!(
            normalized(&got),
            normalized(&String::from_utf8(want).unwrap())
        );
        assert!(got.contains(r#"{backend="vault",name="db",namespace="team-b",status="error"} 1"#));
        assert!(got.contains(r#"{backend="vault",name="api",namespace="default"} -1"#));
    }

    #[test]
    fn retain_drops_gone_objects() {
        let ours = KesPerObject::default();
        ours.record("a", "keep", "vault", true);
        ours.record("a", "gone", "vault", true);
        ours.record("b", "gone", "vault", false);
        ours.retain(|ns, name| (ns, name) == ("a", "keep"));
        let kept = text(&[&ours]);
        assert!(kept.contains(r#"name="keep""#), "{kept}");
        assert!(!kept.contains("gone"), "{kept}");
        ours.retain(|_, _| false);
        assert_eq!(text(&[&ours]), "");
    }
}
