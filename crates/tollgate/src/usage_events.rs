//! The usage-event stream (`[usage_events]`): one CloudEvent (1.0, JSON
//! batch format) per ledger row, posted to a webhook in batches, the shape
//! metering and billing systems ingest (docs/finops.md, "Usage events").
//!
//! Rows reach the stream only once they are durable: the ledger sink is
//! wrapped ([`crate::store::Stores::with_usage_events`]) so the loader's
//! thread, after the database took a batch, renders each row's event and
//! `try_reserve`s it into a bounded queue; it never waits. A full queue
//! drops the event, counts it and warns (at most once a minute).
//!
//! One task sends: it takes up to `batch_max` events, waiting at most
//! `flush_ms` after the first for more, and POSTs them as a JSON array
//! (`Content-Type: application/cloudevents-batch+json`, `Idempotency-Key`:
//! a hash of the batch's ids). An error or a non-2xx answer sends the same
//! batch again after 200 ms, doubling to 30 s, for as long as it takes (from
//! the tenth failure in a row each one is logged at error); one batch is in
//! flight at a time, so events go in ledger order. Delivery is at least
//! once: a retried batch (or a spool replay after a crash) can arrive
//! twice, with identical events, and the receiver dedups by `id` (the
//! request id). On shutdown, what is queued gets at most 2 s more.
//!
//! The webhook URL may carry a token: it is never logged (errors are logged
//! without it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, UsageEventsConfig};
use crate::ledger::LedgerRow;
use crate::observe::metrics::UsageEventCounters;
use crate::store::RowTap;

/// The CloudEvents `type` of a usage event.
pub const EVENT_TYPE: &str = "dev.tollgate.usage.v1";
/// The body's media type (CloudEvents JSON batch format).
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// First wait before a failed batch is sent again; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(200);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Failures in a row after which each one is logged at error (still retried).
pub const LOUD_AFTER: u32 = 10;
/// How long a stopping gateway gives the queued events.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// Time for one POST, answer included.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Queue-full warnings at most this often.
const DROP_WARN_EVERY: Duration = Duration::from_secs(60);

/// The CloudEvents `source`: `tollgate/<host name>`, else `tollgate/<listen address>`.
pub fn source(listen: std::net::SocketAddr) -> String {
    let from_file = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let host = std::env::var("HOSTNAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| from_file("/proc/sys/kernel/hostname").filter(|s| !s.is_empty()))
        .or_else(|| from_file("/etc/hostname").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| listen.to_string());
    format!("tollgate/{host}")
}

/// A row's event `data`: who, what, how many tokens, what it cost. Tokens
/// follow the request log's convention (`GET /api/v1/requests`):
/// `input_tokens` counts all input, cache reads and writes are parts of it;
/// `output_tokens` includes reasoning. `cost_usd` is the exact 9-decimal
/// string, `null` when the model has no price.
pub fn data(r: &LedgerRow) -> Value {
    let tag = |k: &str| r.attribution.tag(k);
    json!({
        "request_id": r.request_id,
        "key_id": r.key_id,
        "team": tag("team"),
        "user": tag("user"),
        "org": tag("org"),
        "feature": tag("feature"),
        "env": tag("env"),
        "tags": r.attribution.tags,
        "provider": r.provider,
        "model": r.model,
        "requested_model": r.requested_model,
        "endpoint": r.endpoint.as_str(),
        "status": r.status,
        "input_tokens": r.usage.input_tokens(),
        "cache_read_tokens": r.usage.cache_read,
        "cache_write_tokens": r.usage.cache_write_tokens(),
        "output_tokens": r.usage.output_tokens(),
        "reasoning_tokens": r.usage.reasoning,
        "cost_usd": r.cost.map(|c| c.to_string()),
        "usage_source": r.usage_source.as_str(),
        "cache": r.cache.as_str(),
        "streamed": r.streamed,
    })
}

/// A row's CloudEvent (1.0): `id` is the request id, `time` the row's
/// (RFC 3339, milliseconds, UTC), `subject` the key id (left out when the
/// row has none).
pub fn event(r: &LedgerRow, source: &str) -> Value {
    let mut e = json!({
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": source,
        "id": r.request_id,
        "datacontenttype": "application/json",
        "data": data(r),
    });
    if let Some(t) = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(r.time_ms) {
        e["time"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    if let Some(k) = r.key_id.as_deref().filter(|k| !k.is_empty()) {
        e["subject"] = json!(k);
    }
    e
}

/// The `Idempotency-Key` of a batch: SHA-256 of its ids (one per line), hex.
pub fn idempotency_key<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(id.as_bytes());
    }
    hex::encode(h.finalize())
}

/// One rendered event waiting to go.
#[derive(Debug)]
struct Queued {
    id: String,
    json: String,
}

/// The JSON array of a batch's events.
fn body(batch: &[Queued]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + batch.iter().map(|e| e.json.len() + 1).sum::<usize>());
    out.push(b'[');
    for (i, e) in batch.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.json.as_bytes());
    }
    out.push(b']');
    out
}

