//! ESO's per-object series, with ESO's names and labels:
//! `externalsecret_sync_calls_total{name,namespace}`,
//! `externalsecret_sync_calls_error{name,namespace}` (counters) and
//! `externalsecret_status_condition{condition="Ready",name,namespace,status="True"|"False"}`
//! (1 for the current status, 0 for the other).
//!
//! A few numbers per object written out at scrape time in pieces, as for KES's series
//! (`metrics::per_object`, where the reason and the cost are).

use std::fmt::Write as _;

use crate::metrics::per_object::{label, Family, PerObject};

pub const SYNC_CALLS: &str = "externalsecret_sync_calls_total";
pub const SYNC_ERRORS: &str = "externalsecret_sync_calls_error";
pub const CONDITION: &str = "externalsecret_status_condition";

#[derive(Clone, Copy, Default)]
pub struct Counts {
    calls: u64,
    errors: u64,
    ready: bool,
}

/// In the crate's order: families by name, labels by name.
static FAMILIES: [Family<Counts>; 3] = [
    Family {
        name: CONDITION,
        help: "The status condition of a specific External Secret",
        kind: "gauge",
        lines: |out, family, ns, name, c| {
            for (status, on) in [("False", !c.ready), ("True", c.ready)] {
                out.push_str(family);
                out.push('{');
                label(out, true, "condition", "Ready");
                label(out, false, "name", name);
                label(out, false, "namespace", ns);
                label(out, false, "status", status);
                let _ = writeln!(out, "}} {}", u8::from(on));
            }
        },
    },
    Family {
        name: SYNC_ERRORS,
        help: "Total number of the External Secret sync errors",
        kind: "counter",
        lines: |out, family, ns, name, c| sample(out, family, name, ns, c.errors),
    },
    Family {
        name: SYNC_CALLS,
        help: "Total number of the External Secret sync calls",
        kind: "counter",
        lines: |out, family, ns, name, c| sample(out, family, name, ns, c.calls),
    },
];

/// `family{name="…",namespace="…"} value`.
fn sample(out: &mut String, family: &str, name: &str, ns: &str, value: u64) {
    out.push_str(family);
    out.push('{');
    label(out, true, "name", name);
    label(out, false, "namespace", ns);
    let _ = writeln!(out, "}} {value}");
}

/// ESO's series of every object.
pub type EsoPerObject = PerObject<Counts>;

impl Default for EsoPerObject {
    fn default() -> Self {
        PerObject::new(&FAMILIES)
    }
}

impl EsoPerObject {
    pub fn record(&self, namespace: &str, name: &str, ok: bool) {
        self.update(namespace, name, |c| {
            c.calls += 1;
            if !ok {
                c.errors += 1;
            }
            c.ready = ok;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::per_object::{normalized, text};
    use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

    /// Same samples through the prometheus crate and through `EsoPerObject`: same families
    /// and series.
    #[test]
    fn output_matches_the_prometheus_crate() {
        let registry = Registry::new();
        let calls = IntCounterVec::new(
            Opts::new(SYNC_CALLS, "Total number of the External Secret sync calls"),
            &["name", "namespace"],
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new(
                SYNC_ERRORS,
                "Total number of the External Secret sync errors",
            ),
            &["name", "namespace"],
        )
        .unwrap();
        let cond = IntGaugeVec::new(
            Opts::new(
                CONDITION,
                "The status condition of a specific External Secret",
            ),
            &["name", "namespace", "condition", "status"],
        )
        .unwrap();
        for c in [
            Box::new(calls.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(cond.clone()),
        ] {
            registry.register(c).unwrap();
        }
        let ours = EsoPerObject::default();
        for (ns, name, ok) in [
            ("b", "db", false),
            ("a", "app", true),
            ("b", "db", true),
            ("a", "x\"y", false),
        ] {
            ours.record(ns, name, ok);
            calls.with_label_values(&[name, ns]).inc();
            errors.with_label_values(&[name, ns]).inc_by(u64::from(!ok));
            cond.with_label_values(&[name, ns, "Ready", "True"])
                .set(i64::from(ok));
            cond.with_label_values(&[name, ns, "Ready", "False"])
                .set(i64::from(!ok));
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
        ours.retain(|_, name| name == "app");
        let got = text(&[&ours]);
        assert!(got.contains("name=\"app\"") && !got.contains("db"), "{got}");
    }
}
