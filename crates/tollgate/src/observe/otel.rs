//! OpenTelemetry: one span per finished request, exported over OTLP/HTTP
//! (protobuf) to the endpoint in `TOLLGATE_OTLP_ENDPOINT` (for example
//! `http://127.0.0.1:4318`; `/v1/traces` is appended unless present).
//! `OTEL_EXPORTER_OTLP_HEADERS` adds headers (e.g. a collector's API key).
//!
//! The span carries the GenAI semantic-convention attributes
//! (`gen_ai.system`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, …)
//! plus cost and attribution (`tollgate.cost_usd`, `tollgate.tag.<k>`), and
//! is parented to the caller's W3C `traceparent` when the ledger row's trace
//! and parent ids are one (32 and 16 hex digits); otherwise it starts a new
//! trace and keeps the caller's id as `tollgate.trace_id`.
//!
//! The request path only builds the span and `try_send`s it into a bounded
//! queue; a dedicated thread batches the queue (up to [`MAX_BATCH`] spans or
//! [`BATCH_DELAY`]) and exports it. A full queue drops the span and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use tokio::sync::mpsc;

use crate::ledger::LedgerRow;

/// The environment variable naming the OTLP/HTTP endpoint; unset = no export.
pub const ENDPOINT_ENV: &str = "TOLLGATE_OTLP_ENDPOINT";
pub const MAX_BATCH: usize = 512;
pub const BATCH_DELAY: Duration = Duration::from_millis(500);
const QUEUE: usize = 8_192;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("OTLP endpoint {0:?} must be an http:// or https:// URL")]
    Endpoint(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Build(String),
    #[error("cannot start the OTLP export thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Export counters, shown in `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExportStats {
    pub exported: u64,
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped: AtomicU64,
}

/// How long dropping the exporter waits for the last batch to go out.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Handle to the export thread; dropping it flushes what is queued (waiting
/// at most [`FLUSH_WAIT`]) and stops the thread.
#[derive(Debug)]
pub struct Exporter {
    tx: Option<mpsc::Sender<SpanData>>,
    /// Disconnects when the export thread has finished.
    done: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    counters: Arc<Counters>,
    scope: InstrumentationScope,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Ok(done) = self.done.lock() {
            let _ = done.recv_timeout(FLUSH_WAIT);
        }
    }
}

/// `http://host:4318` → `http://host:4318/v1/traces`.
pub fn traces_url(endpoint: &str) -> Result<String, OtelError> {
    let e = endpoint.trim();
    if !(e.starts_with("http://") || e.starts_with("https://")) {
        return Err(OtelError::Endpoint(endpoint.to_string()));
    }
    Ok(if e.ends_with("/v1/traces") { e.to_string() } else { format!("{}/v1/traces", e.trim_end_matches('/')) })
}

impl Exporter {
    pub fn start(endpoint: &str) -> Result<Exporter, OtelError> {
        let url = traces_url(endpoint)?;
        let http =
            reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build().map_err(|e| OtelError::Build(e.to_string()))?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(http)
            .with_endpoint(url)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| OtelError::Build(e.to_string()))?;
        exporter.set_resource(&opentelemetry_sdk::Resource::builder().with_service_name("tollgate").build());
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        // A thread with its own runtime: export never competes with requests
        // and works whichever runtime (or none) built the gateway.
        std::thread::Builder::new().name("otlp-export".into()).spawn(move || {
            let _done = done_tx;
            match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt.block_on(run(exporter, rx, c)),
                Err(error) => tracing::error!(%error, "cannot start the OTLP export runtime; spans are dropped"),
            }
        })?;
        let scope = InstrumentationScope::builder("tollgate").with_version(env!("CARGO_PKG_VERSION")).build();
        Ok(Exporter { tx: Some(tx), done: std::sync::Mutex::new(done), counters, scope })
    }

    /// Queues the row's span; never waits.
    pub fn export(&self, row: &LedgerRow) {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.try_send(span(row, &self.scope)).is_ok());
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> ExportStats {
        ExportStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }
}

async fn run(exporter: opentelemetry_otlp::SpanExporter, mut rx: mpsc::Receiver<SpanData>, counters: Arc<Counters>) {
    let mut open = true;
    while open {
        let Some(first) = rx.recv().await else { break };
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(s)) => batch.push(s),
                Ok(None) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        match exporter.export(batch).await {
            Ok(()) => {
                counters.exported.fetch_add(n, Ordering::Relaxed);
            }
            Err(error) => {
                counters.dropped.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(%error, spans = n, "otlp export failed; spans dropped");
            }
        }
    }
}