/// The loader's side: renders each stored row's event into the bounded
/// queue, or drops and counts it when the queue is full.
struct Tap {
    tx: mpsc::Sender<Queued>,
    source: String,
    counters: Arc<UsageEventCounters>,
    /// Events queued or in the batch being sent (not yet accepted).
    pending: Arc<AtomicU64>,
    /// When the last queue-full warning went out, and drops since.
    warned: Mutex<(Option<Instant>, u64)>,
}

impl Tap {
    fn dropped(&self, n: u64) {
        self.counters.dropped.fetch_add(n, Ordering::Relaxed);
        let mut w = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        w.1 += n;
        if w.0.is_none_or(|at| at.elapsed() >= DROP_WARN_EVERY) {
            tracing::warn!(
                dropped = w.1,
                dropped_total = self.counters.dropped.load(Ordering::Relaxed),
                "usage-event queue full (usage_events.queue_max): events dropped; the webhook is down or too slow"
            );
            *w = (Some(Instant::now()), 0);
        }
    }
}

impl RowTap for Tap {
    fn stored(&self, rows: &[&LedgerRow]) {
        for (i, r) in rows.iter().enumerate() {
            // A slot first: a full queue costs no rendering.
            match self.tx.try_reserve() {
                Ok(slot) => {
                    slot.send(Queued { id: r.request_id.clone(), json: event(r, &self.source).to_string() });
                    self.pending.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.dropped((rows.len() - i) as u64);
                    return;
                }
            }
        }
    }
}

/// The running stream: the tap the ledger sink is wrapped with, and the sender task.
pub struct UsageEvents {
    tap: Arc<Tap>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for UsageEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageEvents").field("pending", &self.tap.pending.load(Ordering::Relaxed)).finish()
    }
}

impl UsageEvents {
    /// Starts the sender task (on the current tokio runtime); `source` is
    /// the events' CloudEvents source ([`source`]).
    pub fn start(config: &UsageEventsConfig, source: String, http: reqwest::Client) -> UsageEvents {
        let (tx, rx) = mpsc::channel(config.queue_max.max(1));
        let counters = Arc::new(UsageEventCounters::default());
        let pending = Arc::new(AtomicU64::new(0));
        let tap = Arc::new(Tap {
            tx,
            source,
            counters: counters.clone(),
            pending: pending.clone(),
            warned: Mutex::new((None, 0)),
        });
        let stop = CancellationToken::new();
        let sender = Sender {
            http,
            url: config.url.clone(),
            batch_max: config.batch_max.max(1),
            flush: config.flush,
            counters,
            pending,
            stop: stop.clone(),
        };
        let task = tokio::spawn(sender.run(rx));
        UsageEvents { tap, stop, task }
    }

    /// What wraps the ledger sink ([`crate::store::Stores::with_usage_events`]).
    pub fn tap(&self) -> Arc<dyn RowTap> {
        self.tap.clone()
    }

