//! JSON logs, one object per line, with the message under `LOG_MESSAGE_KEY` (KES used pino, whose
//! message key was configurable). tracing-subscriber's JSON formatter fixes the key to
//! `message`, hence this small formatter.
//!
//! Two shapes: ours (the default: RFC 3339 `time`, `level` as a word, `target`), and KES's pino
//! shape for log pipelines that alert on it (`LOG_FORMAT=kes`, or any of KES's pino variables):
//! numeric `level` (10 trace … 60 fatal) unless `USE_HUMAN_READABLE_LOG_LEVELS`, `time` in epoch
//! milliseconds, base keys `pid` and `hostname` (renamed by `LOG_BASE_PID_KEY` /
//! `LOG_BASE_HOSTNAME_KEY`).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

pub struct JsonFormat {
    pub message_key: String,
    /// `Some`: KES's pino shape.
    pub pino: Option<Pino>,
}

/// KES's pino log shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Pino {
    pub numeric_levels: bool,
    pub pid_key: String,
    pub hostname_key: String,
    pub hostname: String,
}

impl Pino {
    /// From KES's variables; `None` unless `LOG_FORMAT=kes` or one of them is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Option<Pino> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let human = get("USE_HUMAN_READABLE_LOG_LEVELS");
        let pid_key = get("LOG_BASE_PID_KEY");
        let hostname_key = get("LOG_BASE_HOSTNAME_KEY");
        let asked = get("LOG_FORMAT").is_some_and(|f| f.trim().eq_ignore_ascii_case("kes"));
        if !asked && human.is_none() && pid_key.is_none() && hostname_key.is_none() {
            return None;
        }
        Some(Pino {
            numeric_levels: human.is_none(),
            pid_key: pid_key.unwrap_or_else(|| "pid".into()),
            hostname_key: hostname_key.unwrap_or_else(|| "hostname".into()),
            hostname: get("HOSTNAME")
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_string())
                .unwrap_or_default(),
        })
    }
}

/// pino's numbers for tracing's levels (pino's `fatal`, 60, has no tracing level).
fn pino_level(level: &tracing::Level) -> u64 {
    match *level {
        tracing::Level::TRACE => 10,
        tracing::Level::DEBUG => 20,
        tracing::Level::INFO => 30,
        tracing::Level::WARN => 40,
        tracing::Level::ERROR => 50,
    }
}

struct Fields<'a> {
    map: &'a mut Map<String, Value>,
    message_key: &'a str,
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.insert(field, Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field, Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field, Value::String(value.to_string()));
    }
}

impl Fields<'_> {
    fn insert(&mut self, field: &Field, value: Value) {
        let key = match field.name() {
            "message" => self.message_key.to_string(),
            // Our own keys win over fields of the same name.
            "level" | "time" | "target" => format!("field.{}", field.name()),
            other => other.to_string(),
        };
        self.map.insert(key, value);
    }
}

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut map = Map::new();
        let level = event.metadata().level();
        match &self.pino {
            None => {
                map.insert(
                    "time".into(),
                    Value::String(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    ),
                );
                map.insert(
                    "level".into(),
                    Value::String(level.to_string().to_lowercase()),
                );
            }
            Some(p) => {
                let level = if p.numeric_levels {
                    Value::from(pino_level(level))
                } else {
                    Value::String(level.to_string().to_lowercase())
                };
                map.insert("level".into(), level);
                map.insert(
                    "time".into(),
                    Value::from(chrono::Utc::now().timestamp_millis()),
                );
                map.insert(p.pid_key.clone(), Value::from(std::process::id()));
                map.insert(p.hostname_key.clone(), Value::String(p.hostname.clone()));
            }
        }
        map.insert(
            "target".into(),
            Value::String(event.metadata().target().into()),
        );
        // Span fields (e.g. the object a reconcile works on) first, so the event's own win.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span
                    .extensions()
                    .get::<tracing_subscriber::fmt::FormattedFields<N>>()
                {
                    if !fields.is_empty() {
                        map.insert(span.name().to_string(), Value::String(fields.to_string()));
                    }
                }
            }
        }
        event.record(&mut Fields {
            map: &mut map,
            message_key: &self.message_key,
        });
        let line = serde_json::to_string(&map).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// Installs the global subscriber: `level` for our crate, warnings for dependencies unless
/// `RUST_LOG` says otherwise.
/// The subscriber, before its filter and writer: our JSON lines, and no terminal colours in
/// the span fields a line carries (they are formatted before the line is).
fn builder(
    format: JsonFormat,
) -> tracing_subscriber::fmt::SubscriberBuilder<
    tracing_subscriber::fmt::format::DefaultFields,
    JsonFormat,
> {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .event_format(format)
}

pub fn init(level: &str, message_key: &str, pino: Option<Pino>) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(format!(
            "warn,vault_external_secrets={level},kube_runtime::controller=warn"
        ))?,
    };
    builder(JsonFormat {
        message_key: message_key.to_string(),
        pino,
    })
    .with_env_filter(filter)
    .with_writer(std::io::stdout)
    .try_init()
    .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(format: JsonFormat) -> Value {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = builder(format).with_writer(move || w.clone()).finish();
        tracing::subscriber::with_default(sub, || {
            let _span = tracing::info_span!("sync", api = "eso", name = "app").entered();
            tracing::warn!(name = "app", "sync failed");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        serde_json::from_str(text.trim()).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> Option<Pino> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Pino::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn kes_shape_for_pino_pipelines() {
        assert_eq!(env(&[]), None, "our shape stays the default");
        let pino = env(&[("LOG_FORMAT", "kes"), ("HOSTNAME", "pod-1")]).unwrap();
        let v = line(JsonFormat {
            message_key: "message".into(),
            pino: Some(pino),
        });
        assert_eq!(v["level"], 40, "alerting on level >= 50 keeps working");
        assert!(
            v["time"].as_i64().unwrap() > 1_600_000_000_000,
            "epoch ms: {v}"
        );
        assert_eq!(v["pid"], std::process::id());
        assert_eq!(v["hostname"], "pod-1");
        assert_eq!(v["message"], "sync failed");
        assert_eq!(v["name"], "app");

        let renamed = env(&[
            ("LOG_BASE_PID_KEY", "process"),
            ("LOG_BASE_HOSTNAME_KEY", "host"),
            ("USE_HUMAN_READABLE_LOG_LEVELS", "true"),
        ])
        .unwrap();
        let v = line(JsonFormat {
            message_key: "msg".into(),
            pino: Some(renamed),
        });
        assert_eq!(v["level"], "warn");
        assert!(v.get("process").is_some() && v.get("host").is_some(), "{v}");
        assert!(v.get("pid").is_none());
    }

    #[test]
    fn default_shape() {
        let v = line(JsonFormat {
            message_key: "msg".into(),
            pino: None,
        });
        assert_eq!(v["level"], "warn");
        assert!(v["time"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["msg"], "sync failed");
        // The span's fields, without terminal escapes.
        assert_eq!(v["sync"], "api=\"eso\" name=\"app\"", "{v}");
    }
}