fn hex_id<const N: usize>(s: Option<&str>) -> Option<&str> {
    s.filter(|s| s.len() == N && s.bytes().all(|b| b.is_ascii_hexdigit()) && !s.bytes().all(|b| b == b'0'))
}

fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        _ => "chat",
    }
}

fn random_span_id() -> SpanId {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return SpanId::from_bytes(id.to_be_bytes());
        }
    }
}

fn random_trace_id() -> TraceId {
    loop {
        let id: u128 = rand::random();
        if id != 0 {
            return TraceId::from_bytes(id.to_be_bytes());
        }
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The span for one ledger row.
pub fn span(row: &LedgerRow, scope: &InstrumentationScope) -> SpanData {
    let a = &row.attribution;
    let caller_trace = hex_id::<32>(a.trace_id.as_deref()).and_then(|t| TraceId::from_hex(t).ok());
    let (trace_id, parent) = match caller_trace {
        Some(t) => (t, hex_id::<16>(a.parent_id.as_deref()).and_then(|p| SpanId::from_hex(p).ok())),
        None => (random_trace_id(), None),
    };
    let start = UNIX_EPOCH + Duration::from_millis(u64::try_from(row.time_ms).unwrap_or(0));
    let end = start + Duration::from_millis(row.latency_ms);
    let op = operation(row.endpoint.as_str());
    let model_name = row.requested_model.as_deref().or(row.model.as_deref()).unwrap_or("unknown");

    let u = &row.usage;
    let mut attrs = Vec::with_capacity(24 + a.tags.len());
    attrs.push(KeyValue::new("gen_ai.operation.name", op));
    if let Some(p) = &row.provider {
        attrs.push(KeyValue::new("gen_ai.system", p.clone()));
        attrs.push(KeyValue::new("gen_ai.provider.name", p.clone()));
    }
    if let Some(m) = &row.requested_model {
        attrs.push(KeyValue::new("gen_ai.request.model", m.clone()));
    }
    if let Some(m) = &row.model {
        attrs.push(KeyValue::new("gen_ai.response.model", m.clone()));
    }
    attrs.push(KeyValue::new("gen_ai.usage.input_tokens", int(u.input_tokens())));
    attrs.push(KeyValue::new("gen_ai.usage.output_tokens", int(u.output_tokens())));
    attrs.push(KeyValue::new("gen_ai.usage.cache_read.input_tokens", int(u.cache_read)));
    attrs.push(KeyValue::new("gen_ai.usage.cache_creation.input_tokens", int(u.cache_write_tokens())));
    attrs.push(KeyValue::new("tollgate.usage.reasoning_tokens", int(u.reasoning)));
    attrs.push(KeyValue::new("tollgate.usage_source", row.usage_source.as_str()));
    attrs.push(KeyValue::new("tollgate.request_id", row.request_id.clone()));
    attrs.push(KeyValue::new("tollgate.endpoint", row.endpoint.as_str()));
    match row.cost {
        Some(c) => {
            attrs.push(KeyValue::new("tollgate.cost_usd", c.to_string()));
            attrs.push(KeyValue::new("tollgate.priced", true));
        }
        None => attrs.push(KeyValue::new("tollgate.priced", false)),
    }
    attrs.push(KeyValue::new("tollgate.cache_savings_usd", row.cache_savings.to_string()));
    attrs.push(KeyValue::new("tollgate.cache", row.cache.as_str()));
    attrs.push(KeyValue::new("tollgate.streamed", row.streamed));
    attrs.push(KeyValue::new("tollgate.attempts", i64::from(row.attempts)));
    attrs.push(KeyValue::new("http.response.status_code", i64::from(row.status)));
    if let Some(t) = row.ttft_ms {
        attrs.push(KeyValue::new("tollgate.ttft_ms", int(t)));
    }
    if let Some(e) = &row.error_code {
        attrs.push(KeyValue::new("error.type", e.clone()));
    }
    if row.client_disconnected {
        attrs.push(KeyValue::new("tollgate.client_disconnected", true));
    }
    if let Some(k) = &row.key_id {
        attrs.push(KeyValue::new("tollgate.key_id", k.clone()));
    }
    if caller_trace.is_none() {
        if let Some(t) = &a.trace_id {
            attrs.push(KeyValue::new("tollgate.trace_id", t.clone()));
        }
        if let Some(p) = &a.parent_id {
            attrs.push(KeyValue::new("tollgate.parent_id", p.clone()));
        }
    }
    for (name, v) in [("tollgate.session", &a.session), ("tollgate.agent", &a.agent), ("tollgate.prompt", &a.prompt)] {
        if let Some(v) = v {
            attrs.push(KeyValue::new(name, v.clone()));
        }
    }
    for (k, v) in &a.tags {
        attrs.push(KeyValue::new(format!("tollgate.tag.{k}"), v.clone()));
    }

    let status = if row.status >= 400 {
        Status::error(row.error_code.clone().unwrap_or_else(|| format!("http {}", row.status)))
    } else {
        Status::Unset
    };
    SpanData {
        span_context: SpanContext::new(trace_id, random_span_id(), TraceFlags::SAMPLED, false, TraceState::NONE),
        parent_span_id: parent.unwrap_or(SpanId::INVALID),
        parent_span_is_remote: parent.is_some(),
        span_kind: SpanKind::Server,
        name: format!("{op} {model_name}").into(),
        start_time: start,
        end_time: end.max(start),
        attributes: attrs,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status,
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::Attribution;
    use crate::ledger::UsageSource;
    use tollgate_units::{Money, Usage};

    fn row(trace: Option<&str>, parent: Option<&str>) -> LedgerRow {
        LedgerRow {
            request_id: "req-1".into(),
            time_ms: 1_700_000_000_000,
            key_id: Some("key_1".into()),
            endpoint: crate::record::Endpoint::ChatCompletions,
            requested_model: Some("gpt-4o-mini".into()),
            model: Some("gpt-4o-mini-2024-07-18".into()),
            provider: Some("openai".into()),
            status: 200,
            error_code: None,
            usage: Usage { input: 10, cache_read: 5, output: 7, reasoning: 2, ..Usage::default() },
            usage_source: UsageSource::Provider,
            cost: Some(Money::from_nanos(12_345)),
            cache_savings: Money::ZERO,
            response_cache_savings: Money::ZERO,
            tool_cost: Money::ZERO,
            provider_cost: None,
            streamed: true,
            client_disconnected: false,
            cache: crate::record::CacheOutcome::Off,
            latency_ms: 250,
            ttft_ms: Some(40),
            attempts: 1,
            prefix_hash: None,
            attempt_log: Vec::new(),
            attribution: Attribution {
                trace_id: trace.map(String::from),
                parent_id: parent.map(String::from),
                ..Attribution::default()
            },
        }
    }

    fn attr<'a>(s: &'a SpanData, k: &str) -> Option<&'a opentelemetry::Value> {
        s.attributes.iter().find(|kv| kv.key.as_str() == k).map(|kv| &kv.value)
    }

    #[test]
    fn w3c_ids_parent_the_span_and_others_start_a_new_trace() {
        let scope = InstrumentationScope::builder("t").build();
        let s = span(&row(Some("4bf92f3577b34da6a3ce929d0e0e4736"), Some("00f067aa0ba902b7")), &scope);
        assert_eq!(s.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(s.parent_span_id.to_string(), "00f067aa0ba902b7");
        assert!(s.parent_span_is_remote);
        assert_eq!(s.end_time.duration_since(s.start_time).unwrap(), Duration::from_millis(250));
        assert_eq!(attr(&s, "gen_ai.usage.input_tokens"), Some(&opentelemetry::Value::I64(15)));
        assert_eq!(attr(&s, "gen_ai.usage.output_tokens"), Some(&opentelemetry::Value::I64(9)));
        assert_eq!(attr(&s, "tollgate.cost_usd").map(|v| v.as_str().to_string()).as_deref(), Some("0.000012345"));

        let s = span(&row(Some("run-42"), Some("step-3")), &scope);
        assert_ne!(s.span_context.trace_id(), TraceId::INVALID);
        assert_eq!(s.parent_span_id, SpanId::INVALID);
        assert_eq!(attr(&s, "tollgate.trace_id").map(|v| v.as_str().to_string()).as_deref(), Some("run-42"));
        assert_eq!(traces_url("http://127.0.0.1:4318/").unwrap(), "http://127.0.0.1:4318/v1/traces");
        assert!(traces_url("127.0.0.1:4318").is_err());
    }
}