    /// The counters `/metrics` shows.
    pub fn counters(&self) -> Arc<UsageEventCounters> {
        self.tap.counters.clone()
    }

    /// Stops the stream: what is queued gets at most [`SHUTDOWN_FLUSH`];
    /// what is still unsent then is counted as dropped. Call it after the
    /// ledger has drained (so every stored row is queued).
    pub async fn finish(self) {
        let UsageEvents { tap, stop, mut task } = self;
        stop.cancel();
        if tokio::time::timeout(SHUTDOWN_FLUSH, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        let unsent = tap.pending.swap(0, Ordering::Relaxed);
        if unsent > 0 {
            tap.counters.dropped.fetch_add(unsent, Ordering::Relaxed);
            tracing::warn!(
                events = unsent,
                "usage events not delivered before shutdown (the webhook did not accept them)"
            );
        }
    }
}

struct Sender {
    http: reqwest::Client,
    url: Secret,
    batch_max: usize,
    flush: Duration,
    counters: Arc<UsageEventCounters>,
    pending: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        loop {
            let mut batch = Vec::with_capacity(self.batch_max);
            if !self.stop.is_cancelled() {
                tokio::select! {
                    biased;
                    n = rx.recv_many(&mut batch, self.batch_max) => {
                        if n == 0 {
                            return;
                        }
                    }
                    () = self.stop.cancelled() => {}
                }
                // More for the same batch, for up to `flush` after the first.
                let deadline = tokio::time::Instant::now() + self.flush;
                while !batch.is_empty() && batch.len() < self.batch_max && !self.stop.is_cancelled() {
                    let room = self.batch_max - batch.len();
                    tokio::select! {
                        biased;
                        n = rx.recv_many(&mut batch, room) => {
                            if n == 0 {
                                break;
                            }
                        }
                        () = tokio::time::sleep_until(deadline) => break,
                        () = self.stop.cancelled() => break,
                    }
                }
            }
            if self.stop.is_cancelled() {
                // Stopping: whatever is queued, without waiting for more.
                while batch.len() < self.batch_max {
                    match rx.try_recv() {
                        Ok(e) => batch.push(e),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    return;
                }
            }
            self.deliver(&batch).await;
        }
    }

