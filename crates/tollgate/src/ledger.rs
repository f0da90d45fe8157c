//! The ledger: one row per authenticated request, written off the request path.
//!
//! [`LedgerRow`] is what the pipeline fills in; [`LedgerWriter`] hands rows
//! to a dedicated thread that commits them in batches (group commit) and
//! acknowledges each row once it is in the database, so the pipeline can hold
//! a response's last byte until its row is safe. Rows are idempotent by
//! request id: writing the same row twice stores it once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tollgate_units::{Money, Usage};

use crate::attribution::Attribution;
use crate::store::LedgerStore;

/// Where a row's token counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider's own usage fields.
    Provider,
    /// Counted locally with the model's tokenizer (provider reported none).
    Estimated,
}

impl UsageSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Provider => "provider",
            UsageSource::Estimated => "estimated",
        }
    }
}

/// One request's entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRow {
    pub request_id: String,
    /// Unix milliseconds when the request arrived.
    pub time_ms: i64,
    pub key_id: Option<String>,
    /// `chat.completions`, `embeddings`, `responses`, `messages`.
    pub endpoint: &'static str,
    pub requested_model: Option<String>,
    /// The model that served it (as the provider named it when it did).
    pub model: Option<String>,
    pub provider: Option<String>,
    /// HTTP status sent to the client.
    pub status: u16,
    pub error_code: Option<String>,
    pub usage: Usage,
    pub usage_source: UsageSource,
    /// `None`: no price known for the model (the row is `unpriced`).
    pub cost: Option<Money>,
    /// What provider-side cache reads saved against the uncached input rate.
    pub cache_savings: Money,
    pub streamed: bool,
    pub client_disconnected: bool,
    /// `hit`, `miss` or `off`.
    pub cache: &'static str,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    /// Upstream attempts made (retries and fallbacks included).
    pub attempts: u32,
    pub attribution: Attribution,
}

struct Job {
    row: LedgerRow,
    ack: Option<oneshot::Sender<()>>,
}

/// Handle to the ledger's writer thread. Cheap to clone.
#[derive(Clone)]
pub struct LedgerWriter {
    tx: mpsc::UnboundedSender<Job>,
}

/// Joins the writer thread after every handle is dropped (graceful drain).
pub struct LedgerDrain {
    thread: std::thread::JoinHandle<()>,
}

impl LedgerDrain {
    /// Waits until every row handed to the writer is committed.
    pub fn wait(self) {
        if self.thread.join().is_err() {
            tracing::error!("ledger writer thread panicked while draining");
        }
    }
}

const MAX_BATCH: usize = 1024;

impl LedgerWriter {
    pub fn start(store: Arc<dyn LedgerStore>) -> std::io::Result<(LedgerWriter, LedgerDrain)> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("ledger-writer".into())
            .spawn(move || {
                let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(j) => batch.push(j),
                            Err(_) => break,
                        }
                    }
                    let rows: Vec<&LedgerRow> = batch.iter().map(|j| &j.row).collect();
                    // Never drop a row: retry until the store takes it.
                    let mut delay = Duration::from_millis(10);
                    while let Err(error) = store.append(&rows) {
                        tracing::error!(%error, rows = rows.len(), "ledger write failed; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(2));
                    }
                    for job in batch.drain(..) {
                        if let Some(ack) = job.ack {
                            let _ = ack.send(());
                        }
                    }
                }
            })?;
        Ok((LedgerWriter { tx }, LedgerDrain { thread }))
    }

    /// Queue a row and wait until it is committed.
    pub async fn write(&self, row: LedgerRow) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Job { row, ack: Some(ack) }).is_err() {
            tracing::error!("ledger writer is gone; row not written");
            return;
        }
        let _ = done.await;
    }

    /// Queue a row without waiting (for paths that cannot await, e.g. `Drop`).
    pub fn write_detached(&self, row: LedgerRow) {
        if self.tx.send(Job { row, ack: None }).is_err() {
            tracing::error!("ledger writer is gone; row not written");
        }
    }
}
