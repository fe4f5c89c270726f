//! ESO's per-object series, with ESO's names and labels:
//! `externalsecret_sync_calls_total{name,namespace}`,
//! `externalsecret_sync_calls_error{name,namespace}` (counters) and
//! `externalsecret_status_condition{condition="Ready",name,namespace,status="True"|"False"}`
//! (1 for the current status, 0 for the other).
//!
//! A few numbers per object written out at scrape time, as for KES's series (the reason and
//! the cost are in `api::kes::metrics` and docs/benchmarks.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

use crate::metrics::escape;

pub const SYNC_CALLS: &str = "externalsecret_sync_calls_total";
pub const SYNC_ERRORS: &str = "externalsecret_sync_calls_error";
pub const CONDITION: &str = "externalsecret_status_condition";

#[derive(Clone, Copy, Default)]
struct Counts {
    calls: u64,
    errors: u64,
    ready: bool,
}

/// (namespace, name) → counts.
type ByObject = BTreeMap<(Box<str>, Box<str>), Counts>;

#[derive(Default)]
pub struct EsoPerObject {
    objects: Mutex<ByObject>,
}

impl EsoPerObject {
    fn objects(&self) -> MutexGuard<'_, ByObject> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, namespace: &str, name: &str, ok: bool) {
        let mut objects = self.objects();
        let c = objects.entry((namespace.into(), name.into())).or_default();
        c.calls += 1;
        if !ok {
            c.errors += 1;
        }
        c.ready = ok;
    }

    pub fn series(&self) -> usize {
        self.objects().len() * 4
    }

    pub fn retain(&self, mut live: impl FnMut(&str, &str) -> bool) {
        self.objects().retain(|(ns, name), _| live(ns, name));
    }

    /// Appends the families in the text exposition format, sorted as the prometheus crate
    /// sorts them (families by name, series by label values).
    pub fn encode(&self, out: &mut String) {
        let objects = self.objects();
        if objects.is_empty() {
            return;
        }
        let mut by_name: Vec<(&str, &str, &Counts)> = objects
            .iter()
            .map(|((ns, name), c)| (&**name, &**ns, c))
            .collect();
        by_name.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let _ = writeln!(
            out,
            "# HELP {CONDITION} The status condition of a specific External Secret"
        );
        let _ = writeln!(out, "# TYPE {CONDITION} gauge");
        for (name, ns, c) in &by_name {
            for (status, on) in [("False", !c.ready), ("True", c.ready)] {
                series(out, CONDITION, Some("Ready"), name, ns, Some(status));
                let _ = writeln!(out, " {}", u8::from(on));
            }
        }
        let _ = writeln!(
            out,
            "# HELP {SYNC_ERRORS} Total number of the External Secret sync errors"
        );
        let _ = writeln!(out, "# TYPE {SYNC_ERRORS} counter");
        for (name, ns, c) in &by_name {
            series(out, SYNC_ERRORS, None, name, ns, None);
            let _ = writeln!(out, " {}", c.errors);
        }
        let _ = writeln!(
            out,
            "# HELP {SYNC_CALLS} Total number of the External Secret sync calls"
        );
        let _ = writeln!(out, "# TYPE {SYNC_CALLS} counter");
        for (name, ns, c) in &by_name {
            series(out, SYNC_CALLS, None, name, ns, None);
            let _ = writeln!(out, " {}", c.calls);
        }
    }
}

fn series(
    out: &mut String,
    family: &str,
    condition: Option<&str>,
    name: &str,
    ns: &str,
    status: Option<&str>,
) {
    out.push_str(family);
    out.push('{');
    if let Some(c) = condition {
        out.push_str("condition=\"");
        escape(out, c);
        out.push_str("\",");
    }
    out.push_str("name=\"");
    escape(out, name);
    out.push_str("\",namespace=\"");
    escape(out, ns);
    out.push('"');
    if let Some(s) = status {
        out.push_str(",status=\"");
        escape(out, s);
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

    /// Same samples through the prometheus crate and through `EsoPerObject`: same text.
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
        let mut got = String::new();
        ours.encode(&mut got);
        assert_eq!(got, String::from_utf8(want).unwrap());
        ours.retain(|_, name| name == "app");
        got.clear();
        ours.encode(&mut got);
        assert!(got.contains("name=\"app\"") && !got.contains("db"), "{got}");
    }
}