    /// Sends one batch until the webhook accepts it.
    async fn deliver(&self, batch: &[Queued]) {
        let body = bytes::Bytes::from(body(batch));
        let key = idempotency_key(batch.iter().map(|e| e.id.as_str()));
        let n = batch.len() as u64;
        let mut delay = BACKOFF_START;
        let mut failures: u32 = 0;
        loop {
            match self.post(body.clone(), &key).await {
                Ok(()) => {
                    self.counters.sent.fetch_add(n, Ordering::Relaxed);
                    let _ =
                        self.pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some(p.saturating_sub(n)));
                    if failures > 0 {
                        tracing::info!(events = n, failures, "usage-event batch delivered after retries");
                    }
                    return;
                }
                Err(why) => {
                    failures += 1;
                    self.counters.failed_posts.fetch_add(1, Ordering::Relaxed);
                    let retry_ms = delay.as_millis() as u64;
                    if failures >= LOUD_AFTER {
                        tracing::error!(error = %why, events = n, failures, retry_ms, "usage-event webhook keeps failing; retrying the batch");
                    } else {
                        tracing::warn!(error = %why, events = n, failures, retry_ms, "usage-event webhook failed; retrying the batch");
                    }
                    if self.stop.is_cancelled() {
                        // Stopping: the shutdown deadline bounds the retries.
                        tokio::time::sleep(BACKOFF_START).await;
                    } else {
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = self.stop.cancelled() => {}
                        }
                    }
                    delay = (delay * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One POST; the error says why without the URL.
    async fn post(&self, body: bytes::Bytes, key: &str) -> Result<(), String> {
        let answer = self
            .http
            .post(self.url.expose())
            .header(http::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header("idempotency-key", key)
            .timeout(POST_TIMEOUT)
            .body(body)
            .send()
            .await
            .map_err(describe)?;
        let status = answer.status();
        // Read the (small) answer so the connection can be reused.
        let _ = tokio::time::timeout(Duration::from_secs(1), answer.bytes()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the webhook answered {status}"))
        }
    }
}

/// A transport error and its causes, without the URL.
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ledger::{Endpoint, UsageSource};
    use tollgate_units::{Money, Usage};

    fn row() -> LedgerRow {
        let mut r = LedgerRow::new("req-1", 1_700_000_000_123, "key-9", Endpoint::ChatCompletions);
        r.provider = Some("openai".into());
        r.model = Some("gpt-4o-mini".into());
        r.requested_model = Some("fast".into());
        r.status = 200;
        r.usage = Usage { input: 10, cache_read: 5, cache_write_5m: 2, output: 7, reasoning: 3, ..Usage::default() };
        r.cost = Some(Money::from_nanos(123_000));
        r.attribution.tags.insert("team".into(), "growth".into());
        r.attribution.tags.insert("custom".into(), "x".into());
        r
    }

    #[test]
    fn an_event_carries_the_cloudevents_attributes_and_the_row() {
        let e = event(&row(), "tollgate/host");
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], EVENT_TYPE);
        assert_eq!(e["source"], "tollgate/host");
        assert_eq!(e["id"], "req-1");
        assert_eq!(e["time"], "2023-11-14T22:13:20.123Z");
        assert_eq!(e["subject"], "key-9");
        assert_eq!(e["datacontenttype"], "application/json");
        let d = &e["data"];
        assert_eq!(d["cost_usd"], "0.000123000");
        assert_eq!(d["input_tokens"], 17);
        assert_eq!(d["cache_read_tokens"], 5);
        assert_eq!(d["cache_write_tokens"], 2);
        assert_eq!(d["output_tokens"], 10);
        assert_eq!(d["reasoning_tokens"], 3);
        assert_eq!(d["team"], "growth");
        assert_eq!(d["user"], Value::Null);
        assert_eq!(d["tags"]["custom"], "x");
        assert_eq!(d["endpoint"], "chat.completions");
        assert_eq!(d["usage_source"], "provider");
        assert_eq!(d["cache"], "off");
        assert_eq!(d["streamed"], false);
    }

    #[test]
    fn an_unpriced_row_has_a_null_cost_and_a_row_without_key_no_subject() {
        let mut r = row();
        r.cost = None;
        r.key_id = None;
        r.usage_source = UsageSource::Estimated;
        let e = event(&r, "s");
        assert_eq!(e["data"]["cost_usd"], Value::Null);
        assert_eq!(e["data"]["usage_source"], "estimated");
        assert!(e.get("subject").is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (tx, mut rx) = mpsc::channel(2);
        let tap = Tap {
            tx,
            source: "s".into(),
            counters: Arc::default(),
            pending: Arc::default(),
            warned: Mutex::new((None, 0)),
        };
        let rows: Vec<LedgerRow> =
            (0..5).map(|i| LedgerRow::new(&format!("r{i}"), 0, "k", Endpoint::Embeddings)).collect();
        let refs: Vec<&LedgerRow> = rows.iter().collect();
        tap.stored(&refs);
        tap.stored(&refs[..1]);
        assert_eq!(tap.counters.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(tap.pending.load(Ordering::Relaxed), 2);
        assert_eq!(rx.try_recv().unwrap().id, "r0");
        assert_eq!(rx.try_recv().unwrap().id, "r1");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_batch_is_a_json_array_with_a_stable_key() {
        let batch = vec![
            Queued { id: "a".into(), json: event(&row(), "s").to_string() },
            Queued { id: "b".into(), json: "{}".into() },
        ];
        let v: Value = serde_json::from_slice(&body(&batch)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[0]["id"], "req-1");
        assert_eq!(body(&[]), b"[]");
        let k = idempotency_key(["a", "b"]);
        assert_eq!(k, idempotency_key(["a", "b"]));
        assert_ne!(k, idempotency_key(["b", "a"]));
        assert_eq!(k.len(), 64);
    }
}
