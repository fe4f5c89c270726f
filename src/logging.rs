//! JSON logs, one object per line, with the message under `LOG_MESSAGE_KEY` (KES used pino, whose
//! message key was configurable). tracing-subscriber's JSON formatter fixes the key to
//! `message`, hence this small formatter.

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
        map.insert(
            "time".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        map.insert(
            "level".into(),
            Value::String(event.metadata().level().to_string().to_lowercase()),
        );
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
pub fn init(level: &str, message_key: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v)?,
        _ => EnvFilter::try_new(format!(
            "warn,vault_external_secrets={level},kube_runtime::controller=warn"
        ))?,
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .event_format(JsonFormat {
            message_key: message_key.to_string(),
        })
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
